package lookup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/lookup/lookuptest"
)

const tenantKey = "tenant-key-0123456789abcdef"

// scopedFixture is a watch fixture (cam-a, cam-b, cam-c; 8 people) whose server also accepts
// tenantKey, which sees the cameras given.
func scopedFixture(t *testing.T, watchDir string, cameras ...string) (*fixture, *testClock) {
	t.Helper()
	clock := &testClock{now: testStart.Add(time.Minute)}
	f := newFixture(t, func(c *Config) {
		c.WatchDir = watchDir
		c.Now = clock.Now
		c.ScopedAPIKeys = []KeyScope{{Name: "tenant", Cameras: cameras, Keys: []string{tenantKey}}}
	})
	return f, clock
}

// asTenant are the headers of a request with the scoped key.
var asTenant = []string{"Authorization", "Bearer " + tenantKey}

// cropOf is a crop of person on camera in the synthetic gallery.
func cropOf(t *testing.T, gallery *lookuptest.Gallery, camera string, person int) string {
	t.Helper()
	for _, id := range gallery.Crops {
		parsed, err := cropstore.ParseID(id)
		if err != nil {
			t.Fatal(err)
		}
		if parsed.Camera == camera && gallery.Identity[id] == person {
			return id
		}
	}
	t.Fatalf("no crop of person %d on %s", person, camera)
	return ""
}

// cameraSet is the cameras a response's crops came from.
func cameraSet[T any](items []T, camera func(T) string) []string {
	var cameras []string
	for _, item := range items {
		if c := camera(item); !slices.Contains(cameras, c) {
			cameras = append(cameras, c)
		}
	}
	slices.Sort(cameras)
	return cameras
}

