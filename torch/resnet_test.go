package torch

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// pythonReference runs torch/testdata/reference.py with Debian's python3-torch ($REID_PYTHON
// overrides).
func pythonReference(t *testing.T, args ...string) {
	t.Helper()
	python := "/usr/bin/python3"
	if custom := os.Getenv("REID_PYTHON"); custom != "" { // the GPU machine has its own PyTorch
		python = custom
	}
	cmd := exec.CommandContext(t.Context(), python, append([]string{"testdata/reference.py"}, args...)...)
	// One thread, for the reason given at openCPU.
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("reference.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func readFloats(t *testing.T, path string, rows, dim int) [][]float32 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != rows*dim*4 {
		t.Fatalf("%s has %d bytes, want %d", path, len(raw), rows*dim*4)
	}
	out := make([][]float32, rows)
	for i := range out {
		out[i] = make([]float32, dim)
		for j := range dim {
			out[i][j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[(i*dim+j)*4:]))
		}
	}
	return out
}

func relativeError(ours, theirs []float32) float64 {
	var diff, norm float64
	for i := range ours {
		d := float64(ours[i]) - float64(theirs[i])
		diff += d * d
		norm += float64(theirs[i]) * float64(theirs[i])
	}
	return math.Sqrt(diff / norm)
}

// TestResNet50MatchesTorchvision loads ResNet-50 state dicts saved by Debian's python3-torch /
// torchvision and compares our eval features with PyTorch's on the same real crops: once as a
// plain torchvision ImageNet state dict (last stride 2, average pooling, no neck), once as a
// wrapped DataParallel checkpoint of our re-id head (last stride 1, GeM, BN neck).
func TestResNet50MatchesTorchvision(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	crops := testCrops(t, 4)
	batch, err := NewBatchRGB(crops, 256, 128)
	if err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(dir, "input.raw")
	if err := os.WriteFile(input, batch.Pix, 0o644); err != nil {
		t.Fatal(err)
	}
	device := openCPU(t)

	cases := []struct {
		name    string
		head    string
		options ModelOptions
		ignored []string
		missing []string
	}{
		{
			name:    "torchvision",
			head:    "torchvision",
			options: ModelOptions{Arch: ArchResNet50, LastStride: 2, Pooling: "avg", Neck: "none", Precision: "fp32"},
			ignored: []string{"fc.weight", "fc.bias"},
		},
		{
			name:    "reid head checkpoint",
			head:    "reid",
			options: ModelOptions{Arch: ArchResNet50, LastStride: 1, Pooling: "gem", Neck: "bn", Precision: "fp32"},
		},
		{
			// An ImageNet file into the re-id model: the head is new, so exactly its keys are missing.
			name:    "torchvision into reid head",
			head:    "torchvision",
			options: ModelOptions{Arch: ArchResNet50, Pooling: "gem", Precision: "fp32"},
			ignored: []string{"fc.weight", "fc.bias"},
			missing: []string{"gap.p", "feat_bn.weight", "feat_bn.bias", "feat_bn.running_mean", "feat_bn.running_var", "feat_bn.num_batches_tracked"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			weights := filepath.Join(dir, "weights"+strconv.Itoa(i)+".pth")
			featuresPath := filepath.Join(dir, "features"+strconv.Itoa(i)+".raw")
			pythonReference(t, "resnet", "--head", tc.head, "--seed", strconv.Itoa(100+i), "--out", weights,
				"--input", input, "--n", strconv.Itoa(batch.N), "--features", featuresPath)

			model, report := modelWithWeights(t, device, tc.options, weights)
			if !slices.Equal(report.Missing, tc.missing) || len(report.Unexpected) != 0 || !slices.Equal(report.Ignored, tc.ignored) {
				t.Fatalf("missing %v (want %v), unexpected %v, ignored %v (want %v)", report.Missing, tc.missing, report.Unexpected, report.Ignored, tc.ignored)
			}
			if tc.missing != nil {
				return // the Python side has no such head to compare with
			}
			ours, err := model.Features(ctx, batch, false)
			if err != nil {
				t.Fatal(err)
			}
			theirs := readFloats(t, featuresPath, batch.N, 2048)
			for row := range ours {
				if norm := math.Sqrt(float64(dot(theirs[row], theirs[row]))); norm == 0 || math.IsNaN(norm) {
					t.Fatalf("crop %d: reference feature norm %v", row, norm)
				}
				if rel := relativeError(ours[row], theirs[row]); rel > 1e-4 {
					t.Errorf("crop %d: relative error %.2e > 1e-4", row, rel)
				} else {
					t.Logf("crop %d: relative error %.2e", row, rel)
				}
			}
		})
	}
}

func dot(a, b []float32) float32 {
	var sum float32
	for i := range a {
		sum += a[i] * b[i]
	}
	return sum
}

// TestReadStateDictTypes: float16, bfloat16 and float64 tensors, strided views, storage offsets
// and int64 scalars convert exactly, from zip and legacy checkpoints.
func TestReadStateDictTypes(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "dtypes.pth")
		args := []string{"dtypes", "--out", path}
		if legacy {
			args = append(args, "--legacy")
		}
		pythonReference(t, args...)
		sd, err := ReadStateDict(path)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			name  string
			dtype string
			shape []int64
			float []float32
			int   []int64
		}{
			{"half", "float16", []int64{2, 3}, []float32{0, 0.25, 0.5, 0.75, 1, 1.25}, nil},
			{"bfloat", "bfloat16", []int64{3}, []float32{0, 0.25, 0.5}, nil},
			{"double", "float64", []int64{2, 3}, []float32{0, 0.5, 1, 1.5, 2, 2.5}, nil},
			{"transposed", "float32", []int64{3, 2}, []float32{0, 0.75, 0.25, 1, 0.5, 1.25}, nil},
			{"offset", "float32", []int64{3}, []float32{0.5, 0.75, 1}, nil},
			{"count", "int64", []int64{}, nil, []int64{7}},
		}
		if !slices.Equal(sd.Names, []string{"half", "bfloat", "double", "transposed", "offset", "count"}) {
			t.Fatalf("legacy=%v: names %v", legacy, sd.Names)
		}
		for _, w := range want {
			got := sd.Tensors[w.name]
			if got.DType != w.dtype || !slices.Equal(got.Shape, w.shape) || !slices.Equal(got.Float, w.float) || !slices.Equal(got.Int, w.int) {
				t.Errorf("legacy=%v %s: got %+v, want %+v", legacy, w.name, got, w)
			}
		}
	}
}
