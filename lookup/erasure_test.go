package lookup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup/lookuptest"
)

const adminKey = "admin-key-0123456789abcdef"

func erasureBody(t *testing.T, request ErasureRequest) io.Reader {
	t.Helper()
	body, err := json.Marshal(request)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(body)
}

func (f *fixture) erase(t *testing.T, request ErasureRequest) ErasureResponse {
	t.Helper()
	status, data, _ := f.do(t, "POST", "/v1/erasures", "application/json", erasureBody(t, request), "Authorization", "Bearer "+adminKey)
	if status != http.StatusOK {
		t.Fatalf("erasure: status %d: %s", status, data)
	}
	return decode[ErasureResponse](t, data)
}

func trackOf(t *testing.T, f *fixture, id string) index.TrackRef {
	t.Helper()
	record, err := f.gallery.Store.Metadata(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return index.TrackRef{Camera: record.Camera, Track: record.Track}
}

// cropsOf lists the stored crops of one track, sorted.
func cropsOf(t *testing.T, f *fixture, track index.TrackRef) []string {
	t.Helper()
	var ids []string
	for _, id := range f.gallery.Crops {
		record, err := f.gallery.Store.Metadata(context.Background(), id)
		if err == nil && (index.TrackRef{Camera: record.Camera, Track: record.Track}) == track {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestErasure erases person 0's tracks on cam-a and cam-b: their crops leave the store and the
// gallery, the watch made from one of them goes with its image, and an upload watch of person 0
// loses the alert that shows them while keeping its cam-c alert. A dry run first changes nothing,
// only admin keys may erase, and the audit log keeps who erased what and why.
func TestErasure(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now, c.AdminAPIKeys = dir, clock.Now, []string{adminKey}
	})
	query := f.gallery.Crops[1] // person 0 on cam-a
	person := f.gallery.Identity[query]
	fromCrop := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query))
	upload := lookuptest.Crop(f.gallery.Identities[person], 77, false)
	status, data, _ := f.do(t, "POST", "/v1/watches?min_score=0.9", "image/jpeg", bytes.NewReader(upload))
	if status != http.StatusCreated {
		t.Fatalf("upload watch: status %d: %s", status, data)
	}
	fromUpload := decode[Watch](t, data)
	other := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, f.gallery.Crops[5])) // person 1
	if f.gallery.Identity[f.gallery.Crops[5]] == person {
		t.Fatal("the gallery's sixth crop is of person 0")
	}
	clock.Set(testStart.Add(10 * time.Minute))
	check(t, f)
	// Made after person 0 left cam-a, the upload watch saw them on cam-b and cam-c.
	if n := len(watchAlerts(t, f, fromUpload.ID)); n != 2 {
		t.Fatalf("the upload watch has %d alerts, want 2 (cam-b, cam-c)", n)
	}
	otherAlerts := len(watchAlerts(t, f, other.ID))

	camA := trackOf(t, f, query)
	var camB index.TrackRef
	for _, alert := range watchAlerts(t, f, fromCrop.ID) {
		if alert.Camera == "cam-b" {
			camB = index.TrackRef{Camera: alert.Camera, Track: alert.Track}
		}
	}
	want := append(cropsOf(t, f, camA), cropsOf(t, f, camB)...)
	slices.Sort(want)
	if len(want) != 8 {
		t.Fatalf("person 0 has %d crops on cam-a and cam-b, want 8", len(want))
	}
	request := ErasureRequest{Tracks: []index.TrackRef{camA, camB}, Reason: "DSR-2024-017", DryRun: true}

	// Only admin keys may erase.
	status, data, _ = f.do(t, "POST", "/v1/erasures", "application/json", erasureBody(t, request))
	if status != http.StatusForbidden || !strings.Contains(string(data), "lookup.admin_api_keys") {
		t.Errorf("an ordinary key: status %d: %s", status, data)
	}
	status, _, _ = f.do(t, "POST", "/v1/erasures", "application/json", erasureBody(t, request), "Authorization", "")
	if status != http.StatusUnauthorized {
		t.Errorf("no key: status %d", status)
	}

	dry := f.erase(t, request)
	if !dry.DryRun || !slices.Equal(dry.CropIDs, want) || dry.Crops != 0 || dry.Vectors != 0 ||
		!slices.Equal(dry.Watches, []string{fromCrop.ID}) || dry.Alerts != 1 {
		t.Fatalf("dry run: %+v; want person 0's 8 crops, the watch made from one, and 1 alert", dry)
	}
	for _, id := range want {
		if status, _, _ := f.do(t, "GET", "/v1/crops/"+id, "", nil); status != http.StatusOK {
			t.Fatalf("after a dry run, crop %s answers %d", id, status)
		}
	}

	request.DryRun = false
	erased := f.erase(t, request)
	if erased.DryRun || !slices.Equal(erased.CropIDs, want) || erased.Crops != 8 || erased.Vectors != 8 ||
		!slices.Equal(erased.Watches, []string{fromCrop.ID}) || erased.Alerts != 1 || len(erased.MissingTracks) != 0 {
		t.Fatalf("erasure: %+v; want 8 crops and their vectors, 1 watch and 1 alert", erased)
	}
	for _, id := range want {
		if status, _, _ := f.do(t, "GET", "/v1/crops/"+id+"/image", "", nil); status != http.StatusNotFound {
			t.Errorf("erased crop %s's image answers %d", id, status)
		}
		if items, _ := f.gallery.Index.Get(context.Background(), "", []string{id}); len(items) != 0 {
			t.Errorf("erased crop %s is still in the gallery", id)
		}
	}
	// Searches no longer find the erased sightings; person 0 is still found on cam-c.
	camC := cropsOf(t, f, trackOf(t, f, watchAlerts(t, f, fromUpload.ID)[0].BestCropID))
	status, data, _ = f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"k":50}`, camC[0])))
	if status != http.StatusOK {
		t.Fatalf("search: status %d: %s", status, data)
	}
	for _, match := range decode[SearchResponse](t, data).Matches {
		if slices.Contains(want, match.CropID) {
			t.Errorf("search returns erased crop %s", match.CropID)
		}
	}
	// The watch made from an erased crop is gone, image and all; the upload watch keeps its
	// cam-c alert; person 1's watch is untouched.
	if status, _, _ := f.do(t, "GET", "/v1/watches/"+fromCrop.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("the watch made from an erased crop answers %d", status)
	}
	if _, err := os.Stat(filepath.Join(dir, fromCrop.ID+".img")); !os.IsNotExist(err) {
		t.Errorf("its image is still on disk: %v", err)
	}
	if alerts := watchAlerts(t, f, fromUpload.ID); len(alerts) != 1 || alerts[0].Camera != "cam-c" {
		t.Errorf("the upload watch's alerts after the erasure: %+v; want only cam-c's", alerts)
	}
	if n := len(watchAlerts(t, f, other.ID)); n != otherAlerts {
		t.Errorf("person 1's watch has %d alerts, had %d", n, otherAlerts)
	}
	// A restart does not bring anything back.
	restarted := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now, c.Index, c.Store = dir, clock.Now, f.gallery.Index, f.gallery.Store
	})
	if alerts := watchAlerts(t, restarted, fromUpload.ID); len(alerts) != 1 {
		t.Errorf("after a restart the upload watch has %d alerts, want 1", len(alerts))
	}

	// The audit log has the erasure: who, why, and which crops.
	var audited []AuditRecord
	for _, record := range f.audit.lines(t) {
		if record.Route == "POST /v1/erasures" && record.Status == http.StatusOK {
			audited = append(audited, record)
		}
	}
	if len(audited) != 2 || audited[1].Params["reason"] != "DSR-2024-017" || audited[1].Params["dry_run"] != false ||
		len(audited[1].Params["erased_crop_ids"].([]any)) != 8 || audited[1].Key != keyID(hashKey(adminKey)) {
		t.Errorf("audited erasures: %+v", audited)
	}

	// Erasing again finds nothing and is no error; its lists are still lists.
	status, data, _ = f.do(t, "POST", "/v1/erasures", "application/json", erasureBody(t, request), "Authorization", "Bearer "+adminKey)
	again := decode[ErasureResponse](t, data)
	if status != http.StatusOK || len(again.CropIDs) != 0 || len(again.MissingTracks) != 2 || again.Crops != 0 ||
		!strings.Contains(string(data), `"watches":[]`) || !strings.Contains(string(data), `"crop_ids":[]`) {
		t.Errorf("erasing again: %d %s", status, data)
	}
	_, metrics, _ := f.do(t, "GET", "/metrics", "", nil)
	if !strings.Contains(string(metrics), "reid_lookup_erased_crops_total 8") {
		t.Error("metrics do not count the 8 erased crops")
	}
}

// TestErasureWithoutKeys: a server without keys lets only its own machine erase.
func TestErasureWithoutKeys(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.APIKeys = nil })
	id := f.gallery.Crops[0]
	body := fmt.Sprintf(`{"crop_ids":[%q],"reason":"test"}`, id)
	remote := httptest.NewRequest("POST", "/v1/erasures", strings.NewReader(body))
	remote.Header.Set("Content-Type", "application/json")
	remote.RemoteAddr = "192.0.2.7:41000"
	recorder := httptest.NewRecorder()
	f.server.ServeHTTP(recorder, remote)
	if recorder.Code != http.StatusForbidden {
		t.Errorf("a remote client without keys: status %d: %s", recorder.Code, recorder.Body)
	}
	// httptest's server is on loopback.
	status, data, _ := f.do(t, "POST", "/v1/erasures", "application/json", strings.NewReader(body), "Authorization", "")
	if status != http.StatusOK || decode[ErasureResponse](t, data).Crops != 1 {
		t.Errorf("a loopback client without keys: status %d: %s", status, data)
	}
}

func TestErasureBadRequests(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AdminAPIKeys = []string{adminKey} })
	id := f.gallery.Crops[0]
	many := make([]string, maxErasureCrops+1)
	for i := range many {
		many[i] = cropstore.NewID("cam-a", testStart, int64(i), 0)
	}
	manyJSON, _ := json.Marshal(many)
	tests := []struct {
		name, contentType, body string
		status                  int
		message                 string
	}{
		{"not JSON", "text/plain", `{}`, http.StatusUnsupportedMediaType, "application/json"},
		{"nothing named", "application/json", `{"reason":"x"}`, http.StatusBadRequest, "name the crops"},
		{"no reason", "application/json", fmt.Sprintf(`{"crop_ids":[%q]}`, id), http.StatusBadRequest, "reason is required"},
		{"dry run needs no reason but a crop", "application/json", `{"dry_run":true}`, http.StatusBadRequest, "name the crops"},
		{"blank reason", "application/json", fmt.Sprintf(`{"crop_ids":[%q],"reason":"  "}`, id), http.StatusBadRequest, "reason is required"},
		{"long reason", "application/json", fmt.Sprintf(`{"crop_ids":[%q],"reason":%q}`, id, strings.Repeat("r", 501)), http.StatusBadRequest, "longer than 500"},
		{"bad crop id", "application/json", `{"crop_ids":["../etc/passwd"],"reason":"x"}`, http.StatusBadRequest, "crop_ids"},
		{"bad camera", "application/json", `{"tracks":[{"camera":"a/b","track":3}],"reason":"x"}`, http.StatusBadRequest, "not a camera id"},
		{"untracked", "application/json", `{"tracks":[{"camera":"cam-a","track":0}],"reason":"x"}`, http.StatusBadRequest, "track must be positive"},
		{"too many crops", "application/json", fmt.Sprintf(`{"crop_ids":%s,"reason":"x"}`, manyJSON), http.StatusBadRequest, "too many crop_ids"},
		{"unknown field", "application/json", fmt.Sprintf(`{"crop_ids":[%q],"reason":"x","everything":true}`, id), http.StatusBadRequest, "unknown field"},
		{"two values", "application/json", fmt.Sprintf(`{"crop_ids":[%q],"reason":"x"} {}`, id), http.StatusBadRequest, "more than one value"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			status, data, _ := f.do(t, "POST", "/v1/erasures", test.contentType, strings.NewReader(test.body), "Authorization", "Bearer "+adminKey)
			if status != test.status || !strings.Contains(string(data), test.message) {
				t.Errorf("status %d: %s; want %d with %q", status, data, test.status, test.message)
			}
		})
	}
	if status, _, _ := f.do(t, "GET", "/v1/crops/"+id, "", nil); status != http.StatusOK {
		t.Errorf("a refused erasure deleted crop %s (status %d)", id, status)
	}
	// A dry run may leave the reason out.
	status, data, _ := f.do(t, "POST", "/v1/erasures", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_ids":[%q],"dry_run":true}`, id)), "Authorization", "Bearer "+adminKey)
	if status != http.StatusOK || !slices.Equal(decode[ErasureResponse](t, data).CropIDs, []string{id}) {
		t.Errorf("a dry run without a reason: status %d: %s", status, data)
	}
}

