package lookup

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/vecmath"
	"github.com/reid-project/reid/lookup/lookuptest"
)

// consensusGallery is a hand-made gallery in 4 dimensions where one crop misleads and its track
// does not:
//   - the query, crop 0 of person A's track 1 on cam-a (t = 0-4 s); A's other crops there lean
//     towards the y axis;
//   - person B's track 2 on cam-a, alive at the same time: one crop nearly identical to the query
//     (a blurred frame), the rest clearly someone else;
//   - person A again on cam-b, track 7 (t = 60-64 s): fair crops, one of them a poor view that a
//     crop-by-crop search ranks last;
//   - person C's track 3 on cam-a at t = 100 s, after A left: one crop close to the query;
//   - an untracked crop (track -1) on cam-b.
type consensusGallery struct {
	index *lookuptest.Index
	ids   map[string]string // name -> crop id
}

func unit(values ...float64) []float32 {
	vector := make([]float32, len(values))
	for i, value := range values {
		vector[i] = float32(value)
	}
	return lookuptest.Normalize(vector)
}

func newConsensusGallery() consensusGallery {
	g := consensusGallery{index: lookuptest.NewIndex(), ids: map[string]string{}}
	add := func(name, camera string, track int64, second int, vector []float32) {
		at := testStart.Add(time.Duration(second) * time.Second)
		id := cropstore.NewID(camera, at, int64(second), len(g.ids))
		g.ids[name] = id
		g.index.Add(index.Item{ID: id, Vector: vector, Metadata: index.Metadata{Camera: camera, Time: at, Track: track, Frame: int64(second)}})
	}
	add("query", "cam-a", 1, 0, unit(1, 0, 0, 0))
	for i := 1; i < 5; i++ {
		add(fmt.Sprintf("a%d", i), "cam-a", 1, i, unit(1, 0.5, 0, 0.1*float64(i)))
	}
	add("b-blurred", "cam-a", 2, 2, unit(1, 0, 0.05, 0))
	for i := range 4 {
		add(fmt.Sprintf("b%d", i), "cam-a", 2, 1+i, unit(0.2, 0, 1, 0))
	}
	for i := range 4 {
		add(fmt.Sprintf("a-cam-b-%d", i), "cam-b", 7, 60+i, unit(1, 0.6, 0, 0.1))
	}
	add("a-cam-b-poor", "cam-b", 7, 64, unit(0.5, 1, 0, 0.6))
	add("c-close", "cam-a", 3, 100, unit(1, 0, 0, 0.45))
	for i := range 4 {
		add(fmt.Sprintf("c%d", i), "cam-a", 3, 101+i, unit(0.1, 0, 0, 1))
	}
	add("untracked", "cam-b", -1, 70, unit(1, 0.2, 0, 0.5))
	return g
}

