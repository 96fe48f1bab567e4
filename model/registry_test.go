package model

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func writeWeights(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.pth")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRegisterListPromote(t *testing.T) {
	ctx := context.Background()
	registry, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Active(); !errors.Is(err, ErrNoActive) {
		t.Fatalf("empty registry: want ErrNoActive, got %v", err)
	}
	first, err := registry.Register(ctx, Metadata{Name: "osnet", Arch: "osnet_x0_25", Dim: 512}, writeWeights(t, "one"))
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != "v1" || !first.Active {
		t.Fatalf("first version = %+v, want v1 active", first)
	}
	second, err := registry.Register(ctx, Metadata{Name: "adapted", Arch: "osnet_x0_25", Dim: 512, Parent: "v1"}, writeWeights(t, "two"))
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != "v2" || second.Active {
		t.Fatalf("second version = %+v, want v2 inactive", second)
	}
	raw, err := os.ReadFile(second.WeightsPath())
	if err != nil || string(raw) != "two" {
		t.Fatalf("weights not copied: %q %v", raw, err)
	}
	if second.WeightsSHA256 == first.WeightsSHA256 || len(second.WeightsSHA256) != 64 {
		t.Fatalf("bad checksums %q %q", first.WeightsSHA256, second.WeightsSHA256)
	}
	if err := registry.Promote("v2"); err != nil {
		t.Fatal(err)
	}
	versions, err := registry.List()
	if err != nil {
		t.Fatal(err)
	}
	activeCount := 0
	for _, version := range versions {
		if version.Active {
			activeCount++
			if version.ID != "v2" {
				t.Errorf("active is %s, want v2", version.ID)
			}
		}
	}
	if len(versions) != 2 || activeCount != 1 {
		t.Fatalf("versions %+v: want 2 with exactly one active", versions)
	}
	active, err := registry.Get("")
	if err != nil || active.ID != "v2" || active.Parent != "v1" {
		t.Fatalf("Get(\"\") = %+v, %v", active, err)
	}
}

func TestBadIDs(t *testing.T) {
	registry, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"v9", "../etc", "x1", "v0", "v-1"} {
		if err := registry.Promote(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Promote(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := registry.Register(context.Background(), Metadata{Arch: "resnet50"}, writeWeights(t, "x")); err == nil {
		t.Error("metadata without dim accepted")
	}
	if _, err := registry.Register(context.Background(), Metadata{Arch: "resnet50", Dim: 2048}, "/no/such/file"); err == nil {
		t.Error("missing weights file accepted")
	}
	if versions, _ := registry.List(); len(versions) != 0 {
		t.Errorf("failed registrations left versions behind: %+v", versions)
	}
}

func TestConcurrentRegistrationsGetDistinctIDs(t *testing.T) {
	registry, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	weights := writeWeights(t, "w")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			version, err := registry.Register(context.Background(), Metadata{Arch: "osnet_x0_25", Dim: 512}, weights)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = version.ID
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %s given twice: %v", id, ids)
		}
		seen[id] = true
	}
}
