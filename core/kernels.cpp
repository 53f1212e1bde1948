#include "core/kernels.h"

#include <atomic>
#include <algorithm>

namespace mixtape::kernels {

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  MIXTAPE_CHECK(a.device() == b.device(), op, ": tensors are on different devices (", a.device().to_string(), " and ",
                b.device().to_string(), "); move one with .to(device)");
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  MIXTAPE_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch (", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
                "); cast one with .to(dtype) or run under amp::Autocast");
}

namespace {
void check_defined(const Tensor& t, const char* op, const char* arg) {
  MIXTAPE_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}
void check_floating(const Tensor& t, const char* op) {
  MIXTAPE_CHECK(is_floating(t.dtype()), op, ": expected a floating-point tensor (f32, f16, bf16, f64), got ",
                dtype_name(t.dtype()));
}
}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  check_defined(x, op_name(op), "x");
  check_floating(x, op_name(op));
  Tensor out = empty_like(x);
  backend_for(x.device()).unary(op, x, out);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = op_name(op);
  check_defined(a, name, "a");
  check_defined(b, name, "b");
  check_same_device(a, b, name);
  check_same_dtype(a, b, name);
  if (is_comparison(op) || op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul)
    MIXTAPE_CHECK(a.dtype() != DType::u8, name, ": u8 tensors are not supported; cast to a floating dtype first");
  else
    check_floating(a, name);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, is_comparison(op) ? DType::u8 : a.dtype(), a.device());
  backend_for(a.device()).binary(op, a, b, out);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined(cond, "where", "cond");
  check_defined(a, "where", "a");
  check_defined(b, "where", "b");
  MIXTAPE_CHECK(cond.dtype() == DType::u8, "where: the condition must be a u8 tensor (from a comparison), got ",
                dtype_name(cond.dtype()));
  check_same_device(cond, a, "where");
  check_same_device(a, b, "where");
  check_same_dtype(a, b, "where");
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_for(a.device()).where(cond, a, b, out);
  return out;
}

Tensor cast(const Tensor& x, DType dtype) {
  check_defined(x, "cast", "x");
  if (x.dtype() == dtype) return x;
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  backend_for(x.device()).cast(x, out);
  return out;
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  check_defined(x, "broadcast_to", "x");
  if (x.shape() == shape) return x;
  MIXTAPE_CHECK(broadcast_shapes(x.shape(), shape, "broadcast_to") == shape, "broadcast_to: shape ",
                x.shape().to_string(), " cannot be broadcast to ", shape.to_string());
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (is_floating(x.dtype())) {
    backend_for(x.device()).unary(UnaryOp::identity, x, out);
  } else {  // integer tensors: where(1, x, x) would need a cond; go through a float copy instead
    Tensor xf = cast(x, DType::f64), of = Tensor::empty(shape, DType::f64, x.device());
    backend_for(x.device()).unary(UnaryOp::identity, xf, of);
    backend_for(x.device()).cast(of, out);
  }
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_defined(x, "sum_to", "x");
  if (x.shape() == shape) return x;
  const int lead = x.dim() - shape.size();
  MIXTAPE_CHECK(lead >= 0, "sum_to: cannot reduce shape ", x.shape().to_string(), " to ", shape.to_string());
  std::vector<int64_t> axes;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      axes.push_back(i);
    } else {
      const int64_t want = shape[i - lead];
      MIXTAPE_CHECK(want == x.shape()[i] || want == 1, "sum_to: cannot reduce shape ", x.shape().to_string(), " to ",
                    shape.to_string());
      if (want == 1 && x.shape()[i] != 1) axes.push_back(i);
    }
  }
  Tensor r = axes.empty() ? x : reduce(ReduceOp::sum, x, axes, true);
  return view(r, shape);
}

