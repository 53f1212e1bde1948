// Raw kernels (core/kernels.h) against float64 references computed here with plain loops.
// Tolerances: the output is rounded once into its dtype (unit roundoff u = 2^-24, 2^-11, 2^-8, 2^-53
// for f32, f16, bf16, f64) after computing in the accumulate type (float, or double for f64).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/kernels.h"
#include "core/tensor.h"
#include "test_util.h"

using namespace mixtape;
using mixtape::testing::strides_of;
using mixtape::testing::unravel;

namespace {

constexpr DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64};

/// Unit roundoff of the storage type.
double unit(DType dt) {
  switch (dt) {
    case DType::f32: return std::ldexp(1.0, -24);
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::bf16: return std::ldexp(1.0, -8);
    case DType::f64: return std::ldexp(1.0, -53);
    default: return 0;
  }
}
/// Unit roundoff of the accumulate type.
double acc_unit(DType dt) { return dt == DType::f64 ? std::ldexp(1.0, -53) : std::ldexp(1.0, -24); }
/// Absolute slack for results in the subnormal range of the storage type (half its smallest spacing).
double sub_abs(DType dt) { return dt == DType::f16 ? std::ldexp(1.0, -25) : 1e-300; }

std::vector<double> uniform(size_t n, std::mt19937& rng, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

Tensor make(const std::vector<double>& v, const Shape& s, DType dt = DType::f32) { return from_vector(v, s, dt); }
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

int64_t prod(const std::vector<int64_t>& d) {
  int64_t p = 1;
  for (int64_t x : d) p *= x;
  return p;
}

/// Index into an operand of shape `in` for the output multi-index `idx` (NumPy right-aligned broadcasting).
int64_t broadcast_index(const std::vector<int64_t>& idx, const std::vector<int64_t>& in) {
  const size_t off = idx.size() - in.size();
  const std::vector<int64_t> st = strides_of(in);
  int64_t k = 0;
  for (size_t i = 0; i < in.size(); ++i) k += (in[i] == 1 ? 0 : idx[off + i]) * st[i];
  return k;
}

/// Element-by-element comparison with |got - ref| <= rel*|ref| + abs; NaN must match NaN.
void check_close(const std::vector<double>& got, const std::vector<double>& ref, double rel, double abs,
                 const std::string& what) {
  REQUIRE(got.size() == ref.size());
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    bool ok;
    if (std::isnan(ref[i])) ok = std::isnan(got[i]);
    else if (std::isinf(ref[i])) ok = got[i] == ref[i];
    else ok = std::abs(got[i] - ref[i]) <= rel * std::abs(ref[i]) + abs;
    if (!ok) {
      ++bad;
      worst = std::max(worst, std::abs(got[i] - ref[i]));
      if (bad <= 3) FAIL_CHECK(what << ": element " << i << " got " << got[i] << ", expected " << ref[i]);
    }
  }
  INFO(what << ": " << bad << " mismatches, worst abs error " << worst);
  CHECK(bad == 0);
}

}  // namespace

// =============================================================================================
// elementwise
// =============================================================================================

namespace {
struct BinRef {
  BinaryOp op;
  std::function<double(double, double)> f;
};
const std::vector<BinRef>& binary_refs() {
  static const std::vector<BinRef> r = {
      {BinaryOp::add, [](double a, double b) { return a + b; }},
      {BinaryOp::sub, [](double a, double b) { return a - b; }},
      {BinaryOp::mul, [](double a, double b) { return a * b; }},
      {BinaryOp::div, [](double a, double b) { return a / b; }},
      {BinaryOp::pow, [](double a, double b) { return std::pow(a, b); }},
      {BinaryOp::maximum, [](double a, double b) { return std::max(a, b); }},
      {BinaryOp::minimum, [](double a, double b) { return std::min(a, b); }},
  };
  return r;
}
}  // namespace

TEST_CASE("binary ops broadcast like NumPy and match float64 references", "[kernels][binary]") {
  struct ShapePair {
    std::vector<int64_t> a, b, out;
  };
  const std::vector<ShapePair> pairs = {
      {{2, 3, 4}, {3, 1}, {2, 3, 4}}, {{1}, {2, 3}, {2, 3}},       {{4, 1, 5}, {1, 3, 1}, {4, 3, 5}},
      {{}, {2, 3}, {2, 3}},           {{2, 3}, {}, {2, 3}},        {{}, {}, {}},
      {{2, 3}, {2, 3}, {2, 3}},       {{3, 1}, {1, 4}, {3, 4}},    {{5}, {2, 1, 5}, {2, 1, 5}},
      {{2, 1, 3, 1}, {4, 1, 2}, {2, 4, 3, 2}},
  };
  std::mt19937 rng(1);
  for (DType dt : kFloatTypes) {
    for (const ShapePair& p : pairs) {
      const int64_t na = prod(p.a), nb = prod(p.b), no = prod(p.out);
      for (const BinRef& r : binary_refs()) {
        // bases positive for pow; divisors away from zero
        std::vector<double> av = uniform(static_cast<size_t>(na), rng, r.op == BinaryOp::pow ? 0.5 : -2.0, 2.0);
        std::vector<double> bv = uniform(static_cast<size_t>(nb), rng, 0.5, 2.0);
        for (double& x : bv) if (rng() & 1u) x = -x;
        const Tensor a = make(av, Shape(p.a), dt), b = make(bv, Shape(p.b), dt);
        const Tensor out = kernels::binary(r.op, a, b);
        INFO("op " << op_name(r.op) << " dtype " << dtype_name(dt) << " shapes " << Shape(p.a).to_string() << " "
                   << Shape(p.b).to_string());
        REQUIRE(out.shape() == Shape(p.out));
        REQUIRE(out.dtype() == dt);
        // reference from the inputs as stored (already rounded to dt)
        const std::vector<double> ar = vals(a), br = vals(b);
        std::vector<double> ref(static_cast<size_t>(no));
        for (int64_t i = 0; i < no; ++i) {
          const std::vector<int64_t> idx = unravel(i, p.out);
          ref[static_cast<size_t>(i)] = r.f(ar[static_cast<size_t>(broadcast_index(idx, p.a))], br[static_cast<size_t>(broadcast_index(idx, p.b))]);
        }
        check_close(vals(out), ref, unit(dt) + 4 * acc_unit(dt), sub_abs(dt), op_name(r.op));
      }
    }
  }
}

