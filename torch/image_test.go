package torch

import (
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
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

// TestResizeShrinksLikePIL: images larger than the input size on either side are resized as
// PIL's antialiased bilinear resize does (torchreid's training transforms), to within a grey
// level, and fine detail averages out instead of aliasing.
func TestResizeShrinksLikePIL(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	dir := t.TempDir()
	for _, size := range []struct{ width, height int }{
		{370, 740},  // a person filmed large: both sides shrink
		{1000, 200}, // wider, but shorter than the input: one side shrinks, one grows
		{129, 257},  // barely larger
		{2000, 3000},
	} {
		src := RGB{Width: size.width, Height: size.height, Pix: make([]byte, size.width*size.height*3)}
		for i := range src.Pix {
			// Stripes with noise: the detail bilinear sampling would alias.
			src.Pix[i] = byte(int((i/3)%3*100) + rng.IntN(50))
		}
		input, output := filepath.Join(dir, "in.raw"), filepath.Join(dir, "out.raw")
		if err := os.WriteFile(input, src.Pix, 0o644); err != nil {
			t.Fatal(err)
		}
		pythonReference(t, "resize", "--input", input, "--width", strconv.Itoa(size.width), "--height", strconv.Itoa(size.height),
			"--out-width", "128", "--out-height", "256", "--out", output)
		want, err := os.ReadFile(output)
		if err != nil {
			t.Fatal(err)
		}
		got := ResizeRGB(src, 256, 128)
		worst := 0
		for i := range want {
			worst = max(worst, int(got.Pix[i])-int(want[i]), int(want[i])-int(got.Pix[i]))
		}
		if worst > 1 {
			t.Errorf("%dx%d: differs from PIL by up to %d grey levels", size.width, size.height, worst)
		}
	}
}
