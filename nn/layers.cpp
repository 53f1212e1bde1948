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

}  // namespace mixtape::nn
