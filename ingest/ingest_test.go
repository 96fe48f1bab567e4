package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/detector"
	"github.com/reid-project/reid/internal/testassets"
)

// memorySink keeps records in memory.
type memorySink struct {
	mu      sync.Mutex
	records []cropstore.CropRecord
	fail    error
}

func (s *memorySink) Put(_ context.Context, record cropstore.CropRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.records = append(s.records, record)
	return nil
}

func (s *memorySink) byCamera(camera string) []cropstore.CropRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []cropstore.CropRecord
	for _, record := range s.records {
		if record.Camera == camera {
			out = append(out, record)
		}
	}
	return out
}

// walkerDetector reports one person walking right by 4 pixels a frame.
type walkerDetector struct{ calls int }

func (d *walkerDetector) Detect(frame gocv.Mat) ([]detector.Detection, error) {
	x := float32(10 + 4*(d.calls%40))
	d.calls++
	return []detector.Detection{{Box: detector.Box{X1: x, Y1: 10, X2: x + 20, Y2: 60}, Score: 0.9}}, nil
}
func (d *walkerDetector) Name() string { return "walker" }
func (d *walkerDetector) Close() error { return nil }

func testOptions(sink Sink, newDetector func(config.Detector) (Detector, error)) Options {
	defaults := config.Default()
	defaults.Ingest.ReconnectInitial = time.Millisecond
	defaults.Ingest.ReconnectMax = 4 * time.Millisecond
	return Options{
		Ingest:      defaults.Ingest,
		Detector:    defaults.Detector,
		Tracker:     defaults.Tracker,
		Crops:       defaults.Crops,
		NewDetector: newDetector,
		Sink:        sink,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func fakeDetector(config.Detector) (Detector, error) { return &walkerDetector{}, nil }

// The acceptance check of the detector, tracker and crops together on the real video.
func TestVtestAcceptance(t *testing.T) {
	video := testassets.Path(t, "video/vtest.avi")
	models := testassets.Path(t, "models/detector")
	defaults := config.Default()
	sink := &memorySink{}
	options := testOptions(sink, func(settings config.Detector) (Detector, error) { return detector.New(settings, models) })
	options.Ingest = defaults.Ingest
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	if err := ingester.Run(context.Background(), []config.Camera{{ID: "cam1", Source: video}}); err != nil {
		t.Fatal(err)
	}
	stats := ingester.Stats()
	t.Logf("stats: %+v", stats)
	if stats.Frames != 795 || stats.Cameras[0].Decoded != 795 {
		t.Errorf("processed %d of %d decoded frames, want all 795", stats.Frames, stats.Cameras[0].Decoded)
	}
	perFrame := float64(stats.Detections) / float64(stats.Frames)
	if perFrame < 3 || perFrame > 9 {
		t.Errorf("%.2f detections per frame, want 3-9", perFrame)
	}
	records := sink.byCamera("cam1")
	if int64(len(records)) != stats.Crops || len(records) < 300 {
		t.Fatalf("%d records for %d crops counted", len(records), stats.Crops)
	}
	perTrack := map[int64]int{}
	ids := map[string]bool{}
	for _, record := range records {
		perTrack[record.Track]++
		if ids[record.ID] {
			t.Errorf("duplicate id %s", record.ID)
		}
		ids[record.ID] = true
	}
	inLongTracks := 0
	for _, record := range records {
		if perTrack[record.Track] >= 5 {
			inLongTracks++
		}
	}
	share := float64(inLongTracks) / float64(len(records))
	t.Logf("%.2f detections/frame, %d crops in %d tracks, %.1f%% in tracks of >= 5 crops", perFrame, len(records), len(perTrack), 100*share)
	if share < 0.8 {
		t.Errorf("%.1f%% of crops in tracks of >= 5 crops, want >= 80%%", 100*share)
	}
	if int64(len(perTrack)) != stats.Tracks {
		t.Errorf("stats count %d tracks, records show %d", stats.Tracks, len(perTrack))
	}

	// Records are complete and their images are crops of the configured size.
	first := records[0]
	parsed, err := cropstore.ParseID(first.ID)
	if err != nil || parsed.Camera != "cam1" || parsed.Frame != first.Frame || !parsed.Time.Equal(first.Time.Truncate(time.Microsecond)) {
		t.Errorf("id %s does not match record %+v (%v)", first.ID, first, err)
	}
	if first.Detector != detector.ModelYoloFastest || first.Score < 0.3 || first.Box.Width <= 0 || first.Box.Height < first.Box.Width {
		t.Errorf("record fields: %+v", first)
	}
	img, err := gocv.IMDecode(first.JPEG, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Cols() != defaults.Crops.Width || img.Rows() != defaults.Crops.Height {
		t.Errorf("crop is %dx%d, want %dx%d", img.Cols(), img.Rows(), defaults.Crops.Width, defaults.Crops.Height)
	}
	// Stream timestamps: 10 fps, so frame n is n/10 s after the first.
	for _, record := range records[1:] {
		if got, want := record.Time.Sub(first.Time), time.Duration(record.Frame-first.Frame)*100*time.Millisecond; (got - want).Abs() > time.Millisecond {
			t.Fatalf("frame %d at %v after frame %d, want %v", record.Frame, got, first.Frame, want)
		}
	}
	// Rate limit: no two crops of one track closer than crops.min_interval.
	lastTime := map[int64]time.Time{}
	for _, record := range records {
		if last, ok := lastTime[record.Track]; ok && record.Time.Sub(last) < defaults.Crops.MinInterval {
			t.Fatalf("track %d cropped %v apart", record.Track, record.Time.Sub(last))
		}
		lastTime[record.Track] = record.Time
	}
}

func TestCorruptVideo(t *testing.T) {
	video, err := os.ReadFile(testassets.Path(t, "video/vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.avi")
	garbage := filepath.Join(dir, "garbage.avi")
	empty := filepath.Join(dir, "empty.mp4")
	must(t, os.WriteFile(truncated, video[:len(video)/4], 0o644))
	noise := make([]byte, 200_000)
	for i := range noise {
		noise[i] = byte(i*7919 + i/13)
	}
	must(t, os.WriteFile(garbage, noise, 0o644))
	must(t, os.WriteFile(empty, nil, 0o644))
	for _, test := range []struct {
		name, path string
		want       error
	}{
		{"truncated", truncated, ErrCorrupt},
		{"garbage", garbage, ErrCorrupt},
		{"empty", empty, ErrCorrupt},
		{"missing", filepath.Join(dir, "missing.avi"), os.ErrNotExist},
	} {
		t.Run(test.name, func(t *testing.T) {
			ingester, err := New(testOptions(&memorySink{}, fakeDetector))
			if err != nil {
				t.Fatal(err)
			}
			err = ingester.Run(context.Background(), []config.Camera{{ID: "bad", Source: test.path}})
			if !errors.Is(err, test.want) {
				t.Fatalf("error %v, want %v", err, test.want)
			}
			t.Logf("%s: %v", test.name, err)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls condition until it holds, failing the test after 20 s.
func waitUntil(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopRun cancels a Run started in the background and returns its error.
func stopRun(t *testing.T, cancel context.CancelFunc, done <-chan error) error {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
		return nil
	}
}

// fakeLive is a live source that delivers frames frames, then drops.
type fakeLive struct {
	frames int
	read   int
}

func (f *fakeLive) Read(_ context.Context, frame *gocv.Mat) (frameInfo, error) {
	if f.read >= f.frames {
		return frameInfo{}, errDropped
	}
	f.read++
	image := gocv.NewMatWithSize(120, 200, gocv.MatTypeCV8UC3)
	image.CopyTo(frame)
	image.Close()
	return frameInfo{}, nil
}
func (f *fakeLive) Start() time.Time { return time.Time{} }
func (f *fakeLive) Close() error     { return nil }

func TestLiveSourceReconnects(t *testing.T) {
	sink := &memorySink{}
	options := testOptions(sink, fakeDetector)
	options.Ingest.MaxReconnects = 3
	var mu sync.Mutex
	opens := 0
	options.open = func(camera config.Camera) (capture, error) {
		if camera.ID != "live" {
			return openCapture(camera, 0)
		}
		mu.Lock()
		defer mu.Unlock()
		opens++
		switch {
		case opens == 1 || opens == 3:
			return nil, fmt.Errorf("connection refused (open %d)", opens)
		case opens <= 4:
			return &fakeLive{frames: 10}, nil
		default:
			return nil, errors.New("camera unplugged")
		}
	}
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	// The file camera beside the failing live one must run to its end.
	stills := writeStills(t, 5, "frame_%03d.png")
	err = ingester.Run(context.Background(), []config.Camera{
		{ID: "live", Source: "rtsp://user:secret@camera.invalid/stream"},
		{ID: "stills", Source: stills},
	})
	if err == nil || !containsAll(err.Error(), "camera live", "giving up", "unplugged") || strings.Contains(err.Error(), "stills") {
		t.Fatalf("error %v, want the live camera to give up", err)
	}
	stats := ingester.Stats()
	byCamera := map[string]CameraStats{}
	for _, camera := range stats.Cameras {
		byCamera[camera.Camera] = camera
	}
	// Opens: refused, 10 frames, refused, 10 frames (each drop resets the count of failures in a
	// row), then 3 failed reopens: the third exceeds max_reconnects 3 counting the drop before it.
	if got := byCamera["live"]; got.Frames != 20 || opens != 7 || got.Reconnects != 6 {
		t.Errorf("live camera: %d frames, %d opens, %d reconnects; want 20, 7, 6", got.Frames, opens, got.Reconnects)
	}
	if got := byCamera["stills"]; got.Frames != 5 {
		t.Errorf("the other camera processed %d of 5 frames", got.Frames)
	}
	if len(sink.byCamera("live")) == 0 || len(sink.byCamera("stills")) == 0 {
		t.Error("a camera produced no crops")
	}
	// Frame indexes keep counting across reconnects, so ids stay unique.
	ids := map[string]bool{}
	for _, record := range sink.byCamera("live") {
		if ids[record.ID] {
			t.Errorf("id %s repeated after a reconnect", record.ID)
		}
		ids[record.ID] = true
	}
}

func containsAll(s string, parts ...string) bool {
	for _, part := range parts {
		if !strings.Contains(s, part) {
			return false
		}
	}
	return true
}

// writeStills writes n small frames named by pattern (a Sprintf format taking the index).
func writeStills(t *testing.T, n int, pattern string) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(i*20), 80, 160, 0), 120, 200, gocv.MatTypeCV8UC3)
		ok := gocv.IMWrite(filepath.Join(dir, fmt.Sprintf(pattern, i)), frame)
		frame.Close()
		if !ok {
			t.Fatal("IMWrite failed")
		}
	}
	return dir
}

// everyFrameIngester crops every frame's walker: tracks confirmed at their first detection, no
// interval between crops.
func everyFrameIngester(t *testing.T, sink *memorySink) *Ingester {
	t.Helper()
	options := testOptions(sink, fakeDetector)
	options.Crops.MinInterval = 0
	options.Tracker.MinHits = 1
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	return ingester
}

func TestStillsDirectory(t *testing.T) {
	t.Run("timestamps from file names", func(t *testing.T) {
		dir := writeStills(t, 6, "cam_20240131T120000_%d00.png")
		// Not images, or undecodable: ignored, and the broken one counted.
		must(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "cam_20240131T120000_900.png"), []byte("not a png"), 0o644))
		sink := &memorySink{}
		ingester := everyFrameIngester(t, sink)
		must(t, ingester.Run(context.Background(), []config.Camera{{ID: "dir", Source: dir}}))
		stats := ingester.Stats().Cameras[0]
		if stats.Frames != 6 || stats.Skipped != 1 {
			t.Errorf("frames %d skipped %d, want 6 and 1", stats.Frames, stats.Skipped)
		}
		records := sink.byCamera("dir")
		if len(records) != 6 {
			t.Fatalf("%d records, want 6", len(records))
		}
		base := time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC)
		for i, record := range records {
			if want := base.Add(time.Duration(i) * 100 * time.Millisecond); !record.Time.Equal(want) || record.Frame != int64(i) {
				t.Errorf("record %d: frame %d at %v, want frame %d at %v", i, record.Frame, record.Time, i, want)
			}
		}
	})
	t.Run("frame interval and sampling", func(t *testing.T) {
		dir := writeStills(t, 10, "img%02d.jpg")
		sink := &memorySink{}
		ingester := everyFrameIngester(t, sink)
		start := "2025-06-01T08:00:00Z"
		camera := config.Camera{ID: "dir", Source: dir, FrameInterval: 250 * time.Millisecond, StartTime: start, SampleFPS: 2}
		must(t, ingester.Run(context.Background(), []config.Camera{camera}))
		records := sink.byCamera("dir")
		// 4 frames per second of stream sampled to 2: frames 0, 2, 4, 6, 8.
		if len(records) != 5 {
			t.Fatalf("%d records, want 5", len(records))
		}
		base, _ := time.Parse(time.RFC3339, start)
		for i, record := range records {
			if want := base.Add(time.Duration(i) * 500 * time.Millisecond); !record.Time.Equal(want) || record.Frame != int64(2*i) {
				t.Errorf("record %d: frame %d at %v, want frame %d at %v", i, record.Frame, record.Time, 2*i, want)
			}
		}
	})
	t.Run("nothing decodable", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "a.png"), []byte("nope"), 0o644))
		ingester, err := New(testOptions(&memorySink{}, fakeDetector))
		if err != nil {
			t.Fatal(err)
		}
		if err := ingester.Run(context.Background(), []config.Camera{{ID: "dir", Source: dir}}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("error %v, want ErrCorrupt", err)
		}
	})
}

