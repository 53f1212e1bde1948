#pragma once
// For the files with x86 SIMD kernels (core/cpu/cpu_simd*.cpp): MIXTAPE_X86_SIMD is 1 where they can be compiled
// (GCC or clang on x86-64; <immintrin.h> included), and MIXTAPE_AVX2_NOFMA marks a function compiled for AVX2
// without FMA, so that a multiply and an add (also written as intrinsics) are never contracted into one rounding:
// such a kernel rounds exactly as the scalar loop it replaces. Callers enter these functions only after
// simd_avx2_f16c() (core/cpu/cpu_simd.h) says the CPU has AVX2.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MIXTAPE_X86_SIMD 1
#define MIXTAPE_AVX2_NOFMA __attribute__((target("avx2")))
#endif
