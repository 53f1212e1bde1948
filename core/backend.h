#pragma once
// The kernel interface one backend implements (CPU in core/cpu, CUDA in cuda/), grouped by family.
// Callers (core/kernels.cpp) allocate outputs and validate arguments; a backend only computes.
#include <cstdint>
#include <vector>

#include "core/broadcast_index.h"
#include "core/tensor.h"

namespace mixtape {

/// Unary elementwise ops (math in core/functors.h).
enum class UnaryOp : uint8_t { identity, neg, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, abs };
/// Binary elementwise ops; comparisons write u8 (0/1); the *_backward ones are fused gradients.
enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  eq, ne, lt, le, gt, ge,
  relu_backward, gelu_backward, tanh_backward, sigmoid_backward, sqrt_backward, rsqrt_backward, abs_backward,
  max_share, min_share
};
/// Reductions over the middle axis of an (outer, n, inner) view.
enum class ReduceOp : uint8_t { sum, mean, max, min, argmax };
/// Distributions for Backend::random.
enum class RandomKind : uint8_t { uniform, normal };

/// "exp", "add", ... for messages and reports.
const char* op_name(UnaryOp op);
const char* op_name(BinaryOp op);
const char* op_name(ReduceOp op);
/// True for eq/ne/lt/le/gt/ge.
constexpr bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq && op <= BinaryOp::ge; }

/// What a GEMM does to its result before the one rounding into out's dtype (cuBLASLt's epilogues).
enum class GemmEpilogue : uint8_t {
  none,       ///< out = alpha * op(a) @ op(b) + beta * out
  bias,       ///< ... + bias[None, :]
  bias_relu,  ///< relu(... + bias[None, :])
  bias_gelu   ///< gelu(... + bias[None, :]) (the exact erf GELU of fn::Gelu)
};

/// out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b], op = transpose when the flag is set.
/// a: (batch, m, k) or (batch, k, m) if trans_a; b: (batch, k, n) or (batch, n, k) if trans_b; out: (batch, m, n).
/// A batch stride of 0 reuses one matrix for every batch entry. Accumulation is in float (double for f64),
/// and the output is rounded once.
struct GemmArgs {
  Tensor a, b, out;
  bool trans_a = false, trans_b = false;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  int64_t stride_a = 0, stride_b = 0, stride_out = 0;  ///< elements between batch entries
  double alpha = 1.0, beta = 0.0;
  /// Optional epilogue (batch == 1 only): bias is (n) in out's dtype, added in float before the activation,
  /// and the result is rounded once.
  GemmEpilogue epilogue = GemmEpilogue::none;
  Tensor bias;
  /// Optional (batch == 1 only): receives a_sums[i] = sum_k op(a)[i, k] (not scaled by alpha) in a's dtype,
  /// rounded once (a Linear's bias gradient in the same pass as its weight gradient: a = grad_out with trans_a,
  /// cuBLASLt's BGRAD epilogue).
  Tensor a_sums;
};

/// Hyper-parameters of one SGD update (PyTorch's torch.optim.SGD semantics).
struct SgdUpdate {
  double lr = 0.01, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = false;  ///< the momentum buffer is initialised to the gradient on the first step
  /// Optional f16/bf16 tensor of param's shape on param's device: receives the updated param rounded once, in
  /// the same pass (the autocast compute copy).
  Tensor compute_copy;
  /// Optional one-element f32 tensor on param's device: when it is nonzero the whole update is skipped (param,
  /// state and compute copy untouched), decided on the device without a host round-trip.
  Tensor found_inf;
};

/// Hyper-parameters of one Adam/AdamW update (PyTorch's torch.optim.Adam / AdamW semantics).
struct AdamUpdate {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled_weight_decay = false;  ///< AdamW: param *= 1 - lr * weight_decay before the Adam step
  int64_t step = 1;                     ///< 1-based step count, for bias correction
  Tensor compute_copy;                  ///< as SgdUpdate::compute_copy
  Tensor found_inf;                     ///< as SgdUpdate::found_inf
};

/// The rule of amp::GradScaler::update(), applied on the device (see amp/grad_scaler.h).
struct LossScaleUpdate {
  double growth_factor = 2.0, backoff_factor = 0.5, min_scale = 0.0, max_scale = 16777216.0;
  int64_t growth_interval = 2000, hysteresis = 1;
};

/// Geometry of a 2-D convolution (groups = 1).
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
};
/// Geometry of a 2-D pooling window (no dilation, floor mode).
struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};
/// Batch-norm settings: batch statistics in training, running ones in eval.
struct BatchNormParams {
  bool training = true;
  double momentum = 0.1, eps = 1e-5;
};

/// A copy between strided views of two tensors of one dtype and device (permute, narrow, concatenation): iteration
/// element i, over index.sizes, goes from src element src_offset + off[1] to dst element dst_offset + off[0], where
/// index.offsets(i, off) walks index.strides[0] (dst) and index.strides[1] (src). Offsets and strides count
/// elements. Elements are moved as bits: no arithmetic, so no rounding and every dtype alike.
struct StridedCopy {
  BroadcastIndex<2> index;
  int64_t numel = 0;
  int64_t dst_offset = 0, src_offset = 0;
};

/// One device's kernels.
class Backend {
 public:
  virtual ~Backend() = default;
  /// "cpu", "cuda".
  virtual const char* name() const = 0;
  /// The allocator tensors of this device use.
  virtual Allocator& allocator() = 0;

