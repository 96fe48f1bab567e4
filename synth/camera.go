package synth

import (
	"image"
	"math"
	"math/rand/v2"

	"gocv.io/x/gocv"
)

// Camera is everything one camera does to the people it sees: where it looks, from which side,
// how big people appear, and its optics, light, colour balance, noise and compression.
type Camera struct {
	ID          int
	Plate       int     // which background plate it looks at
	PlateFlip   bool    // a mirrored plate stands in for another viewpoint
	FrontChance float64 // chance a person faces this camera
	Gain        [3]float32
	Gamma       float32
	Brightness  float32
	BlurSigma   float64
	NoiseSigma  float32
	JPEGQuality int
	// PersonHeight is the range of a person's height in sensor pixels: low values mean a far or
	// low-resolution camera whose crops are upscaled and soft.
	PersonHeight    [2]int
	OcclusionChance float64
	BoxJitter       float64
}

// NewCamera draws camera id's settings; difficulty scales how far they stray from a clean view.
func NewCamera(id, plates int, difficulty float64, random *rand.Rand) Camera {
	// Difficulty 1 is tuned so that the shared OSNet x0.25 scores a cross-camera mAP of about
	// 0.3 on the default data set (docs/SYNTH.md); the ranges below are those at difficulty 3.
	d := difficulty / 3
	signed := func(scale float64) float64 { return (random.Float64()*2 - 1) * scale }
	camera := Camera{
		ID:          id,
		Plate:       (id - 1) % plates,
		PlateFlip:   ((id-1)/plates)%2 == 1,
		FrontChance: []float64{0.85, 0.15, 0.5}[random.IntN(3)],
		Gamma:       float32(math.Exp(signed(0.3 * d))),
		Brightness:  float32(1 + signed(0.25*d)),
		BlurSigma:   0.3 + random.Float64()*1.2*d,
		NoiseSigma:  float32(1 + random.Float64()*5*d),
		JPEGQuality: int(math.Round(max(95-random.Float64()*55*d, 25))),
	}
	for c := range camera.Gain {
		camera.Gain[c] = float32(1 + signed(0.2*d))
	}
	// A random height between a far camera (small people) and a near one.
	low := int(math.Round(max(160-random.Float64()*90*min(d, 1.5), 40)))
	camera.PersonHeight = [2]int{low, low + 40}
	camera.OcclusionChance = min(0.2*d, 0.6)
	camera.BoxJitter = 0.05 * d
	return camera
}

// photometric applies the camera's light, colour balance and gamma, then its blur and sensor
// noise. Still images vary a little in exposure and focus (clouds, auto exposure); video frames
// do not, or the video would flicker.
func (camera Camera) photometric(frame raster, random *rand.Rand, still bool) (raster, error) {
	brightness := camera.Brightness
	sigma := camera.BlurSigma
	if still {
		brightness *= 1 + (random.Float32()*2-1)*0.08
		sigma *= 0.7 + 0.6*random.Float64()
	}
	var table [3][256]uint8
	for c := 0; c < 3; c++ {
		gain := camera.Gain[2-c] // Gain is R, G, B; pixels are B, G, R
		for v := 0; v < 256; v++ {
			level := float32(math.Pow(float64(v)/255, float64(camera.Gamma))) * 255
			table[c][v] = clampByte(level * brightness * gain)
		}
	}
	out := frame.clone()
	for i := range out.Pix {
		out.Pix[i] = table[i%3][out.Pix[i]]
	}
	if sigma > 0.35 {
		blurred, err := gaussianBlur(out, sigma)
		if err != nil {
			return raster{}, err
		}
		out = blurred
	}
	noise := camera.NoiseSigma
	for i := range out.Pix {
		out.Pix[i] = clampByte(float32(out.Pix[i]) + float32(random.NormFloat64())*noise)
	}
	return out, nil
}

func gaussianBlur(frame raster, sigma float64) (raster, error) {
	src, err := frame.mat()
	if err != nil {
		return raster{}, err
	}
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	gocv.GaussianBlur(src, &dst, image.Pt(0, 0), sigma, sigma, gocv.BorderReflect101)
	return rasterFromMat(dst)
}

// composite lays a painted body over a background at (left, top), clipped to the background.
func composite(background raster, body raster, alpha alphaMap, left, top int) {
	for y := 0; y < body.Height; y++ {
		by := top + y
		if by < 0 || by >= background.Height {
			continue
		}
		for x := 0; x < body.Width; x++ {
			bx := left + x
			if bx < 0 || bx >= background.Width {
				continue
			}
			a := alpha.Values[y*body.Width+x]
			if a <= 0.01 {
				continue
			}
			src := (y*body.Width + x) * 3
			dst := (by*background.Width + bx) * 3
			for c := 0; c < 3; c++ {
				background.Pix[dst+c] = clampByte(a*float32(body.Pix[src+c]) + (1-a)*float32(background.Pix[dst+c]))
			}
		}
	}
}

// encodeJPEG compresses frame at quality.
func encodeJPEG(frame raster, quality int) ([]byte, error) {
	mat, err := frame.mat()
	if err != nil {
		return nil, err
	}
	defer mat.Close()
	buffer, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, mat, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, err
	}
	defer buffer.Close()
	return append([]byte(nil), buffer.GetBytes()...), nil
}
