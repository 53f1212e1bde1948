// Float64 finite-difference gradcheck of every differentiable op in autograd/ops.h, on random shapes
// (including NumPy broadcasting, so the un-broadcasting in backward is exercised), plus the tape's
// behaviour: accumulation, zero_grad, clearing, no-grad mode, seeds, dtypes of gradients, and a check
// that gradcheck itself reports a wrong gradient.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/kernels.h"
#include "core/tensor.h"

using namespace mixtape;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

double uniform(std::mt19937& g, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g); }
int uniform_int(std::mt19937& g, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }

/// A shape of rank in [min_rank, max_rank] with dims in [1, max_dim].
Shape random_shape(std::mt19937& g, int min_rank, int max_rank, int max_dim = 5) {
  const int r = uniform_int(g, min_rank, max_rank);
  std::vector<int64_t> d;
  for (int i = 0; i < r; ++i) d.push_back(uniform_int(g, 1, max_dim));
  return Shape(d);
}

/// Values uniform in [lo, hi].
std::vector<double> uniform_values(std::mt19937& g, int64_t n, double lo, double hi) {
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = uniform(g, lo, hi);
  return v;
}

/// Values with magnitude in [min_mag, max_mag] and a random sign (away from 0: relu, abs, division).
std::vector<double> signed_values(std::mt19937& g, int64_t n, double min_mag, double max_mag) {
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = (uniform_int(g, 0, 1) ? 1.0 : -1.0) * uniform(g, min_mag, max_mag);
  return v;
}

/// Pairwise distinct values (>= 0.05 apart), shuffled: max reduction has no ties.
std::vector<double> distinct_values(std::mt19937& g, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = -1.0 + 0.05 * static_cast<double>(i) + uniform(g, 0.0, 0.01);
  std::shuffle(v.begin(), v.end(), g);
  return v;
}

/// An f64 leaf that requires grad.
Tensor leaf(const std::vector<double>& v, const Shape& s) {
  Tensor t = from_vector<double>(v, s, DType::f64);
  t.set_requires_grad(true);
  return t;
}

Tensor uniform_leaf(std::mt19937& g, const Shape& s, double lo, double hi) { return leaf(uniform_values(g, s.numel(), lo, hi), s); }

/// Runs gradcheck and reports the outcome under `what`.
void expect_gradcheck(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs,
                      const GradcheckOptions& options = {}) {
  clear_tape();
  std::ostringstream shapes;
  for (const auto& t : inputs) shapes << t.shape().to_string() << " ";
  INFO(what << " on inputs " << shapes.str());
  GradcheckResult r;
  try {
    r = gradcheck(f, inputs, options);
  } catch (const std::exception& e) {
    FAIL_CHECK("gradcheck threw: " << e.what());
    clear_tape();
    return;
  }
  INFO("gradcheck: " << r.message << " (max abs error " << r.max_abs_error << ")");
  CHECK(r.ok);
  INFO("gradcheck must not leave nodes on the tape");
  CHECK(tape_size() == 0);
}

struct ShapePair {
  Shape a, b;
};

/// Fixed broadcasting cases (both sides broadcasting, trailing alignment, 0-d and (1,) operands)
/// followed by random ones: each dim of a is kept or set to 1, b is a suffix of the same full shape with
/// dims kept or set to 1, and the operands are swapped at random.
std::vector<ShapePair> binary_shape_cases(std::mt19937& g, int n_random) {
  std::vector<ShapePair> cases = {
      {Shape{3, 1}, Shape{1, 4}}, {Shape{2, 3, 4}, Shape{4}}, {Shape{2, 3, 4}, Shape{1}}, {Shape{2, 3, 4}, Shape{}},
      {Shape{}, Shape{2, 3}},     {Shape{}, Shape{}},         {Shape{2, 1, 4}, Shape{3, 1}}, {Shape{1}, Shape{2, 2}},
      {Shape{4}, Shape{2, 3, 4}}, {Shape{2, 3}, Shape{2, 3}}, {Shape{2, 1, 3, 1}, Shape{1, 4, 1, 2}},
  };
  for (int i = 0; i < n_random; ++i) {
    const Shape full = random_shape(g, 0, 4);
    std::vector<int64_t> a, b;
    for (int d = 0; d < full.size(); ++d) a.push_back(uniform_int(g, 0, 9) < 3 ? 1 : full[d]);
    const int rb = uniform_int(g, 0, full.size());
    for (int d = full.size() - rb; d < full.size(); ++d) b.push_back(uniform_int(g, 0, 9) < 3 ? 1 : full[d]);
    if (uniform_int(g, 0, 1)) std::swap(a, b);
    cases.push_back({Shape(a), Shape(b)});
  }
  return cases;
}

