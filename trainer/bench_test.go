package trainer

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/reid-project/reid/internal/benchreport"
	"github.com/reid-project/reid/torch"
)

// BenchmarkTrainingBatch times the input side of one training step: 256 crops at 256x128, decoded
// (cached after first use, as in every epoch after the first) and augmented. On a GPU a ResNet-50
// step at batch 256 takes about 50 ms, so the input side must keep well under that or the card
// waits for it.
func BenchmarkTrainingBatch(b *testing.B) {
	const crops, batchSize, height, width = 128, 256, 256, 128
	rng := rand.New(rand.NewPCG(1, 2))
	examples := make([]Example, crops)
	for i := range examples {
		picture := image.NewRGBA(image.Rect(0, 0, width, height))
		for y := range height {
			for x := range width {
				picture.SetRGBA(x, y, color.RGBA{uint8(rng.IntN(256)), uint8(x + y), uint8(i), 255})
			}
		}
		var encoded bytes.Buffer
		if err := jpeg.Encode(&encoded, picture, &jpeg.Options{Quality: 90}); err != nil {
			b.Fatal(err)
		}
		examples[i] = Example{ID: fmt.Sprint(i), Camera: "cam", JPEG: encoded.Bytes()}
	}
	augmentation := DefaultAugmentation()
	r := &run{examples: examples, options: Options{Augmentation: &augmentation}, height: height, width: width,
		cache: make([]torch.RGB, crops)}
	indices := make([]int, batchSize)
	for i := range indices {
		indices[i] = rng.IntN(crops)
	}
	if _, err := r.trainingBatch(b.Context(), rng, indices); err != nil { // fills the cache
		b.Fatal(err)
	}
	var durations []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := r.trainingBatch(b.Context(), rng, indices); err != nil {
			b.Fatal(err)
		}
		durations = append(durations, time.Since(start))
	}
	benchreport.Images(b, durations, batchSize)
}
