// GPU parity of the CUDA elementwise, cast, random, reduction and softmax/cross-entropy kernels with the CPU
// backend (the reference semantics). Every TEST_CASE skips with a visible message on a machine without a GPU.
// Quantised inputs (multiples of 1/4 in [-4, 4]) make ties common and sums exact in float whatever the order,
// so those comparisons are exact; transcendental ops compare within a few units in the last place.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "cuda/cuda_backend.h"
#include "cuda/functor_kernels.h"
#include "cuda_test_util.h"

using namespace mixtape;
using namespace mixtape::kernels;
using namespace mixtape::testing;
using Catch::Matchers::Contains;

namespace {

const DType kFloat[] = {DType::f32, DType::f16, DType::bf16};
const DType kAll[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::u8};
const int64_t kSizes[] = {0, 1, 3, 1000003};
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

/// CPU tensor of `dtype` with values uniform in [lo, hi), or multiples of 1/4 when `quantised`.
Tensor values(const Shape& shape, DType dtype, uint32_t seed, double lo = -4.0, double hi = 4.0, bool quantised = true) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = quantised ? std::round(u(gen) * 4.0) / 4.0 : u(gen);
  return cast(from_vector(v, shape, DType::f64), dtype);
}

/// True when both tensors hold the same bytes (same shape and dtype).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return std::memcmp(ha.raw_data(), hb.raw_data(), ha.nbytes()) == 0;
}

/// Exact equality with NaN == NaN, reporting the first mismatches.
void check_equal(const Tensor& got, const Tensor& want, const std::string& what) { check_close(got, want, 0.0, 0.0, what); }

/// Tolerance of a transcendental op: a few ulps of the dtype, plus an absolute floor near zero.
double atol_for(DType d) { return d == DType::f32 ? 1e-6 : d == DType::f16 ? 1e-3 : 1e-2; }

std::vector<Shape> broadcast_partners(const Shape& s) {
  // s is (5, 7, 9): broadcast along every axis, from both sides
  return {s, Shape{9}, Shape{7, 1}, Shape{5, 1, 1}, Shape{1, 7, 9}, Shape{5, 1, 9}, Shape{}, Shape{1}};
}

}  // namespace

TEST_CASE("cuda kernels: unary ops match the CPU for every op and float dtype", "[cuda][gpu][elementwise]") {
  if (!gpu_or_skip("unary parity")) return;
  const UnaryOp ops[] = {UnaryOp::identity, UnaryOp::neg, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::rsqrt,
                         UnaryOp::tanh, UnaryOp::sigmoid, UnaryOp::relu, UnaryOp::gelu, UnaryOp::abs};
  for (DType dt : kFloat)
    for (int64_t n : kSizes)
      for (UnaryOp op : ops) {
        const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt;
        const Tensor x = values(Shape{n}, dt, 7, positive ? 0.01 : -8.0, 8.0, false);
        const Tensor want = unary(op, x);
        const Tensor got = unary(op, x.to(gpu()));
        CHECK(got.device() == gpu());
        check_close(got, want, ulp_tolerance(dt), atol_for(dt),
                    std::string(op_name(op)) + " " + dtype_name(dt) + " n=" + std::to_string(n));
      }
  // inf, NaN and the overflow edges go through the same functors
  const Tensor special = from_vector(std::vector<double>{kNaN, kInf, -kInf, 0.0, -0.0, 88.0, -88.0, 1e30, -1e30}, Shape{9}, DType::f64);
  for (DType dt : kFloat)
    for (UnaryOp op : ops) {
      const Tensor x = cast(special, dt);
      check_close(unary(op, x.to(gpu())), unary(op, x), ulp_tolerance(dt), atol_for(dt),
                  std::string("special ") + op_name(op) + " " + dtype_name(dt));
    }
}

