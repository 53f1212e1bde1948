// Bulk float <-> f16/bf16 conversions: AVX2/F16C kernels compiled for those features only (target
// attribute) and entered only when __builtin_cpu_supports says the CPU has them; scalar loops otherwise.
#include "core/cpu/cpu_simd.h"

#include "core/cpu/cpu_simd_x86.h"

#if MIXTAPE_X86_SIMD
#include <cpuid.h>
#endif

namespace mixtape::cpu {

namespace {

#if MIXTAPE_X86_SIMD
#define MIXTAPE_AVX2 __attribute__((target("avx2,f16c,fma")))

MIXTAPE_AVX2 void widen_f16_avx2(const Half* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    // F16C quiets signalling NaNs; half_bits_to_float keeps them: clear the quiet bit again for those lanes.
    const __m256i ah = _mm256_and_si256(_mm256_cvtepu16_epi32(h), _mm256_set1_epi32(0x7fff));
    const __m256i snan = _mm256_and_si256(_mm256_cmpgt_epi32(ah, _mm256_set1_epi32(0x7c00)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(0x7e00), ah));
    const __m256i w = _mm256_andnot_si256(_mm256_and_si256(snan, _mm256_set1_epi32(0x400000)),
                                          _mm256_castps_si256(_mm256_cvtph_ps(h)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), w);
  }
  for (; i < n; ++i) dst[i] = half_bits_to_float(src[i].bits);
}

MIXTAPE_AVX2 void widen_bf16_avx2(const BFloat16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), w);
  }
  for (; i < n; ++i) dst[i] = bfloat16_bits_to_float(src[i].bits);
}

MIXTAPE_AVX2 void narrow_f16_avx2(const float* src, Half* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i].bits = float_to_half_bits(src[i]);
}

/// 8 floats to 8 bfloat16 (in the low 16 bits of each 32-bit lane), the RNE trick of float_to_bfloat16_bits.
MIXTAPE_AVX2 inline __m256i bf16_round(__m256i x) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));  // signed compare: abs >= 0
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                                              _mm256_and_si256(_mm256_srli_epi32(x, 16), one))),
                        16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

MIXTAPE_AVX2 void narrow_bf16_avx2(const float* src, BFloat16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i lo = bf16_round(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m256i hi = bf16_round(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8)));
    // packus works per 128-bit lane: (lo0 hi0 lo1 hi1) -> reorder the 64-bit quarters to (lo0 lo1 hi0 hi1).
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), packed);
  }
  for (; i < n; ++i) dst[i].bits = float_to_bfloat16_bits(src[i]);
}
#endif

}  // namespace

bool cpu_has_f16c() {
#if MIXTAPE_X86_SIMD
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_F16C) || !(ecx & bit_OSXSAVE)) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  return (xcr0_lo & 0x6u) == 0x6u;  // the OS saves SSE and AVX registers
#else
  return false;
#endif
}

bool simd_avx2_f16c() {
#if MIXTAPE_X86_SIMD
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && cpu_has_f16c() && __builtin_cpu_supports("fma");
  }();
  return yes;
#else
  return false;
#endif
}

void widen(const Half* src, float* dst, int64_t n) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return widen_f16_avx2(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(src[i].bits);
}

void widen(const BFloat16* src, float* dst, int64_t n) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return widen_bf16_avx2(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = bfloat16_bits_to_float(src[i].bits);
}

void narrow(const float* src, Half* dst, int64_t n) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return narrow_f16_avx2(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i].bits = float_to_half_bits(src[i]);
}

void narrow(const float* src, BFloat16* dst, int64_t n) {
#if MIXTAPE_X86_SIMD
  if (simd_avx2_f16c()) return narrow_bf16_avx2(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i].bits = float_to_bfloat16_bits(src[i]);
}

}  // namespace mixtape::cpu
