package detector

// Box is an axis-aligned rectangle in pixels, corners (X1, Y1) top-left and (X2, Y2) bottom-right.
// Floats, because boxes are mapped between the network input and the frame before rounding.
type Box struct {
	X1, Y1, X2, Y2 float32
}

// Width of the box; 0 for an empty box.
func (b Box) Width() float32 { return max(b.X2-b.X1, 0) }

// Height of the box; 0 for an empty box.
func (b Box) Height() float32 { return max(b.Y2-b.Y1, 0) }

// Area of the box.
func (b Box) Area() float32 { return b.Width() * b.Height() }

// IoU is the intersection over union of a and b, 0 when they do not overlap.
func IoU(a, b Box) float32 {
	intersection := Box{X1: max(a.X1, b.X1), Y1: max(a.Y1, b.Y1), X2: min(a.X2, b.X2), Y2: min(a.Y2, b.Y2)}.Area()
	if intersection == 0 {
		return 0
	}
	return intersection / (a.Area() + b.Area() - intersection)
}

// Detection is one person found in a frame.
type Detection struct {
	Box   Box
	Score float32
}
