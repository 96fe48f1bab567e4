package cluster

import (
	"bufio"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/reid-project/reid/internal/npy"
)

// clustered makes points around a few centres of different sizes plus scattered outliers.
func clustered(seed uint64, dim int, sizes []int, outliers int, spread float64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	var points [][]float32
	add := func(centre []float64, scale float64) {
		point := make([]float32, dim)
		for k := range point {
			point[k] = float32(centre[k] + scale*rng.NormFloat64())
		}
		points = append(points, point)
	}
	zero := make([]float64, dim)
	for _, size := range sizes {
		centre := make([]float64, dim)
		for k := range centre {
			centre[k] = rng.NormFloat64()
		}
		for range size {
			add(centre, spread)
		}
	}
	for range outliers {
		add(zero, 1)
	}
	// Interleave so that cluster order and index order differ.
	rng.Shuffle(len(points), func(a, b int) { points[a], points[b] = points[b], points[a] })
	return points
}

func readLabels(t *testing.T, path string) []int {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var labels []int
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		label, err := strconv.Atoi(strings.TrimSpace(scanner.Text()))
		if err != nil {
			t.Fatal(err)
		}
		labels = append(labels, label)
	}
	return labels
}

// samePartition reports whether two labellings are equal up to renaming the clusters, with noise
// (-1) matching only noise.
func samePartition(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	forward, backward := map[int]int{}, map[int]int{}
	for i := range a {
		if (a[i] < 0) != (b[i] < 0) {
			return false
		}
		if a[i] < 0 {
			continue
		}
		if mapped, ok := forward[a[i]]; ok && mapped != b[i] {
			return false
		}
		if mapped, ok := backward[b[i]]; ok && mapped != a[i] {
			return false
		}
		forward[a[i]], backward[b[i]] = b[i], a[i]
	}
	return true
}

// TestMatchesDenseReference compares the sparse Jaccard graph and the DBSCAN labels with a plain
// dense numpy implementation of the reference formula and sklearn's DBSCAN.
func TestMatchesDenseReference(t *testing.T) {
	cases := []struct {
		name    string
		points  [][]float32
		options Options
	}{
		{"defaults", clustered(1, 32, []int{40, 30, 25, 20, 20, 15, 12, 10, 8, 6, 5, 4, 3}, 60, 0.45), Options{}},
		{"k2=1 eps=0.5 min-samples=3", clustered(2, 16, []int{50, 35, 20, 20, 10, 6, 4}, 40, 0.5),
			Options{K1: 20, K2: 1, Eps: 0.5, MinSamples: 3}},
		{"odd k1, tight eps", clustered(3, 24, []int{30, 30, 30, 15, 15, 9}, 30, 0.55),
			Options{K1: 15, K2: 4, Eps: 0.35, MinSamples: 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			options, err := c.options.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			featuresPath := filepath.Join(dir, "features.npy")
			matrix, err := npy.FromRows(c.points)
			if err != nil {
				t.Fatal(err)
			}
			if err := npy.WriteFile(featuresPath, matrix); err != nil {
				t.Fatal(err)
			}
			distPath, labelsPath := filepath.Join(dir, "dist.npy"), filepath.Join(dir, "labels.txt")
			out, err := exec.Command("/usr/bin/python3", filepath.Join("testdata", "jaccard_reference.py"), featuresPath,
				strconv.Itoa(options.K1), strconv.Itoa(options.K2), strconv.FormatFloat(options.Eps, 'g', -1, 64),
				strconv.Itoa(options.MinSamples), distPath, labelsPath).CombinedOutput()
			if err != nil {
				t.Fatalf("reference: %v\n%s", err, out)
			}
			if strings.TrimSpace(string(out)) != "0" {
				t.Logf("%s pair distances lie within 1e-6 of eps; labels could differ on rounding", out)
			}
			reference, err := npy.ReadFile(distPath)
			if err != nil {
				t.Fatal(err)
			}
			referenceLabels := readLabels(t, labelsPath)

			labels, graph, err := Run(context.Background(), c.points, options)
			if err != nil {
				t.Fatal(err)
			}
			n := len(c.points)
			worst, stored := 0.0, 0
			for i := range n {
				stored += len(graph.Edges[i])
				for j := range n {
					worst = math.Max(worst, math.Abs(graph.Distance(i, j)-float64(reference.Data[i*n+j])))
				}
			}
			if worst > 1e-5 {
				t.Errorf("Jaccard distance differs from the dense reference by up to %g", worst)
			}
			if !samePartition(labels, referenceLabels) {
				t.Errorf("labels differ from sklearn DBSCAN on the dense reference:\n got %v\nwant %v", labels, referenceLabels)
			}
			summary := Summarize(labels)
			if summary.Clusters < 4 || summary.Outliers == 0 || summary.Outliers > n/2 {
				t.Errorf("test data did not exercise clusters and outliers: %+v", summary)
			}
			t.Logf("%d points, %d clusters, %.1f%% outliers, %d of %d pairs stored, exact label equality: %v",
				n, summary.Clusters, 100*summary.OutlierRatio, stored, n*n, slices.Equal(labels, referenceLabels))
		})
	}
}

