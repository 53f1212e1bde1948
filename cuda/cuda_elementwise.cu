// CUDA elementwise kernels: one generic kernel per arity over the shared functors of core/functors.h (DESIGN §3),
// plus where, cast, fill, arange, random and copy. Same semantics as core/cpu/cpu_elementwise.cpp: inputs are
// widened to the accumulate type (float; double for i64), the functor runs, the result is rounded once with the
// CPU's conversion rules (core/cast_rules.h).
//
// Two paths per op: `flat` when every input has the output's shape or is a single element (16-byte vector loads
// and stores when every pointer is 16-byte aligned), and `broadcast` otherwise (per-element offsets from
// core/broadcast_index.h, uint32 index math when it fits, int64 beyond).
#include <cstring>
#include <type_traits>

#include "core/broadcast_index.h"
#include "core/functor_visit.h"
#include "core/random.h"
#include "core/cast_rules.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/functor_kernels.h"
#include "cuda/kernel_common.cuh"
#include "cuda/launch_plan.h"

namespace mixtape::cuda {

namespace {

/// V elements of T loaded/stored as one 16-byte (or smaller) transaction.
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

/// N input pointers; `scalar[k]`: input k is one element repeated.
template <class T, int N>
struct Inputs {
  const T* p[N];
  bool scalar[N];
};

template <class F> struct is_comparison_functor : std::false_type {};
template <> struct is_comparison_functor<fn::Eq> : std::true_type {};
template <> struct is_comparison_functor<fn::Ne> : std::true_type {};
template <> struct is_comparison_functor<fn::Lt> : std::true_type {};
template <> struct is_comparison_functor<fn::Le> : std::true_type {};
template <> struct is_comparison_functor<fn::Gt> : std::true_type {};
template <> struct is_comparison_functor<fn::Ge> : std::true_type {};

/// f applied to the widened inputs, stored once as O.
template <class O, class T, int N, class F>
__device__ __forceinline__ O apply(F f, const acc_t<T> (&a)[N]) {
  if constexpr (N == 1) return cast_rules::store<O>(f(a[0]));
  else return cast_rules::store<O>(f(a[0], a[1]));
}

/// The flat path: out[i] = f(in0[i or 0], ...), V elements per step (V = 1: no alignment needed).
template <int V, class F, class O, class T, int N>
__global__ void flat_kernel(O* __restrict__ out, Inputs<T, N> in, int64_t n, F f) {
  using A = acc_t<T>;
  const int64_t nvec = n / V;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  A scalar_value[N];
  for (int k = 0; k < N; ++k) scalar_value[k] = in.scalar[k] ? static_cast<A>(in.p[k][0]) : A(0);
  for (int64_t v = tid; v < nvec; v += stride) {
    Vec<T, V> x[N];
    for (int k = 0; k < N; ++k)
      if (!in.scalar[k]) x[k] = reinterpret_cast<const Vec<T, V>*>(in.p[k])[v];
    Vec<O, V> y;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      A a[N];
      for (int k = 0; k < N; ++k) a[k] = in.scalar[k] ? scalar_value[k] : static_cast<A>(x[k].v[j]);
      y.v[j] = apply<O, T, N>(f, a);
    }
    reinterpret_cast<Vec<O, V>*>(out)[v] = y;
  }
  const int64_t i = nvec * V + tid;  // the tail (fewer than V elements)
  if (i < n) {
    A a[N];
    for (int k = 0; k < N; ++k) a[k] = in.scalar[k] ? scalar_value[k] : static_cast<A>(in.p[k][i]);
    out[i] = apply<O, T, N>(f, a);
  }
}

/// The broadcast path: input offsets of output element i from the broadcast index.
template <class I, class F, class O, class T, int N>
__global__ void broadcast_kernel(O* __restrict__ out, Inputs<T, N> in, BroadcastIndex<N> bi, I n, F f) {
  using A = acc_t<T>;
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I off[N];
    bi.offsets(i, off);
    A a[N];
    for (int k = 0; k < N; ++k) a[k] = static_cast<A>(in.p[k][off[k]]);
    out[i] = apply<O, T, N>(f, a);
  }
}

