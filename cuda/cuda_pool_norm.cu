// CUDA 2-D pooling and batch norm (NCHW contiguous), reproducing core/cpu/cpu_conv.cpp and core/cpu/cpu_norm.cpp:
// the same windows, tie-breaking (first maximum in row-major window order), NaN propagation, accumulation types
// (float for f32/f16/bf16 pooling, double for batch-norm statistics) and summation order wherever the order is
// per element (pooling sums, pooling gradients), so those results are bit-identical to the CPU backend's.
// Everything is deterministic: no floating-point atomics; batch-norm statistics use one block per channel and a
// fixed-shape tree reduction. Elementwise formulas use explicitly rounded operations (__fmul_rn, __dadd_rn, ...)
// so nvcc does not contract them into FMAs that the CPU code does not use.
#include <cuda_runtime.h>

#include <limits>
#include <type_traits>

#include "core/cast_rules.h"
#include "core/conv_kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "cuda/check.h"
#include "cuda/conv_plan.h"
#include "cuda/cuda_backend.h"

namespace mixtape::cuda {

// Kernels live in a named namespace: nvcc mishandles __global__ templates in anonymous namespaces when they are
// launched from generic lambdas.
namespace pool_norm_detail {

constexpr int kThreads = 256;

/// Accumulate type of a storage type: double for f64, float otherwise (as the CPU backend).
template <class T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <class T>
using Acc = typename AccOf<T>::type;

template <class T>
__device__ __forceinline__ Acc<T> load(T v) {
  return static_cast<Acc<T>>(v);
}
template <class T>
__device__ __forceinline__ double to_double(T v) {
  return static_cast<double>(static_cast<Acc<T>>(v));
}

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

/// Rounds a double once into storage type T (core/cast_rules.h, as the CPU's store<T>(double)).
template <class T>
__device__ __forceinline__ T store_double(double v) {
  return cast_rules::store<T>(v);
}

// ---------------------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------------------

/// One thread per output: the first maximum of the window in row-major order; a NaN wins and ends the scan.
template <class T>
__global__ void max_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ idx,
                                        int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                        Pool2dParams p) {
  using S = Acc<T>;
  const int64_t total = planes * oh * ow;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t j = o % ow, i = (o / ow) % oh, q = o / (oh * ow);
    const T* xp = x + q * h * w;
    const int64_t h0 = i * p.stride_h - p.pad_h, w0 = j * p.stride_w - p.pad_w;
    const int64_t a0 = h0 > 0 ? h0 : 0, a1 = h0 + p.kernel_h < h ? h0 + p.kernel_h : h;
    const int64_t b0 = w0 > 0 ? w0 : 0, b1 = w0 + p.kernel_w < w ? w0 + p.kernel_w : w;
    S best = -std::numeric_limits<S>::infinity();
    int64_t arg = -1;
    bool nan = false;
    for (int64_t a = a0; a < a1 && !nan; ++a)
      for (int64_t b = b0; b < b1; ++b) {
        const S v = load(xp[a * w + b]);
        if (arg < 0 || v > best || v != v) {
          best = v;
          arg = a * w + b;
          if (v != v) {
            nan = true;
            break;
          }
        }
      }
    y[o] = static_cast<T>(best);
    idx[o] = arg;
  }
}