// TestDBSCANByHand: a chain of core points, a border point reachable from two clusters (it goes
// to the cluster grown first, as in sklearn), min_samples counting the point itself, and noise.
func TestDBSCANByHand(t *testing.T) {
	edges := func(pairs map[[2]int]float32, n int) *Graph {
		graph := &Graph{Edges: make([][]Edge, n)}
		for i := range n {
			graph.Edges[i] = append(graph.Edges[i], Edge{To: int32(i)})
		}
		for pair, d := range pairs {
			graph.Edges[pair[0]] = append(graph.Edges[pair[0]], Edge{To: int32(pair[1]), Distance: d})
			graph.Edges[pair[1]] = append(graph.Edges[pair[1]], Edge{To: int32(pair[0]), Distance: d})
		}
		for i := range graph.Edges {
			slices.SortFunc(graph.Edges[i], func(a, b Edge) int { return int(a.To - b.To) })
		}
		return graph
	}
	// Clusters {0,1,2,10} and {4,5,6,11} are complete graphs (cores at min_samples 4). Point 3
	// is within eps of 2 and of 4 only, so it has 3 neighbours counting itself: a border point
	// of both clusters, claimed by the one grown first (from point 0). 7 is alone; 8-9 a pair.
	pairs := map[[2]int]float32{{2, 3}: 0.5, {3, 4}: 0.4, {3, 6}: 0.7, {8, 9}: 0.1}
	for _, members := range [][]int{{0, 1, 2, 10}, {4, 5, 6, 11}} {
		for a := range members {
			for b := a + 1; b < len(members); b++ {
				pairs[[2]int{members[a], members[b]}] = 0.1 * float32(a+b)
			}
		}
	}
	graph := edges(pairs, 12)
	got := DBSCAN(graph, 0.5, 4)
	want := []int{0, 0, 0, 0, 1, 1, 1, Noise, Noise, Noise, 0, 1}
	if !slices.Equal(got, want) {
		t.Errorf("eps 0.5 min 4: %v, want %v", got, want)
	}
	// min_samples 2: the pair 8-9 (each with itself and the other) becomes a cluster.
	if got := DBSCAN(graph, 0.5, 2); got[8] != got[9] || got[8] == Noise || got[7] != Noise {
		t.Errorf("eps 0.5 min 2: %v", got)
	}
	// min_samples 1: every point is a core point, so 7 is a cluster of its own.
	if got := DBSCAN(graph, 0.05, 1); got[7] == Noise || got[0] == got[1] {
		t.Errorf("eps 0.05 min 1: %v", got)
	}
}

func TestTopK(t *testing.T) {
	row := []float32{0.5, 0.9, 0.1, 0.9, 0.7, 0.5}
	got := TopK(row, len(row), 4)[0]
	if want := []int32{1, 3, 4, 0}; !slices.Equal(got, want) {
		t.Errorf("top 4 of %v: %v, want %v", row, got, want)
	}
	if got := TopK(row, len(row), 10)[0]; !slices.Equal(got, []int32{1, 3, 4, 0, 5, 2}) {
		t.Errorf("k > n: %v", got)
	}
}