func TestMaxFramesAndSinkErrors(t *testing.T) {
	video := testassets.Path(t, "video/vtest.avi")
	sink := &memorySink{}
	options := testOptions(sink, fakeDetector)
	options.MaxFrames = 25
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	must(t, ingester.Run(context.Background(), []config.Camera{{ID: "a", Source: video}}))
	if got := ingester.Stats().Frames; got != 25 {
		t.Errorf("processed %d frames with max 25", got)
	}

	failing := &memorySink{fail: errors.New("disk full")}
	ingester, err = New(testOptions(failing, fakeDetector))
	if err != nil {
		t.Fatal(err)
	}
	err = ingester.Run(context.Background(), []config.Camera{{ID: "a", Source: video}})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("error %v, want the sink's", err)
	}

	// A crop store refuses the crops of a track erased while still in view; the camera goes on.
	erased := &memorySink{fail: fmt.Errorf("%w: crop x", cropstore.ErrErased)}
	options = testOptions(erased, fakeDetector)
	options.MaxFrames = 25
	ingester, err = New(options)
	if err != nil {
		t.Fatal(err)
	}
	if err := ingester.Run(context.Background(), []config.Camera{{ID: "a", Source: video}}); err != nil {
		t.Errorf("a sink refusing erased crops stopped the camera: %v", err)
	}
	if stats := ingester.Stats(); stats.Frames != 25 || stats.Crops != 0 || stats.Cameras[0].Erased == 0 {
		t.Errorf("processed %d frames, counted %d crops and %d erased; want 25, none and some", stats.Frames, stats.Crops, stats.Cameras[0].Erased)
	}
}

