#pragma once
// The differentiable functional API. Each op: (1) lets autocast pick its inputs' compute dtype,
// (2) runs the raw kernel, (3) records a backward node when grad mode is on and an input requires grad.
#include <cstdint>
#include <vector>

#include "autograd/tape.h"
#include "core/tensor.h"

namespace mixtape {

// ---- elementwise (NumPy broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
/// a ** b elementwise.
Tensor pow(const Tensor& a, const Tensor& b);
/// a ** exponent.
Tensor pow(const Tensor& a, double exponent);
/// Elementwise maximum/minimum (the gradient is split evenly on ties, as in PyTorch).
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
/// Exact (erf) GELU.
Tensor gelu(const Tensor& x);
Tensor abs(const Tensor& x);
/// cond ? a : b (cond from a comparison; differentiable in a and b).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- comparisons (not differentiable; u8 results) ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// ---- reductions (axes empty = all; negative axes count from the end) ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
/// Maximum over axes (the gradient goes to the maximal elements, split evenly on ties).
Tensor max(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
/// Index of the maximum along `axis` (i64, not differentiable).
Tensor argmax(const Tensor& x, int64_t axis = -1, bool keepdim = false);

// ---- linear algebra ----
/// a @ b with optional transposes: a (..., m, k), b (k, n) or batched (..., k, n).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

/// x @ weight^T + bias: x (..., in), weight (out, in), bias (out) or undefined. One op for autocast (it runs
/// in the lower precision as a whole, bias included, like PyTorch's linear).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- softmax and losses ----
/// Softmax over the last axis.
Tensor softmax(const Tensor& x);
/// Log-softmax over the last axis.
Tensor log_softmax(const Tensor& x);
/// How per-sample losses are combined.
enum class Reduction : uint8_t { none, mean, sum };
/// Fused, numerically stable cross-entropy of logits (N, C) with i64 labels (N).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, Reduction reduction = Reduction::mean,
                     double label_smoothing = 0.0);

/// Layer normalisation over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias (weight and bias
/// optional). One op for autocast (float32, like PyTorch), built from the ops above.
Tensor layer_norm(const Tensor& x, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), double eps = 1e-5);
/// Mean (or sum, or none) of (a - b)^2; one op for autocast (float32, like PyTorch).
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean);

// ---- shape and dtype ----
/// Differentiable cast.
Tensor cast(const Tensor& x, DType dtype);
/// Differentiable view with another shape.
Tensor reshape(const Tensor& x, const Shape& shape);

// ---- layout (each result is a new contiguous tensor: mixtape's tensors are contiguous row-major, so a transpose
// or a slice is a copy, never a strided view; see the README's "Views and copies") ----
/// Axes reordered: result axis i is x's axis dims[i].
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
/// Axes dim0 and dim1 swapped.
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
/// Elements [start, start + length) of axis dim.
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
/// Elements [start, end) of axis dim, Python style: negative indices count from the end, out-of-range ones clamp.
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
/// The tensors joined along an existing axis (same sizes elsewhere). Promote under autocast (PyTorch's list).
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
/// The tensors (one shape) joined along a new axis dim.
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
/// x cut along dim into pieces of `size` (the last may be smaller).
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);

// ---- embedding and attention ----
/// Rows of weight (num_embeddings, dim) picked by i64 ids of any shape: (ids..., dim). The gradient of weight adds
/// the rows of the output gradient in ascending position (deterministic: the same bits every run, also on CUDA);
/// ids get none. An id outside [0, num_embeddings) is an error.
Tensor embedding(const Tensor& weight, const Tensor& ids);
/// x where mask (u8, broadcast to x) is zero, `value` where it is not.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
/// Softmax over `axis` (any axis; the last without copies).
Tensor softmax(const Tensor& x, int64_t axis);
/// (n, n) u8 on `device`: 1 above the diagonal (the positions a causal attention hides), 0 elsewhere.
Tensor causal_mask(int64_t n, Device device = Device::cpu());
/// softmax(q @ k^T * scale [+ causal mask]) @ v for q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) with the same
/// leading dims; scale <= 0 means 1/sqrt(E). A composite (PyTorch's math path): q is scaled before its product
/// with k (so float16 logits stay in range), the products run in autocast's lower precision and the softmax in
/// float32; masked positions get -inf.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                    double scale = 0.0);

// ---- operators (scalars become 0-d tensors of the tensor's dtype) ----
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// ---- convolution, pooling, batch norm (NCHW contiguous) ----
/// 2-D convolution (groups = 1): x (N, C, H, W), weight (OC, C, KH, KW), bias (OC) or undefined -> (N, OC, OH, OW).
/// One op for autocast (lower precision, bias included, like PyTorch's conv2d).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), int64_t stride = 1,
              int64_t padding = 0, int64_t dilation = 1);
/// Max pooling over kernel x kernel windows; stride <= 0 means stride = kernel. Padding reads as -inf.
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
/// Average pooling (padding counted in the divisor, PyTorch's count_include_pad=true); stride <= 0 means kernel.
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
/// Batch normalisation of x (N, C) or (N, C, ...) per channel C. Training: batch statistics (biased variance), and
/// running_mean/running_var (if defined) updated in place with momentum and the unbiased variance; eval: running
/// statistics. Statistics, running averages, weight and bias are float32 (f64 for f64 x) whatever x's dtype; the
/// output has x's dtype. Pass-through under autocast.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

}  // namespace mixtape
