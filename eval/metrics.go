package eval

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/reid-project/reid/internal/npy"
	"github.com/reid-project/reid/internal/vecmath"
)

// Metrics are the Market-protocol results, fractions in [0, 1]. The JSON form is what
// `reid eval --json` prints.
type Metrics struct {
	MAP    float64 `json:"mAP"`
	Rank1  float64 `json:"rank1"`
	Rank5  float64 `json:"rank5"`
	Rank10 float64 `json:"rank10"`
	MINP   float64 `json:"mINP"`
	// CMC[k] is the fraction of queries whose first true match ranks k+1 or better.
	CMC []float64 `json:"-"`
	// Queries is the number of queries averaged; Skipped were left out (no identity, or no true
	// match in another camera).
	Queries int `json:"-"`
	Skipped int `json:"-"`
}

// MaxRank is the length of Metrics.CMC.
const MaxRank = 50

// QueryResult is one query's part of the metrics. Ranks are 0-based positions in the ranked
// gallery after ignored items are removed.
type QueryResult struct {
	Valid       bool
	AP, INP     float64
	FirstMatch  int
	TrueMatches int
}

// Protocol decides which gallery items are true matches of a query and which are ignored.
type Protocol int

const (
	// CrossCamera is the Market-1501 protocol: true matches are the query's identity seen by
	// other cameras; the same identity in the query's own camera is ignored.
	CrossCamera Protocol = iota
	// SameCamera is its mirror image, for measuring how much harder cross-camera matching is:
	// true matches are the query's identity in the query's own camera; other cameras' images
	// of it are ignored.
	SameCamera
)

// String names the protocol as the CLI flag spells it.
func (p Protocol) String() string {
	if p == SameCamera {
		return "same-camera"
	}
	return "cross-camera"
}

// ParseProtocol reads "cross-camera" (or "market") and "same-camera".
func ParseProtocol(name string) (Protocol, error) {
	switch name {
	case "cross-camera", "market", "":
		return CrossCamera, nil
	case "same-camera":
		return SameCamera, nil
	}
	return 0, fmt.Errorf("eval: protocol %q: want cross-camera or same-camera", name)
}

// Evaluate computes the Market-protocol metrics from a query x gallery distance matrix (smaller
// = more similar; any distance works, ties are broken by the lower gallery index). Queries are
// processed in parallel; each costs O(G log M) for M true matches, no full sort.
func Evaluate(ctx context.Context, distances npy.Matrix, query, gallery []Label) (Metrics, error) {
	return EvaluateProtocol(ctx, distances, query, gallery, CrossCamera)
}

// EvaluateProtocol is Evaluate under the given protocol.
func EvaluateProtocol(ctx context.Context, distances npy.Matrix, query, gallery []Label, protocol Protocol) (Metrics, error) {
	results, err := EvaluateQueries(ctx, distances, query, gallery, protocol)
	if err != nil {
		return Metrics{}, err
	}
	return Aggregate(results), nil
}

// EvaluateQueries returns each query's result.
func EvaluateQueries(ctx context.Context, distances npy.Matrix, query, gallery []Label, protocol Protocol) ([]QueryResult, error) {
	if distances.Rows != len(query) || distances.Cols != len(gallery) || len(distances.Data) != distances.Rows*distances.Cols {
		return nil, fmt.Errorf("eval: distance matrix is %dx%d (%d values) for %d queries and %d gallery items",
			distances.Rows, distances.Cols, len(distances.Data), len(query), len(gallery))
	}
	results := make([]QueryResult, len(query))
	errs := make([]error, len(query))
	err := vecmath.ForBlocks(ctx, len(query), 16, 0, func(start, end int) {
		for q := start; q < end; q++ {
			results[q], errs[q] = evaluateQuery(distances.Row(q), query[q], gallery, protocol)
			if errs[q] != nil {
				errs[q] = fmt.Errorf("eval: query %d: %w", q, errs[q])
			}
		}
	})
	if err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return results, nil
}

// key orders gallery items: by distance, then by index, so the order is total and reproducible.
type key struct {
	distance float32
	index    int
}

