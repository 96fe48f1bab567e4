package lookup

import (
	"math"
	"sort"
)

// Re-ranking follows k-reciprocal encoding (Zhong et al., CVPR 2017), applied to the query and its
// top-N candidates only, so its cost is bounded by N (at most a few hundred) rather than the
// gallery: two crops are close when their k-reciprocal neighbourhoods (people who are mutually
// among each other's nearest) overlap, which suppresses a candidate that is near the query but
// whose own nearest neighbours are other people.

type rerankParams struct {
	k1, k2 int
	// lambda weighs the original distance against the Jaccard distance.
	lambda float32
}

func defaultRerankParams(candidates int) rerankParams {
	k1 := min(20, max(2, (candidates+1)/3))
	return rerankParams{k1: k1, k2: min(6, k1), lambda: 0.3}
}

// rerankCandidates is how many neighbours to fetch for re-ranking a top-k.
func rerankCandidates(k int) int {
	return min(max(3*k, 60), max(k, 300))
}

// kReciprocalRerank returns the order of gallery (best first) and each gallery item's final
// distance to query. All vectors are L2-normalised.
func kReciprocalRerank(query []float32, gallery [][]float32, params rerankParams) ([]int, []float32) {
	n := len(gallery) + 1
	all := make([][]float32, 0, n)
	all = append(all, query)
	all = append(all, gallery...)
	// Squared Euclidean distance of unit vectors, 2 - 2cos, scaled to [0, 1] per row.
	distance := make([][]float32, n)
	for i := range n {
		distance[i] = make([]float32, n)
	}
	for i := range n {
		for j := i; j < n; j++ {
			d := float32(0)
			if i != j {
				d = max(0, 2-2*dot(all[i], all[j]))
			}
			distance[i][j], distance[j][i] = d, d
		}
	}
	for i := range n {
		rowMax := float32(0)
		for _, d := range distance[i] {
			rowMax = max(rowMax, d)
		}
		if rowMax > 0 {
			for j := range distance[i] {
				distance[i][j] /= rowMax
			}
		}
	}
	ranked := make([][]int, n)
	for i := range n {
		order := make([]int, n)
		for j := range order {
			order[j] = j
		}
		row := distance[i]
		sort.SliceStable(order, func(a, b int) bool { return row[order[a]] < row[order[b]] })
		// The item itself is always first (distance 0); ties keep index order, so force it.
		for position, j := range order {
			if j == i {
				copy(order[1:position+1], order[:position])
				order[0] = i
				break
			}
		}
		ranked[i] = order
	}
	reciprocal := func(i, k int) []int {
		forward := ranked[i][:min(k+1, n)]
		var out []int
		for _, candidate := range forward {
			backward := ranked[candidate][:min(k+1, n)]
			for _, b := range backward {
				if b == i {
					out = append(out, candidate)
					break
				}
			}
		}
		return out
	}
	weights := make([][]float32, n)
	for i := range n {
		set := map[int]bool{}
		base := reciprocal(i, params.k1)
		for _, candidate := range base {
			set[candidate] = true
		}
		// Expand with the half-size reciprocal sets that mostly agree with this one.
		half := max(1, int(math.Round(float64(params.k1)/2)))
		for _, candidate := range base {
			expansion := reciprocal(candidate, half)
			overlap := 0
			for _, e := range expansion {
				for _, b := range base {
					if e == b {
						overlap++
						break
					}
				}
			}
			if float32(overlap) > 2.0/3.0*float32(len(expansion)) {
				for _, e := range expansion {
					set[e] = true
				}
			}
		}
		row := make([]float32, n)
		total := float32(0)
		for j := range set {
			row[j] = float32(math.Exp(-float64(distance[i][j])))
			total += row[j]
		}
		if total > 0 {
			for j := range row {
				row[j] /= total
			}
		}
		weights[i] = row
	}
	// Local query expansion: average each row over its k2 nearest.
	if params.k2 > 1 {
		expanded := make([][]float32, n)
		for i := range n {
			row := make([]float32, n)
			neighbours := ranked[i][:min(params.k2, n)]
			for _, neighbour := range neighbours {
				for j, w := range weights[neighbour] {
					row[j] += w
				}
			}
			for j := range row {
				row[j] /= float32(len(neighbours))
			}
			expanded[i] = row
		}
		weights = expanded
	}
	final := make([]float32, len(gallery))
	for g := range gallery {
		minSum := float32(0)
		for j := range n {
			minSum += min(weights[0][j], weights[g+1][j])
		}
		jaccard := 1 - minSum/(2-minSum)
		final[g] = (1-params.lambda)*jaccard + params.lambda*distance[0][g+1]
	}
	order := make([]int, len(gallery))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return final[order[a]] < final[order[b]] })
	return order, final
}

func dot(a, b []float32) float32 {
	sum := float32(0)
	for i := range a {
		sum += a[i] * b[i]
	}
	return sum
}
