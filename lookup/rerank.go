package lookup

import (
	"context"
	"fmt"
	"sort"

	"github.com/reid-project/reid/eval"
)

// Re-ranking is k-reciprocal encoding (Zhong et al., CVPR 2017), the implementation `reid eval`
// uses and checks against the reference, applied to the query and its top-N candidates only, so
// its cost is bounded by N (at most a few hundred) rather than the gallery: two crops are close
// when their k-reciprocal neighbourhoods (people who are mutually among each other's nearest)
// overlap, which suppresses a candidate that is near the query but whose own nearest neighbours
// are other people.

// rerankOptions scales the paper's k1 = 20, k2 = 6 down for a small candidate set.
func rerankOptions(candidates int) eval.RerankOptions {
	k1 := min(20, max(2, (candidates+1)/3))
	return eval.RerankOptions{K1: k1, K2: min(6, k1), Lambda: 0.3}
}

// rerankCandidates is how many neighbours to fetch for re-ranking a top-k.
func rerankCandidates(k int) int {
	return min(max(3*k, 60), max(k, 300))
}

// kReciprocalRerank returns the order of gallery (best first) and each gallery item's final
// distance to query.
func kReciprocalRerank(ctx context.Context, query []float32, gallery [][]float32) ([]int, []float32, error) {
	if len(gallery) == 0 {
		return nil, nil, nil
	}
	distances, err := eval.Rerank(ctx, [][]float32{query}, gallery, rerankOptions(len(gallery)))
	if err != nil {
		return nil, nil, fmt.Errorf("re-ranking: %w", err)
	}
	final := distances.Row(0)
	order := make([]int, len(gallery))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return final[order[a]] < final[order[b]] })
	return order, final, nil
}
