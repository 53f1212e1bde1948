#pragma once
// Bulk conversions between float and the 16-bit storage types, vectorised where the CPU allows
// (AVX2 + F16C, chosen at run time) and bit-identical to the scalar conversions of core/half.h
// (round to nearest even, subnormals, ±inf, NaN payloads), with those scalar loops as the fallback.
#include <cstdint>

#include "core/half.h"

namespace mixtape::cpu {

/// Whether the AVX2 + F16C + FMA paths are used (decided once, from the CPU's features).
bool simd_avx2_f16c();
/// Whether the CPU has F16C and the OS saves AVX state (cpuid leaf 1 ECX bit 29, OSXSAVE and XCR0), as GCC's
/// __builtin_cpu_supports("f16c"), which clang does not accept; false off x86.
bool cpu_has_f16c();

void widen(const Half* src, float* dst, int64_t n);
void widen(const BFloat16* src, float* dst, int64_t n);
/// Rounds n floats to nearest even.
void narrow(const float* src, Half* dst, int64_t n);
void narrow(const float* src, BFloat16* dst, int64_t n);

/// C[m x n] = alpha * op(A) op(B) + beta * C (row-major, leading dimensions lda/ldb/ldc) with Eigen built for
/// AVX2 + FMA (core/cpu/cpu_simd_gemm.cpp). Call only when simd_avx2_f16c(); false when that build is absent.
bool gemm_f32_avx2(const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb, bool trans_b, float* c,
                   int64_t ldc, int64_t m, int64_t n, int64_t k, float alpha, double beta);

}  // namespace mixtape::cpu
