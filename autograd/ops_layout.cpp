// Differentiable layout ops (permute, narrow, cat and their composites), embedding, and the attention composites
// (autograd/ops.h). Layout ops move elements without arithmetic, so their gradients are exact; autocast leaves them
// in their input's dtype except cat, which promotes mixed inputs to the widest (PyTorch's list).
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "autograd/dispatch.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/kernels.h"

namespace mixtape {

using autograd::record;
using autograd::should_record;
using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor out = kernels::permute(x, dims);
  if (!should_record({&x})) return out;
  // the inverse permutation: x's axis dims[i] is the output's axis i
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[static_cast<size_t>(x.shape().axis(dims[i], "permute"))] = static_cast<int64_t>(i);
  return record(OpKind::permute, {&x}, out,
                [inverse](const Tensor& g, const Needs&) { return Grads{kernels::permute(g, inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  MIXTAPE_CHECK(x.defined(), "transpose: argument 'x' is an undefined tensor");
  const int a = x.shape().axis(dim0, "transpose"), b = x.shape().axis(dim1, "transpose");
  std::vector<int64_t> dims(static_cast<size_t>(x.dim()));
  for (int i = 0; i < x.dim(); ++i) dims[static_cast<size_t>(i)] = i;
  std::swap(dims[static_cast<size_t>(a)], dims[static_cast<size_t>(b)]);
  return permute(x, dims);
}

Tensor Tensor::t() const {
  MIXTAPE_CHECK(defined() && dim() == 2, "Tensor::t: expected a 2-D tensor, got ",
                defined() ? shape().to_string() : std::string("an undefined tensor"), " (use transpose or permute)");
  return transpose(*this, 0, 1);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  Tensor out = kernels::narrow(x, dim, start, length);
  if (!should_record({&x})) return out;
  const Shape in_shape = x.shape();
  const int a = x.shape().axis(dim, "narrow");
  return record(OpKind::narrow, {&x}, out, [in_shape, a, start](const Tensor& g, const Needs&) {
    Tensor gx = zeros(in_shape, g.dtype(), g.device());
    kernels::copy_into(g, gx, a, start);
    return Grads{gx};
  });
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  MIXTAPE_CHECK(x.defined(), "slice: argument 'x' is an undefined tensor");
  const int64_t n = x.shape()[x.shape().axis(dim, "slice")];
  auto clamp = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  const int64_t s = clamp(start), e = clamp(end);
  return narrow(x, dim, s, std::max<int64_t>(e - s, 0));
}

Tensor cat(const std::vector<Tensor>& xs_in, int64_t dim) {
  std::vector<Tensor> xs = xs_in;
  autograd::autocast_inputs(OpKind::cat, xs);
  Tensor out = kernels::cat(xs, dim);
  std::vector<const Tensor*> ptrs;
  for (const Tensor& x : xs) ptrs.push_back(&x);
  if (!should_record(ptrs)) return out;
  const int a = xs.front().shape().axis(dim, "cat");
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.shape()[a]);
  return record(OpKind::cat, ptrs, out, [a, sizes](const Tensor& g, const Needs& needs) {
    Grads gs(sizes.size());
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (needs[i]) gs[i] = kernels::narrow(g, a, at, sizes[i]);
      at += sizes[i];
    }
    return gs;
  });
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  MIXTAPE_CHECK(!xs.empty(), "stack: no tensors to stack");
  const Shape& s0 = xs.front().shape();
  const int n = s0.size() + 1;
  const int64_t d = dim < 0 ? dim + n : dim;
  MIXTAPE_CHECK(d >= 0 && d < n, "stack: axis ", dim, " is outside a result of ", n, " dimensions");
  std::vector<Tensor> parts;
  for (const Tensor& x : xs) {
    MIXTAPE_CHECK(x.defined() && x.shape() == s0, "stack: every tensor must have shape ", s0.to_string(), ", got ",
                  x.defined() ? x.shape().to_string() : std::string("an undefined tensor"));
    std::vector<int64_t> dims = x.shape().vec();
    dims.insert(dims.begin() + d, 1);
    parts.push_back(reshape(x, Shape(dims)));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  MIXTAPE_CHECK(x.defined(), "split: argument 'x' is an undefined tensor");
  MIXTAPE_CHECK(size >= 1, "split: the piece size must be at least 1, got ", size);
  const int a = x.shape().axis(dim, "split");
  std::vector<Tensor> out;
  for (int64_t at = 0; at < x.shape()[a]; at += size) out.push_back(narrow(x, a, at, std::min(size, x.shape()[a] - at)));
  return out;
}

Tensor embedding(const Tensor& weight_in, const Tensor& ids) {
  std::array<Tensor, 1> in{weight_in};
  autograd::autocast_inputs(OpKind::embedding, in);
  const Tensor& weight = in[0];
  Tensor out = kernels::embedding(weight, ids);
  if (!should_record({&weight})) return out;
  const Tensor saved_ids = ids.detach();
  const int64_t rows = weight.size(0);
  return record(OpKind::embedding, {&weight}, out, [saved_ids, rows](const Tensor& g, const Needs&) {
    return Grads{kernels::embedding_backward(g, saved_ids, rows)};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  MIXTAPE_CHECK(x.defined() && mask.defined(), "masked_fill: undefined argument");
  MIXTAPE_CHECK(mask.dtype() == DType::u8, "masked_fill: expected a u8 mask, got ", dtype_name(mask.dtype()));
  return where(mask, scalar_tensor(value, x.dtype(), x.device()), x);
}

Tensor softmax(const Tensor& x, int64_t axis) {
  MIXTAPE_CHECK(x.defined(), "softmax: argument 'x' is an undefined tensor");
  const int a = x.shape().axis(axis, "softmax");
  if (a == x.dim() - 1) return softmax(x);
  return transpose(softmax(transpose(x, a, -1)), a, -1);
}

Tensor causal_mask(int64_t n, Device device) {
  MIXTAPE_CHECK(n >= 0, "causal_mask: size ", n, " is negative");
  Tensor m = Tensor::empty(Shape{n, n}, DType::u8);
  uint8_t* p = m.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) p[i * n + j] = j > i ? 1 : 0;
  return m.to(device);
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  MIXTAPE_CHECK(q.defined() && k.defined() && v.defined(), "scaled_dot_product_attention: undefined argument");
  MIXTAPE_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), "scaled_dot_product_attention: q ",
                q.shape().to_string(), ", k ", k.shape().to_string(), " and v ", v.shape().to_string(),
                " must have the same rank, at least 2");
  MIXTAPE_CHECK(q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2), "scaled_dot_product_attention: q ",
                q.shape().to_string(), ", k ", k.shape().to_string(), " and v ", v.shape().to_string(),
                " do not fit (q and k end in one size E, k and v have one length)");
  const double s = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  Tensor logits = matmul(q * s, k, false, true);  // (..., Lq, Lk)
  if (causal) {
    MIXTAPE_CHECK(q.size(-2) == k.size(-2), "scaled_dot_product_attention: a causal mask needs as many queries as keys");
    logits = masked_fill(logits, causal_mask(q.size(-2), q.device()), -std::numeric_limits<double>::infinity());
  }
  return matmul(softmax(logits), v);
}

}  // namespace mixtape
