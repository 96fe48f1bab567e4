package torch

/*
#include <stdlib.h>
#include "reidtorch.h"
*/
import "C"

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"
)

// StateTensor is one tensor of a state dict, copied out of a checkpoint file.
type StateTensor struct {
	Shape []int64
	// DType is the tensor's type in the file: "float32", "float64", "float16", "bfloat16", "int64",
	// "int32", "int16", "int8", "uint8" or "bool".
	DType string
	Float []float32 // floating-point tensors, converted to float32, contiguous row-major
	Int   []int64   // integer and bool tensors
}

// StateDict is a checkpoint's name -> tensor map.
type StateDict struct {
	Names   []string // file order
	Tensors map[string]StateTensor
}

// ReadStateDict reads a PyTorch checkpoint (zip or legacy format): a state dict saved as an
// OrderedDict or dict, optionally wrapped as {"state_dict": ...} (or "model", "model_state_dict")
// and optionally with DataParallel's "module." prefixes, which are removed.
func ReadStateDict(path string) (*StateDict, error) {
	object, err := loadCheckpoint(path)
	if err != nil {
		return nil, fmt.Errorf("torch: read %s: %w", path, err)
	}
	entries, err := dictEntries(object)
	if err != nil {
		return nil, fmt.Errorf("torch: read %s: %w", path, err)
	}
	// A checkpoint wrapper holds the weights under one of these keys.
	for _, wrapper := range []string{"state_dict", "model_state_dict", "model"} {
		for _, entry := range entries {
			if key, ok := entry.key.(string); ok && key == wrapper {
				if inner, err := dictEntries(entry.value); err == nil {
					entries = inner
				}
			}
		}
	}
	sd := &StateDict{Tensors: make(map[string]StateTensor)}
	for _, entry := range entries {
		key, ok := entry.key.(string)
		if !ok {
			return nil, fmt.Errorf("torch: read %s: non-string key %v", path, entry.key)
		}
		tensor, ok := entry.value.(*pytorch.Tensor)
		if !ok {
			continue // checkpoint metadata (epoch, best score, ...) sits beside the tensors
		}
		for strings.HasPrefix(key, "module.") {
			key = strings.TrimPrefix(key, "module.")
		}
		converted, err := convertTensor(tensor)
		if err != nil {
			return nil, fmt.Errorf("torch: read %s: %s: %w", path, key, err)
		}
		if _, dup := sd.Tensors[key]; !dup {
			sd.Names = append(sd.Names, key)
		}
		sd.Tensors[key] = converted
	}
	if len(sd.Names) == 0 {
		return nil, fmt.Errorf("torch: read %s: no tensors found (not a state dict?)", path)
	}
	return sd, nil
}

// loadCheckpoint is pytorch.Load made safe for damaged files. gopickle (v0.2.0, its latest)
// trusts the bytes it reads: it indexes its opcode table with them and asserts types unchecked,
// so a damaged pickle panics inside it; those panics become errors here. checkLoadable refuses
// the files on which it would never return. Still unguarded: gopickle allocates a string or
// storage as long as the length field read from the file says before reading it, so a damaged
// length in an otherwise valid file can cost gigabytes (address space, mostly never touched)
// before the read fails.
func loadCheckpoint(path string) (object any, err error) {
	if err := checkLoadable(path); err != nil {
		return nil, err
	}
	defer func() {
		if recovered := recover(); recovered != nil {
			object, err = nil, fmt.Errorf("damaged checkpoint: the pickle reader failed: %v", recovered)
		}
	}()
	object, err = pytorch.Load(path)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("the file ends early (cut short?): %w", err)
	}
	return object, err
}

