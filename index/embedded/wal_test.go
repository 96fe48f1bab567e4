package embedded

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/reid-project/reid/index"
)

func sqrt(x float64) float64 { return math.Sqrt(x) }

// TestTornTail appends a partial frame and a frame with a bad checksum after good records, as a
// crash in the middle of a write would leave them: the good records survive, the rest is dropped,
// and later writes after the reopen are kept too.
func TestTornTail(t *testing.T) {
	cases := []struct {
		name string
		tail []byte
	}{
		{"partial header", []byte{9, 0, 0}},
		{"partial payload", []byte{100, 0, 0, 0, 1, 2, 3, 4, 1, 1}},
		{"bad checksum", []byte{3, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "index")
			ix := openFor(t, dir, Options{SyncWrites: true})
			if err := ix.CreateVersion(ctx, "crash", crashDim); err != nil {
				t.Fatal(err)
			}
			first := []index.Item{crashItem("a"), crashItem("b")}
			if err := ix.Upsert(ctx, "crash", first); err != nil {
				t.Fatal(err)
			}
			ix.Close()
			logs, _ := filepath.Glob(filepath.Join(dir, "v*", "log-*.wal"))
			if len(logs) != 1 {
				t.Fatalf("logs: %v", logs)
			}
			file, err := os.OpenFile(logs[0], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			file.Write(c.tail)
			file.Close()

			ix = openFor(t, dir, Options{SyncWrites: true})
			checkAcknowledged(t, ix, []string{"a", "b"})
			if err := ix.Upsert(ctx, "crash", []index.Item{crashItem("c")}); err != nil {
				t.Fatal(err)
			}
			ix.Close()
			ix = openFor(t, dir, Options{SyncWrites: true})
			defer ix.Close()
			checkAcknowledged(t, ix, []string{"a", "b", "c"})
		})
	}
}

// TestDamagedSnapshot: a snapshot whose checksum fails is an error on open, never silently empty.
func TestDamagedSnapshot(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	ix := openFor(t, dir, Options{})
	if err := ix.CreateVersion(ctx, "v", crashDim); err != nil {
		t.Fatal(err)
	}
	if err := ix.Upsert(ctx, "v", []index.Item{crashItem("a"), crashItem("b")}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	snapshots, _ := filepath.Glob(filepath.Join(dir, "v*", "snapshot-*.snap"))
	if len(snapshots) != 1 {
		t.Fatalf("snapshots: %v", snapshots)
	}
	data, _ := os.ReadFile(snapshots[0])
	data[len(data)/2] ^= 0xff
	os.WriteFile(snapshots[0], data, 0o644)
	if ix, err := Open(dir, Options{Logger: quietLogger()}); err == nil {
		ix.Close()
		t.Fatal("Open accepted a damaged snapshot")
	}
}

// TestBadOptions: wrong configuration is a clear error.
func TestBadOptions(t *testing.T) {
	for _, options := range []Options{{Mode: "ivf"}, {Mode: "hnsw", HNSWM: 1}, {EfSearch: -1}} {
		if _, err := Open(t.TempDir(), options); err == nil {
			t.Errorf("Open(%+v) succeeded", options)
		}
	}
}

// TestMissingGalleryFiles: a version whose directory vanished is an error, not an empty gallery.
func TestMissingGalleryFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "index")
	ix := openFor(t, dir, Options{})
	if err := ix.CreateVersion(ctx, "v", 4); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	galleries, _ := filepath.Glob(filepath.Join(dir, "v0*"))
	if len(galleries) != 1 {
		t.Fatalf("gallery directories: %v", galleries)
	}
	os.RemoveAll(galleries[0])
	if ix, err := Open(dir, Options{Logger: quietLogger()}); err == nil {
		ix.Close()
		t.Fatal("Open accepted a version whose files are gone")
	}
}

// fullDisk writes up to room bytes to its file and then fails, part way through a write if it
// must, as a full disk does.
type fullDisk struct {
	*os.File
	room int
}

func (d *fullDisk) Write(data []byte) (int, error) {
	if len(data) <= d.room {
		d.room -= len(data)
		return d.File.Write(data)
	}
	n, err := d.File.Write(data[:d.room])
	d.room = 0
	if err == nil {
		err = syscall.ENOSPC
	}
	return n, err
}

// TestAppendOnFullDisk: an append the disk has no room for fails without changing the log, so
// appends after room is made again land whole, and replay finds exactly the acknowledged frames.
func TestAppendOnFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.wal")
	log, err := openWAL(path, true)
	if err != nil {
		t.Fatal(err)
	}
	disk := &fullDisk{File: log.file.(*os.File), room: 8 + 5 + 8 + 3}
	log.file = disk
	first, second, third := []byte("first"), []byte("second payload"), []byte("third")
	if _, err := log.append(first); err != nil {
		t.Fatal(err)
	}
	if _, err := log.append(second); err == nil || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, errAppendUndone) {
		t.Fatalf("append on a full disk: %v; want ENOSPC with the log unchanged", err)
	}
	if info, err := disk.Stat(); err != nil || info.Size() != 8+5 || log.size() != 8+5 {
		t.Fatalf("after the failed append the file has %v bytes (%v) and the log counts %d; want the first frame's 13", info.Size(), err, log.size())
	}
	disk.room = 1 << 20 // room again
	end, err := log.append(third)
	if err != nil || end != 8+5+8+5 {
		t.Fatalf("append once there is room: end %d, %v", end, err)
	}
	if err := log.syncTo(end); err != nil {
		t.Fatal(err)
	}
	if err := log.close(); err != nil {
		t.Fatal(err)
	}
	var replayed []string
	frames, dropped, err := replayWAL(path, func(payload []byte) error {
		replayed = append(replayed, string(payload))
		return nil
	})
	if err != nil || frames != 2 || dropped != 0 || !slices.Equal(replayed, []string{"first", "third"}) {
		t.Fatalf("replay: %d frames %q, %d bytes dropped, %v; want first and third whole", frames, replayed, dropped, err)
	}
}
