package torch

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nlpodyssey/gopickle/pytorch"
)

// FuzzReadStateDict: a damaged or forged checkpoint given to `reid model import` must give an
// error, never a panic or an allocation its storage cannot back. The seeds are two tiny state
// dicts saved by python3-torch 1.13, in the zip format (wrapped in {"state_dict": ..., "epoch": 3},
// with a transposed view and DataParallel prefixes) and in the legacy format.
func FuzzReadStateDict(f *testing.F) {
	for _, name := range []string{"tiny.pth", "tiny-legacy.pth"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "weights.pth")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sd, err := ReadStateDict(path)
		if err != nil {
			return
		}
		for _, name := range sd.Names {
			tensor := sd.Tensors[name]
			count := 1
			for _, n := range tensor.Shape {
				if n < 0 {
					t.Fatalf("%s: shape %v", name, tensor.Shape)
				}
				count *= int(n)
			}
			if len(tensor.Float)+len(tensor.Int) != count {
				t.Fatalf("%s: shape %v but %d+%d values", name, tensor.Shape, len(tensor.Float), len(tensor.Int))
			}
		}
	})
}

// Files people pass to `reid model import` by mistake, or damaged on the way, are refused with an
// error that says what is wrong, and promptly: gopickle alone loops forever on an empty file and
// panics on an unknown opcode.
func TestReadStateDictRefusesWrongFiles(t *testing.T) {
	zipped := readFile(t, filepath.Join("testdata", "tiny.pth"))
	legacy := readFile(t, filepath.Join("testdata", "tiny-legacy.pth"))
	badOpcode := bytes.Clone(legacy)
	badOpcode[17] = 0xff // the protocol-version pickle's first opcode; gopickle indexes a 255-entry table with it
	var archive bytes.Buffer
	writer := tar.NewWriter(&archive)
	if err := writer.WriteHeader(&tar.Header{Name: "sys_info", Mode: 0o644, Size: 2}); err != nil {
		t.Fatal(err)
	}
	writer.Write([]byte("{}"))
	writer.Close()
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty (an interrupted download)", nil, "the file is empty"},
		{"zeros", make([]byte, 2048), "not a PyTorch checkpoint"},
		{"an HTML error page", []byte("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n"), `starts with "<!DOCTYPE html>`},
		{"a Git LFS pointer", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n"), `starts with "version https://git-lfs`},
		// The start of ../shared's osnet_x0_25_msmt17.onnx (a protobuf: IR version 7, producer
		// "pytorch" 1.13.0), then the graph; the shared file itself is not on the GPU machine.
		{"ONNX", append([]byte("\x08\x07\x12\x07pytorch\x1a\x061.13.0:\xd7\xb9\x36\x0a"), bytes.Repeat([]byte{0x42, 0x17, 0x0a}, 300)...), "not a PyTorch checkpoint"},
		{"a tar archive", archive.Bytes(), "PyTorch's format before 0.4"},
		{"zip format cut short", zipped[:len(zipped)/2], "a damaged zip archive"},
		{"legacy format cut short", legacy[:len(legacy)-100], "the file ends early"},
		{"legacy format with a bad opcode", badOpcode, "damaged checkpoint"},
	}
	for _, test := range cases {
		t.Run(test.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "weights.pth")
			if err := os.WriteFile(path, test.data, 0o600); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := ReadStateDict(path)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), test.want) {
					t.Fatalf("error %v, want one saying %q", err, test.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("ReadStateDict did not return")
			}
		})
	}
}

// Shapes the storage cannot back are refused before anything is allocated for them.
func TestConvertTensorRefusesImpossibleShapes(t *testing.T) {
	storage := &pytorch.FloatStorage{Data: make([]float32, 6)}
	cases := []struct {
		name          string
		size, strides []int
		ok            bool
	}{
		{"contiguous", []int{2, 3}, []int{3, 1}, true},
		{"transposed", []int{3, 2}, []int{1, 3}, true},
		{"expanded (zero stride)", []int{1000, 6}, []int{0, 1}, false},
		{"negative size", []int{-1, 6}, []int{6, 1}, false},
		{"overflowing size", []int{1 << 40, 1 << 40}, []int{1, 1}, false},
		{"outside the storage", []int{2, 3}, []int{4, 1}, false},
	}
	for _, test := range cases {
		t.Run(test.name, func(t *testing.T) {
			converted, err := convertTensor(&pytorch.Tensor{Source: storage, Size: test.size, Stride: test.strides})
			if (err == nil) != test.ok {
				t.Fatalf("error %v, want ok=%v", err, test.ok)
			}
			if test.ok && len(converted.Float) != 6 {
				t.Fatalf("%d values", len(converted.Float))
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
