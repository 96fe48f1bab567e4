package torch

import (
	"math"
	"os"
	"strconv"
	"testing"
)

// openCPU opens the test device, cpu or $REID_TORCH_DEVICE (scripts/gpu-check.sh sets cuda), and
// closes it when the test ends. Tests use one intra-op thread unless $REID_TORCH_THREADS says
// otherwise: on a shared 2-core machine under load, libtorch's spinning OpenMP workers make two
// threads up to 100x slower than one (measured: OSNet x0.25 batch 1, 5 s vs 20 ms).
func openCPU(t testing.TB) *Device {
	t.Helper()
	threads := 1
	if value := os.Getenv("REID_TORCH_THREADS"); value != "" {
		n, err := strconv.Atoi(value)
		if err != nil {
			t.Fatalf("REID_TORCH_THREADS=%q: %v", value, err)
		}
		threads = n
	}
	device, err := Open(Params{Device: testDevice(), Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { device.Close() })
	return device
}

// testDevice is the device the tests run on: cpu, or $REID_TORCH_DEVICE.
func testDevice() string {
	if name := os.Getenv("REID_TORCH_DEVICE"); name != "" {
		return name
	}
	return "cpu"
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// modelWithWeights creates a model on device and loads a weights file into it. The model closes
// when the test ends.
func modelWithWeights(t *testing.T, device *Device, options ModelOptions, weights string) (*Model, LoadReport) {
	t.Helper()
	model, err := device.NewModel(t.Context(), options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { model.Close() })
	report, err := model.LoadWeights(t.Context(), weights)
	if err != nil {
		t.Fatal(err)
	}
	return model, report
}
