//go:build !nogocv

// Tests that need OpenCV (gocv): real crops from vtest.avi and the ONNX reference. Build with
// -tags nogocv for machines without OpenCV (the GPU check); testCrops then synthesises crops.

package torch

import (
	"image"
	"math"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/internal/testassets"
)

// vtestCrops returns at least want person crops (packed RGB, original size) from vtest.avi, found
// by Yolo-Fastest-1.1 body through OpenCV DNN. The detection is deliberately minimal (stretch the
// frame to 320x320, decode the yolo rows, greedy NMS): the crops only have to be real people.
func vtestCrops(t testing.TB, want int) []RGB {
	t.Helper()
	video := testassets.Path(t, "video/vtest.avi")
	cfg := testassets.Path(t, "models/detector/yolo-fastest-1.1_body.cfg")
	weights := testassets.Path(t, "models/detector/yolo-fastest-1.1_body.weights")

	net := gocv.ReadNet(weights, cfg)
	if net.Empty() {
		t.Fatalf("OpenCV could not load %s", cfg)
	}
	defer net.Close()
	var outputs []string
	for _, id := range net.GetUnconnectedOutLayers() {
		layer := net.GetLayer(id)
		outputs = append(outputs, layer.GetName())
		layer.Close()
	}

	capture, err := gocv.VideoCaptureFile(video)
	if err != nil {
		t.Fatalf("open %s: %v", video, err)
	}
	defer capture.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	rgb := gocv.NewMat()
	defer rgb.Close()

	var crops []RGB
	for index := 0; len(crops) < want; index++ {
		if !capture.Read(&frame) || frame.Empty() {
			t.Fatalf("vtest.avi ended after %d frames with only %d crops", index, len(crops))
		}
		if index%40 != 0 { // spread the crops over the video
			continue
		}
		width, height := frame.Cols(), frame.Rows()
		blob := gocv.BlobFromImage(frame, 1.0/255, image.Pt(320, 320), gocv.NewScalar(0, 0, 0, 0), true, false)
		net.SetInput(blob, "")
		blobs := net.ForwardLayers(outputs)
		blob.Close()
		type box struct {
			rect  image.Rectangle
			score float32
		}
		var boxes []box
		for _, out := range blobs {
			values, err := out.DataPtrFloat32()
			if err != nil {
				t.Fatal(err)
			}
			cols := out.Cols()
			for row := 0; row+cols <= len(values); row += cols {
				score := values[row+5] // OpenCV already multiplied it by the objectness
				if score < 0.5 {
					continue
				}
				cx, cy := values[row]*float32(width), values[row+1]*float32(height)
				w, h := values[row+2]*float32(width), values[row+3]*float32(height)
				r := image.Rect(int(cx-w/2), int(cy-h/2), int(cx+w/2), int(cy+h/2)).Intersect(image.Rect(0, 0, width, height))
				if r.Dx() < 16 || r.Dy() < 40 || r.Dy() < r.Dx() {
					continue
				}
				boxes = append(boxes, box{r, score})
			}
			out.Close()
		}
		// Greedy NMS, highest score first.
		for i := range boxes {
			for j := i + 1; j < len(boxes); j++ {
				if boxes[j].score > boxes[i].score {
					boxes[i], boxes[j] = boxes[j], boxes[i]
				}
			}
		}
		var kept []image.Rectangle
		for _, b := range boxes {
			overlap := false
			for _, k := range kept {
				inter := b.rect.Intersect(k)
				union := b.rect.Dx()*b.rect.Dy() + k.Dx()*k.Dy() - inter.Dx()*inter.Dy()
				if float64(inter.Dx()*inter.Dy()) > 0.45*float64(union) {
					overlap = true
				}
			}
			if !overlap {
				kept = append(kept, b.rect)
			}
		}
		gocv.CvtColor(frame, &rgb, gocv.ColorBGRToRGB)
		for _, r := range kept {
			region := rgb.Region(r)
			crop := region.Clone()
			region.Close()
			pix, err := crop.DataPtrUint8()
			if err != nil {
				t.Fatal(err)
			}
			crops = append(crops, RGB{Width: crop.Cols(), Height: crop.Rows(), Pix: append([]byte(nil), pix...)})
			crop.Close()
		}
	}
	return crops
}

// testCrops returns n real person crops.
func testCrops(t testing.TB, n int) []RGB { return vtestCrops(t, n)[:n] }

