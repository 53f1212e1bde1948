// The CPU fast GEMM paths against float64 references: the AVX2 + FMA Eigen build (cpu_simd_gemm.cpp) on its own,
// the threaded float GEMM of core/cpu/cpu_gemm.h (odd shapes, transposes, leading dimensions, alpha/beta, every
// thread count, same bits run to run), matmul in f32/f16/bf16 (float accumulation, one rounding), and the im2col
// convolution over several sample chunks, forward and both backwards, against direct float64 loops.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/conv_kernels.h"
#include "core/cpu/cpu_gemm.h"
#include "core/cpu/cpu_simd.h"
#include "core/cpu_threads.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "rounding.h"

using namespace mixtape;

namespace {

using mixtape::testing::unit_roundoff;

using Vec = std::vector<double>;

/// Restores the default CPU thread count when it goes out of scope.
struct ThreadsGuard {
  ~ThreadsGuard() { set_cpu_threads(0); }
};

Vec uniform(std::mt19937& g, int64_t n) {
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  Vec v(static_cast<size_t>(n));
  for (double& x : v) x = d(g);
  return v;
}

/// A random buffer of n floats (and its values as doubles).
std::vector<float> random_floats(std::mt19937& g, int64_t n, Vec& values) {
  values = uniform(g, n);
  std::vector<float> f(values.size());
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>(values[i]);
    values[i] = f[i];
  }
  return f;
}

struct Shape3 {
  int64_t m, n, k;
};

const Shape3 kShapes[] = {{1, 1, 1}, {7, 13, 5}, {257, 129, 65}, {3, 1000, 2}, {300, 97, 131}};

/// Checks got (m x n, leading dimension ldc) against alpha * op(A) op(B) + beta * c0 computed in double, with the
/// float accumulation bound (k + 2) * 2^-24 * (|alpha| sum |a b| + |beta c0|) plus one rounding of `out_unit`.
template <class Got>
int count_bad(const Got& got, int64_t ldc, const Vec& a, int64_t lda, bool ta, const Vec& b, int64_t ldb, bool tb,
              const Vec& c0, int64_t m, int64_t n, int64_t k, double alpha, double beta, double out_unit,
              const std::string& what) {
  int bad = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, sa = 0;
      for (int64_t r = 0; r < k; ++r) {
        const double x = ta ? a[static_cast<size_t>(r * lda + i)] : a[static_cast<size_t>(i * lda + r)];
        const double y = tb ? b[static_cast<size_t>(j * ldb + r)] : b[static_cast<size_t>(r * ldb + j)];
        s += x * y;
        sa += std::abs(x * y);
      }
      const double c = beta != 0.0 ? c0[static_cast<size_t>(i * ldc + j)] : 0.0;
      const double want = alpha * s + beta * c;
      const double tol = static_cast<double>(k + 2) * 0x1p-24 * (std::abs(alpha) * sa + std::abs(beta * c)) +
                         out_unit * std::abs(want) + 1e-30;
      const double g = static_cast<double>(got[static_cast<size_t>(i * ldc + j)]);
      if (!(std::abs(g - want) <= tol) && bad++ < 5)
        UNSCOPED_INFO(what << " (" << i << ", " << j << ") got " << g << " want " << want << " tol " << tol);
    }
  return bad;
}

std::string name(const Shape3& s, bool ta, bool tb) {
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) + (ta ? " T" : " N") +
         (tb ? "T" : "N");
}

}  // namespace

