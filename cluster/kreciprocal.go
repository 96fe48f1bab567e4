package cluster

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/reid-project/reid/internal/vecmath"
)

// SparseRow is one row of a k-reciprocal encoding: weights on a few columns, columns ascending.
type SparseRow struct {
	Columns []int32
	Weights []float64
}

// Encoding says how a k-reciprocal encoding (Zhong et al., CVPR 2017) reads the ranked neighbour
// lists. The two reference implementations differ here, so both callers spell it out:
//
//   - Cluster Contrast's compute_jaccard_distance searches k1 neighbours (self included) and slices
//     them with [:k1+1], so its forward lists hold k1 entries: Forward = k1.
//   - The evaluation re-ranking argsorts whole rows, so its forward lists hold k1+1: Forward = k1+1.
//
// Both use round-half-even(k1/2)+1 entries for the candidates' own sets and the first k2 entries
// (self included) for local query expansion.
type Encoding struct {
	Forward int // entries of a ranked list that form the forward k-NN set
	Half    int // entries used for a candidate's k-reciprocal set in the expansion step
	K2      int // neighbours averaged by local query expansion; 1 turns it off
}

// ClusterEncoding is the encoding of Cluster Contrast's compute_jaccard_distance for k1, k2.
func ClusterEncoding(k1, k2 int) Encoding {
	return Encoding{Forward: k1, Half: min(halfSet(k1), k1), K2: k2}
}

// RerankEncoding is the encoding of the evaluation re-ranking for k1, k2.
func RerankEncoding(k1, k2 int) Encoding {
	return Encoding{Forward: k1 + 1, Half: halfSet(k1), K2: k2}
}

// halfSet is int(np.around(k1/2)) + 1; np.around rounds halves to even.
func halfSet(k1 int) int { return int(math.RoundToEven(float64(k1)/2)) + 1 }

// Needed is how many ranked neighbours per point the encoding reads.
func (e Encoding) Needed() int { return max(e.Forward, e.Half, e.K2) }

func (e Encoding) validate(ranks [][]int32) error {
	if e.Forward < 1 || e.Half < 1 || e.K2 < 1 {
		return fmt.Errorf("cluster: encoding %+v: every size must be at least 1", e)
	}
	need := e.Needed()
	for i, row := range ranks {
		if len(row) < min(need, len(ranks)) {
			return fmt.Errorf("cluster: point %d has %d ranked neighbours, the encoding reads %d", i, len(row), need)
		}
		for _, j := range row {
			if j < 0 || int(j) >= len(ranks) {
				return fmt.Errorf("cluster: point %d lists neighbour %d of %d points", i, j, len(ranks))
			}
		}
	}
	return nil
}

// kReciprocal returns the members j of i's first size neighbours that list i among their own first
// size neighbours.
func kReciprocal(ranks [][]int32, i int32, size int) []int32 {
	forward := ranks[i][:min(size, len(ranks[i]))]
	var out []int32
	for _, j := range forward {
		backward := ranks[j][:min(size, len(ranks[j]))]
		if slices.Contains(backward, i) {
			out = append(out, j)
		}
	}
	return out
}

// DistanceFunc fills out[n] with the distance from point i to point columns[n]; the encoding
// weights a neighbour by exp(-distance), normalised over the expanded set.
type DistanceFunc func(i int, columns []int32, out []float64)

// Encode computes the k-reciprocal encoding of every point: the expanded k-reciprocal set of each
// point weighted by exp(-distance) and normalised to sum 1, then averaged over the point's first
// K2 ranked neighbours (local query expansion). ranks[i] lists point i's nearest neighbours,
// closest first, itself normally first, with at least e.Needed() entries.
func Encode(ctx context.Context, ranks [][]int32, e Encoding, distance DistanceFunc) ([]SparseRow, error) {
	if err := e.validate(ranks); err != nil {
		return nil, err
	}
	n := len(ranks)
	forwardSets := make([][]int32, n)
	halfSets := make([][]int32, n)
	err := vecmath.ForBlocks(ctx, n, 256, 0, func(start, end int) {
		for i := start; i < end; i++ {
			forwardSets[i] = kReciprocal(ranks, int32(i), e.Forward)
			halfSets[i] = kReciprocal(ranks, int32(i), e.Half)
		}
	})
	if err != nil {
		return nil, err
	}
	rows := make([]SparseRow, n)
	err = vecmath.ForBlocks(ctx, n, 256, 0, func(start, end int) {
		var distances []float64
		for i := start; i < end; i++ {
			set := forwardSets[i]
			expanded := slices.Clone(set)
			for _, candidate := range set {
				candidateSet := halfSets[candidate]
				shared := 0
				for _, member := range candidateSet {
					if slices.Contains(set, member) {
						shared++
					}
				}
				// "more than 2/3 of the candidate's set", in integers (same result as the float test).
				if 3*shared > 2*len(candidateSet) {
					expanded = append(expanded, candidateSet...)
				}
			}
			slices.Sort(expanded)
			expanded = slices.Compact(expanded)
			distances = slices.Grow(distances[:0], len(expanded))[:len(expanded)]
			distance(i, expanded, distances)
			// A softmax of -distance: shifting by the smallest distance changes nothing but
			// keeps exp away from underflow.
			smallest := math.Inf(1)
			for _, d := range distances {
				smallest = math.Min(smallest, d)
			}
			weights := make([]float64, len(expanded))
			var sum float64
			for k, d := range distances {
				weights[k] = math.Exp(-(d - smallest))
				sum += weights[k]
			}
			for k := range weights {
				weights[k] /= sum
			}
			rows[i] = SparseRow{Columns: expanded, Weights: weights}
		}
	})
	if err != nil {
		return nil, err
	}
	if e.K2 == 1 {
		return rows, nil
	}
	expandedRows := make([]SparseRow, n)
	err = vecmath.ForBlocks(ctx, n, 256, 0, func(start, end int) {
		accumulator := newAccumulator(n)
		for i := start; i < end; i++ {
			neighbours := ranks[i][:min(e.K2, len(ranks[i]))]
			for _, j := range neighbours {
				row := rows[j]
				for k, column := range row.Columns {
					accumulator.add(column, row.Weights[k])
				}
			}
			columns, sums := accumulator.drain()
			for k := range sums {
				sums[k] /= float64(len(neighbours))
			}
			expandedRows[i] = SparseRow{Columns: columns, Weights: sums}
		}
	})
	if err != nil {
		return nil, err
	}
	return expandedRows, nil
}

