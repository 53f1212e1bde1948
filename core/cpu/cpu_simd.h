#pragma once
// Bulk conversions between float and the 16-bit storage types, vectorised where the CPU allows
// (AVX2 + F16C, chosen at run time) and bit-identical to the scalar conversions of core/half.h
// (round to nearest even, subnormals, ±inf, NaN payloads), with those scalar loops as the fallback.
#include <cmath>
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

// ---- batch normalisation over rows of floats (core/cpu/cpu_simd_norm.cpp) ----

/// Two sums over a row, in double: {Σ x, Σ (x - mean)²} from bn_row_sums; {Σ gy, Σ gy (x - mean) invstd} from
/// bn_grad_sums.
struct BnRowSums {
  double sum, sum_sq_dev;
};
BnRowSums bn_row_sums(const float* x, int64_t n, double mean);
BnRowSums bn_grad_sums(const float* gy, const float* x, int64_t n, double mean, double invstd);
/// y = x * scale + shift, in float (a product, then a sum: two roundings).
void bn_scale_shift(const float* x, float* y, int64_t n, float scale, float shift);
/// The input gradient's constants: training: gx = k0 (gy - mean_gy - xhat sum_gy_xhat / m), xhat = (x - mean) invstd;
/// eval: gx = k0 gy.
struct BnGradInput {
  bool training;
  double mean, invstd, k0, mean_gy, sum_gy_xhat, m;
};
/// One element of the input gradient, in double (the scalar formula the AVX2 path follows operation for operation).
inline double bn_grad_input_one(float gy, float x, const BnGradInput& c) {
  const double g = gy;
  if (!c.training) return c.k0 * g;
  const double xhat = (static_cast<double>(x) - c.mean) * c.invstd;
  return c.k0 * (g - c.mean_gy - xhat * c.sum_gy_xhat / c.m);
}
void bn_grad_input(const float* gy, const float* x, double* out, int64_t n, const BnGradInput& c);
/// The same formula in float (for f16/bf16 inputs, whose compute type is float): the constants rounded to float.
struct BnGradInputF {
  bool training;
  float mean, invstd, k0, mean_gy, sum_gy_xhat, m;
};
inline float bn_grad_input_one(float gy, float x, const BnGradInputF& c) {
  if (!c.training) return c.k0 * gy;
  const float xhat = (x - c.mean) * c.invstd;
  return c.k0 * (gy - c.mean_gy - xhat * c.sum_gy_xhat / c.m);
}
void bn_grad_input(const float* gy, const float* x, float* out, int64_t n, const BnGradInputF& c);

// ---- 2x2 max pooling, stride 2 (core/cpu/cpu_conv.cpp; core/cpu/cpu_simd_pool.cpp) ----

/// One output row of a 2x2, stride-2 max pool: out[j] and idx[j] from input rows r0 and r1 (= r0 + w) at columns
/// 2j and 2j + 1, for j < ow. Candidates in row-major order; the first maximum wins, the first NaN wins (PyTorch's
/// rule); idx[j] = base + the winner's offset from r0 (base: r0's index in its plane). AVX2 where the CPU has it;
/// every output is one of its inputs, so both paths give the same values.
void maxpool2x2_row(const float* r0, const float* r1, int64_t ow, int64_t w, int64_t base, float* out, int64_t* idx);

// ---- Adam (core/cpu/cpu_optim.cpp; the vector loop in core/cpu/cpu_simd_optim.cpp) ----

/// The constants of one Adam update, each rounded once to the accumulate type A from double.
template <class A>
struct AdamConsts {
  A b1, b2, one_minus_b1, one_minus_b2, eps, wd, step_size, bc2_sqrt, decay;
  bool decoupled;
};
/// One element of PyTorch 1.13's single-tensor Adam in A: updates m and v and returns the new parameter.
template <class A>
inline A adam_one(A pv, A gv, A& m, A& v, const AdamConsts<A>& c) {
  if (c.decoupled) pv *= c.decay;
  else if (c.wd != A(0)) gv += c.wd * pv;
  // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) (a lerp only from 2.0 on);
  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2), i.e. ((1 - beta2) * g) * g.
  m = m * c.b1 + c.one_minus_b1 * gv;
  v = v * c.b2 + c.one_minus_b2 * gv * gv;
  // param.addcdiv_(exp_avg, sqrt(v) / bc2_sqrt + eps, value=-step_size): (value * m) / denom.
  return pv - c.step_size * m / (std::sqrt(v) / c.bc2_sqrt + c.eps);
}
/// adam_one over n float32 elements, 8 at a time with AVX2 where the CPU has it (no FMA: the same roundings, so the
/// same bits as the scalar loop).
void adam_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamConsts<float>& c);

/// C[m x n] = alpha * op(A) op(B) + beta * C (row-major, leading dimensions lda/ldb/ldc) with Eigen built for
/// AVX2 + FMA (core/cpu/cpu_simd_gemm.cpp). Call only when simd_avx2_f16c(); false when that build is absent.
bool gemm_f32_avx2(const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb, bool trans_b, float* c,
                   int64_t ldc, int64_t m, int64_t n, int64_t k, float alpha, double beta);

}  // namespace mixtape::cpu