TEST_CASE("cuda kernels: binary ops, comparisons and fused backward ops match the CPU with broadcasting",
          "[cuda][gpu][elementwise]") {
  if (!gpu_or_skip("binary parity")) return;
  const Shape s{5, 7, 9};
  for (int op_i = 0; op_i <= static_cast<int>(BinaryOp::min_share); ++op_i) {
    const auto op = static_cast<BinaryOp>(op_i);
    const bool exact = op != BinaryOp::pow && op != BinaryOp::gelu_backward && op != BinaryOp::div &&
                       op != BinaryOp::sqrt_backward;
    for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::i64}) {
      if (dt == DType::i64 && op != BinaryOp::add && op != BinaryOp::sub && op != BinaryOp::mul && !is_comparison(op)) {
        // kernels::binary computes the other ops in floating point only, on every backend alike
        const Tensor a = values(s, dt, 3), b = values(s, dt, 11);
        CHECK_THROWS_WITH(binary(op, a.to(gpu()), b.to(gpu())), Contains("expected a floating-point tensor"));
        CHECK_THROWS_WITH(binary(op, a, b), Contains("expected a floating-point tensor"));
        continue;
      }
      const double lo = op == BinaryOp::pow ? 0.25 : -4.0;
      auto b_values = [&](const Shape& shape) {  // nonzero divisors and square roots
        Tensor b = values(shape, dt, 11, lo, 4.0);
        if (op == BinaryOp::div || op == BinaryOp::sqrt_backward || op == BinaryOp::pow)
          b = binary(BinaryOp::add, unary(UnaryOp::abs, b), full(Shape{}, 0.5, dt));
        return b;
      };
      for (const Shape& bs : broadcast_partners(s))
        for (int swap = 0; swap < 2; ++swap) {
          const Tensor a = values(swap ? bs : s, dt, 3, lo, 4.0);
          const Tensor b = b_values(swap ? s : bs);
          const std::string what = std::string(op_name(op)) + " " + dtype_name(dt) + " " + a.shape().to_string() +
                                   " with " + b.shape().to_string();
          const Tensor want = binary(op, a, b);
          const Tensor got = binary(op, a.to(gpu()), b.to(gpu()));
          REQUIRE(got.dtype() == want.dtype());
          if (exact) check_equal(got, want, what);
          else check_close(got, want, ulp_tolerance(dt), atol_for(dt), what);
        }
      for (int64_t n : kSizes) {  // flat, vectorised path with odd tails
        const Tensor a = values(Shape{n}, dt, 5, lo, 4.0), b = b_values(Shape{n});
        const std::string what = std::string(op_name(op)) + " " + dtype_name(dt) + " n=" + std::to_string(n);
        if (exact) check_equal(binary(op, a.to(gpu()), b.to(gpu())), binary(op, a, b), what);
        else check_close(binary(op, a.to(gpu()), b.to(gpu())), binary(op, a, b), ulp_tolerance(dt), atol_for(dt), what);
      }
    }
  }
  // NaN propagation of maximum/minimum, and comparisons with NaN
  const Tensor a = from_vector(std::vector<double>{kNaN, 1.0, kNaN, -kInf, 2.0}, Shape{5}, DType::f64);
  const Tensor b = from_vector(std::vector<double>{1.0, kNaN, kNaN, kInf, 2.0}, Shape{5}, DType::f64);
  for (DType dt : kFloat)
    for (BinaryOp op : {BinaryOp::maximum, BinaryOp::minimum, BinaryOp::eq, BinaryOp::ne, BinaryOp::lt, BinaryOp::ge,
                        BinaryOp::max_share, BinaryOp::min_share}) {
      const Tensor ca = cast(a, dt), cb = cast(b, dt);
      check_equal(binary(op, ca.to(gpu()), cb.to(gpu())), binary(op, ca, cb), std::string("nan ") + op_name(op));
    }
}

