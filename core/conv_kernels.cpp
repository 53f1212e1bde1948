#include "core/conv_kernels.h"

#include <algorithm>

#include "core/kernels.h"

namespace mixtape::kernels {

namespace {
void check_nchw(const Tensor& t, const char* op, const char* arg) {
  MIXTAPE_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
  MIXTAPE_CHECK(t.dim() == 4, op, ": expected '", arg, "' of shape (N, C, H, W), got ", t.shape().to_string());
  MIXTAPE_CHECK(is_floating(t.dtype()), op, ": expected a floating-point '", arg, "', got ", dtype_name(t.dtype()));
}
}  // namespace

Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dParams& p) {
  MIXTAPE_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.dil_h > 0 && p.dil_w > 0 && p.pad_h >= 0 && p.pad_w >= 0,
                "conv2d: stride and dilation must be positive and padding non-negative");
  MIXTAPE_CHECK(x[1] == w[1], "conv2d: input has ", x[1], " channels but the weight ", w.to_string(), " expects ", w[1],
                " (groups = 1)");
  const int64_t eh = p.dil_h * (w[2] - 1) + 1, ew = p.dil_w * (w[3] - 1) + 1;
  const int64_t oh = (x[2] + 2 * p.pad_h - eh) / p.stride_h + 1, ow = (x[3] + 2 * p.pad_w - ew) / p.stride_w + 1;
  MIXTAPE_CHECK(x[2] + 2 * p.pad_h >= eh && x[3] + 2 * p.pad_w >= ew && oh > 0 && ow > 0, "conv2d: kernel ",
                w.to_string(), " (dilated ", eh, "x", ew, ") is larger than the padded input ", x.to_string());
  return Shape{x[0], w[0], oh, ow};
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  check_nchw(x, "conv2d", "input");
  check_nchw(w, "conv2d", "weight");
  check_same_device(x, w, "conv2d");
  check_same_dtype(x, w, "conv2d");
  if (b.defined()) {
    MIXTAPE_CHECK(b.shape() == Shape{w.size(0)}, "conv2d: expected a bias of shape (", w.size(0), ",), got ",
                  b.shape().to_string());
    check_same_dtype(x, b, "conv2d");
    check_same_device(x, b, "conv2d");
  }
  Tensor out = Tensor::empty(conv2d_output_shape(x.shape(), w.shape(), p), x.dtype(), x.device());
  backend_for(x.device()).conv2d(x, w, b, out, p);
  count_matmul_flops(2 * out.numel() * w.size(1) * w.size(2) * w.size(3));
  return out;
}

Tensor conv2d_backward_data(const Tensor& gy, const Tensor& w, const Shape& x_shape, const Conv2dParams& p) {
  check_same_dtype(gy, w, "conv2d backward");
  Tensor gx = Tensor::empty(x_shape, gy.dtype(), gy.device());
  backend_for(gy.device()).conv2d_backward_data(gy, w, gx, p);
  count_matmul_flops(2 * gy.numel() * w.size(1) * w.size(2) * w.size(3));
  return gx;
}

std::pair<Tensor, Tensor> conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Shape& w_shape, bool need_w,
                                                 bool need_b, const Conv2dParams& p) {
  Tensor gw = need_w ? Tensor::empty(w_shape, gy.dtype(), gy.device()) : Tensor();
  Tensor gb = need_b ? Tensor::empty(Shape{w_shape[0]}, gy.dtype(), gy.device()) : Tensor();
  if (need_w) {
    check_same_dtype(gy, x, "conv2d backward");
    backend_for(gy.device()).conv2d_backward_filter(gy, x, gw, gb, p);
    count_matmul_flops(2 * gy.numel() * w_shape[1] * w_shape[2] * w_shape[3]);
  } else if (need_b) {
    gb = reduce(ReduceOp::sum, gy, {0, 2, 3}, false);  // the bias gradient alone needs no input
  }
  return {gw, gb};
}

