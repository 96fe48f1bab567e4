#ifndef REID_DETECTOR_OPENCV_H
#define REID_DETECTOR_OPENCV_H
#ifdef __cplusplus
extern "C" {
#endif
void reid_set_num_threads(int n);
int reid_get_num_threads(void);
// reid_check_net loads a network and returns NULL when OpenCV accepts it, else a malloc'd message.
char* reid_check_net(const char* model, const char* config);
#ifdef __cplusplus
}
#endif
#endif