TEST_CASE("binary ops: f16 results overflow to inf and keep NaN like the hardware would", "[kernels][binary]") {
  const Tensor a = make({60000.0, 300.0, 1e-4, 2.0}, Shape{4}, DType::f16);
  const Tensor b = make({10000.0, 300.0, 1e-4, 0.0}, Shape{4}, DType::f16);
  const std::vector<double> s = vals(kernels::binary(BinaryOp::add, a, b));
  CHECK(std::isinf(s[0]));  // 70000 > 65504
  CHECK(s[1] == 600.0);
  const std::vector<double> m = vals(kernels::binary(BinaryOp::mul, a, b));
  CHECK(std::isinf(m[1]));  // 90000
  // 1e-4 * 1e-4 = 1e-8 < 2^-25: underflows to zero in f16 (though representable in the float accumulator)
  CHECK(m[2] == 0.0);
  const std::vector<double> d = vals(kernels::binary(BinaryOp::div, a, b));
  CHECK(std::isinf(d[3]));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = make({nan, 1.0, nan}, Shape{3}), y = make({1.0, nan, nan}, Shape{3});
  for (BinaryOp op : {BinaryOp::maximum, BinaryOp::minimum, BinaryOp::add}) {
    for (double v : vals(kernels::binary(op, x, y))) CHECK(std::isnan(v));
  }
}

TEST_CASE("unary ops match float64 references in every float dtype", "[kernels][unary]") {
  struct UnRef {
    UnaryOp op;
    std::function<double(double)> f;
    double lo, hi;
  };
  const std::vector<UnRef> refs = {
      {UnaryOp::identity, [](double x) { return x; }, -4, 4},
      {UnaryOp::neg, [](double x) { return -x; }, -4, 4},
      {UnaryOp::exp, [](double x) { return std::exp(x); }, -6, 6},
      {UnaryOp::log, [](double x) { return std::log(x); }, 0.05, 20},
      {UnaryOp::sqrt, [](double x) { return std::sqrt(x); }, 0.0, 20},
      {UnaryOp::rsqrt, [](double x) { return 1.0 / std::sqrt(x); }, 0.05, 20},
      {UnaryOp::tanh, [](double x) { return std::tanh(x); }, -5, 5},
      {UnaryOp::sigmoid, [](double x) { return 1.0 / (1.0 + std::exp(-x)); }, -12, 12},
      {UnaryOp::relu, [](double x) { return x > 0 ? x : 0.0; }, -4, 4},
      {UnaryOp::gelu, [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }, -6, 6},
      {UnaryOp::abs, [](double x) { return std::abs(x); }, -4, 4},
  };
  std::mt19937 rng(2);
  for (DType dt : kFloatTypes) {
    for (const UnRef& r : refs) {
      const Tensor x = make(uniform(600, rng, r.lo, r.hi), Shape{20, 30}, dt);
      const Tensor y = kernels::unary(r.op, x);
      INFO("op " << op_name(r.op) << " dtype " << dtype_name(dt));
      REQUIRE(y.shape() == x.shape());
      REQUIRE(y.dtype() == dt);
      const std::vector<double> xr = vals(x);
      std::vector<double> ref(xr.size());
      std::vector<double> got = vals(y);
      int bad = 0;
      for (size_t i = 0; i < xr.size(); ++i) {
        ref[i] = r.f(xr[i]);
        // rounding of the output + a few ulps of the accumulate type relative to the input scale
        // (the absolute term covers cancellation in gelu's 1 + erf for negative x)
        const double tol = (unit(dt) + 8 * acc_unit(dt)) * std::abs(ref[i]) + 8 * acc_unit(dt) * (1 + std::abs(xr[i])) + sub_abs(dt);
        if (!(std::abs(got[i] - ref[i]) <= tol) && ++bad <= 3)
          FAIL_CHECK(op_name(r.op) << "(" << xr[i] << ") = " << got[i] << ", expected " << ref[i]);
      }
      CHECK(bad == 0);
    }
  }
  // edge values
  const Tensor e = make({0.0, -1.0, std::numeric_limits<double>::infinity(), -1000.0, 1000.0}, Shape{5});
  const std::vector<double> lg = vals(kernels::unary(UnaryOp::log, e));
  CHECK(lg[0] == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(lg[1]));
  CHECK(lg[2] == std::numeric_limits<double>::infinity());
  const std::vector<double> sg = vals(kernels::unary(UnaryOp::sigmoid, e));
  CHECK(sg[3] == 0.0);  // no NaN from exp overflow
  CHECK(sg[4] == 1.0);
  const std::vector<double> th = vals(kernels::unary(UnaryOp::tanh, e));
  CHECK(th[3] == -1.0);
  CHECK(th[4] == 1.0);
  CHECK(vals(kernels::unary(UnaryOp::exp, make({12.0}, Shape{1}, DType::f16)))[0] == std::numeric_limits<double>::infinity());
}