// TestScopedKeys checks every data route with a key that sees cam-a and cam-b only: what it is
// answered holds nothing of cam-c, a cam-c crop is as unknown to it as a crop that never was, and
// the same requests with an unscoped key do reach cam-c (so the scope, not the data, made the
// difference).
func TestScopedKeys(t *testing.T) {
	f, clock := scopedFixture(t, t.TempDir(), "cam-a", "cam-b")
	ownCrop := cropOf(t, f.gallery, "cam-a", 0)
	otherCrop := cropOf(t, f.gallery, "cam-c", 0)
	missingCrop := cropstore.NewID("cam-c", testStart.Add(time.Hour), 1, 0)
	matchCamera := func(match MatchJSON) string { return match.Camera }
	cropCamera := func(crop CropJSON) string { return crop.Camera }

	type answer struct {
		status  int
		cameras []string // the cameras of the crops in the answer
		body    string
	}
	get := func(method, path, contentType, body string, headers ...string) answer {
		t.Helper()
		status, data, _ := f.do(t, method, path, contentType, strings.NewReader(body), headers...)
		result := answer{status: status, body: string(data)}
		if status != http.StatusOK {
			return result
		}
		switch {
		case strings.HasPrefix(path, "/v1/search"):
			result.cameras = cameraSet(decode[SearchResponse](t, data).Matches, matchCamera)
		case strings.HasPrefix(path, "/v1/sightings"):
			result.cameras = cameraSet(decode[SightingsResponse](t, data).Sightings, func(s Sighting) string { return s.Camera })
		case strings.HasPrefix(path, "/v1/export"):
			var response SearchResponse
			if err := json.Unmarshal(readZip(t, data)["results.json"], &response); err != nil {
				t.Fatal(err)
			}
			result.cameras = cameraSet(response.Matches, matchCamera)
		case path == "/v1/cameras":
			result.cameras = cameraSet(decode[CamerasResponse](t, data).Cameras, func(c CameraJSON) string { return c.ID })
		case strings.HasPrefix(path, "/v1/crops?"):
			result.cameras = cameraSet(decode[CropsResponse](t, data).Crops, cropCamera)
		case strings.HasPrefix(path, "/v1/crops/") && !strings.HasSuffix(path, "/image"):
			result.cameras = []string{decode[CropJSON](t, data).Camera}
		}
		return result
	}
	searchBody := func(crop string, extra string) string { return fmt.Sprintf(`{"crop_id":%q,"k":60%s}`, crop, extra) }
	notFound := func(crop string) string { return fmt.Sprintf("crop %s not found", crop) }
	both, all := []string{"cam-a", "cam-b"}, []string{"cam-a", "cam-b", "cam-c"}

	for _, test := range []struct {
		name                    string
		method, path, body      string
		tenant, unscoped        answer
		tenantSays, unscopedNot string
	}{
		{name: "search by crop", method: "POST", path: "/v1/search", body: searchBody(ownCrop, ""),
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "search re-ranked", method: "POST", path: "/v1/search", body: searchBody(ownCrop, `,"rerank":true`),
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "search by crop per crop", method: "POST", path: "/v1/search", body: searchBody(ownCrop, `,"track_consensus":false`),
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "search excluding a camera", method: "POST", path: "/v1/search", body: searchBody(ownCrop, `,"exclude_cameras":["cam-a"]`),
			tenant: answer{status: 200, cameras: []string{"cam-b"}}, unscoped: answer{status: 200, cameras: []string{"cam-b", "cam-c"}}},
		{name: "search naming another camera", method: "POST", path: "/v1/search", body: searchBody(ownCrop, `,"cameras":["cam-a","cam-c"]`),
			tenant: answer{status: 403}, tenantSays: "this key sees only cameras cam-a, cam-b, not cam-c",
			unscoped: answer{status: 200, cameras: []string{"cam-a", "cam-c"}}},
		{name: "search by another camera's crop", method: "POST", path: "/v1/search", body: searchBody(otherCrop, ""),
			tenant: answer{status: 404}, tenantSays: notFound(otherCrop), unscoped: answer{status: 200, cameras: all}},
		{name: "search by a crop that never was", method: "POST", path: "/v1/search", body: searchBody(missingCrop, ""),
			tenant: answer{status: 404}, tenantSays: notFound(missingCrop), unscoped: answer{status: 404}},
		{name: "sightings", method: "GET", path: "/v1/sightings?crop=" + url.QueryEscape(ownCrop),
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "sightings of another camera's crop", method: "GET", path: "/v1/sightings?crop=" + url.QueryEscape(otherCrop),
			tenant: answer{status: 404}, tenantSays: notFound(otherCrop), unscoped: answer{status: 200, cameras: all}},
		{name: "export", method: "POST", path: "/v1/export", body: searchBody(ownCrop, ""),
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "export by another camera's crop", method: "POST", path: "/v1/export", body: searchBody(otherCrop, ""),
			tenant: answer{status: 404}, tenantSays: notFound(otherCrop), unscoped: answer{status: 200, cameras: all}},
		{name: "cameras", method: "GET", path: "/v1/cameras",
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "newest crops", method: "GET", path: "/v1/crops?order=newest&limit=500",
			tenant: answer{status: 200, cameras: both}, unscoped: answer{status: 200, cameras: all}},
		{name: "another camera's crops", method: "GET", path: "/v1/crops?camera=cam-c",
			tenant: answer{status: 403}, tenantSays: "not cam-c", unscoped: answer{status: 200, cameras: []string{"cam-c"}}},
		{name: "a crop", method: "GET", path: "/v1/crops/" + ownCrop,
			tenant: answer{status: 200, cameras: []string{"cam-a"}}, unscoped: answer{status: 200, cameras: []string{"cam-a"}}},
		{name: "another camera's crop", method: "GET", path: "/v1/crops/" + otherCrop,
			tenant: answer{status: 404}, tenantSays: notFound(otherCrop), unscoped: answer{status: 200, cameras: []string{"cam-c"}}},
		{name: "another camera's image", method: "GET", path: "/v1/crops/" + otherCrop + "/image",
			tenant: answer{status: 404}, tenantSays: notFound(otherCrop), unscoped: answer{status: 200}},
		{name: "an erasure", method: "POST", path: "/v1/erasures", body: fmt.Sprintf(`{"crop_ids":[%q],"dry_run":true}`, ownCrop),
			tenant: answer{status: 403}, tenantSays: "needs a key from lookup.admin_api_keys", unscoped: answer{status: 403}},
		{name: "the validation set", method: "GET", path: "/v1/validation",
			tenant: answer{status: 403}, tenantSays: "needs a key from lookup.admin_api_keys", unscoped: answer{status: 403}},
	} {
		t.Run(test.name, func(t *testing.T) {
			contentType := ""
			if test.body != "" {
				contentType = "application/json"
			}
			for _, side := range []struct {
				who     string
				want    answer
				headers []string
			}{{"tenant", test.tenant, asTenant}, {"unscoped", test.unscoped, nil}} {
				got := get(test.method, test.path, contentType, test.body, side.headers...)
				if got.status != side.want.status || !slices.Equal(got.cameras, side.want.cameras) {
					t.Errorf("%s: status %d with crops of %v; want %d with %v (%.200s)", side.who, got.status, got.cameras, side.want.status, side.want.cameras, got.body)
				}
			}
			if test.tenantSays != "" {
				got := get(test.method, test.path, contentType, test.body, asTenant...)
				if !strings.Contains(got.body, test.tenantSays) {
					t.Errorf("tenant told %.200s, want %q", got.body, test.tenantSays)
				}
			}
		})
	}

	// The tenant's export says whose search it was, and that it saw some cameras only.
	_, data, _ := f.do(t, "POST", "/v1/export", "application/json", strings.NewReader(searchBody(ownCrop, "")), asTenant...)
	if note := string(readZip(t, data)["README.txt"]); !strings.Contains(note, "scope: tenant, whose key sees only cameras cam-a, cam-b") {
		t.Errorf("the tenant's export note:\n%s", note)
	}

	// Watches: the tenant's own watch searches its cameras only; it sees its own watches and
	// alerts, not the site's.
	tenantWatch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, ownCrop), asTenant...)
	siteWatch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, ownCrop))
	if tenantWatch.Scope != "tenant" || !slices.Equal(tenantWatch.Cameras, both) || siteWatch.Scope != "" || len(siteWatch.Cameras) != 0 {
		t.Fatalf("tenant's watch: scope %q on %v; site's: scope %q on %v", tenantWatch.Scope, tenantWatch.Cameras, siteWatch.Scope, siteWatch.Cameras)
	}
	if status, data, _ := f.do(t, "POST", "/v1/watches", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_id":%q}`, otherCrop)), asTenant...); status != http.StatusNotFound {
		t.Errorf("a tenant's watch on another camera's crop: %d %s", status, data)
	}
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 3 {
		t.Fatalf("raised %d alerts; want 3: person 0 on cam-b for both watches, and on cam-c for the site's", raised)
	}
	for _, side := range []struct {
		who     string
		watches []string
		alerts  []string
		headers []string
	}{
		{"tenant", []string{tenantWatch.ID}, []string{"cam-b"}, asTenant},
		{"unscoped", []string{siteWatch.ID, tenantWatch.ID}, []string{"cam-b", "cam-b", "cam-c"}, nil},
	} {
		_, data, _ := f.do(t, "GET", "/v1/watches", "", nil, side.headers...)
		var listed []string
		for _, watch := range decode[WatchesResponse](t, data).Watches {
			listed = append(listed, watch.ID)
		}
		slices.Sort(listed)
		if want := slices.Sorted(slices.Values(side.watches)); !slices.Equal(listed, want) {
			t.Errorf("%s lists watches %v, want %v", side.who, listed, want)
		}
		_, data, _ = f.do(t, "GET", "/v1/alerts", "", nil, side.headers...)
		var cameras []string
		for _, alert := range decode[AlertsResponse](t, data).Alerts {
			cameras = append(cameras, alert.Camera)
		}
		slices.Sort(cameras)
		if !slices.Equal(cameras, side.alerts) {
			t.Errorf("%s polls alerts on %v, want %v", side.who, cameras, side.alerts)
		}
	}
	for _, path := range []string{"/v1/watches/" + siteWatch.ID, "/v1/watches/" + siteWatch.ID + "/image"} {
		if status, _, _ := f.do(t, "GET", path, "", nil, asTenant...); status != http.StatusNotFound {
			t.Errorf("tenant GET %s: %d, want 404", path, status)
		}
	}
	if status, _, _ := f.do(t, "DELETE", "/v1/watches/"+siteWatch.ID, "", nil, asTenant...); status != http.StatusNotFound {
		t.Errorf("tenant deleted the site's watch: %d", status)
	}
	if status, _, _ := f.do(t, "GET", "/v1/watches/"+siteWatch.ID, "", nil); status != http.StatusOK {
		t.Errorf("the site's watch after the tenant's delete: %d", status)
	}

	// Every request of the tenant's key is audited with its scope.
	var tenantRecords, unscopedWithScope int
	for _, record := range f.audit.lines(t) {
		switch {
		case record.Scope == "tenant":
			tenantRecords++
		case record.Scope != "":
			unscopedWithScope++
		}
	}
	if tenantRecords < 25 || unscopedWithScope != 0 {
		t.Errorf("%d audit records name the tenant's scope, %d another; want every tenant request's and no other", tenantRecords, unscopedWithScope)
	}
}

