package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// DatasetOptions sizes a synthetic data set. Zero values take the defaults in brackets.
type DatasetOptions struct {
	Identities int // identities, half for training and half for testing [200]
	Cameras    int // cameras [6]
	PerCamera  int // images of an identity per camera it appears in [4]
	Seed       uint64
	// Difficulty scales every camera nuisance: near 0 a clean view, 1 the default, 4 harsh [1].
	Difficulty float64
	// Distractors is how many images of people outside the identity set (id 0000) join the test
	// gallery [Identities/4]; negative means none.
	Distractors int
	Workers     int // rendering goroutines [GOMAXPROCS]
	Logger      *slog.Logger
}

func (o *DatasetOptions) setDefaults() {
	if o.Identities == 0 {
		o.Identities = 200
	}
	if o.Cameras == 0 {
		o.Cameras = 6
	}
	if o.PerCamera == 0 {
		o.PerCamera = 4
	}
	if o.Difficulty == 0 {
		o.Difficulty = 1
	}
	if o.Distractors == 0 {
		o.Distractors = o.Identities / 4
	}
	o.Distractors = max(o.Distractors, 0)
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports bad options (after defaults) before any work is done.
func (o DatasetOptions) Validate() error {
	o.setDefaults()
	return o.validate()
}

func (o DatasetOptions) validate() error {
	var problems []error
	if o.Identities < 2 {
		problems = append(problems, fmt.Errorf("identities %d: need at least 2 (one to train, one to test)", o.Identities))
	}
	if o.Identities > 9999 {
		problems = append(problems, fmt.Errorf("identities %d: Market names hold at most 9999", o.Identities))
	}
	if o.Cameras < 2 || o.Cameras > 9 {
		problems = append(problems, fmt.Errorf("cameras %d: need 2 to 9 (Market names hold one digit)", o.Cameras))
	}
	if o.PerCamera < 2 {
		problems = append(problems, fmt.Errorf("per-camera %d: need at least 2 (one query, one gallery)", o.PerCamera))
	}
	if o.Difficulty < 0 || o.Difficulty > 4 {
		problems = append(problems, fmt.Errorf("difficulty %g: want 0 to 4", o.Difficulty))
	}
	return errors.Join(problems...)
}

// DatasetSummary counts what WriteDataset wrote; it is also saved as synth.json.
type DatasetSummary struct {
	Options struct {
		Identities, Cameras, PerCamera, Distractors int
		Seed                                        uint64
		Difficulty                                  float64
	}
	TrainImages, TrainIdentities int
	QueryImages, GalleryImages   int
	TestIdentities               int
	Cameras                      []Camera
	Identities                   []Identity
}

// item is one image to render.
type item struct {
	folder   string
	identity Identity
	label    int // 0 for a distractor
	camera   int // index into cameras
	frame    int
}

// Random streams: each identity, camera and image has its own, derived from the seed, so every
// output is reproducible however the work is scheduled.
const (
	streamIdentity = 1 << 40
	streamCamera   = 2 << 40
	streamPlan     = 3 << 40
	streamImage    = 4 << 40
)

func stream(seed, purpose uint64, index int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, purpose+uint64(index)))
}

