// The 2x2, stride-2 max-pool row kernel (core/cpu/cpu_simd.h), with an AVX2 version chosen at run time.
#include "core/cpu/cpu_simd.h"

#include "core/cpu/cpu_simd_x86.h"

namespace mixtape::cpu {

namespace {

/// One output: the scalar rule the vector loop follows lane by lane.
inline void maxpool2x2_one(const float* r0, const float* r1, int64_t j, int64_t w, int64_t base, float* out,
                           int64_t* idx) {
  const float c[4] = {r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]};
  const int64_t off[4] = {0, 1, w, w + 1};
  float best = c[0];
  int64_t arg = 0;
  for (int t = 1; t < 4; ++t) {
    const bool take = best == best && (c[t] > best || c[t] != c[t]);
    best = take ? c[t] : best;
    arg = take ? off[t] : arg;
  }
  out[j] = best;
  idx[j] = base + 2 * j + arg;
}

#if MIXTAPE_X86_SIMD
/// One candidate against the running best, 8 lanes: taken when best is not NaN and the candidate is greater or NaN.
MIXTAPE_AVX2_NOFMA inline void pool_step(__m256& best, __m256i& arg, __m256 cand, __m256i off) {
  const __m256 ordered = _mm256_cmp_ps(best, best, _CMP_ORD_Q);
  const __m256 better = _mm256_or_ps(_mm256_cmp_ps(cand, best, _CMP_GT_OQ), _mm256_cmp_ps(cand, cand, _CMP_UNORD_Q));
  const __m256 take = _mm256_and_ps(ordered, better);
  best = _mm256_blendv_ps(best, cand, take);
  arg = _mm256_blendv_epi8(arg, off, _mm256_castps_si256(take));
}

MIXTAPE_AVX2_NOFMA void maxpool2x2_row_avx2(const float* r0, const float* r1, int64_t ow, int64_t w,
                                                         int64_t base, float* out, int64_t* idx) {
  const __m256i perm = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
  // offsets of the four candidates (as 64-bit lanes are built from them below)
  const __m256i off1 = _mm256_set1_epi32(1), offw = _mm256_set1_epi32(static_cast<int>(w)),
                offw1 = _mm256_set1_epi32(static_cast<int>(w + 1));
  const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  int64_t j = 0;
  for (; j + 8 <= ow; j += 8) {
    // 16 consecutive floats of each row -> the 8 even (left) and 8 odd (right) columns
    const __m256 x0 = _mm256_loadu_ps(r0 + 2 * j), x1 = _mm256_loadu_ps(r0 + 2 * j + 8);
    const __m256 y0 = _mm256_loadu_ps(r1 + 2 * j), y1 = _mm256_loadu_ps(r1 + 2 * j + 8);
    const __m256 a = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(_mm256_castps_si256(_mm256_shuffle_ps(x0, x1, 0x88)), perm));
    const __m256 b = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(_mm256_castps_si256(_mm256_shuffle_ps(x0, x1, 0xdd)), perm));
    const __m256 c = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(_mm256_castps_si256(_mm256_shuffle_ps(y0, y1, 0x88)), perm));
    const __m256 d = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(_mm256_castps_si256(_mm256_shuffle_ps(y0, y1, 0xdd)), perm));
    __m256 best = a;
    __m256i arg = _mm256_setzero_si256();
    pool_step(best, arg, b, off1);
    pool_step(best, arg, c, offw);
    pool_step(best, arg, d, offw1);
    _mm256_storeu_ps(out + j, best);
    // idx = base + 2 j + lane*2 + arg, as 64-bit values
    const __m256i rel = _mm256_add_epi32(arg, lane2);
    const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(rel));
    const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(rel, 1));
    const __m256i start = _mm256_set1_epi64x(base + 2 * j);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + j), _mm256_add_epi64(lo, start));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + j + 4), _mm256_add_epi64(hi, start));
  }
  for (; j < ow; ++j) maxpool2x2_one(r0, r1, j, w, base, out, idx);
}
#endif

}  // namespace

void maxpool2x2_row(const float* r0, const float* r1, int64_t ow, int64_t w, int64_t base, float* out, int64_t* idx) {
#if MIXTAPE_X86_SIMD
  // 32-bit offsets inside the vector loop: rows up to 2^30 wide
  if (simd_avx2_f16c() && w < (int64_t{1} << 30)) return maxpool2x2_row_avx2(r0, r1, ow, w, base, out, idx);
#endif
  for (int64_t j = 0; j < ow; ++j) maxpool2x2_one(r0, r1, j, w, base, out, idx);
}

}  // namespace mixtape::cpu
