// Package torch is reid's binding to libtorch: re-id backbones (ResNet-50, OSNet) defined in
// torch::nn, PyTorch weight import, batched embedding and the training primitives of Cluster
// Contrast.
//
// The C++ side is a small shim with a plain C ABI (torch/csrc, built into build/lib/libreidtorch.so
// by `make`); this package links it by name so that the same Go binary runs against a CPU shim
// here and a CUDA shim rebuilt on a GPU machine. All torch work for one device runs on that
// Device's single goroutine, locked to its OS thread, because libtorch keeps the thread count, the
// current CUDA device and autocast state per thread.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/csrc
#cgo LDFLAGS: -L${SRCDIR}/../build/lib -lreidtorch -Wl,-rpath,$ORIGIN/../lib -Wl,-rpath,$ORIGIN/../build/lib -Wl,-rpath,${SRCDIR}/../build/lib
#include <stdlib.h>
#include "reidtorch.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// ErrOutOfMemory reports that libtorch could not allocate memory (host or GPU). Errors returned by
// this package wrap it; test with errors.Is.
var ErrOutOfMemory = errors.New("torch: out of memory")

// ErrClosed is returned by calls on a closed Device or handle.
var ErrClosed = errors.New("torch: closed")

// Shim status codes (RT_* in reidtorch.h).
const (
	codeOK    = 0
	codeError = 1
	codeOOM   = 2
)

// statusError converts a shim status code and message into a Go error, freeing the message.
func statusError(code C.int, message *C.char, op string) error {
	if code == C.RT_OK {
		return nil
	}
	text := "unknown error"
	if message != nil {
		text = C.GoString(message)
		C.rt_free(unsafe.Pointer(message))
	}
	return errorFromStatus(int(code), text, op)
}

func errorFromStatus(code int, text, op string) error {
	switch code {
	case codeOK:
		return nil
	case codeOOM:
		return fmt.Errorf("torch: %s: %w: %s", op, ErrOutOfMemory, text)
	default:
		return fmt.Errorf("torch: %s: %s", op, text)
	}
}

// Version returns the libtorch version the shim was compiled against, e.g. "1.13.0".
func Version() string { return C.GoString(C.rt_version()) }

// CUDADeviceCount returns the number of CUDA devices libtorch sees (0 with a CPU-only shim).
func CUDADeviceCount() int { return int(C.rt_cuda_device_count()) }

// Params selects a device and its threading.
type Params struct {
	// Device is "cpu" (the default), "cuda" (device 0) or "cuda:N".
	Device string
	// Threads is the intra-op thread count (at::set_num_threads). 0 means runtime.NumCPU();
	// libtorch itself would default to 1 here.
	Threads int
}

// parseDevice returns the shim's device type (0 CPU, 1 CUDA) and index.
func parseDevice(name string) (deviceType, index int, canonical string, err error) {
	switch {
	case name == "" || name == "cpu":
		return 0, 0, "cpu", nil
	case name == "cuda":
		return 1, 0, "cuda:0", nil
	case strings.HasPrefix(name, "cuda:"):
		n, convErr := strconv.Atoi(strings.TrimPrefix(name, "cuda:"))
		if convErr != nil || n < 0 {
			return 0, 0, "", fmt.Errorf("torch: bad device %q: want cpu, cuda or cuda:N", name)
		}
		return 1, n, "cuda:" + strconv.Itoa(n), nil
	default:
		return 0, 0, "", fmt.Errorf("torch: bad device %q: want cpu, cuda or cuda:N", name)
	}
}

// Device owns one worker goroutine, locked to its OS thread, that runs every torch call for the
// device in submission order. It is safe for concurrent use. Handles created on a Device that are
// still open when it closes are freed by Close.
type Device struct {
	name        string
	deviceType  int
	deviceIndex int
	threads     int

	jobs chan func()
	done chan struct{}

	mu      sync.RWMutex // guards closed and the send side of jobs
	closed  bool
	handles map[handle]struct{} // open handles, freed at Close; touched only on the worker
}

// handle is an object owning shim memory; free runs on the worker.
type handle interface{ free() }

// Open starts the worker for a device and initialises its thread.
func Open(params Params) (*Device, error) {
	deviceType, index, canonical, err := parseDevice(params.Device)
	if err != nil {
		return nil, err
	}
	threads := params.Threads
	if threads < 0 {
		return nil, fmt.Errorf("torch: negative thread count %d", threads)
	}
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	d := &Device{
		name:        canonical,
		deviceType:  deviceType,
		deviceIndex: index,
		threads:     threads,
		jobs:        make(chan func()),
		done:        make(chan struct{}),
		handles:     make(map[handle]struct{}),
	}
	started := make(chan error, 1)
	go d.run(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Device) run(started chan<- error) {
	defer close(d.done)
	// Never unlocked: when this goroutine ends, its thread (and libtorch's per-thread state)
	// goes with it.
	runtime.LockOSThread()
	var message *C.char
	code := C.rt_thread_init(C.int(d.threads), C.int(d.deviceType), C.int(d.deviceIndex), &message)
	if err := statusError(code, message, "open "+d.name); err != nil {
		started <- err
		return
	}
	started <- nil
	for job := range d.jobs {
		job()
	}
	for h := range d.handles {
		h.free()
	}
}

// do runs fn on the worker and waits for it. A context cancelled before fn starts abandons it;
// once started, fn runs to completion (the shim may be reading the caller's memory).
func (d *Device) do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return ErrClosed
	}
	result := make(chan error, 1)
	job := func() {
		defer func() {
			if r := recover(); r != nil {
				result <- fmt.Errorf("torch: panic on device worker: %v", r)
			}
		}()
		result <- fn()
	}
	select {
	case d.jobs <- job:
		d.mu.RUnlock()
	case <-ctx.Done():
		d.mu.RUnlock()
		return ctx.Err()
	}
	return <-result
}

// track and untrack record open handles; they run on the worker.
func (d *Device) track(h handle)   { d.handles[h] = struct{}{} }
func (d *Device) untrack(h handle) { delete(d.handles, h) }

// release frees a handle on the worker; a closed device has already freed it.
func (d *Device) release(h handle) error {
	err := d.do(context.Background(), func() error {
		if _, open := d.handles[h]; open {
			d.untrack(h)
			h.free()
		}
		return nil
	})
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Close stops the worker after the queued calls and frees every handle still open.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.closed = true
	close(d.jobs)
	d.mu.Unlock()
	<-d.done
	return nil
}

// Name returns the canonical device name: "cpu" or "cuda:N".
func (d *Device) Name() string { return d.name }

// IsCUDA reports whether the device is a GPU.
func (d *Device) IsCUDA() bool { return d.deviceType == 1 }

// Threads returns the intra-op thread count the worker runs with.
func (d *Device) Threads() int { return d.threads }

// Seed seeds libtorch's random generators (parameter initialisation, dropout).
func (d *Device) Seed(ctx context.Context, seed uint64) error {
	return d.do(ctx, func() error {
		var message *C.char
		return statusError(C.rt_manual_seed(C.uint64_t(seed), &message), message, "seed")
	})
}

// tryAllocate allocates and frees bytes on the device through libtorch's allocator; it exists to
// exercise the out-of-memory path.
func (d *Device) tryAllocate(ctx context.Context, bytes int64) error {
	return d.do(ctx, func() error {
		var message *C.char
		return statusError(C.rt_try_allocate(C.int(d.deviceType), C.int(d.deviceIndex), C.int64_t(bytes), &message), message, "allocate")
	})
}