TEST_CASE("cpu fast gemm: the AVX2 + FMA Eigen build is present and matches float64", "[cpu][gemm][simd]") {
  if (!cpu::simd_avx2_f16c()) {
    WARN("this CPU has no AVX2 + FMA + F16C: the AVX2 GEMM is not exercised");
    return;
  }
  std::mt19937 g(91);
  for (const Shape3& s : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        // Leading dimensions wider than the rows (+3), so the strides are exercised too.
        const int64_t lda = (ta ? s.m : s.k) + 3, ldb = (tb ? s.k : s.n) + 3, ldc = s.n + 3;
        Vec av, bv, cv;
        const auto a = random_floats(g, (ta ? s.k : s.m) * lda, av);
        const auto b = random_floats(g, (tb ? s.n : s.k) * ldb, bv);
        auto c = random_floats(g, s.m * ldc, cv);
        for (double beta : {0.0, 0.5}) {
          std::vector<float> out = c;
          const bool built = cpu::gemm_f32_avx2(a.data(), lda, ta, b.data(), ldb, tb, out.data(), ldc, s.m, s.n, s.k,
                                                1.5f, beta);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
          REQUIRE(built);  // GCC on x86-64 always builds it
#endif
          if (!built) continue;
          INFO(name(s, ta, tb) << " beta " << beta);
          CHECK(count_bad(out, ldc, av, lda, ta, bv, ldb, tb, cv, s.m, s.n, s.k, 1.5, beta, 0x1p-24, "avx2") == 0);
        }
      }
}

TEST_CASE("cpu fast gemm: gemm_f32 and gemm_f64 match float64 for odd shapes, transposes and thread counts",
          "[cpu][gemm]") {
  ThreadsGuard guard;
  std::mt19937 g(92);
  for (const Shape3& s : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t lda = (ta ? s.m : s.k) + 1, ldb = (tb ? s.k : s.n) + 2, ldc = s.n + 5;
        Vec av, bv, cv;
        const auto a = random_floats(g, (ta ? s.k : s.m) * lda, av);
        const auto b = random_floats(g, (tb ? s.n : s.k) * ldb, bv);
        const auto c = random_floats(g, s.m * ldc, cv);
        for (int threads : {1, 2, 3}) {
          set_cpu_threads(threads);
          for (double beta : {0.0, -0.75}) {
            INFO(name(s, ta, tb) << " threads " << threads << " beta " << beta);
            std::vector<float> out = c;
            cpu::gemm_f32(a.data(), lda, ta, b.data(), ldb, tb, out.data(), ldc, s.m, s.n, s.k, 0.5f,
                          static_cast<float>(beta));
            CHECK(count_bad(out, ldc, av, lda, ta, bv, ldb, tb, cv, s.m, s.n, s.k, 0.5, beta, 0x1p-24, "f32") == 0);
            Vec out64 = cv;
            cpu::gemm_f64(av.data(), lda, ta, bv.data(), ldb, tb, out64.data(), ldc, s.m, s.n, s.k, 0.5, beta);
            // f64 accumulates in double: a bound 2^29 times tighter than float's.
            int bad = 0;
            for (size_t i = 0; i < out64.size(); ++i) {
              if (i % static_cast<size_t>(ldc) >= static_cast<size_t>(s.n)) {  // padding untouched
                if (out64[i] != cv[i]) ++bad;
              }
            }
            CHECK(bad == 0);
            CHECK(count_bad(out64, ldc, av, lda, ta, bv, ldb, tb, cv, s.m, s.n, s.k, 0.5, beta, 0x1p-53,
                            "f64") == 0);
          }
        }
      }
}

TEST_CASE("cpu fast gemm: a product split across threads gives the same bits run to run", "[cpu][gemm]") {
  ThreadsGuard guard;
  std::mt19937 g(93);
  const int64_t m = 515, n = 260, k = 300;  // large enough to split (m n k >> 2^21 per thread)
  Vec av, bv, cv;
  const auto a = random_floats(g, m * k, av);
  const auto b = random_floats(g, k * n, bv);
  for (int threads : {1, 2, 4}) {
    set_cpu_threads(threads);
    CHECK(cpu_threads() == threads);
    std::vector<float> c1(static_cast<size_t>(m * n)), c2(c1.size(), 7.0f);
    cpu::gemm_f32(a.data(), k, false, b.data(), n, false, c1.data(), n, m, n, k, 1.0f, 0.0f);
    cpu::gemm_f32(a.data(), k, false, b.data(), n, false, c2.data(), n, m, n, k, 1.0f, 0.0f);
    INFO("threads " << threads);
    CHECK(c1 == c2);
    CHECK(count_bad(c1, n, av, k, false, bv, n, false, cv, m, n, k, 1.0, 0.0, 0x1p-24, "split") == 0);
  }
  set_cpu_threads(0);
  CHECK(cpu_threads() >= 1);
  set_cpu_threads(1000);
  CHECK(cpu_threads() == 64);
}

