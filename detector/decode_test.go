package detector

import (
	"image"
	"math"
	"testing"
)

func near(a, b float32) bool { return math.Abs(float64(a-b)) < 1e-3 }

func nearBox(a, b Box) bool {
	return near(a.X1, b.X1) && near(a.Y1, b.Y1) && near(a.X2, b.X2) && near(a.Y2, b.Y2)
}

func TestIoU(t *testing.T) {
	tests := []struct {
		name string
		a, b Box
		want float32
	}{
		{"identical", Box{0, 0, 10, 10}, Box{0, 0, 10, 10}, 1},
		{"disjoint", Box{0, 0, 10, 10}, Box{20, 20, 30, 30}, 0},
		{"touching", Box{0, 0, 10, 10}, Box{10, 0, 20, 10}, 0},
		{"half", Box{0, 0, 10, 10}, Box{5, 0, 15, 10}, 50.0 / 150},
		{"contained", Box{0, 0, 10, 10}, Box{0, 0, 5, 10}, 0.5},
	}
	for _, test := range tests {
		if got := IoU(test.a, test.b); !near(got, test.want) {
			t.Errorf("%s: IoU = %v, want %v", test.name, got, test.want)
		}
	}
}

func TestNMS(t *testing.T) {
	tests := []struct {
		name      string
		in        []Detection
		threshold float32
		want      []float32 // kept scores in order
	}{
		{"empty", nil, 0.45, nil},
		{
			"overlapping pair keeps the higher score",
			[]Detection{{Box{0, 0, 10, 20}, 0.6}, {Box{1, 1, 11, 21}, 0.9}},
			0.45, []float32{0.9},
		},
		{
			"disjoint boxes all kept, sorted",
			[]Detection{{Box{0, 0, 10, 20}, 0.5}, {Box{50, 0, 60, 20}, 0.7}, {Box{100, 0, 110, 20}, 0.6}},
			0.45, []float32{0.7, 0.6, 0.5},
		},
		{
			"overlap below the threshold survives",
			[]Detection{{Box{0, 0, 10, 10}, 0.9}, {Box{5, 0, 15, 10}, 0.8}}, // IoU 1/3
			0.45, []float32{0.9, 0.8},
		},
		{
			"overlap above a lower threshold is suppressed",
			[]Detection{{Box{0, 0, 10, 10}, 0.9}, {Box{5, 0, 15, 10}, 0.8}},
			0.3, []float32{0.9},
		},
		{
			"suppression is against kept boxes only (chain)",
			// b overlaps a and is dropped; c overlaps only b, so it stays.
			[]Detection{{Box{0, 0, 10, 10}, 0.9}, {Box{3, 0, 13, 10}, 0.8}, {Box{9, 0, 19, 10}, 0.7}},
			0.4, []float32{0.9, 0.7},
		},
	}
	for _, test := range tests {
		got := NMS(test.in, test.threshold)
		if len(got) != len(test.want) {
			t.Errorf("%s: kept %d, want %d (%+v)", test.name, len(got), len(test.want), got)
			continue
		}
		for i := range got {
			if got[i].Score != test.want[i] {
				t.Errorf("%s: kept[%d] score %v, want %v", test.name, i, got[i].Score, test.want[i])
			}
		}
	}
}

func TestInputFor(t *testing.T) {
	tests := []struct {
		name                string
		width, height, size int
		want                image.Point
	}{
		{"4:3 (vtest.avi)", 768, 576, 320, image.Pt(320, 256)},
		{"16:9", 1920, 1080, 320, image.Pt(320, 192)},
		{"16:9, YOLOX", 1280, 720, 416, image.Pt(416, 256)},
		{"portrait", 1080, 1920, 320, image.Pt(192, 320)},
		{"square", 500, 500, 320, image.Pt(320, 320)},
		{"already a multiple of 32", 640, 320, 320, image.Pt(320, 160)},
		{"a sliver", 4000, 10, 320, image.Pt(320, 32)},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := InputFor(test.width, test.height, test.size)
			if got != test.want {
				t.Fatalf("InputFor(%d, %d, %d) = %v, want %v", test.width, test.height, test.size, got, test.want)
			}
			// The whole scaled frame fits, with less than one stride of padding.
			l := NewLetterbox(test.width, test.height, got, true)
			if l.ScaledWidth > got.X || l.ScaledHeight > got.Y || got.X-l.ScaledWidth >= stride || got.Y-l.ScaledHeight >= stride {
				t.Fatalf("letterbox %+v in input %v", l, got)
			}
		})
	}
}

