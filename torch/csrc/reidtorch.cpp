// The C ABI of reidtorch.h over libtorch's C++ API. Every entry point runs inside guarded(),
// which turns any exception into an error code and a malloc'd message.
#include "reidtorch.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "models.h"

namespace {

void set_error(char **err, const std::string &msg) {
  if (err == nullptr) return;
  *err = static_cast<char *>(std::malloc(msg.size() + 1));
  if (*err != nullptr) std::memcpy(*err, msg.c_str(), msg.size() + 1);
}

bool looks_like_oom(const std::string &msg) {
  return msg.find("out of memory") != std::string::npos ||
         msg.find("can't allocate memory") != std::string::npos ||
         msg.find("OutOfMemory") != std::string::npos;
}

template <class F>
int guarded(char **err, F &&body) {
  try {
    body();
    return RT_OK;
  } catch (const std::bad_alloc &) {
    set_error(err, "out of memory (std::bad_alloc)");
    return RT_OOM;
  } catch (const c10::Error &e) {
    std::string msg = e.what_without_backtrace();
    set_error(err, msg);
    return looks_like_oom(msg) ? RT_OOM : RT_ERR;
  } catch (const std::exception &e) {
    std::string msg = e.what();
    set_error(err, msg);
    return looks_like_oom(msg) ? RT_OOM : RT_ERR;
  } catch (...) {
    set_error(err, "unknown C++ exception");
    return RT_ERR;
  }
}

torch::Device make_device(int device_type, int device_index) {
  if (device_type == 1) return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_index));
  return torch::Device(torch::kCPU);
}

// Enables bf16 autocast on CUDA for the scope. The API changed in PyTorch 2.4.
class CudaAutocast {
 public:
  explicit CudaAutocast(bool enable) : enabled_(enable) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaAutocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
  }
  CudaAutocast(const CudaAutocast &) = delete;
  CudaAutocast &operator=(const CudaAutocast &) = delete;

 private:
  bool enabled_;
};

// Exact fp32 on CUDA for the scope (Precision "fp32"): TF32 off (cuDNN convolutions otherwise use
// it on Ampere and later, about 1e-3 relative error), deterministic cuDNN algorithms instead of
// the autotuned ones, so that results repeat.
class StrictFloat32 {
 public:
  explicit StrictFloat32(bool enable) : enabled_(enable) {
    if (!enabled_) return;
    auto &ctx = at::globalContext();
    cudnn_ = ctx.allowTF32CuDNN();
    cublas_ = ctx.allowTF32CuBLAS();
    deterministic_ = ctx.deterministicCuDNN();
    benchmark_ = ctx.benchmarkCuDNN();
    ctx.setAllowTF32CuDNN(false);
    ctx.setAllowTF32CuBLAS(false);
    ctx.setDeterministicCuDNN(true);
    ctx.setBenchmarkCuDNN(false);
  }
  ~StrictFloat32() {
    if (!enabled_) return;
    auto &ctx = at::globalContext();
    ctx.setAllowTF32CuDNN(cudnn_);
    ctx.setAllowTF32CuBLAS(cublas_);
    ctx.setDeterministicCuDNN(deterministic_);
    ctx.setBenchmarkCuDNN(benchmark_);
  }
  StrictFloat32(const StrictFloat32 &) = delete;
  StrictFloat32 &operator=(const StrictFloat32 &) = delete;

 private:
  bool enabled_;
  bool cudnn_ = true, cublas_ = false, deterministic_ = false, benchmark_ = false;
};

std::string shape_string(const torch::Tensor &t) {
  std::ostringstream out;
  for (int64_t i = 0; i < t.dim(); i++) {
    if (i > 0) out << ',';
    out << t.size(i);
  }
  return out.str();
}

}  // namespace

struct rt_model {
  std::shared_ptr<reid::NetImpl> net;
  torch::Device device{torch::kCPU};
  bool autocast = false;
  bool strict_fp32 = false;
  bool channels_last = false;
  torch::Tensor mean, std;  // 1 x 3 x 1 x 1 on device
  std::unordered_map<std::string, torch::Tensor> named;

