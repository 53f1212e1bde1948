// cuBLASLt GEMM (cuda/cuda_gemm.cpp) against the CPU backend on the same inputs: every dtype, the four transpose
// combinations, batched and stride-0 batches, alpha/beta, each epilogue and a_sums (fused and fallback paths),
// odd and large shapes, misaligned pointers, TF32, the f64 error and the algorithm cache. GPU only: each case is
// skipped with a visible message on a machine without one.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/gemm_settings.h"
#include "core/kernels.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_plan.h"
#include "cuda_test_util.h"

using namespace mixtape;
using namespace mixtape::testing;

namespace {

constexpr DType kTypes[] = {DType::f32, DType::f16, DType::bf16};

Tensor random_cpu(const Shape& shape, DType dtype, uint64_t seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = d(rng);
  return from_vector(v, shape, dtype);
}

/// A tensor of `shape` whose data starts `elements` elements into a fresh buffer (a misaligned pointer).
Tensor offset_tensor(const Tensor& src, int64_t elements) {
  Tensor big = Tensor::empty(Shape{src.numel() + elements}, src.dtype(), src.device());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = big.impl()->storage;
  impl->offset_bytes = big.impl()->offset_bytes + static_cast<size_t>(elements) * dtype_size(src.dtype());
  impl->shape = src.shape();
  impl->dtype = src.dtype();
  Tensor t(std::move(impl));
  copy_between_devices(src, t);
  return t;
}

/// Tolerance of a CPU-vs-GPU comparison: both accumulate k products of values in [-1, 1] in float (in different
/// orders) and round once into dtype.
double gemm_atol(DType dt, int64_t k, bool tf32 = false) {
  const double acc = tf32 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -22);
  return static_cast<double>(k) * acc + (dt == DType::f32 ? 0.0 : ulp_tolerance(dt) * 0.25);
}

struct Case {
  DType dt = DType::f32;
  bool ta = false, tb = false;
  int64_t batch = 1, m = 1, n = 1, k = 1;
  bool shared_a = false, shared_b = false;
  double alpha = 1.0, beta = 0.0;
  GemmEpilogue epilogue = GemmEpilogue::none;
  bool a_sums = false;
  int64_t misalign = 0;  ///< elements of offset of a, b and out on the GPU
};

std::string describe(const Case& c) {
  return std::string(dtype_name(c.dt)) + (c.ta ? " T" : " N") + (c.tb ? "T" : "N") + " batch " + std::to_string(c.batch) +
         " m " + std::to_string(c.m) + " n " + std::to_string(c.n) + " k " + std::to_string(c.k) +
         (c.shared_a ? " shared-a" : "") + (c.shared_b ? " shared-b" : "") + " alpha " + std::to_string(c.alpha) +
         " beta " + std::to_string(c.beta) + " epilogue " + std::to_string(static_cast<int>(c.epilogue)) +
         (c.a_sums ? " a_sums" : "") + " misalign " + std::to_string(c.misalign);
}

/// Runs the case on the CPU and on the GPU from the same inputs and compares out (and a_sums).
void check_case(const Case& c, bool tf32 = false) {
  INFO(describe(c));
  const Shape sa = c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k};
  const Shape sb = c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n};
  auto batched = [&](const Shape& s, bool shared) {
    Shape r{shared ? 1 : c.batch};
    for (int i = 0; i < s.size(); ++i) r.push_back(s[i]);
    return r;
  };
  const Tensor a = random_cpu(batched(sa, c.shared_a), c.dt, 1 + c.m);
  const Tensor b = random_cpu(batched(sb, c.shared_b), c.dt, 2 + c.n);
  const Tensor out0 = random_cpu(Shape{c.batch, c.m, c.n}, c.dt, 3 + c.k);
  const Tensor bias = random_cpu(Shape{c.n}, c.dt, 4);
  auto args = [&](const Tensor& ta, const Tensor& tb, const Tensor& to, const Tensor& tbias, const Tensor& tsums) {
    GemmArgs g;
    g.a = ta;
    g.b = tb;
    g.out = to;
    g.trans_a = c.ta;
    g.trans_b = c.tb;
    g.batch = c.batch;
    g.m = c.m;
    g.n = c.n;
    g.k = c.k;
    g.stride_a = c.shared_a ? 0 : c.m * c.k;
    g.stride_b = c.shared_b ? 0 : c.k * c.n;
    g.stride_out = c.m * c.n;
    g.alpha = c.alpha;
    g.beta = c.beta;
    g.epilogue = c.epilogue;
    if (c.epilogue != GemmEpilogue::none) g.bias = tbias;
    g.a_sums = tsums;
    return g;
  };
  // CPU reference
  const Tensor cpu_copy = out0.clone();
  const Tensor cpu_sums = c.a_sums ? Tensor::empty(Shape{c.m}, c.dt) : Tensor();
  kernels::gemm(args(a, b, cpu_copy, bias, cpu_sums));
  // GPU
  auto to_gpu = [&](const Tensor& t) { return c.misalign ? offset_tensor(t.to(gpu()), c.misalign) : t.to(gpu()); };
  const Tensor ga = to_gpu(a), gb = to_gpu(b), gout = to_gpu(out0), gbias = bias.to(gpu());
  const Tensor gsums = c.a_sums ? Tensor::empty(Shape{c.m}, c.dt, gpu()) : Tensor();
  set_allow_tf32(tf32);
  try {
    kernels::gemm(args(ga, gb, gout, gbias, gsums));
  } catch (...) {
    set_allow_tf32(false);
    throw;
  }
  set_allow_tf32(false);
  const double atol = gemm_atol(c.dt, c.k, tf32) * (std::fabs(c.alpha) + 1.0) + std::fabs(c.beta) * ulp_tolerance(c.dt);
  check_close(gout.to(Device::cpu()), cpu_copy, tf32 ? 4 * std::ldexp(1.0, -10) : ulp_tolerance(c.dt), atol, "out");
  if (c.a_sums)
    check_close(gsums.to(Device::cpu()), cpu_sums, ulp_tolerance(c.dt), gemm_atol(c.dt, c.k), "a_sums");
}

}  // namespace

