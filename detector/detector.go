// Package detector finds people in video frames with OpenCV DNN and one of two small models:
// Yolo-Fastest-1.1 body (Darknet, one class) or YOLOX-nano (ONNX, COCO class 0). Frames are
// letterboxed into the network input (square, or shaped to the frame with FitInput), decoded,
// thresholded, filtered by box size and shape, and de-duplicated with non-maximum suppression.
//
// A Detector holds an OpenCV Net and scratch images, so it is not safe for concurrent use: give
// each camera its own.
package detector

import (
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
)

// Model names accepted in config.Detector.Model.
const (
	ModelYoloFastest = "yolo-fastest"
	ModelYOLOXNano   = "yolox-nano"
)

// model is what differs between the two supported networks.
type model struct {
	files      []string // relative to the models directory
	inputSize  int
	scale      float64 // pixel multiplier before the network
	swapRB     bool    // the network wants RGB
	padValue   float64 // letterbox border colour
	centerPad  bool    // pad both sides (else right and bottom only)
	decodeYOLO bool    // Darknet yolo layers (else YOLOX raw head output)
}

var models = map[string]model{
	// Darknet trains on RGB in [0, 1], letterboxed centred on 0.5 grey.
	ModelYoloFastest: {
		files:      []string{"yolo-fastest-1.1_body.cfg", "yolo-fastest-1.1_body.weights"},
		inputSize:  320,
		scale:      1.0 / 255,
		swapRB:     true,
		padValue:   127,
		centerPad:  true,
		decodeYOLO: true,
	},
	// The YOLOX export takes BGR in 0-255 without normalisation (measured: dividing by 255 drops
	// every objectness below 0.001), padded bottom-right with 114 like YOLOX's own preprocessing.
	ModelYOLOXNano: {
		files:     []string{"yolox_nano.onnx"},
		inputSize: 416,
		scale:     1,
		swapRB:    false,
		padValue:  114,
		centerPad: false,
	},
}

// Detector runs one person-detection network on frames.
type Detector struct {
	name       string
	model      model
	options    config.Detector
	size       int
	net        gocv.Net
	outputs    []string
	canvas     gocv.Mat // the letterboxed network input, reused between frames of one size
	canvasFor  image.Point
	letterbox  Letterbox
	candidates []Detection
}

// New loads options.Model from modelsDir.
func New(options config.Detector, modelsDir string) (*Detector, error) {
	spec, ok := models[options.Model]
	if !ok {
		return nil, fmt.Errorf("detector: unknown model %q (want %s or %s)", options.Model, ModelYoloFastest, ModelYOLOXNano)
	}
	paths := make([]string, len(spec.files))
	for i, file := range spec.files {
		paths[i] = filepath.Join(modelsDir, file)
		if _, err := os.Stat(paths[i]); err != nil {
			return nil, fmt.Errorf("detector %s: model file: %w", options.Model, err)
		}
	}
	weights, cfg := paths[0], ""
	if spec.decodeYOLO {
		weights, cfg = paths[1], paths[0]
	}
	if err := checkNet(weights, cfg); err != nil {
		return nil, fmt.Errorf("detector %s: OpenCV cannot load %s: %w", options.Model, filepath.Base(weights), err)
	}
	var net gocv.Net
	if spec.decodeYOLO {
		net = gocv.ReadNet(weights, cfg)
	} else {
		net = gocv.ReadNetFromONNX(paths[0])
	}
	if net.Empty() {
		net.Close()
		return nil, fmt.Errorf("detector %s: OpenCV could not load %s", options.Model, paths[0])
	}
	if err := net.SetPreferableBackend(gocv.NetBackendOpenCV); err != nil {
		net.Close()
		return nil, fmt.Errorf("detector %s: %w", options.Model, err)
	}
	if err := net.SetPreferableTarget(gocv.NetTargetCPU); err != nil {
		net.Close()
		return nil, fmt.Errorf("detector %s: %w", options.Model, err)
	}
	size := options.InputSize
	if size == 0 {
		size = spec.inputSize
	}
	if size <= 0 || size%32 != 0 {
		net.Close()
		return nil, fmt.Errorf("detector %s: input size %d is not a positive multiple of 32", options.Model, size)
	}
	detector := &Detector{name: options.Model, model: spec, options: options, size: size, net: net}
	// Net.GetLayerNames returns freed memory in gocv v0.31.0; the unconnected output layers' ids,
	// looked up one by one, name the outputs safely.
	for _, id := range net.GetUnconnectedOutLayers() {
		layer := net.GetLayer(id)
		detector.outputs = append(detector.outputs, layer.GetName())
		layer.Close()
	}
	if len(detector.outputs) == 0 {
		net.Close()
		return nil, fmt.Errorf("detector %s: network has no outputs", options.Model)
	}
	return detector, nil
}

