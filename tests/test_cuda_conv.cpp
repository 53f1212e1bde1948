// GPU parity of the cuDNN convolution and the CUDA pooling / batch-norm kernels with the CPU backend (and float64
// where it matters): f32/f16/bf16, strides, paddings, dilations, 1x1/3x3/5x5 and asymmetric kernels, N = 1, odd
// sizes, with and without bias, all three convolution passes; max/avg pooling with ties, padding, -inf and NaN;
// batch norm in training and eval, f16 inputs whose squares overflow f16, running averages over several steps,
// optional gradients, determinism. Each case returns with a visible warning on a machine without a GPU.
#ifdef MIXTAPE_WITH_CUDA

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/conv_kernels.h"
#include "core/tensor.h"
#include "core/gemm_settings.h"
#include "cuda_test_util.h"

using namespace mixtape;
using namespace mixtape::testing;

namespace {

const DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};

/// A CPU tensor of `dtype` with uniform values in [lo, hi) (rounded to dtype once).
Tensor uniform(std::mt19937& g, const Shape& s, DType dtype, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = d(g);
  return from_vector(v, s, dtype);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>())
    if (std::isfinite(v)) m = std::max(m, std::fabs(v));
  return m;
}

/// Tolerance of a GPU result against the CPU's: a few units in the last place of dtype, relative to each value
/// and to the largest magnitude (summation order and, with a bias, one extra rounding differ), plus `extra_rel`
/// of the largest magnitude for float32 summation-order differences.
void check_parity(const Tensor& got, const Tensor& want, const std::string& what, double extra_rel = 1e-5) {
  const double rtol = ulp_tolerance(want.dtype());
  const double atol = (rtol + extra_rel) * std::max(max_abs(want), 1e-3);
  check_close(got, want, rtol, atol, what);
}

/// Exact equality (NaN matches NaN): for kernels that reproduce the CPU's order of operations.
void check_exact(const Tensor& got, const Tensor& want, const std::string& what) {
  check_close(got, want, 0.0, 0.0, what);
}

struct ConvCase {
  Shape x, w;
  Conv2dParams p;
  const char* name;
};

std::vector<ConvCase> conv_cases() {
  return {
      {{2, 3, 9, 7}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1}, "3x3 pad 1, odd H/W"},
      {{1, 2, 11, 13}, {3, 2, 5, 5}, {2, 2, 2, 2, 1, 1}, "5x5 stride 2 pad 2, N = 1"},
      {{3, 4, 8, 8}, {5, 4, 1, 1}, {1, 1, 0, 0, 1, 1}, "1x1"},
      {{2, 3, 10, 9}, {2, 3, 3, 3}, {2, 2, 0, 0, 2, 2}, "3x3 stride 2 dilation 2 pad 0"},
      {{1, 1, 5, 5}, {1, 1, 3, 3}, {1, 1, 2, 2, 1, 1}, "single channel pad 2"},
      {{4, 16, 14, 14}, {32, 16, 3, 3}, {1, 1, 1, 1, 1, 1}, "16 -> 32 channels (tensor-core shapes)"},
      {{2, 3, 7, 9}, {4, 3, 3, 2}, {2, 1, 1, 0, 1, 2}, "asymmetric 3x2 kernel, stride 2x1, dilation 1x2"},
      {{5, 1, 28, 28}, {8, 1, 3, 3}, {1, 1, 1, 1, 1, 1}, "the CNN's first layer"},
  };
}

}  // namespace

TEST_CASE("cuda conv2d forward matches the CPU for f32 f16 bf16 over geometries, with and without bias",
          "[cuda][cuda_conv]") {
  if (!gpu_or_skip("conv2d forward parity")) return;
  std::mt19937 gen(1);
  for (const ConvCase& cc : conv_cases())
    for (DType dt : kDtypes)
      for (bool with_bias : {false, true}) {
        const Tensor x = uniform(gen, cc.x, dt), w = uniform(gen, cc.w, dt);
        const Tensor b = with_bias ? uniform(gen, Shape{cc.w[0]}, dt) : Tensor();
        const Tensor want = kernels::conv2d(x, w, b, cc.p);
        const Tensor got = kernels::conv2d(x.to(gpu()), w.to(gpu()), with_bias ? b.to(gpu()) : Tensor(), cc.p);
        CHECK(got.device() == gpu());
        check_parity(got, want, std::string(cc.name) + " " + dtype_name(dt) + (with_bias ? " bias" : ""));
      }
}