Tensor view(const Tensor& x, const Shape& shape) {
  check_defined(x, "reshape", "x");
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MIXTAPE_CHECK(infer < 0, "reshape: only one dimension may be -1 in ", shape.to_string());
      infer = i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MIXTAPE_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape a tensor of shape ", x.shape().to_string(),
                  " (", x.numel(), " elements) to ", shape.to_string());
    s[infer] = x.numel() / known;
  }
  MIXTAPE_CHECK(s.numel() == x.numel(), "reshape: cannot reshape a tensor of shape ", x.shape().to_string(), " (",
                x.numel(), " elements) to ", shape.to_string(), " (", s.numel(), " elements)");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.impl()->storage;
  impl->offset_bytes = x.impl()->offset_bytes;
  impl->shape = s;
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

namespace {
/// Normalised, sorted, de-duplicated axes (empty input = every axis).
std::vector<int> normalise_axes(const Shape& shape, const std::vector<int64_t>& axes, const char* op) {
  std::vector<int> out;
  if (axes.empty()) {
    for (int i = 0; i < shape.size(); ++i) out.push_back(i);
    return out;
  }
  for (int64_t a : axes) out.push_back(shape.axis(a, op));
  std::sort(out.begin(), out.end());
  MIXTAPE_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op, ": an axis is repeated");
  return out;
}

/// Reduces one axis keeping it as size 1.
Tensor reduce_axis(ReduceOp op, const Tensor& x, int axis) {
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int i = axis + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  const int64_t n = x.shape()[axis];
  MIXTAPE_CHECK(n > 0 || op == ReduceOp::sum || op == ReduceOp::mean, op_name(op), ": cannot reduce an empty axis ",
                axis, " of shape ", x.shape().to_string());
  Shape s = x.shape();
  s[axis] = 1;
  Tensor out = Tensor::empty(s, op == ReduceOp::argmax ? DType::i64 : x.dtype(), x.device());
  backend_for(x.device()).reduce(op, x, outer, n, inner, out);
  return out;
}
}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  const char* name = op_name(op);
  check_defined(x, name, "x");
  check_floating(x, name);
  if (op == ReduceOp::argmax) {
    MIXTAPE_CHECK(axes.size() == 1, "argmax: expected exactly one axis, got ", axes.size());
    return argmax(x, axes[0], keepdim);
  }
  const std::vector<int> ax = normalise_axes(x.shape(), axes, name);
  Tensor r = x;
  if (x.dim() == 0) {
    r = reduce_axis(op, view(x, Shape{1}), 0);
  } else if (!ax.empty() && ax.back() - ax.front() + 1 == static_cast<int>(ax.size())) {
    // Contiguous axes: one pass over an (outer, n, inner) view.
    Shape merged;
    for (int i = 0; i < ax.front(); ++i) merged.push_back(x.shape()[i]);
    int64_t n = 1;
    for (int a : ax) n *= x.shape()[a];
    merged.push_back(n);
    for (int i = ax.back() + 1; i < x.dim(); ++i) merged.push_back(x.shape()[i]);
    r = reduce_axis(op, view(x, merged), ax.front());
  } else {
    // Scattered axes: one axis at a time (exact for max and equal-count means). 16-bit inputs go through
    // float32 so the partial results are not rounded to the storage type between passes.
    const bool widen = x.dtype() == DType::f16 || x.dtype() == DType::bf16;
    if (widen) r = cast(r, DType::f32);
    for (auto it = ax.rbegin(); it != ax.rend(); ++it) r = reduce_axis(op, r, *it);
    if (widen) r = cast(r, x.dtype());
  }
  Shape out;
  for (int i = 0; i < x.dim(); ++i) {
    const bool reduced = std::find(ax.begin(), ax.end(), i) != ax.end();
    if (!reduced) out.push_back(x.shape()[i]);
    else if (keepdim) out.push_back(1);
  }
  return view(r, out);
}

Tensor argmax(const Tensor& x, int64_t axis, bool keepdim) {
  check_defined(x, "argmax", "x");
  check_floating(x, "argmax");
  const Tensor xv = x.dim() == 0 ? view(x, Shape{1}) : x;
  const int a = xv.shape().axis(axis, "argmax");
  Tensor r = reduce_axis(ReduceOp::argmax, xv, a);
  if (keepdim) return x.dim() == 0 ? view(r, Shape{}) : r;
  Shape out;
  for (int i = 0; i < x.dim(); ++i)
    if (i != a) out.push_back(x.shape()[i]);
  return view(r, out);
}

