package lookup

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/reid-project/reid/eval"
	"github.com/reid-project/reid/lookup/lookuptest"
)

// chromiumPath is Debian's chromium (Makefile DEB_PACKAGES). The test fails, never skips, without
// it: the page is a deliverable and this is its only end-to-end check.
const chromiumPath = "/usr/bin/chromium"

// TestBrowserSearch drives the real page in headless Chromium: enter the API key, upload a crop,
// check the ranked grid and the timeline, pivot to a result, and save a screenshot.
func TestBrowserSearch(t *testing.T) {
	f := newFixture(t, nil)
	outDir := os.Getenv("REID_TEST_OUT")
	if outDir == "" {
		outDir = t.TempDir()
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	person := 2
	queryFile := filepath.Join(t.TempDir(), "query.jpg")
	if err := os.WriteFile(queryFile, lookuptest.Crop(f.gallery.Identities[person], 4242, false), 0o644); err != nil {
		t.Fatal(err)
	}

	b := openBrowser(t, f.http.URL)
	ctx, step, evaluate := b.ctx, b.step, b.evaluate

	// Keys are required: the page asks for one after the cameras call is refused.
	b.enterKey()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('#cameras .chip').length === 3`)); err != nil {
		t.Fatalf("camera chips after entering the key: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('#results .result:not(.skeleton)').length > 0`)); err != nil {
		t.Fatalf("browse grid: %v", err)
	}

	step("upload a crop", chromedp.SetUploadFiles(chromedp.ID("file"), []string{queryFile}))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.querySelectorAll('#results .result:not(.skeleton) .score .value').length === 20`)); err != nil {
		var summary string
		evaluate(`document.getElementById('error-text').textContent + ' | ' + document.getElementById('results-summary').textContent`, &summary)
		t.Fatalf("result grid with 20 scored results: %v (page says %q)", err, summary)
	}
	var errorShown string
	evaluate(`getComputedStyle(document.getElementById('error')).display`, &errorShown)
	if errorShown != "none" {
		t.Errorf("the error banner is visible after a successful search")
	}
	var scores []any
	evaluate(`[...document.querySelectorAll('#results .result .score .value')].map(e => parseFloat(e.textContent))`, &scores)
	for i := 1; i < len(scores); i++ {
		if scores[i].(float64) > scores[i-1].(float64) {
			t.Errorf("scores not descending: %v", scores)
			break
		}
	}
	var ids []any
	evaluate(`[...document.querySelectorAll('#results .result')].map(e => e.dataset.crop)`, &ids)
	same := 0
	for _, id := range ids[:5] {
		if f.gallery.Identity[id.(string)] == person {
			same++
		}
	}
	if same < 4 {
		t.Errorf("only %d of the top 5 shown results are the uploaded person", same)
	}
	// Track ids are long (cropstore.TrackID); people read the tracker's own number.
	var cameraLabel string
	evaluate(`document.querySelector('#results .result .camera').textContent`, &cameraLabel)
	if !regexp.MustCompile(`^cam-[abc] · #\d{1,6}$`).MatchString(cameraLabel) {
		t.Errorf("result card says %q, want the camera and the track's short number", cameraLabel)
	}
	var lanes, bars float64
	evaluate(`document.querySelectorAll('#timeline .lane').length`, &lanes)
	evaluate(`document.querySelectorAll('#timeline .sighting').length`, &bars)
	if lanes != 3 || bars < 3 {
		t.Errorf("timeline has %v lanes and %v sightings, want 3 lanes and >= 3 sightings", lanes, bars)
	}
	// Thumbnails are fetched with the key; wait for them before the screenshot.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`[...document.querySelectorAll('#results img.thumb')].every(i => i.complete && i.naturalWidth > 0)`)); err != nil {
		t.Errorf("thumbnails did not load: %v", err)
	}
	screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(outDir, "lookup-search.png")
	if err := os.WriteFile(shot, screenshot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the search: %s", shot)

	// An uploaded photo (someone asking what is held about them) has no sighting of its own, but
	// its results' sightings can be picked to erase: none is ticked to begin with.
	step("open the erase panel for the upload", chromedp.Click(chromedp.ID("erase-button")))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('#erase-sightings input').length > 0 && `+
		`document.querySelectorAll('#erase-sightings input:checked').length === 0 && `+
		`document.getElementById('erase-preview').textContent === 'Tick the sightings to erase.'`)); err != nil {
		t.Errorf("the erase panel of an upload: %v", err)
	}
	step("close it", chromedp.Click(chromedp.ID("erase-cancel")))

	// Clicking a result pivots the search to that crop.
	third := ids[2].(string)
	step("pivot to the third result", chromedp.Click(chromedp.CSS(`#results .result:nth-child(3)`)))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.getElementById('query-label').textContent === `+jsString(third)+
			` && document.querySelector('#results .result .badge') !== null`)); err != nil {
		t.Fatalf("pivot to %s: %v", third, err)
	}
	var first string
	evaluate(`document.querySelector('#results .result').dataset.crop`, &first)
	if first != third {
		t.Errorf("after pivoting, the first result is %s, want the crop itself %s", first, third)
	}
	var address string
	evaluate(`location.hash`, &address)
	if want := "#crop=" + url.PathEscape(third); address != want {
		t.Errorf("address after the pivot ends in %q, want %q (a crop search can be bookmarked)", address, want)
	}
	var history float64
	evaluate(`document.querySelectorAll('#history li').length`, &history)
	if history != 2 {
		t.Errorf("trail has %v entries, want 2", history)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`[...document.querySelectorAll('#results img.thumb')].every(i => i.complete && i.naturalWidth > 0)`)); err != nil {
		t.Errorf("thumbnails did not load after the pivot: %v", err)
	}
	screenshot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot = filepath.Join(outDir, "lookup-pivot.png")
	if err := os.WriteFile(shot, screenshot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot after the pivot: %s", shot)

	// A bookmarked crop search (#crop=ID) opens with that search, the key being remembered.
	fifth := ids[4].(string)
	step("open a bookmarked search", chromedp.Navigate(f.http.URL+"/#crop="+url.PathEscape(fifth)))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.getElementById('query-label').textContent === `+jsString(fifth)+
			` && document.querySelectorAll('#results .result:not(.skeleton) .score .value').length > 0`)); err != nil {
		t.Fatalf("bookmarked search for %s: %v", fifth, err)
	}
	evaluate(`document.querySelector('#results .result').dataset.crop`, &first)
	if first != fifth {
		t.Errorf("the bookmarked search's first result is %s, want the crop itself %s", first, fifth)
	}

	// Export downloads the search: the page posts it to /v1/export (the audit log says so).
	step("export the results", chromedp.Click(chromedp.ID("export-button")))
	exported := false
	for wait := time.Now().Add(20 * time.Second); !exported && time.Now().Before(wait); time.Sleep(50 * time.Millisecond) {
		for _, record := range f.audit.lines(t) {
			exported = exported || record.Route == "POST /v1/export" && record.Status == 200 && record.Params["crop_id"] == fifth
		}
	}
	if !exported {
		t.Errorf("clicking Export made no successful POST /v1/export for %s", fifth)
	}

	// Results are ordered by whole tracks unless the box is unticked; then the page searches again,
	// crop by crop.
	var summary string
	evaluate(`document.getElementById('results-summary').textContent`, &summary)
	if !strings.Contains(summary, "by whole tracks") || !strings.Contains(summary, "model color") {
		t.Errorf("results summary %q does not say the results are ordered by whole tracks, from the model color's gallery", summary)
	}
	step("untick 'Score by whole tracks'", chromedp.Click(chromedp.ID("track-consensus")))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`!document.getElementById('results-summary').textContent.includes('by whole tracks') && document.querySelectorAll('#results .result:not(.skeleton) .score .value').length > 0`)); err != nil {
		t.Fatalf("search again without track consensus: %v", err)
	}
	var lastSearch AuditRecord
	for _, record := range f.audit.lines(t) {
		if record.Route == "POST /v1/search" {
			lastSearch = record
		}
	}
	if lastSearch.Params["track_consensus"] != false {
		t.Errorf("the last search's audit entry has params %v, want track_consensus false", lastSearch.Params)
	}

	// A bad upload shows the server's message instead of failing silently.
	badFile := filepath.Join(t.TempDir(), "broken.jpg")
	good := lookuptest.Crop(f.gallery.Identities[0], 1, false)
	if err := os.WriteFile(badFile, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	step("upload a truncated JPEG", chromedp.SetUploadFiles(chromedp.ID("file"), []string{badFile}))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`!document.getElementById('error').hidden && document.getElementById('error-text').textContent.includes('truncated')`)); err != nil {
		var text string
		evaluate(`document.getElementById('error-text').textContent`, &text)
		t.Fatalf("error message for a truncated upload: %v (shown: %q)", err, text)
	}
}

// browser is headless Chromium on the lookup page, each step bounded by one 90 s deadline.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func openBrowser(t *testing.T, pageURL string) *browser {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Fatalf("chromium is required for the browser test (apt-get install chromium): %v", err)
	}
	allocatorCtx, cancelAllocator := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	t.Cleanup(cancelAllocator)
	browserCtx, cancelBrowser := chromedp.NewContext(allocatorCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	// Start the browser on a context without a deadline (a deadline would bound its whole life),
	// then bound each step.
	if err := chromedp.Do(browserCtx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("start chromium and load the page: %v", err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, 90*time.Second)
	t.Cleanup(cancel)
	return &browser{t: t, ctx: ctx}
}

func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", name, err)
	}
}

func (b *browser) evaluate(expression string, into any) {
	b.t.Helper()
	result, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](expression))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expression, err)
	}
	switch into := into.(type) {
	case *float64:
		*into, _ = result.(float64)
	case *string:
		*into, _ = result.(string)
	case *[]any:
		*into, _ = result.([]any)
	}
}

// waitFor polls a JavaScript condition until it holds.
func (b *browser) waitFor(what, condition string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](condition)); err != nil {
		var shown string
		b.evaluate(`document.getElementById('error-text').textContent`, &shown)
		b.t.Fatalf("%s: %v (error banner: %q)", what, err, shown)
	}
}

// enterKey answers the key panel the page opens when its first calls are refused.
func (b *browser) enterKey() {
	b.t.Helper()
	b.step("key panel opens on 401", chromedp.WaitVisible(chromedp.ID("key-input")))
	b.step("enter the key",
		chromedp.SendKeys(chromedp.ID("key-input"), testKey),
		chromedp.Click(chromedp.CSS(`#key-panel button[type=submit]`)),
	)
}

