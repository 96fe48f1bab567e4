package detector

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include "threads.h"
*/
import "C"

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