namespace {
/// GemmArgs of matmul(a, b) with a fresh output (shapes checked as matmul documents).
GemmArgs matmul_args(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const char* op) {
  check_defined(a, op, "a");
  check_defined(b, op, "b");
  check_same_device(a, b, op);
  check_same_dtype(a, b, op);
  check_floating(a, op);
  MIXTAPE_CHECK(a.dim() >= 2 && b.dim() >= 2, op, ": expected tensors with at least 2 dimensions, got a ",
                a.shape().to_string(), " and b ", b.shape().to_string());
  const int64_t m = trans_a ? a.size(-1) : a.size(-2), k = trans_a ? a.size(-2) : a.size(-1);
  const int64_t kb = trans_b ? b.size(-1) : b.size(-2), n = trans_b ? b.size(-2) : b.size(-1);
  MIXTAPE_CHECK(k == kb, op, ": inner dimensions differ: a ", a.shape().to_string(), (trans_a ? "^T" : ""), " @ b ",
                b.shape().to_string(), (trans_b ? "^T" : ""), " (", k, " vs ", kb, ")");
  Shape batch_a, batch_b;
  for (int i = 0; i < a.dim() - 2; ++i) batch_a.push_back(a.shape()[i]);
  for (int i = 0; i < b.dim() - 2; ++i) batch_b.push_back(b.shape()[i]);
  MIXTAPE_CHECK(batch_a.size() == 0 || batch_b.size() == 0 || batch_a == batch_b, op, ": batch dimensions differ: a ",
                a.shape().to_string(), " and b ", b.shape().to_string());
  const Shape& batch = batch_a.size() ? batch_a : batch_b;
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  GemmArgs g;
  g.out = Tensor::empty(out_shape, a.dtype(), a.device());
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.b = b;
  if (batch_b.size() == 0 && !trans_a) {
    // (..., m, k) @ (k, n): fold the batch into m for one large GEMM.
    g.m = m * batch.numel();
    g.batch = 1;
  } else {
    g.batch = batch.numel();
    g.stride_a = batch_a.size() ? m * k : 0;
    g.stride_b = batch_b.size() ? k * n : 0;
    g.stride_out = m * n;
  }
  return g;
}

/// Checks one GEMM operand holds (batch - 1) * stride + rows * cols elements.
void check_operand(const Tensor& t, const char* arg, int64_t batch, int64_t stride, int64_t rows, int64_t cols) {
  MIXTAPE_CHECK(stride >= 0, "gemm: negative batch stride ", stride, " for '", arg, "'");
  const int64_t need = (batch - 1) * stride + rows * cols;
  MIXTAPE_CHECK(t.numel() >= need, "gemm: '", arg, "' ", t.shape().to_string(), " holds ", t.numel(),
                " elements but a (", rows, ", ", cols, ") matrix per batch entry with batch ", batch, " and stride ",
                stride, " needs ", need);
}
}  // namespace

namespace {
std::atomic<int64_t> g_matmul_flops{0};
}  // namespace

int64_t matmul_flops() { return g_matmul_flops.load(std::memory_order_relaxed); }
void count_matmul_flops(int64_t flops) { g_matmul_flops.fetch_add(flops, std::memory_order_relaxed); }