TEST_CASE("comparisons return u8 0/1 with broadcasting, where selects", "[kernels][compare]") {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(0, 2);  // many ties
  for (DType dt : kFloatTypes) {
    std::vector<double> av(12), bv(4);
    for (double& x : av) x = small(rng);
    for (double& x : bv) x = small(rng);
    av[0] = 1.0;
    bv[0] = 1.0;  // at least one tie
    const Tensor a = make(av, Shape{3, 4}, dt), b = make(bv, Shape{4}, dt);
    struct Cmp {
      BinaryOp op;
      std::function<bool(double, double)> f;
    };
    const Cmp cmps[] = {{BinaryOp::eq, std::equal_to<double>()}, {BinaryOp::ne, std::not_equal_to<double>()},
                        {BinaryOp::lt, std::less<double>()},     {BinaryOp::le, std::less_equal<double>()},
                        {BinaryOp::gt, std::greater<double>()},  {BinaryOp::ge, std::greater_equal<double>()}};
    for (const Cmp& c : cmps) {
      INFO("op " << op_name(c.op) << " dtype " << dtype_name(dt));
      const Tensor r = kernels::binary(c.op, a, b);
      REQUIRE(r.dtype() == DType::u8);
      REQUIRE(r.shape() == Shape{3, 4});
      const std::vector<uint8_t> got = r.to_vector<uint8_t>();
      for (int64_t i = 0; i < 12; ++i)
        CHECK(got[static_cast<size_t>(i)] == (c.f(av[static_cast<size_t>(i)], bv[static_cast<size_t>(i % 4)]) ? 1 : 0));
    }
  }
  // NaN compares unequal to everything, including itself
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor n = make({nan}, Shape{1});
  CHECK(kernels::binary(BinaryOp::eq, n, n).to_vector<uint8_t>()[0] == 0);
  CHECK(kernels::binary(BinaryOp::ne, n, n).to_vector<uint8_t>()[0] == 1);
  CHECK(kernels::binary(BinaryOp::lt, n, make({1.0}, Shape{1})).to_vector<uint8_t>()[0] == 0);
  CHECK(kernels::binary(BinaryOp::ge, n, make({1.0}, Shape{1})).to_vector<uint8_t>()[0] == 0);

  // where with full broadcasting: cond (2, 1), a (1, 3), b 0-d
  const Tensor cond = from_vector(std::vector<uint8_t>{1, 0}, Shape{2, 1});
  const Tensor wa = make({10, 20, 30}, Shape{1, 3}, DType::f16);
  const Tensor wb = make({-1}, Shape{}, DType::f16);
  const Tensor w = kernels::where(cond, wa, wb);
  CHECK(w.shape() == Shape{2, 3});
  CHECK(w.dtype() == DType::f16);
  CHECK(vals(w) == std::vector<double>{10, 20, 30, -1, -1, -1});
  // where(a > b, a, b) is maximum
  std::mt19937 r2(4);
  const Tensor x = make(uniform(24, r2, -1, 1), Shape{2, 3, 4}), y = make(uniform(4, r2, -1, 1), Shape{4});
  const Tensor m = kernels::where(kernels::binary(BinaryOp::gt, x, y), x, y);
  CHECK(vals(m) == vals(kernels::binary(BinaryOp::maximum, x, y)));
  const std::vector<double> xv = vals(x), yv = vals(y), mv = vals(m);
  for (size_t i = 0; i < 24; ++i) CHECK(mv[i] == std::max(xv[i], yv[i % 4]));
}

// =============================================================================================
// reductions
// =============================================================================================

namespace {
/// Reference reduction over `axes` of x (dims), in double. op: 0 sum, 1 mean, 2 max, 3 argmax (first max).
std::vector<double> ref_reduce(const std::vector<double>& x, const std::vector<int64_t>& dims, std::vector<int64_t> axes,
                               int op, std::vector<int64_t>* out_dims_keep) {
  const int nd = static_cast<int>(dims.size());
  if (axes.empty())
    for (int i = 0; i < nd; ++i) axes.push_back(i);
  std::vector<bool> red(static_cast<size_t>(nd), false);
  for (int64_t a : axes) red[static_cast<size_t>(a < 0 ? a + nd : a)] = true;
  std::vector<int64_t> od(dims);
  int64_t count = 1;
  for (int i = 0; i < nd; ++i)
    if (red[static_cast<size_t>(i)]) {
      od[static_cast<size_t>(i)] = 1;
      count *= dims[static_cast<size_t>(i)];
    }
  *out_dims_keep = od;
  const int64_t no = prod(od);
  std::vector<double> acc(static_cast<size_t>(no), op == 2 || op == 3 ? -std::numeric_limits<double>::infinity() : 0.0);
  std::vector<double> arg(static_cast<size_t>(no), -1);
  const std::vector<int64_t> ost = strides_of(od);
  for (int64_t lin = 0; lin < prod(dims); ++lin) {
    const std::vector<int64_t> idx = unravel(lin, dims);
    int64_t o = 0, pos = 0;
    for (int i = 0; i < nd; ++i) {
      if (!red[static_cast<size_t>(i)]) o += idx[static_cast<size_t>(i)] * ost[static_cast<size_t>(i)];
      else pos = idx[static_cast<size_t>(i)];  // (argmax uses one axis)
    }
    const double v = x[static_cast<size_t>(lin)];
    if (op <= 1) acc[static_cast<size_t>(o)] += v;
    else if (v > acc[static_cast<size_t>(o)]) {
      acc[static_cast<size_t>(o)] = v;
      arg[static_cast<size_t>(o)] = static_cast<double>(pos);
    }
  }
  if (op == 1)
    for (double& a : acc) a /= static_cast<double>(count);
  return op == 3 ? arg : acc;
}
std::vector<int64_t> drop_ones(const std::vector<int64_t>& keep, const std::vector<int64_t>& dims, std::vector<int64_t> axes) {
  const int nd = static_cast<int>(dims.size());
  if (axes.empty())
    for (int i = 0; i < nd; ++i) axes.push_back(i);
  std::vector<int64_t> out;
  for (int i = 0; i < nd; ++i) {
    bool r = false;
    for (int64_t a : axes) r |= (a < 0 ? a + nd : a) == i;
    if (!r) out.push_back(keep[static_cast<size_t>(i)]);
  }
  return out;
}
}  // namespace

