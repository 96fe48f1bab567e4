// Package ingest turns camera sources into person crops: it decodes each camera on its own
// goroutine, samples frames to a target rate, detects people, follows them with a per-camera
// tracker and hands a JPEG crop of each confirmed, rate-limited detection to a Sink.
//
// gocv Mats never leave the camera goroutine that owns them; what crosses to the sink is a
// CropRecord holding Go-owned JPEG bytes.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/reid-project/reid/config"
	"github.com/reid-project/reid/cropstore"
	"github.com/reid-project/reid/detector"
	"github.com/reid-project/reid/ingest/track"
)

// Sink receives every crop record. Put may block (backpressure) and must be safe for concurrent
// use, since cameras write from their own goroutines.
type Sink interface {
	Put(ctx context.Context, record cropstore.CropRecord) error
}

// Detector finds people in a frame; detector.Detector is the real one. Each camera gets its own.
type Detector interface {
	Detect(frame gocv.Mat) ([]detector.Detection, error)
	Name() string
	Close() error
}

// Options configure an Ingester.
type Options struct {
	Ingest config.Ingest
	// Detector is the detector settings before each camera's own overrides.
	Detector config.Detector
	Tracker  config.Tracker
	Crops    config.Crops
	// NewDetector makes one camera's detector with the settings given.
	NewDetector func(config.Detector) (Detector, error)
	// Sink receives the crops.
	Sink Sink
	// MaxFrames stops each camera after it has processed this many frames; 0 runs to the end.
	MaxFrames int64
	// SinkBuffer is how many records each camera may queue for the sink before it waits. Default 64.
	SinkBuffer int
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// open replaces openCapture in tests.
	open func(config.Camera) (capture, error)
}

// Ingester runs cameras. Stats and Reconfigure may be called from any goroutine while Run runs.
type Ingester struct {
	options Options
	mu      sync.Mutex
	cameras []*cameraCounters // in the order of the camera list, for Stats
	started time.Time
	// running holds the cameras of the current Run by id; ended wakes Run when one stops.
	running map[string]*cameraRun
	live    int
	errs    []error
	closed  bool
	runCtx  context.Context
	ended   chan struct{}
	// reconfiguring serialises Reconfigure calls.
	reconfiguring sync.Mutex
}

// cameraRun is one camera's goroutine: cancel stops it, done closes when it has, and failed
// (guarded by the Ingester's mu) says it ended with an error.
type cameraRun struct {
	camera   config.Camera
	counters *cameraCounters
	cancel   context.CancelFunc
	done     chan struct{}
	failed   bool
}

// ErrNotRunning means Reconfigure was called with no Run in progress: before it, or after every
// camera ended.
var ErrNotRunning = errors.New("ingest: not running")

// New checks options and returns an Ingester.
func New(options Options) (*Ingester, error) {
	if options.NewDetector == nil || options.Sink == nil {
		return nil, errors.New("ingest: NewDetector and Sink are required")
	}
	if options.Ingest.ReconnectInitial <= 0 || options.Ingest.ReconnectMax < options.Ingest.ReconnectInitial {
		return nil, fmt.Errorf("ingest: reconnect backoff %v..%v is not a valid range", options.Ingest.ReconnectInitial, options.Ingest.ReconnectMax)
	}
	if options.Crops.Width < 1 || options.Crops.Height < 1 || options.Crops.JPEGQuality < 1 || options.Crops.JPEGQuality > 100 {
		return nil, fmt.Errorf("ingest: crop size %dx%d quality %d is not valid", options.Crops.Width, options.Crops.Height, options.Crops.JPEGQuality)
	}
	if options.Tracker.MinHits < 1 || options.Tracker.MaxAge < 1 {
		return nil, errors.New("ingest: tracker min_hits and max_age must be >= 1")
	}
	if options.SinkBuffer <= 0 {
		options.SinkBuffer = 64
	}
	if options.Logger == nil {
		options.Logger = slog.Default()
	}
	if options.open == nil {
		answerTimeout := options.Ingest.StallTimeout
		options.open = func(camera config.Camera) (capture, error) { return openCapture(camera, answerTimeout) }
	}
	if err := setFFmpegOptions(options.Ingest.RTSPTransport, options.Ingest.StallTimeout); err != nil {
		return nil, err
	}
	return &Ingester{options: options}, nil
}

