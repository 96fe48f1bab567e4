package detector

import (
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/internal/testassets"
)

// readFrame returns frame number index of a shared video.
func readFrame(t testing.TB, video string, index int) gocv.Mat {
	t.Helper()
	capture, err := gocv.VideoCaptureFile(testassets.Path(t, video))
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	frame := gocv.NewMat()
	for i := 0; i <= index; i++ {
		if !capture.Read(&frame) {
			frame.Close()
			t.Fatalf("%s: frame %d not readable", video, i)
		}
	}
	return frame
}

func TestDetectorFindsWalkers(t *testing.T) {
	frame := readFrame(t, "video/vtest.avi", 300)
	defer frame.Close()
	for _, model := range []string{ModelYoloFastest, ModelYOLOXNano} {
		t.Run(model, func(t *testing.T) {
			options := config.Default().Detector
			options.Model = model
			detector, err := New(options, testassets.Path(t, "models/detector"))
			if err != nil {
				t.Fatal(err)
			}
			defer detector.Close()
			start := time.Now()
			detections, err := detector.Detect(frame)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d people in %v: %+v", model, len(detections), time.Since(start), detections)
			if input := detector.letterbox.Input; input.X != input.Y {
				t.Errorf("the default network input is %v, not square", input)
			}
			// Frame 300 shows 8 walkers; a miss or two and one false hit are tolerable.
			if len(detections) < 5 || len(detections) > 10 {
				t.Errorf("found %d people, want 5-10", len(detections))
			}
			for _, detection := range detections {
				box := detection.Box
				if box.X1 < 0 || box.Y1 < 0 || box.X2 > 768 || box.Y2 > 576 {
					t.Errorf("box %+v outside the 768x576 frame", box)
				}
				if box.Height() < float32(options.MinHeight) || box.Height() < box.Width()*float32(options.MinAspect) {
					t.Errorf("box %+v passed the size/aspect filter", box)
				}
				if detection.Score < float32(options.Confidence) {
					t.Errorf("score %v below threshold", detection.Score)
				}
			}
		})
	}
}

// With FitInput a 4:3 frame goes through a 320x256 (YOLOX: 416x320) input, not a square one. The same frame
// placed in a square canvas padded with the model's border colour goes through the square input
// at the same scale and, the network's grids being 32 pixels, on the same grid alignment: the
// people found must be the same, in the same places (a box decoded against the wrong input side
// would be stretched and shifted by a quarter).
func TestRectangularInputFindsTheSamePeople(t *testing.T) {
	var frames []gocv.Mat
	capture, err := gocv.VideoCaptureFile(testassets.Path(t, "video/vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	for index := 0; index < 795; index++ {
		frame := gocv.NewMat()
		if !capture.Read(&frame) {
			t.Fatalf("frame %d not readable", index)
		}
		if index%50 == 25 {
			frames = append(frames, frame)
		} else {
			frame.Close()
		}
	}
	capture.Close()
	defer func() {
		for _, frame := range frames {
			frame.Close()
		}
	}()
	// Where the frame's top sits in the canvas: Yolo-Fastest centres the frame in its 320x256
	// input at row 8, so at canvas row 96 the square 320x320 input has it at row 40, 32 lower;
	// YOLOX puts it at row 0 in both.
	canvasTop := map[string]int{ModelYoloFastest: 96, ModelYOLOXNano: 0}
	for _, model := range []string{ModelYoloFastest, ModelYOLOXNano} {
		t.Run(model, func(t *testing.T) {
			options := config.Default().Detector
			options.Model = model
			square, err := New(options, testassets.Path(t, "models/detector"))
			if err != nil {
				t.Fatal(err)
			}
			defer square.Close()
			options.FitInput = true
			detector, err := New(options, testassets.Path(t, "models/detector"))
			if err != nil {
				t.Fatal(err)
			}
			defer detector.Close()
			pad, top := models[model].padValue, canvasTop[model]
			var found, matched, squareFound int
			for _, frame := range frames {
				canvas := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(pad, pad, pad, 0), frame.Cols(), frame.Cols(), gocv.MatTypeCV8UC3)
				region := canvas.Region(image.Rect(0, top, frame.Cols(), top+frame.Rows()))
				frame.CopyTo(&region)
				region.Close()
				rectangular, err := detector.Detect(frame)
				if err != nil {
					t.Fatal(err)
				}
				if input := detector.letterbox.Input; input.X == input.Y {
					t.Fatalf("a %dx%d frame went through a square %v input", frame.Cols(), frame.Rows(), input)
				}
				reference, err := square.Detect(canvas)
				canvas.Close()
				if err != nil {
					t.Fatal(err)
				}
				if input := square.letterbox.Input; input.X != input.Y {
					t.Fatalf("the square canvas went through a %v input", input)
				}
				found += len(rectangular)
				squareFound += len(reference)
				for _, want := range reference {
					want.Box.Y1 -= float32(top)
					want.Box.Y2 -= float32(top)
					for _, got := range rectangular {
						if IoU(want.Box, got.Box) >= 0.8 {
							matched++
							break
						}
					}
				}
			}
			t.Logf("%s: %d people through the rectangular input, %d through the square one, %d of those matched", model, found, squareFound, matched)
			if squareFound < 30 || float64(matched) < 0.9*float64(squareFound) || found > squareFound+squareFound/10 {
				t.Errorf("rectangular input: %d people, square: %d, matched %d", found, squareFound, matched)
			}
		})
	}
}

func TestDetectorErrors(t *testing.T) {
	options := config.Default().Detector
	if _, err := New(options, t.TempDir()); err == nil {
		t.Error("missing model files: no error")
	}
	options.Model = "hog"
	if _, err := New(options, testassets.Path(t, "models/detector")); err == nil {
		t.Error("unknown model: no error")
	}
	// Damaged model files are an error, not an abort inside OpenCV.
	shared := testassets.Path(t, "models/detector")
	for _, model := range []string{ModelYoloFastest, ModelYOLOXNano} {
		dir := t.TempDir()
		for _, file := range models[model].files {
			original, err := os.ReadFile(filepath.Join(shared, file))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(file, ".cfg") {
				original = append(original, []byte("\n[convolutional]\nfilters=-3\nsize=banana\n")...)
			} else {
				original = original[:len(original)/3]
			}
			if err := os.WriteFile(filepath.Join(dir, file), original, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		options := config.Default().Detector
		options.Model = model
		if _, err := New(options, dir); err == nil {
			t.Errorf("%s: damaged model loaded without error", model)
		} else {
			t.Logf("%s: %v", model, err)
		}
	}

	options = config.Default().Detector
	detector, err := New(options, shared)
	if err != nil {
		t.Fatal(err)
	}
	defer detector.Close()
	gray := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8U)
	defer gray.Close()
	if _, err := detector.Detect(gray); err == nil {
		t.Error("single-channel frame: no error")
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := detector.Detect(empty); err == nil {
		t.Error("empty frame: no error")
	}
}

func TestSetThreads(t *testing.T) {
	before := Threads()
	defer SetThreads(before)
	SetThreads(1)
	if got := Threads(); got != 1 {
		t.Errorf("Threads() = %d after SetThreads(1)", got)
	}
}

func readFrameB(b *testing.B) gocv.Mat { return readFrame(b, "video/vtest.avi", 300) }
