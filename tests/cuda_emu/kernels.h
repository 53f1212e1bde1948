#pragma once
// Kernels that exercise the CUDA emulation itself (tests/test_cuda_emu*.cpp; built only with MIXTAPE_CUDA_EMU):
// each launcher launches one kernel and returns cudaGetLastError() (launch errors only; faults of the kernel show
// at the next synchronisation, as on a GPU).
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mixtape::testing::emu_kernels {

/// An empty kernel with this configuration (configuration checks).
cudaError_t launch_empty(dim3 grid, dim3 block, size_t dynamic_shared = 0, cudaStream_t s = nullptr);
/// out[global thread] = block linear index * 1024 + thread linear index, for any grid and block shape.
cudaError_t launch_ids(dim3 grid, dim3 block, uint32_t* out);
/// out[b] = sum of in[b * threads + t] by a shared-memory tree; `with_barrier` false drops the barrier between
/// the stores and the first reads (a missing __syncthreads).
cudaError_t launch_block_sum(const float* in, float* out, int blocks, int threads, bool with_barrier);
/// One block of n threads: s[t] = t, then out[t] = s[(t + 1) % n], with or without a barrier in between.
cudaError_t launch_neighbour(int* out, int n, bool with_barrier);
/// A fault on purpose: 0 threads < 16 call __syncthreads; 1 two different __syncthreads in an if/else;
/// 2 threads >= 32 exit before a __syncthreads; 3 a shuffle mask without the calling lane; 4 a full-mask shuffle
/// after lane 31 exited; 5 a shuffle that reads a lane outside its mask; 6 lanes at different shuffles.
cudaError_t launch_broken(int kind, int* out);
/// One block of 64: out[0..] = warp reductions and votes (see the test for the layout).
cudaError_t launch_warp_ops(int* out);
/// One block of 32: out[t] = what a __shared__ float holds before any thread wrote it, then out[32 + t] after.
cudaError_t launch_shared_poison(float* out);
/// One block of n threads reversing n floats through dynamic shared memory (n * 4 bytes).
cudaError_t launch_dynamic_shared(const float* in, float* out, int n);
/// Every thread of blocks x threads adds 1 to *counter with atomicAdd.
cudaError_t launch_atomic_count(unsigned* counter, int blocks, int threads);
/// p[0..n) = value (grid-stride) on `stream`.
cudaError_t launch_fill(float* p, size_t n, float value, cudaStream_t stream = nullptr);
/// p[i] += 1 for i in [0, n) on `stream`.
cudaError_t launch_increment(float* p, size_t n, cudaStream_t stream = nullptr);
/// One thread: p[index] = value (out-of-bounds tests).
cudaError_t launch_write_at(float* p, size_t index, float value);

}  // namespace mixtape::testing::emu_kernels
