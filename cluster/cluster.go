// Package cluster turns re-id features into pseudo-identities the way Cluster Contrast does:
// Jaccard distance over k-reciprocal neighbours (compute_jaccard_distance), then DBSCAN on that
// distance. `reid cluster` and the trainer both call Run.
//
// The reference builds a dense N x N float32 distance matrix (40 GB at 100k crops). Here the
// distance is a sparse graph: two points whose k-reciprocal encodings share no column have
// Jaccard distance exactly 1 and are left out, which loses nothing for DBSCAN at eps < 1. Memory
// grows with N times the neighbourhood size instead of N squared.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/reid-project/reid/internal/vecmath"
)

// Options are the clustering parameters. The zero value of a field means its default.
type Options struct {
	// K1 is the k-reciprocal neighbourhood size. Default 30.
	K1 int
	// K2 is the local query expansion size (neighbours averaged, self included). Default 6.
	K2 int
	// Eps is DBSCAN's neighbourhood radius on the Jaccard distance, in (0, 1). Default 0.6.
	Eps float64
	// MinSamples is DBSCAN's core-point threshold; a point counts itself, as in sklearn.
	// Default 4.
	MinSamples int
	// Neighbors, when set, finds the nearest neighbours instead of the exact search in Go (a BLAS
	// or a GPU is many times faster at it: torch.Device.NearestNeighbors). Its candidates are
	// re-scored in float64 here, so the labels are the same either way.
	Neighbors NeighborFinder `json:"-"`
}

// NeighborFinder returns, for every row of unit (L2-normalised), the indices of its k most
// similar rows by inner product, most similar first; the order of equally similar rows does not
// matter.
type NeighborFinder func(ctx context.Context, unit [][]float32, k int) ([][]int32, error)

// WithDefaults fills zero fields with the defaults and validates the result.
func (o Options) WithDefaults() (Options, error) {
	if o.K1 == 0 {
		o.K1 = 30
	}
	if o.K2 == 0 {
		o.K2 = 6
	}
	if o.Eps == 0 {
		o.Eps = 0.6
	}
	if o.MinSamples == 0 {
		o.MinSamples = 4
	}
	switch {
	case o.K1 < 1:
		return o, fmt.Errorf("cluster: k1 = %d, want at least 1", o.K1)
	case o.K2 < 1 || o.K2 > o.K1:
		return o, fmt.Errorf("cluster: k2 = %d, want 1..k1 (%d)", o.K2, o.K1)
	case !(o.Eps > 0 && o.Eps < 1):
		// At eps >= 1 every pair would be a neighbour, which the sparse graph does not store.
		return o, fmt.Errorf("cluster: eps = %v, want 0 < eps < 1", o.Eps)
	case o.MinSamples < 1:
		return o, fmt.Errorf("cluster: min-samples = %d, want at least 1", o.MinSamples)
	}
	return o, nil
}

// Edge is one stored pair of the Jaccard graph.
type Edge struct {
	To       int32
	Distance float32
}

// Graph is the sparse Jaccard distance: Edges[i] holds every j with distance < 1 (i itself
// included), ascending by j. Absent pairs are at distance 1. The distance is symmetric.
type Graph struct {
	Edges [][]Edge
}

// Len is the number of points.
func (g *Graph) Len() int { return len(g.Edges) }

// Distance returns the Jaccard distance between i and j.
func (g *Graph) Distance(i, j int) float64 {
	edges := g.Edges[i]
	k, found := slices.BinarySearchFunc(edges, int32(j), func(e Edge, target int32) int { return int(e.To - target) })
	if !found {
		return 1
	}
	return float64(edges[k].Distance)
}

// JaccardGraph computes the Jaccard distance of Cluster Contrast's compute_jaccard_distance for
// features (rows are L2-normalised here first). The k-NN step is exact brute force.
func JaccardGraph(ctx context.Context, features [][]float32, k1, k2 int) (*Graph, error) {
	if err := checkFeatures(features); err != nil {
		return nil, err
	}
	unit := vecmath.Normalize(features)
	ranks, err := NearestNeighbors(ctx, unit, k1)
	if err != nil {
		return nil, err
	}
	return JaccardGraphFromNeighbors(ctx, unit, ranks, k1, k2)
}

// JaccardGraphFromNeighbors is JaccardGraph for callers that found the k1 nearest neighbours of
// each point themselves (for example on a GPU). unit must be L2-normalised; ranks[i] lists at
// least k1 neighbours of i (self included), closest first.
func JaccardGraphFromNeighbors(ctx context.Context, unit [][]float32, ranks [][]int32, k1, k2 int) (*Graph, error) {
	if len(ranks) != len(unit) {
		return nil, fmt.Errorf("cluster: %d neighbour lists for %d points", len(ranks), len(unit))
	}
	// Reference weights: softmax over the expanded set of -(2 - 2 cos).
	distance := func(i int, columns []int32, out []float64) {
		for k, j := range columns {
			out[k] = 2 - 2*vecmath.Dot64(unit[i], unit[j])
		}
	}
	encoding, err := Encode(ctx, ranks, ClusterEncoding(k1, k2), distance)
	if err != nil {
		return nil, err
	}
	graph := &Graph{Edges: make([][]Edge, len(unit))}
	// Rows go through Overlaps in chunks so the wider intermediate form never exists for all
	// points at once.
	const chunk = 4096
	index := NewOverlapIndex(encoding)
	for first := 0; first < len(unit); first += chunk {
		rows := make([]int, 0, chunk)
		for i := first; i < min(first+chunk, len(unit)); i++ {
			rows = append(rows, i)
		}
		overlaps, err := index.Overlaps(ctx, rows)
		if err != nil {
			return nil, err
		}
		for r, row := range overlaps {
			edges := make([]Edge, 0, len(row))
			for _, overlap := range row {
				// The reference clips the (rounding-only) negative distances to 0.
				d := max(JaccardFromOverlap(overlap.Sum), 0)
				if d < 1 {
					edges = append(edges, Edge{To: overlap.To, Distance: float32(d)})
				}
			}
			graph.Edges[rows[r]] = edges
		}
	}
	return graph, nil
}

