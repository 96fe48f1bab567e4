package lookup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/vecmath"
	"github.com/reid-project/reid/lookup/lookuptest"
)

var testStart = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

const testKey = "test-key-0123456789abcdef"

type fixture struct {
	gallery *lookuptest.Gallery
	server  *Server
	http    *httptest.Server
	audit   *syncBuffer
}

type syncBuffer struct {
	mu     sync.Mutex
	buffer bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffer.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []AuditRecord {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var records []AuditRecord
	scanner := bufio.NewScanner(bytes.NewReader(b.buffer.Bytes()))
	for scanner.Scan() {
		var record AuditRecord
		if err := json.Unmarshal(scanner.Bytes(), &record); err != nil {
			t.Fatalf("audit line %q: %v", scanner.Text(), err)
		}
		records = append(records, record)
	}
	return records
}

func newFixture(t *testing.T, modify func(*Config)) *fixture {
	t.Helper()
	gallery, err := lookuptest.NewGallery(lookuptest.GalleryOptions{
		Cameras: []string{"cam-a", "cam-b", "cam-c"}, Identities: 8, CropsPerTrack: 4, Start: testStart, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	audit := &syncBuffer{}
	config := Config{
		Index: gallery.Index, Store: gallery.Store, Embedder: gallery.Embedder,
		APIKeys: []string{testKey}, Audit: audit,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// No other process stores crops here, so an erasure need not wait for one to notice it.
		ErasureSettle: time.Millisecond,
	}
	if modify != nil {
		modify(&config)
	}
	server, err := New(config)
	if err != nil {
		t.Fatal(err)
	}
	httpServer := httptest.NewServer(server)
	t.Cleanup(httpServer.Close)
	return &fixture{gallery: gallery, server: server, http: httpServer, audit: audit}
}

// do sends a request with the test key and returns status and body.
func (f *fixture) do(t *testing.T, method, path, contentType string, body io.Reader, headers ...string) (int, []byte, http.Header) {
	t.Helper()
	request, err := http.NewRequest(method, f.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		request.Header.Set("Content-Type", contentType)
	}
	request.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			request.Header.Del(headers[i])
		} else {
			request.Header.Set(headers[i], headers[i+1])
		}
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer response.Body.Close()
	data, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response.StatusCode, data, response.Header
}

func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var value T
	if err := json.Unmarshal(data, &value); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return value
}

func multipartBody(t *testing.T, image []byte, fields map[string]string) (string, *bytes.Buffer) {
	t.Helper()
	var body bytes.Buffer
	writer := multipart.NewWriter(&body)
	for name, value := range fields {
		writer.WriteField(name, value)
	}
	if image != nil {
		header := textproto.MIMEHeader{}
		header.Set("Content-Disposition", `form-data; name="image"; filename="crop.jpg"`)
		header.Set("Content-Type", "image/jpeg")
		part, err := writer.CreatePart(header)
		if err != nil {
			t.Fatal(err)
		}
		part.Write(image)
	}
	writer.Close()
	return writer.FormDataContentType(), &body
}

// precisionAt returns the fraction of matches of the query's identity.
func precision(gallery *lookuptest.Gallery, identity int, matches []MatchJSON) float64 {
	same := 0
	for _, match := range matches {
		if gallery.Identity[match.CropID] == identity {
			same++
		}
	}
	return float64(same) / float64(len(matches))
}

func TestSearchByImage(t *testing.T) {
	f := newFixture(t, nil)
	person := 3
	query := lookuptest.Crop(f.gallery.Identities[person], 999, false)
	queryPNG := lookuptest.Crop(f.gallery.Identities[person], 999, true)
	multipartType, multipartData := multipartBody(t, query, map[string]string{"k": "5"})
	for _, test := range []struct {
		name, contentType, path string
		body                    []byte
	}{
		{"raw jpeg", "image/jpeg", "/v1/search?k=5", query},
		{"raw png", "image/png", "/v1/search?k=5", queryPNG},
		{"multipart", multipartType, "/v1/search", multipartData.Bytes()},
	} {
		t.Run(test.name, func(t *testing.T) {
			status, body, _ := f.do(t, "POST", test.path, test.contentType, bytes.NewReader(test.body))
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			response := decode[SearchResponse](t, body)
			if len(response.Matches) != 5 {
				t.Fatalf("got %d matches, want 5", len(response.Matches))
			}
			if p := precision(f.gallery, person, response.Matches); p < 0.8 {
				t.Errorf("precision@5 = %.2f, want >= 0.8: %+v", p, response.Matches)
			}
			for i, match := range response.Matches {
				if i > 0 && match.Score > response.Matches[i-1].Score {
					t.Errorf("matches not by descending score at %d", i)
				}
				if match.ThumbnailURL != "/v1/crops/"+match.CropID+"/image" || match.Camera == "" || match.Time.IsZero() || match.Track == 0 {
					t.Errorf("incomplete match %+v", match)
				}
			}
			if response.Query.VectorFrom != "upload" || response.Query.ImageWidth != 64 || response.Query.ImageHeight != 128 {
				t.Errorf("query echo %+v", response.Query)
			}
			if len(response.Sightings) == 0 {
				t.Error("no sightings in the response")
			}
		})
	}
}

func TestSearchByCropID(t *testing.T) {
	f := newFixture(t, nil)
	id := f.gallery.Crops[13]
	person := f.gallery.Identity[id]
	body := fmt.Sprintf(`{"crop_id":%q,"k":4}`, id)
	status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(body))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	response := decode[SearchResponse](t, data)
	if response.Query.VectorFrom != "index" || response.Query.Model != "color" {
		t.Errorf("vector from %q, model %q; want index, and the gallery's model (color)", response.Query.VectorFrom, response.Query.Model)
	}
	if len(response.Matches) != 4 || response.Matches[0].CropID != id {
		t.Fatalf("want the crop itself first of 4: %+v", response.Matches)
	}
	if p := precision(f.gallery, person, response.Matches); p < 0.75 {
		t.Errorf("precision@4 = %.2f", p)
	}
	if f.gallery.Embedder.Calls() != 0 {
		t.Errorf("embedder called %d times for an indexed crop", f.gallery.Embedder.Calls())
	}

	// A crop in the store but not (yet) in the index is embedded from its stored image.
	record, err := f.gallery.Store.Metadata(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	image, _ := f.gallery.Store.Image(context.Background(), id)
	record.ID = cropstore.NewID("cam-new", testStart, 1, 0)
	record.Camera = "cam-new"
	record.JPEG = image
	f.gallery.Store.Put(record)
	status, data, _ = f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"k":3}`, record.ID)))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	response = decode[SearchResponse](t, data)
	if response.Query.VectorFrom != "embedder" || f.gallery.Embedder.Calls() != 1 {
		t.Errorf("vector from %q after %d embeds, want embedder after 1", response.Query.VectorFrom, f.gallery.Embedder.Calls())
	}
	if p := precision(f.gallery, person, response.Matches); p < 0.66 {
		t.Errorf("precision@3 = %.2f", p)
	}
}

func TestSearchFiltersPassedThrough(t *testing.T) {
	f := newFixture(t, nil)
	id := f.gallery.Crops[0]
	from := testStart.Add(time.Minute)
	to := testStart.Add(10 * time.Minute)
	body := fmt.Sprintf(`{"crop_id":%q,"k":7,"cameras":["cam-a","cam-b"],"exclude_cameras":["cam-b"],"from":%q,"to":%q,"min_score":0.25}`,
		id, from.Format(time.RFC3339), to.Format(time.RFC3339))
	status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(body))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	queries := f.gallery.Index.Queries()
	got := queries[len(queries)-1]
	want := index.Filter{Cameras: []string{"cam-a", "cam-b"}, ExcludeCameras: []string{"cam-b"}, From: from, To: to, MinScore: 0.25}
	if got.K != consensusCandidates(7) || !slices.Equal(got.Filter.Cameras, want.Cameras) || !slices.Equal(got.Filter.ExcludeCameras, want.ExcludeCameras) ||
		!got.Filter.From.Equal(want.From) || !got.Filter.To.Equal(want.To) || got.Filter.MinScore != want.MinScore {
		t.Fatalf("query %+v, want K %d (candidates for track consensus) and filter %+v", got, consensusCandidates(7), want)
	}
	for _, match := range decode[SearchResponse](t, data).Matches {
		if match.Camera != "cam-a" || match.Time.Before(from) || match.Time.After(to) || match.Score < 0.25 {
			t.Errorf("match outside the filter: %+v", match)
		}
	}
	// The same filters in the query string of an image upload, without track consensus.
	image := lookuptest.Crop(f.gallery.Identities[0], 5, false)
	query := url.Values{"k": {"3"}, "track_consensus": {"false"}, "camera": {"cam-c"}, "exclude_camera": {"cam-a,cam-b"}, "from": {from.Format(time.RFC3339)}, "min_score": {"-0.5"}}
	status, data, _ = f.do(t, "POST", "/v1/search?"+query.Encode(), "image/jpeg", bytes.NewReader(image))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	queries = f.gallery.Index.Queries()
	got = queries[len(queries)-1]
	if got.K != 3 || !slices.Equal(got.Filter.Cameras, []string{"cam-c"}) || !slices.Equal(got.Filter.ExcludeCameras, []string{"cam-a", "cam-b"}) ||
		!got.Filter.From.Equal(from) || got.Filter.MinScore != -0.5 {
		t.Fatalf("query %+v", got)
	}
}

func TestRerank(t *testing.T) {
	f := newFixture(t, nil)
	id := f.gallery.Crops[5]
	status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"k":8,"rerank":true}`, id)))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	response := decode[SearchResponse](t, data)
	queries := f.gallery.Index.Queries()
	if k := queries[len(queries)-1].K; k != rerankCandidates(8) {
		t.Errorf("re-ranking fetched %d candidates, want %d", k, rerankCandidates(8))
	}
	if len(response.Matches) != 8 {
		t.Fatalf("%d matches", len(response.Matches))
	}
	for i, match := range response.Matches {
		if match.RerankDistance == nil {
			t.Fatalf("match %d has no rerank distance", i)
		}
		if i > 0 && *match.RerankDistance < *response.Matches[i-1].RerankDistance {
			t.Errorf("not ordered by rerank distance at %d", i)
		}
	}
	// Identity 5 appears as 3 tracks of 4 crops: all 8 should be that person.
	if p := precision(f.gallery, f.gallery.Identity[id], response.Matches); p < 0.875 {
		t.Errorf("re-ranked precision@8 = %.2f", p)
	}
}