TEST_CASE("cuda conv2d backward data and filter match the CPU for f32 f16 bf16", "[cuda][cuda_conv]") {
  if (!gpu_or_skip("conv2d backward parity")) return;
  std::mt19937 gen(2);
  for (const ConvCase& cc : conv_cases())
    for (DType dt : kDtypes)
      for (bool with_bias : {false, true}) {
        const std::string what = std::string(cc.name) + " " + dtype_name(dt) + (with_bias ? " bias" : "");
        const Tensor x = uniform(gen, cc.x, dt), w = uniform(gen, cc.w, dt);
        const Shape ys = kernels::conv2d_output_shape(cc.x, cc.w, cc.p);
        const Tensor gy = uniform(gen, ys, dt);
        const Tensor gx_want = kernels::conv2d_backward_data(gy, w, cc.x, cc.p);
        const Tensor gx_got = kernels::conv2d_backward_data(gy.to(gpu()), w.to(gpu()), cc.x, cc.p);
        check_parity(gx_got, gx_want, what + " grad input");
        const auto [gw_want, gb_want] = kernels::conv2d_backward_filter(gy, x, cc.w, true, with_bias, cc.p);
        const auto [gw_got, gb_got] =
            kernels::conv2d_backward_filter(gy.to(gpu()), x.to(gpu()), cc.w, true, with_bias, cc.p);
        check_parity(gw_got, gw_want, what + " grad weight");
        REQUIRE(gb_got.defined() == with_bias);
        if (with_bias) check_parity(gb_got, gb_want, what + " grad bias");
      }
}

TEST_CASE("cuda conv2d float32 is float32 arithmetic, not TF32", "[cuda][cuda_conv]") {
  if (!gpu_or_skip("conv2d f32 without TF32")) return;
  struct Restore {
    bool was = allow_tf32();
    ~Restore() { set_allow_tf32(was); }
  } restore;
  set_allow_tf32(false);  // the default; set explicitly in case another test changed it
  // v = 1 + 2^-12 needs 12 mantissa bits; TF32 keeps 10 and reads it as 1, a relative error of 2.4e-4 in every
  // sum of such terms. Every partial sum of K <= 576 of them is exact in float32, so any float32 algorithm
  // (implicit GEMM, Winograd, FFT) lands within a few float32 rounding errors of K * v.
  const double v = 1.0 + std::ldexp(1.0, -12);
  const double tol = 1e-5;  // far below TF32's 2.4e-4, far above float32 algorithm error
  const Tensor x = full(Shape{2, 64, 6, 6}, v), w = ones(Shape{8, 64, 3, 3});
  const Conv2dParams p{};  // no padding: every output sums 576 products
  const Tensor y = kernels::conv2d(x.to(gpu()), w.to(gpu()), Tensor(), p);
  check_close(y, full(y.shape(), 576.0 * v, DType::f64), tol, 0.0, "forward");
  // backward data: gy = v, w = 1 -> gx sums 8 * (taps reaching it) values v; compare with float64 on the CPU
  const Tensor gy = full(Shape{2, 8, 4, 4}, v);
  const Tensor gx = kernels::conv2d_backward_data(gy.to(gpu()), w.to(gpu()), x.shape(), p);
  const Tensor gx_ref = kernels::conv2d_backward_data(gy.to(DType::f64), w.to(DType::f64), x.shape(), p);
  check_close(gx, gx_ref, tol, 0.0, "grad input");
  // backward filter: gy = 1, x = v -> each weight gradient sums 2*4*4 = 32 values v
  const Tensor gw =
      kernels::conv2d_backward_filter(ones(gy.shape()).to(gpu()), x.to(gpu()), w.shape(), true, false, p).first;
  check_close(gw, full(w.shape(), 32.0 * v, DType::f64), tol, 0.0, "grad weight");
}

