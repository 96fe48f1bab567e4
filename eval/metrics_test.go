package eval

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/reid-project/reid/internal/npy"
)

const python = "/usr/bin/python3"

func near(a, b, tolerance float64) bool { return math.Abs(a-b) <= tolerance }

// TestEvaluateByHand checks cases small enough to work out on paper.
func TestEvaluateByHand(t *testing.T) {
	cases := []struct {
		name     string
		query    []Label
		gallery  []Label
		rows     [][]float32
		want     Metrics
		queries  int
		skipped  int
		firstHit []int // per query; -1 for skipped
	}{
		{
			// Kept ranking: pid2 (0.1), pid0 distractor (0.2), match (0.3), match (0.5).
			// The same-camera match (0.05) and the junk item (0.01) are ignored.
			// AP = (1/3 + 2/4) / 2, INP = 2/4, first match at rank 3.
			name:    "ignored items and distractors",
			query:   []Label{{1, 1}},
			gallery: []Label{{1, 2}, {2, 2}, {1, 1}, {0, 3}, {-1, 2}, {1, 3}},
			rows:    [][]float32{{0.3, 0.1, 0.05, 0.2, 0.01, 0.5}},
			want:    Metrics{MAP: (1.0/3 + 2.0/4) / 2, Rank1: 0, Rank5: 1, Rank10: 1, MINP: 0.5},
			queries: 1, firstHit: []int{2},
		},
		{
			// Query 0 ranks its only match first; query 1 has matches only in its own camera and
			// is skipped; query 2 is a distractor and is skipped.
			name:    "skipped queries",
			query:   []Label{{5, 1}, {6, 2}, {0, 1}},
			gallery: []Label{{5, 3}, {6, 2}, {7, 1}},
			rows:    [][]float32{{0.1, 0.2, 0.3}, {0.9, 0.1, 0.2}, {0.1, 0.2, 0.3}},
			want:    Metrics{MAP: 1, Rank1: 1, Rank5: 1, Rank10: 1, MINP: 1},
			queries: 1, skipped: 2, firstHit: []int{0, -1, -1},
		},
		{
			// Equal distances rank by gallery index: the negative at index 0 comes first.
			// AP = (1/2 + 2/3) / 2, INP = 2/3.
			name:    "ties by index",
			query:   []Label{{3, 1}},
			gallery: []Label{{4, 2}, {3, 2}, {3, 4}},
			rows:    [][]float32{{0.5, 0.5, 0.5}},
			want:    Metrics{MAP: (1.0/2 + 2.0/3) / 2, Rank1: 0, Rank5: 1, Rank10: 1, MINP: 2.0 / 3},
			queries: 1, firstHit: []int{1},
		},
		{
			// Two queries: AP 1 and AP 1/2 (match at rank 2 of 2) -> mAP 0.75, rank-1 0.5.
			name:    "average over queries",
			query:   []Label{{1, 1}, {2, 1}},
			gallery: []Label{{1, 2}, {2, 2}},
			rows:    [][]float32{{0.1, 0.2}, {0.1, 0.2}},
			want:    Metrics{MAP: 0.75, Rank1: 0.5, Rank5: 1, Rank10: 1, MINP: 0.75},
			queries: 2, firstHit: []int{0, 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			distances, err := npy.FromRows(c.rows)
			if err != nil {
				t.Fatal(err)
			}
			results, err := EvaluateQueries(context.Background(), distances, c.query, c.gallery, CrossCamera)
			if err != nil {
				t.Fatal(err)
			}
			for q, want := range c.firstHit {
				if got := results[q]; (want < 0 && got.Valid) || (want >= 0 && (!got.Valid || got.FirstMatch != want)) {
					t.Errorf("query %d: %+v, want first match %d", q, got, want)
				}
			}
			got := Aggregate(results)
			if got.Queries != c.queries || got.Skipped != c.skipped {
				t.Errorf("queries %d skipped %d, want %d and %d", got.Queries, got.Skipped, c.queries, c.skipped)
			}
			for name, pair := range map[string][2]float64{
				"mAP": {got.MAP, c.want.MAP}, "rank1": {got.Rank1, c.want.Rank1}, "rank5": {got.Rank5, c.want.Rank5},
				"rank10": {got.Rank10, c.want.Rank10}, "mINP": {got.MINP, c.want.MINP},
			} {
				if !near(pair[0], pair[1], 1e-12) {
					t.Errorf("%s = %v, want %v", name, pair[0], pair[1])
				}
			}
		})
	}
}

