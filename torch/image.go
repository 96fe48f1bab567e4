package torch

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// RGB is one packed 8-bit RGB image, rows top to bottom, 3 bytes per pixel. It is how crops
// decoded elsewhere (a gocv Mat converted BGR to RGB and copied out) enter this package.
type RGB struct {
	Width, Height int
	Pix           []byte // Height*Width*3
}

func (r RGB) validate() error {
	if r.Width <= 0 || r.Height <= 0 {
		return fmt.Errorf("torch: empty image %dx%d", r.Width, r.Height)
	}
	if len(r.Pix) != r.Width*r.Height*3 {
		return fmt.Errorf("torch: %dx%d RGB image has %d bytes, want %d", r.Width, r.Height, len(r.Pix), r.Width*r.Height*3)
	}
	return nil
}

// Batch is N images of the same size, packed RGB uint8 in NHWC order: the model input before
// normalisation, which the shim applies on the device.
type Batch struct {
	N, Height, Width int
	Pix              []byte // N*Height*Width*3
}

func (b Batch) validate() error {
	if b.N <= 0 || b.Height <= 0 || b.Width <= 0 {
		return fmt.Errorf("torch: empty batch %dx%dx%d", b.N, b.Height, b.Width)
	}
	if len(b.Pix) != b.N*b.Height*b.Width*3 {
		return fmt.Errorf("torch: batch %dx%dx%d has %d bytes, want %d", b.N, b.Height, b.Width, len(b.Pix), b.N*b.Height*b.Width*3)
	}
	return nil
}

// NewBatch converts and resizes images (ResizeRGB) into one batch of height x width.
func NewBatch(images []image.Image, height, width int) (Batch, error) {
	rgbs := make([]RGB, len(images))
	for i, img := range images {
		if img == nil {
			return Batch{}, fmt.Errorf("torch: image %d is nil", i)
		}
	}
	// Converting a decoded JPEG costs about half as much as decoding it, and the device's worker
	// waits for the whole batch, so the images are converted on all CPUs.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(images)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(images); i = int(next.Add(1) - 1) {
				rgbs[i] = ToRGB(images[i])
			}
		}()
	}
	wg.Wait()
	return NewBatchRGB(rgbs, height, width)
}

// NewBatchRGB resizes packed RGB images (ResizeRGB) into one batch of height x width.
func NewBatchRGB(images []RGB, height, width int) (Batch, error) {
	if len(images) == 0 {
		return Batch{}, errors.New("torch: no images")
	}
	if height <= 0 || width <= 0 {
		return Batch{}, fmt.Errorf("torch: bad target size %dx%d", width, height)
	}
	frame := height * width * 3
	batch := Batch{N: len(images), Height: height, Width: width, Pix: make([]byte, len(images)*frame)}
	for i, img := range images {
		if err := img.validate(); err != nil {
			return Batch{}, fmt.Errorf("image %d: %w", i, err)
		}
		resizeInto(batch.Pix[i*frame:(i+1)*frame], img, height, width)
	}
	return batch, nil
}

// ResizeRGB resizes with bilinear interpolation and half-pixel centres: when the image grows, the
// sampling of OpenCV's INTER_LINEAR; when it shrinks on either side, PIL's antialiased bilinear
// resize (a triangle filter widened by the reduction), which torchreid's training transforms use
// and which does not alias as plain sampling does.
func ResizeRGB(src RGB, height, width int) RGB {
	out := RGB{Width: width, Height: height, Pix: make([]byte, width*height*3)}
	resizeInto(out.Pix, src, height, width)
	return out
}

// axisTaps gives, for each output coordinate, the two source indices and the weight of the second.
func axisTaps(outSize, inSize int) (lo, hi []int, frac []float32) {
	lo, hi, frac = make([]int, outSize), make([]int, outSize), make([]float32, outSize)
	scale := float64(inSize) / float64(outSize)
	for i := range outSize {
		pos := (float64(i)+0.5)*scale - 0.5
		if pos < 0 {
			pos = 0
		}
		base := int(pos)
		if base > inSize-1 {
			base = inSize - 1
		}
		next := base + 1
		if next > inSize-1 {
			next = inSize - 1
		}
		lo[i], hi[i], frac[i] = base, next, float32(pos-float64(base))
	}
	return lo, hi, frac
}

func resizeInto(dst []byte, src RGB, height, width int) {
	if src.Width == width && src.Height == height {
		copy(dst, src.Pix)
		return
	}
	if src.Width > width || src.Height > height {
		resizeAntialiased(dst, src, height, width)
		return
	}
	x0, x1, fx := axisTaps(width, src.Width)
	y0, y1, fy := axisTaps(height, src.Height)
	stride := src.Width * 3
	for y := range height {
		rowA := src.Pix[y0[y]*stride : y0[y]*stride+stride]
		rowB := src.Pix[y1[y]*stride : y1[y]*stride+stride]
		wy := fy[y]
		out := dst[y*width*3 : (y+1)*width*3]
		for x := range width {
			a, b, wx := x0[x]*3, x1[x]*3, fx[x]
			for c := range 3 {
				top := float32(rowA[a+c]) + (float32(rowA[b+c])-float32(rowA[a+c]))*wx
				bottom := float32(rowB[a+c]) + (float32(rowB[b+c])-float32(rowB[a+c]))*wx
				v := top + (bottom-top)*wy + 0.5
				if v >= 255 {
					v = 255
				}
				out[x*3+c] = byte(v)
			}
		}
	}
}

