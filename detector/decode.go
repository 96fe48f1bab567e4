package detector

import (
	"fmt"
	"image"
	"math"
)

// YOLOXStrides are the feature-map strides of the three YOLOX heads, in output order.
var yoloxStrides = [...]int{8, 16, 32}

// DecodeYOLOX turns the raw output of a YOLOX export without built-in decoding (shape
// [anchors, 5+classes], anchors = sum over strides s of (width/s)*(height/s), each grid row by
// row) for an input of the given size into boxes in network-input pixels. Each row holds the
// cell-relative centre offset, the log of width and height in stride units, the objectness and
// the class scores (both already sigmoid-activated by the export). Only class classID is kept,
// scored objectness x class score, at or above threshold.
func DecodeYOLOX(output []float32, rowLength int, input image.Point, classID int, threshold float32) ([]Detection, error) {
	if rowLength < 6 || classID < 0 || classID >= rowLength-5 {
		return nil, fmt.Errorf("yolox: row length %d cannot hold class %d", rowLength, classID)
	}
	anchors := 0
	for _, stride := range yoloxStrides {
		anchors += (input.X / stride) * (input.Y / stride)
	}
	if len(output) != anchors*rowLength {
		return nil, fmt.Errorf("yolox: output has %d values, want %d anchors x %d for input %dx%d", len(output), anchors, rowLength, input.X, input.Y)
	}
	var detections []Detection
	row := 0
	for _, stride := range yoloxStrides {
		for gridY := range input.Y / stride {
			for gridX := range input.X / stride {
				values := output[row*rowLength : (row+1)*rowLength]
				row++
				score := values[4] * values[5+classID]
				if score < threshold {
					continue
				}
				centerX := (values[0] + float32(gridX)) * float32(stride)
				centerY := (values[1] + float32(gridY)) * float32(stride)
				width := float32(math.Exp(float64(values[2]))) * float32(stride)
				height := float32(math.Exp(float64(values[3]))) * float32(stride)
				detections = append(detections, Detection{
					Box:   Box{X1: centerX - width/2, Y1: centerY - height/2, X2: centerX + width/2, Y2: centerY + height/2},
					Score: score,
				})
			}
		}
	}
	return detections, nil
}

// DecodeYOLORegion reads the output of an OpenCV Darknet "yolo" layer: rows of [centre x, centre
// y, width, height] as fractions of the network input, objectness, then per-class scores that
// OpenCV has already multiplied by the objectness. The best class score at or above threshold is
// kept; boxes are returned in network-input pixels.
func DecodeYOLORegion(output []float32, rowLength int, input image.Point, threshold float32) ([]Detection, error) {
	if rowLength < 6 || len(output)%rowLength != 0 {
		return nil, fmt.Errorf("yolo: %d values do not form rows of %d", len(output), rowLength)
	}
	var detections []Detection
	for start := 0; start < len(output); start += rowLength {
		values := output[start : start+rowLength]
		if values[4] < threshold {
			continue // class scores are objectness x class probability, so none can pass.
		}
		score := float32(0)
		for _, classScore := range values[5:] {
			score = max(score, classScore)
		}
		if score < threshold {
			continue
		}
		centerX, centerY := values[0]*float32(input.X), values[1]*float32(input.Y)
		width, height := values[2]*float32(input.X), values[3]*float32(input.Y)
		detections = append(detections, Detection{
			Box:   Box{X1: centerX - width/2, Y1: centerY - height/2, X2: centerX + width/2, Y2: centerY + height/2},
			Score: score,
		})
	}
	return detections, nil
}