/// One warp per plane, deterministic and in the CPU's order: the warp walks the plane's outputs in order, and
/// the gradient of output o is added to acc[idx[o]] by the lane that owns that input position (position % 32),
/// so each accumulator receives its contributions in increasing o, like the CPU loop. acc (planes * hw) is in
/// the accumulate type and may alias gx when T is that type; gx is written from it once at the end.
template <class T>
__global__ void max_pool_backward_kernel(const T* __restrict__ gy, const int64_t* __restrict__ idx, Acc<T>* acc,
                                         T* gx, int64_t planes, int64_t hw, int64_t ohw) {
  using S = Acc<T>;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(blockDim.x) * gridDim.x) >> 5;
  for (int64_t q = warp; q < planes; q += warps) {
    S* a = acc + q * hw;
    for (int64_t k = lane; k < hw; k += 32) a[k] = S(0);  // lane k % 32 owns position k
    const T* g = gy + q * ohw;
    const int64_t* ix = idx + q * ohw;
    for (int64_t o0 = 0; o0 < ohw; o0 += 32) {
      const int64_t o = o0 + lane;
      const long long pos = o < ohw ? static_cast<long long>(ix[o]) : -1;
      const S gv = o < ohw ? load(g[o]) : S(0);
      const int count = ohw - o0 < 32 ? static_cast<int>(ohw - o0) : 32;
      for (int j = 0; j < count; ++j) {
        const long long pj = __shfl_sync(0xffffffffu, pos, j);
        const S gj = __shfl_sync(0xffffffffu, gv, j);
        if (pj >= 0 && static_cast<int>(pj & 31) == lane) a[pj] += gj;
      }
    }
    T* gp = gx + q * hw;
    if (static_cast<void*>(gp) != static_cast<void*>(a))
      for (int64_t k = lane; k < hw; k += 32) gp[k] = static_cast<T>(a[k]);
  }
}

/// One thread per output: the window sum in row-major order divided by the count_include_pad divisor.
template <class T>
__global__ void avg_pool_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int64_t h,
                                        int64_t w, int64_t oh, int64_t ow, Pool2dParams p) {
  using S = Acc<T>;
  const int64_t total = planes * oh * ow;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t j = o % ow, i = (o / ow) % oh, q = o / (oh * ow);
    const T* xp = x + q * h * w;
    const AvgWindow win = avg_pool_window(i, j, h, w, p);
    S s = 0;
    for (int64_t a = win.h0; a < win.h1; ++a)
      for (int64_t b = win.w0; b < win.w1; ++b) s += load(xp[a * w + b]);
    y[o] = static_cast<T>(s / static_cast<S>(win.count));
  }
}

/// One thread per input: gathers gy / count from the outputs whose windows cover it, in row-major output order
/// (the order in which the CPU scatters them), so the sums are identical.
template <class T>
__global__ void avg_pool_backward_kernel(const T* __restrict__ gy, T* __restrict__ gx, int64_t planes, int64_t h,
                                         int64_t w, int64_t oh, int64_t ow, Pool2dParams p) {
  using S = Acc<T>;
  const int64_t total = planes * h * w;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = k % w, a = (k / w) % h, q = k / (h * w);
    const T* g = gy + q * oh * ow;
    const CoverRange ri = pool_cover_range(a, p.kernel_h, p.stride_h, p.pad_h, oh);
    const CoverRange rj = pool_cover_range(b, p.kernel_w, p.stride_w, p.pad_w, ow);
    S s = 0;
    for (int64_t i = ri.lo; i < ri.hi; ++i)
      for (int64_t j = rj.lo; j < rj.hi; ++j) {
        const AvgWindow win = avg_pool_window(i, j, h, w, p);
        s += load(g[i * ow + j]) / static_cast<S>(win.count);
      }
    gx[k] = static_cast<T>(s);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Convolution bias (the cuDNN passes themselves are in cuda_conv.cpp)
// ---------------------------------------------------------------------------------------------------------

template <class T>
__global__ void bias_add_kernel(T* y, const T* __restrict__ b, int64_t total, int64_t oc, int64_t hw) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<int64_t>(blockDim.x) * gridDim.x)
    y[k] = static_cast<T>(add_rn(load(y[k]), load(b[(k / hw) % oc])));
}

