#include "nn/layers.h"

#include <cmath>

namespace mixtape::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator* gen) {
  MIXTAPE_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in=", in_features,
                " out=", out_features);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight = register_parameter("weight", rand(Shape{out_features, in_features}, DType::f32, Device::cpu(), gen, -bound, bound));
  if (has_bias) bias = register_parameter("bias", rand(Shape{out_features}, DType::f32, Device::cpu(), gen, -bound, bound));
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Dropout::Dropout(double p) : p_(p) {
  MIXTAPE_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability must be in [0, 1], got ", p);
}

LayerNorm::LayerNorm(int64_t features, double eps, bool affine) : eps_(eps) {
  MIXTAPE_CHECK(features > 0, "LayerNorm: features must be positive, got ", features);
  if (affine) {
    weight = register_parameter("weight", ones(Shape{features}));
    bias = register_parameter("bias", zeros(Shape{features}));
  }
}

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) {
  for (auto& m : modules) add(std::move(m));
}

Sequential& Sequential::add(std::shared_ptr<Module> module) {
  register_module(std::to_string(children().size()), std::move(module));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& [_, m] : children()) y = m->forward(y);
  return y;
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
               int64_t dilation, bool has_bias, Generator* gen)
    : stride_(stride), padding_(padding), dilation_(dilation) {
  MIXTAPE_CHECK(in_channels > 0 && out_channels > 0 && kernel > 0, "Conv2d: channels and kernel must be positive, got in=",
                in_channels, " out=", out_channels, " kernel=", kernel);
  MIXTAPE_CHECK(stride > 0 && dilation > 0 && padding >= 0, "Conv2d: stride and dilation must be positive and padding "
                "non-negative, got stride=", stride, " padding=", padding, " dilation=", dilation);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * kernel * kernel));
  weight = register_parameter(
      "weight", rand(Shape{out_channels, in_channels, kernel, kernel}, DType::f32, Device::cpu(), gen, -bound, bound));
  if (has_bias) bias = register_parameter("bias", rand(Shape{out_channels}, DType::f32, Device::cpu(), gen, -bound, bound));
}

BatchNorm::BatchNorm(int64_t features, double eps, double momentum, bool affine, int expected_dim, const char* name)
    : eps_(eps), momentum_(momentum), expected_dim_(expected_dim), name_(name) {
  MIXTAPE_CHECK(features > 0, name, ": features must be positive, got ", features);
  if (affine) {
    weight = register_parameter("weight", ones(Shape{features}));
    bias = register_parameter("bias", zeros(Shape{features}));
  }
  running_mean = register_buffer("running_mean", zeros(Shape{features}));
  running_var = register_buffer("running_var", ones(Shape{features}));
}

Tensor BatchNorm::forward(const Tensor& x) {
  const bool ok = expected_dim_ == 4 ? x.dim() == 4 : (x.dim() == 2 || x.dim() == 3);
  MIXTAPE_CHECK(ok, name_, ": expected an input of shape ", expected_dim_ == 4 ? "(N, C, H, W)" : "(N, C) or (N, C, L)",
                ", got ", x.shape().to_string());
  return batch_norm(x, running_mean, running_var, weight, bias, is_training(), momentum_, eps_);
}

}  // namespace mixtape::nn
