#pragma once
// Shared pieces of the CUDA kernels (cuda_elementwise.cu, cuda_reduce.cu, cuda_softmax.cu): the dtypes the
// backend computes in, and warp/block reductions. Include from .cu files only.
//
// Compute dtypes of the CUDA backend: f32, f16 and bf16 for all math (accumulating in float, one rounding of the
// output, as the CPU); i64 for binary ops and comparisons (in double, as the CPU), argmax results and `where`;
// u8 for comparison results, `where` conditions and casts. f64 tensors may live on a GPU for storage, fill,
// arange, copy, where and cast only: every other op throws a mixtape::Error naming the op.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"

namespace mixtape::cuda {

/// Throws the error of an op the CUDA backend does not compute in `dtype`.
[[noreturn]] inline void unsupported_dtype(const char* op, DType dtype) {
  throw Error(detail::cat(op, ": the CUDA backend computes in f32, f16 and bf16, got ", dtype_name(dtype),
                          dtype == DType::f64 ? " (f64 tensors on a GPU are for storage only: cast to f32 first, or "
                                                "run this op on the CPU)"
                                              : ""));
}

/// Calls f(type_tag<T>{}) for T in float, Half, BFloat16; throws unsupported_dtype otherwise.
template <class F>
decltype(auto) dispatch_compute(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f16: return f(type_tag<Half>{});
    case DType::bf16: return f(type_tag<BFloat16>{});
    default: break;
  }
  unsupported_dtype(op, t);
}

/// __shfl_xor_sync for the value types the reductions carry.
__device__ __forceinline__ float shfl_xor(float v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
__device__ __forceinline__ int64_t shfl_xor(int64_t v, int o) {
  return static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(v), o));
}

/// A value and its index (argmax, softmax's row maximum).
struct ValIdx {
  float v;
  int64_t i;
};
__device__ __forceinline__ ValIdx shfl_xor(ValIdx a, int o) { return {shfl_xor(a.v, o), shfl_xor(a.i, o)}; }

/// Reduces `v` across the 32 lanes of a warp with `op` (tree order fixed: deterministic); all lanes get it.
template <class V, class Op>
__device__ __forceinline__ V warp_all_reduce(V v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

/// Reduces `v` across the block (blockDim.x a multiple of 32, at most 1024) with `op`; every thread gets the
/// result. `scratch` holds 32 V in shared memory; the block synchronises, so every thread must call this.
template <class V, class Op>
__device__ __forceinline__ V block_all_reduce(V v, Op op, V* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_all_reduce(v, op);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V r = scratch[0];
  for (int w = 1; w < warps; ++w) r = op(r, scratch[w]);  // same order in every thread
  return r;
}

}  // namespace mixtape::cuda
