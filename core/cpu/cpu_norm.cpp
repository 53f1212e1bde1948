// CPU batch normalisation over x viewed as (N, C, L). Statistics are accumulated in double and kept in float32
// (f64 for f64 inputs) whatever x's dtype, so an f16 input whose squares overflow f16 still normalises correctly;
// the output is rounded once to x's dtype.
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/conv_kernels.h"

namespace mixtape::cpu {

namespace {
template <class T>
using Param = std::conditional_t<std::is_same_v<T, double>, double, float>;

using kernels::NormDims;
using kernels::norm_dims;
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
    for (int64_t c = 0; c < d.c; ++c) {
      double mean = 0, invstd = 0;
      if (p.training) {
        double s = 0;
        for (int64_t n = 0; n < d.n; ++n)
          for (int64_t i = 0; i < d.l; ++i) s += static_cast<double>(px[(n * d.c + c) * d.l + i]);
        mean = s / static_cast<double>(m);
        double ss = 0;  // two-pass variance: no cancellation
        for (int64_t n = 0; n < d.n; ++n)
          for (int64_t i = 0; i < d.l; ++i) {
            const double v = static_cast<double>(px[(n * d.c + c) * d.l + i]) - mean;
            ss += v * v;
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
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.l; ++i) {
          const int64_t k = (n * d.c + c) * d.l + i;
          po[k] = store<T>(static_cast<P>(px[k]) * scale + shift);
        }
    }
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
    for (int64_t c = 0; c < d.c; ++c) {
      const double mean = static_cast<double>(save_mean.data<P>()[c]);
      const double invstd = static_cast<double>(save_invstd.data<P>()[c]);
      const double g = weight.defined() ? static_cast<double>(weight.data<P>()[c]) : 1.0;
      double sum_gy = 0, sum_gy_xhat = 0;
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.l; ++i) {
          const int64_t k = (n * d.c + c) * d.l + i;
          const double gyk = static_cast<double>(pg[k]);
          sum_gy += gyk;
          sum_gy_xhat += gyk * (static_cast<double>(px[k]) - mean) * invstd;
        }
      if (gbias.defined()) gbias.data<P>()[c] = static_cast<P>(sum_gy);
      if (gweight.defined()) gweight.data<P>()[c] = static_cast<P>(sum_gy_xhat);
      if (!gx.defined()) continue;
      T* pgx = gx.data<T>();
      const double k0 = g * invstd;
      for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.l; ++i) {
          const int64_t k = (n * d.c + c) * d.l + i;
          const double gyk = static_cast<double>(pg[k]);
          if (p.training) {
            // gx = g * invstd / M * (M * gy - sum(gy) - xhat * sum(gy * xhat))
            const double xhat = (static_cast<double>(px[k]) - mean) * invstd;
            pgx[k] = store<T>(k0 * (gyk - sum_gy / m - xhat * sum_gy_xhat / m));
          } else {
            pgx[k] = store<T>(k0 * gyk);
          }
        }
    }
  });
}

}  // namespace mixtape::cpu
