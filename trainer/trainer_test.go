package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/reid-project/reid/cluster"
	"github.com/reid-project/reid/internal/testassets"
	"github.com/reid-project/reid/internal/vecmath"
	"github.com/reid-project/reid/torch"
)

const testHeight, testWidth = 128, 64

// syntheticPeople makes crops of identities figures: each a torso and legs in the identity's own
// colours on a grey background, seen by two cameras with different lighting, jittered in place
// and size, with noise. Enough structure for OSNet to cluster, and for training to matter.
func syntheticPeople(t testing.TB, identities, perIdentity int) ([]Example, []int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	var examples []Example
	var truth []int
	for person := range identities {
		top := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
		bottom := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
		for shot := range perIdentity {
			camera := []string{"cam-a", "cam-b"}[shot%2]
			light := []float64{1.0, 0.75}[shot%2]
			picture := image.NewRGBA(image.Rect(0, 0, testWidth, testHeight))
			shiftX, shiftY := rng.IntN(9)-4, rng.IntN(9)-4
			for y := range testHeight {
				for x := range testWidth {
					base := color.RGBA{128, 128, 128, 255}
					inBody := x+shiftX > 16 && x+shiftX < 48
					switch {
					case inBody && y+shiftY > 20 && y+shiftY < 64:
						base = top
					case inBody && y+shiftY >= 64 && y+shiftY < 120:
						base = bottom
					}
					noise := func(v uint8) uint8 {
						return uint8(min(255, max(0, float64(v)*light+rng.NormFloat64()*12)))
					}
					picture.SetRGBA(x, y, color.RGBA{noise(base.R), noise(base.G), noise(base.B), 255})
				}
			}
			var encoded bytes.Buffer
			if err := jpeg.Encode(&encoded, picture, &jpeg.Options{Quality: 90}); err != nil {
				t.Fatal(err)
			}
			examples = append(examples, Example{ID: fmt.Sprintf("person%02d-shot%02d", person, shot), Camera: camera, JPEG: encoded.Bytes()})
			truth = append(truth, person)
		}
	}
	return examples, truth
}

// testDevice is cpu, or $REID_TORCH_DEVICE (scripts/gpu-check.sh runs these tests on cuda).
func testDevice() string {
	if name := os.Getenv("REID_TORCH_DEVICE"); name != "" {
		return name
	}
	return "cpu"
}

