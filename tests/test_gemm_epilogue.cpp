// GEMM epilogues (bias, bias + ReLU, bias + exact GELU) and a_sums on the CPU backend (core/kernels.h), against
// float64 references computed here; one-rounding checks for f16/bf16 with inputs where rounding twice gives a
// different answer; argument validation; and autograd::linear's forward/backward through them.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "gemm_reference.h"
#include "rounding.h"

using namespace mixtape;

namespace {

constexpr DType kTypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64};
constexpr GemmEpilogue kEpilogues[] = {GemmEpilogue::bias, GemmEpilogue::bias_relu, GemmEpilogue::bias_gelu};

using mixtape::testing::acc_unit_roundoff;
using mixtape::testing::epilogue_act;
using mixtape::testing::random_tensor;
using mixtape::testing::unit_roundoff;



/// op(a)[i, r] of a row-major buffer (a is (k, m) when trans).
double op_at(const std::vector<double>& a, bool trans, int64_t m, int64_t k, int64_t i, int64_t r) {
  return trans ? a[static_cast<size_t>(r * m + i)] : a[static_cast<size_t>(i * k + r)];
}

std::string label(DType dt, bool ta, bool tb, GemmEpilogue e) {
  return std::string(dtype_name(dt)) + (ta ? " T" : " N") + (tb ? "T" : "N") + " epilogue " +
         std::to_string(static_cast<int>(e));
}

}  // namespace

TEST_CASE("gemm epilogue: bias, relu and gelu match a float64 reference for every dtype and transpose", "[gemm][epilogue]") {
  std::mt19937 rng(7);
  const int64_t m = 13, n = 7, k = 29;
  for (DType dt : kTypes) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (GemmEpilogue e : kEpilogues) {
        for (double beta : {0.0, 0.5}) {
          INFO(label(dt, ta, tb, e) << " beta " << beta);
          std::vector<double> va, vb, vbias, vout;
          const Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, dt, rng, va);
          const Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, dt, rng, vb);
          const Tensor bias = random_tensor(Shape{n}, dt, rng, vbias);
          const Tensor out = random_tensor(Shape{m, n}, dt, rng, vout);
          GemmArgs g;
          g.a = a;
          g.b = b;
          g.out = out;
          g.trans_a = ta;
          g.trans_b = tb;
          g.m = m;
          g.n = n;
          g.k = k;
          g.alpha = 1.5;
          g.beta = beta;
          g.epilogue = e;
          g.bias = bias;
          kernels::gemm(g);
          const std::vector<double> got = out.to_vector<double>();
          size_t bad = 0;
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              // op(b)[r, j] = b[j, r] when trans_b, b[r, j] otherwise.
              double s = 0, mag = 0;
              for (int64_t r = 0; r < k; ++r) {
                const double bv = tb ? vb[static_cast<size_t>(j * k + r)] : vb[static_cast<size_t>(r * n + j)];
                const double p = op_at(va, ta, m, k, i, r) * bv;
                s += p;
                mag += std::fabs(p);
              }
              const double pre = 1.5 * s + beta * vout[static_cast<size_t>(i * n + j)] + vbias[static_cast<size_t>(j)];
              const double want = epilogue_act(e, pre);
              const double tol = unit_roundoff(dt) * std::fabs(want) +
                                 1.2 * (k + 3) * acc_unit_roundoff(dt) * (1.5 * mag + std::fabs(vout[static_cast<size_t>(i * n + j)]) + 1.0) +
                                 (dt == DType::f16 ? std::ldexp(1.0, -24) : 0.0);
              const double diff = std::fabs(got[static_cast<size_t>(i * n + j)] - want);
              if (!(diff <= tol) && bad++ < 3)
                FAIL_CHECK("(" << i << ", " << j << "): got " << got[static_cast<size_t>(i * n + j)] << ", want " << want);
            }
          }
          CHECK(bad == 0);
        }
      }
    }
  }
}

TEST_CASE("gemm epilogue: the bias is added before the one rounding (f16 and bf16)", "[gemm][epilogue]") {
  // p = a0 * b0 + a1 * b1 = 2^-s (1 + 2^-s') sits on a tie when rounded alone, and 1 + p then on another tie:
  // gemm-then-add rounds twice and gets 1; one rounding of 1 + p gets the next number up, 1 + 2^-(mantissa bits).
  struct Case {
    DType dt;
    int s, mantissa;
  };
  for (const Case c : {Case{DType::f16, 11, 10}, Case{DType::bf16, 8, 7}}) {
    INFO(dtype_name(c.dt));
    const Tensor x = from_vector(std::vector<double>{std::ldexp(1.0, -c.s), std::ldexp(1.0, -2 * c.s)}, Shape{1, 2}, c.dt);
    const Tensor w = from_vector(std::vector<double>{1.0, 1.0}, Shape{1, 2}, c.dt);  // (out, in)
    const Tensor bias = from_vector(std::vector<double>{1.0}, Shape{1}, c.dt);
    REQUIRE(x.to_vector<double>()[1] == std::ldexp(1.0, -2 * c.s));  // representable (f16: subnormal)
    const double one_rounding = 1.0 + std::ldexp(1.0, -c.mantissa);
    // The old path, two roundings: documents that the inputs tell the two apart.
    const Tensor twice = kernels::binary(BinaryOp::add, kernels::matmul(x, w, false, true), bias);
    REQUIRE(twice.to_vector<double>()[0] == 1.0);
    CHECK(kernels::matmul_bias(x, w, false, true, bias, GemmEpilogue::bias).to_vector<double>()[0] == one_rounding);
    CHECK(kernels::matmul_bias(x, w, false, true, bias, GemmEpilogue::bias_relu).to_vector<double>()[0] == one_rounding);
    CHECK(linear(x, w, bias).to_vector<double>()[0] == one_rounding);
  }
}

