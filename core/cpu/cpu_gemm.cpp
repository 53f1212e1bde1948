// CPU GEMM: oneDNN when core/cpu_kernels.h's choice and oneDNN accept the product (core/cpu/cpu_onednn.cpp), else
// Eigen. On the Eigen path, f16/bf16 operands are widened to float (F16C/AVX2 where the CPU has them), accumulated
// in float, and the output is rounded once (what tensor cores do); f32 and f64 map the buffers directly.
// Float products use Eigen built for AVX2 + FMA (core/cpu/cpu_simd_gemm.cpp) when the CPU has them.
// Large products are split across cpu_threads() (core/cpu_threads.h, parallel_for) by blocks of output rows (or columns): each block is
// an independent Eigen product and the split depends only on the shape and the thread count, so results are
// the same bits run to run.
// Epilogues (bias, bias + ReLU/GELU) and the row sums of op(a) (a Linear's bias gradient) are applied to the float
// (double for f64) result before its one rounding, as cuBLASLt's BIAS and BGRAD epilogues do.
#include <Eigen/Core>
#include <algorithm>
#include <mutex>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_gemm.h"
#include "core/cpu/cpu_onednn.h"
#include "core/cpu/cpu_simd.h"
#include "core/cpu_threads.h"
#include "core/functors.h"