/// Launches f over N inputs broadcast to `out_shape` (n = its element count) on `stream`.
template <class O, class T, int N, class F>
void launch_elementwise(F f, O* out, const std::array<const T*, N>& ptrs, const std::array<const Shape*, N>& shapes,
                        const Shape& out_shape, cudaStream_t stream) {
  const int64_t n = out_shape.numel();
  if (n == 0) return;
  Inputs<T, N> in{};
  bool flat = true, aligned = plan::aligned16(out);
  for (int k = 0; k < N; ++k) {
    in.p[k] = ptrs[k];
    in.scalar[k] = shapes[k]->numel() == 1 && n != 1;
    flat = flat && (*shapes[k] == out_shape || shapes[k]->numel() == 1);
    aligned = aligned && (in.scalar[k] || plan::aligned16(ptrs[k]));
  }
  constexpr int V = plan::vector_width(sizeof(T) > sizeof(O) ? sizeof(T) : sizeof(O));
  const int threads = plan::kElementwiseThreads;
  if (flat && aligned) {
    flat_kernel<V, F, O, T, N><<<plan::grid_blocks(n / V + 1, threads), threads, 0, stream>>>(out, in, n, f);
  } else {
    // Misaligned flat operands also take this path (the index of a same-shape operand is the identity).
    const BroadcastIndex<N> bi = make_broadcast_index<N>(out_shape, shapes);
    if (plan::fits_u32(n))
      broadcast_kernel<uint32_t, F, O, T, N><<<plan::grid_blocks(n, threads), threads, 0, stream>>>(
          out, in, bi, static_cast<uint32_t>(n), f);
    else
      broadcast_kernel<int64_t, F, O, T, N><<<plan::grid_blocks(n, threads), threads, 0, stream>>>(out, in, bi, n, f);
  }
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

// ---- where ----

template <class I, class T>
__global__ void where_kernel(T* __restrict__ out, const uint8_t* c, const T* a, const T* b, BroadcastIndex<3> bi, I n) {
  const I stride = static_cast<I>(blockDim.x) * gridDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I off[3];
    bi.offsets(i, off);
    out[i] = c[off[0]] ? a[off[1]] : b[off[2]];
  }
}

// ---- cast, fill, arange, random ----

template <class T, class S>
__global__ void cast_kernel(T* __restrict__ out, const S* __restrict__ x, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = cast_rules::convert<T>(x[i]);
}

template <class T>
__global__ void fill_kernel(T* __restrict__ out, T value, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = value;
}

template <class T>
__global__ void arange_kernel(T* __restrict__ out, double start, double step, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = cast_rules::store<T>(__dadd_rn(start, __dmul_rn(static_cast<double>(i), step)));  // no FMA: as the CPU
}

/// The CPU's draw (CpuBackend::random), with explicitly rounded float operations so no FMA changes the bits.
template <class T>
__global__ void random_kernel(T* __restrict__ out, bool normal, uint64_t seed, uint64_t offset, float fa, float fb,
                              int bits, int64_t n) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t idx = static_cast<uint64_t>(i);
    const float v = normal ? __fadd_rn(fa, __fmul_rn(fb, random_normal(seed, offset, idx)))
                           : __fadd_rn(fa, __fmul_rn(__fsub_rn(fb, fa), random_uniform(seed, offset, idx, bits)));
    out[i] = cast_rules::store<T>(v);
  }
}

