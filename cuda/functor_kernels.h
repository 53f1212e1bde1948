#pragma once
// A raw-pointer entry to the generic elementwise kernels of cuda/cuda_elementwise.cu (generated from the shared
// functors of core/functors.h, DESIGN §3): the math is written once and runs on the CPU backend and the GPU.
#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/backend.h"
#include "core/dtype.h"

namespace mixtape::cuda {

/// y[i] = op(x[i]) for i in [0, n): x and y are device pointers to n elements of `dtype` (f32, f16 or bf16),
/// computed in float and rounded once into dtype. Asynchronous on `stream`; launch errors throw
/// mixtape::Error, as does a dtype other than f32/f16/bf16 (checked before touching the GPU). n == 0 is a no-op.
void launch_unary(UnaryOp op, DType dtype, const void* x, void* y, int64_t n, cudaStream_t stream = nullptr);

}  // namespace mixtape::cuda
