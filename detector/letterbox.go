package detector

// Letterbox describes how a frame was scaled (keeping its aspect ratio) and padded into the square
// network input, so that boxes found in the input can be mapped back to the frame.
type Letterbox struct {
	// Scale is network-input pixels per frame pixel.
	Scale float32
	// PadX and PadY are the offsets of the scaled frame inside the input.
	PadX, PadY int
	// ScaledWidth and ScaledHeight are the size of the scaled frame inside the input.
	ScaledWidth, ScaledHeight int
	// FrameWidth and FrameHeight are the original frame size.
	FrameWidth, FrameHeight int
}

// NewLetterbox fits a frameWidth x frameHeight frame into a size x size input. With center the
// padding is split between both sides (Darknet style); otherwise the frame sits at the top-left
// corner and the padding is on the right and bottom (YOLOX style).
func NewLetterbox(frameWidth, frameHeight, size int, center bool) Letterbox {
	scale := min(float32(size)/float32(frameWidth), float32(size)/float32(frameHeight))
	scaledWidth := min(max(int(float32(frameWidth)*scale+0.5), 1), size)
	scaledHeight := min(max(int(float32(frameHeight)*scale+0.5), 1), size)
	letterbox := Letterbox{
		Scale:        scale,
		ScaledWidth:  scaledWidth,
		ScaledHeight: scaledHeight,
		FrameWidth:   frameWidth,
		FrameHeight:  frameHeight,
	}
	if center {
		letterbox.PadX = (size - scaledWidth) / 2
		letterbox.PadY = (size - scaledHeight) / 2
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