// A scope that loses a camera loses its alerts there too, even those of watches made before.
func TestScopeNarrowedHidesEarlierAlerts(t *testing.T) {
	dir := t.TempDir()
	f, clock := scopedFixture(t, dir, "cam-a", "cam-b")
	watch := createWatch(t, f, fmt.Sprintf(`{"crop_id":%q,"min_score":0.9}`, cropOf(t, f.gallery, "cam-a", 0)), asTenant...)
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 1 {
		t.Fatalf("raised %d alerts, want 1 on cam-b", raised)
	}
	narrowed, _ := scopedFixture(t, dir, "cam-a")
	for _, path := range []string{"/v1/alerts", "/v1/watches/" + watch.ID} {
		status, data, _ := narrowed.do(t, "GET", path, "", nil, asTenant...)
		if status != http.StatusOK || bytes.Contains(data, []byte(`"camera":"cam-b"`)) {
			t.Errorf("GET %s: %d %s; want no cam-b alert", path, status, data)
		}
	}
	if status, data, _ := narrowed.do(t, "GET", "/v1/alerts", "", nil); status != http.StatusOK || !bytes.Contains(data, []byte(`"camera":"cam-b"`)) {
		t.Errorf("unscoped GET /v1/alerts: %d %s; want the cam-b alert", status, data)
	}
}