TEST_CASE("sum / mean / max over single and multiple axes, keepdim, negative axes", "[kernels][reduce]") {
  const std::vector<int64_t> dims = {2, 3, 4};
  const std::vector<std::vector<int64_t>> axes_cases = {{0}, {1}, {2}, {-1}, {-2}, {0, 2}, {-3, -1}, {1, 2}, {}, {0, 1, 2}};
  std::mt19937 rng(5);
  for (DType dt : kFloatTypes) {
    const Tensor x = make(uniform(24, rng, -3, 3), Shape(dims), dt);
    const std::vector<double> xv = vals(x);
    double sum_abs = 0;
    for (double v : xv) sum_abs += std::abs(v);
    for (const auto& axes : axes_cases) {
      for (bool keep : {false, true}) {
        for (auto [op, rop] : {std::pair{ReduceOp::sum, 0}, std::pair{ReduceOp::mean, 1}, std::pair{ReduceOp::max, 2}}) {
          std::vector<int64_t> keep_dims;
          const std::vector<double> ref = ref_reduce(xv, dims, axes, rop, &keep_dims);
          const Tensor y = kernels::reduce(op, x, axes, keep);
          std::string ax;
          for (int64_t a : axes) ax += std::to_string(a) + " ";
          INFO("op " << op_name(op) << " dtype " << dtype_name(dt) << " axes {" << ax << "} keepdim " << keep);
          REQUIRE(y.dtype() == dt);
          CHECK(y.shape() == Shape(keep ? keep_dims : drop_ones(keep_dims, dims, axes)));
          // accumulation over at most 24 terms in the accumulate type, then one rounding
          check_close(vals(y), ref, unit(dt) + acc_unit(dt), 24 * acc_unit(dt) * sum_abs + sub_abs(dt), op_name(op));
        }
      }
    }
    // argmax over each axis
    for (int64_t axis : {0, 1, 2, -1, -2, -3}) {
      for (bool keep : {false, true}) {
        std::vector<int64_t> keep_dims;
        const std::vector<double> ref = ref_reduce(xv, dims, {axis}, 3, &keep_dims);
        const Tensor y = kernels::argmax(x, axis, keep);
        INFO("argmax axis " << axis << " keepdim " << keep << " dtype " << dtype_name(dt));
        REQUIRE(y.dtype() == DType::i64);
        CHECK(y.shape() == Shape(keep ? keep_dims : drop_ones(keep_dims, dims, {axis})));
        CHECK(vals(y) == ref);
      }
    }
  }
}

