#include "cuda/functor_kernels.h"

#include <algorithm>

#include "core/functors.h"
#include "core/half.h"
#include "cuda/check.h"

namespace mixtape::cuda {

/// The one generic unary kernel: load T, compute f in float, store T (grid-stride loop).
template <class F, class T>
__global__ void unary_kernel(const T* x, T* y, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    y[i] = T(f(static_cast<float>(x[i])));
  }
}

// Explicit instantiations for every unary functor and every dtype the GPU computes in: this is what
// proves that core/functors.h (MIXTAPE_HD) and core/half.h compile for the device.
#define MIXTAPE_INSTANTIATE_UNARY(F)                                                                      \
  template __global__ void unary_kernel<fn::F, float>(const float*, float*, int64_t, fn::F);              \
  template __global__ void unary_kernel<fn::F, Half>(const Half*, Half*, int64_t, fn::F);                 \
  template __global__ void unary_kernel<fn::F, BFloat16>(const BFloat16*, BFloat16*, int64_t, fn::F);
MIXTAPE_INSTANTIATE_UNARY(Identity)
MIXTAPE_INSTANTIATE_UNARY(Neg)
MIXTAPE_INSTANTIATE_UNARY(Exp)
MIXTAPE_INSTANTIATE_UNARY(Log)
MIXTAPE_INSTANTIATE_UNARY(Sqrt)
MIXTAPE_INSTANTIATE_UNARY(Rsqrt)
MIXTAPE_INSTANTIATE_UNARY(Tanh)
MIXTAPE_INSTANTIATE_UNARY(Sigmoid)
MIXTAPE_INSTANTIATE_UNARY(Relu)
MIXTAPE_INSTANTIATE_UNARY(Gelu)
MIXTAPE_INSTANTIATE_UNARY(Abs)
#undef MIXTAPE_INSTANTIATE_UNARY

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

template <class T, class F>
void launch(const void* x, void* y, int64_t n, F f, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
  unary_kernel<F, T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(static_cast<const T*>(x),
                                                                              static_cast<T*>(y), n, f);
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_typed(UnaryOp op, const void* x, void* y, int64_t n, cudaStream_t stream) {
  switch (op) {
    case UnaryOp::identity: return launch<T>(x, y, n, fn::Identity{}, stream);
    case UnaryOp::neg: return launch<T>(x, y, n, fn::Neg{}, stream);
    case UnaryOp::exp: return launch<T>(x, y, n, fn::Exp{}, stream);
    case UnaryOp::log: return launch<T>(x, y, n, fn::Log{}, stream);
    case UnaryOp::sqrt: return launch<T>(x, y, n, fn::Sqrt{}, stream);
    case UnaryOp::rsqrt: return launch<T>(x, y, n, fn::Rsqrt{}, stream);
    case UnaryOp::tanh: return launch<T>(x, y, n, fn::Tanh{}, stream);
    case UnaryOp::sigmoid: return launch<T>(x, y, n, fn::Sigmoid{}, stream);
    case UnaryOp::relu: return launch<T>(x, y, n, fn::Relu{}, stream);
    case UnaryOp::gelu: return launch<T>(x, y, n, fn::Gelu{}, stream);
    case UnaryOp::abs: return launch<T>(x, y, n, fn::Abs{}, stream);
  }
  throw Error(::mixtape::detail::cat("cuda::launch_unary: unknown unary op ", static_cast<int>(op)));
}

}  // namespace

void launch_unary(UnaryOp op, DType dtype, const void* x, void* y, int64_t n, cudaStream_t stream) {
  MIXTAPE_CHECK(n >= 0, "cuda::launch_unary: negative element count ", n);
  switch (dtype) {
    case DType::f32: break;
    case DType::f16: break;
    case DType::bf16: break;
    default:
      throw Error(::mixtape::detail::cat("cuda::launch_unary(", op_name(op), "): expected an f32, f16 or bf16 tensor, got ",
                                         dtype_name(dtype), " (the CUDA backend does not compute in this dtype)"));
  }
  if (n == 0) return;
  MIXTAPE_CHECK(x != nullptr && y != nullptr, "cuda::launch_unary(", op_name(op), "): null device pointer");
  switch (dtype) {
    case DType::f32: return launch_typed<float>(op, x, y, n, stream);
    case DType::f16: return launch_typed<Half>(op, x, y, n, stream);
    case DType::bf16: return launch_typed<BFloat16>(op, x, y, n, stream);
    default: break;
  }
}

}  // namespace mixtape::cuda
