package cropstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore/s3test"
)

// erasingStore is a store with its erasure record.
type erasingStore interface {
	store
	RecordErasure(context.Context, Erasure) error
	Erased(context.Context, CropRecord) (bool, error)
	Erasures(context.Context) ([]Erasure, error)
}

// sharedBackends runs test with two stores over the same directory or bucket, as two processes
// of a site (the lookup server and an archiver) have them.
func sharedBackends(t *testing.T, test func(t *testing.T, first, second erasingStore)) {
	t.Run("local", func(t *testing.T) {
		dir := t.TempDir()
		first, err := OpenLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		second, err := OpenLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		test(t, first, second)
	})
	for _, bucket := range s3test.Buckets(t, "erasures") {
		t.Run("s3-"+bucket.Kind, func(t *testing.T) {
			options := bucketOptions(bucket)
			test(t, openBucket(t, options), openBucket(t, options))
		})
	}
}

// erasuresOf is a store's erasure view, whose clock a test moves.
func erasuresOf(store erasingStore) *erasures {
	switch store := store.(type) {
	case *Local:
		return store.erasures
	case *S3:
		return store.erasures
	}
	panic("not a store")
}

func TestErasures(t *testing.T) { sharedBackends(t, testErasures) }

func testErasures(t *testing.T, first, second erasingStore) {
	ctx := context.Background()
	at := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	crop := func(camera string, track int64, frame int64) CropRecord {
		when := at.Add(time.Duration(frame) * time.Second)
		return CropRecord{ID: NewID(camera, when, frame, 0), Camera: camera, Time: when, Track: track, Frame: frame, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}
	}
	named := crop("hall", 9, 1)
	for _, record := range []CropRecord{crop("gate", 7, 1), named, crop("gate", 8, 2)} {
		if err := first.Put(ctx, record); err != nil {
			t.Fatal(err)
		}
	}
	// The second store has read the (empty) record before the erasure, as a running archiver has.
	if erased, err := second.Erased(ctx, crop("gate", 7, 3)); err != nil || erased {
		t.Fatalf("before any erasure: erased %v, %v", erased, err)
	}
	clock := at
	erasuresOf(second).now = func() time.Time { return clock }
	erasuresOf(second).loadedAt = clock

	erasure := Erasure{Time: at.Add(time.Hour), CropIDs: []string{named.ID, "not-an-id"}, Tracks: []ErasedTrack{{Camera: "gate", Track: 7}}}
	if err := first.RecordErasure(ctx, erasure); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		record CropRecord
		erased bool
	}{
		{"a later crop of the erased track", crop("gate", 7, 50), true},
		{"the named crop, put again", named, true},
		{"another track of the camera", crop("gate", 8, 51), false},
		{"the same track number at another camera", crop("hall", 7, 52), false},
		{"another crop of the named crop's track", crop("hall", 9, 53), false},
	}
	check := func(who string, store erasingStore) {
		t.Helper()
		for _, test := range tests {
			erased, err := store.Erased(ctx, test.record)
			if err != nil || erased != test.erased {
				t.Errorf("%s: %s: erased %v, %v; want %v", who, test.name, erased, err, test.erased)
			}
			err = store.Put(ctx, test.record)
			if test.erased != errors.Is(err, ErrErased) || (!test.erased && err != nil) {
				t.Errorf("%s: %s: Put = %v; erased %v", who, test.name, err, test.erased)
			}
		}
	}
	check("the store that recorded it", first)

	// The other store learns of it at its next refresh, not before.
	if erased, err := second.Erased(ctx, tests[0].record); err != nil || erased {
		t.Fatalf("another process's store knew of the erasure before refreshing: %v, %v", erased, err)
	}
	clock = clock.Add(ErasureRefresh)
	check("another process's store", second)

	// A store opened afterwards (a restarted archiver) knows of it from the start.
	var reopened erasingStore
	switch first := first.(type) {
	case *Local:
		local, err := OpenLocal(first.Root())
		if err != nil {
			t.Fatal(err)
		}
		reopened = local
	case *S3:
		reopened = &S3{client: first.client, bucket: first.bucket}
		reopened.(*S3).erasures = newErasures(reopened.(*S3))
	}
	check("a store opened afterwards", reopened)

	// Every store lists the record whole.
	for who, store := range map[string]erasingStore{"the store that recorded it": first, "another process's": second} {
		records, err := store.Erasures(ctx)
		if err != nil || len(records) != 1 || !slices.Equal(records[0].CropIDs, []string{named.ID}) || !records[0].Time.Equal(erasure.Time) {
			t.Errorf("%s lists %+v, %v; want the one erasure, its invalid id left out", who, records, err)
		}
	}

	// The record is not a camera, and walking the store passes it by.
	cameras, err := first.Cameras(ctx)
	if err != nil || !slices.Equal(cameras, []string{"gate", "hall"}) {
		t.Errorf("cameras %v, %v", cameras, err)
	}
	if deleted, err := first.DeleteBefore(ctx, at.Add(48*time.Hour)); err != nil || deleted == 0 {
		t.Fatalf("DeleteBefore: %d, %v", deleted, err)
	}
	if err := first.Put(ctx, crop("gate", 7, 60)); !errors.Is(err, ErrErased) {
		t.Errorf("after pruning every crop, a crop of the erased track was stored: %v", err)
	}

	// A file written with a slower clock sorts before the newest one seen; a refresh still reads it.
	late := Erasure{Time: at.Add(time.Hour - time.Minute), Tracks: []ErasedTrack{{Camera: "hall", Track: 7}}}
	if err := first.RecordErasure(ctx, late); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(ErasureRefresh)
	if erased, err := second.Erased(ctx, crop("hall", 7, 61)); err != nil || !erased {
		t.Errorf("an erasure recorded under an earlier time was missed: %v, %v", erased, err)
	}

	// A file that is not an erasure stops every Put, naming the file, until it is mended.
	files := erasuresOf(first).files
	if err := files.writeErasure(ctx, "20261129T100000.000000000Z-broken.json", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(ErasureRefresh)
	err = second.Put(ctx, crop("gate", 8, 62))
	if err == nil || errors.Is(err, ErrErased) || !strings.Contains(err.Error(), "broken.json") {
		t.Errorf("Put with a broken erasure file: %v; want an error naming the file", err)
	}
}

