// Layout kernels of the CUDA backend: copies between strided views (permute, narrow, concatenation) and the embedding
// gather with its deterministic scatter-add. Same semantics as core/cpu/cpu_layout.cpp (core/backend.h): the
// strided copy moves bits through the shared index math of core/broadcast_index.h; the embedding gradient adds each
// row's contributions in ascending position in the accumulate type and rounds once, so it is the CPU's bits and the
// same on every run (no atomics).
#include <cstdint>

#include "core/broadcast_index.h"
#include "core/cast_rules.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/kernel_common.cuh"
#include "cuda/launch_plan.h"

namespace mixtape::cuda {

namespace {

template <class U>
__global__ void strided_copy_kernel(const U* __restrict__ src, U* __restrict__ dst, BroadcastIndex<2> ix, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    ix.offsets(i, off);
    dst[off[0]] = src[off[1]];
  }
}

/// One thread per output element (row i, column k): out[i, k] = weight[ids[i], k]; an id out of range traps.
template <class U>
__global__ void embedding_kernel(const U* __restrict__ weight, const int64_t* __restrict__ ids, U* __restrict__ out,
                                 int64_t v, int64_t d, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * d; e += stride) {
    const int64_t i = e / d, k = e - i * d;
    const int64_t id = ids[i];
    if (id < 0 || id >= v) __trap();  // PyTorch's "index out of range" device-side assert
    out[e] = weight[id * d + k];
  }
}

/// One thread per weight element (row r, column k): the sum over positions i (ascending) with ids[i] == r.
template <class T>
__global__ void embedding_backward_kernel(const T* __restrict__ g, const int64_t* __restrict__ ids, T* __restrict__ gw,
                                          int64_t v, int64_t d, int64_t n) {
  using A = acc_t<T>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < v * d; e += stride) {
    const int64_t r = e / d, k = e - r * d;
    A acc = A(0);
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] == r) acc = acc + static_cast<A>(g[i * d + k]);
    gw[e] = cast_rules::store<T>(acc);
  }
}

}  // namespace

void CudaBackend::strided_copy(const Tensor& src, const Tensor& dst, const StridedCopy& c) {
  MIXTAPE_CHECK(src.dtype() == dst.dtype(), "strided_copy: dtypes differ (", dtype_name(src.dtype()), " vs ",
                dtype_name(dst.dtype()), ")");
  if (c.numel == 0) return;
  DeviceGuard g(index_);
  dispatch_bits(dtype_size(src.dtype()), "strided_copy", [&](auto tag) {
    using U = typename decltype(tag)::type;
    strided_copy_kernel<U><<<plan::grid_blocks(c.numel), plan::kElementwiseThreads, 0, stream_>>>(
        static_cast<const U*>(src.raw_data()) + c.src_offset, static_cast<U*>(dst.raw_data()) + c.dst_offset, c.index,
        c.numel);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  const int64_t v = weight.size(0), d = weight.size(1), n = ids.numel();
  if (n * d == 0) return;
  DeviceGuard g(index_);
  dispatch_bits(dtype_size(weight.dtype()), "embedding", [&](auto tag) {
    using U = typename decltype(tag)::type;
    embedding_kernel<U><<<plan::grid_blocks(n * d), plan::kElementwiseThreads, 0, stream_>>>(
        static_cast<const U*>(weight.raw_data()), ids.data<int64_t>(), static_cast<U*>(out.raw_data()), v, d, n);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::embedding_backward(const Tensor& grad, const Tensor& ids, const Tensor& gw) {
  const int64_t v = gw.size(0), d = gw.size(1), n = ids.numel();
  if (v * d == 0) return;
  DeviceGuard g(index_);
  dispatch_floating(grad.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    embedding_backward_kernel<T><<<plan::grid_blocks(v * d), plan::kElementwiseThreads, 0, stream_>>>(
        grad.data<T>(), ids.data<int64_t>(), gw.data<T>(), v, d, n);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mixtape::cuda