/// x * x, computed by a raw kernel and recorded by hand with a backward scaled by `factor`
/// (factor 1: correct; otherwise wrong). With `break_last`, only the last element's gradient is wrong.
Tensor square_custom(const Tensor& x, double factor, bool break_last = false) {
  Tensor out = kernels::binary(BinaryOp::mul, x, x);
  if (!autograd::should_record({&x})) return out;
  Tensor saved = x.clone();
  return autograd::record(OpKind::mul, {&x}, out,
                          [saved, factor, break_last](const Tensor& g, const std::vector<bool>& needs) {
                            std::vector<Tensor> grads(1);
                            if (!needs[0]) return grads;
                            Tensor two_x = kernels::binary(BinaryOp::mul, saved, scalar_tensor(2.0, saved.dtype()));
                            Tensor gx = kernels::binary(BinaryOp::mul, g, two_x);
                            if (!break_last) {
                              grads[0] = kernels::binary(BinaryOp::mul, gx, scalar_tensor(factor, gx.dtype()));
                            } else {
                              Tensor c = gx.clone();
                              double* p = c.data<double>();
                              p[c.numel() - 1] *= factor;
                              grads[0] = c;
                            }
                            return grads;
                          });
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// gradcheck can fail
// ------------------------------------------------------------------------------------------------

TEST_CASE("gradcheck accepts a correct hand-recorded op and rejects wrong gradients", "[gradcheck]") {
  std::mt19937 g(1);
  const Shape s{3, 4};
  {
    Tensor x = uniform_leaf(g, s, -2, 2);
    expect_gradcheck("correct custom square", [](const std::vector<Tensor>& in) { return square_custom(in[0], 1.0); },
                     {x});
  }
  for (double factor : {2.0, 1.01, 0.0, -1.0}) {
    clear_tape();
    Tensor x = uniform_leaf(g, s, 0.5, 2);  // away from 0 so 2x differs from the true gradient everywhere
    GradcheckResult r = gradcheck([factor](const std::vector<Tensor>& in) { return square_custom(in[0], factor); }, {x});
    INFO("backward scaled by " << factor << ": " << r.message);
    CHECK_FALSE(r.ok);
    CHECK(r.max_abs_error > 0.0);
    CHECK_FALSE(r.message.empty());
  }
  {
    clear_tape();
    Tensor x = uniform_leaf(g, s, 0.5, 2);
    GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return square_custom(in[0], 3.0, true); }, {x});
    INFO("only the last element's gradient is wrong: " << r.message);
    CHECK_FALSE(r.ok);
  }
  clear_tape();
}

