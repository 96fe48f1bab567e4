//go:build nogocv

package torch

import (
	"math/rand/v2"
	"testing"
)

// testCrops synthesises n crops of varied sizes where OpenCV is not available (the GPU check):
// the comparisons that use them need realistic pixel statistics, not real people.
func testCrops(t testing.TB, n int) []RGB {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	crops := make([]RGB, n)
	for i := range crops {
		height, width := 120+rng.IntN(200), 50+rng.IntN(80)
		batch := synthBatch(rng, []int64{int64(i)}, height, width)
		crops[i] = RGB{Width: width, Height: height, Pix: batch.Pix}
	}
	return crops
}