TEST_CASE("cuda conv2d results are deterministic and the cached algorithm is reused", "[cuda][cuda_conv]") {
  if (!gpu_or_skip("conv2d determinism")) return;
  std::mt19937 gen(3);
  for (DType dt : kDtypes) {
    const Conv2dParams p{1, 1, 1, 1, 1, 1};
    const Tensor x = uniform(gen, Shape{8, 16, 12, 12}, dt).to(gpu()), w = uniform(gen, Shape{16, 16, 3, 3}, dt).to(gpu());
    const Tensor gy = uniform(gen, Shape{8, 16, 12, 12}, dt).to(gpu());
    for (int rep = 0; rep < 2; ++rep) {
      const Tensor y1 = kernels::conv2d(x, w, Tensor(), p), y2 = kernels::conv2d(x, w, Tensor(), p);
      check_exact(y1, y2, std::string("forward twice ") + dtype_name(dt));
      const Tensor g1 = kernels::conv2d_backward_filter(gy, x, w.shape(), true, false, p).first;
      const Tensor g2 = kernels::conv2d_backward_filter(gy, x, w.shape(), true, false, p).first;
      check_exact(g1, g2, std::string("grad weight twice ") + dtype_name(dt));
    }
  }
}

TEST_CASE("cuda conv2d f16 and bf16 agree with a float64 reference within the dtype's rounding",
          "[cuda][cuda_conv]") {
  if (!gpu_or_skip("conv2d low precision vs float64")) return;
  std::mt19937 gen(4);
  for (DType dt : {DType::f16, DType::bf16}) {
    const Conv2dParams p{1, 1, 1, 1, 1, 1};
    const Tensor x = uniform(gen, Shape{4, 8, 10, 10}, dt), w = uniform(gen, Shape{6, 8, 3, 3}, dt);
    const Tensor ref = kernels::conv2d(x.to(DType::f64), w.to(DType::f64), Tensor(), p);  // exact inputs
    const Tensor got = kernels::conv2d(x.to(gpu()), w.to(gpu()), Tensor(), p);
    // one rounding of a float-accumulated sum (half a unit in the last place), plus the algorithm's float error
    check_close(got, ref, ulp_tolerance(dt) / 4.0 + 1e-5, 1e-5 * max_abs(ref), std::string("f64 ref ") + dtype_name(dt));
  }
}

TEST_CASE("cuda max_pool2d forward and backward equal the CPU exactly, ties NaN -inf and padding included",
          "[cuda][cuda_pool]") {
  if (!gpu_or_skip("max_pool2d parity")) return;
  std::mt19937 gen(5);
  const std::vector<Pool2dParams> geoms = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {3, 3, 1, 1, 1, 1},
                                           {3, 2, 2, 1, 1, 0}, {5, 5, 3, 3, 2, 2}, {1, 1, 1, 1, 0, 0}};
  const std::vector<Shape> shapes = {{2, 3, 9, 7}, {1, 1, 1, 1}, {1, 2, 28, 28}, {3, 1, 5, 11}};
  for (const Pool2dParams& p : geoms)
    for (const Shape& s : shapes)
      for (DType dt : kDtypes) {
        if (s[2] + 2 * p.pad_h < p.kernel_h || s[3] + 2 * p.pad_w < p.kernel_w) continue;
        // few distinct levels -> many ties; a sprinkling of -inf and NaN
        std::uniform_int_distribution<int> level(-2, 2), special(0, 40);
        std::vector<double> v(static_cast<size_t>(s.numel()));
        for (auto& e : v) {
          const int sp = special(gen);
          e = sp == 0 ? std::numeric_limits<double>::quiet_NaN()
                      : sp == 1 ? -std::numeric_limits<double>::infinity() : 0.5 * level(gen);
        }
        const Tensor x = from_vector(v, s, dt);
        INFO("kernel " << p.kernel_h << "x" << p.kernel_w << " stride " << p.stride_h << "x" << p.stride_w << " pad "
                       << p.pad_h << "x" << p.pad_w << " input " << s.to_string() << " " << dtype_name(dt));
        const auto [y_want, i_want] = kernels::max_pool2d(x, p);
        const auto [y_got, i_got] = kernels::max_pool2d(x.to(gpu()), p);
        check_exact(y_got, y_want, "max values");
        CHECK(i_got.to_vector<int64_t>() == i_want.to_vector<int64_t>());
        const Tensor gy = uniform(gen, y_want.shape(), dt);
        check_exact(kernels::max_pool2d_backward(gy.to(gpu()), i_got, s), kernels::max_pool2d_backward(gy, i_want, s),
                    "max grad");
      }
}

