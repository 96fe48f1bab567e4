package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/indextest"
	"github.com/reid-project/reid/internal/vecmath"
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
		rounding    float64
	}{
		{"exact", Options{Mode: "exact", SyncWrites: true}, false, 0},
		// ExactBelow -1 makes even the suite's small galleries go through the graph.
		{"hnsw", Options{Mode: "hnsw", HNSWM: 8, EfConstruction: 64, EfSearch: 64, ExactBelow: -1, SyncWrites: true}, true, 0},
		// A one-byte snapshot threshold snapshots after nearly every write, so the persistence
		// checks read snapshots, logs after them, and graphs saved in them.
		{"hnsw-snapshots", Options{Mode: "hnsw", HNSWM: 8, EfConstruction: 64, EfSearch: 64, ExactBelow: -1, SnapshotBytes: 1}, true, 0},
		{"exact-snapshots", Options{Mode: "exact", SnapshotBytes: 1}, false, 0},
		// Vectors kept in binary16: the suite's checks of neighbours, scores and persistence hold.
		{"exact-float16", Options{Mode: "exact", Precision: "float16", SnapshotBytes: 1}, false, 0x1p-11},
		{"hnsw-float16", Options{Mode: "hnsw", Precision: "float16", HNSWM: 8, EfConstruction: 64, EfSearch: 64, ExactBelow: -1, SnapshotBytes: 1}, true, 0x1p-11},
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
				Rounding:    variant.rounding,
			})
		})
	}
}

// TestWritesDuringSnapshot upserts, replaces and deletes while snapshots are written, in both modes,
// then reopens: every write must be there, including those that landed while a snapshot was
// being written from the frozen copy (they live in the log after it). Under -race it also checks
// that the snapshot never reads a vector block while a write changes it (copy on write).
func TestWritesDuringSnapshot(t *testing.T) {
	for _, variant := range []struct{ mode, precision string }{{"exact", "float32"}, {"hnsw", "float32"}, {"exact", "float16"}, {"hnsw", "float16"}} {
		mode := variant.mode
		t.Run(mode+"-"+variant.precision, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "index")
			options := Options{Mode: mode, Precision: variant.precision, HNSWM: 8, EfConstruction: 32, SnapshotBytes: 1 << 40}
			ix := openFor(t, dir, options)
			if err := ix.CreateVersion(ctx, "v1", 16); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 5))
			want := map[string][]float32{}
			put := func(id int) {
				t.Helper()
				vector := make([]float32, 16)
				for i := range vector {
					vector[i] = float32(rng.NormFloat64())
				}
				item := index.Item{ID: fmt.Sprintf("c-%d", id), Vector: vector, Metadata: index.Metadata{Camera: "gate", Time: time.Unix(int64(id), 0)}}
				if err := ix.Upsert(ctx, "v1", []index.Item{item}); err != nil {
					t.Fatal(err)
				}
				want[item.ID] = vector
			}
			for id := range 5000 {
				put(id)
			}
			done := make(chan error, 1)
			for round := range 3 {
				go func() { done <- ix.Snapshot(ctx) }()
				for i := range 400 {
					put(rng.IntN(6000)) // replaces old ids and adds new ones, into shared blocks
					if i%7 == 0 {
						id := fmt.Sprintf("c-%d", rng.IntN(6000))
						if _, err := ix.Delete(ctx, "v1", []string{id}); err != nil {
							t.Fatal(err)
						}
						delete(want, id)
					}
				}
				if err := <-done; err != nil {
					t.Fatalf("snapshot %d: %v", round, err)
				}
			}
			if err := ix.Close(); err != nil {
				t.Fatal(err)
			}
			ix = openFor(t, dir, options)
			defer ix.Close()
			if count, err := ix.Count(ctx, "v1"); err != nil || count != len(want) {
				t.Fatalf("reopened gallery has %d items (%v), want %d", count, err, len(want))
			}
			ids := make([]string, 0, len(want))
			for id := range want {
				ids = append(ids, id)
			}
			items, err := ix.Get(ctx, "v1", ids)
			if err != nil || len(items) != len(want) {
				t.Fatalf("Get returned %d of %d items: %v", len(items), len(want), err)
			}
			for _, item := range items {
				expected := want[item.ID]
				if variant.precision == "float16" {
					// Kept, and so snapshotted, as binary16: exactly the rounded values come back.
					halves := make([]uint16, len(expected))
					vecmath.ToHalf(halves, expected)
					expected = make([]float32, len(halves))
					vecmath.FromHalf(expected, halves)
				}
				if !slices.Equal(item.Vector, expected) {
					t.Fatalf("%s has another vector after reopening", item.ID)
				}
			}
		})
	}
}