func TestOptionsAndSummary(t *testing.T) {
	options, err := Options{}.WithDefaults()
	if err != nil || options.K1 != 30 || options.K2 != 6 || options.Eps != 0.6 || options.MinSamples != 4 || options.Neighbors != nil {
		t.Errorf("defaults %+v, %v", options, err)
	}
	for _, bad := range []Options{{Eps: 1}, {Eps: -0.1}, {K1: 5, K2: 6}, {K1: -1}, {MinSamples: -2}} {
		if _, err := bad.WithDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	summary := Summarize([]int{0, 0, 1, -1, 2, 2, 2, 2, 0})
	if summary.Clusters != 3 || summary.Outliers != 1 || !slices.Equal(summary.Sizes, []int{4, 3, 1}) ||
		!slices.Equal(summary.Buckets, []int{1, 1, 1}) || math.Abs(summary.OutlierRatio-1.0/9) > 1e-12 {
		t.Errorf("summary %+v", summary)
	}
	if _, _, err := Run(context.Background(), [][]float32{{1, 2}, {3}}, Options{}); err == nil {
		t.Error("ragged features accepted")
	}
}

// TestSmallAndDegenerateInputs: fewer points than k1, exact duplicates and a zero vector must
// cluster without error, and duplicates end up together.
func TestSmallAndDegenerateInputs(t *testing.T) {
	points := [][]float32{{1, 0}, {1, 0}, {1, 0}, {1, 0}, {0, 1}, {0, 0}}
	labels, graph, err := Run(context.Background(), points, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if labels[0] == Noise || labels[1] != labels[0] || labels[2] != labels[0] || labels[3] != labels[0] {
		t.Errorf("four identical points not one cluster: %v", labels)
	}
	for i := range points {
		if d := graph.Distance(i, i); d > 1e-6 {
			t.Errorf("self distance of %d is %v", i, d)
		}
	}
	if _, _, err := Run(context.Background(), nil, Options{}); err == nil {
		t.Error("no features accepted")
	}
}

// TestRefineDecidesNearTiesInFloat64: c's dot product with x exceeds a's by 2^-24, which a
// float32 sum rounds away; Refine must put c first and keep exact ties in index order.
func TestRefineDecidesNearTiesInFloat64(t *testing.T) {
	const tiny = 1.0 / (1 << 24)
	features := [][]float32{
		{1, 1},                     // x
		{0.5, 0.5},                 // a: dot 1
		{0.5 + tiny, 0.5 - tiny},   // b: dot 1, a tie with a
		{0.5 + 2*tiny, 0.5 - tiny}, // c: dot 1 + 2^-24
	}
	if got := features[0][0]*features[3][0] + features[0][1]*features[3][1]; got != 1 {
		t.Fatalf("float32 sum %v: the case no longer exercises a float32 tie", got)
	}
	if got := Refine(features, 0, []int32{2, 1, 3}, 3); !slices.Equal(got, []int32{3, 1, 2}) {
		t.Errorf("refined order %v, want [3 1 2]", got)
	}
}

// TestRunWithNeighborFinder: neighbours found elsewhere (here in reverse order and with the
// finder told the margin) give the same labels as the search in Go, and a finder's failure is
// Run's.
func TestRunWithNeighborFinder(t *testing.T) {
	features := clustered(5, 32, []int{40, 30, 25, 20, 12, 8, 5}, 50, 0.45)
	want, _, err := Run(context.Background(), features, Options{})
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	reversed := func(ctx context.Context, unit [][]float32, k int) ([][]int32, error) {
		asked = k
		ranks, err := NearestNeighbors(ctx, unit, k)
		for _, list := range ranks {
			slices.Reverse(list)
		}
		return ranks, err
	}
	got, _, err := Run(context.Background(), features, Options{Neighbors: reversed})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || asked != 30+refineMargin {
		t.Errorf("with a finder asked for %d: %v\nwithout: %v", asked, got, want)
	}
	failing := func(context.Context, [][]float32, int) ([][]int32, error) { return nil, errors.New("device lost") }
	if _, _, err := Run(context.Background(), features, Options{Neighbors: failing}); err == nil || !strings.Contains(err.Error(), "device lost") {
		t.Errorf("a failing finder: %v", err)
	}
}
