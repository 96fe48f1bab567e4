// Package trainer adapts the re-id network to a site without labels, by Cluster Contrast (Dai et
// al., "Cluster Contrast for Unsupervised Person Re-Identification", arXiv 2103.11568).
//
// Every epoch embeds all of the site's crops with the current network, pseudo-labels them by
// k-reciprocal Jaccard distance and DBSCAN (package cluster), and builds a memory with one entry
// per cluster, the normalised mean of its members. It then trains for a number of steps with
// the contrastive loss of each crop against that memory (temperature 0.05), moving a cluster's
// entry towards its hardest crop of the batch after each step. DBSCAN's outliers sit the epoch
// out. The torch package does the step itself; this package decides what goes into it.
package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reid-project/reid/cluster"
	"github.com/reid-project/reid/internal/atomicfile"
	"github.com/reid-project/reid/internal/jpegturbo"
	"github.com/reid-project/reid/internal/vecmath"
	"github.com/reid-project/reid/torch"
)

// Example is one training crop.
type Example struct {
	ID     string
	Camera string
	// JPEG is the crop image; it is decoded and resized to the network's input on use.
	JPEG []byte
}

// Options configure a training run. Zero values mean the reference implementation's defaults,
// which assume a GPU; on a CPU, fewer iterations and smaller batches are the practical choice.
type Options struct {
	// Epochs is the number of cluster-then-train rounds. Default 50.
	Epochs int
	// ItersPerEpoch is the number of optimiser steps per epoch. Default 200.
	ItersPerEpoch int
	// BatchSize is the number of crops per step and Instances the crops per pseudo-identity in
	// it (so a batch holds BatchSize/Instances identities). Defaults 256 and 16.
	BatchSize int
	Instances int
	// LR, WeightDecay: Adam. Defaults 3.5e-4, 5e-4. The rate is multiplied by Gamma (default 0.1)
	// every StepSize (default 20) epochs.
	LR          float64
	WeightDecay float64
	StepSize    int
	Gamma       float64
	// Cluster is the pseudo-labelling (Jaccard k1/k2, DBSCAN eps and min samples).
	Cluster cluster.Options
	// Temperature of the contrastive loss (default 0.05) and Momentum of the memory update
	// (default 0.1: an entry keeps 10% of itself and takes 90% of the new crop).
	Temperature float32
	Momentum    float32
	// KeepCameraBias clusters the raw features instead of the camera-centred ones (each camera's
	// mean feature subtracted), as the reference does. See cameraCentred.
	KeepCameraBias bool
	// CameraProxies trains each step on one camera's crops against that camera's share of the
	// clusters (see cameraProxies) instead of every cluster at once, as the reference does.
	CameraProxies bool
	// InterCamera, when above 0 and with CameraProxies, adds to each step's loss this weight times
	// camera-aware proxies' inter-camera term: a crop against all of its cluster's parts in every
	// camera at once, with the HardNegatives (default 50) most similar parts of other clusters as
	// negatives. It pulls a person's views in different cameras together, which the per-camera
	// memories alone never do. Without CameraProxies it does nothing.
	InterCamera   float32
	HardNegatives int
	// MeanUpdate updates a memory entry with every crop of the batch in turn instead of only the
	// hardest one (the paper's headline results use the hardest).
	MeanUpdate bool
	// Augmentation of training crops; nil means DefaultAugmentation.
	Augmentation *Augmentation
	// FeatureBatch is the batch size for embedding all crops before clustering. Default 64.
	FeatureBatch int
	// Seed makes sampling, augmentation and libtorch's randomness repeatable. Default 1.
	Seed uint64
	// Start names the weights training starts from (a model version and its checksum, say). It is
	// part of what a checkpoint must match, so a run from other weights never resumes it.
	Start string
	// CheckpointDir, when set, receives the network, the optimiser state and the epoch reports
	// after every epoch, and a later run with the same options and crops resumes from there.
	CheckpointDir string
	// CacheBytes bounds the memory for decoded crops kept between epochs; beyond it crops are
	// decoded again each time they are used. Default 2 GiB.
	CacheBytes int64
}

