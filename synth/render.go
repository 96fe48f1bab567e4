package synth

import (
	"cmp"
	"errors"
	"image"
	"math"
	"math/rand/v2"
	"slices"
)

// Garment shading kept for data set crops and for video figures (see scene.shading).
const (
	cropShadingLow, cropShadingHigh   = 0.45, 0.6
	videoShadingLow, videoShadingHigh = 0.7, 0.9
)

// Crop size of the Market-1501 images.
const (
	CropWidth  = 64
	CropHeight = 128
)

// scene is the fixed material the renderer draws from: bodies, and each camera's background
// (its plate, mirrored when the camera says so).
type scene struct {
	library  *Library
	byFigure []int // body indices, narrowest silhouette first
	// shading is the range of how much of the real body's shading the garments keep. Small crops
	// keep less, so the source person's own clothes do not show through; large video figures
	// keep more, or they would look flat.
	shading     [2]float32
	cameras     []Camera
	backgrounds []raster // per camera
}

func newScene(library *Library, cameras []Camera) (*scene, error) {
	if library == nil || len(library.Bodies) == 0 || len(library.Plates) == 0 {
		return nil, errors.New("no bodies or background plates to render with")
	}
	s := &scene{library: library, cameras: cameras, shading: [2]float32{cropShadingLow, cropShadingHigh}}
	s.byFigure = make([]int, len(library.Bodies))
	widths := make([]float64, len(library.Bodies))
	for i, body := range library.Bodies {
		s.byFigure[i] = i
		widths[i] = float64(body.Image.Width) / float64(body.Image.Height)
	}
	slices.SortStableFunc(s.byFigure, func(a, b int) int { return cmp.Compare(widths[a], widths[b]) })
	for _, camera := range cameras {
		plate := library.Plates[camera.Plate%len(library.Plates)].Image
		if camera.PlateFlip {
			plate = plate.flipped()
		}
		s.backgrounds = append(s.backgrounds, plate)
	}
	return s, nil
}

// dressedBody paints identity onto a random real body, facing the camera or not, maybe mirrored.
// The body comes from the identity's figure window and, where possible, is at least minHeight
// pixels tall, so that a near camera does not show a blurred, blown-up small body.
func (s *scene) dressedBody(identity Identity, camera Camera, minHeight int, random *rand.Rand) (raster, alphaMap) {
	window := max(len(s.byFigure)/5, 1)
	start := min(int(identity.Figure*float32(len(s.byFigure)-window+1)), len(s.byFigure)-window)
	candidates := s.byFigure[start : start+window]
	if tall := s.tallerThan(candidates, minHeight); len(tall) > 0 {
		candidates = tall
	} else if tall := s.tallerThan(s.byFigure, minHeight); len(tall) > 0 {
		candidates = tall
	}
	body := s.library.Bodies[candidates[random.IntN(len(candidates))]]
	view := ViewBack
	if random.Float64() < camera.FrontChance {
		view = ViewFront
	}
	painted, alpha := paint(body, identity, view, s.shading, random)
	if random.Float64() < 0.5 {
		painted, alpha = painted.flipped(), alpha.flipped()
	}
	return painted, alpha
}

func (s *scene) tallerThan(indices []int, height int) []int {
	var tall []int
	for _, index := range indices {
		if s.library.Bodies[index].Image.Height >= height {
			tall = append(tall, index)
		}
	}
	return tall
}

// scaleBody resizes a dressed body to height pixels, widened or narrowed by the build.
func scaleBody(painted raster, alpha alphaMap, height int, build float32, random *rand.Rand) (raster, alphaMap, error) {
	aspect := float64(painted.Width) / float64(painted.Height) * float64(build) * (0.95 + 0.1*random.Float64())
	width := max(int(math.Round(float64(height)*aspect)), 4)
	scaled, err := painted.resized(width, height)
	if err != nil {
		return raster{}, alphaMap{}, err
	}
	scaledAlpha, err := alpha.resized(width, height)
	if err != nil {
		return raster{}, alphaMap{}, err
	}
	return scaled, scaledAlpha, nil
}

