package atomicfile

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteReplacesWholeAndLeavesNoTemporaries(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "active")
	var wg sync.WaitGroup
	values := []string{"v1\n", "v22\n", "v333\n", "v4444\n"}
	for _, value := range values {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Write(path, []byte(value)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, value := range values {
		found = found || string(got) == value
	}
	if !found {
		t.Fatalf("content %q is none of the written values", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("x")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
