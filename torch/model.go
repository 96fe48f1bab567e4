package torch

/*
#include <stdlib.h>
#include "reidtorch.h"
*/
import "C"

import (
	"context"
	"fmt"
	"image"
	"strconv"
	"strings"
	"unsafe"
)

// Arch names a backbone.
type Arch string

// The supported backbones. Their parameter names are those of torchvision (ResNet-50) and
// torchreid (OSNet), so those projects' state dicts load by name.
const (
	ArchResNet50   Arch = "resnet50"
	ArchOSNetX0_25 Arch = "osnet_x0_25"
	ArchOSNetX1_0  Arch = "osnet_x1_0"
)

// Archs lists the supported backbones.
func Archs() []Arch { return []Arch{ArchResNet50, ArchOSNetX0_25, ArchOSNetX1_0} }

// ParseArch validates a backbone name.
func ParseArch(name string) (Arch, error) {
	for _, arch := range Archs() {
		if string(arch) == name {
			return arch, nil
		}
	}
	return "", fmt.Errorf("torch: unknown architecture %q (have %v)", name, Archs())
}

// Dim is the length of the backbone's feature vector (0 for an unknown arch).
func (a Arch) Dim() int {
	switch a {
	case ArchResNet50:
		return 2048
	case ArchOSNetX0_25, ArchOSNetX1_0:
		return 512
	}
	return 0
}