// TestBrowserWatch drives the watch flow in the page: watch the person of a crop search, see the
// alerts arrive without reloading (the page's long poll), search from one, and delete the watch.
func TestBrowserWatch(t *testing.T) {
	f, clock := watchFixture(t, t.TempDir())
	query := f.gallery.Crops[1]
	b := openBrowser(t, f.http.URL+"/#crop="+url.PathEscape(query))
	b.enterKey()
	b.waitFor("the crop search", `document.getElementById('query-label').textContent === `+jsString(query)+
		` && document.querySelectorAll('#results .result:not(.skeleton)').length > 0 && !document.getElementById('watch-button').hidden`)
	b.step("watch this person", chromedp.Click(chromedp.ID("watch-button")))
	b.waitFor("the watch listed", `document.querySelectorAll('#watches .watch').length === 1`)

	// Person 0 walks past cam-b and cam-c; the server's check raises two alerts, which the page's
	// open poll brings in.
	clock.Set(testStart.Add(10 * time.Minute))
	if raised := check(t, f); raised != 2 {
		t.Fatalf("raised %d alerts, want 2", raised)
	}
	b.waitFor("alerts in the page", `document.querySelectorAll('#alerts .alert.new').length === 2 && !document.getElementById('alerts-card').hidden`)
	var alertCrops []any
	b.evaluate(`[...document.querySelectorAll('#alerts .alert')].map(e => e.dataset.crop)`, &alertCrops)
	for _, crop := range alertCrops {
		if f.gallery.Identity[crop.(string)] != f.gallery.Identity[query] {
			t.Errorf("alert for crop %s of person %d, want person %d", crop, f.gallery.Identity[crop.(string)], f.gallery.Identity[query])
		}
	}
	b.waitFor("the watch's alert count", `document.querySelector('#watches .watch .what span').textContent.startsWith('2 alerts')`)
	b.waitFor("alert thumbnails", `[...document.querySelectorAll('#alerts img')].every(i => i.complete && i.naturalWidth > 0)`)
	if outDir := os.Getenv("REID_TEST_OUT"); outDir != "" {
		screenshot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(outDir, "lookup-alerts.png"), screenshot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	b.waitFor("the unseen alerts in the title", `document.title.startsWith('(2) ')`)
	first := alertCrops[0].(string)
	b.step("search from an alert", chromedp.Click(chromedp.CSS(`#alerts .alert`)))
	b.waitFor("the search from the alert", `document.getElementById('query-label').textContent === `+jsString(first))
	b.waitFor("one unseen alert left in the title", `document.title.startsWith('(1) ')`)

	b.step("search with the watch's person", chromedp.Click(chromedp.CSS(`#watches .watch img`)))
	b.waitFor("the search from the watch", `document.getElementById('query-label').textContent === `+jsString(query))

	// A list fetched just before the delete, whose answer comes back after the delete's own
	// reload (an alert arriving then does that), must not bring the watch back.
	b.evaluate(`(() => {
		const realFetch = window.fetch;
		let held = false;
		window.fetch = (url, options) => {
			const answer = realFetch(url, options);
			if (held || url !== "/v1/watches" || (options && options.method)) return answer;
			held = true;
			return answer.then((response) => new Promise((resolve) => setTimeout(() => resolve(response), 1500)));
		};
		loadWatches();
		return true;
	})()`, nil)
	b.step("delete the watch", chromedp.Click(chromedp.CSS(`#watches .watch button`)))
	b.waitFor("the watch and its alerts gone", `document.querySelectorAll('#watches .watch').length === 0 && document.querySelectorAll('#alerts .alert').length === 0`)
	b.step("the slow list's answer arrives", chromedp.Sleep(2*time.Second))
	var shown float64
	b.evaluate(`document.querySelectorAll('#watches .watch').length`, &shown)
	if shown != 0 {
		t.Errorf("%v watches shown after a list fetched before the delete came back", shown)
	}
	status, data, _ := f.do(t, "GET", "/v1/watches", "", nil)
	if status != http.StatusOK || !strings.Contains(string(data), `"watches":[]`) {
		t.Errorf("after deleting in the page: %d %s", status, data)
	}
}

// TestBrowserErase erases a person's sightings from the page: with an ordinary key the preview
// says an admin key is needed; with an admin key it counts the query's sighting's crops, then
// those of the same person's sighting on another camera ticked beside it, insists on a reason,
// and erases them, leaving the page on the browse grid without them.
func TestBrowserErase(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AdminAPIKeys = []string{adminKey} })
	query := f.gallery.Crops[1]
	track := cropsOf(t, f, trackOf(t, f, query))
	b := openBrowser(t, f.http.URL+"/#crop="+url.PathEscape(query))
	b.enterKey()
	b.waitFor("the crop search", `document.getElementById('query-label').textContent === `+jsString(query)+
		` && document.querySelectorAll('#results .result:not(.skeleton)').length > 0 && !document.getElementById('erase-button').hidden`)
	b.step("erase with an ordinary key", chromedp.Click(chromedp.ID("erase-button")))
	b.waitFor("the admin key asked for", `document.getElementById('erase-preview').textContent.includes('lookup.admin_api_keys')`)
	b.step("cancel", chromedp.Click(chromedp.ID("erase-cancel")))

	b.step("open the key panel", chromedp.Click(chromedp.ID("key-button")), chromedp.WaitVisible(chromedp.ID("key-input")))
	b.evaluate(`document.getElementById('key-input').value = ''`, nil)
	b.step("enter the admin key",
		chromedp.SendKeys(chromedp.ID("key-input"), adminKey),
		chromedp.Click(chromedp.CSS(`#key-panel button[type=submit]`)),
	)
	b.waitFor("the search again", `document.querySelectorAll('#results .result:not(.skeleton)').length > 0`)
	b.step("erase with the admin key", chromedp.Click(chromedp.ID("erase-button")))
	b.waitFor("the preview", `document.getElementById('erase-preview').textContent.startsWith('Erases 4 crops of cam-a #') && document.getElementById('erase-preview').textContent.includes('crops of these tracks seen later are not kept either') && !document.getElementById('erase-confirm').disabled`)
	// The same person's sighting on cam-b goes too.
	var choices []any
	b.evaluate(`[...document.querySelectorAll('#erase-sightings input')].map(box => box.value + ' ' + box.dataset.camera)`, &choices)
	pick := -1
	for i, choice := range choices {
		id, camera, _ := strings.Cut(choice.(string), " ")
		if camera == "cam-b" && f.gallery.Identity[id] == f.gallery.Identity[query] {
			pick = i
			break
		}
	}
	if pick < 0 {
		t.Fatalf("no sighting of the query's person on cam-b among %v", choices)
	}
	second := cropsOf(t, f, trackOf(t, f, choices[pick].(string)[:strings.IndexByte(choices[pick].(string), ' ')]))
	track = append(track, second...)
	b.evaluate(fmt.Sprintf(`document.querySelectorAll('#erase-sightings input')[%d].click()`, pick), nil)
	b.waitFor("the preview of both", `document.getElementById('erase-preview').textContent.startsWith('Erases 8 crops of 2 sightings (cam-a #') && !document.getElementById('erase-confirm').disabled`)
	if outDir := os.Getenv("REID_TEST_OUT"); outDir != "" {
		screenshot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(outDir, "lookup-erase.png"), screenshot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.step("erase without a reason", chromedp.Click(chromedp.ID("erase-confirm")))
	b.waitFor("a reason asked for", `document.getElementById('erase-preview').textContent.startsWith('Give a reason')`)
	if status, _, _ := f.do(t, "GET", "/v1/crops/"+query, "", nil); status != http.StatusOK {
		t.Fatalf("the crop was erased without a reason (status %d)", status)
	}
	b.step("give the reason and erase",
		chromedp.SendKeys(chromedp.ID("erase-reason"), "DSR-7"),
		chromedp.Click(chromedp.ID("erase-confirm")),
	)
	b.waitFor("the erasure done", `document.getElementById('query-label').textContent === 'Erased 8 crops.' && document.getElementById('erase-button').hidden`)
	b.waitFor("the browse grid", `document.getElementById('results-title').textContent === 'Browse crops' && document.querySelectorAll('#results .result:not(.skeleton)').length > 0`)
	var shown []any
	b.evaluate(`[...document.querySelectorAll('#results .result')].map(e => e.dataset.crop)`, &shown)
	for _, id := range shown {
		if slices.Contains(track, id.(string)) {
			t.Errorf("the browse grid still shows erased crop %s", id)
		}
	}
	for _, id := range track {
		if status, _, _ := f.do(t, "GET", "/v1/crops/"+id, "", nil); status != http.StatusNotFound {
			t.Errorf("crop %s of the erased sighting answers %d", id, status)
		}
	}
}