namespace mixtape::cpu {

namespace {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using CMap = Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using MMap = Eigen::Map<RowMat<S>, 0, Eigen::OuterStride<>>;

/// The scalars of one product C (m, n) = alpha * op(A) op(B) + beta * C, op(A) being (m, k).
struct Product {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  double alpha = 1.0, beta = 0.0;
};

/// C[m x n] = alpha * op(A) op(B) + beta * C on row-major buffers with leading dimensions lda, ldb, ldc.
template <class S>
void gemm_block(const S* a, int64_t lda, const S* b, int64_t ldb, S* c, int64_t ldc, int64_t m, int64_t n,
                const Product& g) {
  const int64_t k = g.k;
  if constexpr (std::is_same_v<S, float>) {
    if (simd_avx2_f16c() && gemm_f32_avx2(a, lda, g.trans_a, b, ldb, g.trans_b, c, ldc, m, n, k,
                                          static_cast<float>(g.alpha), g.beta))
      return;
  }
  CMap<S> A(a, g.trans_a ? k : m, g.trans_a ? m : k, Eigen::OuterStride<>(lda));
  CMap<S> B(b, g.trans_b ? n : k, g.trans_b ? k : n, Eigen::OuterStride<>(ldb));
  MMap<S> C(c, m, n, Eigen::OuterStride<>(ldc));
  const S alpha = static_cast<S>(g.alpha);
  auto product = [&](const auto& lhs, const auto& rhs) {
    if (g.beta == 0.0) {
      C.noalias() = alpha * (lhs * rhs);
    } else {
      C *= static_cast<S>(g.beta);
      C.noalias() += alpha * (lhs * rhs);
    }
  };
  if (!g.trans_a && !g.trans_b) product(A, B);
  else if (g.trans_a && !g.trans_b) product(A.transpose(), B);
  else if (!g.trans_a && g.trans_b) product(A, B.transpose());
  else product(A.transpose(), B.transpose());
}

/// c[i, j] = act(c[i, j] + bias[j]) in place on an (m, n) row-major block with leading dimension ldc, in the
/// accumulate type A.
template <class A>
void apply_epilogue(A* c, int64_t ldc, int64_t m, int64_t n, const A* bias, GemmEpilogue epilogue) {
  auto run = [&](auto act) {
    for (int64_t i = 0; i < m; ++i) {
      A* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = act(row[j] + bias[j]);
    }
  };
  switch (epilogue) {
    case GemmEpilogue::none: return;
    case GemmEpilogue::bias: return run(fn::Identity{});
    case GemmEpilogue::bias_relu: return run(fn::Relu{});
    case GemmEpilogue::bias_gelu: return run(fn::Gelu{});
  }
}

/// The thread count for the split (Eigen's own parallel setup done once first).
int split_threads() {
  static const bool init = [] {
    Eigen::initParallel();
    return true;
  }();
  (void)init;
  return cpu_threads();
}

/// C = epilogue(alpha * op(A) op(B) + beta * C) on row-major buffers with leading dimensions lda, ldb, ldc (bias:
/// n values, or null for no epilogue), split across threads when large enough; each thread applies the epilogue
/// to its block while it is in cache.
template <class S>
void gemm_mapped(const S* a, int64_t lda, const S* b, int64_t ldb, S* c, int64_t ldc, const Product& g,
                 const S* bias = nullptr, GemmEpilogue epilogue_kind = GemmEpilogue::none) {
  const int64_t m = g.m, n = g.n, k = g.k;
  if (m <= 0 || n <= 0) return;
  constexpr int64_t kMinWork = int64_t{1} << 21;  // multiply-adds per thread worth a thread start
  constexpr int64_t kAlign = 32;                  // block edges on multiples of Eigen's register blocking
  const bool split_m = m >= n;
  const int64_t extent = split_m ? m : n;
  int64_t parts = std::min<int64_t>({split_threads(), m * n * k / kMinWork, extent / kAlign});
  const GemmEpilogue epilogue = bias ? epilogue_kind : GemmEpilogue::none;
  if (parts <= 1) {
    gemm_block(a, lda, b, ldb, c, ldc, m, n, g);
    return apply_epilogue(c, ldc, m, n, bias, epilogue);
  }
  const int64_t step = (extent / parts + kAlign - 1) / kAlign * kAlign;
  parts = (extent + step - 1) / step;
  auto run = [&](int64_t p) {
    const int64_t lo = p * step, len = std::min(extent, lo + step) - lo;
    if (split_m) {
      gemm_block(a + (g.trans_a ? lo : lo * lda), lda, b, ldb, c + lo * ldc, ldc, len, n, g);
      apply_epilogue(c + lo * ldc, ldc, len, n, bias, epilogue);
    } else {
      gemm_block(a, lda, b + (g.trans_b ? lo * ldb : lo), ldb, c + lo, ldc, m, len, g);
      apply_epilogue(c + lo, ldc, m, len, bias ? bias + lo : nullptr, epilogue);
    }
  };
  parallel_for(parts, run);
}

/// A per-thread float buffer of at least n elements, reused across calls.
float* scratch(std::vector<float>& buf, int64_t n) {
  if (buf.size() < static_cast<size_t>(n)) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

/// sums[i] = sum_r op(a)[i, r] for op(a) of shape (m, k) (a is (k, m) when trans), accumulated in A in order of r.
template <class A, class S>
void op_row_sums(const S* a, bool trans, int64_t m, int64_t k, A* sums) {
  if (trans) {  // a: (k, m); add its rows one after another (the order of a sum over axis 0)
    std::fill(sums, sums + m, A(0));
    for (int64_t r = 0; r < k; ++r) {
      const S* row = a + r * m;
      for (int64_t i = 0; i < m; ++i) sums[i] += static_cast<A>(row[i]);
    }
  } else {  // a: (m, k)
    for (int64_t i = 0; i < m; ++i) {
      A s = A(0);
      for (int64_t r = 0; r < k; ++r) s += static_cast<A>(a[i * k + r]);
      sums[i] = s;
    }
  }
}

/// Widens a bias (n) to the accumulate type A.
template <class A, class T>
std::vector<A> widen_vector(const Tensor& t) {
  const T* p = static_cast<const T*>(t.raw_data());
  std::vector<A> out(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<A>(p[i]);
  return out;
}

/// The packed row-major product of GemmArgs (leading dimensions from the shapes), with its epilogue.
template <class S>
void gemm_packed(const S* a, const S* b, S* c, const GemmArgs& g, const S* bias) {
  const Product p{g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, g.beta};
  gemm_mapped(a, g.trans_a ? g.m : g.k, b, g.trans_b ? g.k : g.n, c, g.n, p, bias, g.epilogue);
}

}  // namespace

void gemm_f32(const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb, bool trans_b, float* c,
              int64_t ldc, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  gemm_mapped(a, lda, b, ldb, c, ldc, Product{trans_a, trans_b, m, n, k, alpha, beta});
}

void gemm_f64(const double* a, int64_t lda, bool trans_a, const double* b, int64_t ldb, bool trans_b, double* c,
              int64_t ldc, int64_t m, int64_t n, int64_t k, double alpha, double beta) {
  gemm_mapped(a, lda, b, ldb, c, ldc, Product{trans_a, trans_b, m, n, k, alpha, beta});
}

void CpuBackend::gemm(const GemmArgs& g) {
  dispatch_floating(g.a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(g.a.raw_data());
    const T* pb = static_cast<const T*>(g.b.raw_data());
    T* pc = static_cast<T*>(g.out.raw_data());
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;  // accumulate type
    if (g.a_sums.defined()) {  // batch == 1 (checked by kernels::gemm)
      std::vector<A> sums(static_cast<size_t>(g.m));
      op_row_sums<A>(pa, g.trans_a, g.m, g.k, sums.data());
      T* ps = static_cast<T*>(g.a_sums.raw_data());
      for (int64_t i = 0; i < g.m; ++i) ps[i] = store<T>(sums[static_cast<size_t>(i)]);
    }
    if (onednn_gemm(g)) return;
    set_last_gemm_impl(!std::is_same_v<T, double> && simd_avx2_f16c() ? "eigen+avx2" : "eigen");
    const bool has_bias = g.epilogue != GemmEpilogue::none;
    const std::vector<A> bias = has_bias ? widen_vector<A, T>(g.bias) : std::vector<A>();
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      for (int64_t i = 0; i < g.batch; ++i) {
        gemm_packed<T>(pa + i * g.stride_a, pb + i * g.stride_b, pc + i * g.stride_out, g,
                       has_bias ? bias.data() : nullptr);
      }
    } else {
      const int64_t na = g.m * g.k, nb = g.k * g.n, nc = g.m * g.n;
      thread_local std::vector<float> buf_a, buf_b, buf_c;
      float* fa = scratch(buf_a, na);
      float* fb = scratch(buf_b, nb);
      float* fc = scratch(buf_c, nc);
      for (int64_t i = 0; i < g.batch; ++i) {
        // Shared (stride 0) operands are widened once.
        if (i == 0 || g.stride_a) widen(pa + i * g.stride_a, fa, na);
        if (i == 0 || g.stride_b) widen(pb + i * g.stride_b, fb, nb);
        T* c = pc + i * g.stride_out;
        if (g.beta != 0.0) widen(c, fc, nc);
        gemm_packed<float>(fa, fb, fc, g, has_bias ? bias.data() : nullptr);
        narrow(fc, c, nc);
      }
    }
  });
}

}  // namespace mixtape::cpu
