package synth

import (
	"math"
	"math/rand/v2"
)

// colour is an RGB colour in [0, 255] per channel.
type colour struct{ R, G, B float32 }

// Pattern is how a garment's two colours are laid out.
type Pattern int

const (
	PatternSolid Pattern = iota
	PatternStripes
	PatternTwoTone // upper and lower halves of the garment differ
	PatternChestLogo
	PatternChecks
	patternCount
)

// Bag is what an identity carries.
type Bag int

const (
	BagNone Bag = iota
	BagBackpack
	BagShoulder
	bagCount
)

// Identity is what stays the same about a person from camera to camera: clothing, hair, bag
// and build. Pose, body and everything the camera does vary per image.
type Identity struct {
	ID            int
	Upper, Upper2 colour
	UpperPattern  Pattern
	StripePeriod  float32 // stripe period as a fraction of body height
	Lower         colour
	Shorts        bool
	Shoes         colour
	Hair          colour
	Hat           bool
	HatColour     colour
	Bag           Bag
	BagColour     colour
	BagLeft       bool    // which side a shoulder bag hangs on
	Build         float32 // horizontal scale of the body: slim < 1 < broad
	// Figure places the identity among the harvested bodies ordered by silhouette (narrow to
	// wide, in [0, 1]); every image draws a body near it, so the figure persists without the
	// same pose ever repeating.
	Figure float32
}

// Colours people wear: many dark and neutral garments, some bright, as in street scenes, so that
// identities often share a colour and colour alone does not identify anyone.
var (
	neutralColours = []colour{
		{20, 20, 22}, {40, 40, 45}, {70, 70, 75}, {110, 110, 112}, {160, 160, 160}, {215, 215, 210},
		{235, 235, 230}, {30, 35, 70}, {55, 45, 35}, {95, 75, 55}, {180, 160, 120}, {60, 70, 50},
	}
	lowerColours = []colour{
		{30, 45, 85}, {50, 70, 115}, {85, 105, 145}, {25, 25, 28}, {60, 60, 62}, {110, 110, 110},
		{150, 130, 95}, {80, 65, 45}, {40, 50, 40}, {190, 185, 170},
	}
	hairColours = []colour{{25, 20, 18}, {50, 35, 25}, {90, 60, 35}, {150, 115, 70}, {200, 170, 110}, {130, 130, 130}}
	skinColours = []colour{{225, 185, 160}, {200, 150, 120}, {160, 110, 80}, {110, 75, 55}}
)

// brightColour draws a saturated garment colour from a random hue.
func brightColour(random *rand.Rand) colour {
	hue := random.Float64() * 360
	saturation := 0.45 + 0.5*random.Float64()
	value := 0.35 + 0.6*random.Float64()
	return hsvColour(hue, saturation, value)
}

func hsvColour(hue, saturation, value float64) colour {
	c := value * saturation
	h := math.Mod(hue/60, 6)
	x := c * (1 - math.Abs(math.Mod(h, 2)-1))
	var r, g, b float64
	switch int(h) {
	case 0:
		r, g, b = c, x, 0
	case 1:
		r, g, b = x, c, 0
	case 2:
		r, g, b = 0, c, x
	case 3:
		r, g, b = 0, x, c
	case 4:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	m := value - c
	return colour{float32((r + m) * 255), float32((g + m) * 255), float32((b + m) * 255)}
}

func garmentColour(random *rand.Rand, brightChance float64) colour {
	if random.Float64() < brightChance {
		return brightColour(random)
	}
	return neutralColours[random.IntN(len(neutralColours))]
}

// jitter varies a palette colour a little so that two identities rarely match exactly.
func jitter(random *rand.Rand, c colour, amount float32) colour {
	shift := func(v float32) float32 { return min(max(v+(random.Float32()*2-1)*amount, 0), 255) }
	return colour{shift(c.R), shift(c.G), shift(c.B)}
}

// NewIdentity draws an identity from random; the same stream gives the same identity.
func NewIdentity(id int, random *rand.Rand) Identity {
	identity := Identity{ID: id}
	identity.Upper = jitter(random, garmentColour(random, 0.75), 12)
	identity.Upper2 = jitter(random, garmentColour(random, 0.6), 12)
	patternRoll := random.Float64()
	switch {
	case patternRoll < 0.5:
		identity.UpperPattern = PatternSolid
	case patternRoll < 0.65:
		identity.UpperPattern = PatternStripes
	case patternRoll < 0.78:
		identity.UpperPattern = PatternTwoTone
	case patternRoll < 0.9:
		identity.UpperPattern = PatternChestLogo
	default:
		identity.UpperPattern = PatternChecks
	}
	identity.StripePeriod = 0.03 + 0.04*random.Float32()
	if random.Float64() < 0.35 {
		identity.Lower = brightColour(random)
	} else {
		identity.Lower = jitter(random, lowerColours[random.IntN(len(lowerColours))], 10)
	}
	identity.Shorts = random.Float64() < 0.12
	identity.Shoes = jitter(random, neutralColours[random.IntN(len(neutralColours))], 10)
	identity.Hair = jitter(random, hairColours[random.IntN(len(hairColours))], 8)
	identity.Hat = random.Float64() < 0.15
	identity.HatColour = garmentColour(random, 0.5)
	identity.Bag = Bag(0)
	if bagRoll := random.Float64(); bagRoll < 0.25 {
		identity.Bag = BagBackpack
	} else if bagRoll < 0.4 {
		identity.Bag = BagShoulder
	}
	identity.BagColour = jitter(random, garmentColour(random, 0.35), 10)
	identity.BagLeft = random.Float64() < 0.5
	identity.Build = 0.88 + 0.24*random.Float32()
	identity.Figure = random.Float32()
	return identity
}

// skinFor picks a skin tone for bare legs; it belongs to the identity's seed, not the body.
func skinFor(identity Identity) colour {
	return skinColours[identity.ID%len(skinColours)]
}
