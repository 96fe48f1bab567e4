package jpegturbo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		if err := sameAsOpenCV(data, ours); err != nil {
			t.Fatalf("crop %d: %v", n, err)
		}
	}
}

// sameAsOpenCV compares a decoded image with OpenCV's decoding of the same bytes.
func sameAsOpenCV(data []byte, ours *image.RGBA) error {
	theirs, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil {
		return err
	}
	defer theirs.Close()
	if theirs.Empty() {
		return errors.New("OpenCV cannot decode it")
	}
	if ours.Bounds().Dx() != theirs.Cols() || ours.Bounds().Dy() != theirs.Rows() {
		return fmt.Errorf("%v against OpenCV's %dx%d", ours.Bounds(), theirs.Cols(), theirs.Rows())
	}
	bgr := theirs.ToBytes()
	for i := 0; i < len(bgr)/3; i++ {
		got := ours.Pix[4*i : 4*i+4]
		if got[0] != bgr[3*i+2] || got[1] != bgr[3*i+1] || got[2] != bgr[3*i] || got[3] != 255 {
			return fmt.Errorf("pixel %d: RGBA %v, OpenCV BGR %v", i, got, bgr[3*i:3*i+3])
		}
	}
	return nil
}

// Progressive JPEGs decode like baseline ones, up to MaxScans scans. The test files come from
// testdata/scans.c; a valid JPEG with more scans (OpenCV decodes it) is refused.
func TestProgressive(t *testing.T) {
	crop, err := gocv.IMDecode(realCrops(t)[0], gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer crop.Close()
	encoded, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, crop, []int{gocv.IMWriteJpegQuality, 90, gocv.IMWriteJpegProgressive, 1})
	if err != nil {
		t.Fatal(err)
	}
	openCVProgressive := bytes.Clone(encoded.GetBytes())
	encoded.Close()
	cases := []struct {
		name    string
		data    []byte
		refused bool
	}{
		{"OpenCV progressive crop", openCVProgressive, false},
		{"380 scans", readTestdata(t, "scans-380.jpg"), false},
		{"760 scans", readTestdata(t, "scans-760.jpg"), true},
	}
	for _, test := range cases {
		t.Run(test.name, func(t *testing.T) {
			picture, err := Decode(test.data)
			if test.refused {
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d progressive scans", MaxScans)) {
					t.Fatalf("error %v, want the scan limit", err)
				}
				opencv, err := gocv.IMDecode(test.data, gocv.IMReadColor)
				if err != nil || opencv.Empty() {
					t.Fatalf("OpenCV cannot decode it either (%v): the file is broken, not just long", err)
				}
				opencv.Close()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := sameAsOpenCV(test.data, picture); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
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
	data := readTestdata(t, "cmyk.jpg") // written by PIL, 24x16
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

// FuzzDecode feeds Decode damaged and forged JPEGs: it must return an error or an image of the
// size the header gives, never crash (libjpeg's own error handling would exit the process) and
// never read or write outside its buffers.
func FuzzDecode(f *testing.F) {
	crops := realCrops(f)
	for _, data := range crops[:3] {
		f.Add(data)
	}
	for _, name := range []string{"cmyk.jpg", "scans-380.jpg"} {
		f.Add(readTestdata(f, name))
	}
	small := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := range small.Pix {
		small.Pix[i] = uint8(i * 7)
	}
	var encoded bytes.Buffer
	if err := jpeg.Encode(&encoded, small, &jpeg.Options{Quality: 75}); err != nil {
		f.Fatal(err)
	}
	f.Add(encoded.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		picture, err := Decode(data)
		if err != nil {
			return
		}
		config, err := jpeg.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("decoded %v but the header does not parse: %v", picture.Bounds(), err)
		}
		if picture.Bounds() != image.Rect(0, 0, config.Width, config.Height) {
			t.Fatalf("decoded %v, header says %dx%d", picture.Bounds(), config.Width, config.Height)
		}
		for i := 3; i < len(picture.Pix); i += 4 {
			if picture.Pix[i] != 255 {
				t.Fatalf("alpha %d at pixel %d", picture.Pix[i], i/4)
			}
		}
	})
}