// SetKeys takes effect with the next request: a revoked key is refused, a new one accepted, a
// scope's cameras are what it now names; keys that do not build, or none at all on a server that
// had some, leave the keys as they were.
func TestSetKeys(t *testing.T) {
	f, _ := scopedFixture(t, t.TempDir(), "cam-a")
	const newKey = "new-key-0123456789abcdef"
	cameras := func(headers ...string) (int, []string) {
		status, data, _ := f.do(t, "GET", "/v1/cameras", "", nil, headers...)
		if status != http.StatusOK {
			return status, nil
		}
		return status, cameraSet(decode[CamerasResponse](t, data).Cameras, func(c CameraJSON) string { return c.ID })
	}
	asNew := []string{"Authorization", "Bearer " + newKey}
	if err := f.server.SetKeys(Config{APIKeys: []string{newKey}, ScopedAPIKeys: []KeyScope{{Name: "tenant", Cameras: []string{"cam-b", "cam-c"}, Keys: []string{tenantKey}}}}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		who     string
		headers []string
		status  int
		cameras []string
	}{
		{"the revoked key", nil, http.StatusUnauthorized, nil},
		{"the new key", asNew, http.StatusOK, []string{"cam-a", "cam-b", "cam-c"}},
		{"the tenant", asTenant, http.StatusOK, []string{"cam-b", "cam-c"}},
	} {
		if status, got := cameras(side.headers...); status != side.status || !slices.Equal(got, side.cameras) {
			t.Errorf("%s: %d %v, want %d %v", side.who, status, got, side.status, side.cameras)
		}
	}
	for _, refused := range []Config{
		{},
		{APIKeys: []string{tenantKey}, ScopedAPIKeys: []KeyScope{{Name: "tenant", Cameras: []string{"cam-a"}, Keys: []string{tenantKey}}}},
	} {
		if err := f.server.SetKeys(refused); err == nil {
			t.Errorf("SetKeys(%+v) accepted", refused)
		}
	}
	if status, got := cameras(asTenant...); status != http.StatusOK || !slices.Equal(got, []string{"cam-b", "cam-c"}) {
		t.Errorf("after refused reloads the tenant sees %d %v", status, got)
	}
}

