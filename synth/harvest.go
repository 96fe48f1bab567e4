package synth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"path/filepath"
	"slices"

	"gocv.io/x/gocv"
)

// Body is one real person cut out of a static-camera video: its pixels and a soft foreground
// mask. Bodies carry the shape, pose and shading of a real person; identities are painted on.
type Body struct {
	Image  raster
	Alpha  alphaMap
	Source string // base name of the video it came from
	Frame  int
	Box    image.Rectangle // where it stood in the frame
}

// Plate is a clean background: the per-pixel median of frames of a static camera.
type Plate struct {
	Name   string
	Image  raster
	Ground Ground
}

// Ground is where people stand in a plate and how tall they appear there, learnt from the bodies
// harvested from it. Positions and heights are fractions of the plate height.
type Ground struct {
	FootLow, FootHigh float64 // range of foot positions (10th to 90th percentile)
	Intercept, Slope  float64 // height = Intercept + Slope * foot
}

// HeightAt is the height of a person whose feet are at foot.
func (g Ground) HeightAt(foot float64) float64 { return max(g.Intercept+g.Slope*foot, 0.05) }

// fitGround fits the height of people to where their feet are by least squares: nearer the
// camera is lower in the frame and taller. With too few people it assumes a street scene.
func fitGround(bodies []Body, plateHeight int) Ground {
	if len(bodies) < 5 {
		return Ground{FootLow: 0.6, FootHigh: 0.95, Intercept: -0.075, Slope: 0.5}
	}
	feet := make([]float64, len(bodies))
	var sumFoot, sumHeight, sumFootFoot, sumFootHeight float64
	for i, body := range bodies {
		foot := float64(body.Box.Max.Y) / float64(plateHeight)
		height := float64(body.Box.Dy()) / float64(plateHeight)
		feet[i] = foot
		sumFoot += foot
		sumHeight += height
		sumFootFoot += foot * foot
		sumFootHeight += foot * height
	}
	n := float64(len(bodies))
	slices.Sort(feet)
	ground := Ground{FootLow: feet[len(feet)/10], FootHigh: feet[len(feet)*9/10]}
	variance := sumFootFoot/n - (sumFoot/n)*(sumFoot/n)
	if variance > 1e-6 {
		ground.Slope = (sumFootHeight/n - sumFoot/n*sumHeight/n) / variance
	}
	ground.Slope = max(ground.Slope, 0) // taller further away is a bad fit, not perspective
	ground.Intercept = sumHeight/n - ground.Slope*sumFoot/n
	return ground
}

// Library is what Harvest collects: the material every synthetic image is made from.
type Library struct {
	Bodies []Body
	Plates []Plate
}

// HarvestOptions says where to find real people and how densely to sample.
type HarvestOptions struct {
	// Videos are static-camera videos with people walking through.
	Videos []string
	// Detector keeps the harvest to shapes a person detector agrees are people.
	Detector PersonDetector
	// FrameStep samples every FrameStep-th frame for bodies (default 4: consecutive frames give
	// near-duplicate poses).
	FrameStep int
	// PlateFrames is how many evenly spaced frames make the median background (default 41).
	PlateFrames int
	Logger      *slog.Logger
}

const (
	// foregroundThreshold is the largest per-channel difference from the plate still taken as
	// background; below it, compression noise and small lighting drift.
	foregroundThreshold = 30
	minBodyHeight       = 56
)

// Harvest reads each video twice: once for a background plate (median of frames in which the
// detector sees nobody, or of all sampled frames when people are always present), then for
// bodies: detector boxes whose foreground, taken against that plate, is one clean person.
func Harvest(ctx context.Context, options HarvestOptions) (*Library, error) {
	if options.Detector == nil {
		return nil, errors.New("harvest: no person detector")
	}
	if len(options.Videos) == 0 {
		return nil, errors.New("harvest: no videos")
	}
	if options.FrameStep <= 0 {
		options.FrameStep = 4
	}
	if options.PlateFrames <= 0 {
		options.PlateFrames = 41
	}
	logger := options.Logger
	if logger == nil {
		logger = slog.Default()
	}
	library := &Library{}
	for _, video := range options.Videos {
		plate, err := medianPlate(ctx, video, options)
		if err != nil {
			return nil, fmt.Errorf("harvest %s: %w", video, err)
		}
		bodies, err := harvestBodies(ctx, video, plate, options)
		if err != nil {
			return nil, fmt.Errorf("harvest %s: %w", video, err)
		}
		logger.Info("harvested", "video", filepath.Base(video), "bodies", len(bodies))
		library.Plates = append(library.Plates, Plate{Name: filepath.Base(video), Image: plate, Ground: fitGround(bodies, plate.Height)})
		library.Bodies = append(library.Bodies, bodies...)
	}
	if len(library.Bodies) == 0 {
		return nil, errors.New("harvest: no usable person found in the videos")
	}
	return library, nil
}

