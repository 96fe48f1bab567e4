package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
)

// errDropped is returned by a live capture whose stream stopped delivering frames.
var errDropped = errors.New("stream dropped")

// ErrCorrupt marks a file source that cannot be decoded to its end: not a video, or truncated.
var ErrCorrupt = errors.New("corrupt or truncated video")

// sourceKind is how a camera's source string is opened.
type sourceKind int

const (
	kindFile sourceKind = iota
	kindURL
	kindDevice
	kindStills
)

func (k sourceKind) live() bool { return k == kindURL || k == kindDevice }

func (k sourceKind) String() string {
	return [...]string{"file", "url", "device", "stills"}[k]
}

// classify decides the kind of source. A device is "N" or "/dev/videoN"; a URL has a scheme; an
// existing directory holds still frames; anything else is a file.
func classify(source string) (sourceKind, int) {
	if n, err := strconv.Atoi(source); err == nil && n >= 0 {
		return kindDevice, n
	}
	if rest, ok := strings.CutPrefix(source, "/dev/video"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
			return kindDevice, n
		}
	}
	if strings.Contains(source, "://") {
		return kindURL, 0
	}
	if info, err := os.Stat(source); err == nil && info.IsDir() {
		return kindStills, 0
	}
	return kindFile, 0
}

// frameInfo is what a capture knows about the frame it just read.
type frameInfo struct {
	// position is the frame's offset in stream time from the start of the source.
	position time.Duration
	// time is the frame's absolute time when the source itself says (a still's file name).
	time time.Time
	// read is when a live source delivered the frame; zero for files and stills.
	read time.Time
	// late counts the frames a live source delivered after the previous Read and before this
	// frame, which nobody looked at because this newer one had arrived (see newestFrame).
	late int64
}

// capture reads frames from one opened source into a caller-owned Mat.
type capture interface {
	// Read decodes the next frame into frame. It returns io.EOF at the clean end of a finite
	// source, errDropped when a live stream stops, and an error wrapping ErrCorrupt when a file
	// cannot be decoded to its end. A capture that may wait for its source returns ctx's error
	// when ctx ends first; the others read on.
	Read(ctx context.Context, frame *gocv.Mat) (frameInfo, error)
	// Start is the absolute time of position 0 when it is known from the source (zero otherwise).
	Start() time.Time
	Close() error
}

// openCapture opens camera's source. An RTSP camera that does not answer within answerTimeout
// (0: no limit but OpenCV's 30 s) fails the open (awaitRTSPAnswer).
func openCapture(camera config.Camera, answerTimeout time.Duration) (capture, error) {
	kind, device := classify(camera.Source)
	switch kind {
	case kindDevice:
		video, err := gocv.VideoCaptureDeviceWithAPI(device, gocv.VideoCaptureV4L2)
		if err != nil || !video.IsOpened() {
			closeVideo(video)
			return nil, fmt.Errorf("open device %d: not available", device)
		}
		return newNewestFrame(&videoCapture{video: video, live: true}), nil
	case kindURL:
		if err := awaitRTSPAnswer(camera.Source, answerTimeout); err != nil {
			return nil, fmt.Errorf("open %s: %w", config.MaskURLCredentials(camera.Source), err)
		}
		video, err := gocv.VideoCaptureFileWithAPI(camera.Source, gocv.VideoCaptureFFmpeg)
		if err != nil || !video.IsOpened() {
			closeVideo(video)
			return nil, fmt.Errorf("open %s: stream not reachable or not a video", config.MaskURLCredentials(camera.Source))
		}
		// A URL may name a finished file (http://.../clip.mp4) rather than a live stream; its
		// container then declares a frame count, reaching it is a clean end, not a drop, and
		// every frame is there to be read, as fast as it downloads.
		capture := &videoCapture{video: video, live: true, frameCount: int64(video.Get(gocv.VideoCaptureFrameCount))}
		if capture.frameCount > 0 {
			return capture, nil
		}
		return newNewestFrame(capture), nil
	case kindStills:
		return openStills(camera)
	default:
		return openVideoFile(camera.Source)
	}
}

func closeVideo(video *gocv.VideoCapture) {
	if video != nil {
		video.Close()
	}
}

// ffmpegCaptureOptions is where OpenCV's FFmpeg backend reads demuxer options ("key;value|..."),
// at every open, for the whole process.
const ffmpegCaptureOptions = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

