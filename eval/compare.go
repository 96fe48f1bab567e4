package eval

import (
	"errors"
	"math/rand/v2"
	"slices"
)

// Difference is how much better one model ranks than another on the same queries: the mean of
// the per-query AP differences (the mAP difference), with a 95% interval from a paired bootstrap
// over the queries. An interval far across zero says the queries are too few to tell the models
// apart.
type Difference struct {
	MAP  float64 `json:"mAP"`
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// bootstrapRounds is how many resamplings the interval is drawn from: enough for the 2.5th and
// 97.5th percentiles to settle to about a hundredth of an AP.
const bootstrapRounds = 2000

// CompareQueries returns after's difference from before, over the queries valid in both (the same
// data set under the same protocol makes them the same queries). seed fixes the resampling.
func CompareQueries(before, after []QueryResult, seed uint64) (Difference, error) {
	if len(before) != len(after) {
		return Difference{}, errors.New("eval: compare: the two runs scored different queries")
	}
	var deltas []float64
	for i := range before {
		if before[i].Valid && after[i].Valid {
			deltas = append(deltas, after[i].AP-before[i].AP)
		}
	}
	if len(deltas) == 0 {
		return Difference{}, errors.New("eval: compare: no query is valid in both runs")
	}
	mean := func(sample func(int) float64) float64 {
		sum := 0.0
		for i := range deltas {
			sum += sample(i)
		}
		return sum / float64(len(deltas))
	}
	difference := Difference{MAP: mean(func(i int) float64 { return deltas[i] })}
	random := rand.New(rand.NewPCG(seed, 0x5eed))
	means := make([]float64, bootstrapRounds)
	for round := range means {
		means[round] = mean(func(int) float64 { return deltas[random.IntN(len(deltas))] })
	}
	slices.Sort(means)
	difference.Low, difference.High = means[bootstrapRounds*25/1000], means[bootstrapRounds*975/1000-1]
	return difference, nil
}
