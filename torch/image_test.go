package torch

import (
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
)

// TestToRGBYCbCr checks the YCbCr fast path against the generic colour conversion for every
// chroma subsampling a JPEG can have, on whole images and on sub-images that start off the origin.
func TestToRGBYCbCr(t *testing.T) {
	random := rand.New(rand.NewPCG(5, 6))
	ratios := map[string]image.YCbCrSubsampleRatio{
		"4:4:4": image.YCbCrSubsampleRatio444, "4:2:2": image.YCbCrSubsampleRatio422,
		"4:2:0": image.YCbCrSubsampleRatio420, "4:4:0": image.YCbCrSubsampleRatio440,
		"4:1:1": image.YCbCrSubsampleRatio411, "4:1:0": image.YCbCrSubsampleRatio410,
	}
	for name, ratio := range ratios {
		full := image.NewYCbCr(image.Rect(0, 0, 37, 21), ratio)
		for _, plane := range [][]byte{full.Y, full.Cb, full.Cr} {
			for i := range plane {
				plane[i] = byte(random.IntN(256))
			}
		}
		for _, picture := range []*image.YCbCr{full, full.SubImage(image.Rect(3, 5, 30, 20)).(*image.YCbCr)} {
			checkToRGB(t, name, picture)
		}
	}
}

// TestToRGBFourChannels checks the RGBA and NRGBA paths (jpegturbo's decoded crops are RGBA) on
// whole images and sub-images.
func TestToRGBFourChannels(t *testing.T) {
	random := rand.New(rand.NewPCG(7, 8))
	bounds := image.Rect(0, 0, 37, 21)
	rgba, nrgba := image.NewRGBA(bounds), image.NewNRGBA(bounds)
	for i := range rgba.Pix {
		value := byte(random.IntN(256))
		if i%4 == 3 {
			value = 255
		}
		rgba.Pix[i], nrgba.Pix[i] = value, value
	}
	pictures := map[string]image.Image{
		"RGBA": rgba, "RGBA sub-image": rgba.SubImage(image.Rect(3, 5, 30, 20)),
		"NRGBA": nrgba, "NRGBA sub-image": nrgba.SubImage(image.Rect(3, 5, 30, 20)),
	}
	for name, picture := range pictures {
		checkToRGB(t, name, picture)
	}
}

// checkToRGB compares ToRGB with the generic colour conversion, pixel by pixel.
func checkToRGB(t *testing.T, name string, picture image.Image) {
	t.Helper()
	got := ToRGB(picture)
	bounds := picture.Bounds()
	if got.Width != bounds.Dx() || got.Height != bounds.Dy() {
		t.Fatalf("%s: %dx%d for %v", name, got.Width, got.Height, bounds)
	}
	for y := range bounds.Dy() {
		for x := range bounds.Dx() {
			want := color.RGBAModel.Convert(picture.At(bounds.Min.X+x, bounds.Min.Y+y)).(color.RGBA)
			i := (y*got.Width + x) * 3
			if got.Pix[i] != want.R || got.Pix[i+1] != want.G || got.Pix[i+2] != want.B {
				t.Fatalf("%s %v: pixel (%d,%d) = %v, want %v", name, bounds, x, y, got.Pix[i:i+3], want)
			}
		}
	}
}