TEST_CASE("cuda gemm: every dtype and transpose on odd and large shapes matches the CPU", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt GEMM parity")) return;
  struct Mnk {
    int64_t m, n, k;
  };
  for (DType dt : kTypes)
    for (int t = 0; t < 4; ++t)
      for (const Mnk s : {Mnk{1, 1, 1}, Mnk{7, 13, 5}, Mnk{1000, 3, 1025}, Mnk{3, 1000, 17}, Mnk{64, 64, 64}}) {
        Case c;
        c.dt = dt;
        c.ta = t & 1;
        c.tb = t & 2;
        c.m = s.m;
        c.n = s.n;
        c.k = s.k;
        check_case(c);
      }
  for (DType dt : kTypes)
    for (int t : {0, 2}) {  // the large square case: NN and NT (Linear's forward)
      Case c;
      c.dt = dt;
      c.tb = t & 2;
      c.m = 4096;
      c.n = 4096;
      c.k = 64;
      check_case(c);
    }
}

TEST_CASE("cuda gemm: alpha, beta, batches and stride-0 shared operands match the CPU", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt batched GEMM")) return;
  for (DType dt : kTypes)
    for (int t = 0; t < 4; ++t)
      for (int shared = 0; shared < 3; ++shared) {
        Case c;
        c.dt = dt;
        c.ta = t & 1;
        c.tb = t & 2;
        c.batch = 5;
        c.m = 17;
        c.n = 9;
        c.k = 33;
        c.shared_a = shared == 1;
        c.shared_b = shared == 2;
        c.alpha = 1.5;
        c.beta = -0.75;
        check_case(c);
      }
}

TEST_CASE("cuda gemm: bias, bias+relu and bias+gelu epilogues match the CPU with one rounding", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt GEMM epilogues")) return;
  for (DType dt : kTypes)
    for (GemmEpilogue e : {GemmEpilogue::bias, GemmEpilogue::bias_relu, GemmEpilogue::bias_gelu})
      for (int t = 0; t < 4; ++t)
        for (double beta : {0.0, 0.5}) {
          Case c;
          c.dt = dt;
          c.ta = t & 1;
          c.tb = t & 2;
          c.m = 257;
          c.n = 129;
          c.k = 64;
          c.beta = beta;
          c.epilogue = e;
          check_case(c);
          c.m = 7;
          c.n = 13;
          c.k = 5;
          check_case(c);
        }
  // The f16 case where two roundings differ from one (see tests/test_gemm_epilogue.cpp).
  const Tensor x = from_vector(std::vector<double>{std::ldexp(1.0, -11), std::ldexp(1.0, -22)}, Shape{1, 2}, DType::f16);
  const Tensor w = from_vector(std::vector<double>{1.0, 1.0}, Shape{1, 2}, DType::f16);
  const Tensor bias = from_vector(std::vector<double>{1.0}, Shape{1}, DType::f16);
  for (GemmEpilogue e : {GemmEpilogue::bias, GemmEpilogue::bias_relu, GemmEpilogue::bias_gelu}) {
    const Tensor got = kernels::matmul_bias(x.to(gpu()), w.to(gpu()), false, true, bias.to(gpu()), e);
    const Tensor want = kernels::matmul_bias(x, w, false, true, bias, e);
    CHECK(got.to(Device::cpu()).to_vector<double>() == want.to_vector<double>());
  }
}

