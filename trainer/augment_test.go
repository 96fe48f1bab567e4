package trainer

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/reid-project/reid/torch"
)

func gradient(width, height int) torch.RGB {
	pix := make([]byte, width*height*3)
	for y := range height {
		for x := range width {
			pixel := pix[(y*width+x)*3:]
			pixel[0], pixel[1], pixel[2] = byte(x*7), byte(y*5), byte(x+y+1)
		}
	}
	return torch.RGB{Width: width, Height: height, Pix: pix}
}

func TestAugmentation(t *testing.T) {
	const width, height = 16, 32
	src := gradient(width, height)
	fill := [3]byte{124, 116, 104}
	at := func(img []byte, x, y int) []byte { return img[(y*width+x)*3 : (y*width+x)*3+3] }
	tests := []struct {
		name  string
		a     Augmentation
		check func(t *testing.T, out []byte)
	}{
		{"identity", Augmentation{}, func(t *testing.T, out []byte) {
			if !bytes.Equal(out, src.Pix) {
				t.Error("changed the image")
			}
		}},
		{"flip", Augmentation{Flip: 1}, func(t *testing.T, out []byte) {
			for y := range height {
				for x := range width {
					if !bytes.Equal(at(out, x, y), at(src.Pix, width-1-x, y)) {
						t.Fatalf("(%d,%d) is not the mirror", x, y)
					}
				}
			}
		}},
		{"shift", Augmentation{Pad: 4}, func(t *testing.T, out []byte) {
			// Some shift in [-4, 4]^2: find it from a pixel that came through, then check all.
			for dy := -4; dy <= 4; dy++ {
				for dx := -4; dx <= 4; dx++ {
					match := true
					for y := 0; y < height && match; y++ {
						for x := 0; x < width && match; x++ {
							sx, sy := x+dx, y+dy
							want := []byte{0, 0, 0}
							if sx >= 0 && sx < width && sy >= 0 && sy < height {
								want = at(src.Pix, sx, sy)
							}
							match = bytes.Equal(at(out, x, y), want)
						}
					}
					if match {
						return
					}
				}
			}
			t.Error("output is no shift of the input by at most 4 pixels with zero fill")
		}},
		{"erasing", Augmentation{Erasing: 1}, func(t *testing.T, out []byte) {
			erased := 0
			for i := 0; i < len(out); i += 3 {
				if bytes.Equal(out[i:i+3], fill[:]) {
					erased++
				} else if !bytes.Equal(out[i:i+3], src.Pix[i:i+3]) {
					t.Fatalf("pixel %d neither kept nor erased", i/3)
				}
			}
			if share := float64(erased) / (width * height); share < 0.015 || share > 0.45 {
				t.Errorf("erased %.3f of the image, want 0.02-0.4", share)
			}
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			for range 20 {
				out := make([]byte, len(src.Pix))
				test.a.apply(rng, out, src, fill)
				test.check(t, out)
			}
		})
	}
}

// TestAugmentationMatchesDefinition compares apply with the transform written pixel by pixel
// (pad, random crop, mirror, erase), for many draws of the same generator.
func TestAugmentationMatchesDefinition(t *testing.T) {
	const width, height = 24, 40
	src := gradient(width, height)
	fill := [3]byte{124, 116, 104}
	definition := func(a Augmentation, rng *rand.Rand) []byte {
		out := make([]byte, len(src.Pix))
		flip := rng.Float64() < a.Flip
		shiftX, shiftY := 0, 0
		if a.Pad > 0 {
			shiftX = rng.IntN(2*a.Pad+1) - a.Pad
			shiftY = rng.IntN(2*a.Pad+1) - a.Pad
		}
		for y := range height {
			for x := range width {
				sourceX, sourceY := x+shiftX, y+shiftY
				if flip {
					sourceX = width - 1 - (x + shiftX)
				}
				if sourceX >= 0 && sourceX < width && sourceY >= 0 && sourceY < height && x+shiftX >= 0 && x+shiftX < width {
					copy(out[(y*width+x)*3:(y*width+x)*3+3], src.Pix[(sourceY*width+sourceX)*3:])
				}
			}
		}
		if rng.Float64() >= a.Erasing {
			return out
		}
		area := float64(width * height)
		for range 100 {
			target := area * (0.02 + rng.Float64()*0.38)
			aspect := math.Exp(math.Log(0.3) + rng.Float64()*(math.Log(1/0.3)-math.Log(0.3)))
			h, w := int(math.Round(math.Sqrt(target*aspect))), int(math.Round(math.Sqrt(target/aspect)))
			if w <= 0 || h <= 0 || w >= width || h >= height {
				continue
			}
			x0, y0 := rng.IntN(width-w+1), rng.IntN(height-h+1)
			for y := y0; y < y0+h; y++ {
				for x := x0; x < x0+w; x++ {
					copy(out[(y*width+x)*3:], fill[:])
				}
			}
			break
		}
		return out
	}
	for _, a := range []Augmentation{DefaultAugmentation(), {Flip: 1, Pad: 30}, {Pad: 3, Erasing: 1}} {
		for seed := range uint64(300) {
			got := make([]byte, len(src.Pix))
			a.apply(rand.New(rand.NewPCG(seed, 7)), got, src, fill)
			if want := definition(a, rand.New(rand.NewPCG(seed, 7))); !bytes.Equal(got, want) {
				t.Fatalf("%+v, seed %d: apply differs from the definition", a, seed)
			}
		}
	}
}