TEST_CASE("cuda kernels: misaligned raw pointers take the scalar path and match the CPU", "[cuda][gpu][elementwise]") {
  if (!gpu_or_skip("misaligned elementwise")) return;
  for (DType dt : kFloat) {
    const int64_t n = 1000003;
    const Tensor x = values(Shape{n + 1}, dt, 21, -3.0, 3.0, false);
    const Tensor xg = x.to(gpu());
    Tensor yg = Tensor::empty(Shape{n + 1}, dt, gpu());
    const size_t es = dtype_size(dt);
    // one element in: neither pointer is 16-byte aligned
    cuda::launch_unary(UnaryOp::tanh, dt, static_cast<const char*>(xg.raw_data()) + es,
                       static_cast<char*>(yg.raw_data()) + es, n, cuda::backend(0).stream());
    cuda::backend(0).synchronize();
    const Tensor got = view(cast(yg.to(Device::cpu()), DType::f64), Shape{n + 1});
    const Tensor want = cast(unary(UnaryOp::tanh, x), DType::f64);
    const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
    size_t bad = 0;
    for (int64_t i = 1; i <= n; ++i)
      if (std::fabs(g[static_cast<size_t>(i)] - w[static_cast<size_t>(i)]) >
          ulp_tolerance(dt) * std::fabs(w[static_cast<size_t>(i)]) + atol_for(dt))
        ++bad;
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda kernels: where broadcasts every dtype like the CPU", "[cuda][gpu][elementwise]") {
  if (!gpu_or_skip("where parity")) return;
  const Shape s{5, 7, 9};
  for (DType dt : kAll)
    for (const Shape& cs : broadcast_partners(s)) {
      const Tensor cond = binary(BinaryOp::gt, values(cs, DType::f32, 1), full(Shape{}, 0.0, DType::f32));
      const Tensor a = values(s, dt, 2, 0.0, 100.0), b = values(Shape{9}, dt, 3, 0.0, 100.0);
      check_equal(where(cond.to(gpu()), a.to(gpu()), b.to(gpu())), where(cond, a, b),
                  std::string("where ") + dtype_name(dt) + " cond " + cs.to_string());
      check_equal(where(cond.to(gpu()), b.to(gpu()), a.to(gpu())), where(cond, b, a), "where swapped");
    }
}

TEST_CASE("cuda kernels: casts between every dtype pair equal the CPU bit for bit", "[cuda][gpu][cast]") {
  if (!gpu_or_skip("cast parity")) return;
  std::vector<double> v = {kNaN, kInf, -kInf, 0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 255.5, 256.0, 300.0, -1.5, 65504.0,
                           65520.0, 1e10, -1e10, 3e38, 2147483648.0, -2147483649.0, 9.3e18, -9.3e18, 1e-8, 3e-5,
                           1.0000000596046448, 16777217.0, 9007199254740993.0, 1e-40};
  for (int i = 0; i < 1000; ++i) v.push_back((i - 500) * 0.37);
  const Tensor src64 = from_vector(v, Shape{static_cast<int64_t>(v.size())}, DType::f64);
  for (DType from : kAll) {
    const Tensor src = cast(src64, from);
    const Tensor src_gpu = src.to(gpu());
    for (DType to : kAll) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      CHECK(same_bits(cast(src_gpu, to), cast(src, to)));
    }
  }
  for (DType to : kFloat) {  // the big AMP casts
    const Tensor big = values(Shape{1000003}, DType::f32, 9, -70000.0, 70000.0, false);
    CHECK(same_bits(cast(big.to(gpu()), to), cast(big, to)));
    CHECK(same_bits(cast(cast(big, to).to(gpu()), DType::f32), cast(cast(big, to), DType::f32)));
  }
}

TEST_CASE("cuda kernels: fill, arange and copy equal the CPU bit for bit", "[cuda][gpu][elementwise]") {
  if (!gpu_or_skip("fill/arange/copy parity")) return;
  for (DType dt : kAll)
    for (int64_t n : kSizes)
      for (double value : {0.0, -0.0, 1.0, 0.1, -3.7, 300.0, 65520.0, kNaN, kInf}) {
        INFO(dtype_name(dt) << " n=" << n << " value " << value);
        CHECK(same_bits(full(Shape{n}, value, dt, gpu()), full(Shape{n}, value, dt)));
      }
  for (DType dt : kAll) {
    INFO(dtype_name(dt));
    CHECK(same_bits(arange(-3.3, 700.0, 0.7, dt, gpu()), arange(-3.3, 700.0, 0.7, dt)));
    const Tensor x = values(Shape{1000003}, dt, 4, 0.0, 100.0);
    const Tensor xg = x.to(gpu());
    Tensor y = Tensor::empty(x.shape(), dt, gpu());
    cuda::backend(0).copy(xg, y);
    CHECK(same_bits(y, x));
    CHECK(same_bits(xg.clone(), x));
  }
}

