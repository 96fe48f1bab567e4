#ifndef REID_DETECTOR_THREADS_H
#define REID_DETECTOR_THREADS_H
#ifdef __cplusplus
extern "C" {
#endif
void reid_set_num_threads(int n);
int reid_get_num_threads(void);
#ifdef __cplusplus
}
#endif
#endif
