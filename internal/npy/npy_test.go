package npy

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	m := Matrix{Rows: 3, Cols: 2, Data: []float32{1, -2, 3.5, 0, 1e-8, 42}}
	var buffer bytes.Buffer
	if err := Write(&buffer, m); err != nil {
		t.Fatal(err)
	}
	if (buffer.Len()-3*2*4)%64 != 0 {
		t.Errorf("data not 64-byte aligned: file length %d", buffer.Len())
	}
	got, err := Read(&buffer)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != 3 || got.Cols != 2 {
		t.Fatalf("shape %dx%d", got.Rows, got.Cols)
	}
	for i := range m.Data {
		if got.Data[i] != m.Data[i] {
			t.Errorf("value %d: %v want %v", i, got.Data[i], m.Data[i])
		}
	}
}

// TestNumpyInterop checks both directions against Debian's numpy.
func TestNumpyInterop(t *testing.T) {
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.npy")
	if err := WriteFile(ours, Matrix{Rows: 2, Cols: 3, Data: []float32{1, 2, 3, 4, 5, 6.25}}); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, numpy as np
a = np.load(sys.argv[1])
assert a.dtype == np.float32 and a.shape == (2, 3) and a.flags.c_contiguous, (a.dtype, a.shape)
assert a[1, 2] == 6.25 and a.sum() == 21.25, a
np.save(sys.argv[2], np.arange(12, dtype=np.float32).reshape(4, 3) / 8)
np.save(sys.argv[3], np.arange(5, dtype=np.float64) * 0.5)
np.save(sys.argv[4], np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
np.save(sys.argv[5], np.ones((2, 3), dtype=np.int64))
`
	paths := []string{ours}
	for _, name := range []string{"f32.npy", "f64.npy", "fortran.npy", "int.npy"} {
		paths = append(paths, filepath.Join(dir, name))
	}
	out, err := exec.Command("/usr/bin/python3", append([]string{"-c", script}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	f32, err := ReadFile(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	if f32.Rows != 4 || f32.Cols != 3 || f32.Data[11] != 11.0/8 || f32.Row(2)[1] != 7.0/8 {
		t.Errorf("float32 file read as %+v", f32)
	}
	f64, err := ReadFile(paths[2])
	if err != nil {
		t.Fatal(err)
	}
	if f64.Rows != 5 || f64.Cols != 1 || f64.Data[4] != 2 {
		t.Errorf("float64 vector read as %+v", f64)
	}
	for _, path := range paths[3:] {
		if _, err := ReadFile(path); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: error %v, want ErrFormat", filepath.Base(path), err)
		}
	}
}

func TestMalformed(t *testing.T) {
	var good bytes.Buffer
	if err := Write(&good, Matrix{Rows: 2, Cols: 2, Data: []float32{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"bad magic": []byte("PK\x03\x04 not numpy at all"),
		"truncated": good.Bytes()[:good.Len()-3],
		"version 9": append([]byte("\x93NUMPY\x09\x00"), good.Bytes()[8:]...),
		"no shape":  []byte("\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}"),
		"3-d shape": []byte("\x93NUMPY\x01\x00\x46\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }" + strings.Repeat(" ", 5)),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Read(bytes.NewReader(data)); !errors.Is(err, ErrFormat) {
				t.Errorf("error %v, want ErrFormat", err)
			}
		})
	}
}

// A header promising about 8 GB of float32 before 16 bytes of data is refused for being short,
// having allocated about what is there, not what was promised.
func TestShortDataCostsLittle(t *testing.T) {
	header := "{'descr': '<f4', 'fortran_order': False, 'shape': (4000000, 512), }"
	header += strings.Repeat(" ", 63-len(header)%64) + "\n"
	data := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	data = append(append(data, header...), make([]byte, 16)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Read(bytes.NewReader(data))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "data shorter") {
		t.Fatalf("error %v, want ErrFormat for short data", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16<<20 {
		t.Errorf("allocated %d MiB for 16 bytes of data", allocated>>20)
	}
}