func TestKReciprocalRerankImprovesClusteredRetrieval(t *testing.T) {
	// Identities are noisy clusters; a query is one more noisy sample. Re-ranking the top 40
	// should keep or raise precision@8 over plain cosine ranking, averaged over many queries.
	random := rand.New(rand.NewPCG(3, 4))
	const dim, identities, perIdentity, k = 24, 12, 8, 8
	noisy := func(center []float32, noise float64) []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = center[i] + float32(random.NormFloat64()*noise)
		}
		return lookuptest.Normalize(v)
	}
	centers := make([][]float32, identities)
	for i := range centers {
		centers[i] = noisy(make([]float32, dim), 1)
	}
	var gallery [][]float32
	var labels []int
	for identity, center := range centers {
		for range perIdentity {
			gallery = append(gallery, noisy(center, 0.3))
			labels = append(labels, identity)
		}
	}
	var plain, reranked float64
	const queries = 40
	for q := range queries {
		identity := q % identities
		query := noisy(centers[identity], 0.3)
		order := make([]int, len(gallery))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int {
			sa, sb := vecmath.Dot(query, gallery[a]), vecmath.Dot(query, gallery[b])
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return 0
		})
		candidates := order[:40]
		for _, position := range order[:k] {
			if labels[position] == identity {
				plain++
			}
		}
		subset := make([][]float32, len(candidates))
		for i, position := range candidates {
			subset[i] = gallery[position]
		}
		rerankOrder, distances, err := kReciprocalRerank(context.Background(), query, subset)
		if err != nil {
			t.Fatal(err)
		}
		if len(rerankOrder) != len(subset) || len(distances) != len(subset) {
			t.Fatalf("rerank returned %d/%d for %d", len(rerankOrder), len(distances), len(subset))
		}
		for _, position := range rerankOrder[:k] {
			if labels[candidates[position]] == identity {
				reranked++
			}
		}
	}
	plain /= queries * k
	reranked /= queries * k
	t.Logf("precision@%d: cosine %.3f, k-reciprocal %.3f", k, plain, reranked)
	if reranked < plain-0.01 || reranked < 0.5 {
		t.Errorf("re-ranking precision %.3f is worse than cosine %.3f", reranked, plain)
	}
}