  // elementwise: inputs broadcast to out's shape; all inputs share one dtype; out has it too
  // (comparisons: u8).
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out) = 0;
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  /// out = cond != 0 ? a : b (cond is u8, broadcasting).
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  /// Converts between any dtypes (same shape); float targets round to nearest even.
  virtual void cast(const Tensor& x, const Tensor& out) = 0;
  virtual void fill(const Tensor& out, double value) = 0;
  virtual void arange(const Tensor& out, double start, double step) = 0;
  /// Counter-based draw: element i depends only on (seed, offset, i); uniform in [a, b) or normal(a, b).
  virtual void random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) = 0;
  /// Same-device copy of equal byte size.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  /// The copy described by c (see StridedCopy), src and dst of one dtype; elements of dst outside it untouched.
  virtual void strided_copy(const Tensor& src, const Tensor& dst, const StridedCopy& c) = 0;

  // embedding (rows gathered by index, and the gradient scattered back)
  /// out (n, d) = rows ids (n, i64) of weight (v, d). An id outside [0, v) throws mixtape::Error (CPU) or stops the
  /// kernel with a device fault (CUDA: __trap, like PyTorch's device-side assert).
  virtual void embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) = 0;
  /// gw (v, d) = for every row r the sum of the rows n of g (n, d) with ids[n] == r, added in ascending n in float32
  /// (float64 for f64) and rounded once (zero for a row no id names): the same bits on every run and backend.
  virtual void embedding_backward(const Tensor& g, const Tensor& ids, const Tensor& gw) = 0;

  // reductions: x viewed as (outer, n, inner) -> out (outer, inner); argmax writes i64.
  virtual void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) = 0;

  // matrix products
  virtual void gemm(const GemmArgs& args) = 0;

  // softmax family over the last axis of x viewed as (rows, cols)
  virtual void softmax(const Tensor& x, const Tensor& out, bool log) = 0;
  /// gx = y * (gy - sum(gy * y)) for softmax, gy - exp(y) * sum(gy) for log-softmax (y = forward output).
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) = 0;
  /// Per-row loss of logits (N, C) against i64 labels (N), with label smoothing; losses (N) in logits' dtype.
  /// Labels outside [0, C) throw mixtape::Error.
  virtual void cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses, double smoothing) = 0;
  /// grad_logits = grad_losses[:, None] * (softmax(logits) - target distribution).
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                                      const Tensor& grad_logits, double smoothing) = 0;

  // optimizer updates, in place on the master parameter (f32 or f64) and its state; one pass per tensor
  /// param -= lr * d, d = grad (+ weight decay, momentum, nesterov); momentum_buf may be undefined when momentum == 0.
  virtual void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdUpdate& u) = 0;
  /// Adam/AdamW step updating param, exp_avg and exp_avg_sq in place.
  virtual void adam_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                           const AdamUpdate& u) = 0;

  // AMP
  /// One pass over every gradient (all of one dtype): multiplies each element by inv_scale in place and returns
  /// whether any element (before scaling) was inf or NaN. Grads with non-finite values are still scaled.
  virtual bool unscale_and_check(const std::vector<Tensor>& grads, double inv_scale) = 0;
  /// The same pass without a host round-trip: inv_scale = float32(1 / double(scale)) is computed on the device
  /// from `scale` (one-element f32); `found_inf` (one-element f32) is set to 1 when any element is inf/NaN and
  /// left as it was otherwise (callers zero it once per step, so several groups accumulate into it).
  /// One launch for all gradients on CUDA (multi-tensor).
  virtual void unscale_and_check_into(const std::vector<Tensor>& grads, const Tensor& scale, const Tensor& found_inf);
  /// GradScaler::update() on the device: scale (f32), growth_tracker and hysteresis_tracker (i64), all
  /// one-element, updated in place from found_inf (f32, nonzero = overflow).
  virtual void update_loss_scale(const Tensor& scale, const Tensor& growth_tracker, const Tensor& hysteresis_tracker,
                                 const Tensor& found_inf, const LossScaleUpdate& u);

  // conv / pool / norm (NCHW contiguous, groups = 1). Defaults throw "not implemented on this backend".
  /// out (N, OC, OH, OW) = conv(x (N, C, H, W), w (OC, C, KH, KW)) + b (OC) (b may be undefined).
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p);
  /// gx (N, C, H, W) from gy (N, OC, OH, OW) and w.
  virtual void conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p);
  /// gw (OC, C, KH, KW) and gb (OC, may be undefined) from gy and x.
  virtual void conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                                      const Conv2dParams& p);
  /// Max pooling; indices (i64, out's shape) are flat positions in the input's H*W plane.
  virtual void max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices, const Pool2dParams& p);
  /// gx (zero-filled here) += gy at the saved indices.
  virtual void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx);
  /// Average pooling (count_include_pad, as PyTorch's default).
  virtual void avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p);
  virtual void avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p);
  /// Batch norm over x viewed as (N, C, L). Statistics, running averages, weight and bias are float32 (f64 for f64 x);
  /// save_mean/save_invstd (C) receive the statistics used (batch ones in training, running ones in eval); in
  /// training the running averages are updated in place (unbiased variance). weight/bias may be undefined.
  virtual void batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                          const Tensor& bias, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                          const BatchNormParams& p);
  /// Gradients of batch_norm; gx, gweight, gbias may each be undefined (not needed).
  virtual void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                                   const Tensor& save_invstd, const Tensor& gx, const Tensor& gweight,
                                   const Tensor& gbias, const BatchNormParams& p);
};

/// The backend of a device; throws mixtape::Error naming the device when it is not available.
Backend& backend_for(Device device);
/// The CPU backend.
Backend& cpu_backend();
/// Whether tensors can be created on `device` in this build and on this machine.
bool device_available(Device device);
/// Number of CUDA devices usable (0 in a build without CUDA or without a driver/GPU).
int cuda_device_count();
/// Copies between any two devices (same dtype and byte size).
void copy_between_devices(const Tensor& src, const Tensor& dst);

}  // namespace mixtape
