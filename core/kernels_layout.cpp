// Layout kernels (core/kernels.h): permute, narrow, copy_into, cat, embedding. Each builds one StridedCopy (or
// calls the embedding kernels) after validating its arguments; the result is always a new contiguous tensor.
#include <algorithm>
#include <array>
#include <numeric>

#include "core/kernels.h"

namespace mixtape::kernels {

namespace {

/// Row-major element strides of a shape.
std::array<int64_t, Shape::kMaxDims> strides_of(const Shape& s) {
  std::array<int64_t, Shape::kMaxDims> st{};
  int64_t acc = 1;
  for (int i = s.size() - 1; i >= 0; --i) {
    st[static_cast<size_t>(i)] = acc;
    acc *= s[i];
  }
  return st;
}

StridedCopy make_copy(const Shape& iter) {
  StridedCopy c;
  c.index.ndim = iter.size();
  for (int i = 0; i < iter.size(); ++i) c.index.sizes[i] = iter[i];
  c.numel = iter.numel();
  return c;
}

void check_tensor(const Tensor& t, const char* op, const char* arg) {
  MIXTAPE_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}

}  // namespace

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  check_tensor(x, "permute", "x");
  const int n = x.dim();
  MIXTAPE_CHECK(static_cast<int>(dims.size()) == n, "permute: ", dims.size(), " axes given for a tensor of shape ",
                x.shape().to_string());
  std::vector<int> axes;
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (int64_t d : dims) {
    const int a = x.shape().axis(d, "permute");
    MIXTAPE_CHECK(!seen[static_cast<size_t>(a)], "permute: axis ", d, " is repeated");
    seen[static_cast<size_t>(a)] = true;
    axes.push_back(a);
  }
  Shape out_shape = x.shape();
  for (int i = 0; i < n; ++i) out_shape[i] = x.shape()[axes[static_cast<size_t>(i)]];
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  StridedCopy c = make_copy(out_shape);
  const auto xs = strides_of(x.shape()), os = strides_of(out_shape);
  for (int i = 0; i < n; ++i) {
    c.index.strides[0][i] = os[static_cast<size_t>(i)];
    c.index.strides[1][i] = xs[static_cast<size_t>(axes[static_cast<size_t>(i)])];
  }
  backend_for(x.device()).strided_copy(x, out, c);
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  check_tensor(x, "narrow", "x");
  MIXTAPE_CHECK(x.dim() >= 1, "narrow: a 0-d tensor has no axis to narrow");
  const int a = x.shape().axis(dim, "narrow");
  const int64_t size = x.shape()[a];
  MIXTAPE_CHECK(start >= 0 && length >= 0 && start <= size && length <= size - start, "narrow: elements [", start, ", ",
                start + length, ") of axis ", dim, " are outside its size ", size, " (shape ", x.shape().to_string(), ")");
  Shape out_shape = x.shape();
  out_shape[a] = length;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  StridedCopy c = make_copy(out_shape);
  const auto xs = strides_of(x.shape()), os = strides_of(out_shape);
  for (int i = 0; i < x.dim(); ++i) {
    c.index.strides[0][i] = os[static_cast<size_t>(i)];
    c.index.strides[1][i] = xs[static_cast<size_t>(i)];
  }
  c.src_offset = start * xs[static_cast<size_t>(a)];
  backend_for(x.device()).strided_copy(x, out, c);
  return out;
}

void copy_into(const Tensor& src, const Tensor& dst, int64_t dim, int64_t start) {
  check_tensor(src, "copy_into", "src");
  check_tensor(dst, "copy_into", "dst");
  check_same_device(src, dst, "copy_into");
  check_same_dtype(src, dst, "copy_into");
  MIXTAPE_CHECK(src.dim() == dst.dim() && dst.dim() >= 1, "copy_into: shapes ", src.shape().to_string(), " and ",
                dst.shape().to_string(), " differ in rank");
  const int a = dst.shape().axis(dim, "copy_into");
  for (int i = 0; i < dst.dim(); ++i)
    MIXTAPE_CHECK(i == a || src.shape()[i] == dst.shape()[i], "copy_into: shapes ", src.shape().to_string(), " and ",
                  dst.shape().to_string(), " differ on axis ", i);
  MIXTAPE_CHECK(start >= 0 && start + src.shape()[a] <= dst.shape()[a], "copy_into: elements [", start, ", ",
                start + src.shape()[a], ") of axis ", dim, " are outside ", dst.shape().to_string());
  StridedCopy c = make_copy(src.shape());
  const auto ss = strides_of(src.shape()), ds = strides_of(dst.shape());
  for (int i = 0; i < src.dim(); ++i) {
    c.index.strides[0][i] = ds[static_cast<size_t>(i)];
    c.index.strides[1][i] = ss[static_cast<size_t>(i)];
  }
  c.dst_offset = start * ds[static_cast<size_t>(a)];
  backend_for(dst.device()).strided_copy(src, dst, c);
  dst.bump_version();
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  MIXTAPE_CHECK(!xs.empty(), "cat: no tensors to join");
  for (const Tensor& x : xs) check_tensor(x, "cat", "xs");
  const Tensor& first = xs.front();
  MIXTAPE_CHECK(first.dim() >= 1, "cat: 0-d tensors cannot be joined (stack them instead)");
  const int a = first.shape().axis(dim, "cat");
  Shape out_shape = first.shape();
  int64_t total = 0;
  for (const Tensor& x : xs) {
    check_same_device(first, x, "cat");
    check_same_dtype(first, x, "cat");
    MIXTAPE_CHECK(x.dim() == first.dim(), "cat: shapes ", first.shape().to_string(), " and ", x.shape().to_string(),
                  " differ in rank");
    for (int i = 0; i < x.dim(); ++i)
      MIXTAPE_CHECK(i == a || x.shape()[i] == first.shape()[i], "cat: shapes ", first.shape().to_string(), " and ",
                    x.shape().to_string(), " differ on axis ", i, ", which is not the joined axis ", dim);
    total += x.shape()[a];
  }
  out_shape[a] = total;
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    copy_into(x, out, a, at);
    at += x.shape()[a];
  }
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_tensor(weight, "embedding", "weight");
  check_tensor(ids, "embedding", "ids");
  check_same_device(weight, ids, "embedding");
  MIXTAPE_CHECK(weight.dim() == 2, "embedding: expected a weight of shape (num_embeddings, dim), got ",
                weight.shape().to_string());
  MIXTAPE_CHECK(ids.dtype() == DType::i64, "embedding: expected i64 indices, got ", dtype_name(ids.dtype()));
  std::vector<int64_t> dims(ids.shape().begin(), ids.shape().end());
  dims.push_back(weight.size(1));
  Tensor out = Tensor::empty(Shape(dims), weight.dtype(), weight.device());
  backend_for(weight.device()).embedding(weight, ids, out);
  return out;
}

Tensor embedding_backward(const Tensor& g, const Tensor& ids, int64_t num_rows) {
  check_tensor(g, "embedding_backward", "g");
  check_same_device(g, ids, "embedding_backward");
  MIXTAPE_CHECK(ids.dtype() == DType::i64 && g.dim() == ids.dim() + 1 && g.numel() == ids.numel() * g.size(-1),
                "embedding_backward: gradient ", g.shape().to_string(), " does not match indices ", ids.shape().to_string());
  Tensor gw = Tensor::empty(Shape{num_rows, g.size(-1)}, g.dtype(), g.device());
  backend_for(g.device()).embedding_backward(g, ids, gw);
  return gw;
}

}  // namespace mixtape::kernels