// TestBrowserLabel adds a person to the validation set from the page: search with a crop, tick the
// same person's sighting on another camera among the query's, and add; the set on disk then holds
// them on both cameras.
func TestBrowserLabel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "validation")
	f := newFixture(t, func(c *Config) { c.ValidationDir, c.AdminAPIKeys = dir, []string{adminKey} })
	query := f.gallery.Crops[1]
	person := f.gallery.Identity[query]
	b := openBrowser(t, f.http.URL+"/#crop="+url.PathEscape(query))
	b.step("key panel opens on 401", chromedp.WaitVisible(chromedp.ID("key-input")))
	b.step("enter the admin key", chromedp.SendKeys(chromedp.ID("key-input"), adminKey), chromedp.Click(chromedp.CSS(`#key-panel button[type=submit]`)))
	b.waitFor("the crop search", `!document.getElementById('label-button').hidden`)
	b.step("open the labelling panel", chromedp.Click(chromedp.ID("label-button")))
	b.waitFor("the sightings to pick from", `document.querySelectorAll('#label-sightings input').length > 1 && document.getElementById('label-confirm').disabled`)
	var choices []any
	b.evaluate(`[...document.querySelectorAll('#label-sightings input:not(:disabled)')].map(box => box.value + ' ' + box.dataset.camera)`, &choices)
	pick := -1
	for i, choice := range choices {
		id, camera, _ := strings.Cut(choice.(string), " ")
		if camera != "cam-a" && f.gallery.Identity[id] == person {
			pick = i
			break
		}
	}
	if pick < 0 {
		t.Fatalf("no sighting of person %d on another camera among %v", person, choices)
	}
	b.evaluate(fmt.Sprintf(`document.querySelectorAll('#label-sightings input:not(:disabled)')[%d].click()`, pick), nil)
	b.waitFor("adding allowed", `!document.getElementById('label-confirm').disabled`)
	b.step("add the person", chromedp.SendKeys(chromedp.ID("label-note"), "from the page"), chromedp.Click(chromedp.ID("label-confirm")))
	b.waitFor("the person added", `document.getElementById('label-message').textContent.startsWith('Added as person 0001 (8 crops from cam-a, ')`)
	if outDir := os.Getenv("REID_TEST_OUT"); outDir != "" {
		screenshot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(outDir, "lookup-label.png"), screenshot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := eval.Load(dir)
	if err != nil || len(set.Query) != 2 || len(set.Gallery) != 6 {
		t.Fatalf("the set after adding from the page: %d queries, %d gallery images, %v", len(set.Query), len(set.Gallery), err)
	}
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// TestBrowserScopedKey: with a scoped key the page offers its cameras only and says, on the key
// button, whose scope the key is; the newest crops it browses are of those cameras.
func TestBrowserScopedKey(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ScopedAPIKeys = []KeyScope{{Name: "tenant", Cameras: []string{"cam-a", "cam-b"}, Keys: []string{tenantKey}}}
	})
	b := openBrowser(t, f.http.URL+"/")
	b.step("key panel opens on 401", chromedp.WaitVisible(chromedp.ID("key-input")))
	b.step("enter the tenant's key",
		chromedp.SendKeys(chromedp.ID("key-input"), tenantKey),
		chromedp.Click(chromedp.CSS(`#key-panel button[type=submit]`)),
	)
	b.waitFor("the scope on the key button", `document.getElementById('key-button').textContent === 'API key ✓ · tenant'`+
		` && document.getElementById('key-button').title.endsWith('cam-a, cam-b')`)
	b.waitFor("the browse grid", `document.querySelectorAll('#results .result:not(.skeleton)').length > 0`)
	var chips, shown []any
	b.evaluate(`[...document.querySelectorAll('#cameras .chip')].map(chip => chip.textContent)`, &chips)
	b.evaluate(`[...document.querySelectorAll('#results .result')].map(e => e.dataset.crop)`, &shown)
	if fmt.Sprint(chips) != "[cam-a cam-b]" {
		t.Errorf("camera chips %v, want the scope's cam-a and cam-b", chips)
	}
	for _, id := range shown {
		if strings.HasPrefix(id.(string), "cam-c_") {
			t.Errorf("the tenant's page browses %s", id)
		}
	}
}