TEST_CASE("cuda kernels: random draws equal the CPU's counter-based stream", "[cuda][gpu][random]") {
  if (!gpu_or_skip("random parity")) return;
  for (DType dt : kFloat)
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{1000003}}) {
      INFO(dtype_name(dt) << " n=" << n);
      Generator g1(1234), g2(1234);
      g1.set_state(1234, 5);
      g2.set_state(1234, 5);
      // uniform: Philox bits and explicitly rounded float arithmetic: identical bits
      CHECK(same_bits(rand(Shape{n}, dt, gpu(), &g1, -2.0, 3.0), rand(Shape{n}, dt, Device::cpu(), &g2, -2.0, 3.0)));
      // normal: the same Philox words; logf/cosf of CUDA's libdevice and of glibc may differ in the last float bit,
      // so the values agree to a couple of float ulps (and exactly in the vast majority of elements)
      const Tensor got = randn(Shape{n}, dt, gpu(), &g1, 0.5, 2.0), want = randn(Shape{n}, dt, Device::cpu(), &g2, 0.5, 2.0);
      check_close(got, want, dt == DType::f32 ? 4 * 1.2e-7 : ulp_tolerance(dt) / 4, 1e-6, "randn");
      const std::vector<double> gv = got.to_vector<double>(), wv = want.to_vector<double>();
      size_t same = 0;
      for (size_t i = 0; i < gv.size(); ++i) same += gv[i] == wv[i];
      CHECK(static_cast<double>(same) >= 0.99 * static_cast<double>(gv.size()));
    }
  CHECK_THROWS_WITH(rand(Shape{4}, DType::f64, gpu()), Contains("random") && Contains("f64"));
}

TEST_CASE("cuda kernels: reductions on every axis match the CPU, with NaN and ties", "[cuda][gpu][reduce]") {
  if (!gpu_or_skip("reduction parity")) return;
  const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min};
  const std::vector<Shape> shapes = {Shape{1}, Shape{3}, Shape{1000003}, Shape{4, 5, 6}, Shape{3, 2000, 5},
                                     Shape{7, 3000}, Shape{3000, 7}, Shape{2, 1000003}, Shape{300, 1000, 3},
                                     Shape{1, 1, 1}};
  for (DType dt : kFloat)
    for (const Shape& shape : shapes)
      for (int nan = 0; nan < 2; ++nan) {
        Tensor x = values(shape, dt, 13);  // quantised: sums exact in float, many ties
        if (nan) {  // NaNs at a few positions (and one at the very start)
          std::vector<double> v = cast(x, DType::f64).to_vector<double>();
          for (size_t i = 0; i < v.size(); i += 997) v[i] = kNaN;
          x = cast(from_vector(v, shape, DType::f64), dt);
        }
        const Tensor xg = x.to(gpu());
        std::vector<std::vector<int64_t>> axes_list = {{}};
        for (int a = 0; a < shape.size(); ++a) axes_list.push_back({a});
        for (const auto& axes : axes_list) {
          const std::string what = dtype_name(dt) + std::string(" ") + shape.to_string() + " axes " +
                                   (axes.empty() ? std::string("all") : std::to_string(axes[0])) + (nan ? " nan" : "");
          for (ReduceOp op : ops) check_equal(reduce(op, xg, axes, false), reduce(op, x, axes, false), what + " " + op_name(op));
          if (!axes.empty()) check_equal(argmax(xg, axes[0], false), argmax(x, axes[0], false), what + " argmax");
        }
      }
  // non-quantised sums: the order differs from the CPU's, within float rounding
  const Tensor x = values(Shape{64, 100003}, DType::f32, 17, -1.0, 1.0, false);
  check_close(reduce(ReduceOp::sum, x.to(gpu()), {1}, false), reduce(ReduceOp::sum, x, {1}, false), 1e-4, 1e-3, "sum");
  // deterministic: the same bits on every run
  const Tensor xg = x.to(gpu());
  CHECK(same_bits(reduce(ReduceOp::sum, xg, {}, false), reduce(ReduceOp::sum, xg, {}, false)));
  CHECK(same_bits(reduce(ReduceOp::sum, xg, {0}, false), reduce(ReduceOp::sum, xg, {0}, false)));
  // empty axes: sum 0 and mean NaN, as the CPU
  const Tensor e = Tensor::empty(Shape{3, 0, 2}, DType::f32);
  check_equal(reduce(ReduceOp::sum, e.to(gpu()), {1}, false), reduce(ReduceOp::sum, e, {1}, false), "empty sum");
  check_equal(reduce(ReduceOp::mean, e.to(gpu()), {1}, false), reduce(ReduceOp::mean, e, {1}, false), "empty mean");
  CHECK_THROWS_WITH(reduce(ReduceOp::sum, full(Shape{3}, 1.0, DType::f64, gpu()), {}, false), Contains("sum") && Contains("f64"));
}

