package lookup

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/cropstore/s3test"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/lookup/lookuptest"
)

// testClock is a settable clock for the watch tests.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// watchFixture is a lookup server with watches over the synthetic gallery (8 people, each walking
// past cam-a, then cam-b 2 minutes later, then cam-c), its clock set just after the first crops.
func watchFixture(t *testing.T, dir string) (*fixture, *testClock) {
	t.Helper()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir = dir
		c.Now = clock.Now
	})
	return f, clock
}

// addSighting stores and indexes one new crop of a gallery person; it returns the crop id.
func addSighting(t *testing.T, gallery *lookuptest.Gallery, person int, camera string, at time.Time, track int64, seed uint64) string {
	t.Helper()
	jpegBytes := lookuptest.Crop(gallery.Identities[person], seed, false)
	decoded, err := jpeg.Decode(bytes.NewReader(jpegBytes))
	if err != nil {
		t.Fatal(err)
	}
	frame := int64(at.Sub(testStart) / (40 * time.Millisecond))
	id := cropstore.NewID(camera, at, frame, person)
	gallery.Store.Put(cropstore.CropRecord{ID: id, Camera: camera, Time: at.UTC(), Frame: frame, Track: track,
		Box: cropstore.Box{Width: 64, Height: 128}, Score: 0.9, Detector: "synthetic", JPEG: jpegBytes})
	gallery.Index.Add(index.Item{ID: id, Vector: lookuptest.ColorVector(decoded),
		Metadata: index.Metadata{Camera: camera, Time: at.UTC(), Track: track, Frame: frame, Model: "color"}})
	gallery.Identity[id] = person
	return id
}

func createWatch(t *testing.T, f *fixture, body string, headers ...string) Watch {
	t.Helper()
	status, data, responseHeaders := f.do(t, "POST", "/v1/watches", "application/json", strings.NewReader(body), headers...)
	if status != http.StatusCreated {
		t.Fatalf("create watch: status %d: %s", status, data)
	}
	watch := decode[Watch](t, data)
	if responseHeaders.Get("Location") != "/v1/watches/"+watch.ID {
		t.Errorf("Location %q for watch %s", responseHeaders.Get("Location"), watch.ID)
	}
	return watch
}

func watchAlerts(t *testing.T, f *fixture, id string) []Alert {
	t.Helper()
	status, data, _ := f.do(t, "GET", "/v1/watches/"+id, "", nil)
	if status != http.StatusOK {
		t.Fatalf("get watch: status %d: %s", status, data)
	}
	return decode[WatchResponse](t, data).Alerts
}

func check(t *testing.T, f *fixture) int {
	t.Helper()
	raised, err := f.server.CheckWatches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return raised
}

