#pragma once
// The small passes around a cuBLASLt GEMM (cuda/cuda_gemm.cpp) where cuBLASLt's own epilogues do not apply
// (see cuda/gemm_plan.h): an exact-GELU / fallback bias epilogue with one rounding, and the row sums of op(a).
#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/dtype.h"
#include "cuda/gemm_plan.h"

namespace mixtape::cuda {

/// out[i, j] = act(d[i, j] + beta * out[i, j] + bias[j]) in float, rounded once into `dtype` (f32, f16, bf16), for a
/// row-major (m, n) out and a float32 d (d may be out itself when dtype is f32; beta is then 0). Asynchronous on
/// `stream`; launch errors throw mixtape::Error.
void launch_gemm_epilogue(DType dtype, const float* d, void* out, const void* bias, float beta, EpilogueAct act,
                          int64_t m, int64_t n, cudaStream_t stream);

/// sums[i] = sum_r op(a)[i, r] accumulated in float and rounded once into `dtype`, op(a) (m, k); a is row-major
/// (k, m) when trans_a and (m, k) otherwise. Asynchronous on `stream`.
void launch_op_row_sums(DType dtype, const void* a, bool trans_a, int64_t m, int64_t k, void* sums, cudaStream_t stream);

}  // namespace mixtape::cuda