  void index_names() {
    named.clear();
    for (auto &item : net->named_parameters(true)) named[item.key()] = item.value();
    for (auto &item : net->named_buffers(true)) named[item.key()] = item.value();
  }

  // channels_last is a layout change only, and a large one in speed: cuDNN under bf16 wants it,
  // and so does oneDNN on the CPU (OSNet x0.25 embeds 1.7x faster, ResNet-50 trains 1.1x faster).
  void apply_memory_format() {
    if (!channels_last) return;
    torch::NoGradGuard no_grad;
    for (auto &param : net->parameters(true)) {
      if (param.dim() == 4) param.set_data(param.data().contiguous(at::MemoryFormat::ChannelsLast));
    }
  }

  torch::Tensor preprocess(const uint8_t *pix, int64_t n, int64_t h, int64_t w) {
    auto host = torch::from_blob(const_cast<uint8_t *>(pix), {n, h, w, 3}, torch::kUInt8);
    auto x = host.to(device).permute({0, 3, 1, 2}).to(torch::kFloat).div_(255.0);
    x = x.sub_(mean).div_(std);
    return channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x.contiguous();
  }
};

struct rt_optim {
  std::unique_ptr<torch::optim::Adam> adam;
};

namespace {

// torch::optim::Adam keys its per-parameter state by the parameter's TensorImpl: as a printed
// pointer up to libtorch 1.x, as the pointer itself from 2.0.
template <class StateMap>
typename StateMap::key_type adam_state_key(const StateMap &, const torch::Tensor &param) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream key;
    key << param.unsafeGetTensorImpl();
    return key.str();
  } else {
    return param.unsafeGetTensorImpl();
  }
}

// One Adam step with torch's multi-tensor (_foreach_) kernels, as torch.optim.Adam runs on CUDA by
// default. torch::optim::Adam::step loops over parameters, about nine kernel launches each (1,400
// for ResNet-50), which on a GPU costs more than the arithmetic. The arithmetic is torch.optim.Adam's
// (L2 weight decay added to the gradient), and the moments live in torch::optim::Adam's state, so
// checkpoints keep its format. Parameters without a gradient are skipped, as after
// zero_grad(set_to_none).
void adam_step(torch::optim::Adam &adam) {
  struct Tensors {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };
  torch::NoGradGuard no_grad;
  auto &states = adam.state();
  for (auto &group : adam.param_groups()) {
    auto &options = static_cast<torch::optim::AdamOptions &>(group.options());
    if (options.amsgrad()) throw std::invalid_argument("amsgrad is not supported");
    // Bias corrections depend on the step count; parameters share one unless some missed a gradient.
    std::map<int64_t, Tensors> by_step;
    for (auto &param : group.params()) {
      if (!param.grad().defined()) continue;
      auto key = adam_state_key(states, param);
      auto found = states.find(key);
      if (found == states.end()) {
        auto state = std::make_unique<torch::optim::AdamParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(param, at::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(param, at::MemoryFormat::Preserve));
        states[key] = std::move(state);
        found = states.find(key);
      }
      auto &state = static_cast<torch::optim::AdamParamState &>(*found->second);
      state.step(state.step() + 1);
      auto &tensors = by_step[state.step()];
      tensors.params.push_back(param);
      tensors.grads.push_back(param.grad());
      tensors.exp_avgs.push_back(state.exp_avg());
      tensors.exp_avg_sqs.push_back(state.exp_avg_sq());
    }
    double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    for (auto &[step, tensors] : by_step) {
      auto grads = tensors.grads;
      if (options.weight_decay() != 0) grads = at::_foreach_add(grads, tensors.params, options.weight_decay());
      // Rounded as torch.optim.Adam of the same release rounds, so that a step here and one in
      // that PyTorch are bit-identical on the CPU (TestTrainStepsMatchPyTorch).
#if TORCH_VERSION_MAJOR >= 2
      at::_foreach_lerp_(tensors.exp_avgs, grads, 1 - beta1);
#else
      at::_foreach_mul_(tensors.exp_avgs, beta1);
      at::_foreach_add_(tensors.exp_avgs, grads, 1 - beta1);
#endif
      at::_foreach_mul_(tensors.exp_avg_sqs, beta2);
      at::_foreach_addcmul_(tensors.exp_avg_sqs, grads, grads, 1 - beta2);
      double bias_correction1 = 1 - std::pow(beta1, step);
      double bias_correction2 = 1 - std::pow(beta2, step);
      double bias_correction2_sqrt = TORCH_VERSION_MAJOR >= 2 ? std::pow(bias_correction2, 0.5) : std::sqrt(bias_correction2);
      auto denom = at::_foreach_sqrt(tensors.exp_avg_sqs);
      at::_foreach_div_(denom, bias_correction2_sqrt);
      at::_foreach_add_(denom, options.eps());
      at::_foreach_addcdiv_(tensors.params, tensors.exp_avgs, denom, -options.lr() / bias_correction1);
    }
  }
}

}  // namespace

