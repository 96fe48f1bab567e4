package torch

import "os"

// testDevice is the device the tests run on: cpu, or $REID_TORCH_DEVICE (scripts/gpu-check.sh
// sets cuda there).
func testDevice() string {
	if name := os.Getenv("REID_TORCH_DEVICE"); name != "" {
		return name
	}
	return "cpu"
}
