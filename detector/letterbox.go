package detector

import "image"

// stride is the coarsest feature-map stride of both networks: each side of the input must be a
// multiple of it.
const stride = 32

// InputFor is the network input config.Detector.FitInput gives a frameWidth x frameHeight frame:
// the long side is size and the short side is the scaled frame's, rounded up to a multiple of the
// stride. Both networks are fully convolutional, so a 4:3 frame needs no 320x320 square: 320x256
// holds the same pixels at the same scale with 16 rows of padding instead of 80, and a 16:9 frame
// 320x192.
func InputFor(frameWidth, frameHeight, size int) image.Point {
	scale := min(float32(size)/float32(frameWidth), float32(size)/float32(frameHeight))
	roundUp := func(side int) int {
		scaled := max(int(float32(side)*scale+0.5), 1)
		return min((scaled+stride-1)/stride*stride, size)
	}
	return image.Pt(roundUp(frameWidth), roundUp(frameHeight))
}

// Letterbox describes how a frame was scaled (keeping its aspect ratio) and padded into the
// network input, so that boxes found in the input can be mapped back to the frame.
type Letterbox struct {
	// Input is the network input size.
	Input image.Point
	// Scale is network-input pixels per frame pixel.
	Scale float32
	// PadX and PadY are the offsets of the scaled frame inside the input.
	PadX, PadY int
	// ScaledWidth and ScaledHeight are the size of the scaled frame inside the input.
	ScaledWidth, ScaledHeight int
	// FrameWidth and FrameHeight are the original frame size.
	FrameWidth, FrameHeight int
}

// NewLetterbox fits a frameWidth x frameHeight frame into an input of the given size. With center
// the padding is split between both sides (Darknet style); otherwise the frame sits at the
// top-left corner and the padding is on the right and bottom (YOLOX style).
func NewLetterbox(frameWidth, frameHeight int, input image.Point, center bool) Letterbox {
	scale := min(float32(input.X)/float32(frameWidth), float32(input.Y)/float32(frameHeight))
	scaledWidth := min(max(int(float32(frameWidth)*scale+0.5), 1), input.X)
	scaledHeight := min(max(int(float32(frameHeight)*scale+0.5), 1), input.Y)
	letterbox := Letterbox{
		Input:        input,
		Scale:        scale,
		ScaledWidth:  scaledWidth,
		ScaledHeight: scaledHeight,
		FrameWidth:   frameWidth,
		FrameHeight:  frameHeight,
	}
	if center {
		letterbox.PadX = (input.X - scaledWidth) / 2
		letterbox.PadY = (input.Y - scaledHeight) / 2
	}
	return letterbox
}

// ToFrame maps a box in network-input pixels to frame pixels, clipped to the frame.
func (l Letterbox) ToFrame(box Box) Box {
	mapX := func(x float32) float32 {
		return min(max((x-float32(l.PadX))/l.Scale, 0), float32(l.FrameWidth))
	}
	mapY := func(y float32) float32 {
		return min(max((y-float32(l.PadY))/l.Scale, 0), float32(l.FrameHeight))
	}
	return Box{X1: mapX(box.X1), Y1: mapY(box.Y1), X2: mapX(box.X2), Y2: mapY(box.Y2)}
}
