// Kernels that exercise the CUDA emulation (tests/cuda_emu/kernels.h). Written as ordinary CUDA: in the emulation
// build cu2cpp rewrites this file like the backend's own .cu files.
#include "tests/cuda_emu/kernels.h"

namespace mixtape::testing::emu_kernels {

namespace {

__global__ void empty_kernel() {}

__global__ void ids_kernel(uint32_t* out) {
  const uint32_t block = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
  const uint32_t thread = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  out[block * (blockDim.x * blockDim.y * blockDim.z) + thread] = block * 1024 + thread;
}

__global__ void block_sum_kernel(const float* in, float* out, bool with_barrier) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  if (with_barrier) __syncthreads();
  for (unsigned width = blockDim.x / 2; width > 0; width /= 2) {
    if (t < width) s[t] += s[t + width];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

__global__ void neighbour_kernel(int* out, bool with_barrier) {
  __shared__ int s[1024];
  const unsigned t = threadIdx.x, n = blockDim.x;
  s[t] = static_cast<int>(t);
  if (with_barrier) __syncthreads();
  out[t] = s[(t + 1) % n];
}

__global__ void broken_kernel(int kind, int* out) {
  const unsigned t = threadIdx.x, lane = t & 31;
  int v = static_cast<int>(t);
  switch (kind) {
    case 0:
      if (t < 16) __syncthreads();
      break;
    case 1:
      if (t < 16) {
        __syncthreads();
      } else {
        __syncthreads();
      }
      break;
    case 2:
      if (t >= 32) return;
      __syncthreads();
      break;
    case 3:
      v = __shfl_sync(0xfffffffeu, v, 1);  // lane 0 is not in the mask it passes
      break;
    case 4:
      if (lane == 31) return;
      v = __shfl_xor_sync(0xffffffffu, v, 1);  // names lane 31, which has exited
      break;
    case 5:
      if (lane < 16) v = __shfl_sync(0x0000ffffu, v, 20);  // lane 20 is outside the mask
      break;
    case 6:
      if (lane < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
      else v = __shfl_xor_sync(0xffffffffu, v, 2);
      break;
  }
  out[t] = v;
}

__global__ void warp_ops_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x), lane = t & 31, warp = t >> 5;
  int sum = t;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const int up = __shfl_up_sync(0xffffffffu, t, 1, 8);        // from lane - 1 within groups of 8
  const int down = __shfl_down_sync(0xffffffffu, t, 3, 16);   // from lane + 3 within groups of 16
  const int idx = __shfl_sync(0xffffffffu, t * 10, 5);         // lane 5's value
  const unsigned ballot = __ballot_sync(0xffffffffu, lane % 3 == 0);
  const int any = __any_sync(0xffffffffu, lane == 7 && warp == 1);
  const int all = __all_sync(0xffffffffu, lane < 32);
  const int half = lane < 16 ? __shfl_down_sync(0x0000ffffu, t, 8, 16) : -1;  // a partial mask, lanes 0-15
  const int bor = __syncthreads_or(t == 40);
  const int band = __syncthreads_and(t < 63);
  const int bcount = __syncthreads_count(t % 4 == 0);
  int* o = out + t * 10;
  o[0] = sum;
  o[1] = up;
  o[2] = down;
  o[3] = idx;
  o[4] = static_cast<int>(ballot);
  o[5] = any;
  o[6] = all;
  o[7] = half;
  o[8] = bor * 100 + band * 10;
  o[9] = bcount;
}

__global__ void shared_poison_kernel(float* out) {
  __shared__ float s[32];
  const unsigned t = threadIdx.x;
  out[t] = s[t];  // nothing written yet: the emulator's poison
  __syncthreads();
  s[t] = static_cast<float>(t);
  __syncthreads();
  out[32 + t] = s[31 - t];
}

__global__ void dynamic_shared_kernel(const float* in, float* out) {
  extern __shared__ float buf[];
  const unsigned t = threadIdx.x, n = blockDim.x;
  buf[t] = in[t];
  __syncthreads();
  out[t] = buf[n - 1 - t];
}

__global__ void atomic_count_kernel(unsigned* counter) { atomicAdd(counter, 1u); }

__global__ void fill_kernel(float* p, size_t n, float value) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += static_cast<size_t>(blockDim.x) * gridDim.x)
    p[i] = value;
}

__global__ void increment_kernel(float* p, size_t n) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += static_cast<size_t>(blockDim.x) * gridDim.x)
    p[i] += 1.0f;
}

__global__ void write_at_kernel(float* p, size_t index, float value) { p[index] = value; }

unsigned blocks_for(size_t n) { return static_cast<unsigned>(n / 256 + 1 < 1024 ? n / 256 + 1 : 1024); }

}  // namespace

cudaError_t launch_empty(dim3 grid, dim3 block, size_t dynamic_shared, cudaStream_t s) {
  empty_kernel<<<grid, block, dynamic_shared, s>>>();
  return cudaGetLastError();
}

cudaError_t launch_ids(dim3 grid, dim3 block, uint32_t* out) {
  ids_kernel<<<grid, block>>>(out);
  return cudaGetLastError();
}

cudaError_t launch_block_sum(const float* in, float* out, int blocks, int threads, bool with_barrier) {
  block_sum_kernel<<<blocks, threads>>>(in, out, with_barrier);
  return cudaGetLastError();
}

cudaError_t launch_neighbour(int* out, int n, bool with_barrier) {
  neighbour_kernel<<<1, n>>>(out, with_barrier);
  return cudaGetLastError();
}

cudaError_t launch_broken(int kind, int* out) {
  broken_kernel<<<2, 64>>>(kind, out);
  return cudaGetLastError();
}

cudaError_t launch_warp_ops(int* out) {
  warp_ops_kernel<<<1, 64>>>(out);
  return cudaGetLastError();
}

cudaError_t launch_shared_poison(float* out) {
  shared_poison_kernel<<<1, 32>>>(out);
  return cudaGetLastError();
}

cudaError_t launch_dynamic_shared(const float* in, float* out, int n) {
  dynamic_shared_kernel<<<1, n, static_cast<size_t>(n) * sizeof(float)>>>(in, out);
  return cudaGetLastError();
}

cudaError_t launch_atomic_count(unsigned* counter, int blocks, int threads) {
  atomic_count_kernel<<<blocks, threads>>>(counter);
  return cudaGetLastError();
}

cudaError_t launch_fill(float* p, size_t n, float value, cudaStream_t stream) {
  fill_kernel<<<blocks_for(n), 256, 0, stream>>>(p, n, value);
  return cudaGetLastError();
}

cudaError_t launch_increment(float* p, size_t n, cudaStream_t stream) {
  increment_kernel<<<blocks_for(n), 256, 0, stream>>>(p, n);
  return cudaGetLastError();
}

cudaError_t launch_write_at(float* p, size_t index, float value) {
  write_at_kernel<<<1, 1>>>(p, index, value);
  return cudaGetLastError();
}

}  // namespace mixtape::testing::emu_kernels
