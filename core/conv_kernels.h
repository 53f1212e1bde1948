#pragma once
// Raw (not recorded) conv / pool / batch-norm ops: validate, allocate outputs on the input's device, call the
// backend. The differentiable versions are in autograd/ops.h.
#include <array>
#include <utility>

#include "core/backend.h"

namespace mixtape::kernels {

/// (N, OC, OH, OW) of conv(x (N, C, H, W), w (OC, C, KH, KW)); throws naming the mismatch.
Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dParams& p);
/// x and w share a dtype; b (OC) is undefined or of that dtype too.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p);
/// Gradient with respect to the input of shape x_shape.
Tensor conv2d_backward_data(const Tensor& gy, const Tensor& w, const Shape& x_shape, const Conv2dParams& p);
/// {gw, gb}; each only when asked for (else undefined).
std::pair<Tensor, Tensor> conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Shape& w_shape, bool need_w,
                                                 bool need_b, const Conv2dParams& p);

/// (N, C, OH, OW) of a pooling window over x (N, C, H, W).
Shape pool2d_output_shape(const Shape& x, const Pool2dParams& p, const char* op);
/// {out, indices (i64)}.
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Shape& x_shape);
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor avg_pool2d_backward(const Tensor& gy, const Shape& x_shape, const Pool2dParams& p);

/// The float dtype batch-norm statistics and parameters use for an input dtype (f64 for f64, f32 otherwise).
DType batch_norm_param_dtype(DType x);
/// A batch-norm input (N, C, ...) viewed as (N, C, L), L the product of the trailing dimensions.
struct NormDims {
  int64_t n, c, l;
};
inline NormDims norm_dims(const Tensor& x) {
  int64_t l = 1;
  for (int i = 2; i < x.dim(); ++i) l *= x.size(i);
  return {x.size(0), x.size(1), l};
}
/// {out, save_mean, save_invstd}; x (N, C, ...) with parameters (C) of batch_norm_param_dtype(x) or undefined.
std::array<Tensor, 3> batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                                 const Tensor& weight, const Tensor& bias, const BatchNormParams& p);
/// {gx, gweight, gbias}, each only when asked for.
std::array<Tensor, 3> batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight,
                                          const Tensor& save_mean, const Tensor& save_invstd,
                                          const std::array<bool, 3>& needs, const BatchNormParams& p);

}  // namespace mixtape::kernels