Shape pool2d_output_shape(const Shape& x, const Pool2dParams& p, const char* op) {
  MIXTAPE_CHECK(p.kernel_h > 0 && p.kernel_w > 0 && p.stride_h > 0 && p.stride_w > 0, op,
                ": kernel and stride must be positive");
  MIXTAPE_CHECK(p.pad_h >= 0 && p.pad_w >= 0 && 2 * p.pad_h <= p.kernel_h && 2 * p.pad_w <= p.kernel_w, op,
                ": padding must be at most half the kernel size (as PyTorch), got padding ", p.pad_h, "x", p.pad_w,
                " for kernel ", p.kernel_h, "x", p.kernel_w);
  const int64_t oh = (x[2] + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1,
                ow = (x[3] + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
  MIXTAPE_CHECK(x[2] + 2 * p.pad_h >= p.kernel_h && x[3] + 2 * p.pad_w >= p.kernel_w && oh > 0 && ow > 0, op,
                ": kernel ", p.kernel_h, "x", p.kernel_w, " is larger than the padded input ", x.to_string());
  return Shape{x[0], x[1], oh, ow};
}

std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dParams& p) {
  check_nchw(x, "max_pool2d", "input");
  const Shape s = pool2d_output_shape(x.shape(), p, "max_pool2d");
  Tensor out = Tensor::empty(s, x.dtype(), x.device()), idx = Tensor::empty(s, DType::i64, x.device());
  backend_for(x.device()).max_pool2d(x, out, idx, p);
  return {out, idx};
}

Tensor max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Shape& x_shape) {
  Tensor gx = Tensor::empty(x_shape, gy.dtype(), gy.device());
  backend_for(gy.device()).max_pool2d_backward(gy, indices, gx);
  return gx;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  check_nchw(x, "avg_pool2d", "input");
  Tensor out = Tensor::empty(pool2d_output_shape(x.shape(), p, "avg_pool2d"), x.dtype(), x.device());
  backend_for(x.device()).avg_pool2d(x, out, p);
  return out;
}

Tensor avg_pool2d_backward(const Tensor& gy, const Shape& x_shape, const Pool2dParams& p) {
  Tensor gx = Tensor::empty(x_shape, gy.dtype(), gy.device());
  backend_for(gy.device()).avg_pool2d_backward(gy, gx, p);
  return gx;
}

DType batch_norm_param_dtype(DType x) { return x == DType::f64 ? DType::f64 : DType::f32; }

std::array<Tensor, 3> batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                                 const Tensor& weight, const Tensor& bias, const BatchNormParams& p) {
  MIXTAPE_CHECK(x.defined() && x.dim() >= 2, "batch_norm: expected an input of shape (N, C) or (N, C, ...), got ",
                x.defined() ? x.shape().to_string() : "undefined");
  MIXTAPE_CHECK(is_floating(x.dtype()), "batch_norm: expected a floating-point input, got ", dtype_name(x.dtype()));
  const int64_t c = x.size(1);
  const DType pd = batch_norm_param_dtype(x.dtype());
  const std::pair<const Tensor*, const char*> params[] = {
      {&running_mean, "running_mean"}, {&running_var, "running_var"}, {&weight, "weight"}, {&bias, "bias"}};
  for (const auto& [t, name] : params) {
    if (!t->defined()) continue;
    MIXTAPE_CHECK(t->shape() == Shape{c}, "batch_norm: expected ", name, " of shape (", c, ",) for an input ",
                  x.shape().to_string(), ", got ", t->shape().to_string());
    MIXTAPE_CHECK(t->dtype() == pd, "batch_norm: ", name, " must be ", dtype_name(pd), " for a ", dtype_name(x.dtype()),
                  " input (statistics and affine parameters stay float32), got ", dtype_name(t->dtype()));
    check_same_device(x, *t, "batch_norm");
  }
  if (!p.training)
    MIXTAPE_CHECK(running_mean.defined() && running_var.defined(),
                  "batch_norm: evaluation mode needs running_mean and running_var");
  if (p.training) {
    int64_t per_channel = x.numel() / std::max<int64_t>(c, 1);
    MIXTAPE_CHECK(per_channel > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
                  x.shape().to_string());
  }
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty(Shape{c}, pd, x.device()), invstd = Tensor::empty(Shape{c}, pd, x.device());
  backend_for(x.device()).batch_norm(x, running_mean, running_var, weight, bias, out, mean, invstd, p);
  return {out, mean, invstd};
}

std::array<Tensor, 3> batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight,
                                          const Tensor& save_mean, const Tensor& save_invstd,
                                          const std::array<bool, 3>& needs, const BatchNormParams& p) {
  check_same_dtype(gy, x, "batch_norm backward");
  const int64_t c = x.size(1);
  const DType pd = batch_norm_param_dtype(x.dtype());
  Tensor gx = needs[0] ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
  Tensor gw = needs[1] ? Tensor::empty(Shape{c}, pd, x.device()) : Tensor();
  Tensor gb = needs[2] ? Tensor::empty(Shape{c}, pd, x.device()) : Tensor();
  backend_for(x.device()).batch_norm_backward(gy, x, weight, save_mean, save_invstd, gx, gw, gb, p);
  return {gx, gw, gb};
}

}  // namespace mixtape::kernels