TEST_CASE("cpu fast gemm: matmul in f32, f16 and bf16 accumulates in float and rounds once", "[cpu][gemm]") {
  std::mt19937 g(94);
  for (DType dt : {DType::f32, DType::f16, DType::bf16})
    for (const Shape3& s : kShapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          INFO(dtype_name(dt) << " " << name(s, ta, tb));
          // Values exactly representable in dt, so the only errors are the GEMM's own.
          const Tensor a = from_vector(uniform(g, s.m * s.k), ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, dt);
          const Tensor b = from_vector(uniform(g, s.k * s.n), tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, dt);
          const Vec av = a.to_vector<double>(), bv = b.to_vector<double>();
          const Tensor c = kernels::matmul(a, b, ta, tb);
          REQUIRE(c.dtype() == dt);
          REQUIRE(c.shape() == Shape{s.m, s.n});
          const Vec cv = c.to_vector<double>();
          CHECK(count_bad(cv, s.n, av, ta ? s.m : s.k, ta, bv, tb ? s.k : s.n, tb, Vec(), s.m, s.n, s.k, 1.0, 0.0,
                          unit_roundoff(dt), "matmul") == 0);
        }
}

namespace {

struct ConvRef {
  Vec y, gx, gw, gb;               // the results
  Vec y_abs, gx_abs, gw_abs;       // the same sums over absolute values (error bounds)
};

/// Direct float64 convolution of x (N, C, H, W) with w (OC, C, K, K) (no bias) and its gradients for gy.
ConvRef ref_conv(const Vec& x, const Vec& w, const Vec& gy, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC,
                 int64_t K, int64_t stride, int64_t pad, int64_t dil, int64_t OH, int64_t OW) {
  ConvRef r;
  r.y.assign(static_cast<size_t>(N * OC * OH * OW), 0.0);
  r.y_abs = r.y;
  r.gx.assign(x.size(), 0.0);
  r.gx_abs = r.gx;
  r.gw.assign(w.size(), 0.0);
  r.gw_abs = r.gw;
  r.gb.assign(static_cast<size_t>(OC), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          const size_t yi = static_cast<size_t>(((n * OC + o) * OH + i) * OW + j);
          r.gb[static_cast<size_t>(o)] += gy[yi];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t a = 0; a < K; ++a)
              for (int64_t b = 0; b < K; ++b) {
                const int64_t ih = i * stride - pad + a * dil, iw = j * stride - pad + b * dil;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const size_t xi = static_cast<size_t>(((n * C + c) * H + ih) * W + iw);
                const size_t wi = static_cast<size_t>(((o * C + c) * K + a) * K + b);
                r.y[yi] += x[xi] * w[wi];
                r.y_abs[yi] += std::abs(x[xi] * w[wi]);
                r.gx[xi] += gy[yi] * w[wi];
                r.gx_abs[xi] += std::abs(gy[yi] * w[wi]);
                r.gw[wi] += gy[yi] * x[xi];
                r.gw_abs[wi] += std::abs(gy[yi] * x[xi]);
              }
        }
  return r;
}