// An erasure the index cannot carry out is refused, not half done.
func TestErasureNeedsDeletableBackends(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.AdminAPIKeys = []string{adminKey}
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	f.server.SetIndex(searchOnly{f.gallery.Index}, "")
	status, data, _ := f.do(t, "POST", "/v1/erasures", "application/json",
		strings.NewReader(fmt.Sprintf(`{"crop_ids":[%q],"reason":"x"}`, f.gallery.Crops[0])), "Authorization", "Bearer "+adminKey)
	if status != http.StatusNotImplemented {
		t.Errorf("status %d: %s", status, data)
	}
	if status, _, _ := f.do(t, "GET", "/v1/crops/"+f.gallery.Crops[0], "", nil); status != http.StatusOK {
		t.Errorf("the crop was deleted anyway (status %d)", status)
	}
}

// searchOnly hides everything of an index but Searcher.
type searchOnly struct{ Searcher }

// flakyStore fails the crop store's deletes after the first allowed ones while failing is set,
// as a disk or a bucket can.
type flakyStore struct {
	*lookuptest.Store
	failing atomic.Bool
	allowed atomic.Int32
}

func (s *flakyStore) Delete(ctx context.Context, id string) error {
	if s.failing.Load() && s.allowed.Add(-1) < 0 {
		return errors.New("crop store unavailable")
	}
	return s.Store.Delete(ctx, id)
}