// TestSameCameraProtocol: the mirror protocol counts only the own-camera image as a match.
func TestSameCameraProtocol(t *testing.T) {
	query := []Label{{1, 1}}
	gallery := []Label{{1, 2}, {2, 1}, {1, 1}, {-1, 1}}
	distances := npy.Matrix{Rows: 1, Cols: 4, Data: []float32{0.1, 0.2, 0.3, 0.05}}
	// Kept: pid 2 (0.2) then the own-camera match (0.3); the cross-camera match is ignored.
	got, err := EvaluateProtocol(context.Background(), distances, query, gallery, SameCamera)
	if err != nil {
		t.Fatal(err)
	}
	if got.MAP != 0.5 || got.Rank1 != 0 || got.Rank5 != 1 || got.Queries != 1 {
		t.Errorf("same-camera metrics %+v", got)
	}
	if cross, _ := Evaluate(context.Background(), distances, query, gallery); cross.MAP != 1 {
		t.Errorf("cross-camera mAP %v, want 1", cross.MAP)
	}
	for name, want := range map[string]Protocol{"market": CrossCamera, "same-camera": SameCamera} {
		if got, err := ParseProtocol(name); err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseProtocol("other"); err == nil {
		t.Error("unknown protocol accepted")
	}
}

func TestEvaluateRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	query, gallery := []Label{{1, 1}}, []Label{{1, 2}, {2, 2}}
	if _, err := Evaluate(ctx, npy.Matrix{Rows: 1, Cols: 3, Data: make([]float32, 3)}, query, gallery); err == nil {
		t.Error("shape mismatch accepted")
	}
	if _, err := Evaluate(ctx, npy.Matrix{Rows: 1, Cols: 2, Data: []float32{float32(math.NaN()), 1}}, query, gallery); err == nil {
		t.Error("NaN distance accepted")
	}
}

// randomSet makes features and Market-style labels: identities 1..ids seen by several cameras,
// plus distractors (0) and junk (-1) in the gallery. A feature is Gaussian noise plus signal times
// a direction fixed per identity (the same for every call with the same identity and seed).
func randomSet(rng *rand.Rand, n, dim, ids, cameras int, junk bool, signal float64) ([][]float32, []Label) {
	centres := make([][]float64, ids+1)
	centreRNG := rand.New(rand.NewPCG(42, 42))
	for pid := range centres {
		centres[pid] = make([]float64, dim)
		for k := range centres[pid] {
			centres[pid][k] = centreRNG.NormFloat64()
		}
	}
	features := make([][]float32, n)
	labels := make([]Label, n)
	for i := range features {
		labels[i] = Label{PID: 1 + rng.IntN(ids), Camera: 1 + rng.IntN(cameras)}
		features[i] = make([]float32, dim)
		for k := range features[i] {
			features[i][k] = float32(rng.NormFloat64() + signal*centres[labels[i].PID][k])
		}
		if junk {
			switch rng.IntN(10) {
			case 0:
				labels[i].PID = 0
			case 1:
				labels[i].PID = -1
			}
		}
	}
	return features, labels
}

type referenceMetrics struct {
	MAP        float64 `json:"mAP"`
	Rank1      float64 `json:"rank1"`
	Rank5      float64 `json:"rank5"`
	Rank10     float64 `json:"rank10"`
	MINP       float64 `json:"mINP"`
	MAPSklearn float64 `json:"mAP_sklearn"`
	Queries    int     `json:"queries"`
}

func runPython(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(python, append([]string{filepath.Join("testdata", "market_reference.py")}, args...)...).Output()
	if err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			t.Fatalf("reference script: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("reference script: %v", err)
	}
	return out
}