func TestSightings(t *testing.T) {
	f := newFixture(t, nil)
	id := f.gallery.Crops[2] // identity 0 on cam-a
	person := f.gallery.Identity[id]
	status, data, _ := f.do(t, "GET", "/v1/sightings?crop="+id+"&k=12", "", nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	response := decode[SightingsResponse](t, data)
	if response.Matches != 12 {
		t.Errorf("%d matches, want 12", response.Matches)
	}
	// Identity 0 has one 4-crop track per camera, 2 minutes apart.
	if len(response.Sightings) != 3 {
		t.Fatalf("%d sightings, want 3: %+v", len(response.Sightings), response.Sightings)
	}
	for i, sighting := range response.Sightings {
		if sighting.Camera != []string{"cam-a", "cam-b", "cam-c"}[i] || sighting.Count != 4 || len(sighting.CropIDs) != 4 {
			t.Errorf("sighting %d: %+v", i, sighting)
		}
		if sighting.Last.Sub(sighting.First) != 3*time.Second {
			t.Errorf("sighting %d spans %s, want 3s", i, sighting.Last.Sub(sighting.First))
		}
		if i > 0 && !response.Sightings[i-1].First.Before(sighting.First) {
			t.Errorf("sightings not in time order")
		}
		if f.gallery.Identity[sighting.BestCropID] != person || sighting.ThumbnailURL == "" {
			t.Errorf("best crop %s is not the person", sighting.BestCropID)
		}
		for j, crop := range sighting.CropIDs {
			if crop == sighting.BestCropID {
				break
			}
			if j == len(sighting.CropIDs)-1 {
				t.Errorf("best crop not among the sighting's crops")
			}
		}
	}
	if response.Sightings[0].BestCropID != id || response.Sightings[0].BestScore < 0.999 {
		t.Errorf("the query crop should be the best of its own sighting: %+v", response.Sightings[0])
	}
}

func TestGroupSightings(t *testing.T) {
	at := func(seconds int) time.Time { return testStart.Add(time.Duration(seconds) * time.Second) }
	match := func(id, camera string, track int64, seconds int, score float32) index.Match {
		return index.Match{ID: id, Score: score, Metadata: index.Metadata{Camera: camera, Track: track, Time: at(seconds)}}
	}
	sightings := groupSightings([]index.Match{
		match("a", "cam-2", 7, 50, 0.9),
		match("b", "cam-1", 3, 12, 0.8),
		match("c", "cam-1", 3, 10, 0.95),
		match("d", "cam-2", 7, 40, 0.7),
		match("e", "cam-1", -1, 30, 0.6),
		match("f", "cam-1", -1, 31, 0.5),
		match("g", "cam-2", 3, 11, 0.4), // same track number, other camera: another sighting
	})
	type want struct {
		camera      string
		track       int64
		first, last int
		count       int
		best        string
		crops       []string
	}
	wants := []want{
		{"cam-1", 3, 10, 12, 2, "c", []string{"c", "b"}},
		{"cam-2", 3, 11, 11, 1, "g", []string{"g"}},
		{"cam-1", -1, 30, 30, 1, "e", []string{"e"}},
		{"cam-1", -1, 31, 31, 1, "f", []string{"f"}},
		{"cam-2", 7, 40, 50, 2, "a", []string{"d", "a"}},
	}
	if len(sightings) != len(wants) {
		t.Fatalf("%d sightings, want %d: %+v", len(sightings), len(wants), sightings)
	}
	for i, w := range wants {
		got := sightings[i]
		if got.Camera != w.camera || got.Track != w.track || !got.First.Equal(at(w.first)) || !got.Last.Equal(at(w.last)) ||
			got.Count != w.count || got.BestCropID != w.best || !slices.Equal(got.CropIDs, w.crops) {
			t.Errorf("sighting %d = %+v, want %+v", i, got, w)
		}
	}
}

func TestCropsAndCameras(t *testing.T) {
	f := newFixture(t, nil)
	id := f.gallery.Crops[7]
	status, data, _ := f.do(t, "GET", "/v1/crops/"+id, "", nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, data)
	}
	crop := decode[CropJSON](t, data)
	if crop.ID != id || crop.Camera != "cam-a" || crop.ThumbnailURL != "/v1/crops/"+id+"/image" || crop.Track == 0 {
		t.Errorf("crop %+v", crop)
	}
	status, data, headers := f.do(t, "GET", "/v1/crops/"+id+"/image", "", nil)
	want, _ := f.gallery.Store.Image(context.Background(), id)
	if status != http.StatusOK || !bytes.Equal(data, want) || headers.Get("Content-Type") != "image/jpeg" {
		t.Errorf("image: status %d, %d bytes, type %s", status, len(data), headers.Get("Content-Type"))
	}
	status, data, _ = f.do(t, "GET", "/v1/cameras", "", nil)
	cameras := decode[CamerasResponse](t, data)
	if status != http.StatusOK || len(cameras.Cameras) != 3 || cameras.Cameras[0].ID != "cam-a" {
		t.Errorf("cameras: %d %s", status, data)
	}
	status, data, _ = f.do(t, "GET", "/v1/crops?camera=cam-b&limit=5", "", nil)
	list := decode[CropsResponse](t, data)
	if status != http.StatusOK || len(list.Crops) != 5 || !list.More {
		t.Fatalf("list: %d %s", status, data)
	}
	for i, crop := range list.Crops {
		if crop.Camera != "cam-b" || i > 0 && crop.Time.Before(list.Crops[i-1].Time) {
			t.Errorf("listed crop %d: %+v", i, crop)
		}
	}
	// Newest first: the page's browse grid shows what the camera saw last.
	var latest time.Time
	f.gallery.Store.Walk(context.Background(), cropstore.Filter{Camera: "cam-b"}, func(record cropstore.CropRecord) error {
		latest = record.Time
		return nil
	})
	status, data, _ = f.do(t, "GET", "/v1/crops?camera=cam-b&limit=5&order=newest", "", nil)
	list = decode[CropsResponse](t, data)
	if status != http.StatusOK || len(list.Crops) != 5 || !list.More || !list.Crops[0].Time.Equal(latest) {
		t.Fatalf("list newest first: %d %s; want the latest crop (%s) first", status, data, latest)
	}
	for i := 1; i < len(list.Crops); i++ {
		if list.Crops[i].Time.After(list.Crops[i-1].Time) {
			t.Errorf("newest-first crop %d at %s after one at %s", i, list.Crops[i].Time, list.Crops[i-1].Time)
		}
	}
	// Without a camera, one time order over all cameras: the site's latest crops come first.
	f.gallery.Store.Walk(context.Background(), cropstore.Filter{}, func(record cropstore.CropRecord) error {
		latest = maxTime(latest, record.Time)
		return nil
	})
	status, data, _ = f.do(t, "GET", "/v1/crops?limit=30&order=newest", "", nil)
	list = decode[CropsResponse](t, data)
	seenCameras := map[string]bool{}
	for i, crop := range list.Crops {
		seenCameras[crop.Camera] = true
		if i > 0 && crop.Time.After(list.Crops[i-1].Time) {
			t.Errorf("all cameras, newest first: crop %d at %s after one at %s", i, crop.Time, list.Crops[i-1].Time)
		}
	}
	if status != http.StatusOK || len(list.Crops) != 30 || !list.More || !list.Crops[0].Time.Equal(latest) || len(seenCameras) < 2 {
		t.Fatalf("all cameras, newest first: %d, %d crops from %d cameras, first at %s; want 30 from several cameras, the latest (%s) first",
			status, len(list.Crops), len(seenCameras), list.Crops[0].Time, latest)
	}
}

// TestBadInput checks that every kind of bad request gets a 4xx with a message, never a 5xx.
func TestBadInput(t *testing.T) {
	f := newFixture(t, nil)
	good := lookuptest.Crop(f.gallery.Identities[0], 1, false)
	goodPNG := lookuptest.Crop(f.gallery.Identities[0], 1, true)
	huge := bytes.Repeat([]byte{0xFF}, 50<<20)
	copy(huge, good)
	multipartType, multipartNonImage := multipartBody(t, []byte("hello, this is text"), nil)
	multipartType2, multipartEmpty := multipartBody(t, []byte{}, nil)
	multipartType3, multipartNoImage := multipartBody(t, nil, map[string]string{"k": "3"})
	hugeMultipartType, hugeMultipart := multipartBody(t, huge, nil)
	unknownID := cropstore.NewID("cam-a", testStart.Add(time.Hour), 1, 0)
	validID := f.gallery.Crops[0]
	tests := []struct {
		name, method, path, contentType string
		body                            []byte
		headers                         []string
		status                          int
		message                         string
	}{
		{"non-image raw body", "POST", "/v1/search", "image/jpeg", []byte("GIF89a not really"), nil, 415, "not a JPEG or PNG"},
		{"non-image multipart", "POST", "/v1/search", multipartType, multipartNonImage.Bytes(), nil, 415, "not a JPEG or PNG"},
		{"truncated jpeg", "POST", "/v1/search", "image/jpeg", good[:len(good)/2], nil, 400, "corrupt or truncated"},
		{"truncated png", "POST", "/v1/search", "image/png", goodPNG[:len(goodPNG)*2/3], nil, 400, "PNG"},
		{"header only jpeg", "POST", "/v1/search", "image/jpeg", good[:40], nil, 400, "JPEG"},
		{"50 MB raw", "POST", "/v1/search", "image/jpeg", huge, nil, 413, "limit"},
		{"50 MB multipart", "POST", "/v1/search", hugeMultipartType, hugeMultipart.Bytes(), nil, 413, "limit"},
		{"0 bytes raw", "POST", "/v1/search", "image/jpeg", []byte{}, nil, 400, "0 bytes"},
		{"0 bytes multipart", "POST", "/v1/search", multipartType2, multipartEmpty.Bytes(), nil, 400, "0 bytes"},
		{"multipart without image", "POST", "/v1/search", multipartType3, multipartNoImage.Bytes(), nil, 400, "nothing to search for"},
		{"wrong content type", "POST", "/v1/search", "text/plain", good, nil, 415, "unsupported Content-Type"},
		{"gif content type", "POST", "/v1/search", "image/gif", good, nil, 415, "unsupported Content-Type"},
		{"missing content type", "POST", "/v1/search", "", good, nil, 415, "missing Content-Type"},
		{"png declared jpeg", "POST", "/v1/search", "image/jpeg", goodPNG, nil, 400, "body is a PNG"},
		{"multipart without boundary", "POST", "/v1/search", "multipart/form-data", good, nil, 400, "boundary"},
		{"bad JSON", "POST", "/v1/search", "application/json", []byte(`{"crop_id":`), nil, 400, "bad JSON"},
		{"unknown JSON field", "POST", "/v1/search", "application/json", []byte(`{"crop":"x"}`), nil, 400, "unknown field"},
		{"JSON without crop", "POST", "/v1/search", "application/json", []byte(`{"k":3}`), nil, 400, "nothing to search for"},
		{"both image and crop", "POST", "/v1/search?crop_id=" + validID, "image/jpeg", good, nil, 400, "not both"},
		{"unknown crop id search", "POST", "/v1/search", "application/json", []byte(`{"crop_id":"` + unknownID + `"}`), nil, 404, "not found"},
		{"traversal crop id search", "POST", "/v1/search", "application/json", []byte(`{"crop_id":"../../etc/passwd_20240501T120000000000_1_0"}`), nil, 400, "invalid crop id"},
		{"k zero", "POST", "/v1/search?k=0", "image/jpeg", good, nil, 400, "k must be"},
		{"k huge", "POST", "/v1/search", "application/json", []byte(`{"crop_id":"` + validID + `","k":100000}`), nil, 400, "k must be"},
		{"bad time", "POST", "/v1/search?from=yesterday", "image/jpeg", good, nil, 400, "RFC 3339"},
		{"reversed time", "POST", "/v1/search?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "image/jpeg", good, nil, 400, "before it starts"},
		{"bad min score", "POST", "/v1/search?min_score=2", "image/jpeg", good, nil, 400, "min_score"},
		{"bad camera", "POST", "/v1/search?camera=../x", "image/jpeg", good, nil, 400, "not a camera id"},
		{"bad rerank", "POST", "/v1/search?rerank=maybe", "image/jpeg", good, nil, 400, "rerank"},
		{"bad track_consensus", "POST", "/v1/search?track_consensus=maybe", "image/jpeg", good, nil, 400, "track_consensus"},
		{"track_consensus not a boolean in JSON", "POST", "/v1/search", "application/json", []byte(`{"crop_id":"x","track_consensus":"no"}`), nil, 400, "track_consensus"},
		{"unknown crop id", "GET", "/v1/crops/" + unknownID, "", nil, nil, 404, "not found"},
		{"unknown crop image", "GET", "/v1/crops/" + unknownID + "/image", "", nil, nil, 404, "not found"},
		{"dot-dot crop id", "GET", "/v1/crops/..", "", nil, nil, 404, "no such route"},
		{"encoded traversal crop id", "GET", "/v1/crops/..%2F..%2Fetc%2Fpasswd/image", "", nil, nil, 400, "invalid crop id"},
		{"traversal in camera part", "GET", "/v1/crops/..%2Fcam-a_20240501T120000000000_1_0", "", nil, nil, 400, "invalid crop id"},
		{"backslash crop id", "GET", "/v1/crops/..%5Cx_20240501T120000000000_1_0/image", "", nil, nil, 400, "invalid crop id"},
		{"sightings without crop", "GET", "/v1/sightings", "", nil, nil, 400, "crop id is required"},
		{"sightings traversal", "GET", "/v1/sightings?crop=../../x", "", nil, nil, 400, "invalid crop id"},
		{"sightings unknown", "GET", "/v1/sightings?crop=" + unknownID, "", nil, nil, 404, "not found"},
		{"list bad limit", "GET", "/v1/crops?limit=-1", "", nil, nil, 400, "limit"},
		{"list bad order", "GET", "/v1/crops?order=random", "", nil, nil, 400, "order must be oldest or newest"},
		{"missing API key", "POST", "/v1/search", "image/jpeg", good, []string{"Authorization", ""}, 401, "missing API key"},
		{"wrong API key", "POST", "/v1/search", "image/jpeg", good, []string{"Authorization", "Bearer wrong-key-0123456789abcdef"}, 401, "invalid API key"},
		{"wrong auth scheme", "GET", "/v1/cameras", "", nil, []string{"Authorization", "Basic " + testKey}, 401, "missing API key"},
		{"key prefix", "GET", "/v1/cameras", "", nil, []string{"Authorization", "Bearer " + testKey[:10]}, 401, "invalid API key"},
		{"wrong method", "GET", "/v1/search", "", nil, nil, 405, "not allowed"},
		{"unknown route", "GET", "/v1/nothing", "", nil, nil, 404, "no such route"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			status, data, _ := f.do(t, test.method, test.path, test.contentType, bytes.NewReader(test.body), test.headers...)
			if status != test.status {
				t.Fatalf("status %d, want %d: %s", status, test.status, data)
			}
			if test.message != "" {
				var body struct {
					Error  string `json:"error"`
					Status int    `json:"status"`
				}
				if err := json.Unmarshal(data, &body); err != nil {
					t.Fatalf("error body is not JSON: %q", data)
				}
				if !strings.Contains(body.Error, test.message) || body.Status != test.status {
					t.Errorf("error %q (status %d), want it to mention %q", body.Error, body.Status, test.message)
				}
			}
		})
	}
	// A huge image header is refused before decoding: a 60000x60000 PNG header with no pixels.
	t.Run("pixel bomb", func(t *testing.T) {
		var header bytes.Buffer
		header.Write(pngMagic)
		ihdr := []byte{0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60, 8, 2, 0, 0, 0}
		header.Write(ihdr)
		crc := crc32IEEE(ihdr[4:])
		header.Write([]byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)})
		status, data, _ := f.do(t, "POST", "/v1/search", "image/png", bytes.NewReader(header.Bytes()))
		if status != 413 || !strings.Contains(string(data), "pixels") {
			t.Fatalf("status %d: %s", status, data)
		}
	})
}

func TestAuth(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.APIKeys = []string{testKey, "second-key-abcdefghijklmnop"} })
	for _, header := range [][]string{
		{"Authorization", "Bearer " + testKey},
		{"Authorization", "bearer second-key-abcdefghijklmnop"},
		{"X-API-Key", "second-key-abcdefghijklmnop", "Authorization", ""},
	} {
		status, data, _ := f.do(t, "GET", "/v1/cameras", "", nil, header...)
		if status != http.StatusOK {
			t.Errorf("%v: status %d: %s", header, status, data)
		}
	}
	status, _, headers := f.do(t, "GET", "/v1/cameras", "", nil, "Authorization", "")
	if status != 401 || headers.Get("WWW-Authenticate") == "" {
		t.Errorf("no key: %d %v", status, headers)
	}
	// Public routes need no key.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/", "/static/app.js"} {
		status, _, _ := f.do(t, "GET", path, "", nil, "Authorization", "")
		if status != http.StatusOK {
			t.Errorf("%s without a key: %d", path, status)
		}
	}
	// The audit log names the key by hash prefix, never the key itself.
	for _, record := range f.audit.lines(t) {
		if strings.Contains(fmt.Sprint(record), testKey) {
			t.Fatalf("audit record contains the key: %+v", record)
		}
	}
}

