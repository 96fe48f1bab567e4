package torch

import (
	"image"
	"image/color"
	"math"
	"slices"
	"testing"

	"github.com/reid-project/reid/internal/testassets"
)

// toImage wraps a packed RGB crop as an image.NRGBA, the way a decoded JPEG would arrive.
func toImage(crop RGB) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, crop.Width, crop.Height))
	for y := range crop.Height {
		for x := range crop.Width {
			i := (y*crop.Width + x) * 3
			img.SetNRGBA(x, y, color.NRGBA{crop.Pix[i], crop.Pix[i+1], crop.Pix[i+2], 255})
		}
	}
	return img
}

// TestEmbed: vectors are unit length, independent of the batch they come in, and flip averaging
// is the normalised sum of the image's and its mirror's features.
func TestEmbed(t *testing.T) {
	ctx := t.Context()
	crops := testCrops(t, 6)
	images := make([]image.Image, len(crops))
	for i, crop := range crops {
		images[i] = toImage(crop)
	}
	device := openCPU(t)
	weights := testassets.Path(t, "models/reid/osnet_x0_25_msmt17.pth")
	load := func(flip bool) *Model {
		model, err := device.NewModel(ctx, ModelOptions{Arch: ArchOSNetX0_25, FlipAverage: flip, Precision: "fp32"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { model.Close() })
		if _, err := model.LoadWeights(ctx, weights); err != nil {
			t.Fatal(err)
		}
		return model
	}
	plain, flipped := load(false), load(true)
	if plain.Dim() != 512 {
		t.Fatalf("dim %d", plain.Dim())
	}
	all, err := plain.Embed(ctx, images)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range all {
		if n := math.Sqrt(float64(dot(v, v))); math.Abs(n-1) > 1e-5 {
			t.Errorf("vector %d has norm %v", i, n)
		}
		one, err := plain.Embed(ctx, images[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if c := cosine(one[0], v); c < 0.99999 {
			t.Errorf("image %d alone vs in a batch: cosine %v", i, c)
		}
	}
	// Different people give different vectors.
	if c := cosine(all[0], all[1]); c > 0.999 {
		t.Errorf("two different crops have cosine %v", c)
	}

	// Flip averaging, checked against mirrored inputs through the plain model.
	batch, err := NewBatch(images, 256, 128)
	if err != nil {
		t.Fatal(err)
	}
	mirrored := Batch{N: batch.N, Height: 256, Width: 128, Pix: make([]byte, len(batch.Pix))}
	for n := range batch.N {
		for y := range 256 {
			for x := range 128 {
				src := ((n*256+y)*128 + x) * 3
				dst := ((n*256+y)*128 + 127 - x) * 3
				copy(mirrored.Pix[dst:dst+3], batch.Pix[src:src+3])
			}
		}
	}
	raw, err := plain.Features(ctx, batch, false)
	if err != nil {
		t.Fatal(err)
	}
	rawMirror, err := plain.Features(ctx, mirrored, false)
	if err != nil {
		t.Fatal(err)
	}
	flip, err := flipped.EmbedBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i := range flip {
		want := make([]float32, len(raw[i]))
		for j := range want {
			want[j] = raw[i][j] + rawMirror[i][j]
		}
		normalise(want)
		if c := cosine(flip[i], want); c < 0.99999 {
			t.Errorf("flip-averaged vector %d: cosine %v to the expected", i, c)
		}
		if c := cosine(flip[i], all[i]); c > 0.999999 {
			t.Errorf("flip averaging changed nothing on image %d", i)
		}
	}
}

// TestOSNetX1_0: the full-width OSNet has exactly the tensor names of the x0.25 (which match the
// torchreid file) with its own widths, and embeds.
func TestOSNetX1_0(t *testing.T) {
	ctx := t.Context()
	device := openCPU(t)
	small, err := device.NewModel(ctx, ModelOptions{Arch: ArchOSNetX0_25})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	large, err := device.NewModel(ctx, ModelOptions{Arch: ArchOSNetX1_0, InputHeight: 64, InputWidth: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer large.Close()
	if got, want := large.TensorNames(), small.TensorNames(); !slices.Equal(got, want) || len(got) != 565 {
		t.Fatalf("x1.0 has %d tensors, x0.25 %d (want the same 565 names)", len(got), len(want))
	}
	weight, err := large.Tensor(ctx, "conv5.conv.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(weight) != 512*512 {
		t.Fatalf("conv5 of x1.0 has %d weights, want 512x512", len(weight))
	}
	vectors, err := large.EmbedBatch(ctx, randomBatch(2, 64, 32))
	if err != nil {
		t.Fatal(err)
	}
	if len(vectors) != 2 || len(vectors[0]) != 512 {
		t.Fatalf("got %d vectors of %d", len(vectors), len(vectors[0]))
	}
}
