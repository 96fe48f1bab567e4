// Package testassets finds the shared test assets (models, videos) that tests, benchmarks and the
// demo read from ../shared beside the repository. They are never copied into the repository.
package testassets

import (
	"os"
	"path/filepath"
	"testing"
)

// SharedDir returns the shared assets directory: $REID_SHARED if set, else ../shared beside the
// repository root (the directory holding go.mod). It returns "" when neither exists.
func SharedDir() string {
	if dir := os.Getenv("REID_SHARED"); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			shared := filepath.Join(filepath.Dir(dir), "shared")
			if _, err := os.Stat(shared); err == nil {
				return shared
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Path returns the path of a shared asset, failing the test (never skipping it) when the asset is
// missing: a missing asset is a broken checkout, not a reason to pass.
func Path(t testing.TB, relative string) string {
	t.Helper()
	shared := SharedDir()
	if shared == "" {
		t.Fatalf("shared assets not found: set REID_SHARED or place them in ../shared beside the repository")
	}
	path := filepath.Join(shared, relative)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("shared asset %s: %v", relative, err)
	}
	return path
}
