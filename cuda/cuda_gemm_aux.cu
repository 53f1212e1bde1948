// Kernels around the cuBLASLt GEMM (declared in cuda/cuda_gemm_aux.h): the second-pass epilogue and the row sums of
// op(a). Element math comes from core/functors.h, as on the CPU.
#include "cuda/cuda_gemm_aux.h"

#include <algorithm>

#include "core/functors.h"
#include "core/half.h"
#include "cuda/check.h"

namespace mixtape::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

/// One element per thread (grid-stride): act(d + beta * out + bias[col]) rounded once.
template <class T, class Act>
__global__ void gemm_epilogue_kernel(const float* d, T* out, const T* bias, float beta, int64_t m, int64_t n, Act act) {
  const int64_t total = m * n;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    float v = d[i];
    if (beta != 0.0f) v += beta * static_cast<float>(out[i]);
    v += static_cast<float>(bias[i % n]);
    out[i] = T(act(v));
  }
}

// Column sums of a row-major (k, m) matrix: blockDim (32, 8); x over 32 columns, y over rows; partial float sums
// reduced in shared memory.
template <class T>
__global__ void column_sums_kernel(const T* a, int64_t k, int64_t m, T* sums) {
  __shared__ float partial[8][33];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.0f;
  if (col < m)
    for (int64_t r = threadIdx.y; r < k; r += 8) s += static_cast<float>(a[r * m + col]);
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < m) {
    float t = 0.0f;
    for (int y = 0; y < 8; ++y) t += partial[y][threadIdx.x];
    sums[col] = T(t);
  }
}

// Row sums of a row-major (m, k) matrix: one block of kThreads per row (grid-stride over rows).
template <class T>
__global__ void row_sums_kernel(const T* a, int64_t m, int64_t k, T* sums) {
  __shared__ float partial[kThreads];
  for (int64_t row = blockIdx.x; row < m; row += gridDim.x) {
    float s = 0.0f;
    for (int64_t r = threadIdx.x; r < k; r += blockDim.x) s += static_cast<float>(a[row * k + r]);
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int width = kThreads / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) sums[row] = T(partial[0]);
    __syncthreads();
  }
}

template <class T>
void epilogue_typed(const float* d, void* out, const void* bias, float beta, EpilogueAct act, int64_t m, int64_t n,
                    cudaStream_t stream) {
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((m * n + kThreads - 1) / kThreads, kMaxBlocks));
  T* o = static_cast<T*>(out);
  const T* b = static_cast<const T*>(bias);
  const unsigned g = static_cast<unsigned>(blocks);
  switch (act) {
    case EpilogueAct::identity: gemm_epilogue_kernel<T><<<g, kThreads, 0, stream>>>(d, o, b, beta, m, n, fn::Identity{}); break;
    case EpilogueAct::relu: gemm_epilogue_kernel<T><<<g, kThreads, 0, stream>>>(d, o, b, beta, m, n, fn::Relu{}); break;
    case EpilogueAct::gelu: gemm_epilogue_kernel<T><<<g, kThreads, 0, stream>>>(d, o, b, beta, m, n, fn::Gelu{}); break;
  }
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

template <class T>
void sums_typed(const void* a, bool trans_a, int64_t m, int64_t k, void* sums, cudaStream_t stream) {
  const T* pa = static_cast<const T*>(a);
  T* ps = static_cast<T*>(sums);
  if (trans_a) {
    const int64_t blocks = (m + 31) / 32;
    MIXTAPE_CHECK(blocks <= 0x7fffffff, "gemm a_sums: too many columns (", m, ")");
    column_sums_kernel<T><<<static_cast<unsigned>(blocks), dim3(32, 8), 0, stream>>>(pa, k, m, ps);
  } else {
    const int64_t blocks = std::min<int64_t>(m, kMaxBlocks);
    row_sums_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(pa, m, k, ps);
  }
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_gemm_epilogue(DType dtype, const float* d, void* out, const void* bias, float beta, EpilogueAct act,
                          int64_t m, int64_t n, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return;
  switch (dtype) {
    case DType::f32: return epilogue_typed<float>(d, out, bias, beta, act, m, n, stream);
    case DType::f16: return epilogue_typed<Half>(d, out, bias, beta, act, m, n, stream);
    case DType::bf16: return epilogue_typed<BFloat16>(d, out, bias, beta, act, m, n, stream);
    default: break;
  }
  throw Error(detail::cat("gemm epilogue: expected f32, f16 or bf16 on CUDA, got ", dtype_name(dtype)));
}

void launch_op_row_sums(DType dtype, const void* a, bool trans_a, int64_t m, int64_t k, void* sums, cudaStream_t stream) {
  if (m <= 0) return;
  switch (dtype) {
    case DType::f32: return sums_typed<float>(a, trans_a, m, k, sums, stream);
    case DType::f16: return sums_typed<Half>(a, trans_a, m, k, sums, stream);
    case DType::bf16: return sums_typed<BFloat16>(a, trans_a, m, k, sums, stream);
    default: break;
  }
  throw Error(detail::cat("gemm a_sums: expected f32, f16 or bf16 on CUDA, got ", dtype_name(dtype)));
}

}  // namespace mixtape::cuda
