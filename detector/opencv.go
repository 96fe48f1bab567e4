package detector

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include <stdlib.h>
#include "opencv.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// SetThreads sets the size of OpenCV's thread pool for the whole process (gocv v0.31.0 does not
// expose cv::setNumThreads). n <= 0 leaves OpenCV's default. OpenCV's pool is process-wide, so the
// last call wins; cmd/reid calls it once from the configuration.
func SetThreads(n int) {
	if n > 0 {
		C.reid_set_num_threads(C.int(n))
	}
}

// Threads reports OpenCV's current thread count.
func Threads() int { return int(C.reid_get_num_threads()) }

// checkNet loads a network inside a C++ try/catch. gocv's loaders have none, so a damaged model
// file would abort the process from inside OpenCV; checking first turns that into an error.
func checkNet(model, config string) error {
	cModel, cConfig := C.CString(model), C.CString(config)
	defer C.free(unsafe.Pointer(cModel))
	defer C.free(unsafe.Pointer(cConfig))
	message := C.reid_check_net(cModel, cConfig)
	if message == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(message))
	return errors.New(C.GoString(message))
}
