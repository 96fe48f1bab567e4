package retention

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/embedded"
	"github.com/reid-project/reid/index/milvus"
	"github.com/reid-project/reid/index/milvus/milvusfake"
)

var start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// emptySite is a crop store and an index (backend "embedded", or "milvus": the Milvus backend
// against the in-process fake of the Milvus service) with two empty galleries of 2-d vectors: an
// old model version's (v1) and the active one's (v2).
func emptySite(t *testing.T, backend string) (*cropstore.Local, index.Index) {
	t.Helper()
	ctx := context.Background()
	store, err := cropstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var vectors index.Index
	switch backend {
	case "embedded":
		vectors, err = embedded.Open(t.TempDir(), embedded.Options{})
	case "milvus":
		server, startErr := milvusfake.Start(milvusfake.Options{})
		if startErr != nil {
			t.Fatal(startErr)
		}
		t.Cleanup(server.Close)
		vectors, err = milvus.Open(ctx, milvus.Options{Address: server.Addr(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	default:
		t.Fatalf("no backend %q", backend)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vectors.Close() })
	for _, version := range []string{"v1", "v2"} {
		if err := vectors.CreateVersion(ctx, version, 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := vectors.Activate(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	return store, vectors
}

// site is emptySite holding one crop an hour for three days, in both galleries.
func site(t *testing.T) (*cropstore.Local, index.Index, []string) {
	t.Helper()
	ctx := context.Background()
	store, vectors := emptySite(t, "embedded")
	var ids []string
	var items []index.Item
	for hour := range 72 {
		at := start.Add(time.Duration(hour) * time.Hour)
		id := cropstore.NewID("gate", at, int64(hour), 0)
		ids = append(ids, id)
		if err := store.Put(ctx, cropstore.CropRecord{ID: id, Camera: "gate", Time: at, Frame: int64(hour), JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}); err != nil {
			t.Fatal(err)
		}
		items = append(items, index.Item{ID: id, Vector: []float32{1, 0}, Metadata: index.Metadata{Camera: "gate", Time: at, Track: 1}})
	}
	for _, version := range []string{"v1", "v2"} {
		if err := vectors.Upsert(ctx, version, items); err != nil {
			t.Fatal(err)
		}
	}
	return store, vectors, ids
}

func count(t *testing.T, store *cropstore.Local, vectors index.Index) (crops, v1, v2 int) {
	t.Helper()
	ctx := context.Background()
	store.Walk(ctx, cropstore.Filter{}, func(cropstore.CropRecord) error { crops++; return nil })
	v1, _ = vectors.Count(ctx, "v1")
	v2, _ = vectors.Count(ctx, "v2")
	return crops, v1, v2
}

func TestPrune(t *testing.T) {
	store, vectors, _ := site(t)
	cutoff := start.Add(30 * time.Hour) // drops hours 0-29
	result, err := Prune(context.Background(), store, vectors, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if result.Crops != 30 || result.Vectors != 60 {
		t.Errorf("pruned %+v, want 30 crops and 2 x 30 vectors", result)
	}
	if crops, v1, v2 := count(t, store, vectors); crops != 42 || v1 != 42 || v2 != 42 {
		t.Errorf("left %d crops, %d and %d vectors; want 42 of each", crops, v1, v2)
	}
	// A process that owns only the store prunes only the store.
	if result, err := Prune(context.Background(), store, nil, start.Add(40*time.Hour)); err != nil || result.Crops != 10 || result.Vectors != 0 {
		t.Errorf("store-only prune: %+v, %v", result, err)
	}
}

// TestPolicyPerCamera: a camera with a shorter period of its own loses its crops and vectors
// sooner; the others keep theirs for the site's period; without a site period, only that camera
// is pruned.
func TestPolicyPerCamera(t *testing.T) {
	ctx := context.Background()
	store, vectors, _ := site(t) // gate: one crop an hour for three days
	var items []index.Item
	for hour := range 72 {
		at := start.Add(time.Duration(hour) * time.Hour)
		id := cropstore.NewID("toilets-corridor", at, int64(hour), 0)
		if err := store.Put(ctx, cropstore.CropRecord{ID: id, Camera: "toilets-corridor", Time: at, Frame: int64(hour), JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}); err != nil {
			t.Fatal(err)
		}
		items = append(items, index.Item{ID: id, Vector: []float32{0, 1}, Metadata: index.Metadata{Camera: "toilets-corridor", Time: at, Track: 2}})
	}
	for _, version := range []string{"v1", "v2"} {
		if err := vectors.Upsert(ctx, version, items); err != nil {
			t.Fatal(err)
		}
	}
	now := start.Add(72 * time.Hour)
	left := func(camera string) (crops, vectors1 int) {
		t.Helper()
		store.Walk(ctx, cropstore.Filter{Camera: camera}, func(cropstore.CropRecord) error { crops++; return nil })
		found, err := vectors.Search(ctx, "v1", index.Query{Vectors: [][]float32{{1, 1}}, K: 1000, Exact: true, Filter: index.Filter{Cameras: []string{camera}}})
		if err != nil {
			t.Fatal(err)
		}
		return crops, len(found[0])
	}
	tests := []struct {
		name                string
		policy              Policy
		wantGate, wantOther int
	}{
		{"only the camera's own period", Policy{PerCamera: map[string]time.Duration{"toilets-corridor": 48 * time.Hour}}, 72, 48},
		{"the site's period and the camera's shorter one", Policy{MaxAge: 36 * time.Hour, PerCamera: map[string]time.Duration{"toilets-corridor": 12 * time.Hour}}, 36, 12},
	}
	for _, test := range tests {
		result, err := test.policy.Prune(ctx, store, vectors, now)
		if err != nil {
			t.Fatalf("%s: %v", test.name, err)
		}
		gateCrops, gateVectors := left("gate")
		otherCrops, otherVectors := left("toilets-corridor")
		if gateCrops != test.wantGate || gateVectors != test.wantGate || otherCrops != test.wantOther || otherVectors != test.wantOther {
			t.Errorf("%s: pruned %+v; left gate %d crops and %d vectors, the corridor %d and %d; want %d and %d of each",
				test.name, result, gateCrops, gateVectors, otherCrops, otherVectors, test.wantGate, test.wantOther)
		}
	}
}

// flakyIndex fails its first Versions call.
type flakyIndex struct {
	Index
	calls atomic.Int32
}

func (f *flakyIndex) Versions(ctx context.Context) ([]index.Version, error) {
	if f.calls.Add(1) == 1 {
		return nil, errors.New("index unavailable")
	}
	return f.Index.Versions(ctx)
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func TestRunKeepsPruningAfterAFailure(t *testing.T) {
	store, vectors, _ := site(t)
	var now atomic.Int64
	now.Store(start.Add(48 * time.Hour).UnixNano())
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, store, &flakyIndex{Index: vectors}, Options{
			Policy: Policy{MaxAge: 24 * time.Hour}, Interval: 5 * time.Millisecond,
			Now:    func() time.Time { return time.Unix(0, now.Load()).UTC() },
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The first prune fails on the index; the next one, an interval later, removes the first day.
	waitFor("the first day pruned", func() bool { crops, _, v2 := count(t, store, vectors); return crops == 48 && v2 == 48 })
	if !strings.Contains(logs.String(), "index unavailable") {
		t.Errorf("the failed prune was not logged:\n%s", logs.String())
	}
	// A day later, the second day goes too.
	now.Store(start.Add(72 * time.Hour).UnixNano())
	waitFor("the second day pruned", func() bool { crops, v1, _ := count(t, store, vectors); return crops == 24 && v1 == 24 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop when its context ended")
	}
}
