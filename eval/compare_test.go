package eval

import (
	"math"
	"testing"
)

func TestCompareQueries(t *testing.T) {
	results := func(aps ...float64) []QueryResult {
		out := make([]QueryResult, len(aps))
		for i, ap := range aps {
			out[i] = QueryResult{Valid: ap >= 0, AP: ap}
		}
		return out
	}
	tests := []struct {
		name          string
		before, after []QueryResult
		mean          float64
		// narrow: the interval is the mean itself (every query moved alike).
		narrow bool
	}{
		{"unchanged", results(0.5, 0.7, 0.2), results(0.5, 0.7, 0.2), 0, true},
		{"every query better by 0.1", results(0.5, 0.7, 0.2), results(0.6, 0.8, 0.3), 0.1, true},
		{"mixed", results(0.5, 0.9, 0.2, 0.4, 0.8, 0.1), results(0.9, 0.5, 0.3, 0.4, 0.9, 0.3), 0.4 / 6, false},
		{"a query valid in one run only is left out", results(0.5, -1), results(0.7, 0.9), 0.2, true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			difference, err := CompareQueries(test.before, test.after, 1)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(difference.MAP-test.mean) > 1e-9 || difference.Low > difference.MAP+1e-9 || difference.High < difference.MAP-1e-9 {
				t.Errorf("difference %+v, want mean %g inside [low, high]", difference, test.mean)
			}
			if test.narrow != (difference.High-difference.Low < 1e-9) {
				t.Errorf("interval %g..%g: narrow %v, want %v", difference.Low, difference.High, !test.narrow, test.narrow)
			}
		})
	}
	if _, err := CompareQueries(results(0.5), results(0.5, 0.6), 1); err == nil {
		t.Error("runs of different queries compared")
	}
}
