package synth

import (
	"math"
	"math/rand/v2"
	"slices"
)

// View is which side of a person a camera sees; it decides whether chest prints or backpacks show.
type View int

const (
	ViewFront View = iota
	ViewBack
)

// Body bands as fractions of the body height, top to bottom. Real bodies differ a little; the
// bands only need to land on hair, shirt, trousers and shoes for most of them.
const (
	hairEnd  = 0.06
	headEnd  = 0.13
	upperEnd = 0.50
	lowerEnd = 0.93
)

// torsoExtent finds the horizontal centre and width of the torso from the mask rows where a
// torso is, so prints and bags sit on the body rather than on the box.
func torsoExtent(alpha alphaMap) (center, width float32) {
	var centers, widths []float32
	for y := int(0.2 * float32(alpha.Height)); y < int(0.42*float32(alpha.Height)); y++ {
		left, right := -1, -1
		for x := 0; x < alpha.Width; x++ {
			if alpha.Values[y*alpha.Width+x] > 0.5 {
				if left < 0 {
					left = x
				}
				right = x
			}
		}
		if left >= 0 {
			centers = append(centers, float32(left+right)/2)
			widths = append(widths, float32(right-left+1))
		}
	}
	if len(centers) == 0 {
		return float32(alpha.Width) / 2, float32(alpha.Width) * 0.6
	}
	slices.Sort(centers)
	slices.Sort(widths)
	return centers[len(centers)/2], widths[len(widths)/2]
}

// bandReference is the median luminance of a band's opaque pixels: shading is kept relative to
// it, so a bright shirt and a dark one on the source body both end up the identity's colour.
func bandReference(body Body, from, to float32) float32 {
	var values []float32
	for y := int(from * float32(body.Image.Height)); y < int(to*float32(body.Image.Height)); y++ {
		for x := 0; x < body.Image.Width; x++ {
			i := y*body.Image.Width + x
			if body.Alpha.Values[i] > 0.6 {
				values = append(values, luma(body.Image.Pix[i*3], body.Image.Pix[i*3+1], body.Image.Pix[i*3+2]))
			}
		}
	}
	if len(values) == 0 {
		return 128
	}
	slices.Sort(values)
	return max(values[len(values)/2], 12)
}

// paint dresses a real body in an identity's clothes. Each pixel keeps its luminance relative to
// its band (folds, arms, the light from one side), and takes its hue and level from the garment.
func paint(body Body, identity Identity, view View, shading [2]float32, random *rand.Rand) (raster, alphaMap) {
	out := body.Image.clone()
	alpha := alphaMap{Width: body.Alpha.Width, Height: body.Alpha.Height, Values: slices.Clone(body.Alpha.Values)}
	width, height := body.Image.Width, body.Image.Height
	fh := float32(height)
	torsoCenter, torsoWidth := torsoExtent(body.Alpha)
	references := [...]float32{
		bandReference(body, 0, hairEnd),
		bandReference(body, headEnd, upperEnd),
		bandReference(body, upperEnd, lowerEnd),
		bandReference(body, lowerEnd, 1),
	}
	// Garment contrast varies a little between images, as fabric does under different light.
	contrast := shading[0] + (shading[1]-shading[0])*random.Float32()
	skin := skinFor(identity)
	longHair := longHairMask(body)
	for y := 0; y < height; y++ {
		v := float32(y) / fh
		for x := 0; x < width; x++ {
			i := y*width + x
			if alpha.Values[i] < 0.02 {
				continue
			}
			var target colour
			var reference float32
			switch {
			case v < hairEnd || longHair[i]:
				target, reference = identity.Hair, references[0]
				if identity.Hat && v < hairEnd {
					target = identity.HatColour
				}
			case v < headEnd:
				if identity.Hat && v < hairEnd+0.02 {
					target, reference = identity.HatColour, references[0]
				} else {
					continue // the face stays the source person's
				}
			case v < upperEnd:
				target, reference = upperColour(identity, view, float32(x), v, torsoCenter, torsoWidth, fh), references[1]
			case v < lowerEnd:
				target, reference = identity.Lower, references[2]
				if identity.Shorts && v > 0.7 {
					target = skin
				}
			default:
				target, reference = identity.Shoes, references[3]
			}
			pixel := out.Pix[i*3 : i*3+3]
			bandContrast := contrast
			if v < headEnd || longHair[i] {
				bandContrast = 1 // hair keeps its strands and highlights
			}
			shade := 1 + bandContrast*(luma(pixel[0], pixel[1], pixel[2])/reference-1)
			shade = min(max(shade, 0.25), 1.8)
			pixel[0] = clampByte(target.B * shade)
			pixel[1] = clampByte(target.G * shade)
			pixel[2] = clampByte(target.R * shade)
		}
	}
	switch identity.Bag {
	case BagBackpack:
		paintBackpack(out, body, alpha, identity.BagColour, view, torsoCenter, torsoWidth, references[1])
	case BagShoulder:
		paintShoulderBag(out, &alpha, identity, torsoCenter, torsoWidth)
	}
	return out, alpha
}

