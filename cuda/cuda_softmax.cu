// CUDA softmax, log-softmax and fused cross-entropy over the last axis (core/cpu/cpu_softmax.cpp's semantics):
// one warp per row for rows up to 1024 columns, one block per row beyond (cuda/launch_plan.h); float math for
// f32/f16/bf16, one rounding of each output.
//
// Row statistics as the CPU: mx = the first maximum (x[0] if it is NaN: NaN never wins a '>' comparison),
// others = sum over j != argmax of exp(x_j - mx), log_sum = log1p(others); log-softmax = (x - mx) - log_sum.
// Only the summation order differs from the CPU (a fixed shuffle/shared-memory tree: deterministic).
//
// Cross-entropy checks labels on the device: a label outside [0, C) makes its row's output NaN and records the
// lowest such row in a device flag, which the host reads back after the kernel (one stream synchronisation per
// call) to throw the CPU's mixtape::Error naming the label and the row.
#include <limits>

#include <cuda/std/limits>

#include "core/cast_rules.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/kernel_common.cuh"
#include "cuda/launch_plan.h"

namespace mixtape::cuda {

namespace {

constexpr int kWarpKernelThreads = 256;  // 8 rows per block

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
/// Maximum ignoring NaN, first index on ties (identity: {-inf, INT64_MAX}).
struct MaxFirstOp {
  __device__ ValIdx operator()(ValIdx a, ValIdx b) const {
    if (b.v > a.v) return b;
    if (a.v > b.v) return a;
    return a.i <= b.i ? a : b;
  }
};

/// The threads that share one row: a warp (kWarp) or the whole block.
template <bool kWarp>
struct RowGroup {
  int lane, width;
  ValIdx* scratch_vi;  // 32 entries of shared memory (block mode)
  float* scratch_f;
  __device__ float sum(float v) const {
    if constexpr (kWarp) return warp_all_reduce(v, AddOp{});
    else return block_all_reduce(v, AddOp{}, scratch_f);
  }
  __device__ ValIdx max_first(ValIdx v) const {
    if constexpr (kWarp) return warp_all_reduce(v, MaxFirstOp{});
    else return block_all_reduce(v, MaxFirstOp{}, scratch_vi);
  }
};

template <bool kWarp>
__device__ __forceinline__ RowGroup<kWarp> make_group(ValIdx* svi, float* sf) {
  if constexpr (kWarp) return {static_cast<int>(threadIdx.x & 31), 32, svi, sf};
  else return {static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), svi, sf};
}

/// First row handled by this group and the step between its rows.
template <bool kWarp>
__device__ __forceinline__ void row_range(int64_t& first, int64_t& step) {
  if constexpr (kWarp) {
    first = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    step = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  } else {
    first = blockIdx.x;
    step = gridDim.x;
  }
}

/// mx and log_sum of one row (see the file comment), in every thread of the group.
template <bool kWarp, class T>
__device__ void row_stats(const RowGroup<kWarp>& g, const T* px, int64_t cols, float& mx, float& log_sum) {
  ValIdx best{-::cuda::std::numeric_limits<float>::infinity(), INT64_MAX};
  for (int64_t j = g.lane; j < cols; j += g.width) {
    const float v = static_cast<float>(px[j]);
    if (v == v) best = MaxFirstOp{}(best, ValIdx{v, j});
  }
  best = g.max_first(best);
  const float x0 = static_cast<float>(px[0]);
  int64_t arg = best.i;
  mx = best.v;
  if (x0 != x0) {  // the CPU starts from x[0]; a NaN there is never replaced
    mx = x0;
    arg = 0;
  }
  float others = 0.0f;
  for (int64_t j = g.lane; j < cols; j += g.width)
    if (j != arg) others += expf(static_cast<float>(px[j]) - mx);
  log_sum = log1pf(g.sum(others));
}

template <bool kWarp, class T>
__global__ void softmax_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int64_t cols, bool log) {
  __shared__ ValIdx svi[32];
  __shared__ float sf[32];
  const RowGroup<kWarp> g = make_group<kWarp>(svi, sf);
  int64_t first, step;
  row_range<kWarp>(first, step);
  for (int64_t r = first; r < rows; r += step) {
    const T* px = x + r * cols;
    T* po = out + r * cols;
    float mx, log_sum;
    row_stats(g, px, cols, mx, log_sum);
    for (int64_t j = g.lane; j < cols; j += g.width) {
      const float z = (static_cast<float>(px[j]) - mx) - log_sum;
      po[j] = cast_rules::store<T>(log ? z : expf(z));
    }
  }
}