TEST_CASE("gemm a_sums: row sums of op(a) match a float64 reference and are rounded once", "[gemm][epilogue]") {
  std::mt19937 rng(11);
  const int64_t m = 9, n = 5, k = 300;
  for (DType dt : kTypes) {
    for (bool ta : {false, true}) {
      INFO(dtype_name(dt) << (ta ? " trans_a" : ""));
      std::vector<double> va, vb;
      const Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, dt, rng, va);
      const Tensor b = random_tensor(Shape{k, n}, dt, rng, vb);
      auto [out, sums] = kernels::matmul_with_a_sums(a, b, ta, false);
      REQUIRE(sums.shape() == Shape{m});
      REQUIRE(sums.dtype() == dt);
      const std::vector<double> got = sums.to_vector<double>();
      const std::vector<double> plain = kernels::matmul(a, b, ta, false).to_vector<double>();
      CHECK(out.to_vector<double>() == plain);  // the product is unchanged by computing the sums
      for (int64_t i = 0; i < m; ++i) {
        double s = 0, mag = 0;
        for (int64_t r = 0; r < k; ++r) {
          s += op_at(va, ta, m, k, i, r);
          mag += std::fabs(op_at(va, ta, m, k, i, r));
        }
        CHECK(std::fabs(got[static_cast<size_t>(i)] - s) <= unit_roundoff(dt) * std::fabs(s) + k * acc_unit_roundoff(dt) * mag);
      }
    }
  }
  // One rounding: 1 + 2^-11 + 2^-22 summed in f16 step by step gives 1 (two ties to even), in float then rounded
  // once gives 1 + 2^-10.
  for (bool ta : {false, true}) {
    const std::vector<double> row{1.0, std::ldexp(1.0, -11), std::ldexp(1.0, -22)};
    const Tensor a = from_vector(row, ta ? Shape{3, 1} : Shape{1, 3}, DType::f16);
    const Tensor b = from_vector(std::vector<double>{1, 1, 1}, Shape{3, 1}, DType::f16);
    CHECK(kernels::matmul_with_a_sums(a, b, ta, false).second.to_vector<double>()[0] == 1.0 + std::ldexp(1.0, -10));
  }
}

TEST_CASE("gemm epilogue: batched products, alpha/beta and shared operands still match the plain GEMM", "[gemm][epilogue]") {
  // kernels::gemm with batch > 1 and a stride-0 operand (no epilogue) against per-batch matmuls.
  std::mt19937 rng(3);
  const int64_t batch = 3, m = 4, n = 6, k = 5;
  std::vector<double> va, vb, vo;
  const Tensor a = random_tensor(Shape{batch, m, k}, DType::f32, rng, va);
  const Tensor b = random_tensor(Shape{k, n}, DType::f32, rng, vb);
  const Tensor out = random_tensor(Shape{batch, m, n}, DType::f32, rng, vo);
  GemmArgs g;
  g.a = a;
  g.b = b;
  g.out = out;
  g.batch = batch;
  g.m = m;
  g.n = n;
  g.k = k;
  g.stride_a = m * k;
  g.stride_b = 0;
  g.stride_out = m * n;
  g.alpha = 2.0;
  g.beta = -1.0;
  kernels::gemm(g);
  const std::vector<double> got = out.to_vector<double>();
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t r = 0; r < k; ++r) s += va[static_cast<size_t>(p * m * k + i * k + r)] * vb[static_cast<size_t>(r * n + j)];
        const size_t o = static_cast<size_t>(p * m * n + i * n + j);
        CHECK(got[o] == Approx(2.0 * s - vo[o]).margin(1e-5));
      }
}

