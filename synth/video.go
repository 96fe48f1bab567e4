package synth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"gocv.io/x/gocv"
)

// VideoOptions sizes a set of synthetic camera videos. Zero values take the defaults in brackets.
type VideoOptions struct {
	Cameras    int     // [3]
	Seconds    float64 // length of every video [60]
	Identities int     // people walking from camera to camera [3 per camera]
	Seed       uint64
	Difficulty float64 // camera nuisance, as for data sets [1]
	FPS        float64 // [10]
	Width      int     // [768]
	Height     int     // [576]
	Logger     *slog.Logger
}

func (o *VideoOptions) setDefaults() {
	if o.Cameras == 0 {
		o.Cameras = 3
	}
	if o.Seconds == 0 {
		o.Seconds = 60
	}
	if o.Identities == 0 {
		o.Identities = 3 * o.Cameras
	}
	if o.Difficulty == 0 {
		o.Difficulty = 1
	}
	if o.FPS == 0 {
		o.FPS = 10
	}
	if o.Width == 0 {
		o.Width = 768
	}
	if o.Height == 0 {
		o.Height = 576
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports bad options (after defaults) before any work is done.
func (o VideoOptions) Validate() error {
	o.setDefaults()
	return o.validate()
}

func (o VideoOptions) validate() error {
	var problems []error
	if o.Cameras < 1 || o.Cameras > 99 {
		problems = append(problems, fmt.Errorf("cameras %d: want 1 to 99", o.Cameras))
	}
	if o.Seconds <= 0 || o.Seconds > 3600 {
		problems = append(problems, fmt.Errorf("seconds %g: want more than 0, at most 3600", o.Seconds))
	}
	if o.Identities < 1 {
		problems = append(problems, fmt.Errorf("identities %d: want at least 1", o.Identities))
	}
	if o.Difficulty < 0 || o.Difficulty > 4 {
		problems = append(problems, fmt.Errorf("difficulty %g: want 0 to 4", o.Difficulty))
	}
	if o.FPS <= 0 || o.FPS > 60 {
		problems = append(problems, fmt.Errorf("fps %g: want more than 0, at most 60", o.FPS))
	}
	if o.Width < 160 || o.Height < 120 || o.Width > 4096 || o.Height > 4096 || o.Width%2 != 0 || o.Height%2 != 0 {
		problems = append(problems, fmt.Errorf("size %dx%d: want even sides from 160x120 to 4096x4096", o.Width, o.Height))
	}
	return errors.Join(problems...)
}

// GroundTruth says who is where in every frame of every camera video. It is written as
// ground_truth.json next to the videos.
type GroundTruth struct {
	FPS        float64            `json:"fps"`
	Width      int                `json:"width"`
	Height     int                `json:"height"`
	Seed       uint64             `json:"seed"`
	Identities int                `json:"identities"`
	Cameras    []GroundTruthVideo `json:"cameras"`
	// Visits lists each pass of a person through a camera's view, in time order.
	Visits []Visit            `json:"visits"`
	Frames []GroundTruthFrame `json:"frames"`
}

// GroundTruthVideo is one camera's video file.
type GroundTruthVideo struct {
	Camera int    `json:"camera"`
	File   string `json:"file"`
	Frames int    `json:"frames"`
}

// Visit is one walk of an identity across a camera's view.
type Visit struct {
	Identity int     `json:"identity"`
	Camera   int     `json:"camera"`
	Enter    float64 `json:"enter"` // seconds from the start of the videos
	Leave    float64 `json:"leave"`
	// LeftToRight is the walking direction in the image.
	LeftToRight bool    `json:"left_to_right"`
	FootY       float64 `json:"foot_y"` // the lane, as a fraction of the frame height
	Speed       float64 `json:"speed"`  // pixels per second
	Height      int     `json:"height"` // pixels
}

// GroundTruthFrame is one frame of one camera.
type GroundTruthFrame struct {
	Camera int                 `json:"camera"`
	Frame  int                 `json:"frame"`
	Time   float64             `json:"time"`
	People []GroundTruthPerson `json:"people"`
}

// GroundTruthPerson is one person in a frame. Box is [x1, y1, x2, y2) in pixels, the visible
// part of the person's silhouette inside the frame.
type GroundTruthPerson struct {
	Identity int    `json:"identity"`
	Box      [4]int `json:"box"`
	// Truncated is true when the frame edge cuts the person.
	Truncated bool `json:"truncated"`
	// Visibility is the fraction of the silhouette neither outside the frame nor behind someone
	// nearer the camera.
	Visibility float64 `json:"visibility"`
}

const (
	streamVisit = 5 << 40
	streamFrame = 6 << 40
)

// walker is one visit being rendered: the dressed body, and where it is at time t.
type walker struct {
	visit  Visit
	index  int
	image  raster
	alpha  alphaMap
	height int
}

// VideoFileName names camera's video in the output folder.
func VideoFileName(camera int) string { return fmt.Sprintf("camera%02d.avi", camera) }

// WriteVideos renders one MJPG video per camera into dir, in which the identities walk across
// the cameras' views, one camera after another, and writes ground_truth.json.
func WriteVideos(ctx context.Context, dir string, library *Library, options VideoOptions) (*GroundTruth, error) {
	options.setDefaults()
	if err := options.validate(); err != nil {
		return nil, err
	}
	if library == nil || len(library.Bodies) == 0 || len(library.Plates) == 0 {
		return nil, errors.New("no bodies or background plates to render with")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cameras := make([]Camera, options.Cameras)
	for i := range cameras {
		cameras[i] = NewCamera(i+1, len(library.Plates), options.Difficulty, stream(options.Seed, streamCamera, i))
	}
	scene, err := newScene(library, cameras)
	if err != nil {
		return nil, err
	}
	scene.shading = [2]float32{videoShadingLow, videoShadingHigh}
	identities := make([]Identity, options.Identities)
	for i := range identities {
		identities[i] = NewIdentity(i+1, stream(options.Seed, streamIdentity, i+1))
	}
	truth := &GroundTruth{FPS: options.FPS, Width: options.Width, Height: options.Height, Seed: options.Seed, Identities: options.Identities}
	grounds := make([]Ground, len(cameras))
	views := make([]image.Rectangle, len(cameras))
	for i, camera := range cameras {
		grounds[i], views[i] = cameraView(scene.backgrounds[i], library.Plates[camera.Plate%len(library.Plates)].Ground,
			options.Width, options.Height, stream(options.Seed, streamCamera, 1000+i))
	}
	truth.Visits = planVisits(options, grounds, stream(options.Seed, streamPlan, 0))
	frames := int(math.Round(options.Seconds * options.FPS))
	for cameraIndex := range cameras {
		background, err := scene.backgrounds[cameraIndex].sub(views[cameraIndex]).resized(options.Width, options.Height)
		if err != nil {
			return nil, err
		}
		var walkers []*walker
		for i, visit := range truth.Visits {
			if visit.Camera != cameraIndex+1 {
				continue
			}
			random := stream(options.Seed, streamVisit, i)
			painted, alpha := scene.dressedBody(identities[visit.Identity-1], cameras[cameraIndex], visit.Height/2, random)
			height := visit.Height
			person, personAlpha, err := scaleBody(painted, alpha, height, identities[visit.Identity-1].Build, random)
			if err != nil {
				return nil, err
			}
			walkers = append(walkers, &walker{visit: visit, index: i, image: person, alpha: personAlpha, height: height})
		}
		name := VideoFileName(cameraIndex + 1)
		if err := writeCameraVideo(ctx, filepath.Join(dir, name), background, cameras[cameraIndex], walkers, frames, options, truth); err != nil {
			return nil, fmt.Errorf("camera %d: %w", cameraIndex+1, err)
		}
		truth.Cameras = append(truth.Cameras, GroundTruthVideo{Camera: cameraIndex + 1, File: name, Frames: frames})
		options.Logger.Info("synthetic camera video written", "file", name, "frames", frames, "visits", len(walkers))
	}
	encoded, err := json.Marshal(truth)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ground_truth.json"), encoded, 0o644); err != nil {
		return nil, err
	}
	return truth, nil
}

// maxInView is how many people a camera's view holds at once.
const maxInView = 3

// busy counts the visits to camera that overlap [enter, leave].
func busy(visits []Visit, camera int, enter, leave float64) int {
	count := 0
	for _, other := range visits {
		if other.Camera == camera && other.Enter < leave && enter < other.Leave {
			count++
		}
	}
	return count
}

// farthestLane picks the candidate lane farthest from those of the visits to camera that overlap
// [enter, leave].
func farthestLane(lanes []float64, visits []Visit, camera int, enter, leave float64) float64 {
	best, bestDistance := lanes[0], -1.0
	for _, lane := range lanes {
		distance := math.Inf(1)
		for _, other := range visits {
			if other.Camera == camera && other.Enter < leave && enter < other.Leave {
				distance = min(distance, math.Abs(other.FootY-lane))
			}
		}
		if distance > bestDistance {
			best, bestDistance = lane, distance
		}
	}
	return best
}

// planVisits sends each identity through a few cameras in turn: walk across one view, a short
// gap out of sight, then the next camera's view.
func planVisits(options VideoOptions, grounds []Ground, random *rand.Rand) []Visit {
	var visits []Visit
	for id := 1; id <= options.Identities; id++ {
		t := random.Float64() * options.Seconds * 0.4
		camera := 1 + random.IntN(options.Cameras)
		stops := 1 + random.IntN(max(options.Cameras, 2))
		if options.Cameras > 1 {
			stops = max(stops, 2)
		}
		for stop := 0; stop < stops && t < options.Seconds; stop++ {
			ground := grounds[camera-1]
			scale := 0.92 + 0.16*random.Float64() // people differ in height
			// Walking speed is about 0.7 body heights per second.
			pace := 0.55 + 0.3*random.Float64()
			leftToRight := random.Float64() < 0.5
			lanes := make([]float64, 8)
			for i := range lanes {
				lanes[i] = ground.FootLow + random.Float64()*(ground.FootHigh-ground.FootLow)
			}
			var visit Visit
			// A camera's view holds a few people at a time, each on a lane apart from the
			// others, as people keep their distance; a crowd waits off screen.
			for wait := 0; wait < 50; wait++ {
				visit = Visit{Identity: id, Camera: camera, Enter: t, LeftToRight: leftToRight}
				visit.FootY = farthestLane(lanes, visits, camera, t, t+options.Seconds)
				visit.Height = int(ground.HeightAt(visit.FootY) * scale * float64(options.Height))
				visit.Speed = pace * float64(visit.Height)
				duration := (float64(options.Width) + float64(visit.Height)) / visit.Speed
				visit.Leave = t + duration
				if busy(visits, camera, visit.Enter, visit.Leave) < maxInView {
					break
				}
				t += 1
			}
			if visit.Enter >= options.Seconds {
				break
			}
			visits = append(visits, visit)
			duration := visit.Leave - visit.Enter
			t += duration + 1 + 3*random.Float64()
			if options.Cameras > 1 {
				next := 1 + random.IntN(options.Cameras-1)
				if next >= camera {
					next++
				}
				camera = next
			}
		}
	}
	slices.SortStableFunc(visits, func(a, b Visit) int { return cmp.Compare(a.Enter, b.Enter) })
	return visits
}

// cameraView picks the window of a plate a video camera shows, of the frame's shape, and maps
// the plate's ground into it. Where people are small in the plate the camera zooms in (at most
// 2x, so the harvested bodies are not blown up) until a person in the middle of the walking band
// is about a third of the frame tall.
func cameraView(plate raster, ground Ground, width, height int, random *rand.Rand) (Ground, image.Rectangle) {
	aspect := float64(width) / float64(height)
	middle := (ground.FootLow + ground.FootHigh) / 2
	zoom := min(max(0.33/ground.HeightAt(middle), 1), 2)
	regionHeight := float64(plate.Height) / zoom
	regionWidth := regionHeight * aspect
	if regionWidth > float64(plate.Width) {
		regionWidth = float64(plate.Width)
		regionHeight = regionWidth / aspect
	}
	// Keep the walking band in view: its middle a little below the window's centre.
	top := middle*float64(plate.Height) - 0.6*regionHeight
	top = min(max(top, 0), float64(plate.Height)-regionHeight)
	left := random.Float64() * (float64(plate.Width) - regionWidth)
	view := image.Rect(int(left), int(top), int(left+regionWidth), int(top+regionHeight))
	// Plate fractions to window fractions.
	scale := float64(plate.Height) / float64(view.Dy())
	offset := float64(view.Min.Y) / float64(plate.Height)
	mapped := Ground{
		Intercept: (ground.Intercept + ground.Slope*offset) * scale,
		Slope:     ground.Slope,
	}
	mapped.FootLow = max((ground.FootLow-offset)*scale, mapped.HeightAt(0.5)*0.9)
	mapped.FootHigh = min((ground.FootHigh-offset)*scale, 0.98)
	if mapped.FootHigh < mapped.FootLow {
		mapped.FootLow, mapped.FootHigh = mapped.FootHigh, mapped.FootLow
	}
	return mapped, view
}

// position is where walker's body goes at time t: left and top of its image.
func (w *walker) position(t float64, frameWidth, frameHeight int) (int, int) {
	travelled := (t - w.visit.Enter) * w.visit.Speed
	x := -float64(w.image.Width) + travelled
	if !w.visit.LeftToRight {
		x = float64(frameWidth) - travelled
	}
	// A slight bob with each step.
	bob := math.Abs(math.Sin(t*math.Pi*1.8)) * 0.012 * float64(w.height)
	foot := w.visit.FootY * float64(frameHeight)
	return int(math.Round(x)), int(math.Round(foot - float64(w.height) - bob))
}

func writeCameraVideo(ctx context.Context, path string, background raster, camera Camera, walkers []*walker, frames int, options VideoOptions, truth *GroundTruth) error {
	writer, err := gocv.VideoWriterFile(path, "MJPG", options.FPS, options.Width, options.Height, true)
	if err != nil {
		return err
	}
	defer writer.Close()
	if !writer.IsOpened() {
		return fmt.Errorf("cannot open a video writer for %s", path)
	}
	owner := make([]int16, options.Width*options.Height)
	for frame := 0; frame < frames; frame++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := float64(frame) / options.FPS
		canvas := background.clone()
		var active []*walker
		for _, w := range walkers {
			if t >= w.visit.Enter && t <= w.visit.Leave {
				active = append(active, w)
			}
		}
		// Far people first, so nearer ones cover them.
		slices.SortStableFunc(active, func(a, b *walker) int { return cmp.Compare(a.visit.FootY, b.visit.FootY) })
		for i := range owner {
			owner[i] = -1
		}
		type placed struct {
			left, top int
			solid     int // silhouette pixels, in or out of the frame
		}
		places := make([]placed, len(active))
		for k, w := range active {
			left, top := w.position(t, options.Width, options.Height)
			composite(canvas, w.image, w.alpha, left, top)
			for y := 0; y < w.image.Height; y++ {
				for x := 0; x < w.image.Width; x++ {
					if w.alpha.Values[y*w.image.Width+x] < 0.5 {
						continue
					}
					places[k].solid++
					fx, fy := left+x, top+y
					if fx >= 0 && fy >= 0 && fx < options.Width && fy < options.Height {
						owner[fy*options.Width+fx] = int16(k)
					}
				}
			}
			places[k].left, places[k].top = left, top
		}
		record := GroundTruthFrame{Camera: camera.ID, Frame: frame, Time: t, People: []GroundTruthPerson{}}
		for k, w := range active {
			visible := 0
			box := image.Rectangle{}
			for y := 0; y < w.image.Height; y++ {
				for x := 0; x < w.image.Width; x++ {
					if w.alpha.Values[y*w.image.Width+x] < 0.5 {
						continue
					}
					fx, fy := places[k].left+x, places[k].top+y
					if fx < 0 || fy < 0 || fx >= options.Width || fy >= options.Height {
						continue
					}
					box = box.Union(image.Rect(fx, fy, fx+1, fy+1))
					if owner[fy*options.Width+fx] == int16(k) {
						visible++
					}
				}
			}
			if box.Empty() {
				continue
			}
			full := image.Rect(places[k].left, places[k].top, places[k].left+w.image.Width, places[k].top+w.image.Height)
			record.People = append(record.People, GroundTruthPerson{
				Identity:   w.visit.Identity,
				Box:        [4]int{box.Min.X, box.Min.Y, box.Max.X, box.Max.Y},
				Truncated:  !full.In(image.Rect(0, 0, options.Width, options.Height)),
				Visibility: math.Round(float64(visible)/float64(max(places[k].solid, 1))*1000) / 1000,
			})
		}
		truth.Frames = append(truth.Frames, record)
		shot, err := camera.photometric(canvas, stream(options.Seed, streamFrame, camera.ID<<24|frame), false)
		if err != nil {
			return err
		}
		mat, err := shot.mat()
		if err != nil {
			return err
		}
		err = writer.Write(mat)
		mat.Close()
		if err != nil {
			return fmt.Errorf("frame %d: %w", frame, err)
		}
	}
	return nil
}