template <bool kWarp, class T>
__global__ void softmax_backward_kernel(const T* __restrict__ y, const T* __restrict__ gy, T* __restrict__ gx,
                                        int64_t rows, int64_t cols, bool log) {
  __shared__ ValIdx svi[32];
  __shared__ float sf[32];
  const RowGroup<kWarp> g = make_group<kWarp>(svi, sf);
  int64_t first, step;
  row_range<kWarp>(first, step);
  for (int64_t r = first; r < rows; r += step) {
    const T* py = y + r * cols;
    const T* pg = gy + r * cols;
    T* po = gx + r * cols;
    float s = 0.0f;
    for (int64_t j = g.lane; j < cols; j += g.width)
      s += log ? static_cast<float>(pg[j]) : __fmul_rn(static_cast<float>(pg[j]), static_cast<float>(py[j]));
    s = g.sum(s);
    for (int64_t j = g.lane; j < cols; j += g.width) {
      const float yv = static_cast<float>(py[j]), gv = static_cast<float>(pg[j]);
      po[j] = cast_rules::store<T>(log ? __fsub_rn(gv, __fmul_rn(expf(yv), s)) : __fmul_rn(yv, gv - s));
    }
  }
}

/// Per-row loss (grad_losses == nullptr) or gradient of the smoothed cross-entropy; a label outside [0, cols)
/// writes NaN and lowers *bad_row to its row.
template <bool kWarp, class T>
__global__ void cross_entropy_kernel(const T* __restrict__ logits, const int64_t* __restrict__ labels,
                                     const T* __restrict__ grad_losses, T* __restrict__ out, int64_t rows,
                                     int64_t cols, float eps, unsigned long long* bad_row) {
  __shared__ ValIdx svi[32];
  __shared__ float sf[32];
  const RowGroup<kWarp> g = make_group<kWarp>(svi, sf);
  const float nan = ::cuda::std::numeric_limits<float>::quiet_NaN();
  int64_t first, step;
  row_range<kWarp>(first, step);
  for (int64_t r = first; r < rows; r += step) {
    const int64_t y = labels[r];
    const T* px = logits + r * cols;
    const bool bad = y < 0 || y >= cols;
    if (bad) {
      if (g.lane == 0) atomicMin(bad_row, static_cast<unsigned long long>(r));
      if (grad_losses) {
        for (int64_t j = g.lane; j < cols; j += g.width) out[r * cols + j] = cast_rules::store<T>(nan);
      } else if (g.lane == 0) {
        out[r] = cast_rules::store<T>(nan);
      }
      continue;  // uniform across the group: every thread sees the same label
    }
    float mx, log_sum;
    row_stats(g, px, cols, mx, log_sum);
    if (!grad_losses) {
      // -log p_y = log_sum - (x_y - mx); the smoothing term is the mean of -log p_c
      float mean = 0.0f;
      if (eps != 0.0f) {
        for (int64_t j = g.lane; j < cols; j += g.width) mean += static_cast<float>(px[j]) - mx;
        mean = g.sum(mean);
      }
      if (g.lane == 0) {
        float loss = __fmul_rn(1.0f - eps, log_sum - (static_cast<float>(px[y]) - mx));
        if (eps != 0.0f) loss = __fadd_rn(loss, __fmul_rn(eps, log_sum - mean / static_cast<float>(cols)));
        out[r] = cast_rules::store<T>(loss);
      }
    } else {
      const float gr = static_cast<float>(grad_losses[r]), uniform = eps / static_cast<float>(cols);
      T* po = out + r * cols;
      for (int64_t j = g.lane; j < cols; j += g.width) {
        const float target = (j == y ? 1.0f - eps : 0.0f) + uniform;
        po[j] = cast_rules::store<T>(__fmul_rn(gr, expf((static_cast<float>(px[j]) - mx) - log_sum) - target));
      }
    }
  }
}