func TestKeyringComparesHashesOfEveryKey(t *testing.T) {
	// The second key is also an admin key; the third is only one; the fourth sees one camera.
	ring, err := newKeyring([]string{"aaaaaaaaaaaaaaaa-1", "bbbbbbbbbbbbbbbb-2"}, []string{"bbbbbbbbbbbbbbbb-2", "cccccccccccccccc-3"},
		[]KeyScope{{Name: "north", Cameras: []string{"gate"}, Keys: []string{"dddddddddddddddd-4", "dddddddddddddddd-4"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		key       string
		ok, admin bool
		scope     string
	}{
		{"aaaaaaaaaaaaaaaa-1", true, false, ""}, {"bbbbbbbbbbbbbbbb-2", true, true, ""}, {"cccccccccccccccc-3", true, true, ""},
		{"dddddddddddddddd-4", true, false, "north"},
		{"aaaaaaaaaaaaaaaa-", false, false, ""}, {"aaaaaaaaaaaaaaaa-1 ", false, false, ""}, {"", false, false, ""},
		{strings.Repeat("a", 10000), false, false, ""},
	} {
		identity, ok := ring.identify(test.key)
		if ok != test.ok || identity.admin != test.admin || identity.scope.String() != test.scope {
			t.Errorf("identify(%.20q) = admin %v, scope %q, ok %v; want %v, %q, %v", test.key, identity.admin, identity.scope, ok, test.admin, test.scope, test.ok)
		}
		if ok && (identity.id != keyID(hashKey(test.key)) || strings.Contains(identity.id, test.key[:8])) {
			t.Errorf("key id %q", identity.id)
		}
	}
	if len(ring.hashes) != 4 {
		t.Errorf("%d keys kept, want 4 (two given twice)", len(ring.hashes))
	}
	// Equal-length hashes are stored, so a key of any length compares the same 32 bytes.
	for _, hash := range ring.hashes {
		if len(hash) != 32 {
			t.Fatal("stored hash is not 32 bytes")
		}
	}
}

// A key that is both scoped and not, or in two scopes, has no one meaning: it is refused, and the
// error names the scope, never the key.
func TestKeyringRefusesAmbiguousScopedKeys(t *testing.T) {
	const shared = "shared-key-0123456789"
	for _, test := range []struct {
		name        string
		keys, admin []string
		scopes      []KeyScope
		want        string
	}{
		{"scoped and unscoped", []string{shared}, nil, []KeyScope{{Name: "north", Cameras: []string{"a"}, Keys: []string{shared}}}, "a key of scope north is also an unscoped API key"},
		{"scoped and admin", nil, []string{shared}, []KeyScope{{Name: "north", Cameras: []string{"a"}, Keys: []string{shared}}}, "a key of scope north is also an admin key"},
		{"two scopes", nil, nil, []KeyScope{{Name: "north", Cameras: []string{"a"}, Keys: []string{shared}}, {Name: "south", Cameras: []string{"b"}, Keys: []string{shared}}},
			"a key of scope south is also a key of scope north"},
		{"no cameras", nil, nil, []KeyScope{{Name: "north", Keys: []string{shared}}}, "names no cameras"},
		{"one name twice", nil, nil, []KeyScope{{Name: "north", Cameras: []string{"a"}}, {Name: "north", Cameras: []string{"b"}, Keys: []string{shared}}}, "two key scopes are named north"},
		{"bad camera", nil, nil, []KeyScope{{Name: "north", Cameras: []string{"../x"}, Keys: []string{shared}}}, "is not a camera id"},
	} {
		_, err := newKeyring(test.keys, test.admin, test.scopes)
		if err == nil || !strings.Contains(err.Error(), test.want) || strings.Contains(err.Error(), shared) {
			t.Errorf("%s: error %v, want one saying %q without the key", test.name, err, test.want)
		}
	}
}

func TestLoadAPIKeys(t *testing.T) {
	file := t.TempDir() + "/keys"
	if err := writeFile(file, "# operators\nfile-key-0123456789abcdef\n\n  spaced-key-0123456789abcdef  \n"); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadAPIKeys([]string{"config-key-0123456789abcdef"}, file)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"config-key-0123456789abcdef", "file-key-0123456789abcdef", "spaced-key-0123456789abcdef"}) {
		t.Errorf("keys %q", keys)
	}
	if _, err := LoadAPIKeys([]string{"short"}, ""); err == nil {
		t.Error("a 5-character key was accepted")
	}
	if err := writeFile(file+".short", "file-key-0123456789abcdef\nshort-key\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAPIKeys(nil, file+".short"); err == nil || !strings.Contains(err.Error(), file+".short:2") || strings.Contains(err.Error(), "short-key") {
		t.Errorf("a short key in a file: %v; want its file and line, not the key", err)
	}
	if _, err := LoadAPIKeys(nil, t.TempDir()+"/missing"); err == nil {
		t.Error("a missing key file was accepted")
	}
	// Admin keys come from their own settings, under the same rules.
	built, err := ConfigFrom(config.Lookup{APIKeys: []string{"config-key-0123456789abcdef"}, AdminAPIKeysFile: file})
	if err != nil || !slices.Equal(built.AdminAPIKeys, []string{"file-key-0123456789abcdef", "spaced-key-0123456789abcdef"}) || len(built.APIKeys) != 1 {
		t.Errorf("ConfigFrom: keys %q, admin keys %q, %v", built.APIKeys, built.AdminAPIKeys, err)
	}
	if _, err := ConfigFrom(config.Lookup{AdminAPIKeys: []string{"short"}}); err == nil || !strings.Contains(err.Error(), "admin keys") {
		t.Errorf("a 5-character admin key: %v", err)
	}
	// Admin keys alone are keys: the server may then listen beyond loopback.
	if err := ExposureError("0.0.0.0:8080", Config{AdminAPIKeys: []string{adminKey}}); err != nil {
		t.Errorf("admin keys only: %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	now := testStart
	var clock sync.Mutex
	f := newFixture(t, func(c *Config) {
		c.RateLimit = 2
		c.Burst = 3
		c.Now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	})
	body := func() io.Reader { return strings.NewReader(fmt.Sprintf(`{"crop_id":%q,"k":2}`, f.gallery.Crops[0])) }
	for i := range 3 {
		if status, data, _ := f.do(t, "POST", "/v1/search", "application/json", body()); status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, status, data)
		}
	}
	status, data, headers := f.do(t, "POST", "/v1/search", "application/json", body())
	if status != http.StatusTooManyRequests || headers.Get("Retry-After") != "1" || !strings.Contains(string(data), "rate limit") {
		t.Fatalf("4th request: %d Retry-After %q %s", status, headers.Get("Retry-After"), data)
	}
	// Another key has its own bucket.
	f2 := newFixture(t, func(c *Config) {
		c.APIKeys = []string{testKey, "other-key-0123456789abcdef"}
		c.RateLimit, c.Burst = 1, 1
	})
	f2.do(t, "GET", "/v1/sightings?crop="+f2.gallery.Crops[0], "", nil)
	if status, _, _ := f2.do(t, "GET", "/v1/sightings?crop="+f2.gallery.Crops[0], "", nil); status != 429 {
		t.Errorf("second search of key 1: %d, want 429", status)
	}
	if status, _, _ := f2.do(t, "GET", "/v1/sightings?crop="+f2.gallery.Crops[0], "", nil, "Authorization", "Bearer other-key-0123456789abcdef"); status != 200 {
		t.Errorf("first search of key 2: %d, want 200", status)
	}
	// Half a second refills one token at 2/s.
	clock.Lock()
	now = now.Add(500 * time.Millisecond)
	clock.Unlock()
	if status, data, _ := f.do(t, "POST", "/v1/search", "application/json", body()); status != 200 {
		t.Fatalf("after refill: %d %s", status, data)
	}
}

func TestLimiterThumbnailsAreCheap(t *testing.T) {
	now := testStart
	l := newLimiter(1, 2, func() time.Time { return now })
	for i := range 20 {
		if ok, _ := l.take("k", costRead); !ok {
			t.Fatalf("thumbnail %d refused", i)
		}
	}
	if ok, wait := l.take("k", costSearch); ok || wait <= 0 {
		t.Errorf("search after 20 reads from a 2-token bucket: ok=%v wait=%s", ok, wait)
	}
}

func TestReadiness(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Index = nil })
	status, data, headers := f.do(t, "GET", "/readyz", "", nil)
	if status != http.StatusServiceUnavailable || headers.Get("Retry-After") == "" {
		t.Fatalf("readyz before the index: %d %s", status, data)
	}
	query := fmt.Sprintf(`{"crop_id":%q}`, f.gallery.Crops[0])
	if status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(query)); status != http.StatusServiceUnavailable {
		t.Fatalf("search before the index: %d %s", status, data)
	}
	// Bad input is still a 4xx while not ready.
	if status, _, _ := f.do(t, "POST", "/v1/search", "text/plain", strings.NewReader("x")); status != 415 {
		t.Fatalf("bad search before the index: %d", status)
	}
	f.server.SetIndex(f.gallery.Index, "")
	if status, _, _ := f.do(t, "GET", "/readyz", "", nil); status != http.StatusOK {
		t.Fatalf("readyz after SetIndex: %d", status)
	}
	if status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(query)); status != http.StatusOK {
		t.Fatalf("search after SetIndex: %d %s", status, data)
	}
	f.server.SetEmbedder(nil)
	image := lookuptest.Crop(f.gallery.Identities[0], 3, false)
	if status, data, _ := f.do(t, "POST", "/v1/search", "image/jpeg", bytes.NewReader(image)); status != http.StatusServiceUnavailable || !strings.Contains(string(data), "embedder") {
		t.Fatalf("image search without an embedder: %d %s", status, data)
	}
	f.gallery.Index.SearchErr = index.ErrNoActiveVersion
	if status, _, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(query)); status != http.StatusServiceUnavailable {
		t.Fatalf("search with no active version: %d", status)
	}
	f.gallery.Index.SearchErr = errors.New("disk on fire")
	if status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(query)); status != 500 || strings.Contains(string(data), "fire") {
		t.Fatalf("internal errors are 500 without details: %d %s", status, data)
	}
}