// ------------------------------------------------------------------------------------------------
// elementwise binary ops, with broadcasting
// ------------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: add sub mul div with broadcasting", "[gradcheck]") {
  std::mt19937 g(2);
  for (const auto& [sa, sb] : binary_shape_cases(g, 16)) {
    Tensor a = uniform_leaf(g, sa, -2, 2);
    Tensor b = uniform_leaf(g, sb, -2, 2);
    Tensor bd = leaf(signed_values(g, sb.numel(), 0.5, 2.0), sb);  // a denominator away from 0
    expect_gradcheck("add", [](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b});
    expect_gradcheck("sub", [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b});
    expect_gradcheck("mul", [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
    expect_gradcheck("div", [](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, bd});
    expect_gradcheck("operator+", [](const std::vector<Tensor>& in) { return in[0] + in[1]; }, {a, b});
    expect_gradcheck("operator-", [](const std::vector<Tensor>& in) { return in[0] - in[1]; }, {a, b});
    expect_gradcheck("operator*", [](const std::vector<Tensor>& in) { return in[0] * in[1]; }, {a, b});
    expect_gradcheck("operator/", [](const std::vector<Tensor>& in) { return in[0] / in[1]; }, {a, bd});
  }
}

TEST_CASE("gradcheck: only the inputs that require grad get one", "[gradcheck]") {
  std::mt19937 g(3);
  Tensor a = uniform_leaf(g, Shape{2, 3}, -2, 2);
  Tensor b = from_vector<double>(signed_values(g, 3, 0.5, 2.0), Shape{3}, DType::f64);  // no grad
  expect_gradcheck("mul, b constant", [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
  expect_gradcheck("div, b constant", [](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, b});
  expect_gradcheck("div, a constant", [](const std::vector<Tensor>& in) { return div(in[1], in[0]); },
                   {leaf(signed_values(g, 6, 0.5, 2.0), Shape{2, 3}), b.detach()});
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("gradcheck: pow(tensor, tensor) with broadcasting", "[gradcheck]") {
  std::mt19937 g(4);
  for (const auto& [sa, sb] : binary_shape_cases(g, 6)) {
    Tensor a = uniform_leaf(g, sa, 0.5, 2.0);  // positive base: d/db = a^b log a
    Tensor b = uniform_leaf(g, sb, -2.0, 2.0);
    expect_gradcheck("pow(a, b)", [](const std::vector<Tensor>& in) { return pow(in[0], in[1]); }, {a, b});
  }
}

TEST_CASE("gradcheck: pow(tensor, double)", "[gradcheck]") {
  std::mt19937 g(5);
  for (int trial = 0; trial < 4; ++trial) {
    const Shape s = random_shape(g, 0, 4);
    Tensor pos = uniform_leaf(g, s, 0.5, 2.0);
    for (double e : {2.0, 3.0, 0.5, -1.0, -1.5, 1.0, 0.0}) {
      expect_gradcheck("pow(x, " + std::to_string(e) + ")", [e](const std::vector<Tensor>& in) { return pow(in[0], e); },
                       {pos});
    }
    // Integer exponents are defined (and differentiable) for negative bases too, as in PyTorch.
    Tensor any = leaf(signed_values(g, s.numel(), 0.1, 2.0), s);
    for (double e : {2.0, 3.0}) {
      expect_gradcheck("pow(x, " + std::to_string(e) + ") with negative x",
                       [e](const std::vector<Tensor>& in) { return pow(in[0], e); }, {any});
    }
  }
}

TEST_CASE("gradcheck: maximum and minimum with broadcasting (no ties)", "[gradcheck]") {
  std::mt19937 g(6);
  for (const auto& [sa, sb] : binary_shape_cases(g, 6)) {
    // a on the grid 0.1 i + 0.03, b on 0.1 j + 0.08: every pair differs by >= 0.05.
    std::vector<double> va(static_cast<size_t>(sa.numel())), vb(static_cast<size_t>(sb.numel()));
    for (auto& v : va) v = 0.1 * uniform_int(g, -20, 20) + 0.03;
    for (auto& v : vb) v = 0.1 * uniform_int(g, -20, 20) + 0.08;
    Tensor a = leaf(va, sa), b = leaf(vb, sb);
    expect_gradcheck("maximum", [](const std::vector<Tensor>& in) { return maximum(in[0], in[1]); }, {a, b});
    expect_gradcheck("minimum", [](const std::vector<Tensor>& in) { return minimum(in[0], in[1]); }, {a, b});
  }
}

TEST_CASE("maximum/minimum split the gradient evenly on ties", "[gradcheck]") {
  clear_tape();
  Tensor a = leaf({1.0, 2.0, 3.0}, Shape{3});
  Tensor b = leaf({1.0, 5.0, 0.0}, Shape{3});
  backward(sum(maximum(a, b)));
  CHECK(values(a.grad()) == std::vector<double>{0.5, 0.0, 1.0});
  CHECK(values(b.grad()) == std::vector<double>{0.5, 1.0, 0.0});
  zero_grad(std::vector<Tensor>{a, b});
  backward(sum(minimum(a, b)));
  CHECK(values(a.grad()) == std::vector<double>{0.5, 1.0, 0.0});
  CHECK(values(b.grad()) == std::vector<double>{0.5, 0.0, 1.0});
}

TEST_CASE("gradcheck: where with broadcasting", "[gradcheck]") {
  std::mt19937 g(7);
  struct Case {
    Shape c, a, b;
  };
  std::vector<Case> cases = {
      {Shape{3, 1}, Shape{1, 4}, Shape{}},   {Shape{2, 3, 4}, Shape{4}, Shape{3, 1}}, {Shape{}, Shape{2, 3}, Shape{2, 3}},
      {Shape{2, 3}, Shape{2, 3}, Shape{2, 3}}, {Shape{4}, Shape{3, 1}, Shape{1}},     {Shape{2, 1, 4}, Shape{3, 1}, Shape{2, 3, 4}},
  };
  for (int i = 0; i < 4; ++i) {
    for (const auto& [sa, sb] : binary_shape_cases(g, 1)) cases.push_back({random_shape(g, 0, 2), sa, sb});
  }
  for (const auto& cs : cases) {
    Shape sc = cs.c;
    // Skip random combinations that do not broadcast.
    try {
      broadcast_shapes(broadcast_shapes(sc, cs.a, "test"), cs.b, "test");
    } catch (const Error&) {
      continue;
    }
    // cond comes from a comparison of constants (u8), so it does not move under finite differences.
    Tensor lhs = from_vector<double>(uniform_values(g, sc.numel(), -1, 1), sc, DType::f64);
    Tensor cond = gt(lhs, scalar_tensor(0.0, DType::f64));
    REQUIRE(cond.dtype() == DType::u8);
    Tensor a = uniform_leaf(g, cs.a, -2, 2), b = uniform_leaf(g, cs.b, -2, 2);
    expect_gradcheck("where", [cond](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); }, {a, b});
    Tensor b_const = from_vector<double>(uniform_values(g, cs.b.numel(), -2, 2), cs.b, DType::f64);
    expect_gradcheck("where, b constant", [cond](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                     {a, b_const});
  }
}

// ------------------------------------------------------------------------------------------------
// elementwise unary ops
// ------------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: unary elementwise ops on random shapes", "[gradcheck]") {
  std::mt19937 g(8);
  struct Unary {
    const char* name;
    Tensor (*op)(const Tensor&);
    double lo, hi;        // domain of the values
    bool away_from_zero;  // non-differentiable at 0: |x| >= 0.05
  };
  const Unary ops[] = {
      {"neg", [](const Tensor& x) { return neg(x); }, -2, 2, false},
      {"operator- (unary)", [](const Tensor& x) { return -x; }, -2, 2, false},
      {"exp", [](const Tensor& x) { return exp(x); }, -2, 2, false},
      {"log", [](const Tensor& x) { return log(x); }, 0.3, 3, false},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.3, 3, false},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, 0.3, 3, false},
      {"tanh", [](const Tensor& x) { return tanh(x); }, -3, 3, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -4, 4, false},
      {"relu", [](const Tensor& x) { return relu(x); }, 0.05, 2, true},
      {"gelu", [](const Tensor& x) { return gelu(x); }, -4, 4, false},
      {"abs", [](const Tensor& x) { return abs(x); }, 0.05, 2, true},
  };
  for (int trial = 0; trial < 12; ++trial) {
    const Shape s = random_shape(g, 0, 4);
    for (const auto& u : ops) {
      Tensor x = u.away_from_zero ? leaf(signed_values(g, s.numel(), u.lo, u.hi), s) : uniform_leaf(g, s, u.lo, u.hi);
      auto op = u.op;
      expect_gradcheck(u.name, [op](const std::vector<Tensor>& in) { return op(in[0]); }, {x});
    }
  }
}

TEST_CASE("gradcheck: gelu and sigmoid in their tails", "[gradcheck]") {
  Tensor x = leaf({-8.0, -5.0, -3.0, 3.0, 5.0, 8.0}, Shape{6});
  expect_gradcheck("gelu tails", [](const std::vector<Tensor>& in) { return gelu(in[0]); }, {x});
  expect_gradcheck("sigmoid tails", [](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x});
  expect_gradcheck("tanh tails", [](const std::vector<Tensor>& in) { return tanh(in[0]); }, {x});
}

TEST_CASE("gradcheck: operators with scalars", "[gradcheck]") {
  std::mt19937 g(9);
  for (int trial = 0; trial < 4; ++trial) {
    const Shape s = random_shape(g, 0, 4);
    Tensor x = leaf(signed_values(g, s.numel(), 0.5, 2.0), s);
    const std::pair<const char*, Tensor (*)(const Tensor&)> ops[] = {
        {"x * 2.0", [](const Tensor& t) { return t * 2.0; }},   {"2.0 * x", [](const Tensor& t) { return 2.0 * t; }},
        {"x + 1.0", [](const Tensor& t) { return t + 1.0; }},   {"1.0 + x", [](const Tensor& t) { return 1.0 + t; }},
        {"x - 1.0", [](const Tensor& t) { return t - 1.0; }},   {"1.0 - x", [](const Tensor& t) { return 1.0 - t; }},
        {"x / 3.0", [](const Tensor& t) { return t / 3.0; }},   {"2.0 / x", [](const Tensor& t) { return 2.0 / t; }},
    };
    for (const auto& [name, op] : ops) {
      auto f = op;
      expect_gradcheck(name, [f](const std::vector<Tensor>& in) { return f(in[0]); }, {x});
    }
  }
}

// ------------------------------------------------------------------------------------------------
// reductions
// ------------------------------------------------------------------------------------------------

namespace {
/// Axis lists to try on a shape of rank r: all, each axis (positive and negative), and pairs.
std::vector<std::vector<int64_t>> axis_cases(int r) {
  std::vector<std::vector<int64_t>> out = {{}};
  for (int a = 0; a < r; ++a) {
    out.push_back({a});
    out.push_back({a - r});
  }
  for (int a = 0; a < r; ++a)
    for (int b = a + 1; b < r; ++b) out.push_back({a, b});
  if (r >= 3) out.push_back({0, -1});
  return out;
}

std::string axes_str(const std::vector<int64_t>& axes, bool keepdim) {
  std::string s = "axes {";
  for (auto a : axes) s += std::to_string(a) + ",";
  return s + "} keepdim " + (keepdim ? "true" : "false");
}
}  // namespace

TEST_CASE("gradcheck: sum, mean, max over axes with keepdim", "[gradcheck]") {
  std::mt19937 g(10);
  for (int trial = 0; trial < 10; ++trial) {
    const Shape s = random_shape(g, trial == 0 ? 0 : 1, 4, 4);
    Tensor x = uniform_leaf(g, s, -2, 2);
    Tensor xd = leaf(distinct_values(g, s.numel()), s);
    for (const auto& axes : axis_cases(s.size())) {
      for (bool keepdim : {false, true}) {
        const std::string where_ = axes_str(axes, keepdim);
        expect_gradcheck("sum " + where_, [axes, keepdim](const std::vector<Tensor>& in) { return sum(in[0], axes, keepdim); },
                         {x});
        expect_gradcheck("mean " + where_,
                         [axes, keepdim](const std::vector<Tensor>& in) { return mean(in[0], axes, keepdim); }, {x});
        expect_gradcheck("max " + where_, [axes, keepdim](const std::vector<Tensor>& in) { return max(in[0], axes, keepdim); },
                         {xd});
      }
    }
  }
}

TEST_CASE("max reduction splits the gradient evenly on ties", "[gradcheck]") {
  clear_tape();
  Tensor x = leaf({1.0, 3.0, 3.0, 2.0, 0.0, -1.0}, Shape{2, 3});
  backward(sum(max(x, {1})));
  CHECK(values(x.grad()) == std::vector<double>{0.0, 0.5, 0.5, 1.0, 0.0, 0.0});
}

// ------------------------------------------------------------------------------------------------
// matmul
// ------------------------------------------------------------------------------------------------

namespace {
/// (..., r, c) with r, c swapped when `trans`.
Shape mat_shape(std::vector<int64_t> batch, int64_t rows, int64_t cols, bool trans) {
  batch.push_back(trans ? cols : rows);
  batch.push_back(trans ? rows : cols);
  return Shape(batch);
}
}  // namespace

TEST_CASE("gradcheck: matmul 2-D, batched, shared rhs, all transpose flags", "[gradcheck]") {
  std::mt19937 g(11);
  const std::vector<std::vector<int64_t>> batches = {{}, {1}, {3}, {2, 2}};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (int trial = 0; trial < 2; ++trial) {
        const int64_t m = uniform_int(g, 1, 5), k = uniform_int(g, 1, 5), n = uniform_int(g, 1, 5);
        auto f = [ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); };
        const std::string flags = std::string(" trans_a=") + (ta ? "1" : "0") + " trans_b=" + (tb ? "1" : "0");
        for (const auto& batch : batches) {
          Tensor a = uniform_leaf(g, mat_shape(batch, m, k, ta), -2, 2);
          // Same batch dims on both sides.
          Tensor b = uniform_leaf(g, mat_shape(batch, k, n, tb), -2, 2);
          expect_gradcheck("matmul" + flags, f, {a, b});
          // A 2-D rhs shared by every batch entry: its gradient sums over the batch.
          if (!batch.empty()) {
            Tensor b2 = uniform_leaf(g, mat_shape({}, k, n, tb), -2, 2);
            expect_gradcheck("matmul, shared 2-D rhs" + flags, f, {a, b2});
          }
        }
        // Only one side requiring grad.
        Tensor a = uniform_leaf(g, mat_shape({2}, m, k, ta), -2, 2);
        Tensor b = from_vector<double>(uniform_values(g, k * n, -2, 2), mat_shape({}, k, n, tb), DType::f64);
        expect_gradcheck("matmul, rhs constant" + flags, f, {a, b});
        expect_gradcheck("matmul, lhs constant" + flags, f, {a.detach(), leaf(uniform_values(g, k * n, -2, 2), b.shape())});
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// softmax family and cross-entropy
// ------------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: softmax and log_softmax over the last axis", "[gradcheck]") {
  std::mt19937 g(12);
  for (int trial = 0; trial < 16; ++trial) {
    const Shape s = random_shape(g, 1, 4, trial == 0 ? 1 : 5);
    Tensor x = uniform_leaf(g, s, -3, 3);
    expect_gradcheck("softmax", [](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x});
    expect_gradcheck("log_softmax", [](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x});
  }
  // Large logits: the stable formulation must still give the right gradient.
  Tensor big = leaf({100.0, 101.0, 99.5, -100.0, -101.0, -99.0}, Shape{2, 3});
  expect_gradcheck("softmax, large logits", [](const std::vector<Tensor>& in) { return softmax(in[0]); }, {big});
  expect_gradcheck("log_softmax, large logits", [](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {big});
}

TEST_CASE("gradcheck: cross_entropy, all reductions, label smoothing 0 and 0.1", "[gradcheck]") {
  std::mt19937 g(13);
  for (int trial = 0; trial < 5; ++trial) {
    const int64_t n = uniform_int(g, 1, 5), c = uniform_int(g, 2, 5);
    std::vector<int64_t> lab(static_cast<size_t>(n));
    for (auto& l : lab) l = uniform_int(g, 0, static_cast<int>(c) - 1);
    Tensor labels = from_vector<int64_t>(lab, Shape{n}, DType::i64);
    Tensor logits = uniform_leaf(g, Shape{n, c}, -3, 3);
    for (Reduction red : {Reduction::none, Reduction::mean, Reduction::sum}) {
      for (double smoothing : {0.0, 0.1}) {
        const std::string name = std::string("cross_entropy reduction=") +
                                 (red == Reduction::none ? "none" : red == Reduction::mean ? "mean" : "sum") +
                                 " smoothing=" + std::to_string(smoothing);
        expect_gradcheck(
            name, [labels, red, smoothing](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels, red, smoothing); },
            {logits});
      }
    }
  }
}

TEST_CASE("cross_entropy forward matches log_softmax in float64", "[gradcheck]") {
  // A value check next to the gradient check: the loss must be the right function, not only consistent.
  clear_tape();
  Tensor logits = from_vector<double>({1.0, 2.0, 0.5, -1.0, 0.0, 3.0}, Shape{2, 3}, DType::f64);
  Tensor labels = from_vector<int64_t>({1, 0}, Shape{2}, DType::i64);
  auto lse = [](double a, double b, double c) { return std::log(std::exp(a) + std::exp(b) + std::exp(c)); };
  const double l0 = lse(1, 2, 0.5) - 2.0, l1 = lse(-1, 0, 3) + 1.0;
  const double s0 = lse(1, 2, 0.5) - (1 + 2 + 0.5) / 3, s1 = lse(-1, 0, 3) - (-1 + 0 + 3) / 3.0;
  auto none = values(cross_entropy(logits, labels, Reduction::none));
  REQUIRE(none.size() == 2);
  CHECK(none[0] == Approx(l0).epsilon(1e-12));
  CHECK(none[1] == Approx(l1).epsilon(1e-12));
  CHECK(cross_entropy(logits, labels, Reduction::mean).item() == Approx((l0 + l1) / 2).epsilon(1e-12));
  CHECK(cross_entropy(logits, labels, Reduction::sum).item() == Approx(l0 + l1).epsilon(1e-12));
  auto smooth = values(cross_entropy(logits, labels, Reduction::none, 0.1));
  CHECK(smooth[0] == Approx(0.9 * l0 + 0.1 * s0).epsilon(1e-12));
  CHECK(smooth[1] == Approx(0.9 * l1 + 0.1 * s1).epsilon(1e-12));
}

// ------------------------------------------------------------------------------------------------
// cast and reshape
// ------------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: cast f64 -> f64 and reshape", "[gradcheck]") {
  std::mt19937 g(14);
  for (int trial = 0; trial < 5; ++trial) {
    const Shape s = random_shape(g, 0, 4);
    Tensor x = uniform_leaf(g, s, -2, 2);
    expect_gradcheck("cast f64->f64", [](const std::vector<Tensor>& in) { return cast(in[0], DType::f64); }, {x});
    expect_gradcheck("Tensor::to(f64)", [](const std::vector<Tensor>& in) { return in[0].to(DType::f64); }, {x});
    std::vector<int64_t> rev = s.vec();
    std::reverse(rev.begin(), rev.end());
    expect_gradcheck("reshape to reversed dims", [rev](const std::vector<Tensor>& in) { return reshape(in[0], Shape(rev)); },
                     {x});
    expect_gradcheck("reshape to (-1)", [](const std::vector<Tensor>& in) { return reshape(in[0], Shape{-1}); }, {x});
    const int64_t n = s.numel();
    expect_gradcheck("Tensor::reshape to (1, n, 1)", [n](const std::vector<Tensor>& in) { return in[0].reshape(Shape{1, n, 1}); },
                     {x});
    // A reshape in the middle of a graph: the gradient flows back through the view.
    expect_gradcheck("exp(reshape(x)) * reshape(x)",
                     [](const std::vector<Tensor>& in) {
                       Tensor r = reshape(in[0], Shape{-1});
                       return exp(r) * r;
                     },
                     {x});
  }
}

