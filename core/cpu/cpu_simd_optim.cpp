// The float32 Adam loop with AVX2 (chosen at run time), compiled without FMA so that every operation rounds as in
// adam_one (core/cpu/cpu_simd.h): the vector and scalar loops give the same bits.
#include "core/cpu/cpu_simd.h"

#include "core/cpu/cpu_simd_x86.h"

namespace mixtape::cpu {

namespace {
#if MIXTAPE_X86_SIMD
MIXTAPE_AVX2_NOFMA void adam_f32_avx2(float* p, const float* g, float* m, float* v, int64_t n,
                                                   const AdamConsts<float>& c) {
  const __m256 b1 = _mm256_set1_ps(c.b1), b2 = _mm256_set1_ps(c.b2), omb1 = _mm256_set1_ps(c.one_minus_b1),
               omb2 = _mm256_set1_ps(c.one_minus_b2), eps = _mm256_set1_ps(c.eps), wd = _mm256_set1_ps(c.wd),
               step = _mm256_set1_ps(c.step_size), bc2 = _mm256_set1_ps(c.bc2_sqrt), decay = _mm256_set1_ps(c.decay);
  const bool coupled_wd = !c.decoupled && c.wd != 0.0f;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 pv = _mm256_loadu_ps(p + i), gv = _mm256_loadu_ps(g + i);
    if (c.decoupled) pv = _mm256_mul_ps(pv, decay);
    else if (coupled_wd) gv = _mm256_add_ps(gv, _mm256_mul_ps(wd, pv));
    const __m256 mv = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(omb1, gv));
    const __m256 vv = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(omb2, gv), gv));
    _mm256_storeu_ps(m + i, mv);
    _mm256_storeu_ps(v + i, vv);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bc2), eps);
    _mm256_storeu_ps(p + i, _mm256_sub_ps(pv, _mm256_div_ps(_mm256_mul_ps(step, mv), denom)));
  }
  for (; i < n; ++i) p[i] = adam_one(p[i], g[i], m[i], v[i], c);
}
#endif
}  // namespace

void adam_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamConsts<float>& c) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return adam_f32_avx2(p, g, m, v, n, c);
#endif
  for (int64_t i = 0; i < n; ++i) p[i] = adam_one(p[i], g[i], m[i], v[i], c);
}

}  // namespace mixtape::cpu