struct rt_memory {
  torch::Tensor data;  // rows x dim float32
};

extern "C" {

void rt_free(void *p) { std::free(p); }

const char *rt_version(void) {
#define RT_STR2(x) #x
#define RT_STR(x) RT_STR2(x)
  return RT_STR(TORCH_VERSION_MAJOR) "." RT_STR(TORCH_VERSION_MINOR) "." RT_STR(TORCH_VERSION_PATCH);
}

int rt_cuda_device_count(void) {
  try {
    return static_cast<int>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

int rt_thread_init(int threads, int device_type, int device_index, char **err) {
  return guarded(err, [&] {
    if (threads > 0) at::set_num_threads(threads);
    if (device_type == 1) {
      // device_count() is size_t up to libtorch 2.13 and a signed DeviceIndex from 2.14.
      auto count = static_cast<int64_t>(torch::cuda::device_count());
      if (device_index < 0 || device_index >= count) {
        throw std::invalid_argument("CUDA device " + std::to_string(device_index) +
                                    " not available (" + std::to_string(count) + " devices)");
      }
      c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
          ->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device_index)));
      // Autotuned cuDNN algorithms, as torch.backends.cudnn.benchmark = True: the input size of
      // re-id batches is fixed, so the search is paid once.
      at::globalContext().setBenchmarkCuDNN(true);
    }
  });
}

int rt_manual_seed(uint64_t seed, char **err) {
  return guarded(err, [&] { torch::manual_seed(seed); });
}

int rt_try_allocate(int device_type, int device_index, int64_t bytes, char **err) {
  return guarded(err, [&] {
    auto t = torch::empty({bytes}, torch::TensorOptions().dtype(torch::kUInt8).device(make_device(device_type, device_index)));
    (void)t;
  });
}

int rt_knn(int device_type, int device_index, const float *features, int64_t n, int64_t d,
           int64_t k, int32_t *out, char **err) {
  return guarded(err, [&] {
    if (n < 1 || d < 1 || k < 1 || k > n) throw std::invalid_argument("knn: need n, d >= 1 and 1 <= k <= n");
    torch::NoGradGuard no_grad;
    StrictFloat32 strict(device_type == 1);
    auto host = torch::from_blob(const_cast<float *>(features), {n, d}, torch::kFloat);
    auto all = host.to(make_device(device_type, device_index));
    // A block's similarities are block x n floats: at most 2^26 of them (256 MB).
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{1} << 26) / n));
    auto transposed = all.t();
    for (int64_t start = 0; start < n; start += block) {
      const int64_t end = std::min(n, start + block);
      auto similarities = torch::mm(all.slice(0, start, end), transposed);
      auto indices = std::get<1>(similarities.topk(k, /*dim=*/1, /*largest=*/true, /*sorted=*/true));
      auto rows = indices.to(torch::kInt32).to(torch::kCPU).contiguous();
      std::memcpy(out + start * k, rows.data_ptr<int32_t>(), sizeof(int32_t) * rows.numel());
    }
  });
}