// contextSink fails writes whose context is done, like a network sink would.
type contextSink struct{ memorySink }

func (s *contextSink) Put(ctx context.Context, record cropstore.CropRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	time.Sleep(time.Millisecond) // slower than the producer, so records queue up
	return s.memorySink.Put(ctx, record)
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sink := &contextSink{}
	options := testOptions(sink, fakeDetector)
	options.Crops.MinInterval = 0
	options.open = func(config.Camera) (capture, error) { return &fakeLive{frames: 1 << 30}, nil }
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- ingester.Run(ctx, []config.Camera{{ID: "live", Source: "0"}}) }()
	time.Sleep(50 * time.Millisecond)
	if err := stopRun(t, cancel, done); err != nil {
		t.Errorf("cancelled run returned %v", err)
	}
	// Crops made before the cancel are still stored: none lost in the queue.
	stored, made := int64(len(sink.byCamera("live"))), ingester.cameras[0].queued.Load()
	if stored == 0 || stored != made || ingester.Stats().Crops != stored {
		t.Errorf("%d crops stored of %d made (%d counted)", stored, made, ingester.Stats().Crops)
	}
}

func TestParseStillTime(t *testing.T) {
	tests := []struct {
		name string
		want time.Time
		ok   bool
	}{
		{"20240131T120000.png", time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC), true},
		{"cam1_2024-01-31_12-00-05.250.jpg", time.Date(2024, 1, 31, 12, 0, 5, 250e6, time.UTC), true},
		{"x-20240131-235959_123456.jpg", time.Date(2024, 1, 31, 23, 59, 59, 123456e3, time.UTC), true},
		{"frame_0001.png", time.Time{}, false},
		{"20241331T120000.png", time.Time{}, false},
	}
	for _, test := range tests {
		got, ok := parseStillTime(test.name)
		if ok != test.ok || !got.Equal(test.want) {
			t.Errorf("%s: %v %v, want %v %v", test.name, got, ok, test.want, test.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		source string
		kind   sourceKind
		device int
	}{
		{"0", kindDevice, 0},
		{"/dev/video2", kindDevice, 2},
		{"rtsp://host/stream", kindURL, 0},
		{"http://host/video.mjpg", kindURL, 0},
		{dir, kindStills, 0},
		{"../shared/video/vtest.avi", kindFile, 0},
		{"/dev/videox", kindFile, 0},
	}
	for _, test := range tests {
		kind, device := classify(test.source)
		if kind != test.kind || device != test.device {
			t.Errorf("classify(%q) = %v %d, want %v %d", test.source, kind, device, test.kind, test.device)
		}
	}
}

func TestPaddedRegion(t *testing.T) {
	tests := []struct {
		box     detector.Box
		padding float64
		want    image.Rectangle
	}{
		{detector.Box{X1: 100, Y1: 100, X2: 120, Y2: 160}, 0, image.Rect(100, 100, 120, 160)},
		{detector.Box{X1: 100, Y1: 100, X2: 120, Y2: 160}, 0.1, image.Rect(98, 94, 122, 166)},
		{detector.Box{X1: 2, Y1: 1, X2: 40, Y2: 100}, 0.1, image.Rect(0, 0, 44, 110)},
		{detector.Box{X1: 180, Y1: 50, X2: 199.5, Y2: 119}, 0.1, image.Rect(178, 43, 200, 126)},
	}
	for _, test := range tests {
		if got := paddedRegion(test.box, test.padding, 200, 200); got != test.want {
			t.Errorf("paddedRegion(%+v, %v) = %v, want %v", test.box, test.padding, got, test.want)
		}
	}
}

// An http URL is opened as a live source: a connection cut mid-file is a drop that is reopened,
// and a URL serving a whole file ends cleanly once the declared frames have been read.
func TestHTTPSource(t *testing.T) {
	video, err := os.ReadFile(testassets.Path(t, "video/vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	requests := 0
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		if first {
			// The first connection delivers a quarter of the file and hangs up.
			w.Header().Set("Content-Length", strconv.Itoa(len(video)))
			w.Write(video[:len(video)/4])
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "vtest.avi", time.Time{}, bytes.NewReader(video))
	}))
	defer server.Close()
	sink := &memorySink{}
	ingester, err := New(testOptions(sink, fakeDetector))
	if err != nil {
		t.Fatal(err)
	}
	if err := ingester.Run(context.Background(), []config.Camera{{ID: "web", Source: server.URL + "/vtest.avi"}}); err != nil {
		t.Fatal(err)
	}
	stats := ingester.Stats().Cameras[0]
	t.Logf("%+v", stats)
	if stats.Reconnects != 1 || stats.Frames < 795 || stats.Frames >= 2*795 {
		t.Errorf("reconnects %d, frames %d: want 1 reconnect and the whole file after a partial one", stats.Reconnects, stats.Frames)
	}
}

func TestWallclockTimestamps(t *testing.T) {
	dir := writeStills(t, 4, "cam_20240131T120000_%d00.png")
	sink := &memorySink{}
	options := testOptions(sink, fakeDetector)
	options.Ingest.Timestamps = "wallclock"
	options.Crops.MinInterval = 0
	options.Tracker.MinHits = 1
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	must(t, ingester.Run(context.Background(), []config.Camera{{ID: "dir", Source: dir}}))
	after := time.Now()
	records := sink.byCamera("dir")
	if len(records) != 4 {
		t.Fatalf("%d records, want 4", len(records))
	}
	for _, record := range records {
		if record.Time.Before(before) || record.Time.After(after) {
			t.Errorf("wall-clock time %v outside the run %v..%v (file names say 2024)", record.Time, before, after)
		}
	}
}