// TestWatchAlerts follows one watch through its life: it alerts once per new sighting of its
// person (never for the sighting it was made from, nor for other people), extends an alert as
// the track goes on, wakes a long poll, survives a restart without repeating itself, and is gone
// when deleted.
func TestWatchAlerts(t *testing.T) {
	dir := t.TempDir()
	f, clock := watchFixture(t, dir)
	query := f.gallery.Crops[1] // person 0 on cam-a, at the start
	person := f.gallery.Identity[query]
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"name":"red shirt","min_score":0.9}`, query))
	if watch.QueryTrack == nil || watch.QueryTrack.Camera != "cam-a" || watch.MinScore != 0.9 || watch.Expired ||
		!watch.Expires.Equal(clock.Now().Add(defaultWatchTTL)) || watch.CreatedBy == "" {
		t.Fatalf("created %+v", watch)
	}

	// The query's own track goes on after the watch is made; that is no new sighting.
	addSighting(t, f.gallery, person, "cam-a", clock.Now().Add(20*time.Second), watch.QueryTrack.Track, 900)

	// Ten minutes on, person 0 has walked past cam-b and cam-c: one alert each, nobody else, and
	// nothing for the cam-a track the watch was made from.
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 2 {
		t.Fatalf("first check raised %d alerts, want 2 (person 0 on cam-b and cam-c)", raised)
	}
	alerts := watchAlerts(t, f, watch.ID)
	cameras := map[string]bool{}
	for _, alert := range alerts {
		cameras[alert.Camera] = true
		for _, id := range alert.CropIDs {
			if f.gallery.Identity[id] != person {
				t.Errorf("alert %d on %s holds crop %s of person %d", alert.Seq, alert.Camera, id, f.gallery.Identity[id])
			}
		}
		if alert.Crops != 4 || alert.Score < 0.9 || alert.WatchName != "red shirt" || alert.Model != "color" || alert.ThumbnailURL == "" {
			t.Errorf("alert %+v: want the track's 4 crops, scored >= 0.9, named, with its model", alert)
		}
	}
	if len(alerts) != 2 || !cameras["cam-b"] || !cameras["cam-c"] {
		t.Fatalf("alerts on %v, want cam-b and cam-c", cameras)
	}
	if raised := check(t, f); raised != 0 {
		t.Errorf("a second check raised %d more alerts for the same sightings", raised)
	}

	// The cam-b track goes on: its alert grows, no new one.
	camB := alerts[0]
	if camB.Camera != "cam-b" {
		camB = alerts[1]
	}
	later := camB.Last.Add(5 * time.Second)
	addSighting(t, f.gallery, person, "cam-b", later, camB.Track, 901)
	if raised := check(t, f); raised != 0 {
		t.Errorf("a later crop of an alerted track raised %d alerts", raised)
	}
	for _, alert := range watchAlerts(t, f, watch.ID) {
		if alert.Seq == camB.Seq && (alert.Crops != 5 || !alert.Last.Equal(later)) {
			t.Errorf("extended alert: %d crops, last %s; want 5 and %s", alert.Crops, alert.Last, later)
		}
	}

	// A long poll waits for the next alert: person 0 back on cam-a, a new track.
	type polled struct {
		status int
		body   []byte
	}
	done := make(chan polled, 1)
	go func() {
		status, data, _ := f.do(t, "GET", fmt.Sprintf("/v1/alerts?after=%d&wait=20s", max(alerts[0].Seq, alerts[1].Seq)), "", nil)
		done <- polled{status, data}
	}()
	time.Sleep(200 * time.Millisecond) // the poll is waiting
	back := addSighting(t, f.gallery, person, "cam-a", testStart.Add(9*time.Minute), cropstore.TrackID(testStart, 99), 902)
	if raised := check(t, f); raised != 1 {
		t.Fatalf("person 0 back on cam-a raised %d alerts, want 1", raised)
	}
	var poll polled
	select {
	case poll = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not return after an alert was raised")
	}
	if poll.status != http.StatusOK {
		t.Fatalf("poll: status %d: %s", poll.status, poll.body)
	}
	woken := decode[AlertsResponse](t, poll.body)
	if len(woken.Alerts) != 1 || woken.Alerts[0].BestCropID != back || woken.Next != woken.Alerts[0].Seq {
		t.Fatalf("the poll returned %+v, want the one new alert for %s", woken, back)
	}

	// A restart keeps the watch and its alerts, and does not raise them again.
	restarted := newFixture(t, func(c *Config) {
		c.WatchDir = dir
		c.Now = clock.Now
		c.Index = f.gallery.Index
		c.Store = f.gallery.Store
	})
	if got := watchAlerts(t, restarted, watch.ID); len(got) != 3 {
		t.Fatalf("after a restart the watch has %d alerts, want 3", len(got))
	}
	if raised := check(t, restarted); raised != 0 {
		t.Errorf("after a restart, a check raised %d alerts again", raised)
	}
	addSighting(t, f.gallery, person, "cam-c", testStart.Add(9*time.Minute+30*time.Second), cropstore.TrackID(testStart, 100), 903)
	if raised := check(t, restarted); raised != 1 {
		t.Fatalf("a new track after the restart raised %d alerts, want 1", raised)
	}
	status, data, _ := restarted.do(t, "GET", fmt.Sprintf("/v1/alerts?after=%d", woken.Next), "", nil)
	if after := decode[AlertsResponse](t, data); status != http.StatusOK || len(after.Alerts) != 1 || after.Alerts[0].Seq <= woken.Next {
		t.Fatalf("alerts after %d following a restart: %d %s", woken.Next, status, data)
	}

	// Deleted: gone from the API and from disk.
	if status, data, _ := restarted.do(t, "DELETE", "/v1/watches/"+watch.ID, "", nil); status != http.StatusNoContent {
		t.Fatalf("delete: status %d: %s", status, data)
	}
	if status, _, _ := restarted.do(t, "GET", "/v1/watches/"+watch.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("a deleted watch answers %d", status)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files left after the delete: %v", left)
	}
}

// TestWatchByUpload makes a watch from an uploaded image, which has no track of its own: every
// later sighting of the person alerts, and the image is kept and served as uploaded.
func TestWatchByUpload(t *testing.T) {
	f, clock := watchFixture(t, t.TempDir())
	upload := lookuptest.Crop(f.gallery.Identities[3], 77, false)
	status, data, _ := f.do(t, "POST", "/v1/watches?name=upload&min_score=0.9&expires_in=1h&camera=cam-b", "image/jpeg", bytes.NewReader(upload))
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, data)
	}
	watch := decode[Watch](t, data)
	if watch.QueryTrack != nil || watch.QueryCropID != "" || len(watch.Cameras) != 1 || !watch.Expires.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("created %+v", watch)
	}
	status, image, headers := f.do(t, "GET", watch.ImageURL, "", nil)
	if status != http.StatusOK || !bytes.Equal(image, upload) || headers.Get("Content-Type") != "image/jpeg" {
		t.Errorf("watch image: status %d, %d bytes (uploaded %d), %s", status, len(image), len(upload), headers.Get("Content-Type"))
	}
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 1 {
		t.Fatalf("raised %d alerts, want 1: person 3 on cam-b only", raised)
	}
	alert := watchAlerts(t, f, watch.ID)[0]
	if alert.Camera != "cam-b" || f.gallery.Identity[alert.BestCropID] != 3 {
		t.Errorf("alert on %s for person %d", alert.Camera, f.gallery.Identity[alert.BestCropID])
	}

	// Expired, the watch is listed but no longer checked.
	clock.Set(testStart.Add(2 * time.Hour))
	addSighting(t, f.gallery, 3, "cam-b", clock.Now().Add(-time.Minute), cropstore.TrackID(testStart, 200), 5)
	if raised := check(t, f); raised != 0 {
		t.Errorf("an expired watch raised %d alerts", raised)
	}
	status, data, _ = f.do(t, "GET", "/v1/watches", "", nil)
	list := decode[WatchesResponse](t, data)
	if status != http.StatusOK || len(list.Watches) != 1 || !list.Watches[0].Expired || list.Watches[0].Alerts != 1 {
		t.Errorf("list: status %d, %+v", status, list)
	}
}

// TestAlertsFollowRetention: with retention.max_age, an alert goes when its crops do.
func TestAlertsFollowRetention(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now, c.Retention = dir, clock.Now, 30*time.Minute
	})
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, f.gallery.Crops[1]))
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 2 {
		t.Fatalf("raised %d alerts, want 2", raised)
	}
	clock.Set(testStart.Add(33 * time.Minute)) // cam-b's sighting (12:02) is past 30 minutes, cam-c's (12:04) not yet
	check(t, f)
	alerts := watchAlerts(t, f, watch.ID)
	if len(alerts) != 1 || alerts[0].Camera != "cam-c" {
		t.Fatalf("after retention: %+v, want only the cam-c alert", alerts)
	}
	restarted, _ := watchFixture(t, dir)
	if kept := watchAlerts(t, restarted, watch.ID); len(kept) != 1 {
		t.Errorf("the pruned alert is back after a restart: %d alerts", len(kept))
	}

	// Expired for longer than the retention period, the watch goes, image and all.
	clock.Set(watch.Expires.Add(31 * time.Minute))
	check(t, f)
	if status, _, _ := f.do(t, "GET", "/v1/watches/"+watch.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("a watch expired past retention answers %d", status)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "w*")); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
}

// TestAlertsFollowPerCameraRetention: with a camera's own shorter period (retention.per_camera)
// and none for the site, that camera's alerts go when its crops do, the others stay, and a watch
// made from a crop of a camera with its own period goes, image and all, when that crop does.
func TestAlertsFollowPerCameraRetention(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir, c.Now = dir, clock.Now
		c.RetentionPerCamera = map[string]time.Duration{"cam-a": 40 * time.Minute, "cam-b": 30 * time.Minute}
	})
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, f.gallery.Crops[1])) // cam-a, 12:00
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 2 {
		t.Fatalf("raised %d alerts, want 2", raised)
	}
	clock.Set(testStart.Add(33 * time.Minute)) // cam-b's sighting (12:02) is past its 30 minutes
	check(t, f)
	if alerts := watchAlerts(t, f, watch.ID); len(alerts) != 1 || alerts[0].Camera != "cam-c" {
		t.Fatalf("after cam-b's period: %+v, want only the cam-c alert", alerts)
	}
	clock.Set(testStart.Add(45 * time.Minute)) // the watch's own crop is past cam-a's 40 minutes
	check(t, f)
	if status, _, _ := f.do(t, "GET", "/v1/watches/"+watch.ID, "", nil); status != http.StatusNotFound {
		t.Errorf("a watch made from a crop past its camera's period answers %d", status)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "w*")); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
}

// permutedEmbedder is another model: the colour embedding with its values in another order, so
// its vectors mean nothing in the colour gallery and vice versa.
type permutedEmbedder struct{ calls int }

func permute(vector []float32) []float32 {
	out := make([]float32, len(vector))
	for i, value := range vector {
		out[(i*4+1)%len(vector)] = value
	}
	return out
}

func (e *permutedEmbedder) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	e.calls += len(images)
	vectors := make([][]float32, len(images))
	for i, picture := range images {
		vectors[i] = permute(lookuptest.ColorVector(picture))
	}
	return vectors, nil
}

// TestWatchFollowsModelSwitch: after a switch the watch's image is embedded by the new model and
// searched in the new gallery; a vector of the old model would match nothing there.
func TestWatchFollowsModelSwitch(t *testing.T) {
	f, clock := watchFixture(t, t.TempDir())
	query := f.gallery.Crops[1]
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query))
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 2 {
		t.Fatalf("raised %d alerts before the switch, want 2 (cam-b, cam-c)", raised)
	}

	// v2's gallery: the same crops, embedded by the permuted model.
	v2 := lookuptest.NewIndex()
	items, err := f.gallery.Index.Get(context.Background(), "", f.gallery.Crops)
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range items {
		item.Vector = permute(item.Vector)
		item.Metadata.Model = "v2"
		v2.Add(item)
	}
	embedder := &permutedEmbedder{}
	f.server.Switch(v2, "v2", embedder)
	// Person 0 comes back to cam-a, and only v2's gallery has the new crop.
	back := addSighting(t, f.gallery, f.gallery.Identity[query], "cam-a", testStart.Add(9*time.Minute), cropstore.TrackID(testStart, 300), 11)
	item, err := f.gallery.Index.Get(context.Background(), "", []string{back})
	if err != nil || len(item) != 1 {
		t.Fatal(item, err)
	}
	item[0].Vector, item[0].Metadata.Model = permute(item[0].Vector), "v2"
	v2.Add(item[0])
	if raised := check(t, f); raised != 1 {
		t.Fatalf("raised %d alerts after the switch, want 1: the new cam-a track (cam-b and cam-c have theirs)", raised)
	}
	if embedder.calls != 1 {
		t.Errorf("the new model embedded the watch %d times, want once", embedder.calls)
	}
	alerts := watchAlerts(t, f, watch.ID)
	if alerts[0].BestCropID != back || alerts[0].Model != "v2" || alerts[1].Model != "color" {
		t.Errorf("newest alert %s from %s after one from %s: want %s from v2 after the colour model's", alerts[0].BestCropID, alerts[0].Model, alerts[1].Model, back)
	}
	check(t, f)
	if embedder.calls != 1 {
		t.Errorf("the watch was embedded again (%d) with the model unchanged", embedder.calls)
	}
}

func TestWatchBadRequests(t *testing.T) {
	f, _ := watchFixture(t, t.TempDir())
	off := newFixture(t, nil)
	crop := f.gallery.Crops[0]
	unknown := cropstore.NewID("cam-a", testStart.Add(time.Hour), 1, 0)
	cases := []struct {
		name        string
		server      *fixture
		method, url string
		contentType string
		body        string
		want        int
	}{
		{"watches off", off, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `"}`, http.StatusNotFound},
		{"alerts with watches off", off, "GET", "/v1/alerts", "", "", http.StatusNotFound},
		{"unknown field", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","k":3}`, http.StatusBadRequest},
		{"no person", f, "POST", "/v1/watches", "application/json", `{"name":"x"}`, http.StatusBadRequest},
		{"unknown crop", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + unknown + `"}`, http.StatusNotFound},
		{"zero threshold", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","min_score":0}`, http.StatusBadRequest},
		{"threshold above 1", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","min_score":1.5}`, http.StatusBadRequest},
		{"bad expiry", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","expires_in":"soon"}`, http.StatusBadRequest},
		{"expiry too long", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","expires_in":"8760h"}`, http.StatusBadRequest},
		{"time range", f, "POST", "/v1/watches?from=2024-05-01T00:00:00Z", "application/json", `{"crop_id":"` + crop + `"}`, http.StatusBadRequest},
		{"long name", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","name":"` + strings.Repeat("x", 201) + `"}`, http.StatusBadRequest},
		{"bad camera", f, "POST", "/v1/watches", "application/json", `{"crop_id":"` + crop + `","cameras":["../x"]}`, http.StatusBadRequest},
		{"corrupt upload", f, "POST", "/v1/watches", "image/jpeg", "\xff\xd8\xffnot a jpeg", http.StatusBadRequest},
		{"bad watch id", f, "GET", "/v1/watches/..%2fx", "", "", http.StatusBadRequest},
		{"unknown watch", f, "GET", "/v1/watches/w0123456789ab", "", "", http.StatusNotFound},
		{"delete unknown", f, "DELETE", "/v1/watches/w0123456789ab", "", "", http.StatusNotFound},
		{"negative after", f, "GET", "/v1/alerts?after=-1", "", "", http.StatusBadRequest},
		{"long wait", f, "GET", "/v1/alerts?after=0&wait=1m", "", "", http.StatusBadRequest},
		{"bad limit", f, "GET", "/v1/alerts?limit=0", "", "", http.StatusBadRequest},
		{"put", f, "PUT", "/v1/watches", "application/json", `{}`, http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, data, _ := c.server.do(t, c.method, c.url, c.contentType, strings.NewReader(c.body))
			if status != c.want {
				t.Fatalf("status %d, want %d: %s", status, c.want, data)
			}
			if !strings.Contains(string(data), `"error"`) {
				t.Errorf("no error message: %s", data)
			}
		})
	}
	if status, data, _ := f.do(t, "GET", "/v1/watches", "", nil); status != http.StatusOK || !strings.Contains(string(data), `"watches":[]`) {
		t.Errorf("after only bad requests: %d %s", status, data)
	}
}

// TestDamagedWatchIsSkipped: a watch file that cannot be read is logged and left out; the server
// and the other watches carry on.
func TestDamagedWatchIsSkipped(t *testing.T) {
	dir := t.TempDir()
	f, _ := watchFixture(t, dir)
	good := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q}`, f.gallery.Crops[1]))
	damaged := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q}`, f.gallery.Crops[6]))
	if err := os.WriteFile(filepath.Join(dir, damaged.ID+".json"), []byte(`{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	restarted, _ := watchFixture(t, dir)
	status, data, _ := restarted.do(t, "GET", "/v1/watches", "", nil)
	list := decode[WatchesResponse](t, data)
	if status != http.StatusOK || len(list.Watches) != 1 || list.Watches[0].ID != good.ID {
		t.Fatalf("after a damaged watch file: %d %+v, want only %s", status, list, good.ID)
	}
}

// TestAlertExtend: a later look at a sighting changes its alert only by what is new, however
// many crops the sighting has (the alert keeps 20 of their ids).
func TestAlertExtend(t *testing.T) {
	look := func(crops int, last time.Time, score float32) *Alert {
		sighting := &Alert{First: testStart, Last: last, Score: score, Crops: crops}
		for i := range min(crops, maxAlertCrops) {
			sighting.CropIDs = append(sighting.CropIDs, fmt.Sprintf("crop-%03d", i))
		}
		return sighting
	}
	later := testStart.Add(time.Minute)
	cases := []struct {
		name        string
		next        *Alert
		changed     bool
		crops       int
		last        time.Time
		score       float32
		storedCrops int
	}{
		{"the same look again", look(30, testStart, 0.8), false, 30, testStart, 0.8, 20},
		{"fewer crops (some left the window)", look(12, testStart, 0.8), false, 30, testStart, 0.8, 20},
		{"more crops, later", look(45, later, 0.8), true, 45, later, 0.8, 20},
		{"a better crop", look(30, testStart, 0.9), true, 30, testStart, 0.9, 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			alert := look(30, testStart, 0.8)
			changed := alert.extend(c.next)
			if changed != c.changed || alert.Crops != c.crops || !alert.Last.Equal(c.last) || alert.Score != c.score || len(alert.CropIDs) != c.storedCrops {
				t.Errorf("changed %v, %d crops (%d ids), last %s, score %v; want %v, %d (%d), %s, %v",
					changed, alert.Crops, len(alert.CropIDs), alert.Last, alert.Score, c.changed, c.crops, c.storedCrops, c.last, c.score)
			}
			if again := alert.extend(c.next); again || alert.Crops != c.crops {
				t.Errorf("the same look a second time: changed %v, %d crops", again, alert.Crops)
			}
		})
	}
}

// Watches kept in a folder of the crop store's bucket (as reid serve keeps them at scale) live
// through a restart on another machine, alerts and all, and the watches of a data dir move in
// the first time.
func TestWatchesInABucket(t *testing.T) {
	bucket := s3test.Fake(t, "watches")
	ctx := context.Background()
	store, err := cropstore.OpenS3(ctx, cropstore.S3Options{Endpoint: bucket.Endpoint, Bucket: bucket.Name, Region: bucket.Region, AccessKey: bucket.AccessKey, SecretKey: bucket.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	folder, err := store.Folder("@watches")
	if err != nil {
		t.Fatal(err)
	}

	// A data dir's watch moves in.
	dir := t.TempDir()
	before, _ := watchFixture(t, dir)
	moving := createWatch(t, before, fmt.Sprintf(`{"crop_id":%q,"name":"from the data dir"}`, before.gallery.Crops[5]))
	local, err := DirWatchStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{2, 0} { // its json and image; nothing the second time
		if moved, err := MoveInWatches(ctx, local, folder); err != nil || moved != want {
			t.Fatalf("moved %d watch files, want %d (%v)", moved, want, err)
		}
	}

	clock := &testClock{now: testStart.Add(time.Minute)}
	first := newFixture(t, func(c *Config) { c.WatchStore, c.Now = folder, clock.Now })
	query := first.gallery.Crops[1]
	watch := createWatch(t, first, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, query))
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, first); raised < 2 {
		t.Fatalf("raised %d alerts, want at least 2", raised)
	}
	alerts := watchAlerts(t, first, watch.ID)

	// Another server on the same bucket: both watches, the alerts, the image.
	second := newFixture(t, func(c *Config) {
		c.WatchStore, c.Now = folder, clock.Now
		c.Index, c.Store = first.gallery.Index, first.gallery.Store
	})
	_, data, _ := second.do(t, "GET", "/v1/watches", "", nil)
	if listed := decode[WatchesResponse](t, data).Watches; len(listed) != 2 {
		t.Fatalf("the second server lists %d watches, want 2 (%s and %s)", len(listed), watch.ID, moving.ID)
	}
	if again := watchAlerts(t, second, watch.ID); len(again) != len(alerts) || again[0].Seq != alerts[0].Seq {
		t.Errorf("the second server has alerts %+v, want %+v", again, alerts)
	}
	_, firstImage, _ := first.do(t, "GET", "/v1/watches/"+watch.ID+"/image", "", nil)
	if _, secondImage, _ := second.do(t, "GET", "/v1/watches/"+watch.ID+"/image", "", nil); !bytes.Equal(firstImage, secondImage) || len(firstImage) == 0 {
		t.Error("the watch's image differs on the second server")
	}
	for _, id := range []string{watch.ID, moving.ID} {
		if status, _, _ := second.do(t, "DELETE", "/v1/watches/"+id, "", nil); status != http.StatusNoContent {
			t.Errorf("delete %s: %d", id, status)
		}
	}
	if names, err := folder.List(ctx); err != nil || len(names) != 0 {
		t.Errorf("the folder after both watches were deleted: %v, %v", names, err)
	}
}