func checkFeatures(features [][]float32) error {
	if len(features) == 0 {
		return fmt.Errorf("cluster: no features")
	}
	dim := len(features[0])
	if dim == 0 {
		return fmt.Errorf("cluster: features have dimension 0")
	}
	for i, row := range features {
		if len(row) != dim {
			return fmt.Errorf("cluster: feature %d has dimension %d, feature 0 has %d", i, len(row), dim)
		}
	}
	return nil
}

// Noise is the label of points DBSCAN leaves out of every cluster.
const Noise = -1

// DBSCAN labels the points of graph: clusters 0, 1, ... and Noise. Neighbours of a point are the
// points at distance <= eps, itself included; a core point has at least minSamples of them.
// Clusters are numbered and border points claimed exactly as sklearn's DBSCAN does (clusters
// grow one at a time from the lowest-index unlabelled core point), so the labels equal
// sklearn.cluster.DBSCAN(eps, min_samples, metric="precomputed") on the dense matrix.
func DBSCAN(graph *Graph, eps float64, minSamples int) []int {
	n := graph.Len()
	neighbours := make([][]int32, n)
	core := make([]bool, n)
	for i, edges := range graph.Edges {
		list := make([]int32, 0, len(edges))
		self := false
		for _, edge := range edges {
			if float64(edge.Distance) <= eps {
				list = append(list, edge.To)
				self = self || int(edge.To) == i
			}
		}
		if !self {
			list = append(list, int32(i))
		}
		neighbours[i] = list
		core[i] = len(list) >= minSamples
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = Noise
	}
	next := 0
	var stack []int32
	for start := range n {
		if labels[start] != Noise || !core[start] {
			continue
		}
		labels[start] = next
		stack = append(stack[:0], int32(start))
		for len(stack) > 0 {
			point := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if !core[point] {
				continue
			}
			for _, neighbour := range neighbours[point] {
				if labels[neighbour] == Noise {
					labels[neighbour] = next
					stack = append(stack, neighbour)
				}
			}
		}
		next++
	}
	return labels
}

// Run clusters features with the Jaccard distance and DBSCAN and returns one label per row
// (Noise for outliers) together with the graph, which can be re-clustered with another eps.
func Run(ctx context.Context, features [][]float32, options Options) ([]int, *Graph, error) {
	options, err := options.WithDefaults()
	if err != nil {
		return nil, nil, err
	}
	began := time.Now()
	if err := checkFeatures(features); err != nil {
		return nil, nil, err
	}
	unit := vecmath.Normalize(features)
	ranks, err := findNeighbors(ctx, unit, options.K1, options.Neighbors)
	if err != nil {
		return nil, nil, err
	}
	neighborTime := time.Since(began)
	graph, err := JaccardGraphFromNeighbors(ctx, unit, ranks, options.K1, options.K2)
	if err != nil {
		return nil, nil, err
	}
	jaccardTime := time.Since(began)
	labels := DBSCAN(graph, options.Eps, options.MinSamples)
	edges := 0
	for _, row := range graph.Edges {
		edges += len(row)
	}
	slog.Debug("clustered", "points", len(features), "graph_edges", edges, "neighbours", neighborTime.Round(time.Millisecond),
		"jaccard", (jaccardTime - neighborTime).Round(time.Millisecond), "dbscan", (time.Since(began) - jaccardTime).Round(time.Millisecond))
	return labels, graph, nil
}

// Summary describes a labelling.
type Summary struct {
	Points   int `json:"points"`
	Clusters int `json:"clusters"`
	Outliers int `json:"outliers"`
	// OutlierRatio is Outliers / Points.
	OutlierRatio float64 `json:"outlier_ratio"`
	// Sizes are the cluster sizes, largest first.
	Sizes []int `json:"sizes"`
	// Histogram counts clusters by size bucket: Buckets[k] clusters have a size in
	// [2^k, 2^(k+1)).
	Buckets []int `json:"size_buckets"`
}

// Summarize counts clusters, outliers and cluster sizes of labels.
func Summarize(labels []int) Summary {
	summary := Summary{Points: len(labels)}
	counts := map[int]int{}
	for _, label := range labels {
		if label < 0 {
			summary.Outliers++
			continue
		}
		counts[label]++
	}
	summary.Clusters = len(counts)
	for _, size := range counts {
		summary.Sizes = append(summary.Sizes, size)
	}
	slices.SortFunc(summary.Sizes, func(a, b int) int { return b - a })
	for _, size := range summary.Sizes {
		bucket := 0
		for 1<<(bucket+1) <= size {
			bucket++
		}
		for len(summary.Buckets) <= bucket {
			summary.Buckets = append(summary.Buckets, 0)
		}
		summary.Buckets[bucket]++
	}
	if summary.Points > 0 {
		summary.OutlierRatio = float64(summary.Outliers) / float64(summary.Points)
	}
	return summary
}