TEST_CASE("argmax returns the first index among ties", "[kernels][reduce]") {
  const Tensor x = make({1, 5, 5, 2, 7, 7, 7, 0}, Shape{2, 4});
  CHECK(kernels::argmax(x, 1, false).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  const Tensor c = make({3, 3, 3, 3}, Shape{2, 2});
  CHECK(kernels::argmax(c, 0, false).to_vector<int64_t>() == std::vector<int64_t>{0, 0});
}

TEST_CASE("i64 comparisons (accuracy: argmax(logits) == labels)", "[kernels][compare]") {
  const Tensor logits = make({0.1, 2.0, -1.0, 3.0, 0.0, 0.5, 1.0, 1.5, 2.5}, Shape{3, 3});
  const Tensor labels = from_vector(std::vector<int64_t>{1, 0, 2}, Shape{3});
  const Tensor pred = kernels::argmax(logits, -1, false);
  const Tensor hit = kernels::binary(BinaryOp::eq, pred, labels);
  CHECK(hit.dtype() == DType::u8);
  CHECK(hit.to_vector<uint8_t>() == std::vector<uint8_t>{1, 1, 1});
  CHECK(kernels::binary(BinaryOp::ne, pred, from_vector(std::vector<int64_t>{1, 2, 2}, Shape{3})).to_vector<uint8_t>() ==
        std::vector<uint8_t>{0, 1, 0});
}

TEST_CASE("reductions of f16/bf16 accumulate in float", "[kernels][reduce]") {
  // In f16, 2048 + 1 == 2048: an f16 accumulator would stop at 2048.
  const Tensor ones16 = ones(Shape{3000}, DType::f16);
  CHECK(kernels::reduce(ReduceOp::sum, ones16, {}, false).item() == 3000.0);
  CHECK(kernels::reduce(ReduceOp::mean, ones16, {}, false).item() == 1.0);
  // bf16: 256 + 1 == 256
  const Tensor ones_bf = ones(Shape{2, 1000}, DType::bf16);
  const std::vector<double> s = vals(kernels::reduce(ReduceOp::sum, ones_bf, {1}, false));
  CHECK(s == std::vector<double>{1000.0, 1000.0});  // 1000 is a bf16 value (0x4479 * ...): 1000 = 125 * 8
  CHECK(vals(kernels::reduce(ReduceOp::mean, ones_bf, {-1}, true)) == std::vector<double>{1.0, 1.0});
  // the sum of 0.1 (f16) x 1000 computed in float and rounded once
  const Tensor tenth = full(Shape{1000}, 0.1, DType::f16);
  const double exact = 1000.0 * static_cast<double>(half_bits_to_float(float_to_half_bits(0.1f)));
  const double got = kernels::reduce(ReduceOp::sum, tenth, {}, false).item();
  CHECK(std::abs(got - exact) <= unit(DType::f16) * exact + 1000 * acc_unit(DType::f16) * exact);
  // sums past 65504 overflow the f16 output
  CHECK(std::isinf(kernels::reduce(ReduceOp::sum, full(Shape{100}, 1000.0, DType::f16), {}, false).item()));
  // a mean whose sum overflows f16 but whose value does not is fine (float accumulator)
  CHECK(kernels::reduce(ReduceOp::mean, full(Shape{100}, 1000.0, DType::f16), {}, false).item() == 1000.0);
}

TEST_CASE("reductions of larger tensors (the vectorised paths)", "[kernels][reduce]") {
  std::mt19937 rng(6);
  const std::vector<int64_t> dims = {7, 129, 33};
  const Tensor x = make(uniform(static_cast<size_t>(prod(dims)), rng, -1, 1), Shape(dims));
  const std::vector<double> xv = vals(x);
  for (const std::vector<int64_t>& axes : std::vector<std::vector<int64_t>>{{0}, {1}, {2}, {0, 2}, {}}) {
    std::vector<int64_t> kd;
    const std::vector<double> ref = ref_reduce(xv, dims, axes, 0, &kd);
    int64_t n = 1;
    for (size_t i = 0; i < kd.size(); ++i) if (kd[i] == 1) n *= dims[i];
    // recursive summation of n terms with |x| < 1: error <= (n - 1) * u * sum|x| <= n * u * n
    check_close(vals(kernels::reduce(ReduceOp::sum, x, axes, true)), ref, unit(DType::f32),
                static_cast<double>(n) * static_cast<double>(n) * acc_unit(DType::f32), "sum large");
    const std::vector<double> mref = ref_reduce(xv, dims, axes, 2, &kd);
    CHECK(vals(kernels::reduce(ReduceOp::max, x, axes, true)) == mref);  // max is exact
  }
}

// =============================================================================================
// matmul
// =============================================================================================

namespace {
/// C[b] = op(A[b]) @ op(B[b]); A stored (m,k) or (k,m) if ta; B stored (k,n) or (n,k) if tb.
/// batch_b == 1 shares B across the batch.
std::vector<double> ref_matmul(const std::vector<double>& A, const std::vector<double>& B, int64_t batch, bool share_b,
                               int64_t m, int64_t n, int64_t k, bool ta, bool tb, std::vector<double>* abs_bound) {
  std::vector<double> C(static_cast<size_t>(batch * m * n), 0.0);
  abs_bound->assign(C.size(), 0.0);
  for (int64_t bi = 0; bi < batch; ++bi) {
    const double* a = A.data() + bi * m * k;
    const double* b = B.data() + (share_b ? 0 : bi * k * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0, sa = 0;
        for (int64_t p = 0; p < k; ++p) {
          const double av = ta ? a[p * m + i] : a[i * k + p];
          const double bv = tb ? b[j * k + p] : b[p * n + j];
          s += av * bv;
          sa += std::abs(av * bv);
        }
        C[static_cast<size_t>((bi * m + i) * n + j)] = s;
        (*abs_bound)[static_cast<size_t>((bi * m + i) * n + j)] = sa;
      }
  }
  return C;
}

void check_matmul(const std::vector<int64_t>& a_dims, const std::vector<int64_t>& b_dims, bool ta, bool tb, DType dt,
                  const std::vector<int64_t>& out_dims, std::mt19937& rng) {
  const Tensor a = make(uniform(static_cast<size_t>(prod(a_dims)), rng, -1, 1), Shape(a_dims), dt);
  const Tensor b = make(uniform(static_cast<size_t>(prod(b_dims)), rng, -1, 1), Shape(b_dims), dt);
  const Tensor c = kernels::matmul(a, b, ta, tb);
  INFO("matmul " << Shape(a_dims).to_string() << (ta ? "^T" : "") << " x " << Shape(b_dims).to_string() << (tb ? "^T" : "")
                 << " dtype " << dtype_name(dt));
  REQUIRE(c.shape() == Shape(out_dims));
  REQUIRE(c.dtype() == dt);
  const int64_t m = out_dims[out_dims.size() - 2], n = out_dims.back();
  const int64_t k = ta ? a_dims[a_dims.size() - 2] : a_dims.back();
  const int64_t batch = prod(out_dims) / (m * n);
  const bool share_b = b_dims.size() == 2;
  std::vector<double> bound;
  const std::vector<double> ref = ref_matmul(vals(a), vals(b), batch, share_b, m, n, k, ta, tb, &bound);
  const std::vector<double> got = vals(c);
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double tol = unit(dt) * std::abs(ref[i]) + (k + 2) * acc_unit(dt) * bound[i] + sub_abs(dt);
    if (!(std::abs(got[i] - ref[i]) <= tol) && ++bad <= 3) FAIL_CHECK("element " << i << ": got " << got[i] << ", expected " << ref[i]);
  }
  CHECK(bad == 0);
}
}  // namespace

TEST_CASE("matmul 2-D with all four transpose combinations", "[kernels][matmul]") {
  std::mt19937 rng(7);
  const int64_t m = 3, k = 5, n = 4;
  for (DType dt : kFloatTypes) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const std::vector<int64_t> ad = ta ? std::vector<int64_t>{k, m} : std::vector<int64_t>{m, k};
        const std::vector<int64_t> bd = tb ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n};
        check_matmul(ad, bd, ta, tb, dt, {m, n}, rng);
      }
  }
  // sizes past Eigen's small-matrix paths
  check_matmul({33, 70}, {70, 45}, false, false, DType::f32, {33, 45}, rng);
  check_matmul({70, 33}, {45, 70}, true, true, DType::f16, {33, 45}, rng);
  check_matmul({65, 130}, {130, 17}, false, false, DType::bf16, {65, 17}, rng);
}

