// Batch-norm row kernels (core/cpu/cpu_norm.cpp): sums in double over a row of floats, and the per-element
// formulas, with AVX2 versions chosen at run time. The AVX2 versions are compiled without FMA, so every product and
// sum is rounded as in the scalar loops; only the order of the sums differs (4 double lanes, combined at the end).
#include "core/cpu/cpu_simd.h"

#include "core/cpu/cpu_simd_x86.h"

namespace mixtape::cpu {

namespace {

#if MIXTAPE_X86_SIMD

MIXTAPE_AVX2_NOFMA inline double hsum(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

MIXTAPE_AVX2_NOFMA BnRowSums bn_row_sums_avx2(const float* x, int64_t n, double mean) {
  __m256d s = _mm256_setzero_pd(), ss = _mm256_setzero_pd();
  const __m256d mu = _mm256_set1_pd(mean);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    s = _mm256_add_pd(s, v);
    const __m256d d = _mm256_sub_pd(v, mu);
    ss = _mm256_add_pd(ss, _mm256_mul_pd(d, d));
  }
  BnRowSums r{hsum(s), hsum(ss)};
  for (; i < n; ++i) {
    const double v = x[i], d = v - mean;
    r.sum += v;
    r.sum_sq_dev += d * d;
  }
  return r;
}

MIXTAPE_AVX2_NOFMA void bn_scale_shift_avx2(const float* x, float* y, int64_t n, float scale, float shift) {
  const __m256 a = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), a), b));
  for (; i < n; ++i) y[i] = x[i] * scale + shift;
}

MIXTAPE_AVX2_NOFMA BnRowSums bn_grad_sums_avx2(const float* gy, const float* x, int64_t n, double mean,
                                               double invstd) {
  __m256d s = _mm256_setzero_pd(), sx = _mm256_setzero_pd();
  const __m256d mu = _mm256_set1_pd(mean), is = _mm256_set1_pd(invstd);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d g = _mm256_cvtps_pd(_mm_loadu_ps(gy + i));
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    s = _mm256_add_pd(s, g);
    sx = _mm256_add_pd(sx, _mm256_mul_pd(_mm256_mul_pd(g, _mm256_sub_pd(v, mu)), is));
  }
  BnRowSums r{hsum(s), hsum(sx)};
  for (; i < n; ++i) {
    const double g = gy[i];
    r.sum += g;
    r.sum_sq_dev += g * (static_cast<double>(x[i]) - mean) * invstd;
  }
  return r;
}

MIXTAPE_AVX2_NOFMA void bn_grad_input_avx2(const float* gy, const float* x, double* out, int64_t n,
                                           const BnGradInput& c) {
  const __m256d mu = _mm256_set1_pd(c.mean), is = _mm256_set1_pd(c.invstd), k0 = _mm256_set1_pd(c.k0),
                mg = _mm256_set1_pd(c.mean_gy), sx = _mm256_set1_pd(c.sum_gy_xhat), m = _mm256_set1_pd(c.m);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d g = _mm256_cvtps_pd(_mm_loadu_ps(gy + i));
    if (c.training) {
      const __m256d xhat = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), mu), is);
      const __m256d t = _mm256_sub_pd(_mm256_sub_pd(g, mg), _mm256_div_pd(_mm256_mul_pd(xhat, sx), m));
      _mm256_storeu_pd(out + i, _mm256_mul_pd(k0, t));
    } else {
      _mm256_storeu_pd(out + i, _mm256_mul_pd(k0, g));
    }
  }
  for (; i < n; ++i) out[i] = bn_grad_input_one(gy[i], x[i], c);
}

MIXTAPE_AVX2_NOFMA void bn_grad_input_f_avx2(const float* gy, const float* x, float* out, int64_t n,
                                             const BnGradInputF& c) {
  const __m256 mu = _mm256_set1_ps(c.mean), is = _mm256_set1_ps(c.invstd), k0 = _mm256_set1_ps(c.k0),
               mg = _mm256_set1_ps(c.mean_gy), sx = _mm256_set1_ps(c.sum_gy_xhat), m = _mm256_set1_ps(c.m);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gy + i);
    if (c.training) {
      const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mu), is);
      const __m256 t = _mm256_sub_ps(_mm256_sub_ps(g, mg), _mm256_div_ps(_mm256_mul_ps(xhat, sx), m));
      _mm256_storeu_ps(out + i, _mm256_mul_ps(k0, t));
    } else {
      _mm256_storeu_ps(out + i, _mm256_mul_ps(k0, g));
    }
  }
  for (; i < n; ++i) out[i] = bn_grad_input_one(gy[i], x[i], c);
}
#endif

}  // namespace

BnRowSums bn_row_sums(const float* x, int64_t n, double mean) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return bn_row_sums_avx2(x, n, mean);
#endif
  BnRowSums r{0, 0};
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], d = v - mean;
    r.sum += v;
    r.sum_sq_dev += d * d;
  }
  return r;
}

void bn_scale_shift(const float* x, float* y, int64_t n, float scale, float shift) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return bn_scale_shift_avx2(x, y, n, scale, shift);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
}

BnRowSums bn_grad_sums(const float* gy, const float* x, int64_t n, double mean, double invstd) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return bn_grad_sums_avx2(gy, x, n, mean, invstd);
#endif
  BnRowSums r{0, 0};
  for (int64_t i = 0; i < n; ++i) {
    const double g = gy[i];
    r.sum += g;
    r.sum_sq_dev += g * (static_cast<double>(x[i]) - mean) * invstd;
  }
  return r;
}

void bn_grad_input(const float* gy, const float* x, double* out, int64_t n, const BnGradInput& c) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return bn_grad_input_avx2(gy, x, out, n, c);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = bn_grad_input_one(gy[i], x[i], c);
}

void bn_grad_input(const float* gy, const float* x, float* out, int64_t n, const BnGradInputF& c) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return bn_grad_input_f_avx2(gy, x, out, n, c);
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = bn_grad_input_one(gy[i], x[i], c);
}

}  // namespace mixtape::cpu