TEST_CASE("cast backward: the gradient is cast back to the input's dtype", "[gradcheck]") {
  std::mt19937 g(15);
  clear_tape();
  SECTION("f64 leaf through an f32 cast, seeded backward") {
    Tensor x = uniform_leaf(g, Shape{2, 3}, -2, 2);
    Tensor y = cast(x, DType::f32);
    REQUIRE(y.dtype() == DType::f32);
    CHECK(y.requires_grad());
    std::vector<float> sv(6);
    for (auto& v : sv) v = static_cast<float>(uniform(g, -3, 3));
    Tensor seed = from_vector<float>(sv, Shape{2, 3}, DType::f32);
    backward(y, seed);
    REQUIRE(x.grad().defined());
    CHECK(x.grad().dtype() == DType::f64);
    CHECK(x.grad().shape() == x.shape());
    const auto gv = values(x.grad());
    for (size_t i = 0; i < sv.size(); ++i) CHECK(gv[i] == static_cast<double>(sv[i]));
  }
  SECTION("f32 leaf -> f64 -> exp -> f32: f32 gradient equal to exp(x)") {
    std::vector<float> xv(5);
    for (auto& v : xv) v = static_cast<float>(uniform(g, -2, 2));
    Tensor x = from_vector<float>(xv, Shape{5}, DType::f32);
    x.set_requires_grad(true);
    Tensor y = sum(cast(exp(cast(x, DType::f64)), DType::f32));
    backward(y);
    REQUIRE(x.grad().defined());
    CHECK(x.grad().dtype() == DType::f32);
    const auto gv = values(x.grad());
    for (size_t i = 0; i < xv.size(); ++i) CHECK(gv[i] == Approx(std::exp(static_cast<double>(xv[i]))).epsilon(1e-6));
  }
  SECTION("f16 and bf16 leaves get f16 and bf16 gradients") {
    for (DType dt : {DType::f16, DType::bf16}) {
      Tensor x = from_vector<float>({0.5f, -1.0f, 2.0f}, Shape{3}, dt);
      x.set_requires_grad(true);
      backward(sum(x.to(DType::f32) * 3.0));
      REQUIRE(x.grad().defined());
      CHECK(x.grad().dtype() == dt);
      CHECK(values(x.grad()) == std::vector<double>{3.0, 3.0, 3.0});
    }
  }
  CHECK(tape_size() == 0);
}

