package cropstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore/s3test"
)

func TestIDRoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 27, 8, 30, 15, 123456000, time.UTC)
	cases := []struct {
		camera    string
		frame     int64
		detection int
	}{
		{"gate", 0, 0},
		{"gate_north.2", 795, 7},
		{"cam-1", 1 << 40, 12},
	}
	for _, tc := range cases {
		id := NewID(tc.camera, when, tc.frame, tc.detection)
		parsed, err := ParseID(id)
		if err != nil {
			t.Fatalf("ParseID(%q): %v", id, err)
		}
		want := ParsedID{Camera: tc.camera, Time: when, Frame: tc.frame, Detection: tc.detection}
		if parsed != want {
			t.Errorf("ParseID(%q) = %+v, want %+v", id, parsed, want)
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{
		"", "../../etc/passwd", "gate_20261127T083015123456_1", "../_20261127T083015123456_1_0",
		"gate/x_20261127T083015123456_1_0", "gate_2026112T083015123456_1_0", "gate_20261127T083015123456_-1_0",
		"gate_20261127T083015123456_01_0", "gate_20261127T083015123456_1_x", "gate_20261399T083015123456_1_0",
	} {
		if _, err := ParseID(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

// store is what both backends offer.
type store interface {
	Put(context.Context, CropRecord) error
	Get(context.Context, string) (CropRecord, error)
	Metadata(context.Context, string) (CropRecord, error)
	Delete(context.Context, string) error
	Cameras(context.Context) ([]string, error)
	Walk(context.Context, Filter, func(CropRecord) error) error
	DeleteBefore(context.Context, time.Time) (int, error)
	DeleteCameraBefore(context.Context, string, time.Time) (int, error)
}

// backends runs test on a local store and on S3 stores (package s3test): always gofakes3, an
// in-process S3 server that minio-go talks HTTP to, and a real server when REIDTEST_S3_ENDPOINT
// names one.
func backends(t *testing.T, test func(t *testing.T, store store)) {
	t.Run("local", func(t *testing.T) {
		local, err := OpenLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		test(t, local)
	})
	for _, bucket := range s3test.Buckets(t, "crops") {
		t.Run("s3-"+bucket.Kind, func(t *testing.T) {
			options := bucketOptions(bucket)
			test(t, openBucket(t, options))
			options.Bucket = "missing-" + bucket.Name
			if _, err := OpenS3(context.Background(), options); err == nil || !strings.Contains(err.Error(), "no bucket") {
				t.Errorf("a missing bucket opened: %v", err)
			}
		})
	}
}

func bucketOptions(bucket s3test.Bucket) S3Options {
	return S3Options{Endpoint: bucket.Endpoint, Bucket: bucket.Name, Region: bucket.Region, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey}
}

func openBucket(t *testing.T, options S3Options) *S3 {
	t.Helper()
	opened, err := OpenS3(context.Background(), options)
	if err != nil {
		t.Fatal(err)
	}
	return opened
}

func TestStore(t *testing.T) { backends(t, testStore) }

func testStore(t *testing.T, store store) {
	ctx := context.Background()
	base := time.Date(2026, 11, 27, 23, 59, 59, 0, time.UTC)
	var ids []string
	for i, camera := range []string{"gate", "gate", "lobby"} {
		when := base.Add(time.Duration(i) * time.Second) // the third crop falls on the next day
		record := CropRecord{ID: NewID(camera, when, int64(i), 0), Camera: camera, Time: when, Frame: int64(i),
			Box: Box{X: 1, Y: 2, Width: 3, Height: 4}, Score: 0.9, Track: 7, Detector: "yolo-fastest", JPEG: []byte{0xFF, 0xD8, byte(i), 0xFF, 0xD9}}
		if err := store.Put(ctx, record); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, record.ID)
	}
	got, err := store.Get(ctx, ids[1])
	if err != nil || got.ID != ids[1] || got.Frame != 1 || got.Box.Height != 4 || got.JPEG[2] != 1 || got.Detector != "yolo-fastest" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	cameras, err := store.Cameras(ctx)
	if err != nil || len(cameras) != 2 || cameras[0] != "gate" || cameras[1] != "lobby" {
		t.Fatalf("Cameras = %v, %v", cameras, err)
	}
	walked := walkIDs(t, store, Filter{Camera: "gate", From: base.Add(500 * time.Millisecond)})
	if len(walked) != 1 || walked[0] != ids[1] {
		t.Fatalf("Walk(gate, from) = %v, want [%s]", walked, ids[1])
	}
	// A record whose id names another camera, an empty image or an escaping id never lands.
	bad := []CropRecord{
		{ID: ids[0], Camera: "lobby", JPEG: []byte{1}},
		{ID: NewID("gate", base, 9, 0), Camera: "gate"},
		{ID: "../../x_20261127T083015123456_1_0", Camera: "..", JPEG: []byte{1}},
	}
	for _, record := range bad {
		if err := store.Put(ctx, record); err == nil {
			t.Errorf("Put(%+v) accepted", record)
		}
	}
	// Bytes that are not a JPEG cannot carry the metadata; the archiver dead-letters them.
	for _, image := range [][]byte{nil, {1, 2, 3, 4}, {0xff, 0xd8}} {
		record := CropRecord{ID: NewID("gate", base, 10, 0), Camera: "gate", JPEG: image}
		if err := store.Put(ctx, record); !errors.Is(err, ErrInvalidImage) {
			t.Errorf("Put(image %v) = %v, want ErrInvalidImage", image, err)
		}
	}
	if err := store.Delete(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := store.Delete(ctx, ids[0]); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	if metadata, err := store.Metadata(ctx, ids[2]); err != nil || metadata.Camera != "lobby" || len(metadata.JPEG) != 0 {
		t.Fatalf("Metadata = %+v, %v", metadata, err)
	}
	var everything []string
	if err := store.Walk(ctx, Filter{}, func(record CropRecord) error {
		everything = append(everything, record.ID)
		return nil
	}); err != nil || len(everything) != 2 || everything[0] != ids[1] || everything[1] != ids[2] {
		t.Fatalf("Walk(all) = %v, %v; want [%s %s]", everything, err, ids[1], ids[2])
	}
	// Newest first goes back across days.
	nextDay := base.Add(3 * time.Second)
	later := CropRecord{ID: NewID("gate", nextDay, 3, 0), Camera: "gate", Time: nextDay, Frame: 3, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}
	if err := store.Put(ctx, later); err != nil {
		t.Fatal(err)
	}
	if newest := walkIDs(t, store, Filter{Camera: "gate", Newest: true}); !slices.Equal(newest, []string{later.ID, ids[1]}) {
		t.Fatalf("Walk(gate, newest) = %v, want [%s %s]", newest, later.ID, ids[1])
	}
	if err := store.Delete(ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	// A busier day, put in shuffled order, walks back whole and in time order.
	yard := base.Add(-time.Hour)
	for _, i := range []int{17, 3, 39, 0, 25, 11, 31, 8, 22, 36, 14, 5, 28, 1, 19, 33, 10, 26, 38, 2, 21, 12, 30, 6, 16, 35, 24, 9, 37, 27, 4, 13, 32, 20, 7, 34, 15, 29, 23, 18} {
		when := yard.Add(time.Duration(i) * time.Second)
		if err := store.Put(ctx, CropRecord{ID: NewID("yard", when, int64(i), 0), Camera: "yard", Time: when, Frame: int64(i), JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}); err != nil {
			t.Fatal(err)
		}
	}
	var frames []int64
	if err := store.Walk(ctx, Filter{Camera: "yard"}, func(record CropRecord) error {
		frames = append(frames, record.Frame)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(frames) != 40 {
		t.Fatalf("Walk(yard) gave %d records, want 40", len(frames))
	}
	for i, frame := range frames {
		if frame != int64(i) {
			t.Fatalf("Walk(yard) frames %v, want 0-39 in order", frames)
		}
	}
	if local, ok := store.(*Local); ok {
		leftovers, _ := filepath.Glob(filepath.Join(local.Root(), "*", "*", ".*"))
		if len(leftovers) != 0 {
			t.Fatalf("temporary files left: %v", leftovers)
		}
		if _, err := os.Stat(filepath.Join(local.Root(), "lobby", "20261128")); err != nil {
			t.Fatalf("crop not filed under its day: %v", err)
		}
	}
}

func TestDeleteBefore(t *testing.T) { backends(t, testDeleteBefore) }

func testDeleteBefore(t *testing.T, store store) {
	ctx := context.Background()
	cutoff := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	times := map[string]time.Time{
		"two days old":          cutoff.Add(-50 * time.Hour),
		"yesterday":             cutoff.Add(-20 * time.Hour),
		"earlier the same day":  cutoff.Add(-time.Hour),
		"just before":           cutoff.Add(-time.Microsecond),
		"at the cutoff":         cutoff,
		"later the same day":    cutoff.Add(time.Hour),
		"tomorrow":              cutoff.Add(20 * time.Hour),
		"yesterday, camera two": cutoff.Add(-13 * time.Hour),
	}
	ids := map[string]string{}
	frame := int64(0)
	for name, at := range times {
		camera := "gate"
		if name == "yesterday, camera two" {
			camera = "hall"
		}
		frame++
		id := NewID(camera, at, frame, 0)
		ids[name] = id
		if err := store.Put(ctx, CropRecord{ID: id, Camera: camera, Time: at, Frame: frame, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}); err != nil {
			t.Fatal(err)
		}
	}
	// One camera first, as a shorter retention of its own does: the other's crops stay.
	if deleted, err := store.DeleteCameraBefore(ctx, "hall", cutoff); err != nil || deleted != 1 {
		t.Errorf("DeleteCameraBefore hall: %d, %v; want its 1 old crop", deleted, err)
	}
	if _, err := store.Get(ctx, ids["two days old"]); err != nil {
		t.Errorf("deleting hall's crops deleted gate's: %v", err)
	}
	if deleted, err := store.DeleteCameraBefore(ctx, "yard", cutoff); err != nil || deleted != 0 {
		t.Errorf("DeleteCameraBefore of a camera without crops: %d, %v", deleted, err)
	}
	if _, err := store.DeleteCameraBefore(ctx, "../gate", cutoff); !errors.Is(err, ErrInvalidID) {
		t.Errorf("DeleteCameraBefore of a path: %v", err)
	}
	deleted, err := store.DeleteBefore(ctx, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 4 {
		t.Errorf("deleted %d, want 4", deleted)
	}
	for name, id := range ids {
		_, err := store.Get(ctx, id)
		gone := errors.Is(err, ErrNotFound)
		if want := times[name].Before(cutoff); gone != want {
			t.Errorf("%s (%s): gone %v, want %v (err %v)", name, id, gone, want, err)
		}
	}
	// Old day directories are removed whole; the cutoff's day stays for what is left in it.
	if local, ok := store.(*Local); ok {
		if _, err := os.Stat(filepath.Join(local.Root(), "gate", "20261126")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("yesterday's directory is still there: %v", err)
		}
	}
	if deleted, err := store.DeleteBefore(ctx, cutoff); err != nil || deleted != 0 {
		t.Errorf("second DeleteBefore: %d, %v; want nothing left to delete", deleted, err)
	}
}

// TestLargeDay holds more objects in one camera's day than S3 lists in one page or deletes in one
// request (1,000 each), so Walk and DeleteBefore must follow continuations and split deletes.
// gofakes3 lists a bucket in one page; the continuations are exercised against a real server.
func TestLargeDay(t *testing.T) { backends(t, testLargeDay) }

func testLargeDay(t *testing.T, store store) {
	ctx := context.Background()
	const crops = 1100
	start := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	ids := make([]string, crops)
	for i := range ids {
		ids[i] = NewID("gate", start.Add(time.Duration(i)*time.Second), int64(i), 0)
	}
	if err := putCrops(ctx, store, "gate", start, time.Second, crops); err != nil {
		t.Fatal(err)
	}

	walked := walkIDs(t, store, Filter{})
	if len(walked) != crops {
		t.Fatalf("walked %d crops, put %d", len(walked), crops)
	}
	for i, id := range walked {
		if id != ids[i] {
			t.Fatalf("walk %d: %s, want %s (time order)", i, id, ids[i])
		}
	}

	// A window in the middle of the day: S3 lists from its start (the keys are in time order).
	window := walkIDs(t, store, Filter{From: start.Add(700 * time.Second), To: start.Add(709*time.Second + 500*time.Millisecond)})
	if len(window) != 10 || window[0] != ids[700] || window[9] != ids[709] {
		t.Fatalf("walk of 700-709.5 s: %v; want crops 700-709", window)
	}
	newest := walkIDs(t, store, Filter{From: start.Add(700 * time.Second), Newest: true})
	if len(newest) != crops-700 || newest[0] != ids[crops-1] || newest[len(newest)-1] != ids[700] {
		t.Fatalf("newest-first walk from 700 s: %d crops from %v; want %d from %s to %s", len(newest), newest[:1], crops-700, ids[crops-1], ids[700])
	}

	deleted, err := store.DeleteBefore(ctx, start.Add(1050*time.Second))
	if err != nil || deleted != 1050 {
		t.Fatalf("DeleteBefore: %d, %v; want 1050", deleted, err)
	}
	left := walkIDs(t, store, Filter{})
	if len(left) != crops-1050 || left[0] != ids[1050] {
		t.Fatalf("%d crops left, first %v; want %d from %s", len(left), left[:min(1, len(left))], crops-1050, ids[1050])
	}
}

// putCrops stores n crops of camera, interval apart from start, with sixteen writers, as a busy
// archiver has: one at a time would take seconds against a server.
func putCrops(ctx context.Context, store interface {
	Put(context.Context, CropRecord) error
}, camera string, start time.Time, interval time.Duration, n int) error {
	puts := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			var first error
			for i := range puts {
				at := start.Add(time.Duration(i) * interval)
				record := CropRecord{ID: NewID(camera, at, int64(i), 0), Camera: camera, Time: at, Frame: int64(i), JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}}
				if err := store.Put(ctx, record); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	for i := range n {
		puts <- i
	}
	close(puts)
	var errList []error
	for range 16 {
		errList = append(errList, <-errs)
	}
	return errors.Join(errList...)
}

// walkIDs returns the ids Walk visits, in its order.
func walkIDs(t *testing.T, store store, filter Filter) []string {
	t.Helper()
	var ids []string
	if err := store.Walk(context.Background(), filter, func(record CropRecord) error {
		ids = append(ids, record.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestTrackID(t *testing.T) {
	monday := time.Date(2026, 11, 30, 8, 0, 0, 999_000_000, time.UTC)
	tests := []struct {
		name       string
		track      int64
		wantNumber int64
	}{
		{"first track", TrackID(monday, 1), 1},
		{"a busy session's", TrackID(monday, 987_654), 987_654},
		{"a crop from before track ids had sessions", 17, 17},
		{"untracked", -1, -1},
		{"untracked, zero", 0, 0},
	}
	for _, test := range tests {
		if got := TrackNumber(test.track); got != test.wantNumber {
			t.Errorf("%s: TrackNumber(%d) = %d, want %d", test.name, test.track, got, test.wantNumber)
		}
	}
	if next := TrackID(monday.Add(time.Second), 1); next <= TrackID(monday, 999_999) {
		t.Errorf("a session a second later starts at %d, inside the one before", next)
	}
	if limit := int64(1) << 53; TrackID(time.Date(2255, 1, 1, 0, 0, 0, 0, time.UTC), 999_999) >= limit {
		t.Error("track ids reach 2^53 before 2255: JavaScript would round them")
	}
}

// TestWalkReadsOnlyWhatItVisits: a day of a busy camera holds a million crops, and a listing page or
// a track's erasure wants a few of them, so a walk reads the records of its time range only (by
// the time in their ids, with a second's margin), in order, and stops reading soon after fn stops
// it.
func TestWalkReadsOnlyWhatItVisits(t *testing.T) {
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 10000 {
		ids = append(ids, NewID("gate", day.Add(time.Duration(i)*8*time.Second), int64(i), 0))
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for _, test := range []struct {
		name   string
		filter Filter
		stopAt int
		// want is how many records fn sees; maxRead bounds how many are read.
		want, maxRead int
	}{
		{"a page of the day", Filter{}, 60, 60, walkChunk},
		{"the newest page of the day", Filter{Newest: true}, 60, 60, walkChunk},
		{"the newest of five minutes", Filter{From: day.Add(10 * time.Hour), To: day.Add(10*time.Hour + 5*time.Minute), Newest: true}, 10, 10, 38},
		{"five minutes", Filter{From: day.Add(10 * time.Hour), To: day.Add(10*time.Hour + 5*time.Minute)}, 0, 38, 38},
		{"the whole day", Filter{}, 0, 10000, 10000},
	} {
		t.Run(test.name, func(t *testing.T) {
			read := 0
			readRecords := func(ctx context.Context, chunk []string) ([]CropRecord, error) {
				read += len(chunk)
				records := make([]CropRecord, len(chunk))
				for i, id := range chunk {
					parsed, err := ParseID(id)
					if err != nil {
						return nil, err
					}
					records[i] = CropRecord{ID: id, Camera: parsed.Camera, Time: parsed.Time, Frame: parsed.Frame}
				}
				return records, nil
			}
			var seen []CropRecord
			err := visitDay(context.Background(), "gate", ids, test.filter, readRecords, func(record CropRecord) error {
				seen = append(seen, record)
				if len(seen) == test.stopAt {
					return errStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				t.Fatal(err)
			}
			if len(seen) != test.want || read > test.maxRead {
				t.Errorf("visited %d records and read %d; want %d visited and at most %d read", len(seen), read, test.want, test.maxRead)
			}
			for i := 1; i < len(seen); i++ {
				if test.filter.Newest != seen[i].Time.Before(seen[i-1].Time) {
					t.Fatalf("record %d at %s comes after one at %s (newest first: %v)", i, seen[i].Time, seen[i-1].Time, test.filter.Newest)
				}
			}
			if test.filter.Newest && test.filter.To.IsZero() && !seen[0].Time.Equal(day.Add(9999*8*time.Second)) {
				t.Errorf("the newest walk starts at %s, not the day's last crop", seen[0].Time)
			}
		})
	}
}

var errStop = errors.New("stop")
