package eval

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/reid-project/reid/internal/npy"
)

// TestRerankMatchesNumpyReference compares the sparse re-ranking with a dense numpy
// re-implementation of the reference re_ranking, for the default and another parameter set.
func TestRerankMatchesNumpyReference(t *testing.T) {
	ctx := context.Background()
	for _, options := range []RerankOptions{{}, {K1: 9, K2: 1, Lambda: 0.5}} {
		options, err := options.WithDefaults()
		if err != nil {
			t.Fatal(err)
		}
		name := "k1=" + strconv.Itoa(options.K1) + " k2=" + strconv.Itoa(options.K2)
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(options.K1), 3))
			queryFeatures, query := randomSet(rng, 60, 16, 40, 4, false, 0.6)
			galleryFeatures, gallery := randomSet(rng, 400, 16, 40, 4, true, 0.6)
			dir := t.TempDir()
			outPath := filepath.Join(dir, "rerank.npy")
			runPython(t, "rerank", writeRows(t, filepath.Join(dir, "q.npy"), queryFeatures),
				writeRows(t, filepath.Join(dir, "g.npy"), galleryFeatures),
				strconv.Itoa(options.K1), strconv.Itoa(options.K2), strconv.FormatFloat(options.Lambda, 'g', -1, 64), outPath)
			reference, err := npy.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Rerank(ctx, queryFeatures, galleryFeatures, options)
			if err != nil {
				t.Fatal(err)
			}
			if got.Rows != reference.Rows || got.Cols != reference.Cols {
				t.Fatalf("shape %dx%d, reference %dx%d", got.Rows, got.Cols, reference.Rows, reference.Cols)
			}
			worst := 0.0
			for k := range got.Data {
				worst = math.Max(worst, math.Abs(float64(got.Data[k]-reference.Data[k])))
			}
			if worst > 1e-5 {
				t.Errorf("re-ranked distances differ from the reference by up to %g", worst)
			}
			metrics, err := Evaluate(ctx, got, query, gallery)
			if err != nil {
				t.Fatal(err)
			}
			referenceMetrics, err := Evaluate(ctx, reference, query, gallery)
			if err != nil {
				t.Fatal(err)
			}
			compareMetrics(t, metrics, referenceOn(t, dir, reference, query, gallery), 1e-6)
			plain, err := Distances(ctx, queryFeatures, galleryFeatures)
			if err != nil {
				t.Fatal(err)
			}
			before, err := Evaluate(ctx, plain, query, gallery)
			if err != nil {
				t.Fatal(err)
			}
			if !near(metrics.MAP, referenceMetrics.MAP, 1e-6) {
				t.Errorf("mAP %.9f on our re-ranking, %.9f on the reference's", metrics.MAP, referenceMetrics.MAP)
			}
			t.Logf("max |difference| %.2g; mAP %.4f -> %.4f after re-ranking", worst, before.MAP, metrics.MAP)
		})
	}
}
