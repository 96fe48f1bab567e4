package vecmath

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

func randomRows(rng *rand.Rand, n, d int) [][]float32 {
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, d)
		for k := range rows[i] {
			rows[i][k] = float32(rng.NormFloat64())
		}
	}
	return rows
}

func TestDotsMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, shape := range [][3]int{{1, 1, 1}, {3, 5, 7}, {4, 4, 64}, {5, 3, 33}, {2, 9, 2}} {
		a, b := randomRows(rng, shape[0], shape[2]), randomRows(rng, shape[1], shape[2])
		out := make([]float32, len(a)*len(b))
		Dots(a, b, out)
		for i := range a {
			for j := range b {
				var want float64
				for k := range a[i] {
					want += float64(a[i][k]) * float64(b[j][k])
				}
				if got := float64(out[i*len(b)+j]); math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Errorf("shape %v [%d,%d]: %v want %v", shape, i, j, got, want)
				}
				if got := Dot64(a[i], b[j]); math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
					t.Errorf("Dot64 shape %v [%d,%d]: %v want %v", shape, i, j, got, want)
				}
			}
		}
	}
}

func TestNormalize(t *testing.T) {
	rows := Normalize([][]float32{{3, 4}, {0, 0}, {0, -2}})
	want := [][]float32{{0.6, 0.8}, {0, 0}, {0, -1}}
	for i := range want {
		for k := range want[i] {
			if math.Abs(float64(rows[i][k]-want[i][k])) > 1e-7 {
				t.Errorf("row %d: %v want %v", i, rows[i], want[i])
			}
		}
	}
}

func TestForBlocksCoversOnceAndStops(t *testing.T) {
	var seen [103]atomic.Int32
	if err := ForBlocks(context.Background(), 103, 10, 3, func(start, end int) {
		for i := start; i < end; i++ {
			seen[i].Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("item %d visited %d times", i, seen[i].Load())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	err := ForBlocks(ctx, 1000, 1, 2, func(int, int) {
		if calls.Add(1) == 5 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || calls.Load() > 10 {
		t.Errorf("after cancel: err %v, %d calls", err, calls.Load())
	}
}

// BenchmarkDots: one block of 64 query rows against a gallery larger than any cache.
func BenchmarkDots(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x, y := randomRows(rng, 64, 512), randomRows(rng, 16384, 512)
	out := make([]float32, len(x)*len(y))
	for b.Loop() {
		Dots(x, y, out)
	}
	b.ReportMetric(float64(len(x)*len(y)*512)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
}