int rt_model_new(const rt_model_config *cfg, rt_model **out, char **err) {
  return guarded(err, [&] {
    auto model = std::make_unique<rt_model>();
    model->net = reid::make_net(cfg->arch, cfg->last_stride, cfg->gem != 0, cfg->neck != 0);
    model->device = make_device(cfg->device_type, cfg->device_index);
    model->autocast = cfg->device_type == 1 && cfg->bf16 != 0;
    model->strict_fp32 = cfg->device_type == 1 && cfg->bf16 == 0;
    model->channels_last = cfg->channels_last != 0;
    model->net->to(model->device);
    model->net->eval();
    model->apply_memory_format();
    model->mean = torch::tensor({cfg->mean[0], cfg->mean[1], cfg->mean[2]}).view({1, 3, 1, 1}).to(model->device);
    model->std = torch::tensor({cfg->std[0], cfg->std[1], cfg->std[2]}).view({1, 3, 1, 1}).to(model->device);
    model->index_names();
    *out = model.release();
  });
}

void rt_model_free(rt_model *m) { delete m; }

int64_t rt_model_dim(rt_model *m) { return m->net->dim; }

int rt_model_names(rt_model *m, char **out, char **err) {
  return guarded(err, [&] {
    std::ostringstream text;
    for (auto &item : m->net->named_parameters(true))
      text << item.key() << '\t' << shape_string(item.value()) << '\n';
    for (auto &item : m->net->named_buffers(true))
      text << item.key() << '\t' << shape_string(item.value()) << '\n';
    std::string s = text.str();
    *out = static_cast<char *>(std::malloc(s.size() + 1));
    if (*out == nullptr) throw std::bad_alloc();
    std::memcpy(*out, s.c_str(), s.size() + 1);
  });
}

int rt_model_set_tensor(rt_model *m, const char *name, int dtype, const int64_t *shape, int ndim,
                        const void *data, char **err) {
  return guarded(err, [&] {
    auto it = m->named.find(name);
    if (it == m->named.end()) throw std::invalid_argument(std::string("no tensor named ") + name);
    torch::ScalarType type;
    switch (dtype) {
      case RT_FLOAT32: type = torch::kFloat; break;
      case RT_FLOAT64: type = torch::kDouble; break;
      case RT_FLOAT16: type = torch::kHalf; break;
      case RT_BFLOAT16: type = torch::kBFloat16; break;
      case RT_INT64: type = torch::kLong; break;
      default: throw std::invalid_argument("unsupported dtype code " + std::to_string(dtype));
    }
    std::vector<int64_t> sizes(shape, shape + ndim);
    auto src = torch::from_blob(const_cast<void *>(data), sizes, type);
    auto &dst = it->second;
    if (src.sizes() != dst.sizes()) {
      // A one-element tensor stored as shape [] or [1] is the same value.
      if (!(src.numel() == 1 && dst.numel() == 1)) {
        throw std::invalid_argument(std::string(name) + ": shape [" + shape_string(src) +
                                    "] does not match the model's [" + shape_string(dst) + "]");
      }
      src = src.reshape(dst.sizes());
    }
    torch::NoGradGuard no_grad;
    dst.copy_(src);
  });
}

int rt_model_get_tensor(rt_model *m, const char *name, float *out, int64_t n, char **err) {
  return guarded(err, [&] {
    auto it = m->named.find(name);
    if (it == m->named.end()) throw std::invalid_argument(std::string("no tensor named ") + name);
    auto t = it->second.detach().to(torch::kCPU, torch::kFloat).contiguous();
    if (t.numel() != n) throw std::invalid_argument("output size mismatch");
    std::memcpy(out, t.data_ptr<float>(), sizeof(float) * n);
  });
}

int rt_model_train(rt_model *m, int train, char **err) {
  return guarded(err, [&] { m->net->train(train != 0); });
}