// TestCameraDetectorOverrides checks that each camera's detector is made with the global
// settings under that camera's own overrides.
func TestCameraDetectorOverrides(t *testing.T) {
	var mu sync.Mutex
	var made []config.Detector
	options := testOptions(&memorySink{}, func(settings config.Detector) (Detector, error) {
		mu.Lock()
		defer mu.Unlock()
		made = append(made, settings)
		return &walkerDetector{}, nil
	})
	options.MaxFrames = 3
	options.open = func(config.Camera) (capture, error) { return &fakeLive{frames: 1 << 30}, nil }
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	cameras := []config.Camera{
		{ID: "near", Source: "0"},
		{ID: "far", Source: "1", Detector: config.CameraDetector{Model: "yolox-nano", Confidence: 0.4}},
	}
	if err := ingester.Run(context.Background(), cameras); err != nil {
		t.Fatal(err)
	}
	far := options.Detector
	far.Model, far.InputSize, far.Confidence = "yolox-nano", 0, 0.4
	want := map[config.Detector]bool{options.Detector: true, far: true}
	if len(made) != 2 || !want[made[0]] || !want[made[1]] || made[0] == made[1] {
		t.Errorf("detectors made with %+v, want the global settings and %+v", made, far)
	}
}

// staticDetector reports one "person" that never moves: a sign, a mannequin, someone waiting.
type staticDetector struct{}

func (staticDetector) Detect(gocv.Mat) ([]detector.Detection, error) {
	return []detector.Detection{{Box: detector.Box{X1: 50, Y1: 10, X2: 80, Y2: 100}, Score: 0.9}}, nil
}
func (staticDetector) Name() string { return "static" }
func (staticDetector) Close() error { return nil }

// A track that has not moved for 10 seconds is cropped once per stationary_interval, not once per
// min_interval; one that moves keeps its usual rate.
func TestStationaryTracks(t *testing.T) {
	dir := writeStills(t, 60, "img%02d.png") // a minute of frames, one a second
	tests := []struct {
		name        string
		detector    Detector
		stationary  time.Duration
		wantRecords int
	}{
		// Every frame for the first 10 seconds (0-9), then stationary: 10 has been waited for
		// since the crop at 9 when it is 10 s still; then one crop per interval after the last.
		{"static, default interval", staticDetector{}, config.Default().Crops.StationaryInterval, 11}, // 0-9, 39
		{"static, 20 s", staticDetector{}, 20 * time.Second, 12},                                      // 0-9, 29, 49
		{"static, off", staticDetector{}, 0, 60},
		{"walking", &walkerDetector{}, config.Default().Crops.StationaryInterval, 60},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			sink := &memorySink{}
			options := testOptions(sink, func(config.Detector) (Detector, error) { return test.detector, nil })
			options.Tracker.MinHits = 1
			options.Crops.StationaryInterval = test.stationary
			ingester, err := New(options)
			if err != nil {
				t.Fatal(err)
			}
			camera := config.Camera{ID: "door", Source: dir, FrameInterval: time.Second, StartTime: "2026-11-28T08:00:00Z"}
			must(t, ingester.Run(context.Background(), []config.Camera{camera}))
			if records := sink.byCamera("door"); len(records) != test.wantRecords {
				t.Fatalf("%d crops over 60 frames, want %d", len(records), test.wantRecords)
			}
			// Every frame the rate limit (1 s apart, above min_interval) did not stop and the
			// stationary limit did is counted.
			if stats := ingester.Stats().Cameras[0]; stats.Frames != 60 || stats.Stationary != int64(60-test.wantRecords) {
				t.Fatalf("%d frames processed, %d crops counted as stationary; want 60 and %d", stats.Frames, stats.Stationary, 60-test.wantRecords)
			}
		})
	}
}

// edgeDetector reports a person first wholly beyond the right edge of a 200-pixel-wide frame (no
// crop can be cut), then stepping into it.
type edgeDetector struct{ calls int }

func (d *edgeDetector) Detect(gocv.Mat) ([]detector.Detection, error) {
	x := float32(205 - 10*d.calls)
	d.calls++
	return []detector.Detection{{Box: detector.Box{X1: x, Y1: 10, X2: x + 30, Y2: 100}, Score: 0.9}}, nil
}
func (d *edgeDetector) Name() string { return "edge" }
func (d *edgeDetector) Close() error { return nil }

// A track whose first box could not be cropped is counted when its first crop is made.
func TestTrackCountedAtItsFirstCrop(t *testing.T) {
	dir := writeStills(t, 4, "img%02d.png")
	sink := &memorySink{}
	options := testOptions(sink, func(config.Detector) (Detector, error) { return &edgeDetector{}, nil })
	options.Tracker.MinHits = 1
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	camera := config.Camera{ID: "door", Source: dir, FrameInterval: time.Second}
	must(t, ingester.Run(context.Background(), []config.Camera{camera}))
	stats := ingester.Stats().Cameras[0]
	if records := sink.byCamera("door"); len(records) != 3 || stats.Tracks != 1 {
		t.Fatalf("%d crops in %d tracks, want 3 in 1 (frames 1-3 of one track)", len(records), stats.Tracks)
	}
}

// TestTrackIDsSurviveRestarts runs one camera in three sessions: each tracker numbers its tracks
// from 1, but the track ids must differ between sessions (or track consensus would take two people
// for one), and a replay of the same frames must give the same ids, as it gives the same crop ids.
func TestTrackIDsSurviveRestarts(t *testing.T) {
	monday := writeStills(t, 3, "cam_20261130T080000_%d00.png")
	tuesday := writeStills(t, 3, "cam_20261201T080000_%d00.png")
	session := func(dir string) []cropstore.CropRecord {
		sink := &memorySink{}
		must(t, everyFrameIngester(t, sink).Run(context.Background(), []config.Camera{{ID: "door", Source: dir}}))
		records := sink.byCamera("door")
		if len(records) == 0 {
			t.Fatal("no crops")
		}
		return records
	}
	tracks := func(records []cropstore.CropRecord) map[int64]bool {
		ids := map[int64]bool{}
		for _, record := range records {
			ids[record.Track] = true
			if number := cropstore.TrackNumber(record.Track); number != 1 {
				t.Errorf("%s: track %d is the session's track %d; one walker makes track 1", record.ID, record.Track, number)
			}
		}
		return ids
	}
	first, second, replay := tracks(session(monday)), tracks(session(tuesday)), tracks(session(monday))
	for track := range second {
		if first[track] {
			t.Errorf("track id %d given in both sessions", track)
		}
	}
	if !maps.Equal(first, replay) {
		t.Errorf("replaying the same frames gave tracks %v, first time %v", replay, first)
	}
}

// TestReconfigure changes the cameras of a running Run: a removed camera stops, a changed one
// restarts with its new settings, a new one starts, an unchanged one is left alone, and a bad
// list changes nothing.
// openCounter counts how often each camera's source was opened.
type openCounter struct {
	mu    sync.Mutex
	opens map[string]int
}

