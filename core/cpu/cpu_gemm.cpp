// CPU GEMM through Eigen. f16/bf16 operands are widened to float, accumulated in float, and the output is
// rounded once (what tensor cores do); f32 and f64 map the buffers directly.
#include <Eigen/Core>
#include <vector>

#include "core/cpu/cpu_backend.h"

namespace mixtape::cpu {

namespace {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// C = alpha * op(A) op(B) + beta * C on already-widened row-major buffers.
template <class S>
void gemm_mapped(const S* a, const S* b, S* c, const GemmArgs& g) {
  const int64_t ar = g.trans_a ? g.k : g.m, ac = g.trans_a ? g.m : g.k;
  const int64_t br = g.trans_b ? g.n : g.k, bc = g.trans_b ? g.k : g.n;
  Eigen::Map<const RowMat<S>> A(a, ar, ac);
  Eigen::Map<const RowMat<S>> B(b, br, bc);
  Eigen::Map<RowMat<S>> C(c, g.m, g.n);
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

/// Widens n elements of a 16-bit type into float.
template <class T>
void widen(const T* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

}  // namespace

void CpuBackend::gemm(const GemmArgs& g) {
  dispatch_floating(g.a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(g.a.raw_data());
    const T* pb = static_cast<const T*>(g.b.raw_data());
    T* pc = static_cast<T*>(g.out.raw_data());
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      for (int64_t i = 0; i < g.batch; ++i) gemm_mapped<T>(pa + i * g.stride_a, pb + i * g.stride_b, pc + i * g.stride_out, g);
    } else {
      const int64_t na = g.m * g.k, nb = g.k * g.n, nc = g.m * g.n;
      std::vector<float> fa(static_cast<size_t>(na)), fb(static_cast<size_t>(nb)), fc(static_cast<size_t>(nc));
      for (int64_t i = 0; i < g.batch; ++i) {
        // Shared (stride 0) operands are widened once.
        if (i == 0 || g.stride_a) widen(pa + i * g.stride_a, fa.data(), na);
        if (i == 0 || g.stride_b) widen(pb + i * g.stride_b, fb.data(), nb);
        T* c = pc + i * g.stride_out;
        if (g.beta != 0.0) widen(c, fc.data(), nc);
        gemm_mapped<float>(fa.data(), fb.data(), fc.data(), g);
        for (int64_t j = 0; j < nc; ++j) c[j] = T(fc[static_cast<size_t>(j)]);
      }
    }
  });
}

}  // namespace mixtape::cpu