/// One block per output channel; a fixed-shape tree, so the sum does not change run to run.
template <class T>
__global__ void bias_grad_kernel(const T* __restrict__ gy, T* __restrict__ gb, int64_t n, int64_t oc, int64_t hw) {
  using S = Acc<T>;
  __shared__ S red[kThreads];
  const int64_t ch = blockIdx.x, m = n * hw;
  const int t = static_cast<int>(threadIdx.x);
  S s = 0;
  for (int64_t j = t; j < m; j += blockDim.x) {
    const int64_t nn = j / hw;
    s += load(gy[(nn * oc + ch) * hw + (j - nn * hw)]);
  }
  red[t] = s;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step >>= 1) {
    if (t < step) red[t] = add_rn(red[t], red[t + step]);
    __syncthreads();
  }
  if (t == 0) gb[ch] = static_cast<T>(red[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Batch norm: one block per channel; element j of channel ch (j in [0, n*l)) is x[(j / l * c + ch) * l + j % l].
// ---------------------------------------------------------------------------------------------------------

__device__ __forceinline__ int64_t bn_index(int64_t j, int64_t ch, int64_t c, int64_t l) {
  const int64_t nn = j / l;
  return (nn * c + ch) * l + (j - nn * l);
}

/// Sum over the block of one double per thread; a fixed tree, so the result does not change run to run.
/// `red` holds blockDim.x doubles; the result is returned to every thread.
__device__ double block_sum(double v, double* red) {
  const int t = static_cast<int>(threadIdx.x);
  red[t] = v;
  __syncthreads();
  for (int s = static_cast<int>(blockDim.x) / 2; s > 0; s >>= 1) {
    if (t < s) red[t] = __dadd_rn(red[t], red[t + s]);
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();  // red may be reused at once
  return r;
}

template <class T, class P>
__global__ void batch_norm_forward_kernel(const T* __restrict__ x, T* __restrict__ y, P* running_mean,
                                          P* running_var, const P* weight, const P* bias, P* save_mean,
                                          P* save_invstd, int64_t n, int64_t c, int64_t l, bool training,
                                          double momentum, double eps) {
  __shared__ double red[512];
  __shared__ P s_scale, s_shift;
  const int64_t ch = blockIdx.x, m = n * l;
  const int t = static_cast<int>(threadIdx.x);
  double mean = 0, invstd = 0;
  if (training) {
    double s = 0;
    for (int64_t j = t; j < m; j += blockDim.x) s = __dadd_rn(s, to_double(x[bn_index(j, ch, c, l)]));
    mean = block_sum(s, red) / static_cast<double>(m);
    double ss = 0;  // two-pass variance, as the CPU: no cancellation
    for (int64_t j = t; j < m; j += blockDim.x) {
      const double v = __dadd_rn(to_double(x[bn_index(j, ch, c, l)]), -mean);
      ss = __dadd_rn(ss, __dmul_rn(v, v));
    }
    ss = block_sum(ss, red);
    const double var = ss / static_cast<double>(m);
    invstd = 1.0 / sqrt(var + eps);
    if (t == 0) {
      if (running_mean)
        running_mean[ch] = static_cast<P>(__dadd_rn(__dmul_rn(1.0 - momentum, static_cast<double>(running_mean[ch])),
                                                    __dmul_rn(momentum, mean)));
      if (running_var) {
        const double unbiased = m > 1 ? ss / static_cast<double>(m - 1) : var;
        running_var[ch] = static_cast<P>(__dadd_rn(__dmul_rn(1.0 - momentum, static_cast<double>(running_var[ch])),
                                                   __dmul_rn(momentum, unbiased)));
      }
    }
  } else {
    mean = static_cast<double>(running_mean[ch]);
    invstd = 1.0 / sqrt(static_cast<double>(running_var[ch]) + eps);
  }
  if (t == 0) {
    save_mean[ch] = static_cast<P>(mean);
    save_invstd[ch] = static_cast<P>(invstd);
    const double g = weight ? static_cast<double>(weight[ch]) : 1.0, b = bias ? static_cast<double>(bias[ch]) : 0.0;
    s_scale = static_cast<P>(__dmul_rn(g, invstd));
    s_shift = static_cast<P>(__dadd_rn(b, -__dmul_rn(__dmul_rn(mean, g), invstd)));
  }
  __syncthreads();
  const P scale = s_scale, shift = s_shift;
  for (int64_t j = t; j < m; j += blockDim.x) {
    const int64_t k = bn_index(j, ch, c, l);
    y[k] = static_cast<T>(add_rn(mul_rn(static_cast<P>(load(x[k])), scale), shift));
  }
}

template <class T, class P>
__global__ void batch_norm_backward_kernel(const T* __restrict__ gy, const T* __restrict__ x, const P* weight,
                                           const P* save_mean, const P* save_invstd, T* gx, P* gweight, P* gbias,
                                           int64_t n, int64_t c, int64_t l, bool training) {
  __shared__ double red[512];
  const int64_t ch = blockIdx.x, mi = n * l;
  const int t = static_cast<int>(threadIdx.x);
  const double m = static_cast<double>(mi);
  const double mean = static_cast<double>(save_mean[ch]), invstd = static_cast<double>(save_invstd[ch]);
  const double g = weight ? static_cast<double>(weight[ch]) : 1.0;
  double s1 = 0, s2 = 0;
  for (int64_t j = t; j < mi; j += blockDim.x) {
    const int64_t k = bn_index(j, ch, c, l);
    const double gyk = to_double(gy[k]);
    s1 = __dadd_rn(s1, gyk);
    s2 = __dadd_rn(s2, __dmul_rn(__dmul_rn(gyk, __dadd_rn(to_double(x[k]), -mean)), invstd));
  }
  const double sum_gy = block_sum(s1, red);
  const double sum_gy_xhat = block_sum(s2, red);
  if (t == 0) {
    if (gbias) gbias[ch] = static_cast<P>(sum_gy);
    if (gweight) gweight[ch] = static_cast<P>(sum_gy_xhat);
  }
  if (!gx) return;
  const double k0 = __dmul_rn(g, invstd);
  const double mean_gy = sum_gy / m, mean_gy_xhat = sum_gy_xhat / m;
  for (int64_t j = t; j < mi; j += blockDim.x) {
    const int64_t k = bn_index(j, ch, c, l);
    const double gyk = to_double(gy[k]);
    double r;
    if (training) {
      // gx = g * invstd * (gy - mean(gy) - xhat * mean(gy * xhat))
      const double xhat = __dmul_rn(__dadd_rn(to_double(x[k]), -mean), invstd);
      r = __dmul_rn(k0, __dadd_rn(__dadd_rn(gyk, -mean_gy), -__dmul_rn(xhat, mean_gy_xhat)));
    } else {
      r = __dmul_rn(k0, gyk);
    }
    gx[k] = store_double<T>(r);
  }
}

/// The float type of batch-norm parameters for storage type T (kernels::batch_norm_param_dtype).
template <class T>
using ParamOf = Acc<T>;

template <class P>
P* opt_ptr(const Tensor& t) {
  return t.defined() ? t.data<P>() : nullptr;
}

using kernels::NormDims;
using kernels::norm_dims;

}  // namespace pool_norm_detail

using namespace pool_norm_detail;

void launch_conv_bias_add(DType dtype, void* y, const void* b, int64_t n, int64_t oc, int64_t hw,
                          cudaStream_t stream) {
  const int64_t total = n * oc * hw;
  if (total == 0) return;
  dispatch_floating(dtype, "conv2d bias (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bias_add_kernel<T><<<static_cast<unsigned>(grid_blocks(total, kThreads)), kThreads, 0, stream>>>(
        static_cast<T*>(y), static_cast<const T*>(b), total, oc, hw);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void launch_conv_bias_grad(DType dtype, const void* gy, void* gb, int64_t n, int64_t oc, int64_t hw,
                           cudaStream_t stream) {
  if (oc == 0) return;
  MIXTAPE_CHECK(oc <= std::numeric_limits<int>::max(), "conv2d bias gradient (cuda): ", oc, " channels is too many");
  dispatch_floating(dtype, "conv2d bias gradient (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    bias_grad_kernel<T><<<static_cast<unsigned>(oc), kThreads, 0, stream>>>(static_cast<const T*>(gy),
                                                                            static_cast<T*>(gb), n, oc, hw);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices, const Pool2dParams& p) {
  DeviceGuard g(index_);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), oh = out.size(2), ow = out.size(3);
  const int64_t total = planes * oh * ow;
  if (total == 0) return;
  dispatch_floating(x.dtype(), "max_pool2d (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool_forward_kernel<T><<<static_cast<unsigned>(grid_blocks(total, kThreads)), kThreads, 0, stream_>>>(
        x.data<T>(), out.data<T>(), indices.data<int64_t>(), planes, h, w, oh, ow, p);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  DeviceGuard g(index_);
  const int64_t planes = gx.size(0) * gx.size(1), hw = gx.size(2) * gx.size(3), ohw = gy.size(2) * gy.size(3);
  if (planes * hw == 0) return;
  dispatch_floating(gy.dtype(), "max_pool2d backward (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    S* acc = std::is_same_v<T, S> ? reinterpret_cast<S*>(gx.data<T>())
                                  : static_cast<S*>(workspace(static_cast<size_t>(planes * hw) * sizeof(S)));
    const int64_t warps_per_block = kThreads / 32;
    const int64_t blocks = grid_blocks(planes, static_cast<int>(warps_per_block));
    max_pool_backward_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream_>>>(
        gy.data<T>(), indices.data<int64_t>(), acc, gx.data<T>(), planes, hw, ohw);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) {
  DeviceGuard g(index_);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), oh = out.size(2), ow = out.size(3);
  const int64_t total = planes * oh * ow;
  if (total == 0) return;
  dispatch_floating(x.dtype(), "avg_pool2d (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool_forward_kernel<T><<<static_cast<unsigned>(grid_blocks(total, kThreads)), kThreads, 0, stream_>>>(
        x.data<T>(), out.data<T>(), planes, h, w, oh, ow, p);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  DeviceGuard g(index_);
  const int64_t planes = gx.size(0) * gx.size(1), h = gx.size(2), w = gx.size(3), oh = gy.size(2), ow = gy.size(3);
  const int64_t total = planes * h * w;
  if (total == 0) return;
  dispatch_floating(gy.dtype(), "avg_pool2d backward (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool_backward_kernel<T><<<static_cast<unsigned>(grid_blocks(total, kThreads)), kThreads, 0, stream_>>>(
        gy.data<T>(), gx.data<T>(), planes, h, w, oh, ow, p);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                             const Tensor& weight, const Tensor& bias, const Tensor& out, const Tensor& save_mean,
                             const Tensor& save_invstd, const BatchNormParams& p) {
  DeviceGuard g(index_);
  const NormDims d = norm_dims(x);
  if (d.c == 0) return;
  MIXTAPE_CHECK(d.c <= std::numeric_limits<int>::max(), "batch_norm (cuda): ", d.c, " channels is too many");
  const int threads = batch_norm_threads(d.n * d.l);
  dispatch_floating(x.dtype(), "batch_norm (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = ParamOf<T>;
    batch_norm_forward_kernel<T, P><<<static_cast<unsigned>(d.c), threads, 0, stream_>>>(
        x.data<T>(), out.data<T>(), opt_ptr<P>(running_mean), opt_ptr<P>(running_var), opt_ptr<P>(weight),
        opt_ptr<P>(bias), save_mean.data<P>(), save_invstd.data<P>(), d.n, d.c, d.l, p.training, p.momentum, p.eps);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight,
                                      const Tensor& save_mean, const Tensor& save_invstd, const Tensor& gx,
                                      const Tensor& gweight, const Tensor& gbias, const BatchNormParams& p) {
  DeviceGuard g(index_);
  const NormDims d = norm_dims(x);
  if (d.c == 0 || (!gx.defined() && !gweight.defined() && !gbias.defined())) return;
  MIXTAPE_CHECK(d.c <= std::numeric_limits<int>::max(), "batch_norm backward (cuda): ", d.c, " channels is too many");
  const int threads = batch_norm_threads(d.n * d.l);
  dispatch_floating(x.dtype(), "batch_norm backward (cuda)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = ParamOf<T>;
    batch_norm_backward_kernel<T, P><<<static_cast<unsigned>(d.c), threads, 0, stream_>>>(
        gy.data<T>(), x.data<T>(), opt_ptr<P>(weight), save_mean.data<P>(), save_invstd.data<P>(),
        gx.defined() ? gx.data<T>() : nullptr, opt_ptr<P>(gweight), opt_ptr<P>(gbias), d.n, d.c, d.l, p.training);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mixtape::cuda