void gemm(const GemmArgs& g) {
  check_defined(g.a, "gemm", "a");
  check_defined(g.b, "gemm", "b");
  check_defined(g.out, "gemm", "out");
  check_same_device(g.a, g.b, "gemm");
  check_same_device(g.a, g.out, "gemm");
  check_same_dtype(g.a, g.b, "gemm");
  check_same_dtype(g.a, g.out, "gemm");
  check_floating(g.a, "gemm");
  MIXTAPE_CHECK(g.m >= 1 && g.n >= 1 && g.k >= 1 && g.batch >= 1, "gemm: expected m, n, k and batch >= 1, got m=", g.m,
                " n=", g.n, " k=", g.k, " batch=", g.batch);
  check_operand(g.a, "a", g.batch, g.stride_a, g.m, g.k);
  check_operand(g.b, "b", g.batch, g.stride_b, g.k, g.n);
  check_operand(g.out, "out", g.batch, g.stride_out, g.m, g.n);
  MIXTAPE_CHECK(g.batch == 1 || g.stride_out >= g.m * g.n, "gemm: output batch stride ", g.stride_out,
                " is smaller than one (", g.m, ", ", g.n, ") output: batch entries would overlap");
  if (g.epilogue != GemmEpilogue::none) {
    MIXTAPE_CHECK(g.batch == 1, "gemm: a bias epilogue needs batch == 1, got batch ", g.batch);
    check_defined(g.bias, "gemm", "bias");
    check_same_device(g.bias, g.out, "gemm bias");
    MIXTAPE_CHECK(g.bias.dtype() == g.out.dtype(), "gemm: the bias must have the output's dtype ",
                  dtype_name(g.out.dtype()), ", got ", dtype_name(g.bias.dtype()));
    MIXTAPE_CHECK(g.bias.dim() == 1 && g.bias.size(0) == g.n, "gemm: expected a bias of shape (", g.n, ",), got ",
                  g.bias.shape().to_string());
  } else {
    MIXTAPE_CHECK(!g.bias.defined(), "gemm: a bias was given with epilogue none; choose GemmEpilogue::bias (or ",
                  "bias_relu / bias_gelu)");
  }
  if (g.a_sums.defined()) {
    MIXTAPE_CHECK(g.batch == 1, "gemm: a_sums needs batch == 1, got batch ", g.batch);
    check_same_device(g.a_sums, g.a, "gemm a_sums");
    MIXTAPE_CHECK(g.a_sums.dtype() == g.a.dtype(), "gemm: a_sums must have a's dtype ", dtype_name(g.a.dtype()),
                  ", got ", dtype_name(g.a_sums.dtype()));
    MIXTAPE_CHECK(g.a_sums.dim() == 1 && g.a_sums.size(0) == g.m, "gemm: expected a_sums of shape (", g.m, ",), got ",
                  g.a_sums.shape().to_string());
  }
  backend_for(g.out.device()).gemm(g);
  count_matmul_flops(2 * g.batch * g.m * g.n * g.k);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  GemmArgs g = matmul_args(a, b, trans_a, trans_b, "matmul");
  if (g.out.numel() == 0) return g.out;
  if (g.k == 0) {
    backend_for(a.device()).fill(g.out, 0.0);
    return g.out;
  }
  backend_for(a.device()).gemm(g);
  count_matmul_flops(2 * g.batch * g.m * g.n * g.k);
  return g.out;
}

Tensor matmul_bias(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const Tensor& bias,
                   GemmEpilogue epilogue) {
  GemmArgs g = matmul_args(a, b, trans_a, trans_b, "matmul_bias");
  MIXTAPE_CHECK(epilogue != GemmEpilogue::none, "matmul_bias: expected a bias epilogue, got none (use matmul)");
  MIXTAPE_CHECK(g.batch == 1, "matmul_bias: a bias epilogue needs one GEMM (a 2-D b, or a 2-D a without trans_a); got a ",
                a.shape().to_string(), (trans_a ? "^T" : ""), " and b ", b.shape().to_string());
  check_defined(bias, "matmul_bias", "bias");
  check_same_device(bias, a, "matmul_bias");
  check_same_dtype(bias, a, "matmul_bias");
  MIXTAPE_CHECK(bias.dim() == 1 && bias.size(0) == g.n, "matmul_bias: expected a bias of shape (", g.n, ",), got ",
                bias.shape().to_string());
  if (g.out.numel() == 0) return g.out;
  if (g.k == 0) {  // no product: the epilogue of zeros + bias
    const UnaryOp act = epilogue == GemmEpilogue::bias_relu   ? UnaryOp::relu
                        : epilogue == GemmEpilogue::bias_gelu ? UnaryOp::gelu
                                                              : UnaryOp::identity;
    const Tensor row = unary(act, bias);
    return view(broadcast_to(row, Shape{g.m, g.n}), g.out.shape());
  }
  g.bias = bias;
  g.epilogue = epilogue;
  gemm(g);
  return g.out;
}