// ------------------------------------------------------------------------------------------------
// composites: several ops, broadcasting with keepdim, shared inputs
// ------------------------------------------------------------------------------------------------

TEST_CASE("gradcheck: composite graphs", "[gradcheck]") {
  std::mt19937 g(16);
  Tensor x = uniform_leaf(g, Shape{4, 3}, -1, 1);
  Tensor w = uniform_leaf(g, Shape{3, 5}, -1, 1);
  Tensor b = uniform_leaf(g, Shape{5}, -1, 1);
  Tensor labels = from_vector<int64_t>({0, 4, 2, 1}, Shape{4}, DType::i64);
  expect_gradcheck("mlp: cross_entropy(gelu(x @ w + b))",
                   [labels](const std::vector<Tensor>& in) {
                     return cross_entropy(gelu(matmul(in[0], in[1]) + in[2]), labels, Reduction::mean, 0.1);
                   },
                   {x, w, b});
  expect_gradcheck("layer norm: (x - mean) * rsqrt(var + eps)",
                   [](const std::vector<Tensor>& in) {
                     Tensor m = mean(in[0], {-1}, true);
                     Tensor d = in[0] - m;
                     Tensor var = mean(d * d, {-1}, true);
                     return d * rsqrt(var + 1e-5);
                   },
                   {x});
  expect_gradcheck("x used three times: x * exp(x) / (1 + x * x)",
                   [](const std::vector<Tensor>& in) { return in[0] * exp(in[0]) / (1.0 + in[0] * in[0]); }, {x});
}