// Run processes every camera concurrently until each ends (files, directories), fails, or ctx is
// cancelled; Reconfigure adds, removes and restarts cameras meanwhile. A failing camera does not
// stop the others; Run returns all cameras' errors joined. Cancellation, and a camera removed by
// Reconfigure, are not errors.
func (in *Ingester) Run(ctx context.Context, cameras []config.Camera) error {
	if err := validCameras(cameras); err != nil {
		return err
	}
	in.mu.Lock()
	if in.running != nil {
		in.mu.Unlock()
		return errors.New("ingest: Run is already running")
	}
	in.started = time.Now()
	in.cameras = nil
	in.running = map[string]*cameraRun{}
	in.live, in.errs, in.closed = 0, nil, false
	in.runCtx, in.ended = ctx, make(chan struct{}, 1)
	for _, camera := range cameras {
		in.cameras = append(in.cameras, in.startLocked(camera))
	}
	in.mu.Unlock()

	for {
		in.mu.Lock()
		if in.live == 0 {
			// Nothing left to stop: later Reconfigure calls are refused rather than started
			// after Run has returned.
			in.closed = true
			in.running = nil
			errs := in.errs
			in.mu.Unlock()
			return errors.Join(errs...)
		}
		in.mu.Unlock()
		<-in.ended
	}
}

// Reconfigure makes the running cameras those of the list: it stops the cameras no longer in it
// and those whose settings changed (their queued crops are still stored), waits for them, then
// starts the changed and new ones, and starts again a camera that had failed (a live source that
// gave up reconnecting: the operator may have fixed it). Cameras whose settings are unchanged
// keep running untouched, and a file that had reached its end stays ended. It returns
// ErrNotRunning when no Run is in progress.
func (in *Ingester) Reconfigure(ctx context.Context, cameras []config.Camera) (added, removed, restarted []string, err error) {
	if err := validCameras(cameras); err != nil {
		return nil, nil, nil, err
	}
	in.reconfiguring.Lock()
	defer in.reconfiguring.Unlock()
	wanted := make(map[string]config.Camera, len(cameras))
	for _, camera := range cameras {
		wanted[camera.ID] = camera
	}
	in.mu.Lock()
	if in.running == nil || in.closed {
		in.mu.Unlock()
		return nil, nil, nil, ErrNotRunning
	}
	var stopping []*cameraRun
	for id, current := range in.running {
		camera, keep := wanted[id]
		switch {
		case !keep:
			removed = append(removed, id)
		case !reflect.DeepEqual(camera, current.camera) || current.failed:
			restarted = append(restarted, id)
		default:
			continue
		}
		current.cancel()
		stopping = append(stopping, current)
	}
	// Run must not end while the stopped cameras' replacements are still to start (a list whose
	// every camera changed would otherwise look finished), so the reconfiguration counts as live.
	in.live++
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.live--
		in.mu.Unlock()
		in.wakeRun()
	}()
	for _, run := range stopping {
		select {
		case <-run.done:
		case <-ctx.Done():
			return nil, nil, nil, fmt.Errorf("ingest: reconfigure: waiting for camera %s to stop: %w", run.camera.ID, ctx.Err())
		}
	}

	in.mu.Lock()
	defer in.mu.Unlock()
	if in.running == nil || in.closed {
		return nil, nil, nil, ErrNotRunning
	}
	for _, run := range stopping {
		delete(in.running, run.camera.ID)
	}
	// Stats follow the new list's order; a stopped camera's figures go with it.
	counters := make([]*cameraCounters, 0, len(cameras))
	for _, camera := range cameras {
		if current, ok := in.running[camera.ID]; ok {
			counters = append(counters, current.counters)
			continue
		}
		if !slices.Contains(restarted, camera.ID) {
			added = append(added, camera.ID)
		}
		counters = append(counters, in.startLocked(camera))
	}
	in.cameras = counters
	sort.Strings(added)
	sort.Strings(removed)
	sort.Strings(restarted)
	return added, removed, restarted, nil
}

// startLocked starts camera's goroutine and returns its counters; in.mu is held.
func (in *Ingester) startLocked(camera config.Camera) *cameraCounters {
	counters := &cameraCounters{camera: camera.ID}
	ctx, cancel := context.WithCancel(in.runCtx)
	run := &cameraRun{camera: camera, counters: counters, cancel: cancel, done: make(chan struct{})}
	in.running[camera.ID] = run
	in.live++
	go func() {
		defer close(run.done)
		defer cancel()
		err := in.runCamera(ctx, camera, counters)
		counters.finish()
		in.mu.Lock()
		if err != nil && !errors.Is(err, context.Canceled) {
			run.failed = true
			in.errs = append(in.errs, fmt.Errorf("camera %s: %w", camera.ID, err))
			in.options.Logger.Error("camera stopped", "camera", camera.ID, "err", err)
		}
		in.live--
		in.mu.Unlock()
		in.wakeRun()
	}()
	return counters
}

