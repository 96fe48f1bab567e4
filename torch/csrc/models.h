// Re-id backbones in torch::nn. Module and parameter names follow torchvision's ResNet and
// torchreid's OSNet exactly, so their state dicts load by name.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace reid {

namespace nn = torch::nn;

// Common interface of every backbone: forward returns the feature vector (B x dim) before L2
// normalisation.
struct NetImpl : nn::Module {
  int64_t dim = 0;
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

inline void init_weights(nn::Module &root, double linear_std) {
  torch::NoGradGuard no_grad;
  for (auto &module : root.modules(/*include_self=*/false)) {
    if (auto *conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) nn::init::zeros_(conv->bias);
    } else if (auto *bn2 = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn2->weight);
      nn::init::zeros_(bn2->bias);
    } else if (auto *bn1 = module->as<nn::BatchNorm1d>()) {
      nn::init::ones_(bn1->weight);
      nn::init::zeros_(bn1->bias);
    } else if (auto *linear = module->as<nn::Linear>()) {
      nn::init::normal_(linear->weight, 0.0, linear_std);
      if (linear->bias.defined()) nn::init::zeros_(linear->bias);
    }
  }
}

// ---------------------------------------------------------------- ResNet-50 (torchvision v1.5)

struct BottleneckImpl : nn::Module {
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  nn::Sequential downsample{nullptr};

  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, bool down) {
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(inplanes, planes, 1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    conv2 = register_module(
        "conv2",
        nn::Conv2d(nn::Conv2dOptions(planes, planes, 3).stride(stride).padding(1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    conv3 = register_module("conv3", nn::Conv2d(nn::Conv2dOptions(planes, planes * 4, 1).bias(false)));
    bn3 = register_module("bn3", nn::BatchNorm2d(planes * 4));
    if (down) {
      downsample = register_module(
          "downsample",
          nn::Sequential(
              nn::Conv2d(nn::Conv2dOptions(inplanes, planes * 4, 1).stride(stride).bias(false)),
              nn::BatchNorm2d(planes * 4)));
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    auto out = (bn1(conv1(x))).relu_();
    out = (bn2(conv2(out))).relu_();
    out = bn3(conv3(out));
    auto identity = downsample ? downsample->forward(x) : x;
    // In place, as torchvision does: an out-of-place sum allocates and writes one more activation
    // per block (about 0.5 GB per batch of 32 at 256x128, a few percent of the forward on a CPU).
    return out.add_(identity).relu_();
  }
};
TORCH_MODULE(Bottleneck);

// Generalised mean pooling with a learnable exponent, as in Cluster Contrast (parameter "gap.p").
struct GeMImpl : nn::Module {
  torch::Tensor p;
  explicit GeMImpl(double init) { p = register_parameter("p", torch::full({1}, init)); }
  torch::Tensor forward(torch::Tensor x) {
    auto pf = p.to(torch::kFloat);
    return x.to(torch::kFloat).clamp_min(1e-6).pow(pf).mean({2, 3}).pow(1.0 / pf);
  }
};
TORCH_MODULE(GeM);

struct ResNet50Impl : NetImpl {
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  GeM gap{nullptr};
  nn::BatchNorm1d feat_bn{nullptr};
  int64_t inplanes = 64;

  ResNet50Impl(int64_t last_stride, bool gem, bool neck) {
    dim = 2048;
    conv1 = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(64));
    layer1 = register_module("layer1", make_layer(64, 3, 1));
    layer2 = register_module("layer2", make_layer(128, 4, 2));
    layer3 = register_module("layer3", make_layer(256, 6, 2));
    layer4 = register_module("layer4", make_layer(512, 3, last_stride));
    if (gem) gap = register_module("gap", GeM(3.0));
    if (neck) feat_bn = register_module("feat_bn", nn::BatchNorm1d(2048));
    init_weights(*this, 0.001);
    // The neck's bias stays at zero, as in the reference Cluster Contrast model.
    if (neck) feat_bn->bias.set_requires_grad(false);
  }

  nn::Sequential make_layer(int64_t planes, int64_t blocks, int64_t stride) {
    nn::Sequential seq;
    bool down = stride != 1 || inplanes != planes * 4;
    seq->push_back(Bottleneck(inplanes, planes, stride, down));
    inplanes = planes * 4;
    for (int64_t i = 1; i < blocks; i++) seq->push_back(Bottleneck(inplanes, planes, 1, false));
    return seq;
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = (bn1(conv1(x))).relu_();
    x = torch::max_pool2d(x, 3, 2, 1);
    x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
    torch::Tensor v = gap ? gap(x) : x.mean({2, 3});
    v = v.to(torch::kFloat);
    if (feat_bn) v = feat_bn(v);
    return v;
  }
};

// ---------------------------------------------------------------- OSNet (torchreid layout)

struct ConvBNImpl : nn::Module {  // ConvLayer / Conv1x1 / Conv1x1Linear: conv + bn (+ relu)
  nn::Conv2d conv{nullptr};
  nn::BatchNorm2d bn{nullptr};
  bool relu;
  ConvBNImpl(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool relu_)
      : relu(relu_) {
    conv = register_module(
        "conv", nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false)));
    bn = register_module("bn", nn::BatchNorm2d(out));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = bn(conv(x));
    return relu ? (x).relu_() : x;
  }
};
TORCH_MODULE(ConvBN);

struct LightConv3x3Impl : nn::Module {  // 1x1 linear + depthwise 3x3, bn, relu
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn{nullptr};
  LightConv3x3Impl(int64_t in, int64_t out) {
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)));
    conv2 = register_module(
        "conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).groups(out).bias(false)));
    bn = register_module("bn", nn::BatchNorm2d(out));
  }
  torch::Tensor forward(torch::Tensor x) { return (bn(conv2(conv1(x)))).relu_(); }
};
TORCH_MODULE(LightConv3x3);