// frameCount counts frames by decoding: container frame counts are unreliable.
func frameCount(ctx context.Context, video string) (int, error) {
	capture, err := gocv.VideoCaptureFile(video)
	if err != nil {
		return 0, err
	}
	defer capture.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	count := 0
	for capture.Read(&frame) && !frame.Empty() {
		if count%256 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		count++
	}
	return count, nil
}

// eachFrame decodes video and calls visit for every frame index that keep accepts.
func eachFrame(ctx context.Context, video string, keep func(int) bool, visit func(int, gocv.Mat) error) error {
	capture, err := gocv.VideoCaptureFile(video)
	if err != nil {
		return err
	}
	defer capture.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	for index := 0; ; index++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Grab cannot report the end of the video in this gocv, so every frame is read.
		if !capture.Read(&frame) || frame.Empty() {
			return nil
		}
		if !keep(index) {
			continue
		}
		if err := visit(index, frame); err != nil {
			return err
		}
	}
}

func medianPlate(ctx context.Context, video string, options HarvestOptions) (raster, error) {
	count, err := frameCount(ctx, video)
	if err != nil {
		return raster{}, err
	}
	if count == 0 {
		return raster{}, errors.New("no frames")
	}
	step := max(count/options.PlateFrames, 1)
	var empty, all []raster
	err = eachFrame(ctx, video, func(index int) bool { return index%step == 0 }, func(_ int, frame gocv.Mat) error {
		if frame.Type() != gocv.MatTypeCV8UC3 {
			return fmt.Errorf("frame type %v, want 8-bit BGR", frame.Type())
		}
		people, err := options.Detector.DetectPeople(ctx, frame)
		if err != nil {
			return err
		}
		image, err := rasterFromMat(frame)
		if err != nil {
			return err
		}
		all = append(all, image)
		if len(people) == 0 {
			empty = append(empty, image)
		}
		return nil
	})
	if err != nil {
		return raster{}, err
	}
	frames := all
	if len(empty) >= 9 {
		frames = empty
	}
	if len(frames) == 0 {
		return raster{}, errors.New("no decodable frames")
	}
	plate := newRaster(frames[0].Width, frames[0].Height)
	values := make([]uint8, len(frames))
	for i := range plate.Pix {
		for j, frame := range frames {
			values[j] = frame.Pix[i]
		}
		slices.Sort(values)
		plate.Pix[i] = values[len(values)/2]
	}
	return plate, nil
}

// harvestBodies cuts isolated, whole people out of the sampled frames.
func harvestBodies(ctx context.Context, video string, plate raster, options HarvestOptions) ([]Body, error) {
	var bodies []Body
	type kept struct {
		frame int
		box   image.Rectangle
	}
	var recent []kept
	openKernel := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(3, 3))
	defer openKernel.Close()
	closeKernel := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(7, 7))
	defer closeKernel.Close()
	source := filepath.Base(video)
	err := eachFrame(ctx, video, func(index int) bool { return index%options.FrameStep == 0 }, func(index int, frame gocv.Mat) error {
		people, err := options.Detector.DetectPeople(ctx, frame)
		if err != nil || len(people) == 0 {
			return err
		}
		image, err := rasterFromMat(frame)
		if err != nil {
			return err
		}
		if image.Width != plate.Width || image.Height != plate.Height {
			return fmt.Errorf("frame %d is %dx%d, plate %dx%d", index, image.Width, image.Height, plate.Width, plate.Height)
		}
		mask, err := foregroundMask(image, plate, openKernel, closeKernel)
		if err != nil {
			return err
		}
		defer mask.Close()
		for i, box := range people {
			if !isolated(i, people, image.Width, image.Height) {
				continue
			}
			body, ok, err := cutBody(image, mask, box)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			tight := body.box
			duplicate := false
			for _, previous := range recent {
				if index-previous.frame <= 40 && rectIoU(previous.box, tight) > 0.6 {
					duplicate = true
					break
				}
			}
			if duplicate {
				continue
			}
			recent = append(recent, kept{frame: index, box: tight})
			bodies = append(bodies, Body{Image: body.image, Alpha: body.alpha, Source: source, Frame: index, Box: tight})
		}
		return nil
	})
	return bodies, err
}

// isolated reports whether people[i] is wholly inside the frame and apart from everyone else:
// touching boxes would merge two people into one foreground blob.
func isolated(i int, people []image.Rectangle, width, height int) bool {
	box := people[i]
	const margin = 3
	if box.Min.X < margin || box.Min.Y < margin || box.Max.X > width-margin || box.Max.Y > height-margin {
		return false
	}
	if box.Dy() < minBodyHeight {
		return false
	}
	grown := box.Inset(-box.Dx() / 6)
	for j, other := range people {
		if j != i && grown.Overlaps(other) {
			return false
		}
	}
	return true
}

func rectIoU(a, b image.Rectangle) float64 {
	inter := a.Intersect(b)
	if inter.Empty() {
		return 0
	}
	interArea := float64(inter.Dx() * inter.Dy())
	return interArea / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - interArea)
}

// foregroundMask marks pixels that differ from the plate, cleaned of speckle and small holes.
func foregroundMask(frame, plate raster, openKernel, closeKernel gocv.Mat) (gocv.Mat, error) {
	bits := make([]uint8, frame.Width*frame.Height)
	for i := range bits {
		difference := 0
		for c := 0; c < 3; c++ {
			d := int(frame.Pix[i*3+c]) - int(plate.Pix[i*3+c])
			difference = max(difference, d, -d)
		}
		if difference > foregroundThreshold && !isShadow(frame.Pix[i*3:i*3+3], plate.Pix[i*3:i*3+3]) {
			bits[i] = 255
		}
	}
	mask, err := gocv.NewMatFromBytes(frame.Height, frame.Width, gocv.MatTypeCV8U, bits)
	if err != nil {
		return gocv.Mat{}, err
	}
	defer mask.Close()
	opened := gocv.NewMat()
	defer opened.Close()
	gocv.MorphologyEx(mask, &opened, gocv.MorphOpen, openKernel)
	closed := gocv.NewMat()
	gocv.MorphologyEx(opened, &closed, gocv.MorphClose, closeKernel)
	return closed, nil
}

// isShadow tells a cast shadow from a person the way MOG2 does: the ground only got darker, by
// about the same factor in every channel. Shadows cut out with a body would be painted as shoes.
func isShadow(pixel, background []uint8) bool {
	var ratios [3]float32
	for c := 0; c < 3; c++ {
		if background[c] < 20 {
			return false
		}
		ratios[c] = float32(pixel[c]) / float32(background[c])
		if ratios[c] < 0.35 || ratios[c] > 0.95 {
			return false
		}
	}
	spread := max(ratios[0], ratios[1], ratios[2]) - min(ratios[0], ratios[1], ratios[2])
	return spread < 0.12
}

type cutout struct {
	image raster
	alpha alphaMap
	box   image.Rectangle
}

// cutBody takes the largest foreground blob near the middle of the detector box and accepts it
// when it fills the box the way one whole upright person does.
func cutBody(frame raster, mask gocv.Mat, box image.Rectangle) (cutout, bool, error) {
	region := box.Inset(-box.Dx() / 8).Intersect(image.Rect(0, 0, frame.Width, frame.Height))
	sub := mask.Region(region)
	defer sub.Close()
	roi := sub.Clone()
	defer roi.Close()
	labels, stats, centroids := gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer labels.Close()
	defer stats.Close()
	defer centroids.Close()
	count := gocv.ConnectedComponentsWithStats(roi, &labels, &stats, &centroids)
	best, bestArea := -1, 0
	centerX := box.Min.X + box.Dx()/2 - region.Min.X
	for label := 1; label < count; label++ {
		left := int(stats.GetIntAt(label, int(gocv.CC_STAT_LEFT)))
		width := int(stats.GetIntAt(label, int(gocv.CC_STAT_WIDTH)))
		area := int(stats.GetIntAt(label, int(gocv.CC_STAT_AREA)))
		if left <= centerX && centerX < left+width && area > bestArea {
			best, bestArea = label, area
		}
	}
	if best < 0 {
		return cutout{}, false, nil
	}
	left := int(stats.GetIntAt(best, int(gocv.CC_STAT_LEFT)))
	top := int(stats.GetIntAt(best, int(gocv.CC_STAT_TOP)))
	width := int(stats.GetIntAt(best, int(gocv.CC_STAT_WIDTH)))
	height := int(stats.GetIntAt(best, int(gocv.CC_STAT_HEIGHT)))
	fill := float64(bestArea) / float64(box.Dx()*box.Dy())
	aspect := float64(height) / float64(width)
	switch {
	case fill < 0.3 || fill > 0.9,
		float64(height) < 0.8*float64(box.Dy()),
		aspect < 1.6 || aspect > 5,
		height < minBodyHeight,
		left == 0 || left+width >= region.Dx(): // runs into whatever is beside the person
		return cutout{}, false, nil
	}
	labelBytes := labels.ToBytes() // int32 labels, native (little-endian) order
	label := func(x, y int) int32 {
		i := (y*region.Dx() + x) * 4
		return int32(binary.LittleEndian.Uint32(labelBytes[i : i+4]))
	}
	hard := make([]uint8, width*height)
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			if label(left+x, top+y) == int32(best) {
				hard[y*width+x] = 255
			}
		}
	}
	fillHoles(hard, width, height)
	if !solidTorso(hard, width, height) {
		return cutout{}, false, nil
	}
	alpha, err := softAlpha(hard, width, height)
	if err != nil {
		return cutout{}, false, err
	}
	tight := image.Rect(left, top, left+width, top+height).Add(region.Min)
	return cutout{image: frame.sub(tight), alpha: alpha, box: tight}, true, nil
}

// fillHoles fills background pockets that the frame border cannot reach: clothing that matched
// the background in places (dark trousers on a dark floor). The gap between the legs opens to
// the border and stays.
func fillHoles(hard []uint8, width, height int) {
	reached := make([]bool, len(hard))
	var queue []int
	push := func(x, y int) {
		if x < 0 || y < 0 || x >= width || y >= height {
			return
		}
		i := y*width + x
		if hard[i] == 0 && !reached[i] {
			reached[i] = true
			queue = append(queue, i)
		}
	}
	for x := 0; x < width; x++ {
		push(x, 0)
		push(x, height-1)
	}
	for y := 0; y < height; y++ {
		push(0, y)
		push(width-1, y)
	}
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		x, y := i%width, i/width
		push(x-1, y)
		push(x+1, y)
		push(x, y-1)
		push(x, y+1)
	}
	for i := range hard {
		if hard[i] == 0 && !reached[i] {
			hard[i] = 255
		}
	}
}

// solidTorso rejects masks with holes through the torso, where clothing matched the background
// (a grey top before a white wall): painted, they look like a head floating over legs.
func solidTorso(hard []uint8, width, height int) bool {
	var total float64
	rows := 0
	for y := int(0.15 * float64(height)); y < int(0.5*float64(height)); y++ {
		count := 0
		for x := 0; x < width; x++ {
			if hard[y*width+x] != 0 {
				count++
			}
		}
		coverage := float64(count) / float64(width)
		if coverage < 0.12 {
			return false
		}
		total += coverage
		rows++
	}
	return rows > 0 && total/float64(rows) >= 0.3
}

// softAlpha erodes the hard mask by a pixel (its rim is mixed with background) and blurs it, so
// the body blends into a new background without a halo or jagged edge.
func softAlpha(hard []uint8, width, height int) (alphaMap, error) {
	mask, err := gocv.NewMatFromBytes(height, width, gocv.MatTypeCV8U, hard)
	if err != nil {
		return alphaMap{}, err
	}
	defer mask.Close()
	kernel := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(3, 3))
	defer kernel.Close()
	eroded := gocv.NewMat()
	defer eroded.Close()
	gocv.Erode(mask, &eroded, kernel)
	blurred := gocv.NewMat()
	defer blurred.Close()
	gocv.GaussianBlur(eroded, &blurred, image.Pt(5, 5), 1.0, 1.0, gocv.BorderReplicate)
	bytes := blurred.ToBytes()
	values := make([]float32, len(bytes))
	for i, value := range bytes {
		values[i] = float32(value) / 255
	}
	return alphaMap{Width: width, Height: height, Values: values}, nil
}
