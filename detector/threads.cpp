#include <opencv2/core.hpp>
#include "threads.h"

// cv::setNumThreads does not throw; no exception can cross into Go.
void reid_set_num_threads(int n) { cv::setNumThreads(n); }
int reid_get_num_threads(void) { return cv::getNumThreads(); }