TEST_CASE("cuda max_pool2d backward on a large plane with overlapping windows", "[cuda][cuda_pool]") {
  if (!gpu_or_skip("max_pool2d large plane")) return;
  std::mt19937 gen(6);
  const Pool2dParams p{3, 3, 1, 1, 1, 1};  // each input is in up to 9 windows
  for (DType dt : kDtypes) {
    const Tensor x = uniform(gen, Shape{1, 2, 301, 257}, dt);
    const auto [y, idx] = kernels::max_pool2d(x, p);
    const Tensor gy = uniform(gen, y.shape(), dt);
    const auto [y_g, idx_g] = kernels::max_pool2d(x.to(gpu()), p);
    check_exact(kernels::max_pool2d_backward(gy.to(gpu()), idx_g, x.shape()), kernels::max_pool2d_backward(gy, idx, x.shape()),
                std::string("large plane ") + dtype_name(dt));
  }
}

TEST_CASE("cuda avg_pool2d forward and backward equal the CPU exactly (count_include_pad)", "[cuda][cuda_pool]") {
  if (!gpu_or_skip("avg_pool2d parity")) return;
  std::mt19937 gen(7);
  const std::vector<Pool2dParams> geoms = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {3, 3, 1, 1, 1, 1},
                                           {4, 3, 2, 3, 2, 1}, {5, 5, 3, 3, 2, 2}, {1, 1, 1, 1, 0, 0}};
  const std::vector<Shape> shapes = {{2, 3, 9, 7}, {1, 1, 1, 1}, {1, 2, 28, 28}, {3, 1, 5, 11}};
  for (const Pool2dParams& p : geoms)
    for (const Shape& s : shapes)
      for (DType dt : kDtypes) {
        if (s[2] + 2 * p.pad_h < p.kernel_h || s[3] + 2 * p.pad_w < p.kernel_w) continue;
        INFO("kernel " << p.kernel_h << "x" << p.kernel_w << " stride " << p.stride_h << "x" << p.stride_w << " pad "
                       << p.pad_h << "x" << p.pad_w << " input " << s.to_string() << " " << dtype_name(dt));
        const Tensor x = uniform(gen, s, dt);
        const Tensor y = kernels::avg_pool2d(x, p);
        check_exact(kernels::avg_pool2d(x.to(gpu()), p), y, "avg values");
        const Tensor gy = uniform(gen, y.shape(), dt);
        check_exact(kernels::avg_pool2d_backward(gy.to(gpu()), s, p), kernels::avg_pool2d_backward(gy, s, p), "avg grad");
      }
}

namespace {

struct BnState {
  Tensor rm, rv, w, b;
};
BnState bn_state(std::mt19937& g, int64_t c, bool affine) {
  BnState s;
  s.rm = uniform(g, Shape{c}, DType::f32, -0.5, 0.5);
  s.rv = uniform(g, Shape{c}, DType::f32, 0.5, 2.0);
  if (affine) {
    s.w = uniform(g, Shape{c}, DType::f32, 0.5, 1.5);
    s.b = uniform(g, Shape{c}, DType::f32, -0.5, 0.5);
  }
  return s;
}
BnState to_gpu(const BnState& s) {
  auto mv = [](const Tensor& t) { return t.defined() ? t.to(gpu()) : Tensor(); };
  return {mv(s.rm), mv(s.rv), mv(s.w), mv(s.b)};
}

}  // namespace