// setFFmpegOptions makes sources opened from now on ask RTSP cameras for transport ("tcp", "udp",
// or "auto" for FFmpeg's default) and give up on a network read after stallTimeout (0: FFmpeg's
// default, no limit of its own), each unless OPENCV_FFMPEG_CAPTURE_OPTIONS already sets it.
func setFFmpegOptions(transport string, stallTimeout time.Duration) error {
	options := os.Getenv(ffmpegCaptureOptions)
	var added []string
	switch transport {
	case "tcp", "udp":
		if !strings.Contains(options, "rtsp_transport;") {
			added = append(added, "rtsp_transport;"+transport)
		}
	case "auto", "":
	default:
		return fmt.Errorf("ingest: rtsp_transport %q: want tcp, udp or auto", transport)
	}
	if stallTimeout > 0 && !strings.Contains(options, "rw_timeout;") {
		added = append(added, "rw_timeout;"+strconv.FormatInt(stallTimeout.Microseconds(), 10))
	}
	if len(added) == 0 {
		return nil
	}
	if options != "" {
		added = append([]string{options}, added...)
	}
	if err := os.Setenv(ffmpegCaptureOptions, strings.Join(added, "|")); err != nil {
		return fmt.Errorf("ingest: %s: %w", ffmpegCaptureOptions, err)
	}
	return nil
}

func openVideoFile(path string) (capture, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open video: %w", err)
	}
	// FFmpeg only: letting OpenCV try every backend turns a bad file into pages of GStreamer and
	// image-sequence warnings instead of one clear error.
	video, err := gocv.VideoCaptureFileWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil || !video.IsOpened() {
		closeVideo(video)
		return nil, fmt.Errorf("open video %s: %w: FFmpeg cannot read it", path, ErrCorrupt)
	}
	capture := &videoCapture{
		video:      video,
		path:       path,
		frameCount: int64(video.Get(gocv.VideoCaptureFrameCount)),
		fps:        video.Get(gocv.VideoCaptureFPS),
	}
	if capture.frameCount > 0 && capture.fps > 0 {
		duration := time.Duration(float64(capture.frameCount) / capture.fps * float64(time.Second))
		capture.start = info.ModTime().Add(-duration)
	} else {
		capture.start = info.ModTime()
	}
	return capture, nil
}

// videoCapture reads a file, URL or device through OpenCV's VideoCapture.
type videoCapture struct {
	video      *gocv.VideoCapture
	live       bool
	path       string
	frameCount int64 // from the container header; 0 when unknown
	fps        float64
	decoded    int64
	start      time.Time
	opened     time.Time
}

func (c *videoCapture) Start() time.Time { return c.start }

func (c *videoCapture) Read(_ context.Context, frame *gocv.Mat) (frameInfo, error) {
	if c.opened.IsZero() {
		c.opened = time.Now()
	}
	if !c.video.Read(frame) || frame.Empty() {
		if c.live && (c.frameCount <= 0 || c.decoded < c.frameCount-2) {
			return frameInfo{}, errDropped
		}
		if c.live {
			return frameInfo{}, io.EOF
		}
		return frameInfo{}, c.endOfFile()
	}
	c.decoded++
	if c.live {
		now := time.Now()
		return frameInfo{position: now.Sub(c.opened), read: now}, nil
	}
	position := time.Duration(c.video.Get(gocv.VideoCapturePosMsec) * float64(time.Millisecond))
	if position <= 0 && c.decoded > 1 && c.fps > 0 {
		position = time.Duration(float64(c.decoded-1) / c.fps * float64(time.Second))
	}
	return frameInfo{position: position}, nil
}

// endOfFile tells a clean end from a file that stops early. Containers declare their frame count
// (AVI in its header, MP4 in its index); decoding far fewer frames means the data is cut or broken.
// A couple of frames of slack allows for headers that count a trailing empty frame.
func (c *videoCapture) endOfFile() error {
	if c.decoded == 0 {
		return fmt.Errorf("video %s: %w: no frame could be decoded", c.path, ErrCorrupt)
	}
	if c.frameCount > 0 && c.decoded < c.frameCount-2 {
		return fmt.Errorf("video %s: %w: decoded %d of the %d frames its header declares", c.path, ErrCorrupt, c.decoded, c.frameCount)
	}
	return io.EOF
}