int rt_model_forward(rt_model *m, const uint8_t *pix, int64_t n, int64_t h, int64_t w, int train,
                     int flip, int normalize, float *out, char **err) {
  return guarded(err, [&] {
    // Eval forwards run in inference mode (no autograd bookkeeping at all); train-mode ones only
    // without gradients, because BatchNorm updates its running statistics in place.
    c10::optional<c10::InferenceMode> inference;
    if (!train) inference.emplace();
    torch::NoGradGuard no_grad;
    // Restores the module's mode on every exit, exceptions included.
    struct ModeGuard {
      reid::NetImpl &net;
      bool was_training;
      ~ModeGuard() { net.train(was_training); }
    } mode{*m->net, m->net->is_training()};
    m->net->train(train != 0);
    torch::Tensor features;
    {
      auto x = m->preprocess(pix, n, h, w);
      StrictFloat32 strict(m->strict_fp32);
      CudaAutocast autocast(m->autocast);
      features = m->net->forward(x).to(torch::kFloat);
      if (flip) features = features + m->net->forward(x.flip({3})).to(torch::kFloat);
    }
    if (normalize) {
      features = torch::nn::functional::normalize(features, torch::nn::functional::NormalizeFuncOptions().dim(1));
    }
    features = features.to(torch::kCPU).contiguous();
    if (features.size(0) != n || features.size(1) != m->net->dim)
      throw std::runtime_error("unexpected feature shape [" + shape_string(features) + "]");
    std::memcpy(out, features.data_ptr<float>(), sizeof(float) * n * m->net->dim);
  });
}

int rt_model_save(rt_model *m, const char *path, char **err) {
  return guarded(err, [&] {
    torch::serialize::OutputArchive archive;
    m->net->save(archive);
    archive.save_to(path);
  });
}

int rt_model_load(rt_model *m, const char *path, char **err) {
  return guarded(err, [&] {
    torch::serialize::InputArchive archive;
    archive.load_from(path, m->device);
    m->net->load(archive);
    m->apply_memory_format();
    m->index_names();
  });
}

int rt_adam_new(rt_model *m, double lr, double weight_decay, double beta1, double beta2,
                double eps, rt_optim **out, char **err) {
  return guarded(err, [&] {
    std::vector<torch::Tensor> params;
    for (auto &p : m->net->parameters(true)) {
      if (p.requires_grad()) params.push_back(p);
    }
    auto options = torch::optim::AdamOptions(lr)
                       .betas(std::make_tuple(beta1, beta2))
                       .eps(eps)
                       .weight_decay(weight_decay);
    auto optim = std::make_unique<rt_optim>();
    optim->adam = std::make_unique<torch::optim::Adam>(params, options);
    *out = optim.release();
  });
}

void rt_optim_free(rt_optim *o) { delete o; }

int rt_optim_set_lr(rt_optim *o, double lr, char **err) {
  return guarded(err, [&] {
    for (auto &group : o->adam->param_groups())
      static_cast<torch::optim::AdamOptions &>(group.options()).lr(lr);
  });
}

int rt_optim_get_lr(rt_optim *o, double *lr, char **err) {
  return guarded(err, [&] {
    *lr = static_cast<torch::optim::AdamOptions &>(o->adam->param_groups().at(0).options()).lr();
  });
}

int rt_optim_save(rt_optim *o, const char *path, char **err) {
  return guarded(err, [&] {
    torch::serialize::OutputArchive archive;
    o->adam->save(archive);
    // libtorch's optimizer archive does not restore the learning rate; keep it beside.
    double lr = static_cast<torch::optim::AdamOptions &>(o->adam->param_groups().at(0).options()).lr();
    archive.write("reid_lr", torch::tensor(lr, torch::kDouble));
    archive.save_to(path);
  });
}

