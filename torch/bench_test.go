package torch

import (
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/reid-project/reid/internal/benchreport"
)

// benchDevice opens the benchmark device: $REID_TORCH_DEVICE (default cpu) with
// $REID_TORCH_THREADS threads (default all cores; scripts/bench_torch.sh gives Python the same).
func benchDevice(b *testing.B) *Device {
	b.Helper()
	threads := runtime.NumCPU()
	if value := os.Getenv("REID_TORCH_THREADS"); value != "" {
		n, err := strconv.Atoi(value)
		if err != nil {
			b.Fatal(err)
		}
		threads = n
	}
	device, err := Open(Params{Device: testDevice(), Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { device.Close() })
	return device
}

func envInt(b *testing.B, name string, fallback int) int {
	if value := os.Getenv(name); value != "" {
		n, err := strconv.Atoi(value)
		if err != nil {
			b.Fatalf("%s=%q: %v", name, value, err)
		}
		return n
	}
	return fallback
}

func randomBatch(n, height, width int) Batch {
	rng := rand.New(rand.NewPCG(1, 1))
	pix := make([]byte, n*height*width*3)
	for i := range pix {
		pix[i] = byte(rng.IntN(256))
	}
	return Batch{N: n, Height: height, Width: width, Pix: pix}
}

// BenchmarkEmbed: eval-mode embedding of a batch of 32 (REID_TORCH_BATCH) 256x128 crops,
// including the uint8 -> normalised float conversion and L2 normalisation.
func BenchmarkEmbed(b *testing.B) {
	batchSize := envInt(b, "REID_TORCH_BATCH", 32)
	device := benchDevice(b)
	for _, arch := range []Arch{ArchOSNetX0_25, ArchResNet50} {
		b.Run(string(arch), func(b *testing.B) {
			model, err := device.NewModel(b.Context(), ModelOptions{Arch: arch})
			if err != nil {
				b.Fatal(err)
			}
			defer model.Close()
			batch := randomBatch(batchSize, 256, 128)
			if _, err := model.EmbedBatch(b.Context(), batch); err != nil { // warm-up
				b.Fatal(err)
			}
			var durations []time.Duration
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if _, err := model.EmbedBatch(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
				durations = append(durations, time.Since(start))
			}
			benchreport.Images(b, durations, batchSize)
		})
	}
}

// BenchmarkTrainStep: one Cluster Contrast step of ResNet-50 (last stride 1, BN neck) at
// 256x128 with Adam and the memory loss, at batch REID_TORCH_TRAIN_BATCH (default 256 on CUDA,
// where bf16 autocast and channels_last apply, 16 on the CPU).
func BenchmarkTrainStep(b *testing.B) {
	device := benchDevice(b)
	fallback := 16
	if device.IsCUDA() {
		fallback = 256
	}
	batchSize := envInt(b, "REID_TORCH_TRAIN_BATCH", fallback)
	ctx := b.Context()
	model, err := device.NewModel(ctx, ModelOptions{Arch: ArchResNet50})
	if err != nil {
		b.Fatal(err)
	}
	defer model.Close()
	optimizer, err := model.NewAdam(ctx, AdamOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer optimizer.Close()
	const clusters = 1000
	rng := rand.New(rand.NewPCG(2, 2))
	data := make([]float32, clusters*model.Dim())
	for row := range clusters {
		v := data[row*model.Dim() : (row+1)*model.Dim()]
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		normalise(v)
	}
	memory, err := device.NewMemory(ctx, clusters, model.Dim(), data)
	if err != nil {
		b.Fatal(err)
	}
	defer memory.Close()
	batch := randomBatch(batchSize, 256, 128)
	labels := make([]int64, batchSize)
	for i := range labels {
		labels[i] = int64(rng.IntN(clusters))
	}
	step := func() {
		if _, err := model.TrainStep(ctx, optimizer, memory, batch, labels, StepOptions{Update: UpdateMean}); err != nil {
			b.Fatal(err)
		}
	}
	for range envInt(b, "REID_TORCH_WARMUP", 3) {
		step()
	}
	var durations []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		step() // TrainStep reads the loss back, which synchronises with the device
		durations = append(durations, time.Since(start))
	}
	benchreport.Images(b, durations, batchSize)
}