// filterTaps are one axis's weights for PIL's antialiased bilinear resample: output i is the sum
// over k < count[i] of weight[i][k] x input[first[i]+k].
type filterTaps struct {
	first, count []int
	weight       [][]float32
}

// triangleTaps computes them as PIL's ImagingResample does for its BILINEAR filter: a triangle of
// half-width max(scale, 1) input pixels centred on each output pixel's centre, its weights
// normalised over the input pixels it covers.
func triangleTaps(outSize, inSize int) filterTaps {
	scale := float64(inSize) / float64(outSize)
	support, inverse := max(scale, 1), 1/max(scale, 1)
	taps := filterTaps{first: make([]int, outSize), count: make([]int, outSize), weight: make([][]float32, outSize)}
	for i := range outSize {
		centre := (float64(i) + 0.5) * scale
		first := max(int(centre-support+0.5), 0)
		last := min(int(centre+support+0.5), inSize)
		weights := make([]float64, last-first)
		total := 0.0
		for k := range weights {
			distance := math.Abs((float64(first+k) - centre + 0.5) * inverse)
			if distance < 1 {
				weights[k] = 1 - distance
			}
			total += weights[k]
		}
		taps.first[i], taps.count[i] = first, len(weights)
		taps.weight[i] = make([]float32, len(weights))
		for k, w := range weights {
			taps.weight[i][k] = float32(w / total)
		}
	}
	return taps
}

// resizeAntialiased is PIL's two-pass resample: rows first into 8-bit pixels, then columns.
func resizeAntialiased(dst []byte, src RGB, height, width int) {
	horizontal, vertical := triangleTaps(width, src.Width), triangleTaps(height, src.Height)
	rows := make([]byte, src.Height*width*3)
	for y := range src.Height {
		in := src.Pix[y*src.Width*3 : (y+1)*src.Width*3]
		out := rows[y*width*3 : (y+1)*width*3]
		for x := range width {
			first, weights := horizontal.first[x], horizontal.weight[x]
			for c := range 3 {
				sum := float32(0.5)
				for k, w := range weights {
					sum += w * float32(in[(first+k)*3+c])
				}
				out[x*3+c] = clampByte(sum)
			}
		}
	}
	stride := width * 3
	for y := range height {
		first, weights := vertical.first[y], vertical.weight[y]
		out := dst[y*stride : (y+1)*stride]
		for i := range stride {
			sum := float32(0.5)
			for k, w := range weights {
				sum += w * float32(rows[(first+k)*stride+i])
			}
			out[i] = clampByte(sum)
		}
	}
}

func clampByte(v float32) byte {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return byte(v)
}

// ToRGB copies any image into packed RGB; alpha is dropped.
func ToRGB(img image.Image) RGB {
	bounds := img.Bounds()
	w, h := bounds.Dx(), bounds.Dy()
	out := RGB{Width: w, Height: h, Pix: make([]byte, w*h*3)}
	switch src := img.(type) {
	case *image.RGBA:
		for y := range h {
			packRGBA(out.Pix[y*w*3:(y+1)*w*3], src.Pix[src.PixOffset(bounds.Min.X, bounds.Min.Y+y):])
		}
	case *image.NRGBA:
		for y := range h {
			packRGBA(out.Pix[y*w*3:(y+1)*w*3], src.Pix[src.PixOffset(bounds.Min.X, bounds.Min.Y+y):])
		}
	case *image.YCbCr:
		// Offsets are worked out per row and per column once, not per pixel: JPEG crops arrive
		// as YCbCr, and the per-pixel YOffset/COffset made this conversion cost almost as much as
		// decoding the JPEG.
		chromaColumn := make([]int, w)
		for x := range w {
			chromaColumn[x] = src.COffset(bounds.Min.X+x, bounds.Min.Y) - src.COffset(bounds.Min.X, bounds.Min.Y)
		}
		for y := range h {
			luma := src.Y[src.YOffset(bounds.Min.X, bounds.Min.Y+y):]
			chromaRow := src.COffset(bounds.Min.X, bounds.Min.Y+y)
			cb, cr := src.Cb[chromaRow:], src.Cr[chromaRow:]
			row := out.Pix[y*w*3 : (y+1)*w*3]
			for x := range w {
				row[3*x], row[3*x+1], row[3*x+2] = color.YCbCrToRGB(luma[x], cb[chromaColumn[x]], cr[chromaColumn[x]])
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := color.RGBAModel.Convert(img.At(bounds.Min.X+x, bounds.Min.Y+y)).(color.RGBA)
				i := (y*w + x) * 3
				out.Pix[i], out.Pix[i+1], out.Pix[i+2] = c.R, c.G, c.B
			}
		}
	}
	return out
}

// packRGBA drops the alpha byte of each pixel of an RGBA row (only the colour channels reach the
// network). JPEG crops arrive as RGBA from jpegturbo, so this is on the embedder's path.
func packRGBA(dst, src []byte) {
	src = src[:len(dst)/3*4]
	for i, j := 0, 0; j+3 < len(src); i, j = i+3, j+4 {
		dst[i], dst[i+1], dst[i+2] = src[j], src[j+1], src[j+2]
	}
}