int rt_optim_load(rt_optim *o, const char *path, char **err) {
  return guarded(err, [&] {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    o->adam->load(archive);
    torch::Tensor lr;
    if (archive.try_read("reid_lr", lr)) {
      for (auto &group : o->adam->param_groups())
        static_cast<torch::optim::AdamOptions &>(group.options()).lr(lr.item<double>());
    }
    // Adam's moments are read onto the CPU; keep them beside their parameters.
    torch::Device device(torch::kCPU);
    for (auto &group : o->adam->param_groups()) {
      if (!group.params().empty()) device = group.params()[0].device();
    }
    for (auto &entry : o->adam->state()) {
      auto &state = static_cast<torch::optim::AdamParamState &>(*entry.second);
      state.exp_avg(state.exp_avg().to(device));
      state.exp_avg_sq(state.exp_avg_sq().to(device));
      if (state.max_exp_avg_sq().defined()) state.max_exp_avg_sq(state.max_exp_avg_sq().to(device));
    }
  });
}

int rt_memory_new(int device_type, int device_index, const float *data, int64_t rows,
                  int64_t dim, rt_memory **out, char **err) {
  return guarded(err, [&] {
    auto mem = std::make_unique<rt_memory>();
    auto host = torch::from_blob(const_cast<float *>(data), {rows, dim}, torch::kFloat);
    mem->data = host.to(make_device(device_type, device_index), /*non_blocking=*/false, /*copy=*/true);
    *out = mem.release();
  });
}

void rt_memory_free(rt_memory *mem) { delete mem; }

int rt_memory_get(rt_memory *mem, float *out, char **err) {
  return guarded(err, [&] {
    auto t = mem->data.to(torch::kCPU).contiguous();
    std::memcpy(out, t.data_ptr<float>(), sizeof(float) * t.numel());
  });
}

int rt_memory_set(rt_memory *mem, const float *data, char **err) {
  return guarded(err, [&] {
    auto host = torch::from_blob(const_cast<float *>(data), mem->data.sizes(), torch::kFloat);
    mem->data.copy_(host);
  });
}