func TestTrackConsensus(t *testing.T) {
	gallery := newConsensusGallery()
	f := newFixture(t, func(config *Config) { config.Index = gallery.index })
	name := map[string]string{}
	for n, id := range gallery.ids {
		name[id] = n
	}
	search := func(t *testing.T, extra string) []MatchJSON {
		t.Helper()
		body := fmt.Sprintf(`{"crop_id":%q,"k":12%s}`, gallery.ids["query"], extra)
		status, data, _ := f.do(t, "POST", "/v1/search", "application/json", strings.NewReader(body))
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, data)
		}
		return decode[SearchResponse](t, data).Matches
	}
	position := func(matches []MatchJSON, crop string) int {
		for i, match := range matches {
			if name[match.CropID] == crop {
				return i
			}
		}
		return -1
	}

	byCrop := search(t, `,"track_consensus":false`)
	if p := position(byCrop, "b-blurred"); p != 1 {
		t.Fatalf("crop by crop, the other person's blurred crop is at %d, want 1 (the setting this test needs)", p)
	}
	if p := position(byCrop, "a-cam-b-poor"); p >= 0 && p < 10 {
		t.Fatalf("crop by crop, the poor view of A on cam-b is at %d, want below the top 10", p)
	}

	matches := search(t, "")
	if position(matches, "query") != 0 {
		t.Errorf("the query crop is not first: %v", matches)
	}
	for _, other := range []string{"b-blurred", "b0", "b1", "b2", "b3"} {
		if p := position(matches, other); p >= 0 {
			t.Errorf("%s (cam-a track 2, seen while the query's track was) is in the results at %d", other, p)
		}
	}
	// Every crop of A's tracks ranks above person C's close crop, the poor view of A included,
	// which the crop-by-crop search ranked low.
	cClose := position(matches, "c-close")
	for _, crop := range []string{"a1", "a2", "a3", "a4", "a-cam-b-0", "a-cam-b-1", "a-cam-b-2", "a-cam-b-3", "a-cam-b-poor"} {
		if p := position(matches, crop); p < 0 || (cClose >= 0 && p > cClose) {
			t.Errorf("%s is at %d, want above person C's close crop at %d", crop, p, cClose)
		}
	}
	if position(matches, "untracked") < 0 {
		t.Errorf("the untracked candidate is missing: %v", matches)
	}

	// The scores: track_score is the cosine to the track's mean without the query crop, and
	// rank_score orders the results.
	mean := func(crops ...string) []float32 {
		sum := make([]float64, 4)
		for _, crop := range crops {
			items, _ := gallery.index.Get(t.Context(), "", []string{gallery.ids[crop]})
			for i, value := range items[0].Vector {
				sum[i] += float64(value)
			}
		}
		values := make([]float64, 4)
		copy(values, sum)
		return unit(values...)
	}
	query := unit(1, 0, 0, 0)
	wantTrack := map[string]float32{
		"a1":           vecmath.Dot(query, mean("a1", "a2", "a3", "a4")),
		"a-cam-b-poor": vecmath.Dot(query, mean("a-cam-b-0", "a-cam-b-1", "a-cam-b-2", "a-cam-b-3", "a-cam-b-poor")),
	}
	for i, match := range matches {
		if match.RankScore == nil {
			t.Fatalf("match %d has no rank_score: %+v", i, match)
		}
		if i > 0 && *match.RankScore > *matches[i-1].RankScore {
			t.Errorf("rank_score not descending at %d: %v > %v", i, *match.RankScore, *matches[i-1].RankScore)
		}
		crop := name[match.CropID]
		if crop == "query" || crop == "untracked" {
			if match.TrackScore != nil || *match.RankScore != match.Score {
				t.Errorf("%s: track_score %v, rank_score %v, want none and its own score %v", crop, match.TrackScore, *match.RankScore, match.Score)
			}
			continue
		}
		if match.TrackScore == nil {
			t.Fatalf("%s has no track_score", crop)
		}
		if want := float32(consensusWeight)*(*match.TrackScore) + float32(1-consensusWeight)*match.Score; math.Abs(float64(want-*match.RankScore)) > 1e-6 {
			t.Errorf("%s: rank_score %v, want %v", crop, *match.RankScore, want)
		}
		if want, ok := wantTrack[crop]; ok && math.Abs(float64(want-*match.TrackScore)) > 1e-5 {
			t.Errorf("%s: track_score %v, want %v (its track's mean without the query)", crop, *match.TrackScore, want)
		}
	}

	// Filters hold for the crops a track brings along.
	for _, match := range search(t, `,"exclude_cameras":["cam-b"]`) {
		if match.Camera == "cam-b" {
			t.Errorf("excluded camera in the results: %+v", match)
		}
	}
	later := testStart.Add(61 * time.Second).Format(time.RFC3339)
	for _, match := range search(t, `,"from":"`+later+`"`) {
		if match.Time.Before(testStart.Add(61 * time.Second)) {
			t.Errorf("match before the time range: %+v", match)
		}
	}
}

// fixedEmbedder embeds every image as one vector.
type fixedEmbedder []float32

func (e fixedEmbedder) Embed(_ context.Context, images []image.Image) ([][]float32, error) {
	out := make([][]float32, len(images))
	for i := range out {
		out[i] = e
	}
	return out, nil
}

func TestSwitchMovesIndexAndEmbedderTogether(t *testing.T) {
	gallery := func(camera string) *lookuptest.Index {
		ix := lookuptest.NewIndex()
		ix.Add(index.Item{ID: cropstore.NewID(camera, testStart, 1, 0), Vector: unit(1, 0, 0, 0),
			Metadata: index.Metadata{Camera: camera, Time: testStart, Track: 1}})
		return ix
	}
	old, next := gallery("cam-old"), gallery("cam-new")
	f := newFixture(t, func(config *Config) { config.Index, config.Embedder = old, fixedEmbedder(unit(1, 0, 0, 0)) })
	upload := func() SearchResponse {
		t.Helper()
		image := lookuptest.Crop(f.gallery.Identities[0], 5, false)
		status, data, _ := f.do(t, "POST", "/v1/search?k=3", "image/jpeg", bytes.NewReader(image))
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, data)
		}
		return decode[SearchResponse](t, data)
	}
	if matches := upload().Matches; len(matches) != 1 || matches[0].Camera != "cam-old" {
		t.Fatalf("before the switch: %+v", matches)
	}
	// The new model embeds differently: with the old gallery its vector would match nothing.
	f.server.Switch(next, "v2", fixedEmbedder(unit(0, 1, 0, 0)))
	next.Add(index.Item{ID: cropstore.NewID("cam-new", testStart, 2, 0), Vector: unit(0, 1, 0, 0),
		Metadata: index.Metadata{Camera: "cam-new", Time: testStart, Track: 2}})
	after := upload()
	matches := after.Matches
	if len(matches) != 2 || matches[0].Camera != "cam-new" || matches[0].Score < 0.999 {
		t.Fatalf("after the switch: %+v, want the new gallery searched with the new model's vector", matches)
	}
	if after.Query.Model != "v2" {
		t.Errorf("after the switch the response says model %q, want v2", after.Query.Model)
	}
}
