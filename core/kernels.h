#pragma once
// Raw (not recorded) tensor ops: validate arguments, allocate the output on the inputs' device,
// and call that device's backend. The differentiable API in autograd/ops.h is built on these.
#include <utility>
#include <vector>

#include "core/backend.h"

namespace mixtape::kernels {

/// y = op(x), same shape and dtype.
Tensor unary(UnaryOp op, const Tensor& x);
/// op(a, b) with NumPy broadcasting; a and b must share dtype and device. Comparisons return u8.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
/// cond ? a : b with broadcasting over all three (cond u8).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// A copy converted to dtype (x itself when already that dtype).
Tensor cast(const Tensor& x, DType dtype);
/// x broadcast (copied) to `shape`.
Tensor broadcast_to(const Tensor& x, const Shape& shape);
/// Sums a broadcast result back to `shape` (the un-broadcasting of gradients).
Tensor sum_to(const Tensor& x, const Shape& shape);
/// A view of x with another shape (one dimension may be -1), sharing storage.
Tensor view(const Tensor& x, const Shape& shape);

/// Reduction over `axes` (empty = all axes); keepdim keeps reduced axes as size 1.
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim);
/// Index of the maximum along one axis (i64).
Tensor argmax(const Tensor& x, int64_t axis, bool keepdim);

/// Matrix product. a: (..., m, k) (or (..., k, m) when trans_a), b: (k, n) or (..., k, n) with the same
/// leading dims as a (or transposed when trans_b); batch dims of a 2-D operand are shared.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
/// epilogue(op(a) @ op(b) + bias[None, :]) with one rounding. matmul's shapes restricted to one GEMM: both 2-D,
/// or a batched a (without trans_a) with a 2-D b; bias (n) in a's dtype; epilogue must not be none.
Tensor matmul_bias(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const Tensor& bias,
                   GemmEpilogue epilogue);
/// {op(a) @ op(b), sums} for 2-D a and b, sums (m) = op(a) summed over k in a's dtype, rounded once (a Linear's
/// weight and bias gradients from one GEMM: a = grad_out (rows, out) with trans_a, b = input (rows, in)).
std::pair<Tensor, Tensor> matmul_with_a_sums(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);
/// Validates a fully described GEMM (operands on one device with one floating dtype, sizes and batch strides
/// within each tensor, k >= 1, epilogue bias and a_sums shapes/dtypes, batch == 1 for both) and runs it on that
/// device's backend; out is written in place.
void gemm(const GemmArgs& args);

/// Floating-point operations (2 per multiply-add) of the matrix products and convolutions run so far in this
/// process, on every device (gemm, matmul and the conv2d passes count themselves): for benchmarks, a training
/// step's count against the measured GEMM rate is its floor.
int64_t matmul_flops();
/// Adds to matmul_flops (the ops above call it).
void count_matmul_flops(int64_t flops);

// ---- layout: every result is a new contiguous tensor (tensors are contiguous row-major, DESIGN §2) ----
/// x with its axes reordered: result axis i is x's axis dims[i] (a permutation of 0..dim-1; negative counts from
/// the end).
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
/// Elements [start, start + length) of axis `dim`.
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
/// In place: dst's elements [start, start + src.size(dim)) along `dim` become src (same dtype and device; the
/// other axes equal).
void copy_into(const Tensor& src, const Tensor& dst, int64_t dim, int64_t start);
/// The tensors joined along `dim` (same dtype, device, and sizes on the other axes).
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
/// Rows of weight (v, d) picked by i64 ids of any shape: (ids..., d).
Tensor embedding(const Tensor& weight, const Tensor& ids);
/// The gradient of embedding: (num_rows, d), each row the sum of g's rows whose id names it (deterministic).
Tensor embedding_backward(const Tensor& g, const Tensor& ids, int64_t num_rows);

/// Softmax / log-softmax over the last axis.
Tensor softmax(const Tensor& x, bool log);
Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log);
/// Per-sample cross-entropy of logits (N, C) with i64 labels (N); returns (N).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, double label_smoothing);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                              double label_smoothing);

/// Checks two tensors share a device, naming the op.
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
/// Checks two tensors share a dtype, naming the op.
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);

}  // namespace mixtape::kernels