func TestAuditLog(t *testing.T) {
	f := newFixture(t, nil)
	image := lookuptest.Crop(f.gallery.Identities[2], 3, false)
	f.do(t, "POST", "/v1/search?k=4&camera=cam-b", "image/jpeg", bytes.NewReader(image))
	f.do(t, "GET", "/v1/sightings?crop="+f.gallery.Crops[1], "", nil)
	f.do(t, "GET", "/v1/cameras", "", nil, "Authorization", "Bearer nope-nope-nope-nope-nope")
	records := f.audit.lines(t)
	if len(records) != 3 {
		t.Fatalf("%d audit records, want 3", len(records))
	}
	search := records[0]
	if search.Route != "POST /v1/search" || search.Key != keyID(hashKey(testKey)) || search.Results != 4 || search.Status != 200 ||
		search.Params["image_sha256"] == nil || search.Query["camera"] != "cam-b" || search.Remote == "" || search.Time.IsZero() {
		t.Errorf("search audit %+v", search)
	}
	if records[1].Route != "GET /v1/sightings" || records[1].Params["crop_id"] != f.gallery.Crops[1] || records[1].Results < 1 {
		t.Errorf("sightings audit %+v", records[1])
	}
	if records[2].Status != 401 || records[2].Key != "anonymous" {
		t.Errorf("refused request audit %+v", records[2])
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CORSOrigins = []string{"https://ops.example"} })
	request, _ := http.NewRequest("OPTIONS", f.http.URL+"/v1/search", nil)
	request.Header.Set("Origin", "https://ops.example")
	request.Header.Set("Access-Control-Request-Method", "POST")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != 204 || response.Header.Get("Access-Control-Allow-Origin") != "https://ops.example" ||
		!strings.Contains(response.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("allowed preflight: %d %v", response.StatusCode, response.Header)
	}
	request.Header.Set("Origin", "https://evil.example")
	response, err = http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != 403 || response.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("refused preflight: %d %v", response.StatusCode, response.Header)
	}
	_, _, headers := f.do(t, "GET", "/v1/cameras", "", nil, "Origin", "https://evil.example")
	if headers.Get("Access-Control-Allow-Origin") != "" {
		t.Error("a disallowed origin got CORS headers")
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, nil)
	f.do(t, "GET", "/v1/crops/"+f.gallery.Crops[0], "", nil)
	f.do(t, "GET", "/v1/crops/../etc", "", nil)
	f.do(t, "GET", "/v1/cameras", "", nil, "Authorization", "")
	_, data, _ := f.do(t, "GET", "/metrics", "", nil)
	text := string(data)
	for _, want := range []string{
		`reid_lookup_requests_total{code="200",route="GET /v1/crops/{id}"} 1`,
		`reid_lookup_requests_total{code="401",route="GET /v1/cameras"} 1`,
		`reid_lookup_request_duration_seconds_bucket{route="GET /v1/crops/{id}"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, f.gallery.Crops[0]) {
		t.Error("a crop id became a metric label")
	}
}

// TestOpenAPIDocumentsEveryRoute checks that each route the mux serves is in the OpenAPI
// document with its method, and that the document is valid JSON of version 3.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	f := newFixture(t, nil)
	status, data, _ := f.do(t, "GET", "/v1/openapi.json", "", nil)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	var document struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(data, &document); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(document.OpenAPI, "3.") {
		t.Errorf("openapi %q", document.OpenAPI)
	}
	routes := f.server.Routes()
	if len(routes) < 12 {
		t.Fatalf("only %d routes registered: %v", len(routes), routes)
	}
	documented := 0
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		path = strings.TrimSuffix(path, "{$}")
		operations, ok := document.Paths[path]
		if !ok {
			t.Errorf("route %s is not in openapi.json", route)
			continue
		}
		if _, ok := operations[strings.ToLower(method)]; !ok {
			t.Errorf("route %s: openapi.json has no %s operation", route, method)
			continue
		}
		documented++
	}
	// And nothing documented that the server does not serve.
	for path, operations := range document.Paths {
		for method := range operations {
			pattern := strings.ToUpper(method) + " " + path
			if path == "/" {
				pattern += "{$}"
			}
			if !slices.Contains(routes, pattern) {
				t.Errorf("openapi.json documents %s, which is not a route", pattern)
			}
		}
	}
}

func TestPageIsSelfContained(t *testing.T) {
	f := newFixture(t, nil)
	status, data, headers := f.do(t, "GET", "/", "", nil)
	if status != 200 || !strings.HasPrefix(headers.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", status, headers.Get("Content-Type"))
	}
	page := string(data)
	for _, asset := range []string{"/static/app.js", "/static/app.css"} {
		if !strings.Contains(page, asset) {
			t.Errorf("page does not load %s", asset)
		}
		if status, _, _ := f.do(t, "GET", asset, "", nil); status != 200 {
			t.Errorf("%s: %d", asset, status)
		}
	}
	for _, file := range []string{"index.html", "app.js", "app.css"} {
		content, err := assets.ReadFile("web/" + file)
		if err != nil {
			t.Fatal(err)
		}
		// The SVG namespace is a name, not a resource that is loaded.
		text := strings.ReplaceAll(string(content), "http://www.w3.org/2000/svg", "")
		if strings.Contains(text, "http://") || strings.Contains(text, "https://") || strings.Contains(text, "//cdn") {
			t.Errorf("%s refers to an external URL: the page must work offline", file)
		}
	}
	if !strings.Contains(headers.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("CSP %q", headers.Get("Content-Security-Policy"))
	}
}

func TestServeRefusesRemoteWithoutKeys(t *testing.T) {
	server, err := New(Config{Store: lookuptest.NewStore(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Serve(context.Background(), "0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "without API keys") {
		t.Fatalf("Serve on 0.0.0.0 without keys: %v", err)
	}
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true, ":8080": false, "0.0.0.0:1": false, "10.0.0.1:80": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%q) = %v", addr, !want)
		}
	}
	// Loopback serves, and cancelling the context shuts down gracefully.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.ServeListener(ctx, listener) }()
	response, err := http.Get("http://" + listener.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	// With AllowUnauthenticated the same address is accepted (and serves until cancelled).
	allowed, _ := New(Config{Store: lookuptest.NewStore(), AllowUnauthenticated: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := allowed.checkExposure("0.0.0.0:0"); err != nil {
		t.Errorf("allow_unauthenticated refused: %v", err)
	}
}

func crc32IEEE(data []byte) uint32 { return crc32.ChecksumIEEE(data) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// Uploads and stored crops decode the same way whether JPEG or PNG.
func TestDecodeImage(t *testing.T) {
	people := lookuptest.Identities(1, 1)
	var vectors [][]float32
	for _, data := range [][]byte{lookuptest.Crop(people[0], 1, false), lookuptest.Crop(people[0], 1, true)} {
		picture, err := decodeImage(data)
		if err != nil {
			t.Fatal(err)
		}
		if size := picture.Bounds().Size(); size != (image.Point{64, 128}) {
			t.Fatalf("decoded %v, want 64x128", size)
		}
		vectors = append(vectors, lookuptest.ColorVector(picture))
	}
	if vecmath.Dot(vectors[0], vectors[1]) < 0.99 {
		t.Errorf("the JPEG and PNG of one crop decode differently: %v", vecmath.Dot(vectors[0], vectors[1]))
	}
	for _, data := range [][]byte{[]byte("nope"), pngMagic, lookuptest.Crop(people[0], 1, false)[:100]} {
		if _, err := decodeImage(data); err == nil {
			t.Errorf("%q decoded", data[:min(len(data), 8)])
		}
	}
}

// failingAudit is an audit log whose disk is full.
type failingAudit struct{}

func (failingAudit) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// syncedAudit counts the records written and synced.
type syncedAudit struct {
	mu            sync.Mutex
	writes, syncs int
}

func (a *syncedAudit) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes++
	return len(p), nil
}

func (a *syncedAudit) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.syncs++
	return nil
}

// TestUnauditedRequestsAreRefused: a request whose audit record cannot be written gets a 503 and
// none of the data it asked for; one that can is answered after its record is synced.
func TestUnauditedRequestsAreRefused(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Audit = failingAudit{} })
	for _, path := range []string{"/v1/sightings?crop=" + f.gallery.Crops[1], "/v1/crops/" + f.gallery.Crops[1] + "/image", "/v1/cameras"} {
		status, body, headers := f.do(t, "GET", path, "", nil)
		if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "audit log") || headers.Get("Retry-After") == "" {
			t.Errorf("GET %s with the audit log failing: %d %q", path, status, body)
		}
		if strings.Contains(string(body), "cam-") || headers.Get("Content-Type") == "image/jpeg" {
			t.Errorf("GET %s with the audit log failing returned data: %q", path, body)
		}
	}

	synced := &syncedAudit{}
	f = newFixture(t, func(c *Config) { c.Audit = synced })
	if status, body, _ := f.do(t, "GET", "/v1/cameras", "", nil); status != http.StatusOK || !strings.Contains(string(body), "cam-a") {
		t.Fatalf("GET /v1/cameras: %d %s", status, body)
	}
	synced.mu.Lock()
	defer synced.mu.Unlock()
	if synced.writes != 1 || synced.syncs != 1 {
		t.Errorf("%d audit records written, %d synced; want 1 and 1", synced.writes, synced.syncs)
	}
}