func (c *videoCapture) Close() error { return c.video.Close() }

// stillExtensions are the image files a directory source reads.
var stillExtensions = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".bmp": true, ".tif": true, ".tiff": true, ".webp": true, ".ppm": true,
}

// stillTimePattern finds a date and time in a file name: 20240131T120000, 2024-01-31_12-00-00.250,
// 20240131-120000_123456 and the like, read as UTC.
var stillTimePattern = regexp.MustCompile(`(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[-:]?(\d{2})[-:]?(\d{2})(?:[._,](\d{1,9}))?`)

// parseStillTime reads the timestamp in a still's file name.
func parseStillTime(name string) (time.Time, bool) {
	match := stillTimePattern.FindStringSubmatch(filepath.Base(name))
	if match == nil {
		return time.Time{}, false
	}
	numbers := make([]int, 6)
	for i := range numbers {
		numbers[i], _ = strconv.Atoi(match[i+1])
	}
	nanos := 0
	if fraction := match[7]; fraction != "" {
		nanos, _ = strconv.Atoi((fraction + "000000000")[:9])
	}
	t := time.Date(numbers[0], time.Month(numbers[1]), numbers[2], numbers[3], numbers[4], numbers[5], nanos, time.UTC)
	// time.Date normalises out-of-range fields (month 13); such a name is not a timestamp.
	if t.Year() != numbers[0] || int(t.Month()) != numbers[1] || t.Day() != numbers[2] || t.Hour() != numbers[3] || t.Minute() != numbers[4] || t.Second() != numbers[5] {
		return time.Time{}, false
	}
	return t, true
}

// stillsCapture reads a directory of still frames in name order. When every name carries a
// timestamp the frames are placed by it; otherwise they are frame_interval apart.
type stillsCapture struct {
	dir       string
	files     []string
	times     []time.Time // nil when names carry no timestamps
	interval  time.Duration
	start     time.Time
	next      int
	unreadble int
}

func openStills(camera config.Camera) (capture, error) {
	entries, err := os.ReadDir(camera.Source)
	if err != nil {
		return nil, fmt.Errorf("open stills: %w", err)
	}
	capture := &stillsCapture{dir: camera.Source, interval: camera.FrameInterval}
	if capture.interval <= 0 {
		capture.interval = 100 * time.Millisecond
	}
	for _, entry := range entries {
		if entry.Type().IsRegular() && stillExtensions[strings.ToLower(filepath.Ext(entry.Name()))] {
			capture.files = append(capture.files, entry.Name())
		}
	}
	if len(capture.files) == 0 {
		return nil, fmt.Errorf("open stills %s: no image files (%s)", camera.Source, "jpg, png, bmp, tif, webp, ppm")
	}
	sort.Strings(capture.files)
	times := make([]time.Time, len(capture.files))
	allTimed := true
	for i, name := range capture.files {
		t, ok := parseStillTime(name)
		if !ok || (i > 0 && t.Before(times[i-1])) {
			allTimed = false
			break
		}
		times[i] = t
	}
	if allTimed {
		capture.times = times
		capture.start = times[0]
	} else if info, err := os.Stat(filepath.Join(camera.Source, capture.files[0])); err == nil {
		capture.start = info.ModTime()
	}
	return capture, nil
}

func (c *stillsCapture) Start() time.Time { return c.start }

func (c *stillsCapture) Read(_ context.Context, frame *gocv.Mat) (frameInfo, error) {
	for c.next < len(c.files) {
		index := c.next
		c.next++
		image := gocv.IMRead(filepath.Join(c.dir, c.files[index]), gocv.IMReadColor)
		if image.Empty() {
			image.Close()
			c.unreadble++
			continue
		}
		image.CopyTo(frame)
		image.Close()
		if c.times != nil {
			return frameInfo{position: c.times[index].Sub(c.start), time: c.times[index]}, nil
		}
		return frameInfo{position: time.Duration(index) * c.interval}, nil
	}
	if c.unreadble == len(c.files) {
		return frameInfo{}, fmt.Errorf("stills %s: %w: none of %d images could be decoded", c.dir, ErrCorrupt, len(c.files))
	}
	return frameInfo{}, io.EOF
}

func (c *stillsCapture) Close() error { return nil }

