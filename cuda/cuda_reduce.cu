// CUDA reductions over the middle axis of an (outer, n, inner) view (core/cpu/cpu_reduce.cpp's semantics):
// float accumulation for f32/f16/bf16 and one rounding of the output; max/min propagate NaN; argmax returns the
// first NaN if any, else the first maximum (as PyTorch and the CPU). Deterministic: the combination order depends
// only on the shape (fixed launch configuration, fixed shuffle/shared-memory trees, no atomics).
//   inner == 1: a warp per row (n <= 1024) or a block per row, split across blocks with a second pass when there
//               are too few rows to fill the GPU (cuda/launch_plan.h)
//   inner >  1: column kernel, 32 adjacent columns per block (coalesced), rows spread over blockDim.y
#include <limits>

#include <cuda/std/limits>

#include "core/cast_rules.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/kernel_common.cuh"
#include "cuda/launch_plan.h"

namespace mixtape::cuda {

namespace {

/// NaN-propagating maximum / minimum of two partial results (a NaN anywhere makes the result NaN).
struct MaxR {
  using Acc = float;
  __device__ static Acc identity() { return -::cuda::std::numeric_limits<float>::infinity(); }
  __device__ static Acc load(float v, int64_t) { return v; }
  __device__ static Acc combine(Acc a, Acc b) { return a != a ? a : (b != b ? b : (b > a ? b : a)); }
};
struct MinR {
  using Acc = float;
  __device__ static Acc identity() { return ::cuda::std::numeric_limits<float>::infinity(); }
  __device__ static Acc load(float v, int64_t) { return v; }
  __device__ static Acc combine(Acc a, Acc b) { return a != a ? a : (b != b ? b : (b < a ? b : a)); }
};
struct SumR {
  using Acc = float;
  __device__ static Acc identity() { return 0.0f; }
  __device__ static Acc load(float v, int64_t) { return v; }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }
};
/// First NaN if any, else the first maximum: the CPU's sequential scan, made associative.
struct ArgmaxR {
  using Acc = ValIdx;
  __device__ static Acc identity() { return {-::cuda::std::numeric_limits<float>::infinity(), INT64_MAX}; }
  __device__ static Acc load(float v, int64_t i) { return {v, i}; }
  __device__ static Acc combine(Acc a, Acc b) {
    const bool an = a.v != a.v, bn = b.v != b.v;
    if (an || bn) {
      if (an && bn) return a.i <= b.i ? a : b;
      return an ? a : b;
    }
    if (b.v > a.v) return b;
    if (a.v > b.v) return a;
    return a.i <= b.i ? a : b;
  }
};

struct CombineOp {
  template <class R>
  struct Of {
    __device__ typename R::Acc operator()(typename R::Acc a, typename R::Acc b) const { return R::combine(a, b); }
  };
};

/// Writes a final accumulator: sum/max/min as T, mean scaled by 1/n, argmax as its index.
template <class R, class T>
__device__ __forceinline__ void write_result(void* out, int64_t pos, typename R::Acc acc, float scale) {
  if constexpr (std::is_same_v<R, ArgmaxR>) static_cast<int64_t*>(out)[pos] = acc.i;
  else static_cast<T*>(out)[pos] = cast_rules::store<T>(acc * scale);
}

/// Warp per row (inner == 1): out[row] from x[row, 0:n].
template <class R, class T>
__global__ void row_warp_kernel(const T* __restrict__ x, void* out, int64_t outer, int64_t n, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < outer;
       row += warps_per_grid) {
    const T* px = x + row * n;
    typename R::Acc acc = R::identity();
    for (int64_t j = lane; j < n; j += 32) acc = R::combine(acc, R::load(static_cast<float>(px[j]), j));
    acc = warp_all_reduce(acc, typename CombineOp::template Of<R>{});
    if (lane == 0) write_result<R, T>(out, row, acc, scale);
  }
}

/// Block per (row, split) (inner == 1): split s of gridDim.y covers a contiguous range of the row. With one
/// split the result is written to `out`; otherwise the accumulator goes to partial[row * splits + s].
template <class R, class T>
__global__ void row_block_kernel(const T* __restrict__ x, void* out, typename R::Acc* partial, int64_t n,
                                 float scale) {
  __shared__ typename R::Acc scratch[32];
  const int64_t row = blockIdx.x, splits = gridDim.y, s = blockIdx.y;
  const int64_t chunk = (n + splits - 1) / splits;
  const int64_t begin = s * chunk, end = begin + chunk < n ? begin + chunk : n;
  const T* px = x + row * n;
  typename R::Acc acc = R::identity();
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x)
    acc = R::combine(acc, R::load(static_cast<float>(px[j]), j));
  acc = block_all_reduce(acc, typename CombineOp::template Of<R>{}, scratch);
  if (threadIdx.x == 0) {
    if (splits == 1) write_result<R, T>(out, row, acc, scale);
    else partial[row * splits + s] = acc;
  }
}

