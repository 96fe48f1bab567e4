package embedded

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/indextest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openFor(t testing.TB, dir string, options Options) *Index {
	t.Helper()
	options.Logger = quietLogger()
	ix, err := Open(dir, options)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ix
}

func TestSuite(t *testing.T) {
	variants := []struct {
		name        string
		options     Options
		approximate bool
	}{
		{"exact", Options{Mode: "exact", SyncWrites: true}, false},
		// ExactBelow -1 makes even the suite's small galleries go through the graph.
		{"hnsw", Options{Mode: "hnsw", HNSWM: 8, EfConstruction: 64, EfSearch: 64, ExactBelow: -1, SyncWrites: true}, true},
		// A one-byte snapshot threshold snapshots after nearly every write, so the persistence
		// checks read snapshots, logs after them, and graphs saved in them.
		{"hnsw-snapshots", Options{Mode: "hnsw", HNSWM: 8, EfConstruction: 64, EfSearch: 64, ExactBelow: -1, SnapshotBytes: 1}, true},
		{"exact-snapshots", Options{Mode: "exact", SnapshotBytes: 1}, false},
	}
	for _, variant := range variants {
		t.Run(variant.name, func(t *testing.T) {
			indextest.RunBackend(t, indextest.Backend{
				Open: func(t testing.TB) index.Index {
					return openFor(t, filepath.Join(t.TempDir(), "index"), variant.options)
				},
				OpenAt: func(t testing.TB, state string) index.Index {
					return openFor(t, filepath.Join(state, "index"), variant.options)
				},
				Approximate: variant.approximate,
			})
		})
	}
}
