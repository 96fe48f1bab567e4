package cropstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWalk walks one busy camera-day of a local store (30,000 crops, a camera's 26 minutes
// at the street video's rate) for a page of 60 (the page's browse grid) and for a 5-minute window
// (a track's erasure, a listing from a time), against reading the whole day's records first, as
// Walk did before it read only what it visits (the reference).
func BenchmarkWalk(b *testing.B) {
	ctx := context.Background()
	store, err := OpenLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	day := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	if err := putCrops(ctx, store, "gate", day, 52*time.Millisecond, 30000); err != nil {
		b.Fatal(err)
	}
	window := Filter{Camera: "gate", From: day.Add(10 * time.Minute), To: day.Add(15 * time.Minute)}
	stop := errors.New("stop")
	for _, test := range []struct {
		name   string
		filter Filter
		limit  int
	}{
		{"page", Filter{Camera: "gate"}, 60},
		{"window", window, 0},
	} {
		b.Run(test.name, func(b *testing.B) {
			for b.Loop() {
				seen := 0
				err := store.Walk(ctx, test.filter, func(CropRecord) error {
					if seen++; seen == test.limit {
						return stop
					}
					return nil
				})
				if err != nil && !errors.Is(err, stop) {
					b.Fatal(err)
				}
			}
		})
		b.Run(test.name+"/reference", func(b *testing.B) {
			for b.Loop() {
				all, err := store.dayIDs(filepath.Join(store.Root(), "gate", day.Format("20060102")))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := store.readRecords(ctx, all); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
