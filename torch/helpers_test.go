package torch

import (
	"testing"
)

// openCPU opens the CPU device (or the one named by $REID_TORCH_DEVICE, which the GPU check sets)
// and closes it when the test ends.
func openCPU(t testing.TB) *Device {
	t.Helper()
	device, err := Open(Params{Device: testDevice()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { device.Close() })
	return device
}