// onnxInput builds the [1,3,H,W] float32 blob the ONNX export expects from a resized RGB crop:
// /255, then ImageNet mean/std.
func onnxInput(t testing.TB, img RGB) gocv.Mat {
	t.Helper()
	plane := img.Width * img.Height
	values := make([]float32, 3*plane)
	for i := range plane {
		for c := range 3 {
			values[c*plane+i] = (float32(img.Pix[i*3+c])/255 - ImageNetMean[c]) / ImageNetStd[c]
		}
	}
	bytes := make([]byte, 4*len(values))
	for i, v := range values {
		bits := math.Float32bits(v)
		bytes[4*i], bytes[4*i+1], bytes[4*i+2], bytes[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
	}
	blob, err := gocv.NewMatWithSizesFromBytes([]int{1, 3, img.Height, img.Width}, gocv.MatTypeCV32F, bytes)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// TestOSNetMatchesONNX is the acceptance check against an independent implementation: our OSNet
// x0.25 loaded from the torchreid .pth must agree with the ONNX export of the same weights, run by
// OpenCV DNN, on real crops.
func TestOSNetMatchesONNX(t *testing.T) {
	ctx := t.Context()
	start := time.Now()
	crops := vtestCrops(t, 60)
	defer func() { t.Logf("took %v", time.Since(start)) }()
	device := openCPU(t)
	model, report := modelWithWeights(t, device, ModelOptions{Arch: ArchOSNetX0_25}, testassets.Path(t, "models/reid/osnet_x0_25_msmt17.pth"))
	if len(report.Missing) != 0 || len(report.Unexpected) != 0 {
		t.Fatalf("missing %v, unexpected %v", report.Missing, report.Unexpected)
	}
	if len(report.Loaded) != 565 || len(report.Ignored) != 2 {
		t.Fatalf("loaded %d (want 565), ignored %v (want the classifier's 2)", len(report.Loaded), report.Ignored)
	}

	net := gocv.ReadNetFromONNX(testassets.Path(t, "models/reid/osnet_x0_25_msmt17.onnx"))
	if net.Empty() {
		t.Fatal("OpenCV could not load the ONNX model")
	}
	defer net.Close()

	// Our features first, then OpenCV's: interleaving them makes libtorch's spinning OpenMP
	// workers and OpenCV's thread pool fight over the cores.
	resized := make([]RGB, len(crops))
	ours := make([][]float32, len(crops))
	for i, crop := range crops {
		resized[i] = ResizeRGB(crop, 256, 128)
		features, err := model.Features(ctx, Batch{N: 1, Height: 256, Width: 128, Pix: resized[i].Pix}, false)
		if err != nil {
			t.Fatal(err)
		}
		ours[i] = features[0]
	}
	worst := 1.0
	for i, crop := range crops {
		blob := onnxInput(t, resized[i])
		net.SetInput(blob, "")
		out := net.Forward("")
		theirs, err := out.DataPtrFloat32()
		if err != nil {
			t.Fatal(err)
		}
		if len(theirs) != 512 {
			t.Fatalf("ONNX output has %d values", len(theirs))
		}
		c := cosine(ours[i], theirs)
		worst = min(worst, c)
		if c < 0.999 {
			t.Errorf("crop %d (%dx%d): cosine %.6f < 0.999", i, crop.Width, crop.Height, c)
		}
		out.Close()
		blob.Close()
	}
	t.Logf("%d crops, worst cosine %.6f", len(crops), worst)
}

// TestResizeMatchesOpenCV checks our bilinear resize against cv::resize INTER_LINEAR.
func TestResizeMatchesOpenCV(t *testing.T) {
	crops := vtestCrops(t, 5)
	for i, crop := range crops[:5] {
		ours := ResizeRGB(crop, 256, 128)
		src, err := gocv.NewMatFromBytes(crop.Height, crop.Width, gocv.MatTypeCV8UC3, crop.Pix)
		if err != nil {
			t.Fatal(err)
		}
		dst := gocv.NewMat()
		gocv.Resize(src, &dst, image.Pt(128, 256), 0, 0, gocv.InterpolationLinear)
		theirs, err := dst.DataPtrUint8()
		if err != nil {
			t.Fatal(err)
		}
		worst := 0
		for j := range theirs {
			diff := int(theirs[j]) - int(ours.Pix[j])
			worst = max(worst, diff, -diff)
		}
		if worst > 1 {
			t.Errorf("crop %d: resize differs from OpenCV by up to %d levels", i, worst)
		}
		src.Close()
		dst.Close()
	}
}