// checkLoadable refuses files that are not PyTorch checkpoints before gopickle sees them, with an
// error that says what the file is. gopickle reads any file that is not a zip archive as PyTorch's
// legacy format, and fails there in ways that say nothing of the file ("unknown opcode: 0x3c",
// for an HTML error page saved as .pth) or never return: it loops forever on an empty file.
func checkLoadable(path string) error {
	archive, zipErr := zip.OpenReader(path)
	if zipErr == nil {
		return archive.Close() // torch.save's format since PyTorch 1.6
	}
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(file, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	head = head[:n]
	switch {
	case n == 0:
		return errors.New("the file is empty")
	case len(head) > 16 && head[0] == 0x80 && bytes.Contains(head[:min(len(head), 32)], legacyMagic):
		// The legacy format opens with a pickled magic number. gopickle first tries it as a tar
		// archive, which fails on the 0x80, and then reads it as this format.
		return nil
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return fmt.Errorf("a damaged zip archive (cut short?): %w", zipErr)
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return errors.New("a tar archive, PyTorch's format before 0.4, which reid does not read: load it in PyTorch and save it again with torch.save")
	default:
		return fmt.Errorf("not a PyTorch checkpoint: neither a zip archive nor the legacy format; it starts with %q", head[:min(len(head), 24)])
	}
}

// legacyMagic is the magic number PyTorch's legacy format pickles first, 0x1950a86a20f9469cfc6c,
// as pickle's LONG1 writes it (little-endian).
var legacyMagic = []byte{0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

type dictEntry struct{ key, value any }

func dictEntries(object any) ([]dictEntry, error) {
	var entries []dictEntry
	switch dict := object.(type) {
	case *types.OrderedDict:
		for element := dict.List.Front(); element != nil; element = element.Next() {
			entry := element.Value.(*types.OrderedDictEntry)
			entries = append(entries, dictEntry{entry.Key, entry.Value})
		}
	case *types.Dict:
		for _, entry := range *dict {
			entries = append(entries, dictEntry{entry.Key, entry.Value})
		}
	case map[any]any:
		for key, value := range dict {
			entries = append(entries, dictEntry{key, value})
		}
	default:
		return nil, fmt.Errorf("top-level object is %T, not a dict", object)
	}
	return entries, nil
}

// maxTensorElements bounds one tensor of a checkpoint (1 GiB of float32), far above any re-id
// network's largest (ResNet-50's ImageNet classifier, 2M), so a forged shape cannot make
// convertTensor allocate without end.
const maxTensorElements = 1 << 28

// convertTensor gathers a (possibly strided) tensor from its storage into a contiguous slice.
func convertTensor(tensor *pytorch.Tensor) (StateTensor, error) {
	out := StateTensor{Shape: make([]int64, len(tensor.Size))}
	count := 1
	for i, n := range tensor.Size {
		if n < 0 || (n > 0 && count > maxTensorElements/n) {
			return out, fmt.Errorf("shape %v: negative or over %d elements", tensor.Size, maxTensorElements)
		}
		out.Shape[i] = int64(n)
		count *= n
	}
	if len(tensor.Stride) != len(tensor.Size) {
		return out, fmt.Errorf("stride %v does not match shape %v", tensor.Stride, tensor.Size)
	}
	var storageLen int
	var floatAt func(int) float32
	var intAt func(int) int64
	switch storage := tensor.Source.(type) {
	case *pytorch.FloatStorage:
		out.DType, storageLen, floatAt = "float32", len(storage.Data), func(i int) float32 { return storage.Data[i] }
	case *pytorch.HalfStorage:
		out.DType, storageLen, floatAt = "float16", len(storage.Data), func(i int) float32 { return storage.Data[i] }
	case *pytorch.BFloat16Storage:
		out.DType, storageLen, floatAt = "bfloat16", len(storage.Data), func(i int) float32 { return storage.Data[i] }
	case *pytorch.DoubleStorage:
		out.DType, storageLen, floatAt = "float64", len(storage.Data), func(i int) float32 { return float32(storage.Data[i]) }
	case *pytorch.LongStorage:
		out.DType, storageLen, intAt = "int64", len(storage.Data), func(i int) int64 { return storage.Data[i] }
	case *pytorch.IntStorage:
		out.DType, storageLen, intAt = "int32", len(storage.Data), func(i int) int64 { return int64(storage.Data[i]) }
	case *pytorch.ShortStorage:
		out.DType, storageLen, intAt = "int16", len(storage.Data), func(i int) int64 { return int64(storage.Data[i]) }
	case *pytorch.CharStorage:
		out.DType, storageLen, intAt = "int8", len(storage.Data), func(i int) int64 { return int64(storage.Data[i]) }
	case *pytorch.ByteStorage:
		out.DType, storageLen, intAt = "uint8", len(storage.Data), func(i int) int64 { return int64(storage.Data[i]) }
	case *pytorch.BoolStorage:
		out.DType, storageLen = "bool", len(storage.Data)
		intAt = func(i int) int64 {
			if storage.Data[i] {
				return 1
			}
			return 0
		}
	default:
		return out, fmt.Errorf("unsupported storage %T", tensor.Source)
	}
	// Each element of a saved parameter or buffer has its own place in the storage (a contiguous
	// or transposed view); a tensor with more elements than its storage is an overlapping view
	// (expand's zero strides), which no state dict needs and which could ask for any size.
	if count > storageLen {
		return out, fmt.Errorf("shape %v has %d elements, more than its storage's %d", tensor.Size, count, storageLen)
	}
	// Walk the logical indices in row-major order, computing each storage offset from the strides.
	index := make([]int, len(tensor.Size))
	offsetOf := func() int {
		offset := tensor.StorageOffset
		for d, i := range index {
			offset += i * tensor.Stride[d]
		}
		return offset
	}
	if floatAt != nil {
		out.Float = make([]float32, count)
	} else {
		out.Int = make([]int64, count)
	}
	for n := range count {
		offset := offsetOf()
		if offset < 0 || offset >= storageLen {
			return out, fmt.Errorf("element %d at storage offset %d outside storage of %d", n, offset, storageLen)
		}
		if floatAt != nil {
			out.Float[n] = floatAt(offset)
		} else {
			out.Int[n] = intAt(offset)
		}
		for d := len(index) - 1; d >= 0; d-- {
			index[d]++
			if index[d] < tensor.Size[d] {
				break
			}
			index[d] = 0
		}
	}
	return out, nil
}

// LoadReport says how a state dict matched a model.
type LoadReport struct {
	Loaded     []string // keys copied into the model
	Missing    []string // model keys the file lacks; they keep their current values
	Unexpected []string // file keys the model does not have
	Ignored    []string // classification-head keys dropped on purpose
}

// isHead reports whether a key belongs to a classification head, which re-id features do not use:
// torchreid's "classifier.*", torchvision's ImageNet "fc.*" on ResNet-50.
func isHead(arch Arch, key string) bool {
	if strings.HasPrefix(key, "classifier.") {
		return true
	}
	return arch == ArchResNet50 && strings.HasPrefix(key, "fc.")
}

// clusterContrastBase maps the reference Cluster Contrast model's nn.Sequential "base.N" names to
// torchvision's.
var clusterContrastBase = map[string]string{
	"base.0.": "conv1.", "base.1.": "bn1.", "base.4.": "layer1.", "base.5.": "layer2.",
	"base.6.": "layer3.", "base.7.": "layer4.",
}

// LoadStateDict copies matching tensors into the model. A shape mismatch is an error (nothing
// after it is copied); missing and unexpected keys are reported, not errors.
func (m *Model) LoadStateDict(ctx context.Context, sd *StateDict) (LoadReport, error) {
	var report LoadReport
	if sd == nil {
		return report, errors.New("torch: nil state dict")
	}
	wanted := make(map[string]bool, len(m.names))
	for _, info := range m.names {
		wanted[info.name] = true
	}
	type assignment struct {
		name   string
		tensor StateTensor
	}
	var assignments []assignment
	seen := make(map[string]bool)
	for _, key := range sd.Names {
		name := key
		if m.options.Arch == ArchResNet50 {
			for from, to := range clusterContrastBase {
				if strings.HasPrefix(name, from) {
					name = to + strings.TrimPrefix(name, from)
				}
			}
		}
		switch {
		case wanted[name]:
			assignments = append(assignments, assignment{name, sd.Tensors[key]})
			seen[name] = true
		case isHead(m.options.Arch, name):
			report.Ignored = append(report.Ignored, key)
		default:
			report.Unexpected = append(report.Unexpected, key)
		}
	}
	for _, info := range m.names {
		if !seen[info.name] {
			report.Missing = append(report.Missing, info.name)
		}
	}
	err := m.call(ctx, func() error {
		for _, a := range assignments {
			cname := C.CString(a.name)
			shape := a.tensor.Shape
			var shapePtr *C.int64_t
			if len(shape) > 0 {
				shapePtr = (*C.int64_t)(unsafe.Pointer(&shape[0]))
			}
			var data unsafe.Pointer
			dtype := C.int(C.RT_FLOAT32)
			switch {
			case len(a.tensor.Float) > 0:
				data = unsafe.Pointer(&a.tensor.Float[0])
			case len(a.tensor.Int) > 0:
				data, dtype = unsafe.Pointer(&a.tensor.Int[0]), C.RT_INT64
			default:
				C.free(unsafe.Pointer(cname))
				if slices.Contains(shape, 0) {
					continue
				}
				return fmt.Errorf("torch: %s: no data", a.name)
			}
			var message *C.char
			code := C.rt_model_set_tensor(m.ptr, cname, dtype, shapePtr, C.int(len(shape)), data, &message)
			C.free(unsafe.Pointer(cname))
			if err := statusError(code, message, "load"); err != nil {
				return err
			}
			report.Loaded = append(report.Loaded, a.name)
		}
		return nil
	})
	return report, err
}

// LoadWeights reads a PyTorch checkpoint (see ReadStateDict) into the model.
func (m *Model) LoadWeights(ctx context.Context, path string) (LoadReport, error) {
	sd, err := ReadStateDict(path)
	if err != nil {
		return LoadReport{}, err
	}
	return m.LoadStateDict(ctx, sd)
}
