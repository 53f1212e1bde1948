// The differentiable ops: autocast at the boundary, the raw kernel, then a backward node on the tape.
#include "autograd/ops.h"

#include <array>
#include <tuple>

#include "autograd/dispatch.h"
#include "core/conv_kernels.h"
#include "core/kernels.h"

namespace mixtape {

using autograd::record;
using autograd::should_record;
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

namespace {

/// The inputs of an op after autocast chose their compute dtype (the one place casts are inserted).
template <class... Ts>
std::array<Tensor, sizeof...(Ts)> prepare(OpKind kind, const Ts&... ts) {
  std::array<Tensor, sizeof...(Ts)> in{ts...};
  autograd::autocast_inputs(kind, in);
  return in;
}

Tensor bin(BinaryOp op, const Tensor& a, const Tensor& b) { return kernels::binary(op, a, b); }
Tensor zero_like_scalar(const Tensor& t) { return scalar_tensor(0.0, t.dtype(), t.device()); }

/// A unary op whose backward is a fused functor of (grad, saved), saved being the input or the output.
Tensor unary_op(OpKind kind, UnaryOp op, BinaryOp grad_op, bool save_output, const Tensor& x_in) {
  auto [x] = prepare(kind, x_in);
  Tensor out = kernels::unary(op, x);
  if (!should_record({&x})) return out;
  const Tensor saved = save_output ? out.detach() : x.detach();
  return record(kind, {&x}, out, [saved, grad_op](const Tensor& g, const Needs&) { return Grads{bin(grad_op, g, saved)}; });
}

/// A tensor an op saves for backward. When it is autocast's compute copy of a float32 parameter (a master), the
/// master is saved instead and the copy re-made in backward: the master is alive anyway, so a lower-precision op
/// keeps no weight copies alive between forward and backward (the cast is repeated, bit for bit the same). A
/// persistent compute copy (amp: kept across steps for parameters an optimizer updates) is alive anyway too, so
/// it is kept as it is and backward casts nothing; the master's version is checked either way.
class Saved {
 public:
  Saved() = default;
  /// `used` is the op's input after autocast, `original` the argument before it.
  Saved(const Tensor& used, const Tensor& original) {
    if (!used.defined()) return;
    const bool is_master_copy = !used.is_same(original) && original.defined() && original.is_leaf() &&
                                original.requires_grad() && original.dtype() == DType::f32 && used.dtype() != DType::f32;
    if (is_master_copy) {
      master_ = original.detach();
      dtype_ = used.dtype();
      version_ = original.version();
      // a persistent compute copy outlives the step anyway: keep it rather than cast the master again in backward
      if (autograd::is_kept_copy(used, original)) tensor_ = used.detach();
    } else {
      tensor_ = used.detach();
    }
  }
  /// The saved value (re-cast from the master when that is what was kept).
  Tensor get() const {
    if (!master_.defined()) return tensor_;
    MIXTAPE_CHECK(master_.version() == version_, "backward: a parameter ", master_.shape().to_string(),
                  " was modified in place between the forward pass and backward(); step the optimizer after backward");
    // The persistent copy holds the master's values while the master's version is unchanged (amp rewrites it only
    // for a new version), so it is what the cast would give.
    if (tensor_.defined()) return tensor_;
    return kernels::cast(master_, dtype_);
  }

 private:
  Tensor tensor_, master_;
  DType dtype_ = DType::f32;
  uint64_t version_ = 0;
};

/// Shape of a reduction's result with reduced axes kept as 1 (for broadcasting the gradient back).
Shape keepdim_shape(const Shape& in, const std::vector<int64_t>& axes) {
  Shape s = in;
  if (axes.empty()) {
    for (int i = 0; i < s.size(); ++i) s[i] = 1;
  } else {
    for (int64_t a : axes) s[in.axis(a, "reduce")] = 1;
  }
  return s;
}

}  // namespace

// ---- elementwise binary ----

Tensor add(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::add, a_in, b_in);
  Tensor out = bin(BinaryOp::add, a, b);
  if (!should_record({&a, &b})) return out;
  return record(OpKind::add, {&a, &b}, out, [](const Tensor& g, const Needs&) { return Grads{g, g}; });
}