/// Second pass of split rows: a warp per row combines its `splits` partials in a fixed order.
template <class R, class T>
__global__ void combine_partials_kernel(const typename R::Acc* __restrict__ partial, void* out, int64_t outer,
                                        int64_t splits, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= outer) return;
  typename R::Acc acc = R::identity();
  for (int64_t j = lane; j < splits; j += 32) acc = R::combine(acc, partial[row * splits + j]);
  acc = warp_all_reduce(acc, typename CombineOp::template Of<R>{});
  if (lane == 0) write_result<R, T>(out, row, acc, scale);
}

/// Column reduce (inner > 1): block (32, by) covers 32 adjacent columns of one outer slice; thread (c, y) folds
/// rows y, y + by, ...; the by partials are combined in order y = 0, 1, ... by thread y == 0.
template <class R, class T>
__global__ void column_kernel(const T* __restrict__ x, void* out, int64_t outer, int64_t n, int64_t inner,
                              float scale) {
  __shared__ typename R::Acc scratch[32][33];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    typename R::Acc acc = R::identity();
    if (col < inner) {
      const T* px = x + o * n * inner + col;
      for (int64_t r = threadIdx.y; r < n; r += blockDim.y)
        acc = R::combine(acc, R::load(static_cast<float>(px[r * inner]), r));
    }
    scratch[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < inner) {
      for (unsigned y = 1; y < blockDim.y; ++y) acc = R::combine(acc, scratch[y][threadIdx.x]);
      write_result<R, T>(out, o * inner + col, acc, scale);
    }
    __syncthreads();
  }
}

template <class R, class T>
void launch_reduce(CudaBackend& be, const T* x, void* out, int64_t outer, int64_t n, int64_t inner, float scale) {
  const cudaStream_t s = be.stream();
  const plan::ReducePlan p = plan::plan_reduce(outer, n, inner);
  if (p.kind == plan::ReducePlan::column) {
    const unsigned by = n >= 256 ? 32 : 8;
    const dim3 block(32, by);
    const dim3 grid(static_cast<unsigned>((inner + 31) / 32), static_cast<unsigned>(std::min<int64_t>(outer, 65535)));
    column_kernel<R, T><<<grid, block, 0, s>>>(x, out, outer, n, inner, scale);
  } else if (p.kind == plan::ReducePlan::row_warp) {
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((outer + 7) / 8, 1 << 20));
    row_warp_kernel<R, T><<<blocks, 256, 0, s>>>(x, out, outer, n, scale);
  } else {
    using Acc = typename R::Acc;
    Acc* partial = p.splits > 1 ? static_cast<Acc*>(be.workspace(sizeof(Acc) * outer * p.splits)) : nullptr;
    const dim3 grid(static_cast<unsigned>(outer), static_cast<unsigned>(p.splits));
    row_block_kernel<R, T><<<grid, plan::kRowBlockThreads, 0, s>>>(x, out, partial, n, scale);
    if (p.splits > 1) {
      MIXTAPE_CUDA_CHECK_LAUNCH();
      combine_partials_kernel<R, T><<<static_cast<unsigned>((outer + 7) / 8), 256, 0, s>>>(partial, out, outer,
                                                                                          p.splits, scale);
    }
  }
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  DeviceGuard g(index_);
  dispatch_compute(x.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (outer * inner == 0) return;
    void* po = out.raw_data();
    if (n == 0) {  // only sum and mean get here (checked by the caller): 0, resp. NaN as the CPU
      fill(out, op == ReduceOp::mean ? std::numeric_limits<double>::quiet_NaN() : 0.0);
      return;
    }
    const T* px = static_cast<const T*>(x.raw_data());
    const float scale = op == ReduceOp::mean ? 1.0f / static_cast<float>(n) : 1.0f;
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::mean: return launch_reduce<SumR, T>(*this, px, po, outer, n, inner, scale);
      case ReduceOp::max: return launch_reduce<MaxR, T>(*this, px, po, outer, n, inner, scale);
      case ReduceOp::min: return launch_reduce<MinR, T>(*this, px, po, outer, n, inner, scale);
      case ReduceOp::argmax: return launch_reduce<ArgmaxR, T>(*this, px, po, outer, n, inner, scale);
    }
    throw Error("reduce: invalid op");
  });
}

}  // namespace mixtape::cuda