TEST_CASE("matmul: exact small example", "[kernels][matmul]") {
  const Tensor a = make({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  const Tensor b = make({7, 8, 9, 10, 11, 12}, Shape{3, 2});
  CHECK(vals(kernels::matmul(a, b)) == std::vector<double>{58, 64, 139, 154});
  // a^T (3,2) @ a (2,3) = (3,3)
  CHECK(vals(kernels::matmul(a, a, true, false)) == std::vector<double>{17, 22, 27, 22, 29, 36, 27, 36, 45});
  // a @ a^T = (2,2)
  CHECK(vals(kernels::matmul(a, a, false, true)) == std::vector<double>{14, 32, 32, 77});
}

TEST_CASE("matmul batched: shared 2-D rhs, batched rhs, leading dims flattened", "[kernels][matmul]") {
  std::mt19937 rng(8);
  for (DType dt : kFloatTypes) {
    check_matmul({2, 3, 5}, {5, 4}, false, false, dt, {2, 3, 4}, rng);       // shared rhs
    check_matmul({2, 3, 5}, {2, 5, 4}, false, false, dt, {2, 3, 4}, rng);    // batched rhs
    check_matmul({2, 2, 3, 5}, {5, 4}, false, false, dt, {2, 2, 3, 4}, rng); // (..., m, k) x (k, n)
    check_matmul({2, 5, 3}, {4, 5}, true, true, dt, {2, 3, 4}, rng);         // transposes with a shared rhs
    check_matmul({3, 5, 3}, {3, 5, 4}, true, false, dt, {3, 3, 4}, rng);
    check_matmul({3, 3, 5}, {3, 4, 5}, false, true, dt, {3, 3, 4}, rng);
    check_matmul({2, 2, 5, 3}, {2, 2, 4, 5}, true, true, dt, {2, 2, 3, 4}, rng);
  }
}

TEST_CASE("matmul of f16/bf16 accumulates in float and rounds once", "[kernels][matmul]") {
  // 4096 products of 1*1: an f16 accumulator would stall at 2048
  const Tensor a = ones(Shape{1, 4096}, DType::f16), b = ones(Shape{4096, 1}, DType::f16);
  CHECK(kernels::matmul(a, b).item() == 4096.0);
  const Tensor c = ones(Shape{2, 1000}, DType::bf16), d = ones(Shape{1000, 3}, DType::bf16);
  for (double v : vals(kernels::matmul(c, d))) CHECK(v == 1000.0);
  // a sum that overflows f16 gives inf; one that exceeds it only in the middle does not
  const Tensor big = full(Shape{1, 4}, 200.0, DType::f16);
  CHECK(std::isinf(kernels::matmul(big, full(Shape{4, 1}, 200.0, DType::f16)).item()));  // 160000
  const Tensor alt = make({200, 200, -200, -200}, Shape{1, 4}, DType::f16);
  CHECK(kernels::matmul(alt, full(Shape{4, 1}, 200.0, DType::f16)).item() == 0.0);
}

// =============================================================================================
// softmax and cross-entropy
// =============================================================================================

namespace {
std::vector<double> ref_softmax(const std::vector<double>& x, int64_t cols, bool log) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / static_cast<size_t>(cols); ++r) {
    const double* row = x.data() + r * static_cast<size_t>(cols);
    const double mx = *std::max_element(row, row + cols);
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += std::exp(row[c] - mx);
    for (int64_t c = 0; c < cols; ++c) {
      const double lp = row[c] - mx - std::log(s);
      y[r * static_cast<size_t>(cols) + static_cast<size_t>(c)] = log ? lp : std::exp(lp);
    }
  }
  return y;
}
}  // namespace

TEST_CASE("softmax and log-softmax over the last axis", "[kernels][softmax]") {
  std::mt19937 rng(9);
  for (DType dt : kFloatTypes) {
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{4, 7}, {2, 3, 5}, {1, 1}, {3, 300}}) {
      const int64_t cols = dims.back();
      const Tensor x = make(uniform(static_cast<size_t>(prod(dims)), rng, -4, 4), Shape(dims), dt);
      const std::vector<double> xv = vals(x);
      const Tensor y = kernels::softmax(x, false);
      const Tensor ly = kernels::softmax(x, true);
      INFO("dtype " << dtype_name(dt) << " shape " << Shape(dims).to_string());
      REQUIRE(y.shape() == x.shape());
      REQUIRE(y.dtype() == dt);
      REQUIRE(ly.dtype() == dt);
      // the row sum of exps carries up to (cols - 1) roundings of the accumulate type; the output one more
      const double acc_err = static_cast<double>(cols + 4) * acc_unit(dt);
      const double tol_rel = unit(dt) + acc_err;
      check_close(vals(y), ref_softmax(xv, cols, false), tol_rel, acc_err + sub_abs(dt), "softmax");
      // log-softmax: x - max - log(sum) with |x - max| <= 8
      check_close(vals(ly), ref_softmax(xv, cols, true), tol_rel, acc_err * 8, "log_softmax");
      // rows sum to 1: each element is within u*y_i (+ the accumulate-type error) of the exact softmax
      const std::vector<double> yv = vals(y);
      for (size_t r = 0; r < yv.size() / static_cast<size_t>(cols); ++r) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += yv[r * static_cast<size_t>(cols) + static_cast<size_t>(c)];
        CHECK(std::abs(s - 1.0) <= unit(dt) + acc_err + static_cast<double>(cols) * sub_abs(dt));
      }
      // log_softmax == log(softmax) (where softmax is not tiny)
      const std::vector<double> lv = vals(ly);
      for (size_t i = 0; i < yv.size(); ++i)
        if (yv[i] > 1e-3) CHECK(std::abs(lv[i] - std::log(yv[i])) <= 4 * unit(dt) + 2 * unit(dt) * std::abs(lv[i]) + 8 * acc_err);
    }
  }
}

TEST_CASE("softmax is stable for large logits", "[kernels][softmax]") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    const std::vector<double> xv = {1000, 1001, 1002, 999, -1000, -1000, -1002, -1001, 1000, -1000, 0, 1000};
    const Tensor x = make(xv, Shape{3, 4}, dt);
    const std::vector<double> xr = vals(x);  // bf16 rounds 1001 -> 1000, etc.
    const std::vector<double> y = vals(kernels::softmax(x, false));
    const std::vector<double> ly = vals(kernels::softmax(x, true));
    for (double v : y) CHECK(std::isfinite(v));
    for (double v : ly) CHECK(!std::isnan(v));
    check_close(y, ref_softmax(xr, 4, false), unit(dt) + 8 * acc_unit(dt), sub_abs(dt) + 8 * acc_unit(dt), "softmax large");
    // log-softmax of -2000 gaps is finite (-2000), not -inf
    const std::vector<double> lref = ref_softmax(xr, 4, true);
    check_close(ly, lref, unit(dt) + 8 * acc_unit(dt), 8 * acc_unit(dt) * 2000, "log_softmax large");
    CHECK(ly[9] == Approx(lref[9]).epsilon(unit(dt) * 2));
  }
}