TEST_CASE("cuda kernels: softmax and log-softmax forward and backward match the CPU", "[cuda][gpu][softmax]") {
  if (!gpu_or_skip("softmax parity")) return;
  for (DType dt : kFloat)
    for (int64_t cols : {1, 3, 10, 1000, 1025, 5000})
      for (int64_t rows : {1, 3, 300}) {
        const double big = dt == DType::f16 ? 60000.0 : 1e4;
        Tensor x = values(Shape{rows, cols}, dt, 19, -8.0, 8.0, false);
        std::vector<double> v = cast(x, DType::f64).to_vector<double>();
        if (rows >= 3) {  // row 1: ±inf and large logits; row 2: a NaN; row 0 stays finite
          v[static_cast<size_t>(cols)] = big;
          if (cols > 2) {
            v[static_cast<size_t>(cols + 1)] = -kInf;
            v[static_cast<size_t>(cols + 2)] = -big;
          }
          v[static_cast<size_t>(2 * cols + cols / 2)] = kNaN;
        }
        if (rows == 300) v[static_cast<size_t>(5 * cols)] = kInf;  // +inf: NaN rows on both backends
        x = cast(from_vector(v, Shape{rows, cols}, DType::f64), dt);
        const Tensor gy = values(Shape{rows, cols}, dt, 23, -1.0, 1.0, false);
        for (bool log : {false, true}) {
          const std::string what = std::string(log ? "log_softmax " : "softmax ") + dtype_name(dt) + " " +
                                   std::to_string(rows) + "x" + std::to_string(cols);
          const double rtol = dt == DType::f32 ? 2e-5 : ulp_tolerance(dt), atol = atol_for(dt);
          const Tensor y = softmax(x, log), yg = softmax(x.to(gpu()), log);
          check_close(yg, y, rtol, atol, what);
          check_close(softmax_backward(yg, gy.to(gpu()), log), softmax_backward(y, gy, log), rtol,
                      dt == DType::f32 ? 1e-5 : atol * 4, what + " backward");
        }
      }
}

TEST_CASE("cuda kernels: cross-entropy with label smoothing matches the CPU and rejects bad labels",
          "[cuda][gpu][softmax]") {
  if (!gpu_or_skip("cross-entropy parity")) return;
  for (DType dt : kFloat)
    for (int64_t classes : {1, 10, 1000, 3000})
      for (double smoothing : {0.0, 0.1, 1.0}) {
        const int64_t rows = 37;
        Tensor logits = values(Shape{rows, classes}, dt, 29, -10.0, 10.0, false);
        std::vector<int64_t> lab(rows);
        for (int64_t i = 0; i < rows; ++i) lab[static_cast<size_t>(i)] = (i * 7) % classes;
        const Tensor labels = from_vector(lab, Shape{rows}, DType::i64);
        const Tensor gl = values(Shape{rows}, dt, 31, 0.1, 2.0, false);
        const std::string what = dtype_name(dt) + std::string(" C=") + std::to_string(classes) + " eps=" + std::to_string(smoothing);
        const double rtol = dt == DType::f32 ? 2e-5 : ulp_tolerance(dt);
        check_close(cross_entropy(logits.to(gpu()), labels.to(gpu()), smoothing), cross_entropy(logits, labels, smoothing),
                    rtol, atol_for(dt), what);
        check_close(cross_entropy_backward(logits.to(gpu()), labels.to(gpu()), gl.to(gpu()), smoothing),
                    cross_entropy_backward(logits, labels, gl, smoothing), rtol, atol_for(dt), what + " backward");
      }
  // a bad label: the same mixtape::Error as the CPU, naming the label and its row (the lowest bad row)
  const Tensor logits = values(Shape{6, 5}, DType::f32, 3);
  const Tensor labels = from_vector(std::vector<int64_t>{0, 4, 7, 1, -1, 2}, Shape{6}, DType::i64);
  std::string cpu_msg, gpu_msg;
  try {
    cross_entropy(logits, labels, 0.0);
  } catch (const Error& e) {
    cpu_msg = e.what();
  }
  try {
    cross_entropy(logits.to(gpu()), labels.to(gpu()), 0.0);
  } catch (const Error& e) {
    gpu_msg = e.what();
  }
  CHECK_THAT(gpu_msg, Contains("label 7 at index 2") && Contains("5 classes"));
  CHECK(gpu_msg == cpu_msg);
  CHECK_THROWS_WITH(cross_entropy_backward(logits.to(gpu()), labels.to(gpu()), ones(Shape{6}, DType::f32, gpu()), 0.1),
                    Contains("label 7 at index 2"));
  // the stream is usable afterwards
  const Tensor ok = from_vector(std::vector<int64_t>{0, 4, 3, 1, 0, 2}, Shape{6}, DType::i64);
  check_close(cross_entropy(logits.to(gpu()), ok.to(gpu()), 0.0), cross_entropy(logits, ok, 0.0), 2e-5, 1e-6, "after error");
}