// ------------------------------------------------------------------------------------------------
// the tape
// ------------------------------------------------------------------------------------------------

TEST_CASE("tape: gradients accumulate across backward calls, zero_grad clears", "[gradcheck]") {
  clear_tape();
  Tensor x = leaf({1.0, -2.0, 0.5}, Shape{3});
  backward(sum(x * 3.0));
  CHECK(values(x.grad()) == std::vector<double>{3.0, 3.0, 3.0});
  backward(sum(x * 3.0));
  CHECK(values(x.grad()) == std::vector<double>{6.0, 6.0, 6.0});
  backward(sum(x * x));
  CHECK(values(x.grad()) == std::vector<double>{8.0, 2.0, 7.0});
  zero_grad(std::vector<Tensor>{x});
  const Tensor cleared = x.grad();
  if (cleared.defined()) CHECK(values(cleared) == std::vector<double>{0.0, 0.0, 0.0});
  backward(sum(x * 3.0));
  CHECK(values(x.grad()) == std::vector<double>{3.0, 3.0, 3.0});
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(x.grad().shape() == x.shape());
}

TEST_CASE("tape: the tape is cleared after backward", "[gradcheck]") {
  clear_tape();
  Tensor x = leaf({1.0, 2.0}, Shape{2});
  CHECK(tape_size() == 0);
  Tensor y = exp(x);
  CHECK(tape_size() == 1);
  Tensor z = sum(y * 2.0);
  CHECK(tape_size() == 3);
  backward(z);
  CHECK(tape_size() == 0);
  // Nothing is recorded when no input requires grad.
  Tensor c = from_vector<double>({1.0, 2.0}, Shape{2}, DType::f64);
  Tensor d = exp(c) * 2.0;
  CHECK_FALSE(d.requires_grad());
  CHECK(tape_size() == 0);
  // clear_tape drops recorded nodes.
  Tensor e = exp(x);
  CHECK(tape_size() == 1);
  clear_tape();
  CHECK(tape_size() == 0);
}