TEST_CASE("gemm: invalid epilogue and a_sums arguments are rejected with clear errors", "[gemm][epilogue]") {
  const Tensor a = full(Shape{4, 3}, 1.0), b = full(Shape{3, 5}, 1.0);
  auto args = [&] {
    GemmArgs g;
    g.a = a;
    g.b = b;
    g.out = Tensor::empty(Shape{4, 5});
    g.m = 4;
    g.n = 5;
    g.k = 3;
    return g;
  };
  GemmArgs g = args();
  g.epilogue = GemmEpilogue::bias;
  g.bias = full(Shape{4}, 1.0);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("expected a bias of shape (5,)"));
  g.bias = full(Shape{5}, 1.0, DType::f16);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("bias must have the output's dtype f32"));
  g.bias = Tensor();
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("'bias' is an undefined tensor"));
  g = args();
  g.bias = full(Shape{5}, 1.0);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("epilogue none"));
  g = args();
  g.a_sums = full(Shape{5}, 1.0);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("expected a_sums of shape (4,)"));
  g.a_sums = full(Shape{4}, 1.0, DType::bf16);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("a_sums must have a's dtype f32"));
  // batch > 1 with an epilogue or a_sums
  g = args();
  g.a = full(Shape{2, 4, 3}, 1.0);
  g.out = Tensor::empty(Shape{2, 4, 5});
  g.batch = 2;
  g.stride_a = 12;
  g.stride_out = 20;
  g.epilogue = GemmEpilogue::bias_relu;
  g.bias = full(Shape{5}, 1.0);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("needs batch == 1"));
  g.epilogue = GemmEpilogue::none;
  g.bias = Tensor();
  g.a_sums = full(Shape{4}, 1.0);
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("a_sums needs batch == 1"));
  // sizes beyond the tensors
  g = args();
  g.k = 4;
  CHECK_THROWS_WITH(kernels::gemm(g), Catch::Contains("'a' (4, 3) holds 12 elements"));
  CHECK_THROWS_WITH(kernels::matmul_bias(full(Shape{2, 3, 4}, 1.0), full(Shape{2, 4, 5}, 1.0), false, false,
                                         full(Shape{5}, 1.0), GemmEpilogue::bias),
                    Catch::Contains("needs one GEMM"));
}

TEST_CASE("gemm epilogue: k == 0 gives the activation of the bias", "[gemm][epilogue]") {
  const Tensor a = Tensor::empty(Shape{3, 0}), b = Tensor::empty(Shape{0, 2});
  const Tensor bias = from_vector(std::vector<float>{-1.0f, 2.0f});
  const std::vector<float> got = kernels::matmul_bias(a, b, false, false, bias, GemmEpilogue::bias_relu).to_vector<float>();
  CHECK(got == std::vector<float>{0, 2, 0, 2, 0, 2});
  auto [out, sums] = kernels::matmul_with_a_sums(a, b, false, false);
  CHECK(out.to_vector<float>() == std::vector<float>(6, 0.0f));
  CHECK(sums.to_vector<float>() == std::vector<float>(3, 0.0f));
}

TEST_CASE("linear: grad_bias from the weight-gradient GEMM equals the column sums of the output gradient", "[gemm][epilogue]") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    std::mt19937 rng(5);
    std::vector<double> vx, vw, vb, vg;
    Tensor x = random_tensor(Shape{2, 6, 4}, dt, rng, vx);
    Tensor w = random_tensor(Shape{3, 4}, dt, rng, vw);
    Tensor b = random_tensor(Shape{3}, dt, rng, vb);
    const Tensor seed = random_tensor(Shape{2, 6, 3}, dt, rng, vg);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    const Tensor y = linear(x, w, b);
    backward(y, seed);
    // The bias gradient is what a separate sum over the 12 rows gives (same float accumulation, same order).
    const Tensor want_gb = kernels::reduce(ReduceOp::sum, kernels::view(seed, Shape{12, 3}), {0}, false);
    CHECK(b.grad().to_vector<double>() == want_gb.to_vector<double>());
    const Tensor want_gw = kernels::matmul(kernels::view(seed, Shape{12, 3}), kernels::view(x, Shape{12, 4}), true, false);
    CHECK(w.grad().to_vector<double>() == want_gw.to_vector<double>());
  }
}

TEST_CASE("gemm epilogue: CPU throughput of the fused bias path vs gemm then add (MLP shapes)", "[.bench][gemm-bench]") {
  // Hidden (not run by default): ./tests/mixtape_tests "[.bench]"
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (auto [m, n, k] : {std::array<int64_t, 3>{256, 512, 784}, std::array<int64_t, 3>{256, 4096, 1024}}) {
      const Tensor x = randn(Shape{m, k}, dt), w = randn(Shape{n, k}, dt), bias = randn(Shape{n}, dt);
      auto time = [&, m = m, n = n, k = k](auto&& fn) {  // clang 14 cannot capture structured bindings
        fn();
        const int reps = 5;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) fn();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
        return 2.0 * m * n * k / s * 1e-9;
      };
      const double fused = time([&] { (void)kernels::matmul_bias(x, w, false, true, bias, GemmEpilogue::bias); });
      const double separate =
          time([&] { (void)kernels::binary(BinaryOp::add, kernels::matmul(x, w, false, true), bias); });
      std::printf("%-4s m=%lld n=%lld k=%lld: fused %.1f GFLOP/s, gemm+add %.1f GFLOP/s\n", dtype_name(dt),
                  static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k), fused, separate);
    }
  }
  SUCCEED();
}
