#pragma once
// The CUDA backend (DESIGN §1, §3): the Backend interface of core/backend.h on one GPU. One instance per device,
// created on first use; every kernel of a device runs on that device's one stream, so work is ordered without
// host synchronisation and a freed buffer can be reused at once by the next launch on the same stream.
// Split by family across cuda/*.cpp and cuda/*.cu:
//   cuda_backend.cpp      device, stream, handles, workspace, allocator, transfers
//   cuda_elementwise.cu   unary/binary/where/cast/fill/arange/random/copy (the shared functors)
//   cuda_reduce.cu        reductions;   cuda_softmax.cu   softmax, log-softmax, cross-entropy
//   cuda_gemm.cpp         cuBLASLt GEMM with epilogues and a per-shape algorithm cache
//   cuda_optim.cu         fused SGD/Adam/AdamW, multi-tensor unscale + inf check, loss-scale update
//   cuda_conv.cpp         cuDNN convolution;   cuda_pool_norm.cu   pooling, batch norm
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstddef>
#include <memory>

#include "core/backend.h"

namespace mixtape::cuda {

/// Makes device `index` current for the scope and restores the previous device on exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

class CudaBackend final : public Backend {
 public:
  /// Sets up device `index` (stream, allocator); throws mixtape::Error when it does not exist.
  explicit CudaBackend(int index);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const char* name() const override { return "cuda"; }
  Allocator& allocator() override;

  /// The device number.
  int index() const { return index_; }
  /// The stream every kernel of this device runs on.
  cudaStream_t stream() const { return stream_; }
  /// The cuBLASLt handle (created on first use).
  cublasLtHandle_t lt_handle();
  /// The cuDNN handle bound to stream() (created on first use).
  cudnnHandle_t cudnn_handle();
  /// A stream-ordered scratch buffer of at least `bytes` (grown on demand, kept); valid until the next call.
  void* workspace(size_t bytes);
  /// Waits for everything queued on stream().
  void synchronize();

  // elementwise (cuda_elementwise.cu)
  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void cast(const Tensor& x, const Tensor& out) override;
  void fill(const Tensor& out, double value) override;
  void arange(const Tensor& out, double start, double step) override;
  void random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void strided_copy(const Tensor& src, const Tensor& dst, const StridedCopy& c) override;
  void embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) override;
  void embedding_backward(const Tensor& g, const Tensor& ids, const Tensor& gw) override;
  // reductions (cuda_reduce.cu)
  void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) override;
  // GEMM (cuda_gemm.cpp)
  void gemm(const GemmArgs& args) override;
  // softmax family (cuda_softmax.cu)
  void softmax(const Tensor& x, const Tensor& out, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override;
  void cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses, double smoothing) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                              const Tensor& grad_logits, double smoothing) override;
  // optimizer and AMP (cuda_optim.cu)
  void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdUpdate& u) override;
  void adam_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                   const AdamUpdate& u) override;
  bool unscale_and_check(const std::vector<Tensor>& grads, double inv_scale) override;
  void unscale_and_check_into(const std::vector<Tensor>& grads, const Tensor& scale, const Tensor& found_inf) override;
  void update_loss_scale(const Tensor& scale, const Tensor& growth_tracker, const Tensor& hysteresis_tracker,
                         const Tensor& found_inf, const LossScaleUpdate& u) override;
  // convolution (cuda_conv.cpp), pooling and batch norm (cuda_pool_norm.cu)
  void conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p) override;
  void conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p) override;
  void conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                              const Conv2dParams& p) override;
  void max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices, const Pool2dParams& p) override;
  void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) override;
  void avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) override;
  void avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) override;
  void batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                  const BatchNormParams& p) override;
  void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd, const Tensor& gx, const Tensor& gweight, const Tensor& gbias,
                           const BatchNormParams& p) override;

 private:
  int index_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::unique_ptr<Allocator> allocator_;
};

/// The backend of CUDA device `index`, created on first use (thread-safe); throws mixtape::Error naming the
/// device when it does not exist or there is no driver/GPU.
CudaBackend& backend(int index);
/// The CUDA backend a CUDA tensor lives on.
CudaBackend& backend_of(const Tensor& t);
/// Copies between the host and a GPU or between two GPUs (same dtype and byte size). Host -> device returns
/// at once (a pageable source is staged through pinned memory first, so the caller may reuse it); GPU -> GPU is
/// ordered by events on both streams; device -> host waits until the host can read the data.
void copy_across_devices(const Tensor& src, const Tensor& dst);

}  // namespace mixtape::cuda