// ImageNet normalisation, the default of every supported backbone.
var (
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// ModelOptions configures a backbone. Zero values mean the documented defaults.
type ModelOptions struct {
	Arch Arch
	// LastStride is the stride of ResNet-50's last stage: 1 (default, the re-id choice that doubles
	// the final feature map) or 2 (torchvision).
	LastStride int
	// Pooling for ResNet-50: "avg" (default) or "gem" (generalised mean, learnable p, init 3).
	Pooling string
	// Neck for ResNet-50: "bn" (default; BatchNorm1d "feat_bn" with its bias frozen at 0, as in
	// Cluster Contrast) or "none".
	Neck string
	// InputHeight x InputWidth is the network input; default 256 x 128.
	InputHeight, InputWidth int
	// Mean and Std normalise RGB in [0,1]; default ImageNet.
	Mean, Std [3]float32
	// FlipAverage makes Embed average each image's features with its mirror image's.
	FlipAverage bool
	// Precision: "" (auto: bf16 autocast on CUDA, fp32 on CPU), "fp32" or "bf16" (CUDA only;
	// ignored on the CPU). Models use the channels_last layout on every device.
	Precision string
}

// WithDefaults fills zero fields with defaults and validates the result.
func (o ModelOptions) WithDefaults() (ModelOptions, error) {
	if _, err := ParseArch(string(o.Arch)); err != nil {
		return o, err
	}
	resnet := o.Arch == ArchResNet50
	if o.LastStride == 0 && resnet {
		o.LastStride = 1
	}
	if o.Pooling == "" && resnet {
		o.Pooling = "avg"
	}
	if o.Neck == "" && resnet {
		o.Neck = "bn"
	}
	if resnet {
		if o.LastStride != 1 && o.LastStride != 2 {
			return o, fmt.Errorf("torch: last stride %d: want 1 or 2", o.LastStride)
		}
		if o.Pooling != "avg" && o.Pooling != "gem" {
			return o, fmt.Errorf("torch: pooling %q: want avg or gem", o.Pooling)
		}
		if o.Neck != "bn" && o.Neck != "none" {
			return o, fmt.Errorf("torch: neck %q: want bn or none", o.Neck)
		}
	} else if o.LastStride != 0 || o.Pooling != "" || o.Neck != "" {
		return o, fmt.Errorf("torch: last stride, pooling and neck apply to resnet50 only, not %s", o.Arch)
	}
	if o.InputHeight == 0 {
		o.InputHeight = 256
	}
	if o.InputWidth == 0 {
		o.InputWidth = 128
	}
	if o.InputHeight < 32 || o.InputWidth < 32 {
		return o, fmt.Errorf("torch: input %dx%d too small (min 32x32)", o.InputWidth, o.InputHeight)
	}
	if o.Mean == [3]float32{} {
		o.Mean = ImageNetMean
	}
	if o.Std == [3]float32{} {
		o.Std = ImageNetStd
	}
	for _, s := range o.Std {
		if s <= 0 {
			return o, fmt.Errorf("torch: std %v must be positive", o.Std)
		}
	}
	switch o.Precision {
	case "", "fp32", "bf16":
	default:
		return o, fmt.Errorf("torch: precision %q: want fp32 or bf16", o.Precision)
	}
	return o, nil
}

// Model is one backbone on one device. Its methods are safe for concurrent use; calls run in
// order on the device's worker.
type Model struct {
	device  *Device
	options ModelOptions
	dim     int
	ptr     *C.rt_model
	names   []tensorInfo // parameters then buffers, in module order
}

type tensorInfo struct {
	name  string
	shape []int64
}

func (m *Model) free() {
	C.rt_model_free(m.ptr)
	m.ptr = nil
}

// NewModel builds a randomly initialised backbone (torchvision / torchreid initialisation).
func (d *Device) NewModel(ctx context.Context, opts ModelOptions) (*Model, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return nil, err
	}
	m := &Model{device: d, options: opts}
	err = d.do(ctx, func() error {
		arch := C.CString(string(opts.Arch))
		defer C.free(unsafe.Pointer(arch))
		var cfg C.rt_model_config
		cfg.arch = arch
		cfg.last_stride = C.int(max(opts.LastStride, 1))
		cfg.gem = boolInt(opts.Pooling == "gem")
		cfg.neck = boolInt(opts.Neck == "bn")
		cfg.device_type = C.int(d.deviceType)
		cfg.device_index = C.int(d.deviceIndex)
		cfg.bf16 = boolInt(opts.Precision != "fp32")
		cfg.channels_last = 1
		for i := range 3 {
			cfg.mean[i] = C.float(opts.Mean[i])
			cfg.std[i] = C.float(opts.Std[i])
		}
		var message *C.char
		if err := statusError(C.rt_model_new(&cfg, &m.ptr, &message), message, "new "+string(opts.Arch)); err != nil {
			return err
		}
		m.dim = int(C.rt_model_dim(m.ptr))
		names, err := m.listNames()
		if err != nil {
			m.free()
			return err
		}
		m.names = names
		d.track(m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// listNames runs on the worker.
func (m *Model) listNames() ([]tensorInfo, error) {
	var text, message *C.char
	if err := statusError(C.rt_model_names(m.ptr, &text, &message), message, "list tensors"); err != nil {
		return nil, err
	}
	defer C.rt_free(unsafe.Pointer(text))
	var infos []tensorInfo
	for line := range strings.SplitSeq(strings.TrimSpace(C.GoString(text)), "\n") {
		name, dims, _ := strings.Cut(line, "\t")
		info := tensorInfo{name: name, shape: []int64{}}
		if dims != "" {
			for field := range strings.SplitSeq(dims, ",") {
				n, err := strconv.ParseInt(field, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("torch: bad shape %q of %s", dims, name)
				}
				info.shape = append(info.shape, n)
			}
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Close frees the model. It is idempotent.
func (m *Model) Close() error { return m.device.release(m) }

// Dim is the length of the feature vectors.
func (m *Model) Dim() int { return m.dim }

// Options returns the model's options with defaults filled in.
func (m *Model) Options() ModelOptions { return m.options }

// Device returns the device the model lives on.
func (m *Model) Device() *Device { return m.device }

// TensorNames lists the model's parameters and buffers (the state-dict keys it accepts).
func (m *Model) TensorNames() []string {
	names := make([]string, len(m.names))
	for i, info := range m.names {
		names[i] = info.name
	}
	return names
}

// call runs fn on the worker with the model's live pointer.
func (m *Model) call(ctx context.Context, fn func() error) error {
	return m.device.do(ctx, func() error {
		if m.ptr == nil {
			return ErrClosed
		}
		return fn()
	})
}

// Embed resizes images to the input size and returns one L2-normalised vector per image, in
// order (eval mode, no gradients, flip averaging if configured).
func (m *Model) Embed(ctx context.Context, images []image.Image) ([][]float32, error) {
	batch, err := NewBatch(images, m.options.InputHeight, m.options.InputWidth)
	if err != nil {
		return nil, err
	}
	return m.EmbedBatch(ctx, batch)
}

// EmbedBatch is Embed for a batch already at the model's input size.
func (m *Model) EmbedBatch(ctx context.Context, batch Batch) ([][]float32, error) {
	if batch.Height != m.options.InputHeight || batch.Width != m.options.InputWidth {
		return nil, fmt.Errorf("torch: batch is %dx%d, model input is %dx%d", batch.Width, batch.Height, m.options.InputWidth, m.options.InputHeight)
	}
	return m.forward(ctx, batch, false, m.options.FlipAverage, true)
}

// Features returns the raw model output, not normalised and without flip averaging. train runs
// BatchNorm in train mode (batch statistics, running stats updated); no gradients either way.
func (m *Model) Features(ctx context.Context, batch Batch, train bool) ([][]float32, error) {
	return m.forward(ctx, batch, train, false, false)
}

func (m *Model) forward(ctx context.Context, batch Batch, train, flip, normalize bool) ([][]float32, error) {
	if err := batch.validate(); err != nil {
		return nil, err
	}
	flat := make([]float32, batch.N*m.dim)
	err := m.call(ctx, func() error {
		var message *C.char
		code := C.rt_model_forward(m.ptr, (*C.uint8_t)(unsafe.Pointer(&batch.Pix[0])),
			C.int64_t(batch.N), C.int64_t(batch.Height), C.int64_t(batch.Width),
			boolInt(train), boolInt(flip), boolInt(normalize), (*C.float)(unsafe.Pointer(&flat[0])), &message)
		return statusError(code, message, "forward")
	})
	if err != nil {
		return nil, err
	}
	rows := make([][]float32, batch.N)
	for i := range rows {
		rows[i] = flat[i*m.dim : (i+1)*m.dim : (i+1)*m.dim]
	}
	return rows, nil
}

// SetTrain switches BatchNorm (and any dropout) between train and eval mode.
func (m *Model) SetTrain(ctx context.Context, train bool) error {
	return m.call(ctx, func() error {
		var message *C.char
		return statusError(C.rt_model_train(m.ptr, boolInt(train), &message), message, "set mode")
	})
}

// Tensor copies one parameter or buffer out as float32 (for tests and inspection).
func (m *Model) Tensor(ctx context.Context, name string) ([]float32, error) {
	var size int64 = -1
	for _, info := range m.names {
		if info.name == name {
			size = 1
			for _, n := range info.shape {
				size *= n
			}
		}
	}
	if size < 0 {
		return nil, fmt.Errorf("torch: model has no tensor %q", name)
	}
	out := make([]float32, max(size, 1))
	err := m.call(ctx, func() error {
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		var message *C.char
		return statusError(C.rt_model_get_tensor(m.ptr, cname, (*C.float)(unsafe.Pointer(&out[0])), C.int64_t(size), &message), message, "get "+name)
	})
	if err != nil {
		return nil, err
	}
	return out[:size], nil
}

// Save writes the parameters and buffers in libtorch's own archive format (torch::save of the
// module); Restore reads it back into a model of the same architecture and options.
func (m *Model) Save(ctx context.Context, path string) error {
	return m.call(ctx, func() error {
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		var message *C.char
		return statusError(C.rt_model_save(m.ptr, cpath, &message), message, "save "+path)
	})
}

// Restore reads weights written by Save.
func (m *Model) Restore(ctx context.Context, path string) error {
	return m.call(ctx, func() error {
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		var message *C.char
		return statusError(C.rt_model_load(m.ptr, cpath, &message), message, "restore "+path)
	})
}