// wakeRun tells Run that something it waits for may have ended.
func (in *Ingester) wakeRun() {
	select {
	case in.ended <- struct{}{}:
	default: // Run has a wake-up pending already
	}
}

func validCameras(cameras []config.Camera) error {
	if len(cameras) == 0 {
		return errors.New("ingest: no cameras")
	}
	seen := map[string]bool{}
	for _, camera := range cameras {
		if !config.ValidID(camera.ID) || seen[camera.ID] {
			return fmt.Errorf("ingest: camera id %q is invalid or repeated", camera.ID)
		}
		seen[camera.ID] = true
	}
	return nil
}

// cameraCounters are one camera's live statistics, updated by its goroutine and read by Stats.
type cameraCounters struct {
	camera                                  string
	decoded, frames, detections, crops      atomic.Int64
	tracks, reconnects, skipped, sinkErrors atomic.Int64
	erased                                  atomic.Int64
	stationary, late                        atomic.Int64
	queued                                  atomic.Int64 // records handed to the writer
	finishedAt                              atomic.Int64 // unix nanoseconds; 0 while running
}

func (c *cameraCounters) finish() { c.finishedAt.Store(time.Now().UnixNano()) }

// CameraStats is a snapshot of one camera's progress.
type CameraStats struct {
	Camera string `json:"camera"`
	// Decoded counts frames read from the source; Frames those processed after sampling.
	Decoded    int64 `json:"decoded"`
	Frames     int64 `json:"frames"`
	Detections int64 `json:"detections"`
	// Crops counts records the sink has accepted.
	Crops int64 `json:"crops"`
	// Erased counts records the sink refused because their track was erased on request while
	// still in view (cropstore.ErrErased).
	Erased int64 `json:"erased,omitempty"`
	// Tracks counts tracks that yielded at least one crop.
	Tracks int64 `json:"tracks"`
	// Stationary counts crops not made because their track had stood still (see
	// config.Crops.StationaryInterval); a camera where it keeps growing has someone waiting, or
	// a static object the detector takes for a person.
	Stationary int64 `json:"stationary"`
	Reconnects int64 `json:"reconnects"`
	// Skipped counts unreadable still images.
	Skipped int64 `json:"skipped"`
	// Late counts frames of a live stream passed over for a newer one because processing had not
	// finished the frame before. A camera with many delivers more than its processing keeps up
	// with: it sees fewer frames than its sample rate asks for, but none of them late.
	Late    int64   `json:"late"`
	Seconds float64 `json:"seconds"`
	// FPS is processed frames per second of run time.
	FPS     float64 `json:"fps"`
	Running bool    `json:"running"`
}

// Stats is a snapshot of a run: totals and per-camera figures.
type Stats struct {
	Frames     int64         `json:"frames"`
	Detections int64         `json:"detections"`
	Crops      int64         `json:"crops"`
	Tracks     int64         `json:"tracks"`
	Seconds    float64       `json:"seconds"`
	FPS        float64       `json:"fps"`
	Cameras    []CameraStats `json:"cameras"`
}

// Stats returns the current figures.
func (in *Ingester) Stats() Stats {
	in.mu.Lock()
	cameras, started := in.cameras, in.started
	in.mu.Unlock()
	var stats Stats
	now := time.Now()
	for _, counters := range cameras {
		end := now
		finished := counters.finishedAt.Load()
		if finished != 0 {
			end = time.Unix(0, finished)
		}
		camera := CameraStats{
			Camera:     counters.camera,
			Decoded:    counters.decoded.Load(),
			Frames:     counters.frames.Load(),
			Detections: counters.detections.Load(),
			Crops:      counters.crops.Load(),
			Erased:     counters.erased.Load(),
			Tracks:     counters.tracks.Load(),
			Stationary: counters.stationary.Load(),
			Reconnects: counters.reconnects.Load(),
			Skipped:    counters.skipped.Load(),
			Late:       counters.late.Load(),
			Seconds:    end.Sub(started).Seconds(),
			Running:    finished == 0,
		}
		if camera.Seconds > 0 {
			camera.FPS = float64(camera.Frames) / camera.Seconds
		}
		stats.Frames += camera.Frames
		stats.Detections += camera.Detections
		stats.Crops += camera.Crops
		stats.Tracks += camera.Tracks
		stats.Seconds = max(stats.Seconds, camera.Seconds)
		stats.Cameras = append(stats.Cameras, camera)
	}
	if stats.Seconds > 0 {
		stats.FPS = float64(stats.Frames) / stats.Seconds
	}
	return stats
}

