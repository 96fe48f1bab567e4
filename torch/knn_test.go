package torch

import (
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/reid-project/reid/cluster"
	"github.com/reid-project/reid/internal/vecmath"
)

// TestNearestNeighbors: the device's neighbours, re-scored as clustering re-scores them, are the
// exact search's, across two row blocks (the shim bounds a block's similarities at 2^26, so
// 9,000 rows take two); bad input is an error.
func TestNearestNeighbors(t *testing.T) {
	device := openCPU(t)
	random := rand.New(rand.NewPCG(7, 8))
	const n, dim, k = 9000, 16, 30
	centres := make([][]float32, 60)
	for c := range centres {
		centres[c] = make([]float32, dim)
		for j := range centres[c] {
			centres[c][j] = float32(random.NormFloat64())
		}
	}
	features := make([][]float32, n)
	for i := range features {
		features[i] = make([]float32, dim)
		for j := range features[i] {
			features[i][j] = centres[i%len(centres)][j] + 0.6*float32(random.NormFloat64())
		}
	}
	unit := vecmath.Normalize(features)
	want, err := cluster.NearestNeighbors(t.Context(), unit, k)
	if err != nil {
		t.Fatal(err)
	}
	candidates, err := device.NearestNeighbors(t.Context(), unit, k+8)
	if err != nil {
		t.Fatal(err)
	}
	if len(candidates) != n {
		t.Fatalf("%d lists for %d rows", len(candidates), n)
	}
	for i := range unit {
		if candidates[i][0] != int32(i) {
			t.Errorf("row %d: first neighbour %d, want itself", i, candidates[i][0])
		}
		if got := cluster.Refine(unit, i, candidates[i], k); !slices.Equal(got, want[i]) {
			t.Fatalf("row %d: %v, want %v", i, got, want[i])
		}
	}

	for _, bad := range []struct {
		name     string
		features [][]float32
		k        int
	}{
		{"k above n", unit[:5], 6},
		{"k zero", unit[:5], 0},
		{"ragged rows", [][]float32{{1, 0}, {1}}, 1},
	} {
		if _, err := device.NearestNeighbors(t.Context(), bad.features, bad.k); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}

// BenchmarkNearestNeighbors: clustering's k-NN step (k1 30 plus the margin clustering asks for)
// over REID_KNN_ROWS (default 12,936, Market-1501's training set) random unit vectors of
// REID_KNN_DIM (default 512, OSNet) values, on the device and, side by side on the same input
// unless REID_KNN_GO=0, with the exact search in Go that clustering used before.
func BenchmarkNearestNeighbors(b *testing.B) {
	rows, dim := envInt(b, "REID_KNN_ROWS", 12936), envInt(b, "REID_KNN_DIM", 512)
	random := rand.New(rand.NewPCG(1, 2))
	features := make([][]float32, rows)
	for i := range features {
		features[i] = make([]float32, dim)
		for j := range features[i] {
			features[i][j] = float32(random.NormFloat64())
		}
	}
	unit := vecmath.Normalize(features)
	device := benchDevice(b)
	b.Run(device.Name(), func(b *testing.B) {
		for b.Loop() {
			if _, err := device.NearestNeighbors(b.Context(), unit, 38); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/search")
	})
	if os.Getenv("REID_KNN_GO") == "0" {
		return
	}
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			if _, err := cluster.NearestNeighbors(b.Context(), unit, 38); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/search")
	})
}