// Name is the model name recorded in every crop.
func (d *Detector) Name() string { return d.name }

// InputSize is the side of the square network input, or its long side with FitInput.
func (d *Detector) InputSize() int { return d.size }

// Close frees the network and scratch images.
func (d *Detector) Close() error {
	if d.canvasFor != (image.Point{}) {
		d.canvas.Close()
		d.canvasFor = image.Point{}
	}
	return d.net.Close()
}

// Detect finds people in a BGR frame. Boxes are in frame pixels, sorted by descending score.
func (d *Detector) Detect(frame gocv.Mat) ([]Detection, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return nil, errors.New("detector: frame must be a non-empty 8-bit BGR image")
	}
	input := d.prepare(frame)
	inputSize := d.letterbox.Input
	blob := gocv.BlobFromImage(input, d.model.scale, inputSize, gocv.NewScalar(0, 0, 0, 0), d.model.swapRB, false)
	d.net.SetInput(blob, "")
	blob.Close()
	outputs := d.net.ForwardLayers(d.outputs)
	defer func() {
		for i := range outputs {
			outputs[i].Close()
		}
	}()
	threshold := float32(d.options.Confidence)
	d.candidates = d.candidates[:0]
	for _, output := range outputs {
		values, err := output.DataPtrFloat32()
		if err != nil {
			return nil, fmt.Errorf("detector %s: output: %w", d.name, err)
		}
		rowLength := output.Size()[len(output.Size())-1]
		var found []Detection
		if d.model.decodeYOLO {
			found, err = DecodeYOLORegion(values, rowLength, inputSize, threshold)
		} else {
			found, err = DecodeYOLOX(values, rowLength, inputSize, 0, threshold)
		}
		if err != nil {
			return nil, fmt.Errorf("detector %s: %w", d.name, err)
		}
		for _, detection := range found {
			detection.Box = d.letterbox.ToFrame(detection.Box)
			if d.keep(detection.Box) {
				d.candidates = append(d.candidates, detection)
			}
		}
	}
	return NMS(d.candidates, float32(d.options.NMS)), nil
}

// prepare letterboxes frame into the reused canvas. The border is painted only when the frame size
// changes, since the scaled frame always covers the same region.
func (d *Detector) prepare(frame gocv.Mat) gocv.Mat {
	frameSize := image.Pt(frame.Cols(), frame.Rows())
	if frameSize != d.canvasFor {
		if d.canvasFor != (image.Point{}) {
			d.canvas.Close()
		}
		pad := d.model.padValue
		input := image.Pt(d.size, d.size)
		if d.options.FitInput {
			input = InputFor(frameSize.X, frameSize.Y, d.size)
		}
		d.canvas = gocv.NewMatWithSizeFromScalar(gocv.NewScalar(pad, pad, pad, 0), input.Y, input.X, gocv.MatTypeCV8UC3)
		d.canvasFor = frameSize
		d.letterbox = NewLetterbox(frameSize.X, frameSize.Y, input, d.model.centerPad)
	}
	l := d.letterbox
	region := d.canvas.Region(image.Rect(l.PadX, l.PadY, l.PadX+l.ScaledWidth, l.PadY+l.ScaledHeight))
	gocv.Resize(frame, &region, image.Pt(l.ScaledWidth, l.ScaledHeight), 0, 0, gocv.InterpolationLinear)
	region.Close()
	return d.canvas
}

// keep applies the size and shape filters to a box in frame pixels.
func (d *Detector) keep(box Box) bool {
	return Filter{
		MinWidth:  float32(d.options.MinWidth),
		MinHeight: float32(d.options.MinHeight),
		MinAspect: float32(d.options.MinAspect),
		MaxAspect: float32(d.options.MaxAspect),
	}.Keep(box)
}

// Filter drops boxes too small or of the wrong shape to be a person. Zero fields do not filter.
type Filter struct {
	MinWidth, MinHeight float32
	// MinAspect and MaxAspect bound height / width.
	MinAspect, MaxAspect float32
}

// Keep reports whether box passes the filter.
func (f Filter) Keep(box Box) bool {
	width, height := box.Width(), box.Height()
	if width <= 0 || height <= 0 || width < f.MinWidth || height < f.MinHeight {
		return false
	}
	aspect := height / width
	return aspect >= f.MinAspect && (f.MaxAspect == 0 || aspect <= f.MaxAspect)
}