TEST_CASE("softmax_backward against the analytic formula", "[kernels][softmax]") {
  std::mt19937 rng(10);
  for (DType dt : {DType::f32, DType::f64, DType::f16}) {
    const Tensor x = make(uniform(30, rng, -3, 3), Shape{5, 6}, dt);
    const Tensor gy = make(uniform(30, rng, -1, 1), Shape{5, 6}, dt);
    for (bool log : {false, true}) {
      const Tensor y = kernels::softmax(x, log);
      const Tensor gx = kernels::softmax_backward(y, gy, log);
      INFO("dtype " << dtype_name(dt) << " log " << log);
      REQUIRE(gx.shape() == x.shape());
      const std::vector<double> yv = vals(y), gv = vals(gy);
      std::vector<double> ref(30);
      for (int r = 0; r < 5; ++r) {
        double s = 0;
        for (int c = 0; c < 6; ++c) s += log ? gv[r * 6 + c] : gv[r * 6 + c] * yv[r * 6 + c];
        for (int c = 0; c < 6; ++c) {
          const size_t i = static_cast<size_t>(r * 6 + c);
          ref[i] = log ? gv[i] - std::exp(yv[i]) * s : yv[i] * (gv[i] - s);
        }
      }
      check_close(vals(gx), ref, unit(dt) + 8 * acc_unit(dt), 16 * acc_unit(dt) * 6 + 2 * sub_abs(dt), "softmax_backward");
    }
  }
}

namespace {
std::vector<double> ref_cross_entropy(const std::vector<double>& logits, const std::vector<int64_t>& labels, int64_t C,
                                      double s) {
  const std::vector<double> lp = ref_softmax(logits, C, true);
  std::vector<double> loss(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    double all = 0;
    for (int64_t c = 0; c < C; ++c) all += lp[i * static_cast<size_t>(C) + static_cast<size_t>(c)];
    loss[i] = -(1 - s) * lp[i * static_cast<size_t>(C) + static_cast<size_t>(labels[i])] - s / static_cast<double>(C) * all;
  }
  return loss;
}
}  // namespace

TEST_CASE("cross_entropy per sample, with and without label smoothing", "[kernels][cross_entropy]") {
  std::mt19937 rng(11);
  const int64_t N = 6, C = 5;
  const std::vector<int64_t> labels = {0, 4, 2, 2, 1, 3};
  const Tensor lab = from_vector(labels, Shape{N});
  for (DType dt : kFloatTypes) {
    for (double scale : {1.0, 300.0}) {
      const Tensor logits = make(uniform(static_cast<size_t>(N * C), rng, -4 * scale, 4 * scale), Shape{N, C}, dt);
      const std::vector<double> lv = vals(logits);
      for (double s : {0.0, 0.1, 0.5}) {
        INFO("dtype " << dtype_name(dt) << " scale " << scale << " smoothing " << s);
        const Tensor loss = kernels::cross_entropy(logits, lab, s);
        REQUIRE(loss.shape() == Shape{N});
        REQUIRE(loss.dtype() == dt);
        const std::vector<double> ref = ref_cross_entropy(lv, labels, C, s);
        // the loss is O(scale): errors in the accumulate type scale with the logits' magnitude
        check_close(vals(loss), ref, unit(dt) + 8 * acc_unit(dt), 16 * acc_unit(dt) * 4 * scale * C + sub_abs(dt), "cross_entropy");
        for (double v : vals(loss)) CHECK(std::isfinite(v));

        // backward: grad_losses[:, None] * (softmax - target)
        const std::vector<double> g = uniform(static_cast<size_t>(N), rng, -2, 2);
        const Tensor gl = make(g, Shape{N}, dt);
        const std::vector<double> gr = vals(gl);
        const Tensor gx = kernels::cross_entropy_backward(logits, lab, gl, s);
        REQUIRE(gx.shape() == Shape{N, C});
        REQUIRE(gx.dtype() == dt);
        const std::vector<double> sm = ref_softmax(lv, C, false);
        std::vector<double> gref(static_cast<size_t>(N * C));
        for (int64_t i = 0; i < N; ++i)
          for (int64_t c = 0; c < C; ++c) {
            const double target = (1 - s) * (c == labels[static_cast<size_t>(i)] ? 1.0 : 0.0) + s / static_cast<double>(C);
            gref[static_cast<size_t>(i * C + c)] = gr[static_cast<size_t>(i)] * (sm[static_cast<size_t>(i * C + c)] - target);
          }
        check_close(vals(gx), gref, unit(dt) + 8 * acc_unit(dt), 16 * acc_unit(dt) * 2 + 2 * sub_abs(dt), "cross_entropy_backward");
      }
    }
  }
}

TEST_CASE("cross_entropy: known values", "[kernels][cross_entropy]") {
  // uniform logits: loss = log(C) whatever the label and smoothing
  const Tensor z = zeros(Shape{2, 10});
  const Tensor lab = from_vector(std::vector<int64_t>{3, 9}, Shape{2});
  for (double v : vals(kernels::cross_entropy(z, lab, 0.0))) CHECK(v == Approx(std::log(10.0)).epsilon(1e-6));
  for (double v : vals(kernels::cross_entropy(z, lab, 0.2))) CHECK(v == Approx(std::log(10.0)).epsilon(1e-6));
  // a confident correct prediction with huge logits: ~0, no NaN; a confident wrong one: ~the logit gap
  const Tensor big = make({1000, 0, 0, 0, 1000, 0}, Shape{2, 3});
  const Tensor lab2 = from_vector(std::vector<int64_t>{0, 0}, Shape{2});
  const std::vector<double> l = vals(kernels::cross_entropy(big, lab2, 0.0));
  CHECK(l[0] == Approx(0.0).margin(1e-6));
  CHECK(l[1] == Approx(1000.0).epsilon(1e-6));
}