TEST_CASE("cuda batch_norm training matches the CPU: outputs, statistics, running averages over steps",
          "[cuda][cuda_batchnorm]") {
  if (!gpu_or_skip("batch_norm training parity")) return;
  std::mt19937 gen(8);
  const std::vector<Shape> shapes = {{4, 3, 5, 7}, {16, 5}, {1, 2, 9}, {2, 4, 1, 1}, {8, 32, 14, 14}};
  for (const Shape& s : shapes)
    for (DType dt : kDtypes)
      for (bool affine : {false, true}) {
        INFO("input " << s.to_string() << " " << dtype_name(dt) << (affine ? " affine" : ""));
        BnState cpu = bn_state(gen, s[1], affine);
        BnState dev = to_gpu(cpu);
        BatchNormParams p;
        p.training = true;
        for (int step = 0; step < 4; ++step) {
          const Tensor x = uniform(gen, s, dt, -3.0 + step, 5.0 + step);
          const auto want = kernels::batch_norm(x, cpu.rm, cpu.rv, cpu.w, cpu.b, p);
          const auto got = kernels::batch_norm(x.to(gpu()), dev.rm, dev.rv, dev.w, dev.b, p);
          check_parity(got[0], want[0], "output");
          check_close(got[1], want[1], 1e-6, 1e-7, "saved mean");
          check_close(got[2], want[2], 1e-6, 0.0, "saved invstd");
        }
        check_close(dev.rm, cpu.rm, 1e-6, 1e-7, "running mean after 4 steps");
        check_close(dev.rv, cpu.rv, 1e-6, 0.0, "running var after 4 steps");
      }
}

TEST_CASE("cuda batch_norm eval uses the running statistics and equals the CPU exactly", "[cuda][cuda_batchnorm]") {
  if (!gpu_or_skip("batch_norm eval parity")) return;
  std::mt19937 gen(9);
  for (DType dt : kDtypes)
    for (bool affine : {false, true}) {
      const Shape s{3, 4, 6, 5};
      const BnState cpu = bn_state(gen, 4, affine);
      const BnState dev = to_gpu(cpu);
      BatchNormParams p;
      p.training = false;
      const Tensor x = uniform(gen, s, dt, -2.0, 2.0);
      const auto want = kernels::batch_norm(x, cpu.rm, cpu.rv, cpu.w, cpu.b, p);
      const auto got = kernels::batch_norm(x.to(gpu()), dev.rm, dev.rv, dev.w, dev.b, p);
      const std::string what = std::string(dtype_name(dt)) + (affine ? " affine" : "");
      check_exact(got[0], want[0], "eval output " + what);
      check_exact(got[1], want[1], "eval mean " + what);
      check_exact(got[2], want[2], "eval invstd " + what);
      check_exact(dev.rm, cpu.rm, "running mean untouched in eval " + what);
      const Tensor gy = uniform(gen, s, dt);
      const auto gw = kernels::batch_norm_backward(gy, x, cpu.w, want[1], want[2], {true, affine, affine}, p);
      const auto gg = kernels::batch_norm_backward(gy.to(gpu()), x.to(gpu()), dev.w, got[1], got[2],
                                                   {true, affine, affine}, p);
      check_exact(gg[0], gw[0], "eval grad input " + what);
      if (affine) {
        check_close(gg[1], gw[1], 1e-6, 1e-6, "eval grad weight " + what);
        check_close(gg[2], gw[2], 1e-6, 1e-6, "eval grad bias " + what);
      }
    }
}

TEST_CASE("cuda batch_norm of a large-magnitude f16 input stays finite and matches the CPU (float32 statistics)",
          "[cuda][cuda_batchnorm]") {
  if (!gpu_or_skip("batch_norm f16 overflow")) return;
  std::mt19937 gen(10);
  const Shape s{16, 4, 12, 12};
  BnState cpu = bn_state(gen, 4, true);
  BnState dev = to_gpu(cpu);
  BatchNormParams p;
  for (int step = 0; step < 5; ++step) {
    // values around 2000 +- 1500: their squares (and sums) overflow f16's 65504 many times over
    const Tensor x = uniform(gen, s, DType::f16, 500.0, 3500.0);
    const auto want = kernels::batch_norm(x, cpu.rm, cpu.rv, cpu.w, cpu.b, p);
    const auto got = kernels::batch_norm(x.to(gpu()), dev.rm, dev.rv, dev.w, dev.b, p);
    for (double v : got[0].to_vector<double>()) REQUIRE(std::isfinite(v));
    check_parity(got[0], want[0], "f16 output");
    check_close(got[1], want[1], 1e-6, 0.0, "f16 saved mean");
    check_close(got[2], want[2], 1e-6, 0.0, "f16 saved invstd");
  }
  check_close(dev.rm, cpu.rm, 1e-6, 0.0, "running mean (no drift)");
  check_close(dev.rv, cpu.rv, 1e-6, 0.0, "running var (no drift)");
  CHECK(dev.rv.to_vector<double>()[0] > 1e4);  // the variance itself is far beyond f16's range of squares
}