// newestFrame reads a live stream on its own goroutine, as fast as the stream delivers, and hands
// Read only the newest frame. A camera whose processing is slower than its frame rate then skips
// frames (counted as late) instead of falling further behind with every frame: read one by one,
// the stream's backlog would grow until the server or the network dropped the connection, and
// every crop would come later, and with a later time, than the moment it shows.
//
// The reading goroutine owns the source and its frames, and closes them once Close has been
// called and its read in progress has returned. So neither Read nor Close waits for a stream that
// has stalled (FFmpeg gives up on one after 30 s): a camera stops at once.
type newestFrame struct {
	source capture

	mu      sync.Mutex
	arrived *sync.Cond // signalled when a frame or the source's error arrives, or on Close
	newest  gocv.Mat   // the newest frame not yet taken, when fresh
	info    frameInfo
	fresh   bool
	late    int64 // frames replaced since the last Read
	err     error // the source's error, once it has stopped
	closed  bool
}

func newNewestFrame(source capture) *newestFrame {
	n := &newestFrame{source: source, newest: gocv.NewMat()}
	n.arrived = sync.NewCond(&n.mu)
	go n.run()
	return n
}

// run reads until the source fails or Close is called, then, once closed, frees everything.
func (n *newestFrame) run() {
	spare := gocv.NewMat()
	for {
		n.mu.Lock()
		closed := n.closed
		n.mu.Unlock()
		if closed {
			break
		}
		info, err := n.source.Read(context.Background(), &spare)
		n.mu.Lock()
		if err != nil {
			n.err = err
			n.arrived.Broadcast()
			n.mu.Unlock()
			break
		}
		n.newest, spare = spare, n.newest
		if n.fresh {
			n.late++
		}
		n.info, n.fresh = info, true
		n.arrived.Broadcast()
		n.mu.Unlock()
	}
	// Until Close, Read may still take the last frame.
	n.mu.Lock()
	for !n.closed {
		n.arrived.Wait()
	}
	n.mu.Unlock()
	spare.Close()
	n.newest.Close()
	n.source.Close()
}

// Read waits for a frame newer than the last one read, or for ctx to end, and swaps the frame
// into frame; frame's old Mat becomes the reader's buffer. Once the source has failed, the frame
// it delivered last is still read before its error.
func (n *newestFrame) Read(ctx context.Context, frame *gocv.Mat) (frameInfo, error) {
	defer context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.arrived.Broadcast()
		n.mu.Unlock()
	})()
	n.mu.Lock()
	defer n.mu.Unlock()
	for !n.fresh && n.err == nil && ctx.Err() == nil {
		n.arrived.Wait()
	}
	switch {
	case n.fresh:
		*frame, n.newest = n.newest, *frame
		info := n.info
		info.late, n.late = n.late, 0
		n.fresh = false
		return info, nil
	case n.err != nil:
		return frameInfo{}, n.err
	default:
		return frameInfo{}, ctx.Err()
	}
}

func (n *newestFrame) Start() time.Time { return n.source.Start() }

// Close hands the source to the reading goroutine to close when its read in progress returns;
// it does not wait for that.
func (n *newestFrame) Close() error {
	n.mu.Lock()
	n.closed = true
	n.arrived.Broadcast()
	n.mu.Unlock()
	return nil
}

// Probed is what Probe found of a camera's source.
type Probed struct {
	// Kind is "file", "url", "device" or "stills".
	Kind          string
	Width, Height int
	// FirstFrame is how long opening the source and reading its first frame took.
	FirstFrame time.Duration
}

// Probe opens camera's source as ingest would (stallTimeout is ingest.stall_timeout) and reads
// its first frame, giving up when ctx ends.
func Probe(ctx context.Context, camera config.Camera, stallTimeout time.Duration) (Probed, error) {
	started := time.Now()
	kind, _ := classify(camera.Source)
	probed := Probed{Kind: kind.String()}
	source, err := openUntil(ctx, func(camera config.Camera) (capture, error) {
		return openCapture(camera, stallTimeout)
	}, camera)
	if err != nil {
		return probed, err
	}
	defer source.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	if _, err := source.Read(ctx, &frame); err != nil {
		return probed, fmt.Errorf("first frame: %w", err)
	}
	probed.Width, probed.Height, probed.FirstFrame = frame.Cols(), frame.Rows(), time.Since(started)
	return probed, nil
}
