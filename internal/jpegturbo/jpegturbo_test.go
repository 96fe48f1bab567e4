package jpegturbo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/torch"
)

// realCrops encodes person-sized regions of vtest.avi frames the way ingest does (OpenCV, quality
// 90, 4:2:0), plus one greyscale crop.
func realCrops(t testing.TB) [][]byte {
	t.Helper()
	video, err := gocv.VideoCaptureFile(testassets.Path(t, "video/vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	var crops [][]byte
	for index := 0; index < 200 && len(crops) < 40; index++ {
		if !video.Read(&frame) || frame.Empty() {
			t.Fatalf("vtest.avi ended at frame %d", index)
		}
		if index%20 != 0 {
			continue
		}
		for _, box := range []image.Rectangle{image.Rect(100, 80, 164, 208), image.Rect(390, 200, 457, 347), image.Rect(0, 0, 128, 256), image.Rect(501, 301, 634, 477)} {
			region := frame.Region(box)
			crop := gocv.NewMat()
			gocv.Resize(region, &crop, image.Pt(128, 256), 0, 0, gocv.InterpolationLinear)
			region.Close()
			encoded, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, crop, []int{gocv.IMWriteJpegQuality, 90})
			if err != nil {
				t.Fatal(err)
			}
			crops = append(crops, bytes.Clone(encoded.GetBytes()))
			encoded.Close()
			if len(crops) == 1 {
				grey := gocv.NewMat()
				gocv.CvtColor(crop, &grey, gocv.ColorBGRToGray)
				encoded, err := gocv.IMEncode(gocv.JPEGFileExt, grey)
				if err != nil {
					t.Fatal(err)
				}
				crops = append(crops, bytes.Clone(encoded.GetBytes()))
				encoded.Close()
				grey.Close()
			}
			crop.Close()
		}
	}
	return crops
}

// The pixels must be exactly OpenCV's: same library, same IDCT and upsampling.
func TestMatchesOpenCV(t *testing.T) {
	for n, data := range realCrops(t) {
		ours, err := Decode(data)
		if err != nil {
			t.Fatalf("crop %d: %v", n, err)
		}
		theirs, err := gocv.IMDecode(data, gocv.IMReadColor)
		if err != nil {
			t.Fatal(err)
		}
		if ours.Bounds().Dx() != theirs.Cols() || ours.Bounds().Dy() != theirs.Rows() {
			t.Fatalf("crop %d: %v against OpenCV's %dx%d", n, ours.Bounds(), theirs.Cols(), theirs.Rows())
		}
		bgr := theirs.ToBytes()
		for i := 0; i < len(bgr)/3; i++ {
			got := ours.Pix[4*i : 4*i+4]
			if got[0] != bgr[3*i+2] || got[1] != bgr[3*i+1] || got[2] != bgr[3*i] || got[3] != 255 {
				t.Fatalf("crop %d pixel %d: RGBA %v, OpenCV BGR %v", n, i, got, bgr[3*i:3*i+3])
			}
		}
		theirs.Close()
	}
}

// image/jpeg repeats chroma samples where libjpeg interpolates them, so the two differ at colour
// edges, but only there.
func TestCloseToImageJPEG(t *testing.T) {
	for n, data := range realCrops(t) {
		ours, reference := decodeBoth(t, data)
		var sum float64
		for y := range ours.Bounds().Dy() {
			for x := range ours.Bounds().Dx() {
				r, g, b, _ := reference.At(x, y).RGBA()
				got := ours.RGBAAt(x, y)
				sum += absDiff(got.R, r>>8) + absDiff(got.G, g>>8) + absDiff(got.B, b>>8)
			}
		}
		if mean := sum / float64(3*ours.Bounds().Dx()*ours.Bounds().Dy()); mean > 2 {
			t.Errorf("crop %d: mean difference from image/jpeg %.2f levels", n, mean)
		}
	}
}

// decodeBoth decodes data here and with image/jpeg.
func decodeBoth(t *testing.T, data []byte) (*image.RGBA, image.Image) {
	t.Helper()
	ours, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	reference, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return ours, reference
}

func absDiff(a uint8, b uint32) float64 {
	if uint32(a) > b {
		return float64(uint32(a) - b)
	}
	return float64(b - uint32(a))
}

func TestCMYKFallsBackToImageJPEG(t *testing.T) {
	data, err := os.ReadFile("testdata/cmyk.jpg") // written by PIL, 24x16
	if err != nil {
		t.Fatal(err)
	}
	ours, reference := decodeBoth(t, data)
	if ours.Bounds() != reference.Bounds() {
		t.Fatalf("bounds %v, want %v", ours.Bounds(), reference.Bounds())
	}
	for y := range 16 {
		for x := range 24 {
			if want := color.RGBAModel.Convert(reference.At(x, y)); ours.At(x, y) != want {
				t.Fatalf("pixel %d,%d: %v, want %v", x, y, ours.At(x, y), want)
			}
		}
	}
}

func TestRejectsDamage(t *testing.T) {
	good := realCrops(t)[0]
	// A copy whose SOF0 dimensions are forged to 20000x20000.
	huge := bytes.Clone(good)
	sof := bytes.Index(huge, []byte{0xFF, 0xC0})
	binary.BigEndian.PutUint16(huge[sof+5:], 20000)
	binary.BigEndian.PutUint16(huge[sof+7:], 20000)
	// A copy whose entropy-coded data stops half way, end-of-image marker restored.
	truncated := append(bytes.Clone(good[:len(good)/2]), 0xFF, 0xD9)
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, nil},
		{"not a JPEG", []byte("GIF89a, certainly not a JPEG"), nil},
		{"header only", good[:sof+20], nil},
		{"cut in half", good[:len(good)/2], nil},
		{"cut in half, end marker kept", truncated, nil},
		{"forged size", huge, ErrTooLarge},
	}
	for _, test := range cases {
		t.Run(test.name, func(t *testing.T) {
			picture, err := Decode(test.data)
			if err == nil {
				t.Fatalf("decoded %v, want an error", picture.Bounds())
			}
			if test.want != nil && !errors.Is(err, test.want) {
				t.Fatalf("error %v, want %v", err, test.want)
			}
		})
	}
}