// sinkFlushTimeout bounds how long a cancelled camera waits for its queued crops to be stored.
const sinkFlushTimeout = 10 * time.Second

// runCamera owns everything of one camera: its source, detector, tracker, Mats and sink writer.
func (in *Ingester) runCamera(ctx context.Context, camera config.Camera, counters *cameraCounters) error {
	det, err := in.options.NewDetector(in.options.Detector.WithOverrides(camera.Detector))
	if err != nil {
		return err
	}
	defer det.Close()

	// The sink writer runs beside the camera so that slow writes (fsync) overlap decoding and
	// detection; the bounded queue makes a slow sink slow ingest down rather than grow memory.
	// On shutdown the writer still stores what is queued (crops already made), for at most
	// sinkFlushTimeout, so its context is detached from the caller's.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	writeCtx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrites()
	queue := make(chan cropstore.CropRecord, in.options.SinkBuffer)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for record := range queue {
			err := in.options.Sink.Put(writeCtx, record)
			if errors.Is(err, cropstore.ErrErased) {
				// The track was erased while still in view: its crops are not kept, and the
				// camera goes on.
				counters.erased.Add(1)
				continue
			}
			if err != nil {
				counters.sinkErrors.Add(1)
				cancel(fmt.Errorf("sink: %w", err))
				for range queue { // drain so the producer never blocks on a dead writer
				}
				return
			}
			counters.crops.Add(1)
		}
	}()
	camErr := in.processSource(ctx, camera, det, counters, queue)
	close(queue)
	select {
	case <-writerDone:
	case <-ctx.Done():
		flush := time.NewTimer(sinkFlushTimeout)
		select {
		case <-writerDone:
		case <-flush.C:
			cancelWrites()
			<-writerDone
		}
		flush.Stop()
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return camErr
}

// processSource opens the source and processes it; live sources are reopened with capped
// exponential backoff when they fail or drop.
func (in *Ingester) processSource(ctx context.Context, camera config.Camera, det Detector, counters *cameraCounters, queue chan<- cropstore.CropRecord) error {
	kind, _ := classify(camera.Source)
	logger := in.options.Logger.With("camera", camera.ID, "source", config.MaskURLCredentials(camera.Source), "kind", kind.String())
	fps := in.options.Ingest.SampleFPS
	if camera.SampleFPS > 0 {
		fps = camera.SampleFPS
	}
	state := &cameraState{
		camera:   camera,
		kind:     kind,
		detector: det,
		sampler:  NewSampler(fps),
		tracker: track.New(track.Options{
			IoU: in.options.Tracker.IoU, MaxAge: in.options.Tracker.MaxAge, MinHits: in.options.Tracker.MinHits,
		}),
		cropper:   newCropper(in.options.Crops),
		lastCrop:  map[int64]cropMark{},
		counters:  counters,
		queue:     queue,
		options:   &in.options,
		cameraT0:  time.Now(),
		frame:     gocv.NewMat(),
		wallclock: in.options.Ingest.Timestamps == "wallclock",
	}
	defer state.close()
	if camera.StartTime != "" {
		start, err := time.Parse(time.RFC3339, camera.StartTime)
		if err != nil {
			return fmt.Errorf("start_time: %w", err)
		}
		state.configuredStart = start
	}

	backoff := Backoff{Initial: in.options.Ingest.ReconnectInitial, Max: in.options.Ingest.ReconnectMax}
	failures := 0
	for {
		source, err := openUntil(ctx, in.options.open, camera)
		if err == nil {
			logger.Debug("source opened")
			var progressed bool
			progressed, err = state.drain(ctx, source)
			source.Close()
			if progressed {
				failures = 0
			}
		}
		switch {
		case err == nil || errors.Is(err, io.EOF) || errors.Is(err, errMaxFrames):
			return nil
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case !kind.live():
			return err
		}
		failures++
		if limit := in.options.Ingest.MaxReconnects; limit > 0 && failures > limit {
			return fmt.Errorf("giving up after %d failed reconnects: %w", limit, err)
		}
		delay := backoff.Delay(failures)
		logger.Warn("live source lost; reopening", "err", err, "attempt", failures, "delay", delay)
		counters.reconnects.Add(1)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return context.Cause(ctx)
		case <-timer.C:
		}
	}
}