struct ChannelGateImpl : nn::Module {
  nn::Conv2d fc1{nullptr}, fc2{nullptr};
  explicit ChannelGateImpl(int64_t channels) {
    fc1 = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, channels / 16, 1).bias(true)));
    fc2 = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(channels / 16, channels, 1).bias(true)));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto g = x.mean({2, 3}, /*keepdim=*/true);  // = adaptive_avg_pool2d(x, 1), deterministic backward
    g = torch::sigmoid(fc2((fc1(g)).relu_()));
    return x * g;
  }
};
TORCH_MODULE(ChannelGate);

inline nn::Sequential light_stack(int64_t channels, int depth) {
  nn::Sequential seq;
  for (int i = 0; i < depth; i++) seq->push_back(LightConv3x3(channels, channels));
  return seq;
}

struct OSBlockImpl : nn::Module {
  ConvBN conv1{nullptr}, conv3{nullptr}, downsample{nullptr};
  LightConv3x3 conv2a{nullptr};
  nn::Sequential conv2b{nullptr}, conv2c{nullptr}, conv2d{nullptr};
  ChannelGate gate{nullptr};
  OSBlockImpl(int64_t in, int64_t out) {
    int64_t mid = out / 4;
    conv1 = register_module("conv1", ConvBN(in, mid, 1, 1, 0, true));
    conv2a = register_module("conv2a", LightConv3x3(mid, mid));
    conv2b = register_module("conv2b", light_stack(mid, 2));
    conv2c = register_module("conv2c", light_stack(mid, 3));
    conv2d = register_module("conv2d", light_stack(mid, 4));
    gate = register_module("gate", ChannelGate(mid));
    conv3 = register_module("conv3", ConvBN(mid, out, 1, 1, 0, false));
    if (in != out) downsample = register_module("downsample", ConvBN(in, out, 1, 1, 0, false));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto x1 = conv1(x);
    auto x2 = gate(conv2a(x1)) + gate(conv2b->forward(x1)) + gate(conv2c->forward(x1)) +
              gate(conv2d->forward(x1));
    auto x3 = conv3(x2);
    auto identity = downsample ? downsample(x) : x;
    return (x3 + identity).relu_();
  }
};
TORCH_MODULE(OSBlock);

// The spatial reduction after a stage: torchreid's nn.Sequential(Conv1x1, AvgPool2d), whose
// children are named "0" and "1".
struct TransitionImpl : nn::Module {
  ConvBN conv{nullptr};
  explicit TransitionImpl(int64_t channels) {
    conv = register_module("0", ConvBN(channels, channels, 1, 1, 0, true));
  }
  torch::Tensor forward(torch::Tensor x) { return torch::avg_pool2d(conv(x), 2, 2); }
};
TORCH_MODULE(Transition);

struct OSNetImpl : NetImpl {
  ConvBN conv1{nullptr}, conv5{nullptr};
  nn::Sequential conv2{nullptr}, conv3{nullptr}, conv4{nullptr}, fc{nullptr};

  OSNetImpl(const std::vector<int64_t> &channels, int64_t feature_dim) {
    dim = feature_dim;
    conv1 = register_module("conv1", ConvBN(3, channels[0], 7, 2, 3, true));
    conv2 = register_module("conv2", stage(channels[0], channels[1], true));
    conv3 = register_module("conv3", stage(channels[1], channels[2], true));
    conv4 = register_module("conv4", stage(channels[2], channels[3], false));
    conv5 = register_module("conv5", ConvBN(channels[3], channels[3], 1, 1, 0, true));
    fc = register_module("fc", nn::Sequential(nn::Linear(channels[3], feature_dim),
                                              nn::BatchNorm1d(feature_dim), nn::ReLU()));
    init_weights(*this, 0.01);
  }

  static nn::Sequential stage(int64_t in, int64_t out, bool reduce) {
    nn::Sequential seq;
    seq->push_back(OSBlock(in, out));
    seq->push_back(OSBlock(out, out));
    if (reduce) seq->push_back(Transition(out));
    return seq;
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = conv1(x);
    x = torch::max_pool2d(x, 3, 2, 1);
    x = conv4->forward(conv3->forward(conv2->forward(x)));
    x = conv5(x);
    auto v = x.mean({2, 3}).to(torch::kFloat);
    return fc->forward(v);
  }
};

inline std::shared_ptr<NetImpl> make_net(const std::string &arch, int64_t last_stride, bool gem,
                                         bool neck) {
  if (arch == "resnet50") return std::make_shared<ResNet50Impl>(last_stride, gem, neck);
  if (arch == "osnet_x0_25") return std::make_shared<OSNetImpl>(std::vector<int64_t>{16, 64, 96, 128}, 512);
  if (arch == "osnet_x1_0") return std::make_shared<OSNetImpl>(std::vector<int64_t>{64, 256, 384, 512}, 512);
  throw std::invalid_argument("unknown architecture: " + arch);
}

}  // namespace reid