int rt_train_step(rt_model *m, rt_optim *o, rt_memory *mem, const uint8_t *pix, int64_t n,
                  int64_t h, int64_t w, const int64_t *labels, const rt_step_options *options,
                  double *loss_out, char **err) {
  return guarded(err, [&] {
    int64_t rows = mem->data.size(0);
    int64_t start = options->row_start, count = options->row_count == 0 ? rows : options->row_count;
    if (start < 0 || count < 1 || start + count > rows)
      throw std::invalid_argument("rows [" + std::to_string(start) + ", " + std::to_string(start + count) +
                                  ") outside the memory's " + std::to_string(rows) + " rows");
    for (int64_t i = 0; i < n; i++) {
      if (labels[i] < start || labels[i] >= start + count)
        throw std::invalid_argument("label " + std::to_string(labels[i]) + " outside the memory rows [" +
                                    std::to_string(start) + ", " + std::to_string(start + count) + ")");
    }
    if (options->identities != nullptr && options->hard_negatives < 0)
      throw std::invalid_argument("hard negatives must be >= 0");
    float tau = options->tau, momentum = options->momentum;
    int update = options->update;
    m->net->train(true);
    StrictFloat32 strict(m->strict_fp32);
    auto x = m->preprocess(pix, n, h, w);
    torch::Tensor features;
    {
      CudaAutocast autocast(m->autocast);
      features = m->net->forward(x);
    }
    auto normed = torch::nn::functional::normalize(
        features.to(torch::kFloat), torch::nn::functional::NormalizeFuncOptions().dim(1));
    auto target = torch::from_blob(const_cast<int64_t *>(labels), {n}, torch::kLong).to(m->device);
    auto logits = normed.mm(mem->data.t()).div(tau);
    auto loss = torch::nn::functional::cross_entropy(logits.narrow(1, start, count), target - start);
    if (options->identities != nullptr) {
      auto identities = torch::from_blob(const_cast<int64_t *>(options->identities), {rows}, torch::kLong).to(m->device);
      auto positive = identities.unsqueeze(0).eq(identities.index_select(0, target).unsqueeze(1));
      auto negative_infinity = -std::numeric_limits<float>::infinity();
      auto candidates = logits.masked_fill(positive.logical_not(), negative_infinity);
      int64_t hard = std::min(options->hard_negatives, rows);
      if (hard > 0) {
        // Rows beyond a sample's negatives come back as -inf and weigh nothing in the sum.
        auto negatives = std::get<0>(logits.masked_fill(positive, negative_infinity).topk(hard, 1));
        candidates = torch::cat({candidates, negatives}, 1);
      }
      auto positives = positive.to(logits.scalar_type());
      auto mean_positive = (logits * positives).sum(1) / positives.sum(1);
      auto inter = (candidates.logsumexp(1) - mean_positive).mean();
      loss = loss + inter * options->inter_weight;
    }
    // Gradients are dropped rather than zeroed (torch.optim's default since 2.0): backward then
    // writes them fresh instead of adding to zeros, with no zeroing kernels.
    for (auto &group : o->adam->param_groups()) {
      for (auto &param : group.params()) param.mutable_grad().reset();
    }
    loss.backward();
    adam_step(*o->adam);

    torch::NoGradGuard no_grad;
    auto inputs = normed.detach();
    auto &memory = mem->data;
    // Updates M[rows] = normalize(m * M[rows] + (1 - m) * inputs[samples]); rows are distinct.
    auto update_rows = [&](const torch::Tensor &samples, const torch::Tensor &rows) {
      auto mixed = memory.index_select(0, rows).mul_(momentum).add_(inputs.index_select(0, samples), 1.0 - momentum);
      memory.index_copy_(0, rows, torch::nn::functional::normalize(mixed, torch::nn::functional::NormalizeFuncOptions().dim(1)));
    };
    if (update == 1) {
      // Every sample updates its row in batch order, as the reference's backward does. The k-th
      // samples of all labels touch distinct rows, so each round runs as one batched update with
      // the same result as the sequential loop. The rounds' indices go to the device in one copy.
      std::unordered_map<int64_t, size_t> seen;
      std::vector<std::vector<int64_t>> round_samples, round_rows;
      for (int64_t i = 0; i < n; i++) {
        size_t round = seen[labels[i]]++;
        if (round_samples.size() <= round) {
          round_samples.resize(round + 1);
          round_rows.resize(round + 1);
        }
        round_samples[round].push_back(i);
        round_rows[round].push_back(labels[i]);
      }
      std::vector<int64_t> packed;  // samples of every round, then rows of every round
      for (auto &samples : round_samples) packed.insert(packed.end(), samples.begin(), samples.end());
      for (auto &rows : round_rows) packed.insert(packed.end(), rows.begin(), rows.end());
      auto indices = torch::tensor(packed, torch::TensorOptions().dtype(torch::kLong)).to(m->device);
      int64_t offset = 0;
      for (auto &samples : round_samples) {
        int64_t count = static_cast<int64_t>(samples.size());
        update_rows(indices.narrow(0, offset, count), indices.narrow(0, n + offset, count));
        offset += count;
      }
    } else if (update == 2) {
      // One update per label, with the member least similar to its memory entry.
      auto sims = (inputs * memory.index_select(0, target)).sum(1).to(torch::kCPU);
      auto sim = sims.accessor<float, 1>();
      std::unordered_map<int64_t, int64_t> hardest;
      std::vector<int64_t> order;
      for (int64_t i = 0; i < n; i++) {
        auto found = hardest.find(labels[i]);
        if (found == hardest.end()) {
          hardest[labels[i]] = i;
          order.push_back(labels[i]);
        } else if (sim[i] < sim[found->second]) {
          found->second = i;
        }
      }
      std::vector<int64_t> packed;  // samples, then their rows
      for (auto y : order) packed.push_back(hardest[y]);
      packed.insert(packed.end(), order.begin(), order.end());
      auto indices = torch::tensor(packed, torch::TensorOptions().dtype(torch::kLong)).to(m->device);
      auto count = static_cast<int64_t>(order.size());
      update_rows(indices.narrow(0, 0, count), indices.narrow(0, count, count));
    }
    // Read last: reading the loss waits for the device, so the update's kernels queue first.
    *loss_out = loss.item<double>();
  });
}

}  // extern "C"
