package ingest

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/detector"
)

// cropper cuts detections out of frames and encodes them as JPEG at one size. It keeps a scratch
// Mat, so each camera has its own.
type cropper struct {
	options config.Crops
	resized gocv.Mat
	params  []int
}

func newCropper(options config.Crops) *cropper {
	return &cropper{
		options: options,
		resized: gocv.NewMat(),
		params:  []int{gocv.IMWriteJpegQuality, options.JPEGQuality},
	}
}

func (c *cropper) Close() { c.resized.Close() }

// paddedRegion grows box by options.Padding of its width and height on each side, so that arms and
// feet the detector clipped stay in the crop, and clips it to the frame.
func paddedRegion(box detector.Box, padding float64, frameWidth, frameHeight int) image.Rectangle {
	padX := float64(box.Width()) * padding
	padY := float64(box.Height()) * padding
	region := image.Rect(
		int(math.Floor(float64(box.X1)-padX)), int(math.Floor(float64(box.Y1)-padY)),
		int(math.Ceil(float64(box.X2)+padX)), int(math.Ceil(float64(box.Y2)+padY)),
	)
	return region.Intersect(image.Rect(0, 0, frameWidth, frameHeight))
}

// frameBox rounds a detection box to whole frame pixels for the record.
func frameBox(box detector.Box) cropstore.Box {
	x1, y1 := int(math.Round(float64(box.X1))), int(math.Round(float64(box.Y1)))
	return cropstore.Box{X: x1, Y: y1, Width: int(math.Round(float64(box.X2))) - x1, Height: int(math.Round(float64(box.Y2))) - y1}
}

// encode returns the JPEG of box in frame, resized to the configured crop size.
func (c *cropper) encode(frame gocv.Mat, box detector.Box) ([]byte, error) {
	region := paddedRegion(box, c.options.Padding, frame.Cols(), frame.Rows())
	if region.Dx() < 2 || region.Dy() < 2 {
		return nil, fmt.Errorf("crop: box %+v is outside the %dx%d frame", box, frame.Cols(), frame.Rows())
	}
	view := frame.Region(region)
	gocv.Resize(view, &c.resized, image.Pt(c.options.Width, c.options.Height), 0, 0, resizeInterpolation(region, c.options.Width, c.options.Height))
	view.Close()
	buffer, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, c.resized, c.params)
	if err != nil {
		return nil, fmt.Errorf("crop: jpeg: %w", err)
	}
	defer buffer.Close()
	// GetBytes views C memory that Close frees: copy it out.
	return append([]byte(nil), buffer.GetBytes()...), nil
}

// resizeInterpolation picks how a region is scaled to the crop size. Bilinear sampling skips
// pixels when it shrinks, so a person filmed large (a close or high-resolution camera) comes out
// aliased; OpenCV's area averaging does not, and is what the antialiased (PIL) resize re-id
// networks are trained with comes closest to (measured: docs/BENCHMARKS.md, "Crop resizing").
// When either side grows, area sampling repeats pixels, so bilinear stays.
func resizeInterpolation(region image.Rectangle, width, height int) gocv.InterpolationFlags {
	if region.Dx() > width && region.Dy() > height {
		return gocv.InterpolationArea
	}
	return gocv.InterpolationLinear
}