Tensor sub(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::sub, a_in, b_in);
  Tensor out = bin(BinaryOp::sub, a, b);
  if (!should_record({&a, &b})) return out;
  return record(OpKind::sub, {&a, &b}, out, [](const Tensor& g, const Needs& needs) {
    return Grads{g, needs[1] ? kernels::unary(UnaryOp::neg, g) : Tensor()};
  });
}

Tensor mul(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::mul, a_in, b_in);
  Tensor out = bin(BinaryOp::mul, a, b);
  if (!should_record({&a, &b})) return out;
  // Save only what each gradient needs.
  const Tensor sa = b.requires_grad() ? a.detach() : Tensor(), sb = a.requires_grad() ? b.detach() : Tensor();
  return record(OpKind::mul, {&a, &b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    return Grads{needs[0] ? bin(BinaryOp::mul, g, sb) : Tensor(), needs[1] ? bin(BinaryOp::mul, g, sa) : Tensor()};
  });
}

Tensor div(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::div, a_in, b_in);
  Tensor out = bin(BinaryOp::div, a, b);
  if (!should_record({&a, &b})) return out;
  const Tensor sb = b.detach(), so = b.requires_grad() ? out.detach() : Tensor();
  return record(OpKind::div, {&a, &b}, out, [sb, so](const Tensor& g, const Needs& needs) {
    const Tensor ga = bin(BinaryOp::div, g, sb);  // d/da = g / b; d/db = -(g / b) * (a / b)
    return Grads{needs[0] ? ga : Tensor(),
                 needs[1] ? kernels::unary(UnaryOp::neg, bin(BinaryOp::mul, ga, so)) : Tensor()};
  });
}

Tensor pow(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::pow, a_in, b_in);
  Tensor out = bin(BinaryOp::pow, a, b);
  if (!should_record({&a, &b})) return out;
  const Tensor sa = a.detach(), sb = b.detach(), so = out.detach();
  return record(OpKind::pow, {&a, &b}, out, [sa, sb, so](const Tensor& g, const Needs& needs) {
    Tensor ga, gb;
    if (needs[0]) {  // g * b * a^(b-1)
      const Tensor one = scalar_tensor(1.0, sb.dtype(), sb.device());
      ga = bin(BinaryOp::mul, g, bin(BinaryOp::mul, sb, bin(BinaryOp::pow, sa, bin(BinaryOp::sub, sb, one))));
    }
    if (needs[1]) {  // g * a^b * log(a), defined as 0 where a == 0 (as PyTorch)
      const Tensor zero = zero_like_scalar(sa);
      const Tensor safe_log = kernels::where(bin(BinaryOp::eq, sa, zero), zero, kernels::unary(UnaryOp::log, sa));
      gb = bin(BinaryOp::mul, g, bin(BinaryOp::mul, so, safe_log));
    }
    return Grads{ga, gb};
  });
}

Tensor pow(const Tensor& a, double exponent) { return pow(a, scalar_tensor(exponent, a.dtype(), a.device())); }

Tensor maximum(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::maximum, a_in, b_in);
  Tensor out = bin(BinaryOp::maximum, a, b);
  if (!should_record({&a, &b})) return out;
  const Tensor sa = a.detach(), sb = b.detach();
  return record(OpKind::maximum, {&a, &b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    return Grads{needs[0] ? bin(BinaryOp::mul, g, bin(BinaryOp::max_share, sa, sb)) : Tensor(),
                 needs[1] ? bin(BinaryOp::mul, g, bin(BinaryOp::max_share, sb, sa)) : Tensor()};
  });
}

Tensor minimum(const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::minimum, a_in, b_in);
  Tensor out = bin(BinaryOp::minimum, a, b);
  if (!should_record({&a, &b})) return out;
  const Tensor sa = a.detach(), sb = b.detach();
  return record(OpKind::minimum, {&a, &b}, out, [sa, sb](const Tensor& g, const Needs& needs) {
    return Grads{needs[0] ? bin(BinaryOp::mul, g, bin(BinaryOp::min_share, sa, sb)) : Tensor(),
                 needs[1] ? bin(BinaryOp::mul, g, bin(BinaryOp::min_share, sb, sa)) : Tensor()};
  });
}

// ---- elementwise unary ----

