// CPU batch normalisation over x viewed as (N, C, L). Statistics are accumulated in double and kept in float32
// (f64 for f64 inputs) whatever x's dtype, so an f16 input whose squares overflow f16 still normalises correctly;
// the output is rounded once to x's dtype. f32/f16/bf16 inputs go row by row (L contiguous values) through the
// vectorised row kernels of cpu_simd.h; f64 keeps scalar loops. Channels are independent: large inputs split them
// across threads (parallel_range), which does not change any result.
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_simd.h"
#include "core/conv_kernels.h"
#include "core/cpu_threads.h"

namespace mixtape::cpu {

namespace {
template <class T>
using Param = std::conditional_t<std::is_same_v<T, double>, double, float>;

using kernels::NormDims;
using kernels::norm_dims;

/// Channel c of x (N, C, L) as N rows of L floats, `stride` apart: x's own rows for f32; for f16/bf16 the rows
/// widened once into thread_scratch slot `slot`, so that the passes over the channel read floats.
struct Rows {
  const float* p;
  int64_t stride;
  const float* row(int64_t n) const { return p + n * stride; }
};
template <class T>
Rows channel_rows(const T* x, const NormDims& d, int64_t c, int slot) {
  if constexpr (std::is_same_v<T, float>) {
    return {x + c * d.l, d.c * d.l};
  } else {
    float* dst = thread_scratch<float>(slot, d.n * d.l);
    for (int64_t n = 0; n < d.n; ++n) widen(x + (n * d.c + c) * d.l, dst + n * d.l, d.l);
    return {dst, d.l};
  }
}
}  // namespace

void CpuBackend::batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& weight, const Tensor& bias, const Tensor& out, const Tensor& save_mean,
                            const Tensor& save_invstd, const BatchNormParams& p) {
  dispatch_floating(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = Param<T>;
    const NormDims d = norm_dims(x);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    const int64_t m = d.n * d.l;
    parallel_range(d.c, d.n * d.l, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double mean = 0, invstd = 0;
        Rows xr{};  // the channel as floats (f32/f16/bf16), read in training
        if (p.training) {
          // two-pass variance (no cancellation); sums in double
          double s = 0, ss = 0;
          if constexpr (std::is_same_v<T, double>) {
            for (int64_t n = 0; n < d.n; ++n)
              for (int64_t i = 0; i < d.l; ++i) s += px[(n * d.c + c) * d.l + i];
            mean = s / static_cast<double>(m);
            for (int64_t n = 0; n < d.n; ++n)
              for (int64_t i = 0; i < d.l; ++i) {
                const double v = px[(n * d.c + c) * d.l + i] - mean;
                ss += v * v;
              }
          } else {
            xr = channel_rows(px, d, c, 0);
            for (int64_t n = 0; n < d.n; ++n) s += bn_row_sums(xr.row(n), d.l, 0).sum;
            mean = s / static_cast<double>(m);
            for (int64_t n = 0; n < d.n; ++n) ss += bn_row_sums(xr.row(n), d.l, mean).sum_sq_dev;
          }
          const double var = ss / static_cast<double>(m);
          invstd = 1.0 / std::sqrt(var + p.eps);
          if (running_mean.defined()) {
            P& rm = running_mean.data<P>()[c];
            rm = static_cast<P>((1.0 - p.momentum) * static_cast<double>(rm) + p.momentum * mean);
          }
          if (running_var.defined()) {
            const double unbiased = m > 1 ? ss / static_cast<double>(m - 1) : var;
            P& rv = running_var.data<P>()[c];
            rv = static_cast<P>((1.0 - p.momentum) * static_cast<double>(rv) + p.momentum * unbiased);
          }
        } else {
          mean = static_cast<double>(running_mean.data<P>()[c]);
          invstd = 1.0 / std::sqrt(static_cast<double>(running_var.data<P>()[c]) + p.eps);
        }
        save_mean.data<P>()[c] = static_cast<P>(mean);
        save_invstd.data<P>()[c] = static_cast<P>(invstd);
        // y = x * scale + shift, computed in P
        const P g = weight.defined() ? weight.data<P>()[c] : P(1), b = bias.defined() ? bias.data<P>()[c] : P(0);
        const P scale = static_cast<P>(static_cast<double>(g) * invstd);
        const P shift = static_cast<P>(static_cast<double>(b) - mean * static_cast<double>(g) * invstd);
        for (int64_t n = 0; n < d.n; ++n) {
          const int64_t k = (n * d.c + c) * d.l;
          if constexpr (std::is_same_v<T, double>) {
            for (int64_t i = 0; i < d.l; ++i) po[k + i] = px[k + i] * scale + shift;
          } else if constexpr (std::is_same_v<T, float>) {
            bn_scale_shift(px + k, po + k, d.l, scale, shift);
          } else {
            float* y = thread_scratch<float>(1, d.l);
            if (!p.training) widen(px + k, y, d.l);  // (in eval the channel was not read yet)
            bn_scale_shift(p.training ? xr.row(n) : y, y, d.l, scale, shift);
            narrow(y, po + k, d.l);
          }
        }
      }
    });
  });
}

