#include "nn/functional.h"

#include "core/kernels.h"

namespace mixtape::nn {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MIXTAPE_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, zeros(Shape{}, x.dtype(), x.device()));
  const Tensor u = rand(x.shape(), x.dtype(), x.device(), gen);
  // keep = (u >= p) / (1 - p), a constant for autograd
  const Tensor keep = kernels::cast(kernels::binary(BinaryOp::ge, u, scalar_tensor(p, x.dtype(), x.device())), x.dtype());
  return mul(x, kernels::binary(BinaryOp::mul, keep, scalar_tensor(1.0 / (1.0 - p), x.dtype(), x.device())));
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  MIXTAPE_CHECK(x.dim() >= 1, "layer_norm: expected at least 1 dimension, got a scalar");
  const int64_t d = x.size(-1);
  if (weight.defined())
    MIXTAPE_CHECK(weight.shape() == Shape{d}, "layer_norm: weight ", weight.shape().to_string(), " does not match (", d, ",)");
  if (bias.defined())
    MIXTAPE_CHECK(bias.shape() == Shape{d}, "layer_norm: bias ", bias.shape().to_string(), " does not match (", d, ",)");
  const Tensor mu = mean(x, {-1}, true);
  const Tensor xc = x - mu;
  const Tensor var = mean(xc * xc, {-1}, true);
  Tensor y = xc * rsqrt(var + eps);
  if (weight.defined()) y = y * weight;
  if (bias.defined()) y = y + bias;
  return y;
}

Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction) {
  MIXTAPE_CHECK(a.shape() == b.shape(), "mse_loss: input ", a.shape().to_string(), " and target ", b.shape().to_string(),
                " differ in shape");
  const Tensor d = a - b;
  const Tensor sq = d * d;
  switch (reduction) {
    case Reduction::none: return sq;
    case Reduction::sum: return sum(sq);
    case Reduction::mean: return mean(sq);
  }
  return sq;
}

Tensor flatten(const Tensor& x) {
  MIXTAPE_CHECK(x.dim() >= 1, "flatten: expected at least 1 dimension, got a scalar");
  int64_t rest = 1;
  for (int i = 1; i < x.dim(); ++i) rest *= x.size(i);
  return reshape(x, Shape{x.size(0), rest});
}

}  // namespace mixtape::nn
