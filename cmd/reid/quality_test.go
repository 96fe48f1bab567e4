package main

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/index"
	"github.com/reid-project/reid/internal/testassets"
)

// trackPrecision measures what an investigator sees: for one crop (the middle one) of every track
// with at least minCrops crops, how many of the top k other results belong to the same track.
func trackPrecision(t testing.TB, options config.Options, k, minCrops int) (mean float64, tracks int) {
	t.Helper()
	ctx := context.Background()
	store, err := openCropStore(options)
	if err != nil {
		t.Fatal(err)
	}
	type trackKey struct {
		camera string
		track  int64
	}
	byTrack := map[trackKey][]string{}
	if err := store.Walk(ctx, cropstore.Filter{}, func(record cropstore.CropRecord) error {
		key := trackKey{record.Camera, record.Track}
		byTrack[key] = append(byTrack[key], record.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	vectors, err := openIndex(ctx, options)
	if err != nil {
		t.Fatal(err)
	}
	defer vectors.Close()
	var sum float64
	for key, ids := range byTrack {
		if len(ids) < minCrops {
			continue
		}
		sort.Strings(ids)
		query := ids[len(ids)/2]
		items, err := vectors.Get(ctx, "", []string{query})
		if err != nil || len(items) != 1 {
			t.Fatalf("crop %s not indexed: %v", query, err)
		}
		results, err := vectors.Search(ctx, "", index.Query{Vectors: [][]float32{items[0].Vector}, K: k + 1})
		if err != nil {
			t.Fatal(err)
		}
		hits, seen := 0, 0
		for _, match := range results[0] {
			if match.ID == query || seen == k {
				continue
			}
			seen++
			if match.Metadata.Camera == key.camera && match.Metadata.Track == key.track {
				hits++
			}
		}
		sum += float64(hits) / float64(k)
		tracks++
	}
	if tracks == 0 {
		return 0, 0
	}
	return sum / float64(tracks), tracks
}

// BenchmarkSearchQuality indexes the whole of vtest.avi (a demo camera) and reports what the
// lookup acceptance asks for: searching with one crop of a tracked person, the share of the top 5
// other results that are crops of the same track (precision@5), averaged over tracks of at least
// 6 crops. Target: >= 0.8 over >= 20 tracks. REIDTEST_QUALITY_DATA=DIR measures an existing data
// dir instead (for example the demo's).
func BenchmarkSearchQuality(b *testing.B) {
	for range b.N {
		dataDir := os.Getenv("REIDTEST_QUALITY_DATA")
		if dataDir == "" {
			dataDir = pipelineFixture(b)
			out, err := runReid(b, "--data-dir", dataDir, "run", "--source", testassets.Path(b, "video/vtest.avi"),
				"--camera", "street", "--exit-when-done", "--serve=false", "--json")
			if err != nil {
				b.Fatalf("reid run: %v\n%s", err, out)
			}
			var summary runSummary
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &summary); err != nil || summary.Indexed < 500 {
				b.Fatalf("summary %q: %v", out, err)
			}
		}
		precision, tracks := trackPrecision(b, loadOptions(b, dataDir), 5, 6)
		b.ReportMetric(precision, "precision@5")
		b.ReportMetric(float64(tracks), "tracks")
		b.Logf("precision@5 = %.3f over %d tracks (target >= 0.8 over >= 20)", precision, tracks)
	}
}
