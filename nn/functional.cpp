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

Tensor flatten(const Tensor& x) {
  MIXTAPE_CHECK(x.dim() >= 1, "flatten: expected at least 1 dimension, got a scalar");
  int64_t rest = 1;
  for (int i = 1; i < x.dim(); ++i) rest *= x.size(i);
  return reshape(x, Shape{x.size(0), rest});
}

}  // namespace mixtape::nn