func TestLetterbox(t *testing.T) {
	tests := []struct {
		name                 string
		width, height        int
		input                image.Point
		center               bool
		wantPadX, wantPadY   int
		wantScaledW, scaledH int
		inInput, inFrame     Box
	}{
		{
			"wide frame centred (Darknet)", 768, 576, image.Pt(320, 256), true, 0, 8, 320, 240,
			// input y 8 is frame y 0; scale 320/768.
			Box{0, 8, 160, 248}, Box{0, 0, 384, 576},
		},
		{
			"wide frame in a square input", 768, 576, image.Pt(320, 320), true, 0, 40, 320, 240,
			Box{0, 40, 160, 280}, Box{0, 0, 384, 576},
		},
		{
			"wide frame top-left (YOLOX)", 768, 576, image.Pt(416, 320), false, 0, 0, 416, 312,
			Box{41.6, 52, 83.2, 104}, Box{76.8, 96, 153.6, 192},
		},
		{
			"tall frame centred", 480, 640, image.Pt(256, 320), true, 8, 0, 240, 320,
			Box{8, 0, 248, 320}, Box{0, 0, 480, 640},
		},
		{
			"box in the padding is clipped to the frame", 768, 576, image.Pt(320, 256), true, 0, 8, 320, 240,
			Box{-10, 0, 20, 18}, Box{0, 0, 48, 24},
		},
	}
	for _, test := range tests {
		l := NewLetterbox(test.width, test.height, test.input, test.center)
		if l.Input != test.input || l.PadX != test.wantPadX || l.PadY != test.wantPadY || l.ScaledWidth != test.wantScaledW || l.ScaledHeight != test.scaledH {
			t.Errorf("%s: letterbox %+v", test.name, l)
		}
		if got := l.ToFrame(test.inInput); !nearBox(got, test.inFrame) {
			t.Errorf("%s: ToFrame(%+v) = %+v, want %+v", test.name, test.inInput, got, test.inFrame)
		}
	}
}

func TestDecodeYOLOX(t *testing.T) {
	const rowLength = 7 // 2 classes
	// A 64x32 input: grids 8x4, 4x2 and 2x1, each row by row: 32 + 8 + 2 = 42 anchors.
	input := image.Pt(64, 32)
	output := make([]float32, 42*rowLength)
	set := func(anchor int, values ...float32) { copy(output[anchor*rowLength:], values) }
	// Stride 8, cell (x=3, y=2) is anchor 2*8+3 = 19: centre (3.5*8, 2.5*8) = (28, 20),
	// size exp(0)*8 = 8 wide, exp(ln 3)*8 = 24 tall; person score 0.9*0.8.
	set(19, 0.5, 0.5, 0, float32(math.Log(3)), 0.9, 0.8, 0.1)
	// Stride 16, cell (x=3, y=1) is anchor 32 + 1*4 + 3 = 39: centre (48, 16), size 16x32.
	set(39, 0, 0, 0, float32(math.Log(2)), 0.7, 0.9, 0)
	// Stride 32, cell (1, 0) is anchor 40 + 1 = 41: strong class 1 only, not a person.
	set(41, 0, 0, 0, 0, 0.99, 0.05, 0.99)
	// Below threshold: objectness x class = 0.2.
	set(0, 0, 0, 0, 0, 0.4, 0.5, 0)

	detections, err := DecodeYOLOX(output, rowLength, input, 0, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	want := []Detection{
		{Box{24, 8, 32, 32}, 0.72},
		{Box{40, 0, 56, 32}, 0.63},
	}
	if len(detections) != len(want) {
		t.Fatalf("decoded %d boxes, want %d: %+v", len(detections), len(want), detections)
	}
	for i := range want {
		if !nearBox(detections[i].Box, want[i].Box) || !near(detections[i].Score, want[i].Score) {
			t.Errorf("box %d = %+v, want %+v", i, detections[i], want[i])
		}
	}
	if _, err := DecodeYOLOX(output[:rowLength*10], rowLength, input, 0, 0.3); err == nil {
		t.Error("short output: no error")
	}
	if _, err := DecodeYOLOX(output, rowLength, image.Pt(32, 64), 0, 0.3); err != nil {
		t.Errorf("a 32x64 input has as many anchors: %v", err)
	}
	if _, err := DecodeYOLOX(output, rowLength, image.Pt(64, 64), 0, 0.3); err == nil {
		t.Error("output for another input size: no error")
	}
	if _, err := DecodeYOLOX(output, rowLength, input, 2, 0.3); err == nil {
		t.Error("class out of range: no error")
	}
}

func TestDecodeYOLORegion(t *testing.T) {
	const rowLength = 6
	output := []float32{
		0.5, 0.5, 0.25, 0.5, 0.9, 0.8, // centre of the input, a quarter of its width, half its height
		0.1, 0.1, 0.1, 0.1, 0.2, 0.2, // below threshold
	}
	detections, err := DecodeYOLORegion(output, rowLength, image.Pt(320, 256), 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if len(detections) != 1 || !nearBox(detections[0].Box, Box{120, 64, 200, 192}) || !near(detections[0].Score, 0.8) {
		t.Errorf("decoded %+v", detections)
	}
	if _, err := DecodeYOLORegion(output[:7], rowLength, image.Pt(320, 256), 0.3); err == nil {
		t.Error("ragged output: no error")
	}
}

func TestFilter(t *testing.T) {
	filter := Filter{MinWidth: 10, MinHeight: 30, MinAspect: 1, MaxAspect: 5}
	tests := []struct {
		box  Box
		want bool
	}{
		{Box{0, 0, 20, 50}, true},
		{Box{0, 0, 9, 50}, false},  // too narrow
		{Box{0, 0, 20, 29}, false}, // too short
		{Box{0, 0, 40, 35}, false}, // wider than tall
		{Box{0, 0, 10, 60}, false}, // aspect 6
		{Box{5, 5, 5, 50}, false},  // empty
	}
	for _, test := range tests {
		if got := filter.Keep(test.box); got != test.want {
			t.Errorf("Keep(%+v) = %v, want %v", test.box, got, test.want)
		}
	}
}