// TestErasureFinishedByRepeating: an erasure whose crop store fails after two of a track's crops
// answers 500, and repeating it finds what is left (through the vectors, which go last) and
// finishes the job.
func TestErasureFinishedByRepeating(t *testing.T) {
	var store *flakyStore
	f := newFixture(t, func(c *Config) {
		store = &flakyStore{Store: c.Store.(*lookuptest.Store)}
		c.Store, c.AdminAPIKeys, c.WatchDir = store, []string{adminKey}, t.TempDir()
	})
	query := f.gallery.Crops[1]
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q}`, query))
	track := trackOf(t, f, query)
	want := cropsOf(t, f, track)
	request := ErasureRequest{Tracks: []index.TrackRef{track}, Reason: "DSR-9"}

	store.allowed.Store(2)
	store.failing.Store(true)
	status, data, _ := f.do(t, "POST", "/v1/erasures", "application/json", erasureBody(t, request), "Authorization", "Bearer "+adminKey)
	if status != http.StatusInternalServerError {
		t.Fatalf("erasure with the store failing: status %d: %s", status, data)
	}
	store.failing.Store(false)
	erased := f.erase(t, request)
	if !slices.Equal(erased.CropIDs, want) || erased.Crops != len(want)-2 || erased.Vectors != len(want) {
		t.Fatalf("repeated erasure: %+v; want the track's %d crops (2 deleted the first time) and %[2]d vectors", erased, len(want))
	}
	for _, id := range want {
		if _, err := f.gallery.Store.Metadata(context.Background(), id); err == nil {
			t.Errorf("crop %s is still stored", id)
		}
	}
	if status, _, _ := f.do(t, "GET", "/v1/watches/"+watch.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("the watch made from an erased crop answers %d", status)
	}
}

// racingIndex plays a stage that checked the erasure record just before it was written: while
// the erasure deletes the track's vectors, a later crop of that track is stored and embedded.
type racingIndex struct {
	*lookuptest.Index
	store *lookuptest.Store
	late  atomic.Pointer[index.Item]
}

func (x *racingIndex) Delete(ctx context.Context, version string, ids []string) (int, error) {
	deleted, err := x.Index.Delete(ctx, version, ids)
	if item := x.late.Swap(nil); item != nil {
		x.Index.Add(*item)
		x.store.Put(cropstore.CropRecord{ID: item.ID, Camera: item.Metadata.Camera, Time: item.Metadata.Time, Track: item.Metadata.Track,
			Frame: item.Metadata.Frame, JPEG: []byte{0xff, 0xd8, 0xff, 0xd9}})
	}
	return deleted, err
}

// TestErasureRecordsAndSweeps: an erasure is recorded in the crop store before anything is
// deleted (so that no stage stores those crops again; cropstore's TestErasures checks the
// refusing), a dry run records nothing, and a crop of the track stored while the erasure ran is
// found by its second look and erased too.
func TestErasureRecordsAndSweeps(t *testing.T) {
	var racing *racingIndex
	f := newFixture(t, func(c *Config) {
		racing = &racingIndex{Index: c.Index.(*lookuptest.Index), store: c.Store.(*lookuptest.Store)}
		c.Index, c.AdminAPIKeys = racing, []string{adminKey}
	})
	query := f.gallery.Crops[1]
	track := trackOf(t, f, query)
	want := cropsOf(t, f, track)
	request := ErasureRequest{Tracks: []index.TrackRef{track}, CropIDs: []string{f.gallery.Crops[6]}, Reason: "DSR-12", DryRun: true}
	f.erase(t, request)
	if erasures, _ := f.gallery.Store.Erasures(context.Background()); len(erasures) != 0 {
		t.Fatalf("a dry run recorded %+v", erasures)
	}

	items, err := racing.Get(context.Background(), "", []string{want[len(want)-1]})
	if err != nil || len(items) != 1 {
		t.Fatalf("the track's last crop: %v, %v", items, err)
	}
	late := items[0]
	late.Metadata.Time = late.Metadata.Time.Add(30 * time.Second)
	late.Metadata.Frame += 1000
	late.ID = cropstore.NewID(late.Metadata.Camera, late.Metadata.Time, late.Metadata.Frame, 0)
	racing.late.Store(&late)

	request.DryRun = false
	erased := f.erase(t, request)
	wantIDs := slices.Sorted(slices.Values(append(slices.Clone(want), late.ID, f.gallery.Crops[6])))
	if !slices.Equal(erased.CropIDs, wantIDs) || erased.Crops != len(wantIDs) || erased.Vectors != len(wantIDs) {
		t.Fatalf("erased %+v; want the track's %d crops, the named one and the one stored meanwhile (%s)", erased, len(want), late.ID)
	}
	if _, err := f.gallery.Store.Metadata(context.Background(), late.ID); !errors.Is(err, cropstore.ErrNotFound) {
		t.Errorf("the crop stored while the erasure ran is still stored: %v", err)
	}
	if items, _ := racing.Get(context.Background(), "", []string{late.ID}); len(items) != 0 {
		t.Errorf("its vector is still indexed")
	}
	erasures, _ := f.gallery.Store.Erasures(context.Background())
	if len(erasures) != 1 || !slices.Equal(erasures[0].CropIDs, request.CropIDs) ||
		!slices.Equal(erasures[0].Tracks, []cropstore.ErasedTrack{{Camera: track.Camera, Track: track.Track}}) {
		t.Errorf("recorded %+v; want the request's crop and track", erasures)
	}
}