// KeyEntries names every configured key by its audit id, kind and place, with the comment above
// it in its file, and never the key.
func TestKeyEntries(t *testing.T) {
	dir := t.TempDir()
	writeKeys := func(name, text string) string {
		path := dir + "/" + name
		if err := writeFile(path, text); err != nil {
			t.Fatal(err)
		}
		return path
	}
	siteFile := writeKeys("site.keys", "# investigations\n# alice\nalice-key-0123456789abcdef\n\nunnamed-key-0123456789abcdef\n")
	tenantFile := writeKeys("tenant.keys", "## bob, north tenant\nbob-key-0123456789abcdef\n")
	entries, err := KeyEntries(config.Lookup{
		APIKeys: []string{"inline-key-0123456789abcdef"}, APIKeysFile: siteFile,
		AdminAPIKeys:  []string{"admin-key-0123456789abcdef"},
		ScopedAPIKeys: []config.ScopedAPIKeys{{Name: "north", Cameras: []string{"gate"}, KeysFile: tenantFile}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyEntry{
		{ID: KeyID("inline-key-0123456789abcdef"), Kind: "api", Source: "config"},
		{ID: KeyID("alice-key-0123456789abcdef"), Kind: "api", Source: siteFile + ":3", File: siteFile, Line: 3, Note: "alice"},
		{ID: KeyID("unnamed-key-0123456789abcdef"), Kind: "api", Source: siteFile + ":5", File: siteFile, Line: 5},
		{ID: KeyID("admin-key-0123456789abcdef"), Kind: "admin", Source: "config"},
		{ID: KeyID("bob-key-0123456789abcdef"), Kind: "scope north", Source: tenantFile + ":2", File: tenantFile, Line: 2, Note: "bob, north tenant"},
	}
	if !slices.Equal(entries, want) {
		t.Errorf("entries\n%+v\nwant\n%+v", entries, want)
	}
	// The id is the one the audit log writes for a request with that key.
	f := newFixture(t, nil)
	f.do(t, "GET", "/v1/cameras", "", nil)
	if records := f.audit.lines(t); len(records) != 1 || records[0].Key != KeyID(testKey) {
		t.Errorf("audited as %+v, want key %s", records, KeyID(testKey))
	}
	if _, err := KeyEntries(config.Lookup{ScopedAPIKeys: []config.ScopedAPIKeys{{Name: "north", Keys: []string{"short"}}}}); err == nil || !strings.Contains(err.Error(), "scope north") {
		t.Errorf("a short scoped key: %v", err)
	}
}

func TestWhoAmI(t *testing.T) {
	f, _ := scopedFixture(t, t.TempDir(), "cam-b", "cam-a")
	if err := f.server.SetKeys(Config{APIKeys: []string{testKey}, AdminAPIKeys: []string{adminKey},
		ScopedAPIKeys: []KeyScope{{Name: "tenant", Cameras: []string{"cam-b", "cam-a"}, Keys: []string{tenantKey}}}}); err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		who     string
		headers []string
		want    WhoAmIResponse
	}{
		{"the site's key", nil, WhoAmIResponse{Key: KeyID(testKey)}},
		{"an admin key", []string{"Authorization", "Bearer " + adminKey}, WhoAmIResponse{Key: KeyID(adminKey), Admin: true}},
		{"a scoped key", asTenant, WhoAmIResponse{Key: KeyID(tenantKey), Scope: "tenant", Cameras: []string{"cam-a", "cam-b"}}},
	} {
		status, data, _ := f.do(t, "GET", "/v1/whoami", "", nil, test.headers...)
		got := decode[WhoAmIResponse](t, data)
		if status != http.StatusOK || got.Key != test.want.Key || got.Admin != test.want.Admin || got.Scope != test.want.Scope || !slices.Equal(got.Cameras, test.want.Cameras) {
			t.Errorf("%s: %d %+v, want %+v", test.who, status, got, test.want)
		}
	}
}