// WriteDataset renders a Market-1501 layout data set into dir (bounding_box_train,
// bounding_box_test, query): identities 1..N/2 train, the rest test; every identity is seen by at
// least two cameras; of each test identity's images in a camera, one is a query and the rest
// are gallery.
func WriteDataset(ctx context.Context, dir string, library *Library, options DatasetOptions) (*DatasetSummary, error) {
	options.setDefaults()
	if err := options.validate(); err != nil {
		return nil, err
	}
	plates := 1
	if library != nil {
		plates = max(len(library.Plates), 1)
	}
	cameras := make([]Camera, options.Cameras)
	for i := range cameras {
		cameras[i] = NewCamera(i+1, plates, options.Difficulty, stream(options.Seed, streamCamera, i))
	}
	scene, err := newScene(library, cameras)
	if err != nil {
		return nil, err
	}
	summary := &DatasetSummary{Cameras: cameras}
	summary.Options.Identities, summary.Options.Cameras, summary.Options.PerCamera = options.Identities, options.Cameras, options.PerCamera
	summary.Options.Distractors, summary.Options.Seed, summary.Options.Difficulty = options.Distractors, options.Seed, options.Difficulty

	plan := stream(options.Seed, streamPlan, 0)
	frames := make([]int, options.Cameras)
	nextFrame := func(camera int) int {
		frames[camera] += 1 + plan.IntN(40)
		return frames[camera]
	}
	trainCount := options.Identities / 2
	var items []item
	for id := 1; id <= options.Identities; id++ {
		identity := NewIdentity(id, stream(options.Seed, streamIdentity, id))
		summary.Identities = append(summary.Identities, identity)
		seen := camerasFor(options.Cameras, plan)
		for _, camera := range seen {
			for shot := 0; shot < options.PerCamera; shot++ {
				folder := "bounding_box_train"
				if id > trainCount {
					folder = "bounding_box_test"
					if shot == 0 {
						folder = "query"
					}
				}
				items = append(items, item{folder: folder, identity: identity, label: id, camera: camera, frame: nextFrame(camera)})
			}
		}
	}
	for i := 0; i < options.Distractors; i++ {
		identity := NewIdentity(0, stream(options.Seed, streamIdentity, options.Identities+1+i))
		camera := plan.IntN(options.Cameras)
		items = append(items, item{folder: "bounding_box_test", identity: identity, label: 0, camera: camera, frame: nextFrame(camera)})
	}
	for _, folder := range []string{"bounding_box_train", "bounding_box_test", "query"} {
		if err := os.MkdirAll(filepath.Join(dir, folder), 0o755); err != nil {
			return nil, err
		}
	}
	if err := renderAll(ctx, dir, scene, items, options); err != nil {
		return nil, err
	}
	testIdentities := map[int]bool{}
	for _, it := range items {
		switch it.folder {
		case "bounding_box_train":
			summary.TrainImages++
		case "query":
			summary.QueryImages++
			testIdentities[it.label] = true
		default:
			summary.GalleryImages++
		}
	}
	summary.TrainIdentities, summary.TestIdentities = trainCount, len(testIdentities)
	encoded, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "synth.json"), encoded, 0o644); err != nil {
		return nil, err
	}
	return summary, nil
}

// camerasFor picks which cameras see an identity: each with chance 3/4, at least two.
func camerasFor(count int, random *rand.Rand) []int {
	for {
		var seen []int
		for camera := 0; camera < count; camera++ {
			if random.Float64() < 0.75 {
				seen = append(seen, camera)
			}
		}
		if len(seen) >= 2 {
			return seen
		}
	}
}

// MarketName is the Market-1501 file name: identity, camera, sequence, frame, box index.
func MarketName(label, camera, frame int) string {
	return fmt.Sprintf("%04d_c%ds1_%06d_01.jpg", label, camera, frame)
}

func renderAll(ctx context.Context, dir string, scene *scene, items []item, options DatasetOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan int)
	var (
		wait     sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for w := 0; w < options.Workers; w++ {
		wait.Add(1)
		go func() {
			defer wait.Done()
			for index := range work {
				it := items[index]
				crop, quality, err := scene.renderCrop(it.identity, it.camera, stream(options.Seed, streamImage, index))
				if err == nil {
					var encoded []byte
					encoded, err = encodeJPEG(crop, quality)
					if err == nil {
						name := MarketName(it.label, it.camera+1, it.frame)
						err = os.WriteFile(filepath.Join(dir, it.folder, name), encoded, 0o644)
					}
				}
				if err != nil {
					fail(fmt.Errorf("image %d: %w", index, err))
				}
			}
		}()
	}
	for index := range items {
		select {
		case work <- index:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wait.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	options.Logger.Info("synthetic data set written", "dir", dir, "images", len(items))
	return nil
}