// backgroundPatch cuts a width x height background from the camera's plate around a person
// personHeight pixels tall whose head is personTop pixels from the patch top: the feet stand
// where people walk in that plate, and the plate is scaled so that people there are that tall.
func (s *scene) backgroundPatch(cameraIndex, width, height, personHeight, personTop int, random *rand.Rand) (raster, error) {
	plate := s.backgrounds[cameraIndex]
	ground := s.library.Plates[s.cameras[cameraIndex].Plate%len(s.library.Plates)].Ground
	foot := ground.FootLow + random.Float64()*(ground.FootHigh-ground.FootLow)
	zoom := ground.HeightAt(foot) * float64(plate.Height) / float64(personHeight)
	regionWidth := min(max(int(float64(width)*zoom), 8), plate.Width)
	regionHeight := min(max(int(float64(height)*zoom), 8), plate.Height)
	top := int(foot*float64(plate.Height) - float64(personTop+personHeight)*zoom)
	top = min(max(top, 0), plate.Height-regionHeight)
	left := random.IntN(plate.Width - regionWidth + 1)
	return plate.sub(image.Rect(left, top, left+regionWidth, top+regionHeight)).resized(width, height)
}

// renderCrop makes one detection-style crop of identity seen by camera, at CropWidth x
// CropHeight, and the JPEG quality to store it at.
func (s *scene) renderCrop(identity Identity, cameraIndex int, random *rand.Rand) (raster, int, error) {
	camera := s.cameras[cameraIndex]
	personHeight := camera.PersonHeight[0] + random.IntN(camera.PersonHeight[1]-camera.PersonHeight[0]+1)
	painted, alpha := s.dressedBody(identity, camera, personHeight/2, random)
	person, personAlpha, err := scaleBody(painted, alpha, personHeight, identity.Build, random)
	if err != nil {
		return raster{}, 0, err
	}
	// A detector's box: a little loose, never perfectly centred.
	padTop := int(float64(personHeight) * (0.02 + 0.06*random.Float64()))
	padBottom := int(float64(personHeight) * (0.02 + 0.05*random.Float64()))
	cropHeight := personHeight + padTop + padBottom
	cropWidth := max(int(float64(person.Width)*1.1), int(float64(cropHeight)*0.38))
	jitter := func(scale float64) int {
		return int(math.Round((random.Float64()*2 - 1) * camera.BoxJitter * scale * float64(personHeight)))
	}
	frame, err := s.backgroundPatch(cameraIndex, cropWidth, cropHeight, personHeight, padTop, random)
	if err != nil {
		return raster{}, 0, err
	}
	composite(frame, person, personAlpha, (cropWidth-person.Width)/2+jitter(1), padTop+jitter(0.5))
	if random.Float64() < camera.OcclusionChance {
		if err := s.occlude(frame, cameraIndex, personHeight, random); err != nil {
			return raster{}, 0, err
		}
	}
	frame, err = camera.photometric(frame, random, true)
	if err != nil {
		return raster{}, 0, err
	}
	crop, err := frame.resized(CropWidth, CropHeight)
	if err != nil {
		return raster{}, 0, err
	}
	quality := min(max(camera.JPEGQuality+random.IntN(11)-5, 20), 98)
	return crop, quality, nil
}

// occlude covers part of the crop: another passer-by in front at one side, or something in the
// foreground (a piece of the scene nearer the camera) across the bottom.
func (s *scene) occlude(frame raster, cameraIndex, personHeight int, random *rand.Rand) error {
	if random.Float64() < 0.55 {
		stranger := NewIdentity(0, random)
		height := int(float64(personHeight) * (0.9 + 0.25*random.Float64()))
		painted, alpha := s.dressedBody(stranger, s.cameras[cameraIndex], height/2, random)
		person, personAlpha, err := scaleBody(painted, alpha, height, stranger.Build, random)
		if err != nil {
			return err
		}
		cover := int(float64(frame.Width) * (0.2 + 0.25*random.Float64()))
		left := frame.Width - cover
		if random.Float64() < 0.5 {
			left = cover - person.Width
		}
		composite(frame, person, personAlpha, left, frame.Height-height+random.IntN(max(height/10, 1)))
		return nil
	}
	cover := int(float64(frame.Height) * (0.15 + 0.25*random.Float64()))
	patch, err := s.backgroundPatch(cameraIndex, frame.Width, cover, personHeight, -personHeight/2, random)
	if err != nil {
		return err
	}
	// Something close to the camera is darker or lighter than the ground behind the person.
	level := 0.55 + 0.6*random.Float32()
	for i := range patch.Pix {
		patch.Pix[i] = clampByte(float32(patch.Pix[i]) * level)
	}
	copy(frame.Pix[(frame.Height-cover)*frame.Width*3:], patch.Pix)
	return nil
}
