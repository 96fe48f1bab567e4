package synth

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// raster is a BGR image (OpenCV's channel order) held in Go memory, so that painting and
// compositing are plain loops and no Mat outlives the call that made it.
type raster struct {
	Width, Height int
	Pix           []uint8 // row-major, 3 bytes per pixel, B G R
}

func newRaster(width, height int) raster {
	return raster{Width: width, Height: height, Pix: make([]uint8, width*height*3)}
}

// rasterFromMat copies an 8-bit 3-channel Mat.
func rasterFromMat(mat gocv.Mat) (raster, error) {
	if mat.Empty() || mat.Type() != gocv.MatTypeCV8UC3 {
		return raster{}, fmt.Errorf("want a non-empty 8-bit BGR image, got type %v", mat.Type())
	}
	pix := mat.ToBytes()
	return raster{Width: mat.Cols(), Height: mat.Rows(), Pix: pix}, nil
}

// mat makes a Mat holding a copy of the raster; the caller closes it.
func (r raster) mat() (gocv.Mat, error) {
	return gocv.NewMatFromBytes(r.Height, r.Width, gocv.MatTypeCV8UC3, r.Pix)
}

func (r raster) clone() raster {
	return raster{Width: r.Width, Height: r.Height, Pix: append([]uint8(nil), r.Pix...)}
}

// sub copies the part of r inside rect (clipped to r).
func (r raster) sub(rect image.Rectangle) raster {
	rect = rect.Intersect(image.Rect(0, 0, r.Width, r.Height))
	out := newRaster(rect.Dx(), rect.Dy())
	for y := 0; y < rect.Dy(); y++ {
		src := ((rect.Min.Y+y)*r.Width + rect.Min.X) * 3
		copy(out.Pix[y*out.Width*3:(y+1)*out.Width*3], r.Pix[src:src+rect.Dx()*3])
	}
	return out
}

// resized returns r scaled to width x height with area averaging when shrinking and bilinear
// interpolation when enlarging, as a camera sensor and a resize would.
func (r raster) resized(width, height int) (raster, error) {
	if width == r.Width && height == r.Height {
		return r.clone(), nil
	}
	src, err := r.mat()
	if err != nil {
		return raster{}, err
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	interpolation := gocv.InterpolationLinear
	if width < r.Width && height < r.Height {
		interpolation = gocv.InterpolationArea
	}
	gocv.Resize(src, &dst, image.Pt(width, height), 0, 0, interpolation)
	return rasterFromMat(dst)
}

// flipped mirrors r left to right.
func (r raster) flipped() raster {
	out := newRaster(r.Width, r.Height)
	for y := 0; y < r.Height; y++ {
		for x := 0; x < r.Width; x++ {
			src := (y*r.Width + x) * 3
			dst := (y*r.Width + r.Width - 1 - x) * 3
			copy(out.Pix[dst:dst+3], r.Pix[src:src+3])
		}
	}
	return out
}

// alphaMap is a per-pixel coverage in [0, 1].
type alphaMap struct {
	Width, Height int
	Values        []float32
}

func (a alphaMap) flipped() alphaMap {
	out := alphaMap{Width: a.Width, Height: a.Height, Values: make([]float32, len(a.Values))}
	for y := 0; y < a.Height; y++ {
		for x := 0; x < a.Width; x++ {
			out.Values[y*a.Width+a.Width-1-x] = a.Values[y*a.Width+x]
		}
	}
	return out
}

// resized scales the alpha map bilinearly.
func (a alphaMap) resized(width, height int) (alphaMap, error) {
	src, err := gocv.NewMatFromBytes(a.Height, a.Width, gocv.MatTypeCV32F, float32Bytes(a.Values))
	if err != nil {
		return alphaMap{}, err
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, image.Pt(width, height), 0, 0, gocv.InterpolationLinear)
	values, err := dst.DataPtrFloat32()
	if err != nil {
		return alphaMap{}, err
	}
	return alphaMap{Width: width, Height: height, Values: append([]float32(nil), values...)}, nil
}

func clampByte(value float32) uint8 {
	switch {
	case value <= 0:
		return 0
	case value >= 255:
		return 255
	default:
		return uint8(value + 0.5)
	}
}

// luma is the Rec. 601 luminance of a BGR pixel.
func luma(blue, green, red uint8) float32 {
	return 0.114*float32(blue) + 0.587*float32(green) + 0.299*float32(red)
}
