// Float GEMM through Eigen compiled for AVX2 + FMA, entered only when the CPU has them (core/cpu/cpu_gemm.cpp
// checks simd_avx2_f16c()). The rest of the library is built for the baseline ISA, so this file:
//  * includes the standard headers first, so nothing of the standard library is compiled for AVX2 here;
//  * renames Eigen's namespace, so its (inline, template) functions compiled for AVX2 cannot be merged by the
//    linker with the baseline copies instantiated in other files (one definition per ISA, never mixed).
#include <algorithm>
#include <cassert>
#include <cfloat>
#include <climits>
#include <cmath>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iosfwd>
#include <istream>
#include <limits>
#include <new>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/cpu/cpu_simd.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__)
#define MIXTAPE_EIGEN_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
// The target pragma enables the instructions but does not define the macros by which Eigen chooses its kernels
// (without them it compiles its SSE2 GEBP, mr = 8 floats, instead of the AVX2/FMA one, mr = 24): define the ones
// the compiler did not, and undefine them again after the region.
#ifndef __SSE3__
#define __SSE3__ 1
#define MIXTAPE_DEFINED_SSE3 1
#endif
#ifndef __SSSE3__
#define __SSSE3__ 1
#define MIXTAPE_DEFINED_SSSE3 1
#endif
#ifndef __SSE4_1__
#define __SSE4_1__ 1
#define MIXTAPE_DEFINED_SSE4_1 1
#endif
#ifndef __SSE4_2__
#define __SSE4_2__ 1
#define MIXTAPE_DEFINED_SSE4_2 1
#endif
#ifndef __AVX__
#define __AVX__ 1
#define MIXTAPE_DEFINED_AVX 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#define MIXTAPE_DEFINED_AVX2 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#define MIXTAPE_DEFINED_FMA 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#define MIXTAPE_DEFINED_F16C 1
#endif
#define Eigen mixtape_eigen_avx2
#include <Eigen/Core>
#if !defined(EIGEN_VECTORIZE_AVX2) || !defined(EIGEN_VECTORIZE_FMA)
#error "cpu_simd_gemm.cpp: Eigen did not select its AVX2 + FMA kernels; the fast float GEMM would be the SSE2 one"
#endif
#endif

namespace mixtape::cpu {

#if MIXTAPE_EIGEN_AVX2
namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using MMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
}  // namespace

bool gemm_f32_avx2(const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb, bool trans_b, float* c,
                   int64_t ldc, int64_t m, int64_t n, int64_t k, float alpha, double beta) {
  CMap A(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  CMap B(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  MMap C(c, m, n, Eigen::OuterStride<>(ldc));
  auto product = [&](const auto& lhs, const auto& rhs) {
    if (beta == 0.0) {
      C.noalias() = alpha * (lhs * rhs);
    } else {
      C *= static_cast<float>(beta);
      C.noalias() += alpha * (lhs * rhs);
    }
  };
  if (!trans_a && !trans_b) product(A, B);
  else if (trans_a && !trans_b) product(A.transpose(), B);
  else if (!trans_a && trans_b) product(A, B.transpose());
  else product(A.transpose(), B.transpose());
  return true;
}
#else
bool gemm_f32_avx2(const float*, int64_t, bool, const float*, int64_t, bool, float*, int64_t, int64_t, int64_t,
                   int64_t, float, double) {
  return false;  // not built (another compiler, or the baseline already has AVX2): the caller's Eigen is used
}
#endif

}  // namespace mixtape::cpu

#if MIXTAPE_EIGEN_AVX2
#pragma GCC pop_options
#ifdef MIXTAPE_DEFINED_SSE3
#undef __SSE3__
#endif
#ifdef MIXTAPE_DEFINED_SSSE3
#undef __SSSE3__
#endif
#ifdef MIXTAPE_DEFINED_SSE4_1
#undef __SSE4_1__
#endif
#ifdef MIXTAPE_DEFINED_SSE4_2
#undef __SSE4_2__
#endif
#ifdef MIXTAPE_DEFINED_AVX
#undef __AVX__
#endif
#ifdef MIXTAPE_DEFINED_AVX2
#undef __AVX2__
#endif
#ifdef MIXTAPE_DEFINED_FMA
#undef __FMA__
#endif
#ifdef MIXTAPE_DEFINED_F16C
#undef __F16C__
#endif
#endif
