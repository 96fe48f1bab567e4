package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/reid-project/reid/internal/vecmath"
)

// NearestNeighbors returns, for every row of features, the indices of its k most similar rows by
// inner product (for unit vectors: smallest Euclidean distance), most similar first, ties broken by
// the lower index. A row is its own neighbour, normally the first. Exact brute force, parallel
// over row blocks; memory is k indices per row plus one block of similarities.
func NearestNeighbors(ctx context.Context, features [][]float32, k int) ([][]int32, error) {
	n := len(features)
	if k < 1 {
		return nil, fmt.Errorf("cluster: k = %d, want at least 1", k)
	}
	k = min(k, n)
	ranks := make([][]int32, n)
	const block = 64
	err := vecmath.ForBlocks(ctx, n, block, 0, func(start, end int) {
		similarities := make([]float32, (end-start)*n)
		vecmath.Dots(features[start:end], features, similarities)
		candidates := TopK(similarities, n, k+refineMargin)
		for r, list := range candidates {
			ranks[start+r] = Refine(features, start+r, list, k)
		}
	})
	if err != nil {
		return nil, err
	}
	return ranks, nil
}

// findNeighbors is the k-NN step of Run: the exact search in Go, or finder's candidates (k plus
// refineMargin of them) re-scored in float64 by Refine, which orders ties by index as
// NearestNeighbors does, so both give the same neighbours.
func findNeighbors(ctx context.Context, unit [][]float32, k int, finder NeighborFinder) ([][]int32, error) {
	if finder == nil {
		return NearestNeighbors(ctx, unit, k)
	}
	n := len(unit)
	k = min(k, n)
	candidates, err := finder(ctx, unit, min(k+refineMargin, n))
	if err != nil {
		return nil, fmt.Errorf("cluster: nearest neighbours: %w", err)
	}
	if len(candidates) != n {
		return nil, fmt.Errorf("cluster: nearest neighbours: %d lists for %d points", len(candidates), n)
	}
	ranks := make([][]int32, n)
	err = vecmath.ForBlocks(ctx, n, 256, 0, func(start, end int) {
		for i := start; i < end; i++ {
			ranks[i] = Refine(unit, i, candidates[i], k)
		}
	})
	if err != nil {
		return nil, err
	}
	for i, list := range ranks {
		if len(list) != k {
			return nil, fmt.Errorf("cluster: nearest neighbours: point %d has %d of %d", i, len(list), k)
		}
	}
	return ranks, nil
}

// refineMargin is how many extra float32 candidates Refine re-scores: the float32 kernel's
// error (about 1e-6 relative at 2048-d) can only swap neighbours whose similarities are that
// close, and more than a few such near-ties around rank k do not happen in practice.
const refineMargin = 8

// Refine re-scores candidate neighbours of row i with float64 dot products, sorts them (most
// similar first, ties by index) and keeps k. Float32 block products are fast but can order two
// almost equally similar rows differently from a float64 (or BLAS) reference; at the k-th place
// that changes a k-reciprocal set, so the boundary is decided in float64.
func Refine(features [][]float32, i int, candidates []int32, k int) []int32 {
	scores := make([]float64, len(candidates))
	order := make([]int, len(candidates))
	for c, j := range candidates {
		scores[c] = vecmath.Dot64(features[i], features[j])
		order[c] = c
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return int(candidates[a] - candidates[b])
	})
	out := make([]int32, min(k, len(candidates)))
	for r := range out {
		out[r] = candidates[order[r]]
	}
	return out
}

// TopK returns, for each row of a row-major block of similarities with cols columns, the column
// indices of its k largest values, largest first, equal values in index order.
func TopK(similarities []float32, cols, k int) [][]int32 {
	k = min(k, cols)
	if cols == 0 || k <= 0 {
		return make([][]int32, 0)
	}
	rows := len(similarities) / cols
	out := make([][]int32, rows)
	storage := make([]int32, rows*k)
	scores := make([]float32, k)
	for r := range rows {
		out[r] = topK(similarities[r*cols:(r+1)*cols], k, storage[r*k:(r+1)*k:(r+1)*k], scores)
	}
	return out
}

// topK writes the indices of the k largest values of row into indices (best first; equal values
// keep index order) using scores as scratch, and returns indices.
func topK(row []float32, k int, indices []int32, scores []float32) []int32 {
	filled := 0
	for j, value := range row {
		if filled == k && value <= scores[k-1] {
			continue
		}
		position := min(filled, k-1)
		// Shift worse entries down; "<" keeps an earlier equal value ahead (stable order).
		for position > 0 && scores[position-1] < value {
			if position < k {
				scores[position] = scores[position-1]
				indices[position] = indices[position-1]
			}
			position--
		}
		scores[position] = value
		indices[position] = int32(j)
		if filled < k {
			filled++
		}
	}
	return indices[:filled]
}
