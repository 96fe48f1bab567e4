#include <cstdlib>
#include <cstring>
#include <exception>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include "opencv.h"

// Every entry point catches everything: a C++ exception must never unwind into Go.

void reid_set_num_threads(int n) {
    try { cv::setNumThreads(n); } catch (...) {}
}

int reid_get_num_threads(void) {
    try { return cv::getNumThreads(); } catch (...) { return -1; }
}

static char* copy_message(const char* message) {
    char* copy = static_cast<char*>(std::malloc(std::strlen(message) + 1));
    if (copy != nullptr) std::strcpy(copy, message);
    return copy;
}

char* reid_check_net(const char* model, const char* config) {
    try {
        cv::dnn::Net net = cv::dnn::readNet(model, config);
        if (net.empty()) return copy_message("OpenCV read no layers");
        return nullptr;
    } catch (const cv::Exception& e) {
        return copy_message(e.err.c_str());
    } catch (const std::exception& e) {
        return copy_message(e.what());
    } catch (...) {
        return copy_message("unknown error");
    }
}