TEST_CASE("tape: NoGradGuard records nothing and restores the mode", "[gradcheck]") {
  clear_tape();
  Tensor x = leaf({1.0, 2.0, 3.0}, Shape{3});
  Tensor before = exp(x);  // one node
  const size_t n = tape_size();
  REQUIRE(n == 1);
  REQUIRE(grad_enabled());
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    Tensor y = sum(exp(x) * x + 1.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(tape_size() == n);
    {
      NoGradGuard inner;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());
    // Values are still computed.
    CHECK(y.item() == Approx(std::exp(1.0) + 2 * std::exp(2.0) + 3 * std::exp(3.0) + 3.0));
  }
  CHECK(grad_enabled());
  set_grad_enabled(false);
  Tensor z = x * 2.0;
  CHECK_FALSE(z.requires_grad());
  CHECK(tape_size() == n);
  set_grad_enabled(true);
  Tensor w = x * 2.0;
  CHECK(w.requires_grad());
  CHECK(tape_size() == n + 1);
  clear_tape();
}

TEST_CASE("tape: backward with a seed for a non-scalar output", "[gradcheck]") {
  clear_tape();
  std::mt19937 g(17);
  Tensor x = uniform_leaf(g, Shape{2, 3}, -2, 2);
  Tensor y = x * x;  // (2, 3)
  const auto sv = uniform_values(g, 6, -1, 1);
  backward(y, from_vector<double>(sv, Shape{2, 3}, DType::f64));
  const auto xv = values(x), gv = values(x.grad());
  for (size_t i = 0; i < 6; ++i) CHECK(gv[i] == Approx(2 * xv[i] * sv[i]).epsilon(1e-14));
  CHECK(tape_size() == 0);

  // Without a seed, a non-scalar output is an error that says so.
  Tensor y2 = x * 2.0;
  CHECK_THROWS_AS(backward(y2), Error);
  clear_tape();
}