template <class T>
void unary_typed(UnaryOp op, const T* x, T* out, const Shape& in_shape, const Shape& out_shape, cudaStream_t s) {
  visit_unary(op, [&](auto f) { launch_elementwise<T, T, 1>(f, out, {x}, {&in_shape}, out_shape, s); });
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  DeviceGuard g(index_);
  dispatch_compute(x.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_typed<T>(op, static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), x.shape(), out.shape(),
                   stream_);
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  MIXTAPE_CHECK(a.dtype() != DType::u8, op_name(op), ": u8 operands are not supported");
  DeviceGuard g(index_);
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    const std::array<const T*, 2> in{static_cast<const T*>(a.raw_data()), static_cast<const T*>(b.raw_data())};
    const std::array<const Shape*, 2> shapes{&a.shape(), &b.shape()};
    visit_binary(op, [&](auto f) {
      using F = decltype(f);
      if constexpr (is_comparison_functor<F>::value) {
        MIXTAPE_CHECK(out.dtype() == DType::u8, op_name(op), ": expected a u8 output, got ", dtype_name(out.dtype()));
        launch_elementwise<uint8_t, T, 2>(f, static_cast<uint8_t*>(out.raw_data()), in, shapes, out.shape(), stream_);
      } else {
        launch_elementwise<T, T, 2>(f, static_cast<T*>(out.raw_data()), in, shapes, out.shape(), stream_);
      }
    });
  };
  if (a.dtype() == DType::i64) run(type_tag<int64_t>{});  // computed in double, as the CPU
  else dispatch_compute(a.dtype(), op_name(op), run);
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  DeviceGuard g(index_);
  const int64_t n = out.numel();
  if (n == 0) return;
  const BroadcastIndex<3> bi = make_broadcast_index<3>(out.shape(), {&cond.shape(), &a.shape(), &b.shape()});
  const uint8_t* pc = static_cast<const uint8_t*>(cond.raw_data());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    const unsigned blocks = plan::grid_blocks(n);
    if (plan::fits_u32(n))
      where_kernel<uint32_t, T><<<blocks, plan::kElementwiseThreads, 0, stream_>>>(po, pc, pa, pb, bi,
                                                                                   static_cast<uint32_t>(n));
    else
      where_kernel<int64_t, T><<<blocks, plan::kElementwiseThreads, 0, stream_>>>(po, pc, pa, pb, bi, n);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::cast(const Tensor& x, const Tensor& out) {
  DeviceGuard g(index_);
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_all(x.dtype(), [&](auto in_tag) {
    using S = typename decltype(in_tag)::type;
    dispatch_all(out.dtype(), [&](auto out_tag) {
      using T = typename decltype(out_tag)::type;
      cast_kernel<T, S><<<plan::grid_blocks(n), plan::kElementwiseThreads, 0, stream_>>>(
          static_cast<T*>(out.raw_data()), static_cast<const S*>(x.raw_data()), n);
      MIXTAPE_CUDA_CHECK_LAUNCH();
    });
  });
}

void CudaBackend::fill(const Tensor& out, double value) {
  DeviceGuard g(index_);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = cast_rules::store<T>(value);  // the CPU's rounding of the value (host side)
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    bool uniform = true;
    for (size_t i = 1; i < sizeof(T); ++i) uniform = uniform && bytes[i] == bytes[0];
    if (uniform) {
      MIXTAPE_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), bytes[0], out.nbytes(), stream_));
    } else {
      fill_kernel<T><<<plan::grid_blocks(n), plan::kElementwiseThreads, 0, stream_>>>(static_cast<T*>(out.raw_data()),
                                                                                      v, n);
      MIXTAPE_CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::arange(const Tensor& out, double start, double step) {
  DeviceGuard g(index_);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    arange_kernel<T><<<plan::grid_blocks(n), plan::kElementwiseThreads, 0, stream_>>>(static_cast<T*>(out.raw_data()),
                                                                                      start, step, n);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  DeviceGuard g(index_);
  const int64_t n = out.numel();
  dispatch_compute(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (n == 0) return;
    const int bits = std::is_same_v<T, Half> ? 11 : std::is_same_v<T, BFloat16> ? 8 : 24;
    random_kernel<T><<<plan::grid_blocks(n), plan::kElementwiseThreads, 0, stream_>>>(
        static_cast<T*>(out.raw_data()), kind == RandomKind::normal, seed, offset, static_cast<float>(a),
        static_cast<float>(b), bits, n);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  MIXTAPE_CHECK(src.nbytes() == dst.nbytes(), "copy: byte sizes differ (", src.nbytes(), " vs ", dst.nbytes(), ")");
  if (src.nbytes() == 0 || src.raw_data() == dst.raw_data()) return;
  DeviceGuard g(index_);
  MIXTAPE_CUDA_CHECK(
      cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(), cudaMemcpyDeviceToDevice, stream_));
}

void launch_unary(UnaryOp op, DType dtype, const void* x, void* y, int64_t n, cudaStream_t stream) {
  MIXTAPE_CHECK(n >= 0, "cuda::launch_unary: negative element count ", n);
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16)
    throw Error(detail::cat("cuda::launch_unary(", op_name(op), "): expected an f32, f16 or bf16 tensor, got ",
                            dtype_name(dtype), " (the CUDA backend does not compute in this dtype)"));
  if (n == 0) return;
  MIXTAPE_CHECK(x != nullptr && y != nullptr, "cuda::launch_unary(", op_name(op), "): null device pointer");
  const Shape shape{n};
  dispatch_compute(dtype, "cuda::launch_unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_typed<T>(op, static_cast<const T*>(x), static_cast<T*>(y), shape, shape, stream);
  });
}

}  // namespace mixtape::cuda
