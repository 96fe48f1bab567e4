/* Plain C ABI over libtorch for the Go package torch.
 *
 * Every function that can fail returns one of the RT_* codes and, on failure, stores a malloc'd
 * message in *err that the caller frees with rt_free. No C++ exception crosses this boundary.
 * Handles are opaque; each has one free function. A handle must only be used from the thread that
 * the Go side dedicates to its device (thread count, CUDA device and autocast are per thread). */
#ifndef REIDTORCH_H
#define REIDTORCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RT_OK 0
#define RT_ERR 1
#define RT_OOM 2

/* dtype codes for rt_model_set_tensor */
#define RT_FLOAT32 0
#define RT_FLOAT64 1
#define RT_FLOAT16 2
#define RT_BFLOAT16 3
#define RT_INT64 4

typedef struct rt_model rt_model;
typedef struct rt_optim rt_optim;
typedef struct rt_memory rt_memory;

typedef struct {
  const char *arch;  /* resnet50 | osnet_x0_25 | osnet_x1_0 */
  int last_stride;   /* resnet50: 1 or 2 */
  int gem;           /* resnet50: 1 = GeM pooling, 0 = average */
  int neck;          /* resnet50: 1 = BatchNorm1d neck */
  int device_type;   /* 0 = CPU, 1 = CUDA */
  int device_index;
  int bf16;          /* CUDA: bf16 autocast */
  int channels_last; /* CUDA: channels_last memory format */
  float mean[3];
  float std[3];
} rt_model_config;

void rt_free(void *p);
/* Version of the libtorch the shim was compiled against; static string. */
const char *rt_version(void);
int rt_cuda_device_count(void);
/* Per-thread setup: intra-op thread count and current CUDA device. */
int rt_thread_init(int threads, int device_type, int device_index, char **err);
int rt_manual_seed(uint64_t seed, char **err);
/* Allocates and frees bytes on the device (tests the out-of-memory path). */
int rt_try_allocate(int device_type, int device_index, int64_t bytes, char **err);

int rt_model_new(const rt_model_config *cfg, rt_model **out, char **err);
void rt_model_free(rt_model *m);
int64_t rt_model_dim(rt_model *m);
/* "name\tshape\n" for every parameter and buffer, shape as comma-separated dims; *out malloc'd. */
int rt_model_names(rt_model *m, char **out, char **err);
int rt_model_set_tensor(rt_model *m, const char *name, int dtype, const int64_t *shape, int ndim,
                        const void *data, char **err);
/* Copies a parameter or buffer converted to float32 into out (n elements). */
int rt_model_get_tensor(rt_model *m, const char *name, float *out, int64_t n, char **err);
int rt_model_train(rt_model *m, int train, char **err);
/* pix: n x h x w x 3 uint8 RGB. out: n x dim. train selects BN mode; no grad either way.
 * flip averages with the mirrored image; normalize L2-normalises each row. */
int rt_model_forward(rt_model *m, const uint8_t *pix, int64_t n, int64_t h, int64_t w, int train,
                     int flip, int normalize, float *out, char **err);
int rt_model_save(rt_model *m, const char *path, char **err);
int rt_model_load(rt_model *m, const char *path, char **err);

int rt_adam_new(rt_model *m, double lr, double weight_decay, double beta1, double beta2,
                double eps, rt_optim **out, char **err);
void rt_optim_free(rt_optim *o);
int rt_optim_set_lr(rt_optim *o, double lr, char **err);
int rt_optim_get_lr(rt_optim *o, double *lr, char **err);
int rt_optim_save(rt_optim *o, const char *path, char **err);
int rt_optim_load(rt_optim *o, const char *path, char **err);

int rt_memory_new(int device_type, int device_index, const float *data, int64_t rows,
                  int64_t dim, rt_memory **out, char **err);
void rt_memory_free(rt_memory *mem);
int rt_memory_get(rt_memory *mem, float *out, char **err);
int rt_memory_set(rt_memory *mem, const float *data, char **err);

/* How a step's loss and memory update are computed. */
typedef struct {
  float tau;      /* temperature */
  float momentum; /* memory update: M[y] = normalize(m * M[y] + (1 - m) * x) */
  int update;     /* 0 none, 1 mean (every sample in batch order), 2 hard (least similar per label) */
  /* The cross-entropy's softmax runs over memory rows [row_start, row_start + row_count) only
   * (labels must lie there); row_count 0 means every row. */
  int64_t row_start, row_count;
  /* When not NULL, one identity per memory row, and the loss adds inter_weight x the mean over
   * the batch of -mean over the positives p of log(exp(s_p) / (sum over positives + the
   * hard_negatives highest of the other rows)), s = normalize(f) . M^T / tau and the positives
   * the rows with the identity of the sample's label row. */
  const int64_t *identities;
  float inter_weight;
  int64_t hard_negatives;
} rt_step_options;

/* One Cluster Contrast step: train-mode forward, the loss above, backward, optimizer step, then
 * the memory update. */
int rt_train_step(rt_model *m, rt_optim *o, rt_memory *mem, const uint8_t *pix, int64_t n,
                  int64_t h, int64_t w, const int64_t *labels, const rt_step_options *options,
                  double *loss, char **err);

/* Nearest neighbours by inner product: for each of the n rows of features (n x d float32), the
 * indices of its k most similar rows, most similar first, into out (n x k int32). Exact float32
 * (TF32 off on CUDA), in row blocks that bound the similarity memory; equal similarities come in
 * no particular order (the caller re-scores the boundary). */
int rt_knn(int device_type, int device_index, const float *features, int64_t n, int64_t d,
           int64_t k, int32_t *out, char **err);

#ifdef __cplusplus
}
#endif

#endif
