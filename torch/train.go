package torch

/*
#include <stdlib.h>
#include "reidtorch.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"
)

// AdamOptions configures Adam (L2 weight decay added to the gradient, as torch.optim.Adam).
// Zero values mean the Cluster Contrast defaults.
type AdamOptions struct {
	LR          float64 // default 3.5e-4
	WeightDecay float64 // default 5e-4
	Beta1       float64 // default 0.9
	Beta2       float64 // default 0.999
	Eps         float64 // default 1e-8
}

func (o AdamOptions) withDefaults() AdamOptions {
	if o.LR == 0 {
		o.LR = 3.5e-4
	}
	if o.WeightDecay == 0 {
		o.WeightDecay = 5e-4
	}
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	return o
}

// Optimizer is Adam over a model's trainable parameters (the neck's frozen bias excluded).
type Optimizer struct {
	model *Model
	ptr   *C.rt_optim
}

func (o *Optimizer) free() {
	C.rt_optim_free(o.ptr)
	o.ptr = nil
}

// NewAdam creates an Adam optimizer for the model's parameters that require gradients.
func (m *Model) NewAdam(ctx context.Context, opts AdamOptions) (*Optimizer, error) {
	opts = opts.withDefaults()
	if opts.LR < 0 || opts.WeightDecay < 0 || opts.Beta1 >= 1 || opts.Beta2 >= 1 || opts.Eps < 0 {
		return nil, fmt.Errorf("torch: bad Adam options %+v", opts)
	}
	o := &Optimizer{model: m}
	err := m.call(ctx, func() error {
		var message *C.char
		code := C.rt_adam_new(m.ptr, C.double(opts.LR), C.double(opts.WeightDecay), C.double(opts.Beta1),
			C.double(opts.Beta2), C.double(opts.Eps), &o.ptr, &message)
		if err := statusError(code, message, "new Adam"); err != nil {
			return err
		}
		m.device.track(o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// SetLR sets the learning rate of every parameter group.
func (o *Optimizer) SetLR(ctx context.Context, lr float64) error {
	if lr < 0 || math.IsNaN(lr) {
		return fmt.Errorf("torch: bad learning rate %v", lr)
	}
	return o.model.device.do(ctx, func() error {
		if o.ptr == nil {
			return ErrClosed
		}
		var message *C.char
		return statusError(C.rt_optim_set_lr(o.ptr, C.double(lr), &message), message, "set lr")
	})
}

// LR returns the current learning rate (after LoadCheckpoint, the checkpoint's).
func (o *Optimizer) LR(ctx context.Context) (float64, error) {
	var lr C.double
	err := o.model.device.do(ctx, func() error {
		if o.ptr == nil {
			return ErrClosed
		}
		var message *C.char
		return statusError(C.rt_optim_get_lr(o.ptr, &lr, &message), message, "get lr")
	})
	return float64(lr), err
}

// Close frees the optimizer. It is idempotent.
func (o *Optimizer) Close() error { return o.model.device.release(o) }

// StepLR is the step schedule: BaseLR multiplied by Gamma every StepSize epochs.
type StepLR struct {
	BaseLR   float64
	StepSize int
	Gamma    float64
}

// At returns the learning rate for a 0-based epoch.
func (s StepLR) At(epoch int) float64 {
	if s.StepSize <= 0 || epoch < 0 {
		return s.BaseLR
	}
	return s.BaseLR * math.Pow(s.Gamma, float64(epoch/s.StepSize))
}

// Memory is a rows x dim float32 matrix on the device: the cluster memory of Cluster Contrast. It
// is not a parameter; TrainStep reads it for the loss and updates it after the step.
type Memory struct {
	device    *Device
	ptr       *C.rt_memory
	rows, dim int
}

func (mem *Memory) free() {
	C.rt_memory_free(mem.ptr)
	mem.ptr = nil
}

// NewMemory copies data (rows x dim, row-major) to the device.
func (d *Device) NewMemory(ctx context.Context, rows, dim int, data []float32) (*Memory, error) {
	if rows <= 0 || dim <= 0 || len(data) != rows*dim {
		return nil, fmt.Errorf("torch: memory %dx%d needs %d values, got %d", rows, dim, rows*dim, len(data))
	}
	mem := &Memory{device: d, rows: rows, dim: dim}
	err := d.do(ctx, func() error {
		var message *C.char
		code := C.rt_memory_new(C.int(d.deviceType), C.int(d.deviceIndex), (*C.float)(unsafe.Pointer(&data[0])),
			C.int64_t(rows), C.int64_t(dim), &mem.ptr, &message)
		if err := statusError(code, message, "new memory"); err != nil {
			return err
		}
		d.track(mem)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return mem, nil
}

// Rows is the number of memory entries (clusters).
func (mem *Memory) Rows() int { return mem.rows }

// Dim is the length of each entry.
func (mem *Memory) Dim() int { return mem.dim }

// Data copies the memory out, row-major.
func (mem *Memory) Data(ctx context.Context) ([]float32, error) {
	out := make([]float32, mem.rows*mem.dim)
	err := mem.device.do(ctx, func() error {
		if mem.ptr == nil {
			return ErrClosed
		}
		var message *C.char
		return statusError(C.rt_memory_get(mem.ptr, (*C.float)(unsafe.Pointer(&out[0])), &message), message, "read memory")
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Set overwrites the memory with rows x dim values.
func (mem *Memory) Set(ctx context.Context, data []float32) error {
	if len(data) != mem.rows*mem.dim {
		return fmt.Errorf("torch: memory %dx%d needs %d values, got %d", mem.rows, mem.dim, mem.rows*mem.dim, len(data))
	}
	return mem.device.do(ctx, func() error {
		if mem.ptr == nil {
			return ErrClosed
		}
		var message *C.char
		return statusError(C.rt_memory_set(mem.ptr, (*C.float)(unsafe.Pointer(&data[0])), &message), message, "write memory")
	})
}

// Close frees the memory. It is idempotent.
func (mem *Memory) Close() error { return mem.device.release(mem) }

// UpdateMode selects the memory update after a step.
type UpdateMode int

const (
	// UpdateNone leaves the memory unchanged.
	UpdateNone UpdateMode = iota
	// UpdateMean updates M[y] with every sample of label y, in batch order (Cluster Contrast's
	// default).
	UpdateMean
	// UpdateHard updates M[y] once per label, with the sample least similar to M[y] (--use-hard).
	UpdateHard
)

// StepOptions configures TrainStep. Zero values mean the Cluster Contrast defaults.
type StepOptions struct {
	Temperature float32 // default 0.05
	Momentum    float32 // default 0.1: M[y] = m*M[y] + (1-m)*x, then renormalised
	Update      UpdateMode
	// Rows limits the cross-entropy's softmax to these memory rows (the labels must lie among
	// them), so one memory can hold several sets of entries (one per camera, say) and a step
	// contrast against one set. The zero value means every row.
	Rows RowRange
	// Identities, when set, gives every memory row an identity (rows of one person in several
	// cameras share one), and the loss adds InterWeight x a multi-positive term: each sample
	// against all rows of its label row's identity, with the HardNegatives most similar rows of
	// other identities as the negatives (camera-aware proxies' inter-camera loss, arXiv 2012.10674).
	Identities    []int64
	InterWeight   float32
	HardNegatives int
}

// RowRange is the memory rows [Start, Start+Count).
type RowRange struct {
	Start, Count int
}

// StepResult reports one training step.
type StepResult struct {
	Loss float64
}

// TrainStep runs one Cluster Contrast step on a batch already at the model's input size (and
// already augmented): train-mode forward; loss = cross_entropy(normalize(f) . M^T / tau, labels);
// backward; Adam step; then the memory update. labels index rows of mem. The model is left in
// train mode.
func (m *Model) TrainStep(ctx context.Context, opt *Optimizer, mem *Memory, batch Batch, labels []int64, so StepOptions) (StepResult, error) {
	if err := batch.validate(); err != nil {
		return StepResult{}, err
	}
	if len(labels) != batch.N {
		return StepResult{}, fmt.Errorf("torch: %d labels for %d images", len(labels), batch.N)
	}
	if opt == nil || mem == nil || opt.model != m || mem.device != m.device {
		return StepResult{}, fmt.Errorf("torch: optimizer and memory must belong to this model and device")
	}
	if mem.dim != m.dim {
		return StepResult{}, fmt.Errorf("torch: memory dim %d, model dim %d", mem.dim, m.dim)
	}
	if so.Temperature == 0 {
		so.Temperature = 0.05
	}
	if so.Momentum == 0 {
		so.Momentum = 0.1
	}
	if so.Temperature < 0 || so.Momentum < 0 || so.Momentum > 1 || so.Update < UpdateNone || so.Update > UpdateHard ||
		so.Rows.Start < 0 || so.Rows.Count < 0 || so.InterWeight < 0 || so.HardNegatives < 0 {
		return StepResult{}, fmt.Errorf("torch: bad step options %+v", so)
	}
	if so.Identities != nil && len(so.Identities) != mem.rows {
		return StepResult{}, fmt.Errorf("torch: %d identities for a memory of %d rows", len(so.Identities), mem.rows)
	}
	options := C.rt_step_options{
		tau: C.float(so.Temperature), momentum: C.float(so.Momentum), update: C.int(so.Update),
		row_start: C.int64_t(so.Rows.Start), row_count: C.int64_t(so.Rows.Count),
		inter_weight: C.float(so.InterWeight), hard_negatives: C.int64_t(so.HardNegatives),
	}
	var pinner runtime.Pinner
	defer pinner.Unpin()
	if so.Identities != nil {
		// The options struct goes to C by pointer, so a Go pointer inside it must be pinned.
		pinner.Pin(&so.Identities[0])
		options.identities = (*C.int64_t)(unsafe.Pointer(&so.Identities[0]))
	}
	var loss C.double
	err := m.call(ctx, func() error {
		if opt.ptr == nil || mem.ptr == nil {
			return ErrClosed
		}
		var message *C.char
		code := C.rt_train_step(m.ptr, opt.ptr, mem.ptr, (*C.uint8_t)(unsafe.Pointer(&batch.Pix[0])),
			C.int64_t(batch.N), C.int64_t(batch.Height), C.int64_t(batch.Width),
			(*C.int64_t)(unsafe.Pointer(&labels[0])), &options, &loss, &message)
		return statusError(code, message, "train step")
	})
	if err != nil {
		return StepResult{}, err
	}
	return StepResult{Loss: float64(loss)}, nil
}

// Checkpoint file names inside a checkpoint directory.
const (
	checkpointModel     = "model.pt"
	checkpointOptimizer = "optimizer.pt"
)

// SaveCheckpoint writes the model (dir/model.pt) and the optimizer state with Adam's moments and
// step counts (dir/optimizer.pt), for resuming training. opt may be nil.
func (m *Model) SaveCheckpoint(ctx context.Context, dir string, opt *Optimizer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("torch: checkpoint: %w", err)
	}
	if err := m.Save(ctx, filepath.Join(dir, checkpointModel)); err != nil {
		return err
	}
	if opt == nil {
		return nil
	}
	path := filepath.Join(dir, checkpointOptimizer)
	return m.call(ctx, func() error {
		if opt.ptr == nil {
			return ErrClosed
		}
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		var message *C.char
		return statusError(C.rt_optim_save(opt.ptr, cpath, &message), message, "save optimizer")
	})
}

// LoadCheckpoint restores what SaveCheckpoint wrote. opt, if not nil, must be an optimizer of this
// model created with the same options; its learning rate comes from the checkpoint.
func (m *Model) LoadCheckpoint(ctx context.Context, dir string, opt *Optimizer) error {
	if err := m.Restore(ctx, filepath.Join(dir, checkpointModel)); err != nil {
		return err
	}
	if opt == nil {
		return nil
	}
	if opt.model != m {
		return fmt.Errorf("torch: optimizer belongs to another model")
	}
	path := filepath.Join(dir, checkpointOptimizer)
	return m.call(ctx, func() error {
		if opt.ptr == nil {
			return ErrClosed
		}
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		var message *C.char
		return statusError(C.rt_optim_load(opt.ptr, cpath, &message), message, "load optimizer")
	})
}
