package embedder

import (
	"context"
	"errors"
	"image"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
)

// Get makes memoryIndex a Gallery.
func (ix *memoryIndex) Get(_ context.Context, _ string, ids []string) ([]index.Item, error) {
	if ix.fail != nil {
		return nil, ix.fail
	}
	var items []index.Item
	for _, id := range ids {
		if item, ok := ix.items[id]; ok {
			items = append(items, item)
		}
	}
	return items, nil
}

// missingImageStore answers one crop's image with ErrNotFound, as when retention deletes it
// between the walk and the read.
type missingImageStore struct {
	*cropstore.Local
	missing string
}

func (s missingImageStore) Image(ctx context.Context, id string) ([]byte, error) {
	if id == s.missing {
		return nil, cropstore.ErrNotFound
	}
	return s.Local.Image(ctx, id)
}

func TestBackfill(t *testing.T) {
	ctx := context.Background()
	local, err := cropstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// 70 stored crops: 10 already in the gallery, one whose JPEG is broken, one whose image
	// disappears before it is read.
	var records []cropstore.CropRecord
	for frame := range int64(70) {
		image := jpegOf(t, uint8(3*frame))
		if frame == 33 {
			image = image[:len(image)/3]
		}
		record := message(t, frame, image).Record
		if err := local.Put(ctx, record); err != nil {
			t.Fatal(err)
		}
		records = append(records, record)
	}
	gallery := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}}
	for _, record := range records[:10] {
		gallery.items[record.ID] = index.Item{ID: record.ID, Vector: []float32{9, 9, 9}}
	}
	embedder, err := New(ctx, Options{Model: meanColourModel{}, Version: "v2", Index: gallery})
	if err != nil {
		t.Fatal(err)
	}
	store := missingImageStore{Local: local, missing: records[40].ID}
	progress := 0
	stats, err := embedder.Backfill(ctx, store, gallery, BackfillOptions{BatchSize: 16, Progress: func(BackfillStats) { progress++ }})
	if err != nil {
		t.Fatal(err)
	}
	want := BackfillStats{Seen: 70, Present: 10, Embedded: 58, Rejected: 1, Missing: 1}
	stats.Elapsed = 0
	if stats != want {
		t.Errorf("stats %+v, want %+v", stats, want)
	}
	if progress == 0 {
		t.Error("Progress was never called")
	}
	for i, record := range records {
		item, ok := gallery.items[record.ID]
		switch {
		case i < 10:
			if item.Vector[0] != 9 {
				t.Errorf("crop %d was in the gallery and was embedded again", i)
			}
		case i == 33 || i == 40:
			if ok {
				t.Errorf("crop %d (broken or missing) is in the gallery", i)
			}
		case !ok:
			t.Errorf("crop %d was not backfilled", i)
		case item.Metadata.Camera != record.Camera || item.Metadata.Track != record.Track ||
			!item.Metadata.Time.Equal(record.Time) || item.Metadata.Model != "v2" || item.Metadata.Box != [4]int32{1, 2, 30, 60}:
			t.Errorf("crop %d metadata %+v, from record %+v", i, item.Metadata, record)
		}
	}

	// A second run finds everything in place (the broken crop is tried again and rejected again).
	again, err := embedder.Backfill(ctx, store, gallery, BackfillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Embedded != 0 || again.Present != 68 || again.Rejected != 1 {
		t.Errorf("second backfill %+v, want nothing embedded", again)
	}

	// An index failure stops the backfill with the error.
	gallery.fail = errors.New("disk full")
	if _, err := embedder.Backfill(ctx, store, gallery, BackfillOptions{}); err == nil || !errors.Is(err, gallery.fail) {
		t.Errorf("backfill with a failing index: %v", err)
	}
}

// slowModel takes a fixed time per batch.
type slowModel struct {
	meanColourModel
	per time.Duration
}

func (m slowModel) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	time.Sleep(m.per)
	return m.meanColourModel.Embed(ctx, images)
}

// TestBackfillShare: a backfill given a share of the time rests after each batch, so that its
// batches take no more than that share; a share outside (0, 1] is refused.
func TestBackfillShare(t *testing.T) {
	ctx := context.Background()
	local, err := cropstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for frame := range int64(4) {
		if err := local.Put(ctx, message(t, frame, jpegOf(t, uint8(40*frame))).Record); err != nil {
			t.Fatal(err)
		}
	}
	const per = 100 * time.Millisecond
	for _, share := range []float64{-0.5, 1.5} {
		gallery := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}}
		embed, err := New(ctx, Options{Model: meanColourModel{}, Version: "v2", Index: gallery})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := embed.Backfill(ctx, local, gallery, BackfillOptions{Share: share}); err == nil {
			t.Errorf("share %v accepted", share)
		}
	}
	gallery := &memoryIndex{items: map[string]index.Item{}, created: map[string]int{}}
	embed, err := New(ctx, Options{Model: slowModel{per: per}, Version: "v2", Index: gallery})
	if err != nil {
		t.Fatal(err)
	}
	// Four batches of one crop, each at least 100 ms of work: with a quarter of the time, at
	// least 300 ms of rest after each.
	stats, err := embed.Backfill(ctx, local, gallery, BackfillOptions{BatchSize: 1, Share: 0.25})
	if err != nil || stats.Embedded != 4 {
		t.Fatalf("backfill: %+v, %v", stats, err)
	}
	if least := 4 * per * 4; stats.Elapsed < least {
		t.Errorf("four batches of %s at a quarter share took %s, want at least %s", per, stats.Elapsed, least)
	}
}