// osnet returns the shared OSNet x0.25 (MSMT17) at the test input size, on its own device.
func osnet(t testing.TB) *torch.Model {
	t.Helper()
	device, err := torch.Open(torch.Params{Device: testDevice(), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { device.Close() })
	network, err := device.NewModel(context.Background(), torch.ModelOptions{Arch: torch.ArchOSNetX0_25, InputHeight: testHeight, InputWidth: testWidth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { network.Close() })
	if _, err := network.LoadWeights(context.Background(), testassets.Path(t, "models/reid/osnet_x0_25_msmt17.pth")); err != nil {
		t.Fatal(err)
	}
	return network
}

func smallRun() Options {
	return Options{Epochs: 2, ItersPerEpoch: 4, BatchSize: 16, Instances: 4, FeatureBatch: 32,
		Cluster: cluster.Options{K1: 10, K2: 3, Eps: 0.5, MinSamples: 3}}
}

func embedAll(t testing.TB, network *torch.Model, examples []Example) [][]float32 {
	t.Helper()
	r := &run{network: network, examples: examples, options: Options{FeatureBatch: 32}, height: testHeight, width: testWidth}
	features, err := r.features(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return features
}

// separation is how much closer crops are to their own identity's centre than to the nearest
// other one, on average: what the contrastive loss against cluster centres improves.
func separation(features [][]float32, truth []int) float64 {
	centres, _ := clusterCentres(features, truth)
	total := 0.0
	for i, feature := range features {
		nearestOther := -1.0
		for c, centre := range centres {
			if c != truth[i] {
				nearestOther = max(nearestOther, vecmath.Dot64(feature, centre))
			}
		}
		total += vecmath.Dot64(feature, centres[truth[i]]) - nearestOther
	}
	return total / float64(len(features))
}

// crossCameraAgreement is the mean cosine between each person's mean features in two cameras.
func crossCameraAgreement(features [][]float32, examples []Example, truth []int) float64 {
	cameras := map[string]int{}
	for _, example := range examples {
		if _, seen := cameras[example.Camera]; !seen {
			cameras[example.Camera] = len(cameras)
		}
	}
	people := slices.Max(truth) + 1
	byCamera := make([]int, len(truth)) // person x cameras + camera
	for i, example := range examples {
		byCamera[i] = truth[i]*len(cameras) + cameras[example.Camera]
	}
	centres, _ := clusterCentres(features, byCamera)
	total := 0.0
	for person := range people {
		total += vecmath.Dot64(centres[person*len(cameras)], centres[person*len(cameras)+1])
	}
	return total / float64(people)
}

func TestTrainSeparatesIdentities(t *testing.T) {
	examples, truth := syntheticPeople(t, 8, 10)
	// The first loss of the case before: the same seed draws the same first batch, so the
	// inter-camera term's case must start higher by that term.
	var previousFirstLoss float64
	for _, test := range []struct {
		name          string
		cameraProxies bool
		interCamera   float32
	}{{"one memory", false, 0}, {"camera proxies", true, 0}, {"camera proxies and the inter-camera term", true, 0.5}} {
		t.Run(test.name, func(t *testing.T) {
			network := osnet(t)
			featuresBefore := embedAll(t, network, examples)
			before, togetherBefore := separation(featuresBefore, truth), crossCameraAgreement(featuresBefore, examples, truth)
			options := smallRun()
			options.CameraProxies, options.InterCamera = test.cameraProxies, test.interCamera
			summary, err := Train(context.Background(), network, examples, options, nil)
			if err != nil {
				t.Fatal(err)
			}
			featuresAfter := embedAll(t, network, examples)
			after, together := separation(featuresAfter, truth), crossCameraAgreement(featuresAfter, examples, truth)
			t.Logf("separation %.4f -> %.4f; a person's two cameras %.4f -> %.4f; epochs %+v", before, after, togetherBefore, together, summary.Epochs)
			if after <= before+0.01 {
				t.Errorf("training did not separate the identities: separation %.4f -> %.4f", before, after)
			}
			if first := summary.Epochs[0].FirstLoss; test.interCamera > 0 && !(first > previousFirstLoss+0.1) {
				t.Errorf("first loss %.4f with the inter-camera term, %.4f without: the term is missing", first, previousFirstLoss)
			}
			previousFirstLoss = summary.Epochs[0].FirstLoss
			if len(summary.Epochs) != 2 || summary.Crops != len(examples) || summary.Cameras != 2 || summary.Resumed != 0 {
				t.Errorf("summary %+v", summary)
			}
			for _, epoch := range summary.Epochs {
				if epoch.Clusters < 2 || epoch.CrossCamera < 1 || epoch.Clustered+epoch.Outliers != len(examples) || math.IsNaN(epoch.Loss) || epoch.Loss <= 0 {
					t.Errorf("epoch report %+v", epoch)
				}
			}
		})
	}
}

// TestCameraProxies: every cluster is split into its cameras' parts, each camera's memory holds
// only its own parts (as the normalised mean of their crops), an example is in its own camera's
// memory only, and a camera with fewer than two parts has no memory.
func TestCameraProxies(t *testing.T) {
	cameras := []string{"north", "north", "south", "north", "south", "south", "west", "east"}
	labels := []int{0, 1, 0, 0, -1, 2, -1, 1}
	features := [][]float32{{1, 0}, {0, 1}, {0.6, 0.8}, {0, 1}, {1, 0}, {-1, 0}, {0, -1}, {1, 0}}
	groups := cameraProxies(features, labels, cameras)
	if len(groups) != 2 {
		t.Fatalf("%d memories, want north and south (west has no clustered crop, east one person)", len(groups))
	}
	wantLabels := [][]int{{0, 1, -1, 0, -1, -1, -1, -1}, {-1, -1, 0, -1, -1, 1, -1, -1}}
	s := float32(math.Sqrt(0.5))
	wantCentres := [][][]float32{{{s, s}, {0, 1}}, {{0.6, 0.8}, {-1, 0}}}
	wantIdentities := [][]int{{0, 1}, {0, 2}} // the cluster of each entry: person 0 is in both
	for g, group := range groups {
		if !slices.Equal(group.labels, wantLabels[g]) {
			t.Errorf("memory %d labels %v, want %v", g, group.labels, wantLabels[g])
		}
		if !slices.Equal(group.identities, wantIdentities[g]) {
			t.Errorf("memory %d identities %v, want %v", g, group.identities, wantIdentities[g])
		}
		if len(group.centres) != len(wantCentres[g]) {
			t.Fatalf("memory %d has %d entries, want %d", g, len(group.centres), len(wantCentres[g]))
		}
		for e, centre := range group.centres {
			for d := range centre {
				if math.Abs(float64(centre[d]-wantCentres[g][e][d])) > 1e-6 {
					t.Errorf("memory %d entry %d = %v, want %v", g, e, centre, wantCentres[g][e])
				}
			}
		}
	}
}

// An interrupted run resumed from its checkpoint ends where the uninterrupted run ends.
func TestTrainResumesFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	examples, _ := syntheticPeople(t, 6, 8)

	// With a memory per camera: the draw of which camera each step trains is part of what must
	// repeat.
	whole := smallRun()
	whole.CameraProxies = true
	whole.CheckpointDir = t.TempDir()
	uninterrupted := osnet(t)
	if _, err := Train(ctx, uninterrupted, examples, whole, nil); err != nil {
		t.Fatal(err)
	}
	want := embedAll(t, uninterrupted, examples)

	firstHalf := whole
	firstHalf.Epochs = 1
	firstHalf.CheckpointDir = t.TempDir()
	if _, err := Train(ctx, osnet(t), examples, firstHalf, nil); err != nil {
		t.Fatal(err)
	}
	secondHalf := whole
	secondHalf.CheckpointDir = firstHalf.CheckpointDir
	resumed := osnet(t) // a fresh process would start from the parent weights too
	summary, err := Train(ctx, resumed, examples, secondHalf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if summary.Resumed != 1 || len(summary.Epochs) != 2 {
		t.Fatalf("resumed %d of %d epochs, want 1 of 2", summary.Resumed, len(summary.Epochs))
	}
	got := embedAll(t, resumed, examples)
	worst := 0.0
	for i := range want {
		for d := range want[i] {
			worst = max(worst, math.Abs(float64(want[i][d]-got[i][d])))
		}
	}
	// On CUDA, bf16 autocast and cuDNN's non-deterministic backward make two runs differ anyway.
	tolerance := 1e-4
	if testDevice() != "cpu" {
		tolerance = 5e-2
	}
	if worst > tolerance {
		t.Errorf("resumed run differs from the uninterrupted one by up to %g", worst)
	}

	otherRate, otherStart := smallRun(), smallRun()
	otherRate.LR = 1e-3
	otherStart.Start = "v7@another-checksum"
	for _, other := range []Options{otherRate, otherStart} {
		other.CheckpointDir = firstHalf.CheckpointDir
		if _, err := Train(ctx, osnet(t), examples, other, nil); err == nil || !strings.Contains(err.Error(), "other options") {
			t.Errorf("a checkpoint of another run (%+v) was resumed: %v", other, err)
		}
	}
}

func TestTrainRejects(t *testing.T) {
	ctx := context.Background()
	examples, _ := syntheticPeople(t, 4, 6)
	network := osnet(t)

	broken := append([]Example(nil), examples...)
	broken[5] = Example{ID: "cut-short", Camera: "cam-a", JPEG: examples[5].JPEG[:100]}
	if _, err := Train(ctx, network, broken, smallRun(), nil); err == nil || !strings.Contains(err.Error(), "cut-short") {
		t.Errorf("a truncated JPEG: %v, want an error naming the crop", err)
	}

	tight := smallRun()
	tight.Cluster.Eps, tight.Cluster.MinSamples = 0.05, 12 // 24 crops, none with 12 neighbours that close
	if _, err := Train(ctx, network, examples, tight, nil); !errors.Is(err, ErrNoClusters) {
		t.Errorf("nothing to cluster: %v, want ErrNoClusters", err)
	}
	if _, err := Train(ctx, network, examples[:3], smallRun(), nil); err == nil || !strings.Contains(err.Error(), "too few") {
		t.Errorf("three crops: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
	}{
		{"batch not a multiple of instances", func(o *Options) { o.BatchSize, o.Instances = 30, 4 }},
		{"one instance", func(o *Options) { o.BatchSize, o.Instances = 16, 1 }},
		{"negative epochs", func(o *Options) { o.Epochs = -1 }},
		{"negative learning rate", func(o *Options) { o.LR = -1 }},
		{"gamma above one", func(o *Options) { o.Gamma = 2 }},
		{"momentum above one", func(o *Options) { o.Momentum = 1.5 }},
		{"eps of one", func(o *Options) { o.Cluster.Eps = 1 }},
		{"flip probability above one", func(o *Options) { o.Augmentation = &Augmentation{Flip: 2} }},
		{"negative inter-camera weight", func(o *Options) { o.CameraProxies, o.InterCamera = true, -1 }},
		{"negative hard negatives", func(o *Options) { o.CameraProxies, o.InterCamera, o.HardNegatives = true, 0.5, -3 }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			options := Options{}
			test.change(&options)
			if _, err := options.WithDefaults(); err == nil {
				t.Errorf("%+v accepted", options)
			}
		})
	}
	defaults, err := Options{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if defaults.Epochs != 50 || defaults.ItersPerEpoch != 200 || defaults.BatchSize != 256 || defaults.Instances != 16 ||
		defaults.LR != 3.5e-4 || defaults.Cluster.Eps != 0.6 || defaults.Temperature != 0.05 || *defaults.Augmentation != DefaultAugmentation() {
		t.Errorf("defaults are not the reference's: %+v", defaults)
	}
}

// Two cameras that each add their own strong tint to every crop: on raw features each person's
// nearest other crop is someone else in the same camera; once each camera's mean is removed it
// is the same person in the other camera.
func TestCameraCentredFeaturesCrossCameras(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const dim, people = 16, 6
	identity := make([][]float32, people)
	for p := range identity {
		identity[p] = make([]float32, dim)
		for d := range identity[p] {
			identity[p][d] = float32(rng.NormFloat64())
		}
	}
	tint := map[string][]float32{"north": make([]float32, dim), "south": make([]float32, dim)}
	tint["north"][0], tint["south"][1] = 12, 12
	var features [][]float32
	var examples []Example
	for _, camera := range []string{"north", "south"} {
		for p := range people {
			row := make([]float32, dim)
			for d := range row {
				row[d] = identity[p][d] + tint[camera][d] + float32(0.1*rng.NormFloat64())
			}
			features = append(features, row)
			examples = append(examples, Example{ID: fmt.Sprintf("%s-%d", camera, p), Camera: camera})
		}
	}
	nearestIsSamePerson := func(rows [][]float32) int {
		hits := 0
		for i := range rows {
			best, bestScore := -1, math.Inf(-1)
			for j := range rows {
				if score := vecmath.Dot64(rows[i], rows[j]); j != i && score > bestScore {
					best, bestScore = j, score
				}
			}
			if best%people == i%people {
				hits++
			}
		}
		return hits
	}
	if raw := nearestIsSamePerson(vecmath.Normalize(features)); raw > 2 {
		t.Fatalf("the tint should dominate raw features, yet %d of 12 nearest neighbours are the same person", raw)
	}
	for _, keepBias := range []bool{false, true} {
		r := &run{examples: examples, options: Options{KeepCameraBias: keepBias}}
		hits := nearestIsSamePerson(r.clusterSpace(vecmath.Normalize(features)))
		if (keepBias && hits > 2) || (!keepBias && hits != 2*people) {
			t.Errorf("clustering space with keep camera bias %v: %d of 12 nearest neighbours are the same person in the other camera", keepBias, hits)
		}
	}
}

// TestBatchPipeline: the batches prepared ahead of the training steps are exactly those a serial
// loop makes from the same generator; stopping early does not hang; a broken crop ends the epoch
// with an error that names it.
func TestBatchPipeline(t *testing.T) {
	oneMemory := func(draw *sampler) func(int) ([]int, []int64, int) {
		return func(identities int) ([]int, []int64, int) {
			indices, labels := draw.batch(identities)
			return indices, labels, 0
		}
	}
	ctx := t.Context()
	examples, truth := syntheticPeople(t, 4, 4)
	cameras := make([]string, len(examples))
	for i, example := range examples {
		cameras[i] = example.Camera
	}
	augmentation := DefaultAugmentation()
	newRun := func(examples []Example) *run {
		return &run{examples: examples, height: testHeight, width: testWidth, fill: [3]byte{124, 116, 104},
			options: Options{ItersPerEpoch: 5, BatchSize: 8, Instances: 4, Augmentation: &augmentation}}
	}
	r := newRun(examples)
	serialRNG := rand.New(rand.NewPCG(3, 4))
	serial := newSampler(serialRNG, truth, cameras, 4)
	pipelineRNG := rand.New(rand.NewPCG(3, 4))
	pipeline := r.prepareBatches(ctx, oneMemory(newSampler(pipelineRNG, truth, cameras, 4)), pipelineRNG)
	defer pipeline.stop()
	for step := range r.options.ItersPerEpoch {
		indices, labels := serial.batch(2)
		want, err := r.trainingBatch(ctx, serialRNG, indices)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := <-pipeline.ready
		if !ok || got.err != nil {
			t.Fatalf("step %d: pipeline closed (%v) or failed: %v", step, !ok, got.err)
		}
		if !slices.Equal(got.labels, labels) || !bytes.Equal(got.batch.Pix, want.Pix) {
			t.Fatalf("step %d: the prepared batch differs from the serial loop's", step)
		}
	}
	if _, ok := <-pipeline.ready; ok {
		t.Fatal("the pipeline made more batches than the epoch's steps")
	}

	early := r.prepareBatches(ctx, oneMemory(newSampler(rand.New(rand.NewPCG(5, 6)), truth, cameras, 4)), rand.New(rand.NewPCG(5, 6)))
	<-early.ready
	early.stop() // returns only once the goroutine has ended

	broken := slices.Clone(examples)
	for i := range broken {
		broken[i].JPEG = []byte("not a jpeg")
	}
	failing := newRun(broken).prepareBatches(ctx, oneMemory(newSampler(rand.New(rand.NewPCG(7, 8)), truth, cameras, 4)), rand.New(rand.NewPCG(7, 8)))
	defer failing.stop()
	got := <-failing.ready
	if got.err == nil || !strings.Contains(got.err.Error(), "person") {
		t.Fatalf("broken crops: error %v, want one naming the crop", got.err)
	}
	if _, ok := <-failing.ready; ok {
		t.Fatal("the pipeline went on after an error")
	}
}