TEST_CASE("cuda gemm: a_sums (BGRADB or the reduction pass) match the CPU", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt bias-gradient epilogue")) return;
  for (DType dt : kTypes)
    for (int t = 0; t < 4; ++t)
      for (double alpha : {1.0, 2.0}) {
        Case c;
        c.dt = dt;
        c.ta = t & 1;
        c.tb = t & 2;
        c.m = 129;
        c.n = 65;
        c.k = 1000;
        c.alpha = alpha;
        c.a_sums = true;
        check_case(c);
        c.epilogue = GemmEpilogue::bias_relu;  // bias epilogue and sums together: the sums are a pass
        check_case(c);
        c.epilogue = GemmEpilogue::none;
        c.m = 3;
        c.n = 1;
        c.k = 7;
        check_case(c);
      }
}

TEST_CASE("cuda gemm: misaligned operands match the CPU", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt GEMM on misaligned pointers")) return;
  for (DType dt : kTypes)
    for (int64_t off : {1, 3}) {
      Case c;
      c.dt = dt;
      c.tb = true;
      c.m = 33;
      c.n = 31;
      c.k = 67;
      c.misalign = off;
      check_case(c);
      c.epilogue = GemmEpilogue::bias;
      c.a_sums = true;
      c.ta = true;
      check_case(c);
    }
}

TEST_CASE("cuda gemm: TF32 is off by default and opt-in", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt TF32")) return;
  CHECK_FALSE(allow_tf32());
  Case c;
  c.m = 300;
  c.n = 200;
  c.k = 512;
  check_case(c, /*tf32=*/true);  // looser tolerance (10-bit mantissa inputs)
  check_case(c);                 // and full float32 again
}

TEST_CASE("cuda gemm: f64 is rejected with a clear error", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt f64 error")) return;
  CHECK_THROWS_WITH(
      [] {
        const Tensor a = full(Shape{2, 2}, 1.0, DType::f64).to(gpu());  // a copy: no kernel before the GEMM
        (void)kernels::matmul(a, a);
      }(),
      Catch::Contains("f64 is CPU-only"));
}

TEST_CASE("cuda gemm: the algorithm is cached per shape (one heuristic query for two calls)", "[cuda][gemm]") {
  if (!gpu_or_skip("cuBLASLt algorithm cache")) return;
  cuda::GemmAlgoCache& cache = cuda::gemm_algo_cache();
  cache.clear();
  const Tensor a = random_cpu(Shape{37, 53}, DType::f16, 1).to(gpu());
  const Tensor b = random_cpu(Shape{53, 29}, DType::f16, 2).to(gpu());
  (void)kernels::matmul(a, b);
  CHECK(cache.queries() == 1);
  (void)kernels::matmul(a, b);
  CHECK(cache.queries() == 1);  // hit
  (void)kernels::matmul(b, a, true, true);
  CHECK(cache.queries() == 2);  // another shape/transposes: one more query
}

TEST_CASE("cuda gemm: linear forward and backward match the CPU (bias epilogue, bias gradient)", "[cuda][gemm]") {
  if (!gpu_or_skip("linear on cuBLASLt")) return;
  for (DType dt : kTypes) {
    INFO(dtype_name(dt));
    const Tensor x = random_cpu(Shape{4, 32, 48}, dt, 1), w0 = random_cpu(Shape{24, 48}, dt, 2);
    const Tensor b0 = random_cpu(Shape{24}, dt, 3), seed = random_cpu(Shape{4, 32, 24}, dt, 4);
    Tensor w = w0.to(Device::cpu()), b = b0.to(Device::cpu());
    Tensor gw = w0.to(gpu()), gbias = b0.to(gpu());
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    gw.set_requires_grad(true);
    gbias.set_requires_grad(true);
    // backward() runs and then clears the whole tape, so each graph is recorded and differentiated in turn.
    const Tensor y = linear(x, w, b);
    backward(y, seed);
    const Tensor gy = linear(x.to(gpu()), gw, gbias);
    backward(gy, seed.to(gpu()));
    check_close(gy.to(Device::cpu()), y, ulp_tolerance(dt), gemm_atol(dt, 48), "linear forward");
    check_close(gw.grad().to(Device::cpu()), w.grad(), ulp_tolerance(dt), gemm_atol(dt, 128), "grad weight");
    check_close(gbias.grad().to(Device::cpu()), b.grad(), ulp_tolerance(dt), gemm_atol(dt, 128), "grad bias");
  }
}