// WithDefaults fills zero fields with the defaults and validates the result.
func (o Options) WithDefaults() (Options, error) {
	defaults := []struct {
		field *int
		value int
	}{{&o.Epochs, 50}, {&o.ItersPerEpoch, 200}, {&o.BatchSize, 256}, {&o.Instances, 16}, {&o.StepSize, 20}, {&o.FeatureBatch, 64}}
	for _, d := range defaults {
		if *d.field == 0 {
			*d.field = d.value
		}
	}
	if o.LR == 0 {
		o.LR = 3.5e-4
	}
	if o.WeightDecay == 0 {
		o.WeightDecay = 5e-4
	}
	if o.Gamma == 0 {
		o.Gamma = 0.1
	}
	if o.Temperature == 0 {
		o.Temperature = 0.05
	}
	if o.Momentum == 0 {
		o.Momentum = 0.1
	}
	if o.Augmentation == nil {
		augmentation := DefaultAugmentation()
		o.Augmentation = &augmentation
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.HardNegatives == 0 {
		o.HardNegatives = 50
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 2 << 30
	}
	var err error
	if o.Cluster, err = o.Cluster.WithDefaults(); err != nil {
		return o, fmt.Errorf("trainer: %w", err)
	}
	switch {
	case o.Epochs < 1 || o.ItersPerEpoch < 1 || o.FeatureBatch < 1 || o.StepSize < 1:
		return o, fmt.Errorf("trainer: epochs, iterations per epoch, feature batch and LR step must be >= 1")
	case o.Instances < 2:
		return o, fmt.Errorf("trainer: instances = %d, want >= 2 (a pseudo-identity needs two crops in a batch to pull together)", o.Instances)
	case o.BatchSize < o.Instances || o.BatchSize%o.Instances != 0:
		return o, fmt.Errorf("trainer: batch size %d must be a multiple of instances (%d)", o.BatchSize, o.Instances)
	case !(o.LR > 0) || o.WeightDecay < 0 || !(o.Gamma > 0 && o.Gamma <= 1):
		return o, fmt.Errorf("trainer: bad learning rate schedule (lr %v, weight decay %v, gamma %v)", o.LR, o.WeightDecay, o.Gamma)
	case o.InterCamera < 0 || o.HardNegatives < 1:
		return o, fmt.Errorf("trainer: the inter-camera weight %v must be >= 0 and hard negatives %d >= 1", o.InterCamera, o.HardNegatives)
	case !(o.Temperature > 0) || !(o.Momentum >= 0 && o.Momentum <= 1):
		return o, fmt.Errorf("trainer: temperature %v must be > 0 and momentum %v in [0, 1]", o.Temperature, o.Momentum)
	case o.Augmentation.Flip < 0 || o.Augmentation.Flip > 1 || o.Augmentation.Erasing < 0 || o.Augmentation.Erasing > 1 || o.Augmentation.Pad < 0:
		return o, fmt.Errorf("trainer: bad augmentation %+v", *o.Augmentation)
	}
	return o, nil
}

// EpochReport describes one epoch.
type EpochReport struct {
	Epoch int `json:"epoch"` // 1-based
	// Clusters found, and Clustered the crops in them; the rest were outliers.
	Clusters  int `json:"clusters"`
	Clustered int `json:"clustered"`
	Outliers  int `json:"outliers"`
	// CrossCamera counts clusters with crops from more than one camera: the ones that teach the
	// network what a person looks like across cameras.
	CrossCamera int `json:"cross_camera_clusters"`
	// Proxies counts the clusters' per-camera parts trained against (CameraProxies).
	Proxies int     `json:"camera_proxies,omitempty"`
	LR      float64 `json:"lr"`
	// Loss is the mean loss over the epoch's steps, FirstLoss and LastLoss its first and last.
	Loss      float64 `json:"loss"`
	FirstLoss float64 `json:"first_loss"`
	LastLoss  float64 `json:"last_loss"`
	// Seconds spent embedding all crops, clustering, and training.
	FeatureSeconds float64 `json:"feature_seconds"`
	ClusterSeconds float64 `json:"cluster_seconds"`
	TrainSeconds   float64 `json:"train_seconds"`
}

// Summary describes a whole run.
type Summary struct {
	Crops   int           `json:"crops"`
	Cameras int           `json:"cameras"`
	Epochs  []EpochReport `json:"epochs"`
	// Resumed is how many epochs came from a checkpoint instead of this run.
	Resumed int     `json:"resumed,omitempty"`
	Seconds float64 `json:"seconds"`
}

// ErrNoClusters means an epoch's pseudo-labelling found nothing to train on.
var ErrNoClusters = errors.New("trainer: no clusters")

// Train adapts network (in place) to examples and returns what each epoch did. progress, if not
// nil, is called after each epoch. The network is left in eval mode.
func Train(ctx context.Context, network *torch.Model, examples []Example, options Options, progress func(EpochReport)) (Summary, error) {
	options, err := options.WithDefaults()
	if err != nil {
		return Summary{}, err
	}
	if len(examples) < options.Cluster.MinSamples*2 {
		return Summary{}, fmt.Errorf("trainer: %d crops are too few to cluster (want at least %d)", len(examples), options.Cluster.MinSamples*2)
	}
	began := time.Now()
	run := &run{
		network:  network,
		examples: examples,
		options:  options,
		height:   network.Options().InputHeight,
		width:    network.Options().InputWidth,
	}
	mean := network.Options().Mean
	for c := range 3 {
		run.fill[c] = byte(mean[c]*255 + 0.5)
	}
	if int64(len(examples))*int64(run.height*run.width*3) <= options.CacheBytes {
		run.cache = make([]torch.RGB, len(examples))
	}
	cameras := map[string]bool{}
	for _, example := range examples {
		cameras[example.Camera] = true
	}
	summary := Summary{Crops: len(examples), Cameras: len(cameras)}

	optimizer, err := network.NewAdam(ctx, torch.AdamOptions{LR: options.LR, WeightDecay: options.WeightDecay})
	if err != nil {
		return summary, err
	}
	defer optimizer.Close()
	fingerprint := options.fingerprint(examples)
	if options.CheckpointDir != "" {
		resumed, err := loadCheckpoint(ctx, options.CheckpointDir, fingerprint, network, optimizer)
		if err != nil {
			return summary, err
		}
		summary.Epochs = resumed
		summary.Resumed = len(resumed)
		if len(resumed) > 0 {
			slog.Info("training resumed from checkpoint", "dir", options.CheckpointDir, "epochs_done", len(resumed))
		}
	}
	schedule := torch.StepLR{BaseLR: options.LR, StepSize: options.StepSize, Gamma: options.Gamma}
	for epoch := len(summary.Epochs); epoch < options.Epochs; epoch++ {
		report, err := run.epoch(ctx, epoch, optimizer, schedule.At(epoch))
		if err != nil {
			return summary, fmt.Errorf("trainer: epoch %d: %w", epoch+1, err)
		}
		summary.Epochs = append(summary.Epochs, report)
		if options.CheckpointDir != "" {
			if err := saveCheckpoint(ctx, options.CheckpointDir, fingerprint, network, optimizer, summary.Epochs); err != nil {
				return summary, err
			}
		}
		if progress != nil {
			progress(report)
		}
	}
	summary.Seconds = time.Since(began).Seconds()
	return summary, network.SetTrain(ctx, false)
}

// run is one Train call's state.
type run struct {
	network       *torch.Model
	examples      []Example
	options       Options
	height, width int
	fill          [3]byte
	cache         []torch.RGB // decoded crops by example index, when they fit in CacheBytes
}

func (r *run) epoch(ctx context.Context, epoch int, optimizer *torch.Optimizer, lr float64) (EpochReport, error) {
	report := EpochReport{Epoch: epoch + 1, LR: lr}
	// Every epoch has its own seeds, so a resumed run continues as the uninterrupted one would.
	seed := r.options.Seed + uint64(epoch)*1_000_003
	if err := r.network.Device().Seed(ctx, seed); err != nil {
		return report, err
	}
	rng := rand.New(rand.NewPCG(seed, r.options.Seed))
	if err := optimizer.SetLR(ctx, lr); err != nil {
		return report, err
	}

	began := time.Now()
	features, err := r.features(ctx)
	if err != nil {
		return report, err
	}
	report.FeatureSeconds = time.Since(began).Seconds()

	began = time.Now()
	// The device finds the neighbours: a BLAS or a GPU, many times faster than the search in Go.
	clusterOptions := r.options.Cluster
	clusterOptions.Neighbors = r.network.Device().NearestNeighbors
	labels, _, err := cluster.Run(ctx, r.clusterSpace(features), clusterOptions)
	if err != nil {
		return report, err
	}
	centres, clustered := clusterCentres(features, labels)
	report.Clusters, report.Clustered, report.Outliers = len(centres), clustered, len(labels)-clustered
	report.CrossCamera = crossCameraClusters(labels, r.examples)
	report.ClusterSeconds = time.Since(began).Seconds()
	if len(centres) < 2 {
		return report, fmt.Errorf("%w: %d clusters among %d crops (eps %v, min samples %d); more crops or a larger eps may help",
			ErrNoClusters, len(centres), len(labels), r.options.Cluster.Eps, r.options.Cluster.MinSamples)
	}
	slog.Info("epoch clustered", "epoch", epoch+1, "clusters", report.Clusters, "cross_camera", report.CrossCamera, "outliers", report.Outliers)

	began = time.Now()
	cameras := make([]string, len(r.examples))
	for i, example := range r.examples {
		cameras[i] = example.Camera
	}
	groups := []memoryGroup{{labels: labels, centres: centres, identities: make([]int, len(centres))}}
	for c := range centres {
		groups[0].identities[c] = c
	}
	if r.options.CameraProxies {
		if groups = cameraProxies(features, labels, cameras); len(groups) == 0 {
			return report, fmt.Errorf("%w: no camera has two clusters' crops to contrast", ErrNoClusters)
		}
	}
	// One memory holds every group's entries one after another; a step's softmax covers its
	// group's rows, and the inter-camera term sees them all.
	var flat []float32
	var identities []int64
	rows := make([]torch.RowRange, len(groups))
	samplers := make([]*sampler, len(groups))
	for g, group := range groups {
		rows[g] = torch.RowRange{Start: len(identities), Count: len(group.centres)}
		for entry, centre := range group.centres {
			flat = append(flat, centre...)
			identities = append(identities, int64(group.identities[entry]))
		}
		samplers[g] = newSampler(rng, group.labels, cameras, r.options.Instances)
	}
	if r.options.CameraProxies {
		report.Proxies = len(identities)
	}
	memory, err := r.network.Device().NewMemory(ctx, len(identities), r.network.Dim(), flat)
	if err != nil {
		return report, err
	}
	defer memory.Close()
	// Every camera trains equally often: drawn by crops, a busy camera took most steps and the
	// network learnt its people at the quieter cameras' cost (measured: docs/TRAINING.md).
	draw := func(identities int) ([]int, []int64, int) {
		g := 0
		if len(samplers) > 1 {
			g = rng.IntN(len(samplers))
		}
		indices, labels := samplers[g].batch(identities)
		for i := range labels {
			labels[i] += int64(rows[g].Start)
		}
		return indices, labels, g
	}
	update := torch.UpdateHard
	if r.options.MeanUpdate {
		update = torch.UpdateMean
	}
	step := torch.StepOptions{Temperature: r.options.Temperature, Momentum: r.options.Momentum, Update: update}
	if r.options.CameraProxies && r.options.InterCamera > 0 {
		step.Identities, step.InterWeight, step.HardNegatives = identities, r.options.InterCamera, r.options.HardNegatives
	}
	batches := r.prepareBatches(ctx, draw, rng)
	defer batches.stop()
	for iteration := range r.options.ItersPerEpoch {
		prepared, ok := <-batches.ready
		if !ok {
			return report, ctx.Err()
		}
		if prepared.err != nil {
			return report, prepared.err
		}
		step.Rows = rows[prepared.group]
		result, err := r.network.TrainStep(ctx, optimizer, memory, prepared.batch, prepared.labels, step)
		if err != nil {
			return report, err
		}
		if iteration == 0 {
			report.FirstLoss = result.Loss
		}
		report.LastLoss = result.Loss
		report.Loss += result.Loss / float64(r.options.ItersPerEpoch)
	}
	report.TrainSeconds = time.Since(began).Seconds()
	return report, nil
}

// memoryGroup is one set of memory entries of an epoch: their centres, the cluster of each, and
// each example's entry (-1: not in this group).
type memoryGroup struct {
	labels     []int
	centres    [][]float32
	identities []int
}

// cameraProxies splits every cluster into its cameras' parts, one memory per camera: a step then
// contrasts crops of one camera with that camera's people only. Clusters on a few cameras mostly
// stay inside one camera, and with one memory a person's part in another camera is a negative
// that the loss pushes away, which is the opposite of what cross-camera search needs; within a
// camera the clusters are reliable.
func cameraProxies(features [][]float32, labels []int, cameras []string) []memoryGroup {
	var names []string
	index := map[string]int{}
	for _, camera := range cameras {
		if _, seen := index[camera]; !seen {
			index[camera] = len(names)
			names = append(names, camera)
		}
	}
	groups := make([]memoryGroup, len(names))
	proxy := make([]map[int]int, len(names))
	for g := range groups {
		groups[g].labels = make([]int, len(labels))
		proxy[g] = map[int]int{}
	}
	for i, label := range labels {
		for g := range groups {
			groups[g].labels[i] = -1
		}
		if label < 0 {
			continue
		}
		g := index[cameras[i]]
		entry, seen := proxy[g][label]
		if !seen {
			entry = len(proxy[g])
			proxy[g][label] = entry
		}
		groups[g].labels[i] = entry
	}
	kept := groups[:0]
	for g := range groups {
		// A camera with one person has nobody to contrast them with: its steps would only move
		// the weights by their decay.
		if len(proxy[g]) < 2 {
			continue
		}
		groups[g].centres, _ = clusterCentres(features, groups[g].labels)
		groups[g].identities = make([]int, len(proxy[g]))
		for label, entry := range proxy[g] {
			groups[g].identities[entry] = label
		}
		kept = append(kept, groups[g])
	}
	return kept
}

// clusterSpace is what DBSCAN sees: camera-centred features unless KeepCameraBias.
func (r *run) clusterSpace(features [][]float32) [][]float32 {
	if r.options.KeepCameraBias {
		return features
	}
	return cameraCentred(features, r.examples)
}

// cameraCentred returns the features with each camera's mean feature subtracted, renormalised.
// Crops of one camera share its background, light and angle, so on raw features DBSCAN tends to
// find "this person in this camera" rather than "this person": every cluster stays inside one
// camera and training then pushes the cameras' views of a person apart, which is the opposite of
// what cross-camera search needs. Removing each camera's average look lets clusters span cameras.
func cameraCentred(features [][]float32, examples []Example) [][]float32 {
	dim := len(features[0])
	sums := map[string][]float64{}
	counts := map[string]int{}
	for i, example := range examples {
		sum := sums[example.Camera]
		if sum == nil {
			sum = make([]float64, dim)
			sums[example.Camera] = sum
		}
		for d, value := range features[i] {
			sum[d] += float64(value)
		}
		counts[example.Camera]++
	}
	centred := make([][]float32, len(features))
	for i, example := range examples {
		sum, count := sums[example.Camera], float64(counts[example.Camera])
		row := make([]float32, dim)
		for d, value := range features[i] {
			row[d] = value - float32(sum[d]/count)
		}
		centred[i] = row
	}
	return vecmath.Normalize(centred)
}

func crossCameraClusters(labels []int, examples []Example) int {
	firstCamera := map[int]string{}
	crossing := map[int]bool{}
	for i, label := range labels {
		if label < 0 {
			continue
		}
		camera, seen := firstCamera[label]
		if !seen {
			firstCamera[label] = examples[i].Camera
		} else if camera != examples[i].Camera {
			crossing[label] = true
		}
	}
	return len(crossing)
}

// clusterCentres returns the normalised mean feature of each cluster and how many examples are in
// one.
func clusterCentres(features [][]float32, labels []int) ([][]float32, int) {
	clusters := 0
	for _, label := range labels {
		clusters = max(clusters, label+1)
	}
	if clusters == 0 {
		return nil, 0
	}
	dim := len(features[0])
	centres := make([][]float32, clusters)
	for c := range centres {
		centres[c] = make([]float32, dim)
	}
	clustered := 0
	for i, label := range labels {
		if label < 0 {
			continue
		}
		clustered++
		for d, value := range features[i] {
			centres[label][d] += value
		}
	}
	return vecmath.Normalize(centres), clustered
}

// features embeds every example in eval mode, without augmentation, L2-normalised.
func (r *run) features(ctx context.Context) ([][]float32, error) {
	features := make([][]float32, 0, len(r.examples))
	for start := 0; start < len(r.examples); start += r.options.FeatureBatch {
		end := min(start+r.options.FeatureBatch, len(r.examples))
		images, err := r.decode(ctx, start, end)
		if err != nil {
			return nil, err
		}
		batch, err := torch.NewBatchRGB(images, r.height, r.width)
		if err != nil {
			return nil, err
		}
		rows, err := r.network.Features(ctx, batch, false)
		if err != nil {
			return nil, err
		}
		features = append(features, rows...)
	}
	return vecmath.Normalize(features), nil
}

// preparedBatch is one training step's input.
type preparedBatch struct {
	batch  torch.Batch
	labels []int64
	group  int // which of the epoch's memory groups (cameras) the batch trains against
	err    error
}

// batchPipeline prepares the epoch's batches one step ahead of the device.
type batchPipeline struct {
	ready  <-chan preparedBatch
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// prepareBatches samples, decodes and augments the epoch's batches in one goroutine, one batch
// ahead of the training steps, so that a GPU does not wait for the CPUs between steps (a
// ResNet-50 step at batch 256 and the batch's preparation take tens of milliseconds each). The
// goroutine alone draws from rng and the sampler, in the same order as a serial loop would.
// stop ends it and waits for it.
func (r *run) prepareBatches(ctx context.Context, draw func(identities int) ([]int, []int64, int), rng *rand.Rand) *batchPipeline {
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan preparedBatch, 1)
	pipeline := &batchPipeline{ready: ready, cancel: cancel}
	pipeline.done.Go(func() {
		defer close(ready)
		for range r.options.ItersPerEpoch {
			indices, labels, group := draw(r.options.BatchSize / r.options.Instances)
			batch, err := r.trainingBatch(ctx, rng, indices)
			select {
			case ready <- preparedBatch{batch: batch, labels: labels, group: group, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	return pipeline
}

func (p *batchPipeline) stop() {
	p.cancel()
	p.done.Wait()
}

// trainingBatch decodes and augments the examples at indices into one batch.
func (r *run) trainingBatch(ctx context.Context, rng *rand.Rand, indices []int) (torch.Batch, error) {
	size := r.height * r.width * 3
	batch := torch.Batch{N: len(indices), Height: r.height, Width: r.width, Pix: make([]byte, len(indices)*size)}
	// A small cluster repeats crops within a batch; each is decoded once (and by one goroutine,
	// which the cache relies on).
	position := map[int]int{}
	var unique []int
	for _, index := range indices {
		if _, seen := position[index]; !seen {
			position[index] = len(unique)
			unique = append(unique, index)
		}
	}
	images := make([]torch.RGB, len(unique))
	if err := r.parallel(ctx, len(unique), func(i int) (err error) {
		images[i], err = r.image(unique[i])
		return err
	}); err != nil {
		return batch, err
	}
	// Each image is augmented on all CPUs with its own generator, seeded from rng in batch order,
	// so runs are repeatable whatever the scheduling.
	seeds := make([]uint64, len(indices))
	for i := range seeds {
		seeds[i] = rng.Uint64()
	}
	err := r.parallel(ctx, len(indices), func(i int) error {
		augment := rand.New(rand.NewPCG(seeds[i], uint64(i)))
		r.options.Augmentation.apply(augment, batch.Pix[i*size:(i+1)*size], images[position[indices[i]]], r.fill)
		return nil
	})
	return batch, err
}

func (r *run) decode(ctx context.Context, start, end int) ([]torch.RGB, error) {
	images := make([]torch.RGB, end-start)
	err := r.parallel(ctx, len(images), func(i int) (err error) {
		images[i], err = r.image(start + i)
		return err
	})
	return images, err
}

// parallel runs work(0..n-1) on all CPUs and returns the first error.
func (r *run) parallel(ctx context.Context, n int, work func(i int) error) error {
	var next atomic.Int64
	var firstError error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := work(i); err != nil {
					once.Do(func() { firstError = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstError != nil {
		return firstError
	}
	return ctx.Err()
}

// image returns example i decoded at the network's input size.
func (r *run) image(i int) (torch.RGB, error) {
	if r.cache != nil && r.cache[i].Pix != nil {
		return r.cache[i], nil
	}
	picture, err := jpegturbo.Decode(r.examples[i].JPEG)
	if err != nil {
		return torch.RGB{}, fmt.Errorf("trainer: crop %s: %w", r.examples[i].ID, err)
	}
	rgb := torch.ToRGB(picture)
	if rgb.Width != r.width || rgb.Height != r.height {
		rgb = torch.ResizeRGB(rgb, r.height, r.width)
	}
	if r.cache != nil {
		r.cache[i] = rgb // each index is decoded by one goroutine at a time
	}
	return rgb, nil
}

// fingerprint identifies a run's inputs, so a checkpoint is only resumed by the same run.
func (o Options) fingerprint(examples []Example) string {
	hash := sha256.New()
	settings := o
	// More epochs may be asked for when resuming; the rest must match.
	settings.Epochs, settings.CheckpointDir, settings.CacheBytes = 0, "", 0
	encoded, _ := json.Marshal(settings)
	hash.Write(encoded)
	for _, example := range examples {
		hash.Write([]byte(example.ID))
		hash.Write([]byte{0})
	}
	return hex.EncodeToString(hash.Sum(nil))
}

// checkpointState is what a checkpoint directory holds beside the network and optimiser.
type checkpointState struct {
	Fingerprint string        `json:"fingerprint"`
	Epochs      []EpochReport `json:"epochs"`
}

const stateFile = "state.json"

// saveCheckpoint writes the network and optimiser, then the state that names them valid: a crash
// in between leaves the previous epoch's state, and resuming repeats one epoch.
func saveCheckpoint(ctx context.Context, dir, fingerprint string, network *torch.Model, optimizer *torch.Optimizer, epochs []EpochReport) error {
	if err := network.SaveCheckpoint(ctx, dir, optimizer); err != nil {
		return fmt.Errorf("trainer: checkpoint: %w", err)
	}
	encoded, err := json.MarshalIndent(checkpointState{Fingerprint: fingerprint, Epochs: epochs}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, stateFile), encoded); err != nil {
		return fmt.Errorf("trainer: checkpoint: %w", err)
	}
	return nil
}

// loadCheckpoint restores a checkpoint of the same run and returns its epochs; nothing when the
// directory has none.
func loadCheckpoint(ctx context.Context, dir, fingerprint string, network *torch.Model, optimizer *torch.Optimizer) ([]EpochReport, error) {
	encoded, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trainer: checkpoint: %w", err)
	}
	var state checkpointState
	if err := json.Unmarshal(encoded, &state); err != nil {
		return nil, fmt.Errorf("trainer: checkpoint %s: %w", dir, err)
	}
	if state.Fingerprint != fingerprint {
		return nil, fmt.Errorf("trainer: checkpoint %s is from a run with other options, starting weights or crops; remove it or train with the same ones", dir)
	}
	if err := network.LoadCheckpoint(ctx, dir, optimizer); err != nil {
		return nil, fmt.Errorf("trainer: checkpoint: %w", err)
	}
	return state.Epochs, nil
}
