#pragma once
// The CPU backend's dense product on float/double buffers, for the kernels built on it (convolution's im2col
// GEMMs): Eigen built for AVX2 + FMA when the CPU has them (float), split across cpu_threads() by blocks of output
// rows or columns; the split depends only on the shape and the thread count (same bits run to run).
#include <cstdint>

namespace mixtape::cpu {

/// C (m, n) = alpha * op(A) op(B) + beta * C on row-major float buffers with leading dimensions lda, ldb, ldc;
/// op(A) is (m, k) (A is (k, m) when trans_a), op(B) is (k, n). beta == 0 ignores C's contents (NaN included).
void gemm_f32(const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb, bool trans_b, float* c,
              int64_t ldc, int64_t m, int64_t n, int64_t k, float alpha, float beta);

/// gemm_f32 in double (the f64 path: gradchecks).
void gemm_f64(const double* a, int64_t lda, bool trans_a, const double* b, int64_t ldb, bool trans_b, double* c,
              int64_t ldc, int64_t m, int64_t n, int64_t k, double alpha, double beta);

/// The accumulate-type overloads, for code templated on float/double.
inline void gemm_acc(const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb, bool trans_b, float* c,
                     int64_t ldc, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  gemm_f32(a, lda, trans_a, b, ldb, trans_b, c, ldc, m, n, k, alpha, beta);
}
/// See gemm_acc(float).
inline void gemm_acc(const double* a, int64_t lda, bool trans_a, const double* b, int64_t ldb, bool trans_b, double* c,
                     int64_t ldc, int64_t m, int64_t n, int64_t k, double alpha, double beta) {
  gemm_f64(a, lda, trans_a, b, ldb, trans_b, c, ldc, m, n, k, alpha, beta);
}

}  // namespace mixtape::cpu