// libjpeg keeps no global state; decoders on many goroutines must agree with one.
func TestConcurrentDecodes(t *testing.T) {
	crops := realCrops(t)
	want := make([]*image.RGBA, len(crops))
	for i, data := range crops {
		var err error
		if want[i], err = Decode(data); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for worker := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 5 {
				i := (worker + round*3) % len(crops)
				got, err := Decode(crops[i])
				if err != nil || !bytes.Equal(got.Pix, want[i].Pix) {
					t.Errorf("worker %d crop %d: %v", worker, i, err)
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkDecode: real 128x256 crops at quality 90, decoded here and, as the embedder did before,
// by image/jpeg plus torch.ToRGB's YCbCr-to-RGB conversion, alternately on the same bytes; medians
// of the passes and their ratio.
func BenchmarkDecode(b *testing.B) {
	crops := realCrops(b)
	var ours, theirs []float64
	for b.Loop() {
		start := time.Now()
		for _, data := range crops {
			if _, err := Decode(data); err != nil {
				b.Fatal(err)
			}
		}
		ours = append(ours, float64(time.Since(start).Microseconds())/float64(len(crops)))
		start = time.Now()
		for _, data := range crops {
			picture, err := jpeg.Decode(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			torch.ToRGB(picture)
		}
		theirs = append(theirs, float64(time.Since(start).Microseconds())/float64(len(crops)))
	}
	slices.Sort(ours)
	slices.Sort(theirs)
	b.ReportMetric(ours[len(ours)/2], "libjpeg-turbo-us/crop")
	b.ReportMetric(theirs[len(theirs)/2], "image-jpeg-us/crop")
	b.ReportMetric(theirs[len(theirs)/2]/ours[len(ours)/2], "speedup")
}