Tensor neg(const Tensor& x_in) {
  auto [x] = prepare(OpKind::neg, x_in);
  Tensor out = kernels::unary(UnaryOp::neg, x);
  if (!should_record({&x})) return out;
  return record(OpKind::neg, {&x}, out, [](const Tensor& g, const Needs&) { return Grads{kernels::unary(UnaryOp::neg, g)}; });
}

Tensor exp(const Tensor& x) { return unary_op(OpKind::exp, UnaryOp::exp, BinaryOp::mul, true, x); }

Tensor log(const Tensor& x) { return unary_op(OpKind::log, UnaryOp::log, BinaryOp::div, false, x); }
Tensor sqrt(const Tensor& x) { return unary_op(OpKind::sqrt, UnaryOp::sqrt, BinaryOp::sqrt_backward, true, x); }
Tensor rsqrt(const Tensor& x) { return unary_op(OpKind::rsqrt, UnaryOp::rsqrt, BinaryOp::rsqrt_backward, true, x); }
Tensor tanh(const Tensor& x) { return unary_op(OpKind::tanh, UnaryOp::tanh, BinaryOp::tanh_backward, true, x); }
Tensor sigmoid(const Tensor& x) { return unary_op(OpKind::sigmoid, UnaryOp::sigmoid, BinaryOp::sigmoid_backward, true, x); }
Tensor relu(const Tensor& x) { return unary_op(OpKind::relu, UnaryOp::relu, BinaryOp::relu_backward, true, x); }
Tensor gelu(const Tensor& x) { return unary_op(OpKind::gelu, UnaryOp::gelu, BinaryOp::gelu_backward, false, x); }
Tensor abs(const Tensor& x) { return unary_op(OpKind::abs, UnaryOp::abs, BinaryOp::abs_backward, false, x); }

Tensor where(const Tensor& cond, const Tensor& a_in, const Tensor& b_in) {
  auto [a, b] = prepare(OpKind::where, a_in, b_in);
  Tensor out = kernels::where(cond, a, b);
  if (!should_record({&a, &b})) return out;
  const Tensor c = cond.detach();
  return record(OpKind::where, {&a, &b}, out, [c](const Tensor& g, const Needs& needs) {
    const Tensor zero = zero_like_scalar(g);
    return Grads{needs[0] ? kernels::where(c, g, zero) : Tensor(), needs[1] ? kernels::where(c, zero, g) : Tensor()};
  });
}

// ---- comparisons ----