func (a key) less(b key) bool {
	return a.distance < b.distance || (a.distance == b.distance && a.index < b.index)
}

func evaluateQuery(row []float32, query Label, gallery []Label, protocol Protocol) (QueryResult, error) {
	if query.PID <= 0 {
		return QueryResult{}, nil
	}
	var matches []key
	for g, label := range gallery {
		if math.IsNaN(float64(row[g])) {
			return QueryResult{}, fmt.Errorf("distance to gallery item %d is NaN", g)
		}
		if label.PID == query.PID && (label.Camera == query.Camera) == (protocol == SameCamera) {
			matches = append(matches, key{row[g], g})
		}
	}
	if len(matches) == 0 {
		return QueryResult{}, nil
	}
	sort.Slice(matches, func(a, b int) bool { return matches[a].less(matches[b]) })
	// before[m] counts the non-matches ranked between match m-1 and match m. Ignored items
	// (junk, same identity in the query's camera) are not ranked at all.
	before := make([]int, len(matches)+1)
	for g, label := range gallery {
		if label.PID < 0 || label.PID == query.PID {
			continue
		}
		item := key{row[g], g}
		before[sort.Search(len(matches), func(m int) bool { return item.less(matches[m]) })]++
	}
	result := QueryResult{Valid: true, TrueMatches: len(matches)}
	negatives := 0
	var precisionSum float64
	for m := range matches {
		negatives += before[m]
		rank := m + negatives // 0-based rank of match m among counted items
		if m == 0 {
			result.FirstMatch = rank
		}
		precisionSum += float64(m+1) / float64(rank+1)
		if m == len(matches)-1 {
			result.INP = float64(len(matches)) / float64(rank+1)
		}
	}
	result.AP = precisionSum / float64(len(matches))
	return result, nil
}

// Aggregate averages per-query results over the valid queries.
func Aggregate(results []QueryResult) Metrics {
	metrics := Metrics{CMC: make([]float64, MaxRank)}
	for _, result := range results {
		if !result.Valid {
			metrics.Skipped++
			continue
		}
		metrics.Queries++
		metrics.MAP += result.AP
		metrics.MINP += result.INP
		for k := result.FirstMatch; k < MaxRank; k++ {
			metrics.CMC[k]++
		}
	}
	if metrics.Queries == 0 {
		return metrics
	}
	n := float64(metrics.Queries)
	metrics.MAP /= n
	metrics.MINP /= n
	for k := range metrics.CMC {
		metrics.CMC[k] /= n
	}
	metrics.Rank1, metrics.Rank5, metrics.Rank10 = metrics.CMC[0], metrics.CMC[4], metrics.CMC[9]
	return metrics
}

// Distances returns the query x gallery matrix of squared Euclidean distances between the
// L2-normalised features (2 - 2 cos), the distance Cluster Contrast's evaluator ranks by and
// hands to re-ranking.
func Distances(ctx context.Context, query, gallery [][]float32) (npy.Matrix, error) {
	if err := checkDims(query, gallery); err != nil {
		return npy.Matrix{}, err
	}
	unitQuery, unitGallery := vecmath.Normalize(query), vecmath.Normalize(gallery)
	out := npy.Matrix{Rows: len(query), Cols: len(gallery), Data: make([]float32, len(query)*len(gallery))}
	err := vecmath.ForBlocks(ctx, len(query), 64, 0, func(start, end int) {
		block := out.Data[start*out.Cols : end*out.Cols]
		vecmath.Dots(unitQuery[start:end], unitGallery, block)
		for k, dot := range block {
			block[k] = 2 - 2*dot
		}
	})
	if err != nil {
		return npy.Matrix{}, err
	}
	return out, nil
}

func checkDims(sets ...[][]float32) error {
	dim := -1
	for _, set := range sets {
		if len(set) == 0 {
			return fmt.Errorf("eval: empty feature set")
		}
		for i, row := range set {
			if dim < 0 {
				dim = len(row)
			}
			if len(row) != dim || dim == 0 {
				return fmt.Errorf("eval: feature %d has dimension %d, want %d", i, len(row), dim)
			}
		}
	}
	return nil
}