TEST_CASE("tape: a leaf used twice, a diamond, non-leaf grads and constant inputs", "[gradcheck]") {
  clear_tape();
  SECTION("x * x gives 2x") {
    Tensor x = leaf({1.5, -2.0, 0.25}, Shape{3});
    backward(sum(x * x));
    CHECK(values(x.grad()) == std::vector<double>{3.0, -4.0, 0.5});
  }
  SECTION("diamond: a = exp(x), b = 2a, c = a*a, y = sum(b * c) = sum(2 a^3), dy/dx = 6 a^3") {
    Tensor x = leaf({0.1, -0.3, 0.7}, Shape{3});
    Tensor a = exp(x);
    Tensor b = a * 2.0;
    Tensor c = a * a;
    backward(sum(b * c));
    const auto xv = values(x), gv = values(x.grad());
    for (size_t i = 0; i < 3; ++i) CHECK(gv[i] == Approx(6 * std::exp(3 * xv[i])).epsilon(1e-13));
    CHECK_FALSE(a.grad().defined());
    expect_gradcheck("diamond",
                     [](const std::vector<Tensor>& in) {
                       Tensor a2 = exp(in[0]);
                       return (a2 * 2.0) * (a2 * a2) + sigmoid(a2);
                     },
                     {leaf({0.1, -0.3, 0.7}, Shape{3})});
  }
  SECTION("intermediate (non-leaf) tensors keep no .grad; constants get none") {
    Tensor x = leaf({1.0, 2.0}, Shape{2});
    Tensor c = from_vector<double>({3.0, 4.0}, Shape{2}, DType::f64);
    Tensor h = x * 2.0;
    CHECK_FALSE(h.is_leaf());
    CHECK(h.requires_grad());
    CHECK(x.is_leaf());
    backward(sum(h * h * c));
    CHECK_FALSE(h.grad().defined());
    CHECK_FALSE(c.grad().defined());
    // d/dx sum(4 x^2 c) = 8 x c
    CHECK(values(x.grad()) == std::vector<double>{24.0, 64.0});
  }
  SECTION("un-broadcasting: a bias added to every row gets the row sum") {
    Tensor x = leaf({1, 2, 3, 4, 5, 6}, Shape{2, 3});
    Tensor bias = leaf({0.5, 0.5, 0.5}, Shape{3});
    Tensor s = leaf({2.0}, Shape{});
    backward(sum((x + bias) * s));
    CHECK(values(bias.grad()) == std::vector<double>{4.0, 4.0, 4.0});
    CHECK(bias.grad().shape() == Shape{3});
    CHECK(s.grad().shape() == Shape{});
    CHECK(s.grad().item() == Approx(21.0 + 3.0));
  }
  CHECK(tape_size() == 0);
}