func writeMatrix(t *testing.T, path string, m npy.Matrix) string {
	t.Helper()
	if err := npy.WriteFile(path, m); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeRows(t *testing.T, path string, rows [][]float32) string {
	t.Helper()
	m, err := npy.FromRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	return writeMatrix(t, path, m)
}

func referenceOn(t *testing.T, dir string, distances npy.Matrix, query, gallery []Label) referenceMetrics {
	t.Helper()
	labels := map[string][]int{}
	for _, l := range query {
		labels["q_pids"] = append(labels["q_pids"], l.PID)
		labels["q_cams"] = append(labels["q_cams"], l.Camera)
	}
	for _, l := range gallery {
		labels["g_pids"] = append(labels["g_pids"], l.PID)
		labels["g_cams"] = append(labels["g_cams"], l.Camera)
	}
	labelsPath := filepath.Join(dir, "labels.json")
	data, _ := json.Marshal(labels)
	if err := writeFile(labelsPath, data); err != nil {
		t.Fatal(err)
	}
	distPath := writeMatrix(t, filepath.Join(dir, "dist.npy"), distances)
	var reference referenceMetrics
	if err := json.Unmarshal(runPython(t, "metrics", distPath, labelsPath), &reference); err != nil {
		t.Fatal(err)
	}
	return reference
}

func compareMetrics(t *testing.T, got Metrics, want referenceMetrics, tolerance float64) {
	t.Helper()
	if got.Queries != want.Queries {
		t.Errorf("queries evaluated: %d, reference %d", got.Queries, want.Queries)
	}
	for name, pair := range map[string][2]float64{
		"mAP": {got.MAP, want.MAP}, "rank1": {got.Rank1, want.Rank1}, "rank5": {got.Rank5, want.Rank5},
		"rank10": {got.Rank10, want.Rank10}, "mINP": {got.MINP, want.MINP},
	} {
		if !near(pair[0], pair[1], tolerance) {
			t.Errorf("%s = %.9f, reference %.9f", name, pair[0], pair[1])
		}
	}
}

// TestMetricsMatchNumpyReference compares the metrics and the distances with the independent
// numpy/sklearn computation on random features, with and without tied distances.
func TestMetricsMatchNumpyReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	ctx := context.Background()
	queryFeatures, query := randomSet(rng, 300, 24, 120, 6, false, 0.7)
	galleryFeatures, gallery := randomSet(rng, 2000, 24, 120, 6, true, 0.7)
	query[7].PID = 0 // a distractor query is skipped by both
	distances, err := Distances(ctx, queryFeatures, galleryFeatures)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// The distances themselves: squared Euclidean of unit vectors, computed in float64 there.
	referencePath := filepath.Join(dir, "reference_dist.npy")
	runPython(t, "distances", writeRows(t, filepath.Join(dir, "q.npy"), queryFeatures),
		writeRows(t, filepath.Join(dir, "g.npy"), galleryFeatures), referencePath)
	reference, err := npy.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for k := range reference.Data {
		worst = math.Max(worst, math.Abs(float64(reference.Data[k]-distances.Data[k])))
	}
	if worst > 1e-5 {
		t.Errorf("distances differ from numpy by up to %g", worst)
	}

	got, err := Evaluate(ctx, distances, query, gallery)
	if err != nil {
		t.Fatal(err)
	}
	want := referenceOn(t, dir, distances, query, gallery)
	compareMetrics(t, got, want, 1e-6)
	if !near(got.MAP, want.MAPSklearn, 1e-6) {
		t.Errorf("mAP %.9f, sklearn average_precision_score %.9f", got.MAP, want.MAPSklearn)
	}
	if got.Queries < 250 || got.MAP < 0.1 || got.MAP > 0.9 || got.Rank10 <= got.Rank1 {
		t.Errorf("implausible random-feature result %+v", got)
	}
	t.Logf("random features: %d queries, mAP %.4f rank-1 %.4f mINP %.4f", got.Queries, got.MAP, got.Rank1, got.MINP)

	// Coarse distances: many ties, ranked by gallery index on both sides.
	tied := npy.Matrix{Rows: distances.Rows, Cols: distances.Cols, Data: make([]float32, len(distances.Data))}
	for k, d := range distances.Data {
		tied.Data[k] = float32(math.Round(float64(d) * 4))
	}
	gotTied, err := Evaluate(ctx, tied, query, gallery)
	if err != nil {
		t.Fatal(err)
	}
	compareMetrics(t, gotTied, referenceOn(t, dir, tied, query, gallery), 1e-6)
}

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }
