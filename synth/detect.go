package synth

import (
	"context"
	"image"
	"math"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/detector"
)

// PersonDetector finds people in a BGR frame. The harvest uses it to keep only real person
// shapes, and tests use it to check that the synthetic people are detectable.
type PersonDetector interface {
	DetectPeople(ctx context.Context, frame gocv.Mat) ([]image.Rectangle, error)
}

// FromDetector lets a detector.Detector serve as a PersonDetector. The detector is not safe for
// concurrent use, and neither is the result.
func FromDetector(d *detector.Detector) PersonDetector { return detectorAdapter{d} }

type detectorAdapter struct{ detector *detector.Detector }

func (a detectorAdapter) DetectPeople(ctx context.Context, frame gocv.Mat) ([]image.Rectangle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	detections, err := a.detector.Detect(frame)
	if err != nil {
		return nil, err
	}
	boxes := make([]image.Rectangle, len(detections))
	for i, detection := range detections {
		boxes[i] = toRect(detection.Box)
	}
	return boxes, nil
}

func toRect(box detector.Box) image.Rectangle {
	round := func(v float32) int { return int(math.Round(float64(v))) }
	return image.Rect(round(box.X1), round(box.Y1), round(box.X2), round(box.Y2))
}

// HarvestDetector loads the detector the harvest uses: Yolo-Fastest with fixed settings (not the
// pipeline's configurable ones), so that a seed gives the same data set whatever the config says.
func HarvestDetector(modelsDir string) (*detector.Detector, error) {
	return detector.New(config.Detector{Model: detector.ModelYoloFastest, Confidence: 0.3, NMS: 0.45}, modelsDir)
}

// SharedVideos are the static-camera videos in the shared assets that bodies and backgrounds
// are harvested from.
func SharedVideos(sharedDir string) []string {
	return []string{
		filepath.Join(sharedDir, "video", "vtest.avi"),
		filepath.Join(sharedDir, "video", "one-by-one-person-detection.mp4"),
	}
}