Tensor eq(const Tensor& a, const Tensor& b) { return bin(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return bin(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return bin(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return bin(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return bin(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return bin(BinaryOp::ge, a, b); }

// ---- reductions ----

Tensor sum(const Tensor& x_in, const std::vector<int64_t>& axes, bool keepdim) {
  auto [x] = prepare(OpKind::sum, x_in);
  Tensor out = kernels::reduce(ReduceOp::sum, x, axes, keepdim);
  if (!should_record({&x})) return out;
  const Shape in_shape = x.shape(), kept = keepdim_shape(x.shape(), axes);
  return record(OpKind::sum, {&x}, out, [in_shape, kept](const Tensor& g, const Needs&) {
    return Grads{kernels::broadcast_to(kernels::view(g, kept), in_shape)};
  });
}

Tensor mean(const Tensor& x_in, const std::vector<int64_t>& axes, bool keepdim) {
  auto [x] = prepare(OpKind::mean, x_in);
  Tensor out = kernels::reduce(ReduceOp::mean, x, axes, keepdim);
  if (!should_record({&x})) return out;
  const Shape in_shape = x.shape(), kept = keepdim_shape(x.shape(), axes);
  const double count = static_cast<double>(x.numel()) / static_cast<double>(std::max<int64_t>(kept.numel(), 1));
  return record(OpKind::mean, {&x}, out, [in_shape, kept, count](const Tensor& g, const Needs&) {
    const Tensor scale = scalar_tensor(1.0 / count, g.dtype(), g.device());
    return Grads{kernels::broadcast_to(bin(BinaryOp::mul, kernels::view(g, kept), scale), in_shape)};
  });
}

Tensor max(const Tensor& x_in, const std::vector<int64_t>& axes, bool keepdim) {
  auto [x] = prepare(OpKind::max, x_in);
  Tensor out = kernels::reduce(ReduceOp::max, x, axes, keepdim);
  if (!should_record({&x})) return out;
  const Tensor sx = x.detach();
  const Shape kept = keepdim_shape(x.shape(), axes);
  const Tensor out_kept = kernels::view(out, kept);
  return record(OpKind::max, {&x}, out, [sx, kept, out_kept, axes](const Tensor& g, const Needs&) {
    // The gradient goes to the maximal elements, split evenly among ties.
    const Tensor mask = kernels::cast(bin(BinaryOp::eq, sx, out_kept), sx.dtype());
    const Tensor count = kernels::reduce(ReduceOp::sum, mask, axes, true);
    return Grads{bin(BinaryOp::mul, mask, bin(BinaryOp::div, kernels::view(g, kept), count))};
  });
}

Tensor argmax(const Tensor& x, int64_t axis, bool keepdim) { return kernels::argmax(x, axis, keepdim); }

// ---- matmul ----

Tensor matmul(const Tensor& a_in, const Tensor& b_in, bool ta, bool tb) {
  auto [a, b] = prepare(OpKind::matmul, a_in, b_in);
  Tensor out = kernels::matmul(a, b, ta, tb);
  if (!should_record({&a, &b})) return out;
  const Saved saved_a = b.requires_grad() ? Saved(a, a_in) : Saved(), saved_b = a.requires_grad() ? Saved(b, b_in) : Saved();
  const bool shared_rhs = b.dim() == 2 && a.dim() > 2 && !ta;
  return record(OpKind::matmul, {&a, &b}, out, [saved_a, saved_b, ta, tb, shared_rhs](const Tensor& g, const Needs& needs) {
    const auto mm = &kernels::matmul;
    const Tensor sa = saved_a.get(), sb = saved_b.get();
    Tensor ga, gb;
    if (needs[0]) {
      if (!ta) ga = tb ? mm(g, sb, false, false) : mm(g, sb, false, true);
      else ga = tb ? mm(sb, g, true, true) : mm(sb, g, false, true);
    }
    if (needs[1]) {
      if (shared_rhs) {
        // Shared 2-D weight under a batched input: fold the batch into one GEMM instead of summing B products.
        const int64_t k = sa.size(-1), n = g.size(-1);
        const Tensor a2 = kernels::view(sa, Shape{-1, k}), g2 = kernels::view(g, Shape{-1, n});
        gb = tb ? mm(g2, a2, true, false) : mm(a2, g2, true, false);
      } else if (!tb) {
        gb = ta ? mm(sa, g, false, false) : mm(sa, g, true, false);
      } else {
        gb = ta ? mm(g, sa, true, true) : mm(g, sa, true, false);
      }
    }
    return Grads{ga, gb};
  });
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  auto [x, w, b] = prepare(OpKind::linear, x_in, w_in, b_in);
  MIXTAPE_CHECK(w.defined() && w.dim() == 2, "linear: expected a weight of shape (out, in), got ",
                w.defined() ? w.shape().to_string() : "undefined");
  MIXTAPE_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ",
                x.defined() ? x.shape().to_string() : "undefined", " does not end in the weight's in_features ", w.size(1),
                " (weight ", w.shape().to_string(), ")");
  if (b.defined())
    MIXTAPE_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear: expected a bias of shape (", w.size(0), ",), got ",
                  b.shape().to_string());
  const Tensor x2 = x.dim() == 1 ? kernels::view(x, Shape{1, x.size(0)}) : x;
  // The bias is added by the GEMM's epilogue, in float before the one rounding of the output.
  Tensor out = b.defined() ? kernels::matmul_bias(x2, w, false, true, b, GemmEpilogue::bias)
                           : kernels::matmul(x2, w, false, true);
  if (x.dim() == 1) out = kernels::view(out, Shape{w.size(0)});
  if (!should_record({&x, &w, &b})) return out;
  const Saved saved_x = w.requires_grad() ? Saved(x, x_in) : Saved(), saved_w = x.requires_grad() ? Saved(w, w_in) : Saved();
  const Shape x_shape = x.shape();
  return record(OpKind::linear, {&x, &w, &b}, out, [saved_x, saved_w, x_shape](const Tensor& g, const Needs& needs) {
    const Tensor sx = saved_x.get(), sw = saved_w.get();
    Tensor gx, gw, gb;
    const int64_t out_features = g.size(-1);
    const Tensor g2 = kernels::view(g, Shape{-1, out_features});
    if (needs[0]) gx = kernels::view(kernels::matmul(g2, sw, false, false), x_shape);        // (..., in)
    if (needs[1] && needs[2]) {
      // grad_bias = the row sums of g2^T, from the same GEMM as grad_weight (cuBLASLt's BGRAD epilogue).
      std::tie(gw, gb) = kernels::matmul_with_a_sums(g2, kernels::view(sx, Shape{-1, sx.size(-1)}), true, false);
    } else if (needs[1]) {
      gw = kernels::matmul(g2, kernels::view(sx, Shape{-1, sx.size(-1)}), true, false);  // (out, in)
    } else if (needs[2]) {
      gb = kernels::reduce(ReduceOp::sum, g2, {0}, false);  // (out)
    }
    return Grads{gx, gw, gb};
  });
}

// ---- softmax and losses ----

Tensor softmax(const Tensor& x_in) {
  auto [x] = prepare(OpKind::softmax, x_in);
  Tensor out = kernels::softmax(x, false);
  if (!should_record({&x})) return out;
  const Tensor so = out.detach();
  return record(OpKind::softmax, {&x}, out,
                [so](const Tensor& g, const Needs&) { return Grads{kernels::softmax_backward(so, g, false)}; });
}

Tensor log_softmax(const Tensor& x_in) {
  auto [x] = prepare(OpKind::log_softmax, x_in);
  Tensor out = kernels::softmax(x, true);
  if (!should_record({&x})) return out;
  const Tensor so = out.detach();
  return record(OpKind::log_softmax, {&x}, out,
                [so](const Tensor& g, const Needs&) { return Grads{kernels::softmax_backward(so, g, true)}; });
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& labels, Reduction reduction, double label_smoothing) {
  auto [logits] = prepare(OpKind::cross_entropy, logits_in);
  const Tensor losses = kernels::cross_entropy(logits, labels, label_smoothing);
  const int64_t n = losses.numel();
  Tensor out = reduction == Reduction::none ? losses
               : reduction == Reduction::sum ? kernels::reduce(ReduceOp::sum, losses, {}, false)
                                             : kernels::reduce(ReduceOp::mean, losses, {}, false);
  if (!should_record({&logits})) return out;
  const Tensor sl = logits.detach(), sy = labels.detach();
  return record(OpKind::cross_entropy, {&logits}, out, [sl, sy, reduction, n, label_smoothing](const Tensor& g, const Needs&) {
    Tensor gl = kernels::broadcast_to(g, Shape{n});
    if (reduction == Reduction::mean)
      gl = bin(BinaryOp::mul, gl, scalar_tensor(1.0 / static_cast<double>(n), g.dtype(), g.device()));
    return Grads{kernels::cross_entropy_backward(sl, sy, gl, label_smoothing)};
  });
}

Tensor layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps) {
  auto [x, weight, bias] = prepare(OpKind::layer_norm, x_in, w_in, b_in);
  autograd::AutocastPause composite;  // the pieces run in the dtype chosen at this boundary
  MIXTAPE_CHECK(x.defined() && x.dim() >= 1, "layer_norm: expected at least 1 dimension");
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

Tensor mse_loss(const Tensor& a_in, const Tensor& b_in, Reduction reduction) {
  auto [a, b] = prepare(OpKind::mse_loss, a_in, b_in);
  autograd::AutocastPause composite;
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

// ---- shape and dtype ----

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = kernels::cast(x, dtype);
  if (!should_record({&x})) return out;
  // The engine casts the returned gradient back to x's dtype.
  return record(OpKind::cast, {&x}, out, [](const Tensor& g, const Needs&) { return Grads{g}; });
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor out = kernels::view(x, shape);
  if (!should_record({&x})) return out;
  const Shape in_shape = x.shape();
  return record(OpKind::reshape, {&x}, out,
                [in_shape](const Tensor& g, const Needs&) { return Grads{kernels::view(g, in_shape)}; });
}

Tensor Tensor::to(DType dtype) const { return cast(*this, dtype); }
Tensor Tensor::reshape(const Shape& shape) const { return mixtape::reshape(*this, shape); }

// ---- operators ----

namespace {
Tensor scalar_like(double v, const Tensor& t) { return scalar_tensor(v, t.dtype(), t.device()); }
}  // namespace

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }

// ---- convolution, pooling, batch norm ----

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, int64_t stride, int64_t padding,
              int64_t dilation) {
  auto [x, w, b] = prepare(OpKind::conv2d, x_in, w_in, b_in);
  const Conv2dParams p{stride, stride, padding, padding, dilation, dilation};
  Tensor out = kernels::conv2d(x, w, b, p);
  if (!should_record({&x, &w, &b})) return out;
  const Saved saved_x = w.requires_grad() ? Saved(x, x_in) : Saved(), saved_w = x.requires_grad() ? Saved(w, w_in) : Saved();
  const Shape x_shape = x.shape(), w_shape = w.shape();
  return record(OpKind::conv2d, {&x, &w, &b}, out, [saved_x, saved_w, x_shape, w_shape, p](const Tensor& g, const Needs& needs) {
    Tensor gx;
    if (needs[0]) gx = kernels::conv2d_backward_data(g, saved_w.get(), x_shape, p);
    auto [gw, gb] = kernels::conv2d_backward_filter(g, needs[1] ? saved_x.get() : Tensor(), w_shape, needs[1], needs[2], p);
    return Grads{gx, gw, gb};
  });
}

namespace {
Pool2dParams pool_params(int64_t kernel, int64_t stride, int64_t padding) {
  const int64_t s = stride <= 0 ? kernel : stride;
  return Pool2dParams{kernel, kernel, s, s, padding, padding};
}
}  // namespace

Tensor max_pool2d(const Tensor& x_in, int64_t kernel, int64_t stride, int64_t padding) {
  auto [x] = prepare(OpKind::max_pool2d, x_in);
  auto pooled = kernels::max_pool2d(x, pool_params(kernel, stride, padding));
  Tensor out = pooled.first;
  if (!should_record({&x})) return out;
  const Tensor indices = pooled.second;
  const Shape x_shape = x.shape();
  return record(OpKind::max_pool2d, {&x}, out, [indices, x_shape](const Tensor& g, const Needs&) {
    return Grads{kernels::max_pool2d_backward(g, indices, x_shape)};
  });
}

Tensor avg_pool2d(const Tensor& x_in, int64_t kernel, int64_t stride, int64_t padding) {
  auto [x] = prepare(OpKind::avg_pool2d, x_in);
  const Pool2dParams p = pool_params(kernel, stride, padding);
  Tensor out = kernels::avg_pool2d(x, p);
  if (!should_record({&x})) return out;
  const Shape x_shape = x.shape();
  return record(OpKind::avg_pool2d, {&x}, out, [x_shape, p](const Tensor& g, const Needs&) {
    return Grads{kernels::avg_pool2d_backward(g, x_shape, p)};
  });
}

Tensor batch_norm(const Tensor& x_in, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight_in,
                  const Tensor& bias_in, bool training, double momentum, double eps) {
  auto [x] = prepare(OpKind::batch_norm, x_in);
  MIXTAPE_CHECK(x.defined(), "batch_norm: the input is an undefined tensor");
  // Affine parameters in the statistics dtype (float32; f64 for f64 inputs), cast differentiably when they differ.
  const DType pd = kernels::batch_norm_param_dtype(x.dtype());
  const Tensor weight = weight_in.defined() ? mixtape::cast(weight_in, pd) : Tensor();
  const Tensor bias = bias_in.defined() ? mixtape::cast(bias_in, pd) : Tensor();
  const BatchNormParams p{training, momentum, eps};
  const auto normed = kernels::batch_norm(x, running_mean, running_var, weight, bias, p);
  Tensor out = normed[0];
  const Tensor save_mean = normed[1], save_invstd = normed[2];
  if (!should_record({&x, &weight, &bias})) return out;
  const Tensor sx = x.detach(), sw = weight.defined() ? weight.detach() : Tensor();
  return record(OpKind::batch_norm, {&x, &weight, &bias}, out,
                [sx, sw, save_mean, save_invstd, p](const Tensor& g, const Needs& needs) {
                  auto [gx, gw, gb] = kernels::batch_norm_backward(g, sx, sw, save_mean, save_invstd,
                                                                   {needs[0], needs[1], needs[2]}, p);
                  return Grads{gx, gw, gb};
                });
}

}  // namespace mixtape
