package backup

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/index/embedded"
)

const dim = 16

func vectorOf(id int) []float32 {
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	vector := make([]float32, dim)
	for i := range vector {
		vector[i] = float32(rng.NormFloat64())
	}
	return vector
}

func items(from, to int) []index.Item {
	batch := make([]index.Item, 0, to-from)
	for id := from; id < to; id++ {
		batch = append(batch, index.Item{ID: fmt.Sprint(id), Vector: vectorOf(id), Metadata: index.Metadata{Camera: "gate", Time: time.Unix(int64(id), 0)}})
	}
	return batch
}

func tinyJPEG(t *testing.T) []byte {
	t.Helper()
	var buffer bytes.Buffer
	if err := jpeg.Encode(&buffer, image.NewGray(image.Rect(0, 0, 8, 16)), nil); err != nil {
		t.Fatal(err)
	}
	return buffer.Bytes()
}

func putCrop(t *testing.T, store *cropstore.Local, n int) cropstore.CropRecord {
	t.Helper()
	at := time.Date(2026, 11, 20+n%3, 8, 0, n, 0, time.UTC)
	record := cropstore.CropRecord{
		ID: cropstore.NewID("gate", at, int64(n), 0), Camera: "gate", Time: at,
		Box: cropstore.Box{X: 1, Y: 2, Width: 8, Height: 16}, Track: int64(n), JPEG: tinyJPEG(t),
	}
	if err := store.Put(context.Background(), record); err != nil {
		t.Fatal(err)
	}
	return record
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameTree fails unless every regular file under want (lock and dot files aside) is under got with
// the same bytes, and got holds no other file.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	files := map[string]bool{}
	filepath.WalkDir(want, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || ignored(entry.Name()) {
			return err
		}
		relative, _ := filepath.Rel(want, path)
		files[relative] = true
		wantBytes, _ := os.ReadFile(path)
		gotBytes, err := os.ReadFile(filepath.Join(got, relative))
		if err != nil || !bytes.Equal(wantBytes, gotBytes) {
			t.Errorf("%s: not copied whole (%v)", relative, err)
		}
		return nil
	})
	filepath.WalkDir(got, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || ignored(entry.Name()) {
			return err
		}
		if relative, _ := filepath.Rel(got, path); !files[relative] {
			t.Errorf("%s: in the backup, not in the source", relative)
		}
		return nil
	})
}