func upperColour(identity Identity, view View, x, v, torsoCenter, torsoWidth, height float32) colour {
	switch identity.UpperPattern {
	case PatternStripes:
		if int((v-headEnd)/identity.StripePeriod)%2 == 1 {
			return identity.Upper2
		}
	case PatternTwoTone:
		if v < 0.3 {
			return identity.Upper2
		}
	case PatternChestLogo:
		if view == ViewFront && v > 0.2 && v < 0.33 && abs32(x-torsoCenter) < 0.22*torsoWidth {
			return identity.Upper2
		}
	case PatternChecks:
		cell := identity.StripePeriod * 1.3 * height
		if (int(v*height/cell)+int(x/cell))%2 == 1 {
			return identity.Upper2
		}
	}
	return identity.Upper
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// paintBackpack covers the back with a pack (seen from behind) or draws its two straps (from the
// front). The pack takes the real body's shading at full strength (the garments' is softened),
// rounded corners and a darker rim, so it reads as an object, not a patch.
func paintBackpack(out raster, body Body, alpha alphaMap, bag colour, view View, torsoCenter, torsoWidth, reference float32) {
	height := float32(out.Height)
	const top, bottom = 0.16, 0.42
	halfWidth := 0.36 * torsoWidth
	corner := max(0.3*halfWidth, 1)
	for y := int(top * height); y < int(bottom*height)+1; y++ {
		v := float32(y) / height
		for x := 0; x < out.Width; x++ {
			i := y*out.Width + x
			if alpha.Values[i] < 0.5 {
				continue
			}
			dx := abs32(float32(x) - torsoCenter)
			rim := float32(1)
			if view == ViewBack {
				if v < top || v > bottom || dx > halfWidth {
					continue
				}
				// Distance inside the pack's rounded outline.
				ex, ey := max(dx-(halfWidth-corner), 0), max(max((top*height+corner)-float32(y), float32(y)-(bottom*height-corner)), 0)
				inside := corner - float32(math.Sqrt(float64(ex*ex+ey*ey)))
				if inside < 0 {
					continue
				}
				if inside < 1.5 {
					rim = 0.72
				}
			} else {
				strap := abs32(dx - 0.3*torsoWidth)
				if strap >= max(0.05*torsoWidth, 0.8) || v > 0.34 {
					continue
				}
			}
			source := body.Image.Pix[i*3 : i*3+3]
			shade := min(max(1+(luma(source[0], source[1], source[2])/reference-1), 0.3), 1.7) * rim
			pixel := out.Pix[i*3 : i*3+3]
			pixel[0], pixel[1], pixel[2] = clampByte(bag.B*shade), clampByte(bag.G*shade), clampByte(bag.R*shade)
		}
	}
}

// paintShoulderBag hangs a bag at one hip, partly outside the body outline, with a strap across
// the chest. The bag is an object of its own, so it gets its own shading: lit from above.
func paintShoulderBag(out raster, alpha *alphaMap, identity Identity, torsoCenter, torsoWidth float32) {
	height := float32(out.Height)
	side := float32(1)
	if identity.BagLeft {
		side = -1
	}
	bagCenter := torsoCenter + side*0.5*torsoWidth
	bagHalfWidth := max(0.2*torsoWidth, 2)
	top, bottom := 0.42*height, 0.57*height
	strapTop := torsoCenter - side*0.4*torsoWidth
	for y := int(0.15 * height); y < int(bottom); y++ {
		fy := float32(y)
		for x := 0; x < out.Width; x++ {
			fx := float32(x)
			i := y*out.Width + x
			var shade float32
			switch {
			case fy >= top && abs32(fx-bagCenter) < bagHalfWidth:
				shade = 1.15 - 0.45*(fy-top)/(bottom-top)
				if abs32(fx-bagCenter) > bagHalfWidth-1.5 || fy > bottom-1.5 {
					shade *= 0.75
				}
				alpha.Values[i] = 1
			case fy < top && alpha.Values[i] > 0.5:
				// The strap runs from the far shoulder down to the bag.
				t := (fy - 0.15*height) / (top - 0.15*height)
				strapX := strapTop + t*(bagCenter-strapTop)
				if abs32(fx-strapX) > max(0.04*torsoWidth, 0.7) {
					continue
				}
				pixel := out.Pix[i*3 : i*3+3]
				shade = 0.7 + 0.4*luma(pixel[0], pixel[1], pixel[2])/160
			default:
				continue
			}
			bag := identity.BagColour
			pixel := out.Pix[i*3 : i*3+3]
			pixel[0], pixel[1], pixel[2] = clampByte(bag.B*shade), clampByte(bag.G*shade), clampByte(bag.R*shade)
		}
	}
}

// longHairMask marks hair that falls below the head (long hair seen from behind), so it is
// painted as hair, not as a garment. It is found by colour: pixels in the shoulder band close to
// the colour at the top of the head. Where hair and top are alike (dark hair, dark jacket) the
// colours cannot tell them apart and nothing is marked.
func longHairMask(body Body) []bool {
	width, height := body.Image.Width, body.Image.Height
	mask := make([]bool, width*height)
	hair := medianColour(body, 0, hairEnd)
	torso := medianColour(body, 0.25, 0.45)
	if colourDistance(hair, torso) < 60 {
		return mask
	}
	// Hair falls within about the width of the head; hands and arms are outside it.
	headLeft, headRight := width, -1
	for y := 0; y < int(headEnd*float32(height)); y++ {
		for x := 0; x < width; x++ {
			if body.Alpha.Values[y*width+x] > 0.5 {
				headLeft, headRight = min(headLeft, x), max(headRight, x)
			}
		}
	}
	margin := (headRight - headLeft) / 4
	for y := int(headEnd * float32(height)); y < int(0.55*float32(height)); y++ {
		for x := max(headLeft-margin, 0); x <= min(headRight+margin, width-1); x++ {
			i := y*width + x
			if body.Alpha.Values[i] < 0.3 {
				continue
			}
			pixel := colour{B: float32(body.Image.Pix[i*3]), G: float32(body.Image.Pix[i*3+1]), R: float32(body.Image.Pix[i*3+2])}
			mask[i] = colourDistance(pixel, hair) < 45
		}
	}
	return mask
}

func medianColour(body Body, from, to float32) colour {
	var blue, green, red []float32
	for y := int(from * float32(body.Image.Height)); y < int(to*float32(body.Image.Height)); y++ {
		for x := 0; x < body.Image.Width; x++ {
			i := y*body.Image.Width + x
			if body.Alpha.Values[i] > 0.6 {
				blue = append(blue, float32(body.Image.Pix[i*3]))
				green = append(green, float32(body.Image.Pix[i*3+1]))
				red = append(red, float32(body.Image.Pix[i*3+2]))
			}
		}
	}
	if len(blue) == 0 {
		return colour{}
	}
	slices.Sort(blue)
	slices.Sort(green)
	slices.Sort(red)
	return colour{R: red[len(red)/2], G: green[len(green)/2], B: blue[len(blue)/2]}
}

func colourDistance(a, b colour) float32 {
	dr, dg, db := a.R-b.R, a.G-b.G, a.B-b.B
	return float32(math.Sqrt(float64(dr*dr + dg*dg + db*db)))
}
