package embedded

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/atomicfile"
)

// TestBackupDuringSnapshots copies an index again and again while a writer's every batch starts a
// snapshot, which removes the files the copy is reading: each copy must open, whole batches only,
// holding at least what was acknowledged before it began.
func TestBackupDuringSnapshots(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	ix := openFor(t, dir, Options{SnapshotBytes: 1})
	defer ix.Close()
	if err := ix.CreateVersion(ctx, "v", 8); err != nil {
		t.Fatal(err)
	}
	batch := func(start int) []index.Item {
		items := make([]index.Item, 25)
		for i := range items {
			items[i] = index.Item{ID: fmt.Sprint(start + i), Vector: []float32{1, float32(start + i), 0, 0, 0, 0, 0, 1}}
		}
		return items
	}
	writerCtx, stop := context.WithCancel(ctx)
	var writer sync.WaitGroup
	var acknowledged sync.Map
	writer.Go(func() {
		for start := 0; writerCtx.Err() == nil; start += 25 {
			if err := ix.Upsert(ctx, "v", batch(start)); err != nil {
				t.Error(err)
				return
			}
			acknowledged.Store("n", start+25)
			time.Sleep(100 * time.Microsecond) // a busy site's rate, not a flood that outgrows the test
		}
	})
	defer func() { stop(); writer.Wait() }()
	for round := range 40 {
		var floor int
		if n, ok := acknowledged.Load("n"); ok {
			floor = n.(int)
		}
		to := filepath.Join(t.TempDir(), "copy")
		if _, err := Backup(ctx, dir, to); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		copied := openFor(t, to, Options{})
		count, err := copied.Count(ctx, "v")
		copied.Close()
		if err != nil || count < floor || count%25 != 0 {
			t.Fatalf("round %d: the copy holds %d items (%v); %d were acknowledged before it, in batches of 25", round, count, err, floor)
		}
	}
}

// TestBackupStartsOverWhenASnapshotReplacesFiles takes a snapshot between the listing of the
// files and their copy, as the running index may: the files listed are gone, and the copy must
// start over from the new snapshot and hold everything.
func TestBackupStartsOverWhenASnapshotReplacesFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	ix := openFor(t, dir, Options{})
	defer ix.Close()
	if err := ix.CreateVersion(ctx, "v", 8); err != nil {
		t.Fatal(err)
	}
	upsert := func(start int) {
		t.Helper()
		items := make([]index.Item, 100)
		for i := range items {
			items[i] = index.Item{ID: fmt.Sprint(start + i), Vector: []float32{1, float32(start + i), 0, 0, 0, 0, 0, 1}}
		}
		if err := ix.Upsert(ctx, "v", items); err != nil {
			t.Fatal(err)
		}
	}
	upsert(0)
	if err := ix.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	upsert(100)
	first := true
	copyFile := func(from, to string) (int64, error) {
		if first {
			first = false
			upsert(200)
			if err := ix.Snapshot(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return atomicfile.Copy(from, to, true)
	}
	to := filepath.Join(t.TempDir(), "copy")
	result, err := backup(ctx, dir, to, copyFile)
	if err != nil {
		t.Fatal(err)
	}
	if result.Attempts != 2 {
		t.Errorf("the copy started %d times, want twice (the snapshot replaced what it listed)", result.Attempts)
	}
	copied := openFor(t, to, Options{})
	if count, err := copied.Count(ctx, "v"); err != nil || count != 300 {
		t.Errorf("the copy holds %d items (%v), want 300", count, err)
	}
	copied.Close()

	// Again: nothing written, nothing copied but the metadata; then one write, and only the log
	// that took it is copied.
	if result, err = Backup(ctx, dir, to); err != nil || result.Files != 1 || result.Unchanged != 2 {
		t.Errorf("a backup of an unchanged index: %+v, %v; want the snapshot and the log unchanged", result, err)
	}
	upsert(300)
	if result, err = Backup(ctx, dir, to); err != nil || result.Files != 2 || result.Unchanged != 1 {
		t.Errorf("a backup after one write: %+v, %v; want the log copied and the snapshot unchanged", result, err)
	}
	copied = openFor(t, to, Options{})
	defer copied.Close()
	if count, err := copied.Count(ctx, "v"); err != nil || count != 400 {
		t.Errorf("the refreshed copy holds %d items (%v), want 400", count, err)
	}
}