// TestCrashDuringSnapshotThenAgain leaves a gallery as a crash between a snapshot's freeze and its
// rename does (the frozen log, the next log with later writes, an unfinished snapshot file), then
// reopens it twice: the first recovery must keep the frozen log, or the second would lose it.
func TestCrashDuringSnapshotThenAgain(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	item := func(id string, value float32) index.Item {
		return index.Item{ID: id, Vector: []float32{value, 1, 0, 0}, Metadata: index.Metadata{Camera: "gate", Time: time.Unix(1, 0)}}
	}
	ix := openFor(t, dir, Options{})
	if err := ix.CreateVersion(ctx, "v1", 4); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, "v1", []index.Item{item("in-snapshot", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, "v1", []index.Item{item("in-frozen-log", 2)}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	snapshots, _ := filepath.Glob(filepath.Join(dir, "*", "snapshot-*.snap"))
	if len(snapshots) != 1 {
		t.Fatalf("snapshots: %v", snapshots)
	}
	galleryDir := filepath.Dir(snapshots[0])
	var sequence uint64
	if _, err := fmt.Sscanf(filepath.Base(snapshots[0]), "snapshot-%016x.snap", &sequence); err != nil {
		t.Fatal(err)
	}
	// The crash: the next log was started at the freeze and took a write; the snapshot never
	// reached its rename.
	next, err := openWAL(logPath(galleryDir, sequence+1), true)
	if err != nil {
		t.Fatal(err)
	}
	later := item("in-next-log", 3)
	nanos, _ := timeToNanos(later.Metadata.Time)
	payload := appendItem(binary.AppendUvarint([]byte{opUpsert}, 1), &later, nanos)
	if _, err := next.append(payload); err != nil {
		t.Fatal(err)
	}
	if err := next.close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snapshotPath(galleryDir, sequence+1)+".tmp", []byte("half a snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		ix := openFor(t, dir, Options{})
		items, err := ix.Get(ctx, "v1", []string{"in-snapshot", "in-frozen-log", "in-next-log"})
		if err != nil || len(items) != 3 {
			t.Fatalf("open %d after the crash: %d of 3 items (%v)", round, len(items), err)
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompactRemovesDeletedVectorsFromDisk: a deleted item stays in the log until a snapshot
// replaces it; Compact writes that snapshot, after which no file of the index holds the item, and
// a reopened index has exactly the live items.
func TestCompactRemovesDeletedVectorsFromDisk(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	ix := openFor(t, dir, Options{})
	defer func() { ix.Close() }()
	for _, version := range []string{"v1", "v2"} {
		if err := ix.CreateVersion(ctx, version, 4); err != nil {
			t.Fatal(err)
		}
		var items []index.Item
		for i := range 10 {
			items = append(items, index.Item{ID: fmt.Sprintf("person-crop-%02d", i), Vector: []float32{1, 0, 0, float32(i)},
				Metadata: index.Metadata{Camera: "gate", Time: time.Unix(int64(i), 0)}})
		}
		if err := ix.Upsert(ctx, version, items); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Delete(ctx, version, []string{"person-crop-03", "person-crop-07"}); err != nil {
			t.Fatal(err)
		}
	}
	holding := func() []string {
		var files []string
		filepath.WalkDir(dir, func(path string, entry os.DirEntry, err error) error {
			if err == nil && !entry.IsDir() {
				if content, _ := os.ReadFile(path); bytes.Contains(content, []byte("person-crop-03")) {
					files = append(files, path)
				}
			}
			return err
		})
		return files
	}
	if len(holding()) != 2 {
		t.Fatalf("before Compact the deleted item is in %v; want both galleries' logs", holding())
	}
	if err := ix.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if files := holding(); len(files) != 0 {
		t.Errorf("after Compact the deleted item is still in %v", files)
	}
	ix.Close()
	ix = openFor(t, dir, Options{})
	for _, version := range []string{"v1", "v2"} {
		if count, err := ix.Count(ctx, version); err != nil || count != 8 {
			t.Errorf("reopened gallery %s holds %d items (%v), want 8", version, count, err)
		}
	}
}