/// Grid of a row kernel: warp mode packs 8 rows per block; block mode one block per row (grid-stride beyond).
inline unsigned row_blocks(bool warp, int64_t rows) {
  const int64_t b = warp ? (rows + 7) / 8 : rows;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(b, 1), int64_t{1} << 20));
}

/// Launches kernel<true> (warp per row) or kernel<false> (block per row) for `cols`.
#define MIXTAPE_ROW_LAUNCH(kernel, T, rows, cols, stream, ...)                                                   \
  do {                                                                                                           \
    if (plan::softmax_warp_per_row(cols))                                                                        \
      kernel<true, T><<<row_blocks(true, rows), kWarpKernelThreads, 0, stream>>>(__VA_ARGS__);                   \
    else                                                                                                         \
      kernel<false, T><<<row_blocks(false, rows), plan::kRowBlockThreads, 0, stream>>>(__VA_ARGS__);             \
    MIXTAPE_CUDA_CHECK_LAUNCH();                                                                                 \
  } while (0)

/// Runs one cross-entropy kernel and throws the CPU's error for the lowest row with a bad label.
template <class T>
void run_cross_entropy(CudaBackend& be, const Tensor& logits, const Tensor& labels, const T* grad_losses, T* out,
                       double smoothing) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (rows == 0) return;
  const cudaStream_t s = be.stream();
  auto* flag = static_cast<unsigned long long*>(be.workspace(sizeof(unsigned long long)));
  MIXTAPE_CUDA_CHECK(cudaMemsetAsync(flag, 0xff, sizeof(unsigned long long), s));
  const T* px = static_cast<const T*>(logits.raw_data());
  const int64_t* pl = static_cast<const int64_t*>(labels.raw_data());
  MIXTAPE_ROW_LAUNCH(cross_entropy_kernel, T, rows, cols, s, px, pl, grad_losses, out, rows, cols,
                     static_cast<float>(smoothing), flag);
  unsigned long long bad = 0;
  MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(&bad, flag, sizeof bad, cudaMemcpyDeviceToHost, s));
  MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(s));
  if (bad == ~0ull) return;
  int64_t y = 0;
  MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(&y, pl + bad, sizeof y, cudaMemcpyDeviceToHost, s));
  MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(s));
  throw Error(detail::cat("cross_entropy: label ", y, " at index ", bad, " is out of range for ", cols,
                          " classes (expected 0..", cols - 1, ")"));
}

}  // namespace

void CudaBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  DeviceGuard g(index_);
  dispatch_compute(x.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t cols = x.size(-1), rows = cols ? x.numel() / cols : 0;
    if (rows == 0 || cols == 0) return;
    MIXTAPE_ROW_LAUNCH(softmax_kernel, T, rows, cols, stream_, static_cast<const T*>(x.raw_data()),
                       static_cast<T*>(out.raw_data()), rows, cols, log);
  });
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  DeviceGuard g(index_);
  dispatch_compute(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t cols = y.size(-1), rows = cols ? y.numel() / cols : 0;
    if (rows == 0 || cols == 0) return;
    MIXTAPE_ROW_LAUNCH(softmax_backward_kernel, T, rows, cols, stream_, static_cast<const T*>(y.raw_data()),
                       static_cast<const T*>(gy.raw_data()), static_cast<T*>(gx.raw_data()), rows, cols, log);
  });
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses, double smoothing) {
  DeviceGuard g(index_);
  dispatch_compute(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_cross_entropy<T>(*this, logits, labels, nullptr, static_cast<T*>(losses.raw_data()), smoothing);
  });
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                                         const Tensor& grad_logits, double smoothing) {
  DeviceGuard g(index_);
  dispatch_compute(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_cross_entropy<T>(*this, logits, labels, static_cast<const T*>(grad_losses.raw_data()),
                         static_cast<T*>(grad_logits.raw_data()), smoothing);
  });
}

}  // namespace mixtape::cuda
