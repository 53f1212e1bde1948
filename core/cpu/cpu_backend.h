#pragma once
// The CPU backend: loops over the shared functors, Eigen for GEMM. Split by family across core/cpu/*.cpp.
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/cast_rules.h"

namespace mixtape::cpu {

/// 64-byte aligned host buffers straight from the heap, one per tensor, with current/peak accounting.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
};

/// The CPU backend's allocator: by default a CachingAllocator (core/caching_allocator.h) over 64-byte aligned heap
/// segments, so freed tensor memory is reused and a training loop in steady state makes no heap allocation
/// (MemoryStats: current_bytes = bytes tensors hold, reserved_bytes = plus cached blocks, raw_allocations = heap
/// allocations). MIXTAPE_CPU_CACHING=0, and builds with AddressSanitizer or ThreadSanitizer (which must see each
/// tensor's own lifetime), take every tensor from the heap instead (CpuAllocator: reserved == current).
std::unique_ptr<Allocator> make_cpu_allocator();
/// Whether make_cpu_allocator caches (read once per process).
bool cpu_allocator_caches();

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Allocator& allocator() override { return *allocator_; }
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
  void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) override;
  void gemm(const GemmArgs& args) override;
  void softmax(const Tensor& x, const Tensor& out, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override;
  void cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses, double smoothing) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                              const Tensor& grad_logits, double smoothing) override;
  void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdUpdate& u) override;
  void adam_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                   const AdamUpdate& u) override;
  bool unscale_and_check(const std::vector<Tensor>& grads, double inv_scale) override;
  void unscale_and_check_into(const std::vector<Tensor>& grads, const Tensor& scale, const Tensor& found_inf) override;
  void update_loss_scale(const Tensor& scale, const Tensor& growth_tracker, const Tensor& hysteresis_tracker,
                         const Tensor& found_inf, const LossScaleUpdate& u) override;
  // conv / pool (cpu_conv.cpp), batch norm (cpu_norm.cpp)
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
  std::unique_ptr<Allocator> allocator_ = make_cpu_allocator();
};

/// A per-thread buffer of at least n values of S, reused across calls: slot (0..3) tells apart the buffers one kernel
/// holds at once. Shared by the CPU kernels that widen rows or gather columns (convolution, pooling, batch norm),
/// none of which calls another while holding its buffers.
template <class S>
S* thread_scratch(int slot, int64_t n) {
  thread_local std::vector<S> bufs[4];
  std::vector<S>& b = bufs[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

/// Converts an accumulate-type value to storage type T, rounding once (core/cast_rules.h: the CUDA kernels store
/// with the same rules).
template <class T, class A>
inline T store(A v) {
  return cast_rules::store<T>(v);
}

}  // namespace mixtape::cpu