// liveUnless opens an endless live source, or fails with "connection refused" when fail says the
// camera's n-th open should (nil: never).
func (c *openCounter) liveUnless(fail func(id string, n int) bool) func(config.Camera) (capture, error) {
	return func(camera config.Camera) (capture, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.opens == nil {
			c.opens = map[string]int{}
		}
		c.opens[camera.ID]++
		if fail != nil && fail(camera.ID, c.opens[camera.ID]) {
			return nil, errors.New("connection refused")
		}
		return &fakeLive{frames: 1 << 30}, nil
	}
}

func (c *openCounter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opens[id]
}

func TestReconfigure(t *testing.T) {
	sink := &contextSink{}
	options := testOptions(sink, fakeDetector)
	options.Crops.MinInterval = 0
	opens := &openCounter{}
	options.open = opens.liveUnless(nil)
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := ingester.Reconfigure(context.Background(), []config.Camera{{ID: "a", Source: "0"}}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reconfigure before Run: %v, want ErrNotRunning", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	steady, changed := config.Camera{ID: "steady", Source: "0"}, config.Camera{ID: "changed", Source: "1"}
	gone := config.Camera{ID: "gone", Source: "2"}
	go func() { done <- ingester.Run(ctx, []config.Camera{steady, changed, gone}) }()
	cropsOf := func(id string) int { return len(sink.byCamera(id)) }
	waitUntil(t, "every camera's first crops", func() bool { return cropsOf("steady") > 0 && cropsOf("changed") > 0 && cropsOf("gone") > 0 })

	if _, _, _, err := ingester.Reconfigure(ctx, []config.Camera{steady, steady}); err == nil {
		t.Error("a list with a repeated id was accepted")
	}
	changed.SampleFPS = 3
	added, removed, restarted, err := ingester.Reconfigure(ctx, []config.Camera{changed, steady, {ID: "new", Source: "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []string{"new"}) || !slices.Equal(removed, []string{"gone"}) || !slices.Equal(restarted, []string{"changed"}) {
		t.Errorf("added %v, removed %v, restarted %v; want [new] [gone] [changed]", added, removed, restarted)
	}
	goneCrops := cropsOf("gone")
	waitUntil(t, "the new camera's crops", func() bool { return cropsOf("new") > 0 })
	time.Sleep(50 * time.Millisecond)
	if cropsOf("gone") != goneCrops {
		t.Error("the removed camera still makes crops")
	}
	if opens.count("steady") != 1 || opens.count("changed") != 2 || opens.count("gone") != 1 {
		t.Errorf("opens %d, %d, %d: want the unchanged camera opened once and the changed one twice",
			opens.count("steady"), opens.count("changed"), opens.count("gone"))
	}
	var cameras []string
	for _, camera := range ingester.Stats().Cameras {
		cameras = append(cameras, camera.Camera)
		if !camera.Running {
			t.Errorf("camera %s is not running", camera.Camera)
		}
	}
	if !slices.Equal(cameras, []string{"changed", "steady", "new"}) {
		t.Errorf("stats for %v, want the new list's cameras in its order", cameras)
	}

	// Every camera replaced at once: Run carries on with the new ones.
	if _, _, _, err := ingester.Reconfigure(ctx, []config.Camera{{ID: "only", Source: "4"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the replacement's crops", func() bool { return cropsOf("only") > 0 })
	select {
	case err := <-done:
		t.Fatalf("Run ended when every camera was replaced: %v", err)
	default:
	}

	if err := stopRun(t, cancel, done); err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, _, _, err := ingester.Reconfigure(context.Background(), []config.Camera{steady}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reconfigure after Run: %v, want ErrNotRunning", err)
	}
}

// A person filmed large is shrunk to the crop size without aliasing: fine stripes (one white
// column in three) come out grey, where bilinear sampling turns them into bands of black and white.
func TestCropShrinksWithoutAliasing(t *testing.T) {
	const frameWidth, frameHeight = 500, 900
	frame := gocv.NewMatWithSize(frameHeight, frameWidth, gocv.MatTypeCV8UC3)
	defer frame.Close()
	for y := range frameHeight {
		for x := range frameWidth {
			if x%3 == 0 {
				frame.SetUCharAt(y, x*3, 255)
				frame.SetUCharAt(y, x*3+1, 255)
				frame.SetUCharAt(y, x*3+2, 255)
			}
		}
	}
	crops := config.Default().Crops
	cropper := newCropper(crops)
	defer cropper.Close()
	encoded, err := cropper.encode(frame, detector.Box{X1: 40, Y1: 40, X2: 460, Y2: 860})
	if err != nil {
		t.Fatal(err)
	}
	crop, err := jpeg.Decode(bytes.NewReader(encoded))
	if err != nil {
		t.Fatal(err)
	}
	if bounds := crop.Bounds(); bounds.Dx() != crops.Width || bounds.Dy() != crops.Height {
		t.Fatalf("crop %v, want %dx%d", bounds, crops.Width, crops.Height)
	}
	// Each column of the middle row averages 3.6 frame columns, one or two of them white: between
	// about 70 and 140. Bilinear sampling gives 0 to 255.
	var lowest, highest uint32 = 255, 0
	for x := 4; x < crops.Width-4; x++ {
		grey, _, _, _ := crop.At(x, crops.Height/2).RGBA()
		lowest, highest = min(lowest, grey>>8), max(highest, grey>>8)
	}
	if lowest < 50 || highest > 160 {
		t.Errorf("columns of the shrunk stripes range from %d to %d, want 50 to 160 (aliasing)", lowest, highest)
	}
	// Enlarged regions keep bilinear sampling: area sampling would repeat pixels.
	for _, test := range []struct {
		region image.Rectangle
		want   gocv.InterpolationFlags
	}{
		{image.Rect(0, 0, 300, 600), gocv.InterpolationArea},
		{image.Rect(0, 0, 60, 150), gocv.InterpolationLinear},
		{image.Rect(0, 0, 100, 400), gocv.InterpolationLinear}, // taller but narrower
		{image.Rect(0, 0, 128, 256), gocv.InterpolationLinear},
	} {
		if got := resizeInterpolation(test.region, crops.Width, crops.Height); got != test.want {
			t.Errorf("region %v: interpolation %v, want %v", test.region, got, test.want)
		}
	}
}

// A camera that gave up reconnecting is started again by a reconfiguration, even unchanged; the
// failure it had stays in Run's error.
func TestReconfigureRestartsFailedCamera(t *testing.T) {
	sink := &contextSink{}
	options := testOptions(sink, fakeDetector)
	options.Crops.MinInterval = 0
	options.Ingest.MaxReconnects = 1
	opens := &openCounter{}
	options.open = opens.liveUnless(func(id string, n int) bool { return id == "flaky" && n <= 2 })
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cameras := []config.Camera{{ID: "steady", Source: "0"}, {ID: "flaky", Source: "rtsp://flaky.invalid/stream"}}
	done := make(chan error, 1)
	go func() { done <- ingester.Run(ctx, cameras) }()
	waitUntil(t, "the flaky camera to give up", func() bool {
		stats := ingester.Stats().Cameras
		return len(stats) == 2 && !stats[1].Running
	})
	_, _, restarted, err := ingester.Reconfigure(ctx, cameras)
	if err != nil || !slices.Equal(restarted, []string{"flaky"}) {
		t.Fatalf("restarted %v (%v), want the failed camera only", restarted, err)
	}
	waitUntil(t, "the restarted camera's crops", func() bool { return len(sink.byCamera("flaky")) > 0 })
	if err := stopRun(t, cancel, done); err == nil || !strings.Contains(err.Error(), "camera flaky") {
		t.Errorf("Run: %v, want the flaky camera's earlier failure", err)
	}
}

// slowDetector takes delay per frame, as a detector slower than the camera's frame rate does.
type slowDetector struct {
	walkerDetector
	delay time.Duration
}

func (d *slowDetector) Detect(frame gocv.Mat) ([]detector.Detection, error) {
	time.Sleep(d.delay)
	return d.walkerDetector.Detect(frame)
}

// mjpegServer serves frames once as a live multipart MJPEG stream (an IP camera's HTTP stream:
// no frame count), one every interval, and refuses later connections. With stall, it then keeps
// the connection open and sends nothing more, as a camera that hangs does.
func mjpegServer(t *testing.T, frames [][]byte, interval time.Duration, stall bool) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	served := false
	release := make(chan struct{}) // ends a stall when the test does
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		again := served
		served = true
		mu.Unlock()
		if again {
			http.Error(w, "camera offline", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		for _, frame := range frames {
			fmt.Fprintf(w, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(frame))
			w.Write(frame)
			w.Write([]byte("\r\n"))
			w.(http.Flusher).Flush()
			time.Sleep(interval)
		}
		if stall {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(server.Close)
	t.Cleanup(func() { close(release) }) // first: Close waits for the handler
	return server
}

// TestLiveStreamSkipsToNewestFrame runs a live stream of 60 frames at 20 frames/s (3 s) through a
// detector that needs 200 ms a frame. Read one by one, the frames would take 12 s and the last
// would be processed 9 s after it was sent; taking the newest frame each time, the camera keeps
// up with the stream and counts what it passed over as late.
func TestLiveStreamSkipsToNewestFrame(t *testing.T) {
	server := mjpegServer(t, vtestJPEGs(t, 60), 50*time.Millisecond, false)

	sink := &memorySink{}
	options := testOptions(sink, func(config.Detector) (Detector, error) { return &slowDetector{delay: 200 * time.Millisecond}, nil })
	options.Ingest.MaxReconnects = 1
	options.Crops.MinInterval = 0
	options.Tracker.MinHits = 1
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	err = ingester.Run(context.Background(), []config.Camera{{ID: "ipcam", Source: server.URL + "/video.mjpg"}})
	elapsed := time.Since(started)
	if err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("run ended with %v, want the camera to give up once the stream is gone", err)
	}
	stats := ingester.Stats().Cameras[0]
	t.Logf("%+v in %s", stats, elapsed)
	if stats.Decoded < 55 || stats.Frames+stats.Late != stats.Decoded {
		t.Errorf("decoded %d, processed %d, late %d: want about 60 decoded, each processed or late", stats.Decoded, stats.Frames, stats.Late)
	}
	if stats.Late < 20 || stats.Frames > 40 {
		t.Errorf("processed %d frames and passed over %d: the camera read every frame instead of the newest", stats.Frames, stats.Late)
	}
	// The stream lasts 3 s; reading every frame would take 12 s.
	if elapsed > 8*time.Second {
		t.Errorf("the run took %s for a 3 s stream: it fell behind", elapsed)
	}
	// Crop times are when the frames arrived, within the stream's 3 s.
	records := sink.byCamera("ipcam")
	if len(records) == 0 {
		t.Fatal("no crops")
	}
	if first, last := records[0].Time, records[len(records)-1].Time; last.Sub(first) > 4*time.Second {
		t.Errorf("crops span %s of a 3 s stream", last.Sub(first))
	}
}

// vtestJPEGs returns the first n frames of vtest.avi as JPEGs.
func vtestJPEGs(t *testing.T, n int) [][]byte {
	t.Helper()
	video, err := gocv.VideoCaptureFile(testassets.Path(t, "video/vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	var frames [][]byte
	for len(frames) < n && video.Read(&frame) {
		encoded, err := gocv.IMEncode(gocv.JPEGFileExt, frame)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, bytes.Clone(encoded.GetBytes()))
		encoded.Close()
	}
	return frames
}

// TestStalledLiveStreamStopsAtOnce stops ingest while its camera's stream hangs (connected, no
// frames). FFmpeg would wait 30 s for the next frame; the camera must stop without waiting for it.
func TestStalledLiveStreamStopsAtOnce(t *testing.T) {
	server := mjpegServer(t, vtestJPEGs(t, 5), 20*time.Millisecond, true)
	sink := &memorySink{}
	ingester, err := New(testOptions(sink, fakeDetector))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ingester.Run(ctx, []config.Camera{{ID: "hung", Source: server.URL + "/video.mjpg"}}) }()
	waitUntil := time.Now().Add(30 * time.Second)
	for ingester.Stats().Cameras == nil || ingester.Stats().Cameras[0].Decoded < 5 {
		if time.Now().After(waitUntil) {
			t.Fatal("the stream's frames never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the stream is now hung
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && err != nil {
			t.Errorf("run: %v", err)
		}
		if waited := time.Since(stopped); waited > 5*time.Second {
			t.Errorf("stopping took %s", waited)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ingest still waits for a hung stream 20 s after it was stopped")
	}
}

// TestSilentCameraStopsAtOnce stops ingest while it opens a camera that accepts the connection and
// never answers: the stop must not wait for FFmpeg's 30 s open timeout.
func TestSilentCameraStopsAtOnce(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	var connections []net.Conn
	var mu sync.Mutex
	accepted.Go(func() {
		for {
			connection, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			connections = append(connections, connection) // held open, never answered
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		listener.Close()
		accepted.Wait()
		for _, connection := range connections {
			connection.Close()
		}
	})
	ingester, err := New(testOptions(&memorySink{}, fakeDetector))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- ingester.Run(ctx, []config.Camera{{ID: "silent", Source: "http://" + listener.Addr().String() + "/video.mjpg"}})
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ingest still opening a silent camera 10 s after it was stopped")
	}
}

// rtspServer is a protocol-level fake of an RTSP camera: it answers OPTIONS and DESCRIBE (one
// MJPEG video track) and records the transport each SETUP asks for, then refuses it. No RTSP
// camera or server can run here; the fake checks what FFmpeg asks a real one for.
type rtspServer struct {
	listener net.Listener
	mu       sync.Mutex
	setups   []string
	done     sync.WaitGroup
}

func newRTSPServer(t *testing.T) *rtspServer {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &rtspServer{listener: listener}
	server.done.Go(func() {
		for {
			connection, err := listener.Accept()
			if err != nil {
				return
			}
			server.done.Go(func() { server.serve(connection) })
		}
	})
	t.Cleanup(func() {
		listener.Close()
		server.done.Wait()
	})
	return server
}

func (s *rtspServer) url() string { return "rtsp://" + s.listener.Addr().String() + "/stream" }

func (s *rtspServer) serve(connection net.Conn) {
	defer connection.Close()
	connection.SetDeadline(time.Now().Add(10 * time.Second))
	reader := bufio.NewReader(connection)
	for {
		requestLine, err := reader.ReadString('\n')
		if err != nil {
			return
		}
		headers := map[string]string{}
		for {
			line, err := reader.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			if name, value, ok := strings.Cut(line, ":"); ok {
				headers[strings.ToLower(name)] = strings.TrimSpace(value)
			}
		}
		cseq := headers["cseq"]
		switch method, _, _ := strings.Cut(requestLine, " "); method {
		case "OPTIONS":
			fmt.Fprintf(connection, "RTSP/1.0 200 OK\r\nCSeq: %s\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n", cseq)
		case "DESCRIBE":
			sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=reid test camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\na=control:track1\r\n"
			fmt.Fprintf(connection, "RTSP/1.0 200 OK\r\nCSeq: %s\r\nContent-Base: %s/\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", cseq, s.url(), len(sdp), sdp)
		case "SETUP":
			s.mu.Lock()
			s.setups = append(s.setups, headers["transport"])
			s.mu.Unlock()
			fmt.Fprintf(connection, "RTSP/1.0 461 Unsupported Transport\r\nCSeq: %s\r\n\r\n", cseq)
		default:
			fmt.Fprintf(connection, "RTSP/1.0 405 Method Not Allowed\r\nCSeq: %s\r\n\r\n", cseq)
		}
	}
}

func (s *rtspServer) firstSetup() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.setups) == 0 {
		return ""
	}
	return s.setups[0]
}

// TestRTSPTransport checks what an RTSP camera is asked for under each ingest.rtsp_transport:
// TCP interleaving by default, UDP ports when asked, and a transport set by hand in
// OPENCV_FFMPEG_CAPTURE_OPTIONS kept.
func TestRTSPTransport(t *testing.T) {
	cases := []struct {
		transport, environment, want string
	}{
		{"tcp", "", "RTP/AVP/TCP"},
		{"udp", "", "client_port="},
		{"tcp", "rtsp_transport;udp", "client_port="},
	}
	for _, c := range cases {
		t.Run(c.transport+"/"+c.environment, func(t *testing.T) {
			t.Setenv(ffmpegCaptureOptions, c.environment)
			server := newRTSPServer(t)
			options := testOptions(&memorySink{}, fakeDetector)
			options.Ingest.RTSPTransport = c.transport
			options.Ingest.MaxReconnects = 1
			ingester, err := New(options)
			if err != nil {
				t.Fatal(err)
			}
			if err := ingester.Run(context.Background(), []config.Camera{{ID: "rtsp", Source: server.url()}}); err == nil {
				t.Fatal("a camera that refuses every transport was opened")
			}
			if setup := server.firstSetup(); !strings.Contains(setup, c.want) {
				t.Errorf("SETUP asked for transport %q, want %s", setup, c.want)
			}
		})
	}
}

// TestSilentCameraFailsFast: an RTSP or HTTP camera that accepts the connection and never
// answers fails its open after ingest.stall_timeout (here 300 ms), not after OpenCV's 30 s, and
// says so without its password; one that answers is opened as before (TestRTSPTransport reaches
// its SETUP).
func TestSilentCameraFailsFast(t *testing.T) {
	t.Setenv(ffmpegCaptureOptions, "")
	const stall = 300 * time.Millisecond
	if err := setFFmpegOptions("tcp", stall); err != nil { // HTTP: FFmpeg's rw_timeout
		t.Fatal(err)
	}
	address := silentServer(t)
	for _, c := range []struct{ scheme, want string }{
		{"rtsp", "did not answer within 300ms"},
		{"http", "stream not reachable"},
	} {
		started := time.Now()
		_, err := openCapture(config.Camera{ID: "silent", Source: c.scheme + "://admin:s3cret@" + address + "/stream"}, stall)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("open of a silent %s camera: %v", c.scheme, err)
		}
		if elapsed := time.Since(started); elapsed > 10*time.Second {
			t.Errorf("the %s open failed after %s, as if nothing but OpenCV's 30 s bounded it", c.scheme, elapsed)
		}
	}
}

// TestOpenErrorsHideCredentials: a camera that cannot be reached is reported without its password.
func TestOpenErrorsHideCredentials(t *testing.T) {
	_, err := openCapture(config.Camera{ID: "door", Source: "rtsp://admin:s3cret@127.0.0.1:1/stream"}, time.Second)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "rtsp://admin:********@127.0.0.1:1/stream") {
		t.Fatalf("open error %v: want the URL with its password masked", err)
	}
}

func TestProbe(t *testing.T) {
	probed, err := Probe(context.Background(), config.Camera{ID: "gate", Source: testassets.Path(t, "video/vtest.avi")}, time.Second)
	if err != nil || probed.Kind != "file" || probed.Width != 768 || probed.Height != 576 || probed.FirstFrame <= 0 {
		t.Errorf("Probe(vtest.avi) = %+v, %v; want a 768x576 file", probed, err)
	}
	if _, err := Probe(context.Background(), config.Camera{ID: "gone", Source: "/nonexistent/gate.mp4"}, time.Second); err == nil {
		t.Error("Probe of a missing file: no error")
	}
	// A camera that accepts the connection and never answers fails after the stall timeout given,
	// as ingest's own opens do, not after the default.
	started := time.Now()
	_, err = Probe(context.Background(), config.Camera{ID: "silent", Source: "rtsp://" + silentServer(t) + "/stream"}, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Errorf("Probe of a silent RTSP camera: %v; want it to give up after the 300ms stall timeout", err)
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Errorf("Probe of a silent RTSP camera took %s", elapsed)
	}
}

// TestHungHTTPCameraReopened: an HTTP camera that stops sending without closing the connection is
// reopened after ingest.stall_timeout, not after OpenCV's 30 s.
func TestHungHTTPCameraReopened(t *testing.T) {
	t.Setenv(ffmpegCaptureOptions, "") // this process's earlier New calls set it already
	server := mjpegServer(t, vtestJPEGs(t, 5), 20*time.Millisecond, true)
	options := testOptions(&memorySink{}, fakeDetector)
	options.Ingest.StallTimeout = time.Second
	options.Ingest.MaxReconnects = 1 // the server refuses the reopen: then ingest gives up
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	err = ingester.Run(context.Background(), []config.Camera{{ID: "hung", Source: server.URL + "/video.mjpg"}})
	elapsed := time.Since(started)
	if err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("run ended with %v, want the camera to give up after the reopen was refused", err)
	}
	if stats := ingester.Stats().Cameras[0]; stats.Frames != 5 || stats.Reconnects < 1 {
		t.Errorf("%d frames, %d reconnects: want the 5 frames, then a reopen", stats.Frames, stats.Reconnects)
	}
	if elapsed > 15*time.Second {
		t.Errorf("the hung camera was reopened after %s; stall_timeout is 1s", elapsed)
	}
}

// hangingLive delivers frames, then blocks in Read as FFmpeg does on an RTSP camera that stays
// connected and sends nothing: deaf to ctx, until its own 30 s timeout (here hang).
type hangingLive struct {
	fakeLive
	hang   time.Duration
	closed atomic.Bool
}

func (h *hangingLive) Read(ctx context.Context, frame *gocv.Mat) (frameInfo, error) {
	if h.read < h.frames {
		return h.fakeLive.Read(ctx, frame)
	}
	time.Sleep(h.hang)
	return frameInfo{}, errDropped
}

func (h *hangingLive) Close() error {
	h.closed.Store(true)
	return nil
}

// TestHungRTSPCameraReopened: a live camera whose read hangs is reopened after
// ingest.stall_timeout, not after FFmpeg's own timeout, and the hung source is still closed once
// its read returns.
func TestHungRTSPCameraReopened(t *testing.T) {
	options := testOptions(&memorySink{}, fakeDetector)
	options.Ingest.StallTimeout = 500 * time.Millisecond
	options.Ingest.MaxReconnects = 1
	hung := &hangingLive{fakeLive: fakeLive{frames: 3}, hang: 3 * time.Second}
	opens := 0
	options.open = func(config.Camera) (capture, error) {
		if opens++; opens == 1 {
			return newNewestFrame(hung), nil
		}
		return nil, errors.New("connection refused")
	}
	ingester, err := New(options)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	err = ingester.Run(context.Background(), []config.Camera{{ID: "door", Source: "rtsp://127.0.0.1:1/stream"}})
	elapsed := time.Since(started)
	if err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("run ended with %v, want the camera to give up after the reopen was refused", err)
	}
	if stats := ingester.Stats().Cameras[0]; stats.Decoded != 3 || stats.Reconnects != 1 || opens != 2 {
		t.Errorf("%d frames read, %d reconnects, %d opens: want the 3 frames, then one reopen", stats.Decoded, stats.Reconnects, opens)
	}
	if elapsed >= hung.hang {
		t.Errorf("the hung camera was reopened after %s; stall_timeout is %s", elapsed, options.Ingest.StallTimeout)
	}
	waitFor := time.Now().Add(10 * time.Second)
	for !hung.closed.Load() {
		if time.Now().After(waitFor) {
			t.Fatal("the hung source was never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// silentServer accepts connections on loopback and never answers them, as a camera that hangs
// does; it returns the address.
func silentServer(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Go(func() {
		for {
			connection, err := listener.Accept()
			if err != nil {
				return
			}
			held.Go(func() { // never answered; closed when the client gives up
				io.Copy(io.Discard, connection)
				connection.Close()
			})
		}
	})
	t.Cleanup(func() { listener.Close(); held.Wait() })
	return listener.Addr().String()
}

// brightLive is a live source of white frames, 200 x 120.
type brightLive struct{ frames, read int }

func (f *brightLive) Read(_ context.Context, frame *gocv.Mat) (frameInfo, error) {
	if f.read >= f.frames {
		return frameInfo{}, errDropped
	}
	f.read++
	white := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 255, 255, 0), 120, 200, gocv.MatTypeCV8UC3)
	white.CopyTo(frame)
	white.Close()
	return frameInfo{}, nil
}
func (f *brightLive) Start() time.Time { return time.Time{} }
func (f *brightLive) Close() error     { return nil }

// sightDetector sees a person standing at x 20-60, y 20-100 when anything there is not black: it
// looks at the pixels it is given, as the real detector does.
type sightDetector struct{}

func (sightDetector) Detect(frame gocv.Mat) ([]detector.Detection, error) {
	region := frame.Region(image.Rect(20, 20, 60, 100))
	defer region.Close()
	if mean := region.Mean(); mean.Val1+mean.Val2+mean.Val3 == 0 {
		return nil, nil
	}
	return []detector.Detection{{Box: detector.Box{X1: 20, Y1: 20, X2: 60, Y2: 100}, Score: 0.9}}, nil
}
func (sightDetector) Name() string { return "sight" }
func (sightDetector) Close() error { return nil }

// TestPrivacyMasks: what a privacy mask covers is black before the detector sees the frame, so
// a person wholly inside one is never detected, and one half inside is cropped with that half
// black.
func TestPrivacyMasks(t *testing.T) {
	tests := []struct {
		name           string
		masks          []config.Region
		wantDetections bool
		// wantRightBlack: the crop's right part (the person's right half) is black.
		wantRightBlack bool
	}{
		{"no mask", nil, true, false},
		{"the person wholly masked", []config.Region{{X: 0.05, Y: 0.1, Width: 0.3, Height: 0.8}}, false, false},
		{"the right half of the view masked", []config.Region{{X: 0.2, Y: 0, Width: 0.8, Height: 1}}, true, true},
		{"a mask elsewhere", []config.Region{{X: 0.7, Y: 0, Width: 0.3, Height: 0.5}}, true, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			sink := &memorySink{}
			options := testOptions(sink, func(config.Detector) (Detector, error) { return sightDetector{}, nil })
			options.Crops.MinInterval = 0
			options.open = func(config.Camera) (capture, error) { return &brightLive{frames: 1 << 30}, nil }
			options.MaxFrames = 20
			ingester, err := New(options)
			if err != nil {
				t.Fatal(err)
			}
			if err := ingester.Run(context.Background(), []config.Camera{{ID: "yard", Source: "0", PrivacyMasks: test.masks}}); err != nil {
				t.Fatal(err)
			}
			stats := ingester.Stats()
			if stats.Frames != 20 {
				t.Fatalf("processed %d frames, want 20", stats.Frames)
			}
			if (stats.Detections > 0) != test.wantDetections {
				t.Fatalf("%d detections; want some: %v", stats.Detections, test.wantDetections)
			}
			records := sink.byCamera("yard")
			if !test.wantDetections {
				if len(records) != 0 {
					t.Errorf("%d crops of a masked person", len(records))
				}
				return
			}
			if len(records) == 0 {
				t.Fatal("no crops")
			}
			crop, err := jpeg.Decode(bytes.NewReader(records[0].JPEG))
			if err != nil {
				t.Fatal(err)
			}
			bounds := crop.Bounds()
			brightness := func(x int) uint32 {
				r, g, b, _ := crop.At(x, bounds.Min.Y+bounds.Dy()/2).RGBA()
				return (r + g + b) / 3 >> 8
			}
			left, right := brightness(bounds.Min.X+bounds.Dx()/5), brightness(bounds.Min.X+bounds.Dx()*4/5)
			if left < 200 || (right < 30) != test.wantRightBlack {
				t.Errorf("crop brightness left %d, right %d; want the left white and the right black: %v", left, right, test.wantRightBlack)
			}
		})
	}
}