TEST_CASE("cuda kernels: f64 is storage only and compute ops say so", "[cuda][gpu]") {
  if (!gpu_or_skip("f64 rules")) return;
  const Tensor x = full(Shape{4}, 2.0, DType::f64, gpu());
  CHECK_THROWS_WITH(unary(UnaryOp::exp, x), Contains("exp") && Contains("f64"));
  CHECK_THROWS_WITH(binary(BinaryOp::add, x, x), Contains("add") && Contains("f64"));
  CHECK_THROWS_WITH(softmax(view(x, Shape{2, 2}), false), Contains("softmax") && Contains("f64"));
  CHECK(same_bits(cast(x, DType::f32), full(Shape{4}, 2.0, DType::f32)));
}

TEST_CASE("cuda kernels: permute, narrow, cat and embedding equal the CPU bit for bit, and the embedding gradient is the "
          "CPU's sums in position order", "[cuda][gpu][layout]") {
  if (!gpu_or_skip("layout and embedding parity")) return;
  for (DType dt : kAll) {
    INFO(dtype_name(dt));
    const Tensor x = values(Shape{3, 4, 5, 6}, dt, 40, 0.0, 100.0);
    const Tensor xg = x.to(gpu());
    check_equal(kernels::permute(xg, {3, 1, 0, 2}), kernels::permute(x, {3, 1, 0, 2}), "permute");
    check_equal(kernels::permute(xg, {0, 1, 3, 2}), kernels::permute(x, {0, 1, 3, 2}), "permute of the last two axes");
    check_equal(kernels::narrow(xg, 2, 1, 3), kernels::narrow(x, 2, 1, 3), "narrow");
    check_equal(kernels::narrow(xg, 3, 5, 1), kernels::narrow(x, 3, 5, 1), "narrow of the last axis");
    const Tensor y = values(Shape{3, 2, 5, 6}, dt, 41, 0.0, 100.0);
    check_equal(kernels::cat({xg, y.to(gpu()), xg}, 1), kernels::cat({x, y, x}, 1), "cat");
    const Tensor w = values(Shape{7, 5}, dt, 42, 0.0, 100.0);
    const Tensor ids = from_vector<int64_t>({6, 0, 3, 3, 1, 6, 2, 0}, Shape{2, 4});
    check_equal(kernels::embedding(w.to(gpu()), ids.to(gpu())), kernels::embedding(w, ids), "embedding");
  }
  // Not quantised: float sums depend on their order, so equal bits mean the same order (ascending position).
  for (DType dt : kFloat) {
    INFO(dtype_name(dt));
    std::vector<int64_t> idv(500);
    for (size_t i = 0; i < idv.size(); ++i) idv[i] = static_cast<int64_t>((i * 7) % 11 == 3 ? 9 : (i * 5) % 10);
    const Tensor ids = from_vector<int64_t>(idv, Shape{500});
    const Tensor g = values(Shape{500, 33}, dt, 43, -1.0, 1.0, false);
    const Tensor want = kernels::embedding_backward(g, ids, 12);  // rows 10 and 11 named by no id: zeros
    check_equal(kernels::embedding_backward(g.to(gpu()), ids.to(gpu()), 12), want, "embedding backward");
  }
}