var errMaxFrames = errors.New("max frames reached")

// openUntil opens camera's source, or gives up when ctx ends first: opening a camera that accepts
// the connection and then says nothing waits for FFmpeg's 30 s timeout. An open that completes
// after that is closed by its own goroutine.
func openUntil(ctx context.Context, open func(config.Camera) (capture, error), camera config.Camera) (capture, error) {
	type opened struct {
		source capture
		err    error
	}
	result := make(chan opened, 1)
	go func() {
		source, err := open(camera)
		result <- opened{source, err}
	}()
	select {
	case r := <-result:
		return r.source, r.err
	case <-ctx.Done():
		go func() {
			if r := <-result; r.err == nil {
				r.source.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// cameraState is the per-camera pipeline between source and sink.
type cameraState struct {
	camera          config.Camera
	kind            sourceKind
	detector        Detector
	sampler         *Sampler
	tracker         *track.Tracker
	cropper         *cropper
	lastCrop        map[int64]cropMark // per track, for the rate limits
	counters        *cameraCounters
	queue           chan<- cropstore.CropRecord
	options         *Options
	cameraT0        time.Time // when the camera started, for live sampling positions
	frame           gocv.Mat
	frameIndex      int64 // decoded frames over the camera's life, across reconnects
	configuredStart time.Time
	wallclock       bool
	trackSession    time.Time // the first processed frame's time: see cropstore.TrackID
	boxes           []detector.Box
}

func (s *cameraState) close() {
	s.frame.Close()
	s.cropper.Close()
}

// read reads source's next frame into s.frame. A live stream that delivers none within
// ingest.stall_timeout has hung: FFmpeg gives an RTSP camera 30 s (it applies no read timeout of
// its own to RTSP, and gocv 0.31 cannot pass OpenCV one), so the camera is reopened on this
// deadline instead, and the stalled read is left to end on its own (newestFrame closes its source
// then).
func (s *cameraState) read(ctx context.Context, source capture) (frameInfo, error) {
	stall := s.options.Ingest.StallTimeout
	if _, streaming := source.(*newestFrame); !streaming || stall <= 0 {
		return source.Read(ctx, &s.frame)
	}
	readCtx, cancel := context.WithTimeoutCause(ctx, stall, errStalled)
	defer cancel()
	info, err := source.Read(readCtx, &s.frame)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(readCtx), errStalled) {
		return info, fmt.Errorf("no frame for %s (ingest.stall_timeout): %w", stall, errStalled)
	}
	return info, err
}

var errStalled = errors.New("live stream stalled")

// drain reads source until it ends or fails. progressed reports whether any frame was read.
func (s *cameraState) drain(ctx context.Context, source capture) (progressed bool, err error) {
	start := s.configuredStart
	if start.IsZero() {
		start = source.Start()
	}
	if start.IsZero() || (s.kind.live() && s.configuredStart.IsZero()) {
		start = time.Now() // live positions count from when the source (re)opened
	}
	skipped := func() {}
	if stills, ok := source.(*stillsCapture); ok {
		skipped = func() { s.counters.skipped.Store(int64(stills.unreadble)) }
	}
	for {
		if err := ctx.Err(); err != nil {
			return progressed, err
		}
		info, err := s.read(ctx, source)
		skipped()
		if err != nil {
			return progressed, err
		}
		progressed = true
		// Frames a live source delivered while the previous one was processed were decoded but
		// never looked at; they keep their numbers, so frame indexes still count the stream's.
		s.frameIndex += info.late
		s.counters.late.Add(info.late)
		s.counters.decoded.Add(1 + info.late)
		frameIndex := s.frameIndex
		s.frameIndex++

		read := info.read
		if read.IsZero() {
			read = time.Now()
		}
		position := info.position
		if s.kind.live() {
			position = read.Sub(s.cameraT0)
		}
		if !s.sampler.Keep(position) {
			continue
		}
		var frameTime time.Time
		switch {
		case s.wallclock:
			frameTime = read
		case !info.time.IsZero() && s.configuredStart.IsZero():
			frameTime = info.time
		default:
			frameTime = start.Add(info.position)
		}
		if err := s.process(ctx, frameIndex, frameTime.UTC()); err != nil {
			return progressed, err
		}
		if limit := s.options.MaxFrames; limit > 0 && s.counters.frames.Load() >= limit {
			return progressed, errMaxFrames
		}
	}
}

// mask blacks out the camera's privacy masks in the frame, before the detector or a crop sees it.
func (s *cameraState) mask() {
	for _, region := range s.camera.PrivacyMasks {
		if area := region.Pixels(s.frame.Cols(), s.frame.Rows()); !area.Empty() {
			gocv.Rectangle(&s.frame, area, color.RGBA{}, -1)
		}
	}
}

// process detects, tracks and crops one sampled frame.
func (s *cameraState) process(ctx context.Context, frameIndex int64, frameTime time.Time) error {
	s.mask()
	detections, err := s.detector.Detect(s.frame)
	if err != nil {
		return fmt.Errorf("frame %d: %w", frameIndex, err)
	}
	s.counters.frames.Add(1)
	s.counters.detections.Add(int64(len(detections)))
	s.boxes = s.boxes[:0]
	for _, detection := range detections {
		s.boxes = append(s.boxes, detection.Box)
	}
	assignments := s.tracker.Update(s.boxes)
	if s.trackSession.IsZero() {
		s.trackSession = frameTime
	}
	for i, assignment := range assignments {
		if !assignment.Confirmed {
			continue
		}
		box := detections[i].Box
		mark, known := s.lastCrop[assignment.Track]
		if !known {
			mark = cropMark{anchor: box, stillSince: frameTime}
		}
		mark.seen = frameTime
		if detector.IoU(mark.anchor, box) < stationaryIoU {
			mark.anchor, mark.stillSince = box, frameTime // it moved
		}
		s.lastCrop[assignment.Track] = mark
		cropped := !mark.at.IsZero()
		if cropped {
			if throttle := s.throttle(mark, frameTime); throttle != notThrottled {
				if throttle == throttledStationary {
					s.counters.stationary.Add(1)
				}
				continue
			}
		}
		jpeg, err := s.cropper.encode(s.frame, box)
		if err != nil {
			continue // a box clipped to nothing at the frame edge has no crop
		}
		if !cropped {
			s.counters.tracks.Add(1)
		}
		mark.at = frameTime
		s.lastCrop[assignment.Track] = mark
		record := cropstore.CropRecord{
			ID:       cropstore.NewID(s.camera.ID, frameTime, frameIndex, i),
			Camera:   s.camera.ID,
			Time:     frameTime,
			Frame:    frameIndex,
			Box:      frameBox(detections[i].Box),
			Score:    detections[i].Score,
			Track:    cropstore.TrackID(s.trackSession, assignment.Track),
			Detector: s.detector.Name(),
			JPEG:     jpeg,
		}
		select {
		case s.queue <- record:
			s.counters.queued.Add(1)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	s.forgetOldTracks(frameTime)
	return nil
}

// cropMark is what the rate limits keep of a track.
type cropMark struct {
	at         time.Time // its last crop
	seen       time.Time // its latest frame
	anchor     detector.Box
	stillSince time.Time // since when its box has stayed on anchor
}

// A track counts as stationary once its box has overlapped one position by at least
// stationaryIoU for stationaryAfter: a person walking leaves it within a second, one who stops to
// read a sign keeps the usual crop rate for a while, and a sign taken for a person is throttled
// for the rest of the day.
const (
	stationaryIoU   = 0.85
	stationaryAfter = 10 * time.Second
)

// throttle says whether, and why, a track gets no crop at frameTime.
func (s *cameraState) throttle(mark cropMark, frameTime time.Time) throttleReason {
	since := frameTime.Sub(mark.at)
	if since < s.options.Crops.MinInterval {
		return throttledRate
	}
	interval := s.options.Crops.StationaryInterval
	if interval > 0 && frameTime.Sub(mark.stillSince) >= stationaryAfter && since < interval {
		return throttledStationary
	}
	return notThrottled
}

type throttleReason int

const (
	notThrottled throttleReason = iota
	throttledRate
	throttledStationary
)

// forgetOldTracks bounds the rate-limit map: a track unseen for a minute has long ended (tracks
// live max_age frames without detections).
func (s *cameraState) forgetOldTracks(now time.Time) {
	if len(s.lastCrop) < 256 {
		return
	}
	for id, last := range s.lastCrop {
		if now.Sub(last.seen) > time.Minute {
			delete(s.lastCrop, id)
		}
	}
}
