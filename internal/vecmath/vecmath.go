// Package vecmath holds the dense float32 kernels that the embedded index, evaluation and
// clustering share: L2 normalisation, dot products and a parallel loop over row blocks.
//
// Single dot products (Dot, the index's search kernel) use AVX2 assembly where the CPU has it. The
// matrix products of evaluation and clustering (Dots) are portable Go, register-blocked so that
// each loaded value feeds several multiply-adds, so that their results are the same on every CPU.
// No BLAS and no cgo: `reid eval` and `reid cluster` run anywhere.
package vecmath

import (
	"context"
	"math"
	"runtime"
	"sync"
)

// Normalize returns L2-normalised copies of rows. An all-zero row stays zero.
func Normalize(rows [][]float32) [][]float32 {
	if len(rows) == 0 {
		return nil
	}
	out := make([][]float32, len(rows))
	storage := make([]float32, 0, len(rows)*len(rows[0]))
	for i, row := range rows {
		var sum float64
		for _, value := range row {
			sum += float64(value) * float64(value)
		}
		scale := float32(0)
		if sum > 0 {
			scale = float32(1 / math.Sqrt(sum))
		}
		start := len(storage)
		for _, value := range row {
			storage = append(storage, value*scale)
		}
		out[i] = storage[start:len(storage):len(storage)]
	}
	return out
}

// dotGeneric is the portable float32 inner product: four independent accumulators let the CPU
// overlap the multiply-adds where Go does not vectorise.
func dotGeneric(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	k := 0
	for ; k+4 <= len(x); k += 4 {
		s0 += x[k] * y[k]
		s1 += x[k+1] * y[k+1]
		s2 += x[k+2] * y[k+2]
		s3 += x[k+3] * y[k+3]
	}
	for ; k < len(x); k++ {
		s0 += x[k] * y[k]
	}
	return (s0 + s1) + (s2 + s3)
}

// Dot64 is the inner product accumulated in float64. Products of float32 values are exact in
// float64, so this is the reference value to within one float64 rounding per term; callers use
// it where a near-tie must be decided the same way a float64 reference decides it.
func Dot64(x, y []float32) float64 {
	y = y[:len(x)]
	var s0, s1 float64
	k := 0
	for ; k+2 <= len(x); k += 2 {
		s0 += float64(x[k]) * float64(y[k])
		s1 += float64(x[k+1]) * float64(y[k+1])
	}
	if k < len(x) {
		s0 += float64(x[k]) * float64(y[k])
	}
	return s0 + s1
}

// Dots fills out[i*len(b)+j] with the inner product of a[i] and b[j]. All vectors must have the
// same length. It uses only portable Go arithmetic, so evaluation and clustering give the same
// numbers on every CPU.
// b is visited in chunks small enough to stay in cache while every row of a passes over them,
// so a large b is read from memory once per call rather than once per pair of a rows.
func Dots(a, b [][]float32, out []float32) {
	width := len(b)
	chunk := 64
	if len(b) > 0 && len(b[0]) > 0 {
		// About 128 KiB of b per chunk: well inside a core's L2.
		chunk = max(8, (128<<10)/(4*len(b[0])))
	}
	for first := 0; first < width; first += chunk {
		last := min(first+chunk, width)
		i := 0
		for ; i+2 <= len(a); i += 2 {
			a0, a1 := a[i], a[i+1]
			row0, row1 := out[i*width:(i+1)*width], out[(i+1)*width:(i+2)*width]
			j := first
			for ; j+2 <= last; j += 2 {
				row0[j], row0[j+1], row1[j], row1[j+1] = dot2x2(a0, a1, b[j], b[j+1])
			}
			for ; j < last; j++ {
				row0[j] = dotGeneric(a0, b[j])
				row1[j] = dotGeneric(a1, b[j])
			}
		}
		for ; i < len(a); i++ {
			for j := first; j < last; j++ {
				out[i*width+j] = dotGeneric(a[i], b[j])
			}
		}
	}
}

// dot2x2 computes the four products of two rows with two rows, loading each value once.
func dot2x2(a0, a1, b0, b1 []float32) (float32, float32, float32, float32) {
	n := len(a0)
	a1, b0, b1 = a1[:n], b0[:n], b1[:n]
	var s00, s01, s10, s11 float32
	var t00, t01, t10, t11 float32
	k := 0
	for ; k+2 <= n; k += 2 {
		x0, x1, y0, y1 := a0[k], a1[k], b0[k], b1[k]
		s00 += x0 * y0
		s01 += x0 * y1
		s10 += x1 * y0
		s11 += x1 * y1
		x0, x1, y0, y1 = a0[k+1], a1[k+1], b0[k+1], b1[k+1]
		t00 += x0 * y0
		t01 += x0 * y1
		t10 += x1 * y0
		t11 += x1 * y1
	}
	if k < n {
		x0, x1, y0, y1 := a0[k], a1[k], b0[k], b1[k]
		s00 += x0 * y0
		s01 += x0 * y1
		s10 += x1 * y0
		s11 += x1 * y1
	}
	return s00 + t00, s01 + t01, s10 + t10, s11 + t11
}

// Workers is the number of goroutines ForBlocks uses when asked for 0.
func Workers() int { return runtime.GOMAXPROCS(0) }

// ForBlocks calls body(start, end) for consecutive blocks [start, end) of [0, n) of at most block
// items, on up to workers goroutines (0 = GOMAXPROCS). It returns when all calls have returned, or
// early with ctx's error once ctx is done (blocks already running finish first).
func ForBlocks(ctx context.Context, n, block, workers int, body func(start, end int)) error {
	if workers <= 0 {
		workers = Workers()
	}
	if block <= 0 {
		block = 1
	}
	blocks := (n + block - 1) / block
	workers = min(workers, blocks)
	next := make(chan int)
	var group sync.WaitGroup
	for range workers {
		group.Go(func() {
			for start := range next {
				body(start, min(start+block, n))
			}
		})
	}
	var err error
	for start := 0; start < n; start += block {
		if err = ctx.Err(); err != nil {
			break
		}
		select {
		case next <- start:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	close(next)
	group.Wait()
	return err
}