// accumulator sums sparse contributions into a dense buffer and hands back only the touched
// columns, so each row costs its own size rather than N.
type accumulator struct {
	sums    []float64
	used    []bool
	touched []int32
}

func newAccumulator(n int) *accumulator {
	return &accumulator{sums: make([]float64, n), used: make([]bool, n)}
}

func (a *accumulator) add(column int32, value float64) {
	if !a.used[column] {
		a.used[column] = true
		a.touched = append(a.touched, column)
	}
	a.sums[column] += value
}

// drain returns the touched columns in ascending order with their sums and resets the buffer.
func (a *accumulator) drain() ([]int32, []float64) {
	columns := slices.Clone(a.touched)
	slices.Sort(columns)
	sums := make([]float64, len(columns))
	for k, column := range columns {
		sums[k] = a.sums[column]
		a.sums[column] = 0
		a.used[column] = false
	}
	a.touched = a.touched[:0]
	return columns, sums
}

// Overlap is sum_k min(V[i,k], V[j,k]) for one pair of encoded points.
type Overlap struct {
	To  int32
	Sum float64
}

// OverlapIndex is an inverted index of an encoding (column -> rows with a weight there), built
// once and queried for any rows.
type OverlapIndex struct {
	encoding []SparseRow
	inverted [][]invertedEntry
}

type invertedEntry struct {
	row    int32
	weight float64
}

// NewOverlapIndex indexes encoding by column.
func NewOverlapIndex(encoding []SparseRow) *OverlapIndex {
	n := len(encoding)
	counts := make([]int, n)
	for _, row := range encoding {
		for _, column := range row.Columns {
			counts[column]++
		}
	}
	inverted := make([][]invertedEntry, n)
	for column := range inverted {
		inverted[column] = make([]invertedEntry, 0, counts[column])
	}
	for i, row := range encoding {
		for k, column := range row.Columns {
			inverted[column] = append(inverted[column], invertedEntry{row: int32(i), weight: row.Weights[k]})
		}
	}
	return &OverlapIndex{encoding: encoding, inverted: inverted}
}

// Overlaps returns, for each point i in rows, every point j whose encoding shares a column with
// i's, with sum_k min(V[i,k], V[j,k]), ascending by j. Pairs that share nothing have overlap 0
// and Jaccard distance exactly 1; they are left out, which is what keeps this sparse.
func (index *OverlapIndex) Overlaps(ctx context.Context, rows []int) ([][]Overlap, error) {
	out := make([][]Overlap, len(rows))
	err := vecmath.ForBlocks(ctx, len(rows), 64, 0, func(start, end int) {
		accumulator := newAccumulator(len(index.encoding))
		for r := start; r < end; r++ {
			row := index.encoding[rows[r]]
			for k, column := range row.Columns {
				weight := row.Weights[k]
				for _, other := range index.inverted[column] {
					accumulator.add(other.row, math.Min(weight, other.weight))
				}
			}
			columns, sums := accumulator.drain()
			overlaps := make([]Overlap, len(columns))
			for k := range columns {
				overlaps[k] = Overlap{To: columns[k], Sum: sums[k]}
			}
			out[r] = overlaps
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// JaccardFromOverlap is the reference's 1 - s/(2-s). Encoding rows sum to 1, so this is
// 1 - sum min / sum max.
func JaccardFromOverlap(s float64) float64 { return 1 - s/(2-s) }