// TestBackupWhileWriting backs up a data dir whose index takes writes and snapshots throughout,
// then opens the copy: it must hold every write acknowledged before the backup began, with its
// vector, and only whole writes after it; the other parts must be exact copies. A second backup
// into the same directory copies only what changed and removes what went.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	dest := filepath.Join(t.TempDir(), "backup")
	options := embedded.Options{SyncWrites: true, SnapshotBytes: 4096, Logger: slog.New(slog.DiscardHandler)}
	ix, err := embedded.Open(filepath.Join(data, "index"), options)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.CreateVersion(ctx, "v1", dim); err != nil {
		t.Fatal(err)
	}
	const before = 2000
	for start := 0; start < before; start += 100 {
		if err := ix.Upsert(ctx, "v1", items(start, start+100)); err != nil {
			t.Fatal(err)
		}
	}
	store, err := cropstore.OpenLocal(filepath.Join(data, "crops"))
	if err != nil {
		t.Fatal(err)
	}
	var crops []cropstore.CropRecord
	for n := range 30 {
		crops = append(crops, putCrop(t, store, n))
	}
	write(t, filepath.Join(data, "models", "active"), "v1\n")
	write(t, filepath.Join(data, "models", "v1", "weights.pth"), strings.Repeat("w", 5000))
	write(t, filepath.Join(data, "watches", "w1.json"), `{"id":"w1"}`)
	write(t, filepath.Join(data, "watches", "w1.img"), "image")
	set, err := eval.OpenLabelledSet(filepath.Join(data, "validation"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.AddPerson([]eval.LabelledCrop{
		{CropID: "a", Camera: "gate", JPEG: tinyJPEG(t), Query: true},
		{CropID: "b", Camera: "hall", JPEG: tinyJPEG(t)},
	}, "test person"); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(data, "audit.log"), `{"route":"POST /v1/search"}`+"\n")
	write(t, filepath.Join(data, "audit.log.1"), `{"route":"GET /v1/crops"}`+"\n")
	sources := Sources{
		Index: filepath.Join(data, "index"), Crops: filepath.Join(data, "crops"), Models: filepath.Join(data, "models"),
		Watches: filepath.Join(data, "watches"), Validation: filepath.Join(data, "validation"), AuditLog: filepath.Join(data, "audit.log"),
	}

	// Writes (and the snapshots they start) go on during the backup.
	writerCtx, stopWriter := context.WithCancel(ctx)
	var writer sync.WaitGroup
	writer.Go(func() {
		for start := before; writerCtx.Err() == nil; start += 50 {
			if err := ix.Upsert(ctx, "v1", items(start, start+50)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	time.Sleep(20 * time.Millisecond)
	parts, err := Run(ctx, sources, dest)
	stopWriter()
	writer.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range parts {
		if part.Skipped != "" || part.Copied == 0 {
			t.Errorf("part %s: %+v, want files copied", part.Name, part)
		}
	}

	written, _ := ix.Count(ctx, "v1")
	copied, err := embedded.Open(filepath.Join(dest, "index"), embedded.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the backup's index does not open: %v", err)
	}
	count, err := copied.Count(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the backup holds %d items of %d written by the end", count, written)
	if count < before || count%50 != 0 {
		t.Errorf("the backup holds %d items: want the %d written before it and whole batches of 50 after", count, before)
	}
	ids := make([]string, 0, count)
	for id := range count {
		ids = append(ids, fmt.Sprint(id))
	}
	got, err := copied.Get(ctx, "v1", ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != count {
		t.Errorf("the backup holds %d items, but ids 0..%d give %d: a gap in what it kept", count, count-1, len(got))
	}
	for _, item := range got {
		var id int
		fmt.Sscan(item.ID, &id)
		if want := vectorOf(id); item.Vector[3] != want[3] || item.Vector[dim-1] != want[dim-1] {
			t.Errorf("item %s: vector %v, wrote %v", item.ID, item.Vector[:4], want[:4])
			break
		}
	}
	copied.Close()
	for _, part := range []string{"crops", "models", "watches", "validation"} {
		sameTree(t, filepath.Join(data, part), filepath.Join(dest, part))
	}
	for _, name := range []string{"audit.log", "audit.log.1"} {
		if want, _ := os.ReadFile(filepath.Join(data, name)); !bytes.Equal(want, mustRead(t, filepath.Join(dest, name))) {
			t.Errorf("%s not copied", name)
		}
	}
	restored, err := eval.OpenLabelledSet(filepath.Join(dest, "validation"))
	if err != nil || len(restored.People) != 1 {
		t.Errorf("the backup's validation set: %+v, %v", restored, err)
	}

	// Again: a crop pruned, one added, one watch deleted.
	if err := store.Delete(ctx, crops[0].ID); err != nil {
		t.Fatal(err)
	}
	putCrop(t, store, 100)
	os.Remove(filepath.Join(data, "watches", "w1.json"))
	os.Remove(filepath.Join(data, "watches", "w1.img"))
	parts, err = Run(ctx, sources, dest)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Part{}
	for _, part := range parts {
		byName[part.Name] = part
	}
	if crops := byName["crops"]; crops.Copied != 1 || crops.Removed != 1 || crops.Unchanged != 29 {
		t.Errorf("second backup of the crops: %+v, want 1 copied, 1 removed, 29 unchanged", crops)
	}
	if models := byName["models"]; models.Copied != 0 || models.Unchanged != 2 {
		t.Errorf("second backup of the models: %+v, want nothing copied", models)
	}
	if watches := byName["watches"]; watches.Removed != 2 {
		t.Errorf("second backup of the watches: %+v, want 2 removed", watches)
	}
	for _, part := range []string{"crops", "models", "watches", "validation"} {
		sameTree(t, filepath.Join(data, part), filepath.Join(dest, part))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBackupRefuses(t *testing.T) {
	data := t.TempDir()
	sources := Sources{Crops: filepath.Join(data, "crops"), Models: filepath.Join(data, "models")}
	if _, err := Run(context.Background(), sources, filepath.Join(data, "crops", "backup")); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("a backup inside the crop store: %v, want refused", err)
	}
	if _, err := Run(context.Background(), Sources{Crops: filepath.Join(data, "crops", "day")}, filepath.Join(data, "crops")); err == nil {
		t.Error("a backup over the data it copies: no error")
	}
	dest := filepath.Join(t.TempDir(), "backup")
	if err := os.MkdirAll(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockDest(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := Run(context.Background(), sources, dest); err == nil || !strings.Contains(err.Error(), "another backup") {
		t.Errorf("a second backup into the same directory at once: %v, want refused", err)
	}
	sources.Index = filepath.Join(data, "index")
	parts, err := Run(context.Background(), sources, filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range parts {
		if part.Skipped == "" {
			t.Errorf("part %s of an empty data dir: %+v, want skipped with a reason", part.Name, part)
		}
	}
}

// TestMirror refreshes a mirror after each kind of change a source sees, and checks the two trees
// are the same again, with the counts the report gives.
func TestMirror(t *testing.T) {
	source, target := t.TempDir(), filepath.Join(t.TempDir(), "mirror")
	write(t, filepath.Join(source, "a", "1.jpg"), "one")
	write(t, filepath.Join(source, "a", "2.jpg"), "two")
	write(t, filepath.Join(source, "b", "3.jpg"), "three")
	write(t, filepath.Join(source, "c"), "a file that becomes a directory")
	write(t, filepath.Join(source, "LOCK"), "")
	write(t, filepath.Join(source, "a", ".1.jpg.tmp-123"), "a writer's temporary")
	steps := []struct {
		name                       string
		change                     func()
		copied, unchanged, removed int
	}{
		{"first copy", func() {}, 4, 0, 0},
		{"nothing changed", func() {}, 0, 4, 0},
		{"a file changed", func() { write(t, filepath.Join(source, "a", "2.jpg"), "two, longer") }, 1, 3, 0},
		{"a directory removed", func() { os.RemoveAll(filepath.Join(source, "b")) }, 0, 3, 1},
		{"a file became a directory", func() {
			os.Remove(filepath.Join(source, "c"))
			write(t, filepath.Join(source, "c", "4.jpg"), "four")
			write(t, filepath.Join(source, "c", "5.jpg"), "five")
		}, 2, 2, 1},
	}
	for _, step := range steps {
		step.change()
		var part Part
		if err := mirror(context.Background(), source, target, &part); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if part.Copied != step.copied || part.Unchanged != step.unchanged || part.Removed != step.removed {
			t.Errorf("%s: copied %d, unchanged %d, removed %d; want %d, %d, %d", step.name, part.Copied, part.Unchanged, part.Removed, step.copied, step.unchanged, step.removed)
		}
		sameTree(t, source, target)
	}
	for _, name := range []string{"LOCK", filepath.Join("a", ".1.jpg.tmp-123")} {
		if !isMissing(filepath.Join(target, name)) {
			t.Errorf("%s was copied", name)
		}
	}
}