void CpuBackend::batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                                     const Tensor& save_invstd, const Tensor& gx, const Tensor& gweight,
                                     const Tensor& gbias, const BatchNormParams& p) {
  dispatch_floating(x.dtype(), "batch_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = Param<T>;
    const NormDims d = norm_dims(x);
    const T* px = x.data<T>();
    const T* pg = gy.data<T>();
    const double m = static_cast<double>(d.n * d.l);
    parallel_range(d.c, 2 * d.n * d.l, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double mean = static_cast<double>(save_mean.data<P>()[c]);
        const double invstd = static_cast<double>(save_invstd.data<P>()[c]);
        const double g = weight.defined() ? static_cast<double>(weight.data<P>()[c]) : 1.0;
        double sum_gy = 0, sum_gy_xhat = 0;
        Rows gr{}, xr{};
        if constexpr (!std::is_same_v<T, double>) {
          gr = channel_rows(pg, d, c, 0);
          xr = channel_rows(px, d, c, 1);
        }
        for (int64_t n = 0; n < d.n; ++n) {
          const int64_t k = (n * d.c + c) * d.l;
          if constexpr (std::is_same_v<T, double>) {
            for (int64_t i = 0; i < d.l; ++i) {
              sum_gy += pg[k + i];
              sum_gy_xhat += pg[k + i] * (px[k + i] - mean) * invstd;
            }
          } else {
            const BnRowSums r = bn_grad_sums(gr.row(n), xr.row(n), d.l, mean, invstd);
            sum_gy += r.sum;
            sum_gy_xhat += r.sum_sq_dev;
          }
        }
        if (gbias.defined()) gbias.data<P>()[c] = static_cast<P>(sum_gy);
        if (gweight.defined()) gweight.data<P>()[c] = static_cast<P>(sum_gy_xhat);
        if (!gx.defined()) continue;
        T* pgx = gx.data<T>();
        // gx = g * invstd / M * (M * gy - sum(gy) - xhat * sum(gy * xhat))
        const BnGradInput coef{p.training, mean, invstd, g * invstd, sum_gy / m, sum_gy_xhat, m};
        const BnGradInputF coef_f{p.training,
                                  static_cast<float>(mean),
                                  static_cast<float>(invstd),
                                  static_cast<float>(coef.k0),
                                  static_cast<float>(coef.mean_gy),
                                  static_cast<float>(sum_gy_xhat),
                                  static_cast<float>(m)};
        for (int64_t n = 0; n < d.n; ++n) {
          const int64_t k = (n * d.c + c) * d.l;
          if constexpr (std::is_same_v<T, double>) {
            for (int64_t i = 0; i < d.l; ++i) {
              const double gyk = pg[k + i];
              if (p.training) {
                const double xhat = (px[k + i] - mean) * invstd;
                pgx[k + i] = coef.k0 * (gyk - coef.mean_gy - xhat * sum_gy_xhat / m);
              } else {
                pgx[k + i] = coef.k0 * gyk;
              }
            }
          } else if constexpr (std::is_same_v<T, float>) {
            double* out = thread_scratch<double>(0, d.l);
            bn_grad_input(gr.row(n), xr.row(n), out, d.l, coef);
            for (int64_t i = 0; i < d.l; ++i) pgx[k + i] = static_cast<float>(out[i]);
          } else {  // computed in float (the compute type of f16/bf16), rounded once to T
            float* out = thread_scratch<float>(2, d.l);
            bn_grad_input(gr.row(n), xr.row(n), out, d.l, coef_f);
            narrow(out, pgx + k, d.l);
          }
        }
      }
    });
  });
}

}  // namespace mixtape::cpu