TEST_CASE("cuda batch_norm backward matches the CPU with each gradient optional", "[cuda][cuda_batchnorm]") {
  if (!gpu_or_skip("batch_norm backward parity")) return;
  std::mt19937 gen(11);
  const std::vector<Shape> shapes = {{4, 3, 5, 7}, {16, 5}, {1, 2, 9}};
  const std::vector<std::array<bool, 3>> needs = {{true, true, true}, {true, false, false}, {false, true, false},
                                                  {false, false, true}, {false, true, true}};
  for (const Shape& s : shapes)
    for (DType dt : kDtypes)
      for (const auto& need : needs) {
        INFO("input " << s.to_string() << " " << dtype_name(dt) << " needs " << need[0] << need[1] << need[2]);
        const BnState cpu = bn_state(gen, s[1], true);
        const BnState dev = to_gpu(cpu);
        BatchNormParams p;
        const Tensor x = uniform(gen, s, dt, -2.0, 3.0), gy = uniform(gen, s, dt);
        const auto fw = kernels::batch_norm(x, cpu.rm, cpu.rv, cpu.w, cpu.b, p);
        const auto fg = kernels::batch_norm(x.to(gpu()), dev.rm, dev.rv, dev.w, dev.b, p);
        // the same saved statistics on both sides, so only the backward kernels are compared
        const auto want = kernels::batch_norm_backward(gy, x, cpu.w, fw[1], fw[2], need, p);
        const auto got = kernels::batch_norm_backward(gy.to(gpu()), x.to(gpu()), dev.w, fw[1].to(gpu()),
                                                      fw[2].to(gpu()), need, p);
        for (int i = 0; i < 3; ++i) REQUIRE(got[static_cast<size_t>(i)].defined() == need[static_cast<size_t>(i)]);
        if (need[0]) check_parity(got[0], want[0], "grad input", 1e-5);
        if (need[1]) check_close(got[1], want[1], 1e-5, 1e-5 * std::max(1.0, max_abs(want[1])), "grad weight");
        if (need[2]) check_close(got[2], want[2], 1e-6, 1e-6 * std::max(1.0, max_abs(want[2])), "grad bias");
        check_close(fg[1], fw[1], 1e-6, 1e-7, "forward mean");
      }
}

TEST_CASE("cuda batch_norm statistics are deterministic run to run", "[cuda][cuda_batchnorm]") {
  if (!gpu_or_skip("batch_norm determinism")) return;
  std::mt19937 gen(12);
  for (DType dt : kDtypes) {
    const Tensor x = uniform(gen, Shape{64, 8, 30, 30}, dt).to(gpu()), gy = uniform(gen, Shape{64, 8, 30, 30}, dt).to(gpu());
    BatchNormParams p;
    const auto a = kernels::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), p);
    const auto b = kernels::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), p);
    for (int i = 0; i < 3; ++i) check_exact(a[static_cast<size_t>(i)], b[static_cast<size_t>(i)], "forward twice");
    const auto ga = kernels::batch_norm_backward(gy, x, Tensor(), a[1], a[2], {true, false, false}, p);
    const auto gb = kernels::batch_norm_backward(gy, x, Tensor(), a[1], a[2], {true, false, false}, p);
    check_exact(ga[0], gb[0], std::string("backward twice ") + dtype_name(dt));
  }
}

#endif  // MIXTAPE_WITH_CUDA