std::pair<Tensor, Tensor> matmul_with_a_sums(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  GemmArgs g = matmul_args(a, b, trans_a, trans_b, "matmul_with_a_sums");
  MIXTAPE_CHECK(a.dim() == 2 && b.dim() == 2, "matmul_with_a_sums: expected 2-D a and b, got a ", a.shape().to_string(),
                " and b ", b.shape().to_string());
  Tensor sums = Tensor::empty(Shape{g.m}, a.dtype(), a.device());
  if (g.k == 0 || g.m == 0 || g.n == 0) {
    if (g.out.numel()) backend_for(a.device()).fill(g.out, 0.0);
    if (g.m && g.n == 0) return {g.out, reduce(ReduceOp::sum, a, {trans_a ? 0 : 1}, false)};
    if (sums.numel()) backend_for(a.device()).fill(sums, 0.0);
    return {g.out, sums};
  }
  g.a_sums = sums;
  gemm(g);
  return {g.out, sums};
}

Tensor softmax(const Tensor& x, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_defined(x, name, "x");
  check_floating(x, name);
  MIXTAPE_CHECK(x.dim() >= 1, name, ": expected at least 1 dimension, got a scalar");
  Tensor out = empty_like(x);
  if (x.numel()) backend_for(x.device()).softmax(x, out, log);
  return out;
}

Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log) {
  check_same_dtype(y, gy, "softmax_backward");
  MIXTAPE_CHECK(y.shape() == gy.shape(), "softmax_backward: gradient shape ", gy.shape().to_string(),
                " differs from output shape ", y.shape().to_string());
  Tensor gx = empty_like(y);
  if (y.numel()) backend_for(y.device()).softmax_backward(y, gy, gx, log);
  return gx;
}

namespace {
void check_cross_entropy(const Tensor& logits, const Tensor& labels, double smoothing) {
  check_defined(logits, "cross_entropy", "logits");
  check_defined(labels, "cross_entropy", "labels");
  check_floating(logits, "cross_entropy");
  check_same_device(logits, labels, "cross_entropy");
  MIXTAPE_CHECK(logits.dim() == 2, "cross_entropy: expected logits of shape (N, C), got ", logits.shape().to_string());
  MIXTAPE_CHECK(labels.dtype() == DType::i64, "cross_entropy: expected i64 labels, got ", dtype_name(labels.dtype()));
  MIXTAPE_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0), "cross_entropy: expected labels of shape (",
                logits.size(0), ",) for logits ", logits.shape().to_string(), ", got ", labels.shape().to_string());
  MIXTAPE_CHECK(logits.size(1) > 0, "cross_entropy: logits have no classes");
  MIXTAPE_CHECK(smoothing >= 0.0 && smoothing <= 1.0, "cross_entropy: label_smoothing must be in [0, 1], got ", smoothing);
}
}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, double label_smoothing) {
  check_cross_entropy(logits, labels, label_smoothing);
  Tensor losses = Tensor::empty(Shape{logits.size(0)}, logits.dtype(), logits.device());
  if (logits.size(0)) backend_for(logits.device()).cross_entropy(logits, labels, losses, label_smoothing);
  return losses;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                              double label_smoothing) {
  check_cross_entropy(logits, labels, label_smoothing);
  check_same_dtype(logits, grad_losses, "cross_entropy_backward");
  Tensor g = empty_like(logits);
  if (logits.size(0)) backend_for(logits.device()).cross_entropy_backward(logits, labels, grad_losses, g, label_smoothing);
  return g;
}

}  // namespace mixtape::kernels