TEST_CASE("cross_entropy and its backward are accurate for logits far from zero", "[kernels][cross_entropy]") {
  // Softmax is shift-invariant: logits 1000 + b (b in [-2, 2], exact in float) have the same loss and
  // gradient as b. A correct fused kernel keeps x - max and log(sum) apart, so its error follows the
  // spread of the logits (~4), not their offset (1000); folding them into one lse = max + log(sum)
  // first rounds away ~u * 1000 and costs hundreds of ulps.
  std::mt19937 rng(13);
  const int64_t N = 8, C = 6;
  std::vector<double> base = uniform(static_cast<size_t>(N * C), rng, -2, 2);
  for (double& b : base) b = std::round(b * 256) / 256;
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(rng() % C);
  const Tensor lab = from_vector(labels, Shape{N});
  for (DType dt : {DType::f32, DType::f64}) {
    for (double offset : {1000.0, -1000.0}) {
      std::vector<double> shifted(base);
      for (double& v : shifted) v += offset;
      const Tensor logits = make(shifted, Shape{N, C}, dt);
      INFO("dtype " << dtype_name(dt) << " offset " << offset);
      const std::vector<double> ref = ref_cross_entropy(base, labels, C, 0.0);
      const double spread_err = 8 * acc_unit(dt) * (4 + std::log(static_cast<double>(C)));
      check_close(vals(kernels::cross_entropy(logits, lab, 0.0)), ref, unit(dt) + 8 * acc_unit(dt), spread_err, "cross_entropy offset");
      const Tensor gl = ones(Shape{N}, dt);
      const std::vector<double> sm = ref_softmax(base, C, false);
      std::vector<double> gref(sm);
      for (int64_t i = 0; i < N; ++i) gref[static_cast<size_t>(i * C + labels[static_cast<size_t>(i)])] -= 1.0;
      check_close(vals(kernels::cross_entropy_backward(logits, lab, gl, 0.0)), gref, unit(dt) + 8 * acc_unit(dt), spread_err,
                  "cross_entropy_backward offset");
      check_close(vals(kernels::softmax(logits, false)), sm, unit(dt) + 8 * acc_unit(dt), spread_err, "softmax offset");
      check_close(vals(kernels::softmax(logits, true)), ref_softmax(base, C, true), unit(dt) + 8 * acc_unit(dt), spread_err,
                  "log_softmax offset");
    }
  }
}

// =============================================================================================
// broadcast_to / sum_to / view / cast
// =============================================================================================

TEST_CASE("broadcast_to copies along broadcast dims", "[kernels][broadcast]") {
  const Tensor x = make({1, 2, 3}, Shape{3, 1});
  const Tensor y = kernels::broadcast_to(x, Shape{2, 3, 4});
  REQUIRE(y.shape() == Shape{2, 3, 4});
  const std::vector<double> yv = vals(y);
  for (int64_t i = 0; i < 24; ++i) CHECK(yv[static_cast<size_t>(i)] == static_cast<double>((i / 4) % 3 + 1));
  const Tensor s = kernels::broadcast_to(make({5}, Shape{}, DType::f16), Shape{2, 2});
  CHECK(s.dtype() == DType::f16);
  CHECK(vals(s) == std::vector<double>{5, 5, 5, 5});
  const Tensor r = kernels::broadcast_to(make({1, 2, 3, 4}, Shape{4}), Shape{3, 4});
  CHECK(vals(r) == std::vector<double>{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4});
  CHECK_THROWS_AS(kernels::broadcast_to(x, Shape{2, 4}), Error);
}

TEST_CASE("sum_to un-broadcasts by summing", "[kernels][broadcast]") {
  std::mt19937 rng(12);
  const std::vector<int64_t> dims = {2, 3, 4};
  for (DType dt : {DType::f32, DType::f64, DType::f16}) {
    const Tensor x = make(uniform(24, rng, -2, 2), Shape(dims), dt);
    const std::vector<double> xv = vals(x);
    for (const std::vector<int64_t>& target :
         std::vector<std::vector<int64_t>>{{3, 1}, {4}, {1, 3, 4}, {2, 1, 4}, {}, {1}, {2, 3, 4}, {3, 4}, {2, 3, 1}}) {
      INFO("target " << Shape(target).to_string() << " dtype " << dtype_name(dt));
      const Tensor y = kernels::sum_to(x, Shape(target));
      REQUIRE(y.shape() == Shape(target));
      std::vector<double> ref(static_cast<size_t>(prod(target)), 0.0);
      for (int64_t i = 0; i < 24; ++i) ref[static_cast<size_t>(broadcast_index(unravel(i, dims), target))] += xv[static_cast<size_t>(i)];
      check_close(vals(y), ref, unit(dt) + acc_unit(dt), 24 * 2 * acc_unit(dt) + sub_abs(dt), "sum_to");
    }
  }
}

TEST_CASE("view shares storage, cast to the same dtype returns the input", "[kernels][view]") {
  const Tensor x = arange(int64_t{6});
  const Tensor v = kernels::view(x, Shape{3, -1});
  CHECK(v.shape() == Shape{3, 2});
  CHECK(v.raw_data() == x.raw_data());
  CHECK(kernels::cast(x, DType::f32).raw_data() == x.raw_data());
  const Tensor i = kernels::cast(make({1.7, -2.2, 3.0}, Shape{3}), DType::i64);
  CHECK(i.dtype() == DType::i64);
  const std::vector<int64_t> iv = i.to_vector<int64_t>();
  CHECK(iv[2] == 3);
  CHECK(kernels::cast(from_vector(std::vector<int64_t>{7, -3}, Shape{2}), DType::f16).to_vector<float>() == std::vector<float>{7, -3});
}