/// got within (terms + 2) * 2^-24 * abs_sum (float accumulation; f64: 2^-53) + one rounding to dt.
void check_bound(const std::string& what, const Vec& got, const Vec& want, const Vec& abs_sum, double terms, DType dt) {
  REQUIRE(got.size() == want.size());
  const double acc = dt == DType::f64 ? 0x1p-52 : 0x1p-24;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = (terms + 2) * acc * abs_sum[i] + unit_roundoff(dt) * std::abs(want[i]) + 1e-300;
    if (!(std::abs(got[i] - want[i]) <= tol) && bad++ < 5)
      UNSCOPED_INFO(what << " [" << i << "] got " << got[i] << " want " << want[i] << " tol " << tol);
  }
  INFO(what << ": " << bad << " out of bound");
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cpu conv: im2col GEMMs over several sample chunks match float64, forward and backward", "[cpu][conv]") {
  ThreadsGuard guard;
  std::mt19937 g(95);
  struct Case {
    int64_t n, c, h, w, oc, k, stride, pad, dil;
  };
  // The first has C*K*K*OH*OW = 73728 floats of columns per sample: 28 samples per chunk, so 30 samples make two
  // chunks (28 + 2); the others are small odd cases (one chunk, strides, dilation, 1x1).
  const Case cases[] = {{30, 8, 32, 32, 16, 3, 1, 1, 1}, {3, 3, 7, 5, 5, 3, 2, 1, 1}, {2, 2, 9, 9, 3, 3, 1, 2, 2},
                        {1, 1, 1, 1, 1, 1, 1, 0, 1}};
  for (const Case& cs : cases) {
    const int64_t OH = (cs.h + 2 * cs.pad - cs.dil * (cs.k - 1) - 1) / cs.stride + 1;
    const int64_t OW = (cs.w + 2 * cs.pad - cs.dil * (cs.k - 1) - 1) / cs.stride + 1;
    const Shape xs{cs.n, cs.c, cs.h, cs.w}, ws{cs.oc, cs.c, cs.k, cs.k}, ys{cs.n, cs.oc, OH, OW};
    Conv2dParams p;
    p.stride_h = p.stride_w = cs.stride;
    p.pad_h = p.pad_w = cs.pad;
    p.dil_h = p.dil_w = cs.dil;
    for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64})
      for (int threads : {1, 2}) {
        set_cpu_threads(threads);
        INFO(dtype_name(dt) << " x(" << cs.n << "," << cs.c << "," << cs.h << "," << cs.w << ") oc " << cs.oc << " k "
                            << cs.k << " threads " << threads);
        const Tensor x = from_vector(uniform(g, xs.numel()), xs, dt), w = from_vector(uniform(g, ws.numel()), ws, dt),
                     gy = from_vector(uniform(g, ys.numel()), ys, dt);
        const ConvRef r = ref_conv(x.to_vector<double>(), w.to_vector<double>(), gy.to_vector<double>(), cs.n, cs.c,
                                   cs.h, cs.w, cs.oc, cs.k, cs.stride, cs.pad, cs.dil, OH, OW);
        const Tensor y = kernels::conv2d(x, w, Tensor(), p);
        REQUIRE(y.shape() == ys);
        check_bound("y", y.to_vector<double>(), r.y, r.y_abs, static_cast<double>(cs.c * cs.k * cs.k), dt);
        const Tensor gx = kernels::conv2d_backward_data(gy, w, xs, p);
        check_bound("gx", gx.to_vector<double>(), r.gx, r.gx_abs, static_cast<double>(cs.oc * cs.k * cs.k), dt);
        const auto [gw, gb] = kernels::conv2d_backward_filter(gy, x, ws, true, true, p);
        check_bound("gw", gw.to_vector<double>(), r.gw, r.gw_abs, static_cast<double>(cs.n * OH * OW), dt);
        Vec gb_abs(r.gb.size(), 0.0);
        const Vec gyv = gy.to_vector<double>();
        for (size_t i = 0; i < gyv.size(); ++i) gb_abs[(i / static_cast<size_t>(OH * OW)) % r.gb.size()] += std::abs(gyv[i]);
        check_bound("gb", gb.to_vector<double>(), r.gb, gb_abs, static_cast<double>(cs.n * OH * OW), dt);
        // Only the weight gradient asked for: the same weight gradient, bit for bit, and no bias gradient.
        const auto [gw2, gb2] = kernels::conv2d_backward_filter(gy, x, ws, true, false, p);
        CHECK_FALSE(gb2.defined());
        CHECK(gw2.to_vector<double>() == gw.to_vector<double>());
      }
  }
}
