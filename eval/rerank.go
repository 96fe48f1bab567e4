package eval

import (
	"context"
	"fmt"

	"github.com/reid-project/reid/cluster"
	"github.com/reid-project/reid/internal/npy"
	"github.com/reid-project/reid/internal/vecmath"
)

// RerankOptions are the k-reciprocal re-ranking parameters (Zhong et al., CVPR 2017). Zero
// fields take the paper's defaults.
type RerankOptions struct {
	K1     int     // default 20
	K2     int     // default 6
	Lambda float64 // weight of the original distance, default 0.3
}

// WithDefaults fills zero fields and validates.
func (o RerankOptions) WithDefaults() (RerankOptions, error) {
	if o.K1 == 0 {
		o.K1 = 20
	}
	if o.K2 == 0 {
		o.K2 = 6
	}
	if o.Lambda == 0 {
		o.Lambda = 0.3
	}
	if o.K1 < 1 || o.K2 < 1 || o.K2 > o.K1+1 || o.Lambda < 0 || o.Lambda > 1 {
		return o, fmt.Errorf("eval: re-ranking k1=%d k2=%d lambda=%v: want k1 >= 1, 1 <= k2 <= k1+1, 0 <= lambda <= 1",
			o.K1, o.K2, o.Lambda)
	}
	return o, nil
}

// Rerank returns the re-ranked query x gallery distance matrix of the reference re_ranking
// function as Cluster Contrast's evaluator calls it: its input distances are the squared
// Euclidean distances of the L2-normalised features (2 - 2 cos), which it squares and divides by
// each row's maximum over queries and gallery together; the result is
// (1 - lambda) * Jaccard + lambda * that normalised distance.
//
// Unlike the reference, nothing here is (Q+G) x (Q+G): ranks are kept to the k1+1 nearest
// neighbours, the encoding is sparse and only query rows of the Jaccard distance are formed, so
// the memory is O(Q x G) for the output plus O((Q+G) x k) for the rest.
func Rerank(ctx context.Context, query, gallery [][]float32, options RerankOptions) (npy.Matrix, error) {
	options, err := options.WithDefaults()
	if err != nil {
		return npy.Matrix{}, err
	}
	if err := checkDims(query, gallery); err != nil {
		return npy.Matrix{}, err
	}
	all := vecmath.Normalize(append(append([][]float32{}, query...), gallery...))
	n, queries := len(all), len(query)
	encoding := cluster.RerankEncoding(options.K1, options.K2)
	// One pass over all pairs: each row's maximum of the squared distance (the normaliser) and
	// its nearest neighbours. Squared distances are monotone in the dot product, so the
	// neighbours are the most similar rows.
	rowMax := make([]float64, n)
	ranks, err := nearestWithMax(ctx, all, encoding.Needed(), rowMax)
	if err != nil {
		return npy.Matrix{}, err
	}
	original := func(i, j int) float64 {
		d := 2 - 2*vecmath.Dot64(all[i], all[j])
		return d * d / rowMax[i]
	}
	rows, err := cluster.Encode(ctx, ranks, encoding, func(i int, columns []int32, out []float64) {
		for k, j := range columns {
			out[k] = original(i, int(j))
		}
	})
	if err != nil {
		return npy.Matrix{}, err
	}
	queryRows := make([]int, queries)
	for i := range queryRows {
		queryRows[i] = i
	}
	overlaps, err := cluster.NewOverlapIndex(rows).Overlaps(ctx, queryRows)
	if err != nil {
		return npy.Matrix{}, err
	}
	out := npy.Matrix{Rows: queries, Cols: len(gallery), Data: make([]float32, queries*len(gallery))}
	err = vecmath.ForBlocks(ctx, queries, 16, 0, func(start, end int) {
		for q := start; q < end; q++ {
			row := out.Row(q)
			// Pairs whose encodings share nothing have Jaccard distance 1.
			jaccard := make([]float64, len(gallery))
			for g := range jaccard {
				jaccard[g] = 1
			}
			for _, overlap := range overlaps[q] {
				if g := int(overlap.To) - queries; g >= 0 {
					jaccard[g] = cluster.JaccardFromOverlap(overlap.Sum)
				}
			}
			for g := range row {
				row[g] = float32(jaccard[g]*(1-options.Lambda) + original(q, queries+g)*options.Lambda)
			}
		}
	})
	if err != nil {
		return npy.Matrix{}, err
	}
	return out, nil
}

// nearestWithMax is cluster.NearestNeighbors that also records each row's largest squared
// distance (2 - 2 cos)^2 over all rows.
func nearestWithMax(ctx context.Context, unit [][]float32, k int, rowMax []float64) ([][]int32, error) {
	n := len(unit)
	ranks := make([][]int32, n)
	const block = 64
	err := vecmath.ForBlocks(ctx, n, block, 0, func(start, end int) {
		similarities := make([]float32, (end-start)*n)
		vecmath.Dots(unit[start:end], unit, similarities)
		for i := start; i < end; i++ {
			row := similarities[(i-start)*n : (i-start+1)*n]
			// The largest distance is at the smallest dot product; it is re-scored in float64
			// like every other distance the re-ranking uses.
			farthest := 0
			for j, dot := range row {
				if dot < row[farthest] {
					farthest = j
				}
			}
			d := 2 - 2*vecmath.Dot64(unit[i], unit[farthest])
			largest := d * d
			if largest == 0 {
				largest = 1 // all rows identical: every distance is 0 anyway
			}
			rowMax[i] = largest
		}
		for r, candidates := range cluster.TopK(similarities, n, k+8) {
			ranks[start+r] = cluster.Refine(unit, start+r, candidates, k)
		}
	})
	if err != nil {
		return nil, err
	}
	return ranks, nil
}
