package lookup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
)

// TestEnforceErasures plays a site restored from a backup taken before two erasures: the record
// (from a newer copy) names a track and a crop that the store, the gallery and a watch hold again.
// Enforcing it erases them, audits it, and finds nothing the second time; a server enforces it
// by itself once it serves.
func TestEnforceErasures(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.WatchDir, c.AdminAPIKeys = t.TempDir(), []string{adminKey} })
	ctx := context.Background()
	query := f.gallery.Crops[1]
	track := trackOf(t, f, query)
	named := f.gallery.Crops[len(f.gallery.Crops)-1]
	if trackOf(t, f, named) == track {
		t.Fatal("the named crop is of the erased track")
	}
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q}`, named))
	want := slices.Sorted(slices.Values(append(cropsOf(t, f, track), named)))
	erasures := []cropstore.Erasure{
		{Time: testStart.Add(time.Hour), Tracks: []cropstore.ErasedTrack{{Camera: track.Camera, Track: track.Track}}},
		{Time: testStart.Add(2 * time.Hour), CropIDs: []string{named}},
	}
	for _, erasure := range erasures {
		if err := f.gallery.Store.RecordErasure(ctx, erasure); err != nil {
			t.Fatal(err)
		}
	}

	enforced, err := f.server.EnforceErasures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(enforced.CropIDs)
	if enforced.Erasures != 2 || !slices.Equal(enforced.CropIDs, want) || enforced.Crops != len(want) || enforced.Vectors != len(want) ||
		!slices.Equal(enforced.Watches, []string{watch.ID}) {
		t.Fatalf("enforced %+v; want the track's crops and the named one (%d), and watch %s", enforced, len(want), watch.ID)
	}
	for _, id := range want {
		if _, err := f.gallery.Store.Metadata(ctx, id); !errors.Is(err, cropstore.ErrNotFound) {
			t.Errorf("crop %s is still stored: %v", id, err)
		}
	}
	if items, _ := f.gallery.Index.Get(ctx, "", want); len(items) != 0 {
		t.Errorf("%d of the crops are still indexed", len(items))
	}
	if status, _, _ := f.do(t, "GET", "/v1/watches/"+watch.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("the watch made from an erased crop answers %d", status)
	}
	var audited []AuditRecord
	for _, record := range f.audit.lines(t) {
		if record.Route == "erasures enforced from the record" {
			audited = append(audited, record)
		}
	}
	if len(audited) != 1 || audited[0].Results != len(want) {
		t.Errorf("audit records %+v; want one for the %d crops", audited, len(want))
	}

	again, err := f.server.EnforceErasures(ctx)
	if err != nil || again.Erasures != 2 || len(again.CropIDs) != 0 || len(again.Watches) != 0 {
		t.Errorf("enforcing again: %+v, %v; want nothing found", again, err)
	}

	// A crop of the track that comes back once more is erased by a server as it starts serving.
	kept := slices.DeleteFunc(slices.Clone(f.gallery.Crops), func(id string) bool { return slices.Contains(want, id) })
	items, err := f.gallery.Index.Get(ctx, "", kept[:1])
	if err != nil || len(items) != 1 {
		t.Fatalf("crop %s: %v, %v", kept[0], items, err)
	}
	restored := items[0]
	restored.Metadata.Camera, restored.Metadata.Track, restored.Metadata.Frame = track.Camera, track.Track, 9000
	restored.ID = cropstore.NewID(track.Camera, restored.Metadata.Time, restored.Metadata.Frame, 0)
	f.gallery.Index.Add(restored)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- f.server.ServeListener(serveCtx, listener) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		items, err := f.gallery.Index.Get(ctx, "", []string{restored.ID})
		if err == nil && len(items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the serving server left crop %s of the erased track indexed", restored.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