// BenchmarkErased is what every Put and every embedded crop pays for the erasure record: one
// look-up among a thousand erasures of a hundred tracks each, parallel as the archiver's writers
// are. The refresh every ErasureRefresh is not in it (one listing of the folder).
func BenchmarkErased(b *testing.B) {
	store, err := OpenLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range 1000 {
		erasure := Erasure{}
		for j := range 100 {
			erasure.Tracks = append(erasure.Tracks, ErasedTrack{Camera: "gate", Track: int64(i*100 + j)})
		}
		if err := store.RecordErasure(ctx, erasure); err != nil {
			b.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	record := CropRecord{ID: NewID("gate", at, 1, 0), Camera: "gate", Time: at, Track: 1 << 40}
	if _, err := store.Erased(ctx, record); err != nil { // the first refresh
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if erased, err := store.Erased(ctx, record); err != nil || erased {
				b.Fatal(erased, err)
			}
		}
	})
}

// BenchmarkLoadErasures is what a stage pays when it opens a bucket holding 2,000 recorded
// erasures, at its first Put: listing them and reading each, eight at once against one after
// another (the reference). The in-process S3 fake answers in microseconds; a real bucket's round
// trips make the readers count for more.
func BenchmarkLoadErasures(b *testing.B) {
	bucket := s3test.Fake(b, "load-erasures")
	options := bucketOptions(bucket)
	ctx := context.Background()
	writer, err := OpenS3(ctx, options)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 2000 {
		erasure := Erasure{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour),
			Tracks: []ErasedTrack{{Camera: "gate", Track: int64(i + 1)}}}
		if err := writer.RecordErasure(ctx, erasure); err != nil {
			b.Fatal(err)
		}
	}
	record := CropRecord{ID: NewID("gate", time.Now(), 1, 0), Camera: "gate", Track: 1}
	for _, readers := range []int{erasureReaders, 1} {
		b.Run(fmt.Sprintf("readers-%d", readers), func(b *testing.B) {
			for b.Loop() {
				store, err := OpenS3(ctx, options)
				if err != nil {
					b.Fatal(err)
				}
				store.erasures.readers = readers
				if erased, err := store.Erased(ctx, record); err != nil || !erased {
					b.Fatal(erased, err)
				}
			}
		})
	}
}
