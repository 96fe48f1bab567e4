package archiver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/stream"
)

func TestHandleStoresRecordsAndRejectsBadOnes(t *testing.T) {
	store, err := cropstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	good := cropstore.CropRecord{ID: cropstore.NewID("door", when, 4, 1), Camera: "door", Time: when, Frame: 4, JPEG: []byte{0xFF, 0xD8, 0xFF, 0xD9}}
	badID := good
	badID.ID = "../../etc/passwd"
	notJPEG := good
	notJPEG.ID, notJPEG.JPEG = cropstore.NewID("door", when, 5, 0), []byte("GIF89a")
	archive := New(store)
	batch := []stream.Message{{Record: good}, {Record: badID}, {Record: good}, {Record: notJPEG}}
	err = archive.Handle(context.Background(), batch)
	var rejected *stream.RejectedError
	if !errors.As(err, &rejected) || len(rejected.Records) != 2 || rejected.Records[1] == nil || rejected.Records[3] == nil {
		t.Fatalf("want records 1 and 3 rejected, got %v", err)
	}
	for _, i := range []int{1, 3} {
		if reason := stream.Reason(rejected.Records[i]); reason != "invalid-record" {
			t.Errorf("record %d: reason %q", i, reason)
		}
	}
	stored, err := store.Get(context.Background(), good.ID)
	if err != nil || stored.Frame != 4 || string(stored.JPEG) != string(good.JPEG) {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if archive.Archived() != 2 {
		t.Errorf("archived %d, want 2 (the redelivered record counts again)", archive.Archived())
	}
}

// TestHandleDropsErasedRecords: a crop of an erased track is neither stored nor retried nor
// dead-lettered, and the rest of its batch is stored.
func TestHandleDropsErasedRecords(t *testing.T) {
	ctx := context.Background()
	store, err := cropstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 11, 29, 9, 30, 0, 0, time.UTC)
	erasedTrack := cropstore.CropRecord{ID: cropstore.NewID("door", when, 4, 0), Camera: "door", Time: when, Frame: 4, Track: 3, JPEG: []byte{0xFF, 0xD8, 0xFF, 0xD9}}
	other := erasedTrack
	other.ID, other.Track = cropstore.NewID("door", when, 4, 1), 5
	if err := store.RecordErasure(ctx, cropstore.Erasure{Tracks: []cropstore.ErasedTrack{{Camera: "door", Track: 3}}}); err != nil {
		t.Fatal(err)
	}
	archive := New(store)
	if err := archive.Handle(ctx, []stream.Message{{Record: erasedTrack}, {Record: other}}); err != nil {
		t.Fatalf("a batch with an erased crop: %v; want it done with", err)
	}
	if _, err := store.Metadata(ctx, erasedTrack.ID); !errors.Is(err, cropstore.ErrNotFound) {
		t.Errorf("the erased track's crop was stored: %v", err)
	}
	if _, err := store.Metadata(ctx, other.ID); err != nil {
		t.Errorf("the other crop: %v", err)
	}
	if archive.Archived() != 1 || archive.Erased() != 1 {
		t.Errorf("archived %d, erased %d; want 1 and 1", archive.Archived(), archive.Erased())
	}
}

type failingStore struct{}

func (failingStore) Put(context.Context, cropstore.CropRecord) error { return errors.New("disk full") }

func TestHandleFailsWholeBatchOnStoreError(t *testing.T) {
	when := time.Now()
	record := cropstore.CropRecord{ID: cropstore.NewID("door", when, 1, 0), Camera: "door", Time: when, JPEG: []byte{1}}
	err := New(failingStore{}).Handle(context.Background(), []stream.Message{{Record: record}})
	var rejected *stream.RejectedError
	if err == nil || errors.As(err, &rejected) {
		t.Fatalf("want a retryable error, got %v", err)
	}
}

// gateStore lets Puts return only once `want` of them are in flight together: a batch written one
// record at a time never opens it.
type gateStore struct {
	mu       sync.Mutex
	inFlight int
	want     int
	open     chan struct{}
	stored   map[string]bool
}

func (s *gateStore) Put(ctx context.Context, record cropstore.CropRecord) error {
	s.mu.Lock()
	s.inFlight++
	if s.inFlight == s.want {
		close(s.open)
	}
	s.mu.Unlock()
	select {
	case <-s.open:
	case <-time.After(5 * time.Second):
		return errors.New("the other writes never came")
	}
	s.mu.Lock()
	s.stored[record.ID] = true
	s.mu.Unlock()
	return nil
}

func TestHandleWritesSideBySide(t *testing.T) {
	store := &gateStore{want: 4, open: make(chan struct{}), stored: map[string]bool{}}
	when := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	var batch []stream.Message
	for frame := range 20 {
		batch = append(batch, stream.Message{Record: cropstore.CropRecord{ID: cropstore.NewID("door", when, int64(frame), 0), Camera: "door", Time: when, JPEG: []byte{1}}})
	}
	archive := New(store)
	if err := archive.Handle(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(store.stored) != len(batch) || archive.Archived() != int64(len(batch)) {
		t.Fatalf("stored %d, archived %d of %d", len(store.stored), archive.Archived(), len(batch))
	}
}
