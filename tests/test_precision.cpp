// f16 / bf16 (and f32) forward of every op against a float64 reference computed from the very same
// (already rounded) inputs. Tolerances follow from the dtype: the output is rounded once, so
//   |out - ref| <= u * |ref| + (1 + u) * e + s
// where u is the unit roundoff of the output dtype (2^-11 f16, 2^-8 bf16, 2^-24 f32), e bounds the error
// of the float32 computation before that rounding (a few float ulps for elementwise math, k * 2^-23 *
// sum|terms| for float-accumulated sums and dot products), and s is half the smallest subnormal of the
// dtype (the absolute rounding error in the subnormal range). Plus overflow/underflow semantics, casts
// (exhaustive over all 16-bit patterns) and float accumulation of long f16/bf16 reductions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/tensor.h"

using namespace mixtape;

namespace {

constexpr double kUlp = 0x1p-23;  // float spacing at 1: one correctly rounded float op is within kUlp/2 relative

struct Precision {
  DType dtype;
  double u;    // unit roundoff
  double sub;  // half the smallest subnormal
  const char* name;
};
const Precision kLow[] = {
    {DType::f16, 0x1p-11, 0x1p-25, "f16"},
    {DType::bf16, 0x1p-8, 0x1p-134, "bf16"},
};
// f32 as a baseline next to the two low-precision types.
const Precision kAll[] = {
    {DType::f16, 0x1p-11, 0x1p-25, "f16"},
    {DType::bf16, 0x1p-8, 0x1p-134, "bf16"},
    {DType::f32, 0x1p-24, 0x1p-150, "f32"},
};

double uniform(std::mt19937& g, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g); }
int uniform_int(std::mt19937& g, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }

std::vector<int64_t> random_dims(std::mt19937& g, int min_rank, int max_rank, int max_dim) {
  std::vector<int64_t> d(static_cast<size_t>(uniform_int(g, min_rank, max_rank)));
  for (auto& x : d) x = uniform_int(g, 1, max_dim);
  return d;
}

int64_t numel(const std::vector<int64_t>& d) {
  int64_t n = 1;
  for (auto x : d) n *= x;
  return n;
}

/// A tensor of dtype dt holding `raw` rounded to dt, and the rounded values (what the reference uses).
struct Input {
  Tensor t;
  std::vector<double> v;
};
Input make_input(DType dt, const std::vector<int64_t>& dims, const std::vector<double>& raw) {
  Tensor t = from_vector<double>(raw, Shape(dims), dt);
  REQUIRE(t.dtype() == dt);
  return {t, t.to_vector<double>()};
}
template <class Sampler>
Input random_input(DType dt, const std::vector<int64_t>& dims, std::mt19937& g, Sampler sample) {
  std::vector<double> raw(static_cast<size_t>(numel(dims)));
  for (auto& x : raw) x = sample(g);
  return make_input(dt, dims, raw);
}
auto uniform_in(double lo, double hi) {
  return [lo, hi](std::mt19937& g) { return uniform(g, lo, hi); };
}
auto log_uniform_in(double lo, double hi) {
  return [lo, hi](std::mt19937& g) { return std::exp(uniform(g, std::log(lo), std::log(hi))); };
}
auto signed_in(double lo, double hi) {
  return [lo, hi](std::mt19937& g) { return (uniform_int(g, 0, 1) ? 1.0 : -1.0) * uniform(g, lo, hi); };
}

std::string dims_str(const std::vector<int64_t>& d) { return Shape(d).to_string(); }

/// Checks dtype, shape and |out - ref| <= u |ref| + (1 + u) extra + sub element by element.
void check_close(const std::string& what, const Tensor& out, const Precision& p, const std::vector<int64_t>& dims,
                 const std::vector<double>& ref, const std::vector<double>& extra) {
  INFO(what << " [" << p.name << "] output " << out.shape().to_string());
  CHECK(out.dtype() == p.dtype);
  REQUIRE(out.shape() == Shape(dims));
  const auto o = out.to_vector<double>();
  REQUIRE(o.size() == ref.size());
  int bad = 0;
  std::ostringstream msg;
  for (size_t i = 0; i < o.size(); ++i) {
    bool ok;
    double tol = 0;
    if (!std::isfinite(ref[i])) {
      ok = (std::isnan(ref[i]) && std::isnan(o[i])) || o[i] == ref[i];
    } else {
      tol = p.u * std::abs(ref[i]) + (1 + p.u) * extra[i] + p.sub;
      ok = std::abs(o[i] - ref[i]) <= tol;
    }
    if (!ok && bad++ < 5) {
      msg.precision(10);
      msg << "  [" << i << "] got " << o[i] << " want " << ref[i] << " (|diff| " << std::abs(o[i] - ref[i]) << " > tol "
          << tol << ")\n";
    }
  }
  INFO(bad << " of " << o.size() << " elements out of tolerance:\n" << msg.str());
  CHECK(bad == 0);
}

/// Exact equality (for selections, comparisons, max, casts that are exact).
void check_exact(const std::string& what, const Tensor& out, DType dtype, const std::vector<int64_t>& dims,
                 const std::vector<double>& ref) {
  INFO(what << " output " << out.shape().to_string() << " " << dtype_name(out.dtype()));
  CHECK(out.dtype() == dtype);
  REQUIRE(out.shape() == Shape(dims));
  const auto o = out.to_vector<double>();
  int bad = 0;
  std::ostringstream msg;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!(o[i] == ref[i] || (std::isnan(o[i]) && std::isnan(ref[i]))) && bad++ < 5)
      msg << "  [" << i << "] got " << o[i] << " want " << ref[i] << "\n";
  }
  INFO(bad << " of " << o.size() << " elements differ:\n" << msg.str());
  CHECK(bad == 0);
}

// ---- broadcasting reference ----
std::vector<int64_t> broadcast_dims(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const size_t r = std::max(a.size(), b.size());
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}
/// For each element of `out` (row-major), the flat index of the element of `in` broadcast onto it.
std::vector<int64_t> broadcast_map(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  const int r = static_cast<int>(out.size()), off = r - static_cast<int>(in.size());
  std::vector<int64_t> stride(static_cast<size_t>(r), 0);
  int64_t s = 1;
  for (int d = r - 1; d >= off; --d) {
    const int64_t n = in[static_cast<size_t>(d - off)];
    stride[static_cast<size_t>(d)] = n == 1 ? 0 : s;
    s *= n;
  }
  std::vector<int64_t> map(static_cast<size_t>(numel(out)));
  for (int64_t i = 0; i < numel(out); ++i) {
    int64_t rem = i, idx = 0;
    for (int d = r - 1; d >= 0; --d) {
      idx += (rem % out[static_cast<size_t>(d)]) * stride[static_cast<size_t>(d)];
      rem /= out[static_cast<size_t>(d)];
    }
    map[static_cast<size_t>(i)] = idx;
  }
  return map;
}

struct DimsPair {
  std::vector<int64_t> a, b;
};
std::vector<DimsPair> binary_dims_cases(std::mt19937& g, int n_random) {
  std::vector<DimsPair> cases = {{{3, 1}, {1, 4}}, {{2, 3, 4}, {4}}, {{2, 3, 4}, {1}}, {{2, 3, 4}, {}},
                                 {{}, {2, 3}},     {{}, {}},         {{2, 1, 4}, {3, 1}}, {{5, 7}, {5, 7}}};
  for (int i = 0; i < n_random; ++i) {
    const auto full = random_dims(g, 0, 4, 5);
    std::vector<int64_t> a, b;
    for (auto d : full) a.push_back(uniform_int(g, 0, 9) < 3 ? 1 : d);
    const int rb = uniform_int(g, 0, static_cast<int>(full.size()));
    for (size_t d = full.size() - static_cast<size_t>(rb); d < full.size(); ++d) b.push_back(uniform_int(g, 0, 9) < 3 ? 1 : full[d]);
    if (uniform_int(g, 0, 1)) std::swap(a, b);
    cases.push_back({a, b});
  }
  return cases;
}

// ---- reduction reference ----
struct Groups {
  std::vector<int64_t> out_dims;
  std::vector<std::vector<int64_t>> members;  // input flat indices per output element, ascending
};
Groups reduce_groups(const std::vector<int64_t>& dims, const std::vector<int64_t>& axes, bool keepdim) {
  const int r = static_cast<int>(dims.size());
  std::vector<bool> red(static_cast<size_t>(r), axes.empty());
  for (auto a : axes) red[static_cast<size_t>(a < 0 ? a + r : a)] = true;
  Groups gr;
  std::vector<int64_t> full;  // output dims with reduced axes kept as 1
  for (int d = 0; d < r; ++d) {
    full.push_back(red[static_cast<size_t>(d)] ? 1 : dims[static_cast<size_t>(d)]);
    if (!red[static_cast<size_t>(d)] || keepdim) gr.out_dims.push_back(full.back());
  }
  gr.members.resize(static_cast<size_t>(numel(full)));
  for (int64_t i = 0; i < numel(dims); ++i) {
    int64_t rem = i, idx = 0, stride = 1;
    for (int d = r - 1; d >= 0; --d) {
      const int64_t c = rem % dims[static_cast<size_t>(d)];
      rem /= dims[static_cast<size_t>(d)];
      if (!red[static_cast<size_t>(d)]) idx += c * stride;
      stride *= full[static_cast<size_t>(d)];
    }
    gr.members[static_cast<size_t>(idx)].push_back(i);
  }
  return gr;
}

std::vector<std::vector<int64_t>> axis_cases(int r) {
  std::vector<std::vector<int64_t>> out = {{}};
  for (int a = 0; a < r; ++a) out.push_back({a - (a % 2 ? r : 0)});  // mix positive and negative axes
  for (int a = 0; a + 1 < r; ++a) out.push_back({a, a + 1});
  if (r >= 3) out.push_back({0, -1});
  return out;
}

// ---- float-format reference rounding (independent of core/half.h) ----
/// x rounded to nearest even in a binary format with `mant` fraction bits, minimum normal exponent
/// `emin` (subnormals below), overflowing to inf above `max_finite`.
double round_to_format(double x, int mant, int emin, double max_finite) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  int e;
  std::frexp(std::abs(x), &e);  // |x| = f 2^e, f in [0.5, 1)
  const int E = std::max(e - 1, emin);
  const double q = std::ldexp(1.0, E - mant);
  const double r = std::nearbyint(x / q) * q;  // default rounding mode: to nearest even
  if (std::abs(r) > max_finite) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}
constexpr double kHalfMax = 65504.0;
const double kBf16Max = std::ldexp(255.0, 120);  // (2 - 2^-7) 2^127
double round_f16(double x) { return round_to_format(x, 10, -14, kHalfMax); }
double round_bf16(double x) { return round_to_format(x, 7, -126, kBf16Max); }

/// The value of f16 bits, decoded independently.
double decode_f16(uint16_t h) {
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return m ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}
/// The value of bf16 bits, decoded independently.
double decode_bf16(uint16_t b) {
  const double sign = (b & 0x8000u) ? -1.0 : 1.0;
  const int e = (b >> 7) & 0xff, m = b & 0x7f;
  if (e == 0xff) return m ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (e == 0) return sign * std::ldexp(m, -133);
  return sign * std::ldexp(128 + m, e - 134);
}

bool same_value(double out, double ref) {
  if (std::isnan(ref)) return std::isnan(out);
  return out == ref && std::signbit(out) == std::signbit(ref);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// elementwise
// ------------------------------------------------------------------------------------------------

TEST_CASE("precision: unary elementwise ops vs float64", "[precision]") {
  std::mt19937 g(101);
  struct Unary {
    const char* name;
    Tensor (*op)(const Tensor&);
    double (*ref)(double);
    std::function<double(std::mt19937&)> sample;
    double ulps;      // float computation error, relative, in float ulps
    double abs_ulps;  // and absolute, in float ulps times |x|
  };
  const std::vector<Unary> ops = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, uniform_in(-100, 100), 0, 0},
      {"-x", [](const Tensor& x) { return -x; }, [](double x) { return -x; }, uniform_in(-100, 100), 0, 0},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, uniform_in(-10, 10), 2, 0},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, log_uniform_in(1e-3, 1e3), 2, 0},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, log_uniform_in(1e-4, 1e4), 1,
       0},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       log_uniform_in(1e-4, 1e4), 2, 0},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, uniform_in(-5, 5), 3, 0},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); },
       uniform_in(-9, 9), 4, 0},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, uniform_in(-10, 10), 0, 0},
      {"gelu", [](const Tensor& x) { return gelu(x); },
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, uniform_in(-6, 6), 4, 4},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); }, uniform_in(-10, 10), 0, 0},
  };
  for (const auto& p : kAll) {
    for (int trial = 0; trial < 3; ++trial) {
      const auto dims = trial == 0 ? std::vector<int64_t>{512} : random_dims(g, 0, 4, 5);
      for (const auto& op : ops) {
        Input x = random_input(p.dtype, dims, g, op.sample);
        std::vector<double> ref, extra;
        for (double v : x.v) {
          ref.push_back(op.ref(v));
          extra.push_back(op.ulps * kUlp * std::abs(ref.back()) + op.abs_ulps * kUlp * std::abs(v));
        }
        check_close(op.name, op.op(x.t), p, dims, ref, extra);
      }
    }
  }
}

TEST_CASE("precision: binary elementwise ops with broadcasting vs float64", "[precision]") {
  std::mt19937 g(102);
  struct Binary {
    const char* name;
    Tensor (*op)(const Tensor&, const Tensor&);
    double (*ref)(double, double);
    std::function<double(std::mt19937&)> sa, sb;
    double ulps;
  };
  const std::vector<Binary> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double a, double b) { return a + b; },
       uniform_in(-100, 100), uniform_in(-100, 100), 1},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double a, double b) { return a - b; },
       uniform_in(-100, 100), uniform_in(-100, 100), 1},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double a, double b) { return a * b; },
       uniform_in(-50, 50), uniform_in(-50, 50), 1},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, [](double a, double b) { return a / b; },
       uniform_in(-10, 10), signed_in(0.1, 10), 1},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, [](double a, double b) { return std::pow(a, b); },
       uniform_in(0.1, 4), uniform_in(-3, 3), 4},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](double a, double b) { return std::max(a, b); }, uniform_in(-10, 10), uniform_in(-10, 10), 0},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](double a, double b) { return std::min(a, b); }, uniform_in(-10, 10), uniform_in(-10, 10), 0},
      {"a + b", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double a, double b) { return a + b; },
       uniform_in(-100, 100), uniform_in(-100, 100), 1},
      {"a - b", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double a, double b) { return a - b; },
       uniform_in(-100, 100), uniform_in(-100, 100), 1},
      {"a * b", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double a, double b) { return a * b; },
       uniform_in(-50, 50), uniform_in(-50, 50), 1},
      {"a / b", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double a, double b) { return a / b; },
       uniform_in(-10, 10), signed_in(0.1, 10), 1},
  };
  const auto cases = binary_dims_cases(g, 6);
  for (const auto& p : kAll) {
    for (const auto& op : ops) {
      for (const auto& [da, db] : cases) {
        Input a = random_input(p.dtype, da, g, op.sa), b = random_input(p.dtype, db, g, op.sb);
        const auto out_dims = broadcast_dims(da, db);
        const auto ma = broadcast_map(da, out_dims), mb = broadcast_map(db, out_dims);
        std::vector<double> ref, extra;
        for (size_t i = 0; i < ma.size(); ++i) {
          ref.push_back(op.ref(a.v[static_cast<size_t>(ma[i])], b.v[static_cast<size_t>(mb[i])]));
          extra.push_back(op.ulps * kUlp * std::abs(ref.back()));
        }
        check_close(std::string(op.name) + " " + dims_str(da) + " with " + dims_str(db), op.op(a.t, b.t), p, out_dims, ref,
                    extra);
      }
    }
  }
}

TEST_CASE("precision: pow(tensor, double) and operators with scalars", "[precision]") {
  std::mt19937 g(103);
  const std::vector<int64_t> dims = {7, 9};
  for (const auto& p : kAll) {
    Input pos = random_input(p.dtype, dims, g, uniform_in(0.1, 4));
    for (double e : {2.0, 3.0, 0.5, -1.0, -1.5, 0.0}) {
      std::vector<double> ref, extra;
      for (double v : pos.v) {
        ref.push_back(std::pow(v, e));
        extra.push_back(4 * kUlp * std::abs(ref.back()));
      }
      check_close("pow(x, " + std::to_string(e) + ")", pow(pos.t, e), p, dims, ref, extra);
    }
    // Scalars are exactly representable in every dtype (2, 1, 3): the reference uses them as they are.
    Input x = random_input(p.dtype, dims, g, signed_in(0.1, 50));
    const std::vector<std::pair<const char*, std::pair<Tensor (*)(const Tensor&), double (*)(double)>>> ops = {
        {"x * 2.0", {[](const Tensor& t) { return t * 2.0; }, [](double v) { return v * 2.0; }}},
        {"2.0 * x", {[](const Tensor& t) { return 2.0 * t; }, [](double v) { return 2.0 * v; }}},
        {"x + 1.0", {[](const Tensor& t) { return t + 1.0; }, [](double v) { return v + 1.0; }}},
        {"1.0 + x", {[](const Tensor& t) { return 1.0 + t; }, [](double v) { return 1.0 + v; }}},
        {"x - 1.0", {[](const Tensor& t) { return t - 1.0; }, [](double v) { return v - 1.0; }}},
        {"1.0 - x", {[](const Tensor& t) { return 1.0 - t; }, [](double v) { return 1.0 - v; }}},
        {"x / 3.0", {[](const Tensor& t) { return t / 3.0; }, [](double v) { return v / 3.0; }}},
        {"2.0 / x", {[](const Tensor& t) { return 2.0 / t; }, [](double v) { return 2.0 / v; }}},
    };
    for (const auto& [name, fns] : ops) {
      std::vector<double> ref, extra;
      for (double v : x.v) {
        ref.push_back(fns.second(v));
        extra.push_back(kUlp * std::abs(ref.back()));
      }
      check_close(name, fns.first(x.t), p, dims, ref, extra);
    }
  }
}

TEST_CASE("precision: comparisons (u8) and where are exact", "[precision]") {
  std::mt19937 g(104);
  const auto cases = binary_dims_cases(g, 6);
  // A coarse grid so that ties (eq, le, ge) happen often.
  auto grid = [](std::mt19937& gg) { return 0.5 * uniform_int(gg, -3, 3); };
  const std::pair<const char*, std::pair<Tensor (*)(const Tensor&, const Tensor&), bool (*)(double, double)>> cmps[] = {
      {"eq", {[](const Tensor& a, const Tensor& b) { return eq(a, b); }, [](double a, double b) { return a == b; }}},
      {"ne", {[](const Tensor& a, const Tensor& b) { return ne(a, b); }, [](double a, double b) { return a != b; }}},
      {"lt", {[](const Tensor& a, const Tensor& b) { return lt(a, b); }, [](double a, double b) { return a < b; }}},
      {"le", {[](const Tensor& a, const Tensor& b) { return le(a, b); }, [](double a, double b) { return a <= b; }}},
      {"gt", {[](const Tensor& a, const Tensor& b) { return gt(a, b); }, [](double a, double b) { return a > b; }}},
      {"ge", {[](const Tensor& a, const Tensor& b) { return ge(a, b); }, [](double a, double b) { return a >= b; }}},
  };
  for (const auto& p : kAll) {
    for (const auto& [da, db] : cases) {
      Input a = random_input(p.dtype, da, g, grid), b = random_input(p.dtype, db, g, grid);
      const auto out_dims = broadcast_dims(da, db);
      const auto ma = broadcast_map(da, out_dims), mb = broadcast_map(db, out_dims);
      for (const auto& [name, fns] : cmps) {
        std::vector<double> ref;
        for (size_t i = 0; i < ma.size(); ++i)
          ref.push_back(fns.second(a.v[static_cast<size_t>(ma[i])], b.v[static_cast<size_t>(mb[i])]) ? 1.0 : 0.0);
        check_exact(std::string(name) + " [" + p.name + "] " + dims_str(da) + " with " + dims_str(db), fns.first(a.t, b.t),
                    DType::u8, out_dims, ref);
      }
      // where(a > b, x, y) with x shaped like a and y like b, so all three broadcast.
      Input x = random_input(p.dtype, da, g, uniform_in(-100, 100)), y = random_input(p.dtype, db, g, uniform_in(-100, 100));
      std::vector<double> ref;
      for (size_t i = 0; i < ma.size(); ++i) {
        const auto ia = static_cast<size_t>(ma[i]), ib = static_cast<size_t>(mb[i]);
        ref.push_back(a.v[ia] > b.v[ib] ? x.v[ia] : y.v[ib]);
      }
      check_exact(std::string("where [") + p.name + "] " + dims_str(da) + " with " + dims_str(db),
                  where(gt(a.t, b.t), x.t, y.t), p.dtype, out_dims, ref);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// reductions
// ------------------------------------------------------------------------------------------------

TEST_CASE("precision: sum, mean, max, argmax over axes vs float64", "[precision]") {
  std::mt19937 g(105);
  for (const auto& p : kAll) {
    for (int trial = 0; trial < 5; ++trial) {
      const auto dims = random_dims(g, trial == 0 ? 0 : 1, 4, 6);
      Input x = random_input(p.dtype, dims, g, uniform_in(-4, 4));
      // Distinct values exactly representable in every dtype (+-m 2^e, m in [128, 255], e in [-8, 0]):
      // argmax has no ties.
      std::vector<double> pool;
      for (int m = 128; m < 256; ++m)
        for (int e = -8; e <= 0; ++e) {
          pool.push_back(std::ldexp(m, e));
          pool.push_back(-std::ldexp(m, e));
        }
      std::shuffle(pool.begin(), pool.end(), g);
      REQUIRE(pool.size() >= static_cast<size_t>(numel(dims)));
      const std::vector<double> raw(pool.begin(), pool.begin() + numel(dims));
      Input xd = make_input(p.dtype, dims, raw);
      REQUIRE(xd.v == raw);
      for (const auto& axes : axis_cases(static_cast<int>(dims.size()))) {
        for (bool keepdim : {false, true}) {
          const Groups gr = reduce_groups(dims, axes, keepdim);
          std::ostringstream what;
          what << " of " << dims_str(dims) << " axes {";
          for (auto a : axes) what << a << ",";
          what << "} keepdim " << keepdim;
          std::vector<double> rs, es, rm, em, rmax;
          for (const auto& mem : gr.members) {
            double s = 0, sa = 0, mx = -std::numeric_limits<double>::infinity();
            for (auto i : mem) {
              s += x.v[static_cast<size_t>(i)];
              sa += std::abs(x.v[static_cast<size_t>(i)]);
              mx = std::max(mx, x.v[static_cast<size_t>(i)]);
            }
            const double n = static_cast<double>(mem.size());
            rs.push_back(s);
            es.push_back(n * kUlp * sa);
            rm.push_back(s / n);
            em.push_back(kUlp * sa + kUlp * std::abs(s / n));
            rmax.push_back(mx);
          }
          check_close("sum" + what.str(), sum(x.t, axes, keepdim), p, gr.out_dims, rs, es);
          check_close("mean" + what.str(), mean(x.t, axes, keepdim), p, gr.out_dims, rm, em);
          check_exact(std::string("max [") + p.name + "]" + what.str(), max(x.t, axes, keepdim), p.dtype, gr.out_dims, rmax);
        }
      }
      // argmax along each axis.
      for (int axis = 0; axis < static_cast<int>(dims.size()); ++axis) {
        for (bool keepdim : {false, true}) {
          const Groups gr = reduce_groups(dims, {axis}, keepdim);
          std::vector<double> ref;
          for (const auto& mem : gr.members) {
            size_t best = 0;
            for (size_t j = 1; j < mem.size(); ++j)
              if (xd.v[static_cast<size_t>(mem[j])] > xd.v[static_cast<size_t>(mem[best])]) best = j;
            ref.push_back(static_cast<double>(best));
          }
          const int64_t ax = axis % 2 ? axis - static_cast<int64_t>(dims.size()) : axis;
          check_exact(std::string("argmax [") + p.name + "] of " + dims_str(dims) + " axis " + std::to_string(ax) +
                          " keepdim " + std::to_string(keepdim),
                      argmax(xd.t, ax, keepdim), DType::i64, gr.out_dims, ref);
        }
      }
    }
  }
}

TEST_CASE("precision: long f16/bf16 sums accumulate in float", "[precision]") {
  std::mt19937 g(106);
  for (const auto& p : kLow) {
    // 4096 ones: an f16 accumulator stalls at 2048 (bf16 at 256); float gives 4096 exactly.
    Tensor ones4096 = ones(Shape{4096}, p.dtype);
    Tensor s = sum(ones4096);
    CHECK(s.dtype() == p.dtype);
    CHECK(s.item() == 4096.0);
    CHECK(mean(ones4096).item() == 1.0);
    // Random values in [0, 1): error of a float accumulation stays within the bound; an f16 accumulator
    // (spacing 2 above 2048) drifts by tens.
    for (const std::vector<int64_t>& dims : {std::vector<int64_t>{4096}, std::vector<int64_t>{2, 4096}}) {
      Input x = random_input(p.dtype, dims, g, uniform_in(0, 1));
      const Groups gr = reduce_groups(dims, {-1}, false);
      std::vector<double> ref, extra, refm, extram;
      for (const auto& mem : gr.members) {
        double sum_ = 0;
        for (auto i : mem) sum_ += x.v[static_cast<size_t>(i)];
        ref.push_back(sum_);
        extra.push_back(4096 * kUlp * sum_);
        refm.push_back(sum_ / 4096);
        extram.push_back(4096 * kUlp * sum_ / 4096 + kUlp * sum_ / 4096);
      }
      check_close("long sum", sum(x.t, {-1}), p, gr.out_dims, ref, extra);
      check_close("long mean", mean(x.t, {-1}), p, gr.out_dims, refm, extram);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// matmul
// ------------------------------------------------------------------------------------------------

namespace {
/// Reference a @ b for a (batch..., m, k) [or (batch..., k, m) when ta] and b (k, n) shared or
/// (batch..., k, n) [or n, k when tb]. Fills |terms| sums for the error bound.
void matmul_ref(const std::vector<double>& a, const std::vector<double>& b, int64_t batch, int64_t m, int64_t k, int64_t n,
                bool ta, bool tb, bool b_shared, std::vector<double>& out, std::vector<double>& abs_terms) {
  out.assign(static_cast<size_t>(batch * m * n), 0.0);
  abs_terms.assign(out.size(), 0.0);
  for (int64_t bi = 0; bi < batch; ++bi) {
    const double* A = a.data() + bi * m * k;
    const double* B = b.data() + (b_shared ? 0 : bi * k * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0, sa = 0;
        for (int64_t l = 0; l < k; ++l) {
          const double x = ta ? A[l * m + i] : A[i * k + l];
          const double y = tb ? B[j * k + l] : B[l * n + j];
          s += x * y;
          sa += std::abs(x * y);
        }
        out[static_cast<size_t>((bi * m + i) * n + j)] = s;
        abs_terms[static_cast<size_t>((bi * m + i) * n + j)] = sa;
      }
  }
}
std::vector<int64_t> with_mat(std::vector<int64_t> batch, int64_t r, int64_t c, bool trans) {
  batch.push_back(trans ? c : r);
  batch.push_back(trans ? r : c);
  return batch;
}
}  // namespace

TEST_CASE("precision: matmul 2-D, batched and shared rhs, all transposes vs float64", "[precision]") {
  std::mt19937 g(107);
  const std::vector<std::vector<int64_t>> batches = {{}, {3}, {2, 2}};
  for (const auto& p : kAll) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (const auto& batch : batches) {
          for (bool shared : {false, true}) {
            if (shared && batch.empty()) continue;
            const int64_t m = uniform_int(g, 1, 9), k = uniform_int(g, 1, 40), n = uniform_int(g, 1, 9);
            const auto da = with_mat(batch, m, k, ta), db = with_mat(shared ? std::vector<int64_t>{} : batch, k, n, tb);
            Input a = random_input(p.dtype, da, g, uniform_in(-2, 2)), b = random_input(p.dtype, db, g, uniform_in(-2, 2));
            std::vector<double> ref, terms;
            matmul_ref(a.v, b.v, numel(batch), m, k, n, ta, tb, shared, ref, terms);
            std::vector<double> extra;
            for (double t : terms) extra.push_back(static_cast<double>(k + 1) * kUlp * t);
            auto out_dims = batch;
            out_dims.push_back(m);
            out_dims.push_back(n);
            check_close("matmul " + dims_str(da) + " x " + dims_str(db) + " trans_a=" + std::to_string(ta) +
                            " trans_b=" + std::to_string(tb),
                        matmul(a.t, b.t, ta, tb), p, out_dims, ref, extra);
          }
        }
      }
    }
  }
}

TEST_CASE("precision: f16/bf16 matmul with k = 4096 accumulates in float", "[precision]") {
  for (const auto& p : kLow) {
    INFO(p.name);
    // ones(1, 4096) @ ones(4096, 1) = 4096: an f16 accumulator stalls at 2048, a bf16 one at 256.
    Tensor a = ones(Shape{1, 4096}, p.dtype), b = ones(Shape{4096, 1}, p.dtype);
    Tensor c = matmul(a, b);
    CHECK(c.dtype() == p.dtype);
    CHECK(c.item() == 4096.0);
    CHECK(matmul(b, a.reshape(Shape{4096, 1}), true, false).item() == 4096.0);  // b^T b
    // 1 + small: 4096 (1 + d) with d = 2^-10 (f16) or 2^-7 (bf16), exact in float and in the output dtype
    // (4100 and 4128); the small parts are lost entirely by a 16-bit accumulator.
    const double d = p.dtype == DType::f16 ? 0x1p-10 : 0x1p-7;
    Tensor b2 = full(Shape{4096, 1}, 1.0 + d, p.dtype);
    CHECK(matmul(a, b2).item() == 4096.0 * (1.0 + d));
    // Half ones, half small values: 2048 + 2048 * 2^-8 = 2056 (exact in f16 and float; bf16 rounds it once).
    std::vector<double> mixed(4096);
    for (size_t i = 0; i < mixed.size(); ++i) mixed[i] = i % 2 ? 1.0 : 0x1p-8;
    Tensor b3 = from_vector<double>(mixed, Shape{4096, 1}, p.dtype);
    const double want = p.dtype == DType::f16 ? 2056.0 : round_bf16(2056.0);
    CHECK(matmul(a, b3).item() == want);
    // Batched, with a shared rhs and transposes.
    Tensor ab = ones(Shape{2, 3, 4096}, p.dtype);
    const auto v = matmul(ab, b2).to_vector<double>();
    REQUIRE(v.size() == 6);
    for (double x : v) CHECK(x == 4096.0 * (1.0 + d));
    const auto vt = matmul(ones(Shape{2, 4096, 3}, p.dtype), b2, true, false).to_vector<double>();
    for (double x : vt) CHECK(x == 4096.0 * (1.0 + d));
  }
}

// ------------------------------------------------------------------------------------------------
// softmax family and cross-entropy
// ------------------------------------------------------------------------------------------------

namespace {
/// Rows of the last axis: max, log-sum-exp.
void row_stats(const std::vector<double>& x, int64_t cols, std::vector<double>& mx, std::vector<double>& lse) {
  const int64_t rows = static_cast<int64_t>(x.size()) / cols;
  mx.assign(static_cast<size_t>(rows), 0);
  lse.assign(static_cast<size_t>(rows), 0);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, x[static_cast<size_t>(r * cols + c)]);
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += std::exp(x[static_cast<size_t>(r * cols + c)] - m);
    mx[static_cast<size_t>(r)] = m;
    lse[static_cast<size_t>(r)] = m + std::log(s);
  }
}
}  // namespace

TEST_CASE("precision: softmax and log_softmax vs float64", "[precision]") {
  std::mt19937 g(108);
  for (const auto& p : kAll) {
    std::vector<std::pair<std::vector<int64_t>, std::function<double(std::mt19937&)>>> cases;
    for (int trial = 0; trial < 5; ++trial) {
      auto dims = random_dims(g, 0, 2, 4);
      dims.push_back(uniform_int(g, 1, 16));
      cases.push_back({dims, uniform_in(-8, 8)});
    }
    // Large logits: exp overflows float (and f16) unless the maximum is subtracted first.
    cases.push_back({{3, 5}, uniform_in(90, 100)});
    cases.push_back({{3, 5}, uniform_in(-100, -90)});
    cases.push_back({{2, 64}, uniform_in(-20, 20)});
    for (const auto& [dims, sampler] : cases) {
      Input x = random_input(p.dtype, dims, g, sampler);
      const int64_t cols = dims.back();
      std::vector<double> mx, lse;
      row_stats(x.v, cols, mx, lse);
      std::vector<double> rs, es, rl, el;
      for (size_t i = 0; i < x.v.size(); ++i) {
        const double L = lse[i / static_cast<size_t>(cols)];
        rl.push_back(x.v[i] - L);
        rs.push_back(std::exp(rl.back()));
        // (x - max) is exact in float for f16/bf16 inputs; for f32 inputs its rounding is magnified by exp.
        es.push_back((static_cast<double>(cols + 4) + std::abs(x.v[i] - mx[i / static_cast<size_t>(cols)])) * kUlp * rs.back());
        el.push_back(static_cast<double>(cols + 4) * kUlp * (1 + std::abs(rl.back())));
      }
      check_close("softmax " + dims_str(dims), softmax(x.t), p, dims, rs, es);
      check_close("log_softmax " + dims_str(dims), log_softmax(x.t), p, dims, rl, el);
    }
  }
}

TEST_CASE("precision: cross_entropy vs float64, all reductions and label smoothing", "[precision]") {
  std::mt19937 g(109);
  for (const auto& p : kAll) {
    for (int trial = 0; trial < 4; ++trial) {
      const int64_t n = uniform_int(g, 1, 12), c = trial == 3 ? 100 : uniform_int(g, 2, 12);
      const double hi = trial == 2 ? 60 : 8;  // trial 2: logits whose exp overflows f16 (and large losses)
      Input x = random_input(p.dtype, {n, c}, g, uniform_in(-hi, hi));
      std::vector<int64_t> lab(static_cast<size_t>(n));
      for (auto& l : lab) l = uniform_int(g, 0, static_cast<int>(c) - 1);
      Tensor labels = from_vector<int64_t>(lab, Shape{n}, DType::i64);
      std::vector<double> mx, lse;
      row_stats(x.v, c, mx, lse);
      for (double eps : {0.0, 0.1}) {
        std::vector<double> loss, extra;
        double total = 0, total_extra = 0;
        for (int64_t r = 0; r < n; ++r) {
          double mean_x = 0, max_abs = 0;
          for (int64_t j = 0; j < c; ++j) {
            mean_x += x.v[static_cast<size_t>(r * c + j)] / static_cast<double>(c);
            max_abs = std::max(max_abs, std::abs(x.v[static_cast<size_t>(r * c + j)]));
          }
          const double L = lse[static_cast<size_t>(r)];
          const double l = (1 - eps) * (L - x.v[static_cast<size_t>(r * c + lab[static_cast<size_t>(r)])]) + eps * (L - mean_x);
          loss.push_back(l);
          // Float error of (max - x_y) + log(sum exp(x - max)): relative to the loss plus C ulps from the sum;
          // the smoothing term averages all logits, so its error scales with their magnitude.
          const double nll = L - x.v[static_cast<size_t>(r * c + lab[static_cast<size_t>(r)])];
          extra.push_back(static_cast<double>(c + 8) * kUlp * (1 + (1 - eps) * std::abs(nll)) +
                          eps * static_cast<double>(c + 8) * kUlp * (1 + max_abs + std::abs(L)));
          total += l;
          // Reduced losses: per-sample losses are in the logits' dtype (Backend::cross_entropy), so they are
          // rounded once before the float reduction and once after it.
          total_extra += extra.back() * (1 + p.u) + p.u * std::abs(l) + p.sub;
        }
        const std::string what = "cross_entropy " + dims_str({n, c}) + " smoothing " + std::to_string(eps);
        check_close(what + " none", cross_entropy(x.t, labels, Reduction::none, eps), p, {n}, loss, extra);
        const double nn = static_cast<double>(n);
        check_close(what + " sum", cross_entropy(x.t, labels, Reduction::sum, eps), p, {}, {total},
                    {total_extra + nn * kUlp * std::abs(total)});
        check_close(what + " mean", cross_entropy(x.t, labels, Reduction::mean, eps), p, {}, {total / nn},
                    {total_extra / nn + (nn + 1) * kUlp * std::abs(total / nn)});
      }
    }
  }
}

TEST_CASE("precision: log-probabilities of a dominant large logit", "[precision]") {
  // With logits around 100 (or 1000) and one clear winner, log_softmax of the winner and its
  // cross-entropy are tiny (~ -e^-8 = -3.4e-4). Computed as (x - max) - log(sum), the float error is a few
  // ulps of 1 (the sum); computed as x - (max + log(sum)), it is half an ulp of |max| (1.9e-6 at 100,
  // 3e-5 at 1000): relative to -3.4e-4 more than the whole rounding budget of an f16 (or bf16) output.
  const std::vector<std::vector<double>> rows = {
      {100, 92, 91, 90.5, 90}, {-90, -98, -99, -99.5, -100}, {1000, 992, 984, 976, 968}, {40, 31, 30, 29, 28}};
  for (const auto& p : kAll) {
    for (const auto& row : rows) {
      const int64_t c = static_cast<int64_t>(row.size());
      Input x = make_input(p.dtype, {1, c}, row);
      std::vector<double> mx, lse;
      row_stats(x.v, c, mx, lse);
      std::vector<double> rl, el;
      for (size_t i = 0; i < x.v.size(); ++i) {
        rl.push_back(x.v[i] - lse[0]);
        el.push_back(static_cast<double>(c + 4) * kUlp * (1 + std::abs(rl.back())));
      }
      std::ostringstream what;
      what << "row starting " << row[0];
      check_close("log_softmax, dominant logit, " + what.str(), log_softmax(x.t), p, {1, c}, rl, el);
      std::vector<double> rs, es;
      for (double z : rl) {
        rs.push_back(std::exp(z));
        es.push_back(static_cast<double>(c + 4) * kUlp * rs.back());
      }
      check_close("softmax, dominant logit, " + what.str(), softmax(x.t), p, {1, c}, rs, es);
      Tensor label = from_vector<int64_t>({0}, Shape{1}, DType::i64);
      check_close("cross_entropy of the winner, " + what.str(), cross_entropy(x.t, label, Reduction::none), p, {1}, {-rl[0]},
                  {static_cast<double>(c + 8) * kUlp * (1 + std::abs(rl[0]))});
    }
  }
}

// ------------------------------------------------------------------------------------------------
// casts
// ------------------------------------------------------------------------------------------------

TEST_CASE("precision: the reference rounding itself", "[precision]") {
  // Sanity of the test's own reference (so a wrong reference cannot hide a wrong cast).
  CHECK(round_f16(1.0 + 0x1p-11) == 1.0);                    // tie -> even
  CHECK(round_f16(1.0 + 3 * 0x1p-11) == 1.0 + 0x1p-9);       // tie -> even (up)
  CHECK(round_f16(65504.0) == 65504.0);
  CHECK(round_f16(65519.99) == 65504.0);
  CHECK(std::isinf(round_f16(65520.0)));
  CHECK(round_f16(0x1p-24) == 0x1p-24);
  CHECK(round_f16(0x1p-25) == 0.0);                         // tie between 0 and 2^-24 -> 0
  CHECK(round_f16(0x1.0001p-25) == 0x1p-24);
  CHECK(round_f16(3 * 0x1p-25) == 2 * 0x1p-24);             // tie -> even
  CHECK(round_bf16(1.0 + 0x1p-8) == 1.0);
  CHECK(round_bf16(1e38) == Approx(1e38).epsilon(0x1p-8));
  CHECK(std::isinf(round_bf16(3.4e38)));
  CHECK(decode_f16(0x3c00) == 1.0);
  CHECK(decode_f16(0x7bff) == 65504.0);
  CHECK(decode_f16(0x0001) == 0x1p-24);
  CHECK(decode_bf16(0x3f80) == 1.0);
  CHECK(decode_bf16(0x0001) == 0x1p-133);
}

TEST_CASE("precision: casts of all 65,536 f16 and bf16 bit patterns", "[precision]") {
  constexpr int64_t n = 65536;
  Tensor h = Tensor::empty(Shape{n}, DType::f16);
  Tensor b = Tensor::empty(Shape{n}, DType::bf16);
  for (int64_t i = 0; i < n; ++i) {
    h.data<Half>()[i] = Half::from_bits(static_cast<uint16_t>(i));
    b.data<BFloat16>()[i] = BFloat16::from_bits(static_cast<uint16_t>(i));
  }
  auto check_all = [&](const std::string& what, const Tensor& out, DType want, auto ref_of, auto decode_out) {
    INFO(what);
    REQUIRE(out.dtype() == want);
    REQUIRE(out.numel() == n);
    int bad = 0;
    std::ostringstream msg;
    for (int64_t i = 0; i < n; ++i) {
      const double ref = ref_of(static_cast<uint16_t>(i));
      const double got = decode_out(out, i);
      if (!same_value(got, ref) && bad++ < 5) msg << "  bits 0x" << std::hex << i << std::dec << ": got " << got << " want " << ref << "\n";
    }
    INFO(bad << " wrong:\n" << msg.str());
    CHECK(bad == 0);
  };
  auto as_f32 = [](const Tensor& t, int64_t i) { return static_cast<double>(t.data<float>()[i]); };
  auto as_f64 = [](const Tensor& t, int64_t i) { return t.data<double>()[i]; };
  auto as_f16 = [](const Tensor& t, int64_t i) { return decode_f16(t.data<Half>()[i].bits); };
  auto as_bf16 = [](const Tensor& t, int64_t i) { return decode_bf16(t.data<BFloat16>()[i].bits); };
  check_all("f16 -> f32 (exact)", cast(h, DType::f32), DType::f32, decode_f16, as_f32);
  check_all("f16 -> f64 (exact)", cast(h, DType::f64), DType::f64, decode_f16, as_f64);
  check_all("f16 -> bf16 (one rounding)", cast(h, DType::bf16), DType::bf16,
            [](uint16_t i) { return round_bf16(decode_f16(i)); }, as_bf16);
  check_all("f16 -> f16 (identity)", cast(h, DType::f16), DType::f16, decode_f16, as_f16);
  check_all("bf16 -> f32 (exact)", cast(b, DType::f32), DType::f32, decode_bf16, as_f32);
  check_all("bf16 -> f64 (exact)", b.to(DType::f64), DType::f64, decode_bf16, as_f64);
  check_all("bf16 -> f16 (one rounding)", cast(b, DType::f16), DType::f16,
            [](uint16_t i) { return round_f16(decode_bf16(i)); }, as_f16);
  // And back: f16 -> f32 -> f16 is the identity on every pattern (NaNs stay NaN).
  check_all("f16 -> f32 -> f16", cast(cast(h, DType::f32), DType::f16), DType::f16, decode_f16, as_f16);
  check_all("bf16 -> f32 -> bf16", cast(cast(b, DType::f32), DType::bf16), DType::bf16, decode_bf16, as_bf16);
}

TEST_CASE("precision: f32 and f64 casts to f16/bf16 round to nearest even", "[precision]") {
  std::mt19937 g(110);
  // Random float bit patterns (every magnitude, subnormals, inf, NaN), exact ties, and edge values.
  std::vector<float> vals;
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 50000; ++i) {
    const uint32_t u = bits(g);
    float f;
    std::memcpy(&f, &u, sizeof f);
    vals.push_back(f);
  }
  for (int i = 0; i < 20000; ++i) {  // around the f16 range: exponents 2^-26 .. 2^17
    vals.push_back(static_cast<float>((uniform_int(g, 0, 1) ? 1 : -1) * std::ldexp(uniform(g, 1, 2), uniform_int(g, -26, 17))));
  }
  for (int i = 0; i < 5000; ++i) {  // exact midpoints between neighbouring f16 values, and bf16 values
    const uint16_t hb = static_cast<uint16_t>(uniform_int(g, 0, 0x7bfe) | (uniform_int(g, 0, 1) << 15));
    vals.push_back(static_cast<float>((decode_f16(hb) + decode_f16(static_cast<uint16_t>(hb + 1))) / 2));
    const uint16_t bb = static_cast<uint16_t>(uniform_int(g, 0, 0x7f7e) | (uniform_int(g, 0, 1) << 15));
    vals.push_back(static_cast<float>((decode_bf16(bb) + decode_bf16(static_cast<uint16_t>(bb + 1))) / 2));
  }
  for (double v : {0.0, -0.0, 65504.0, 65519.99, 65520.0, -65520.0, 70000.0, 0x1p-24, 0x1p-25, 0x1.0001p-25, -0x1p-26,
                   6.1035156e-05, 1e-8, 1e38, 3.3895e38, 3.4e38, 1.0 + 0x1p-11, 1.0 + 0x1p-8}) {
    vals.push_back(static_cast<float>(v));
  }
  vals.push_back(std::numeric_limits<float>::infinity());
  vals.push_back(-std::numeric_limits<float>::infinity());
  vals.push_back(std::numeric_limits<float>::quiet_NaN());
  vals.push_back(std::numeric_limits<float>::max());
  vals.push_back(std::numeric_limits<float>::denorm_min());
  const int64_t n = static_cast<int64_t>(vals.size());
  Tensor f = from_vector<float>(vals, Shape{n}, DType::f32);
  REQUIRE(f.to_vector<float>().size() == vals.size());

  auto check_rounding = [&](const std::string& what, const Tensor& out, bool is_half, auto allowed) {
    INFO(what);
    REQUIRE(out.dtype() == (is_half ? DType::f16 : DType::bf16));
    REQUIRE(out.numel() == n);
    int bad = 0;
    std::ostringstream msg;
    for (int64_t i = 0; i < n; ++i) {
      const double got = is_half ? decode_f16(out.data<Half>()[i].bits) : decode_bf16(out.data<BFloat16>()[i].bits);
      if (!allowed(i, got) && bad++ < 5) {
        msg.precision(12);
        msg << "  input " << vals[static_cast<size_t>(i)] << ": got " << got << "\n";
      }
    }
    INFO(bad << " wrong:\n" << msg.str());
    CHECK(bad == 0);
  };
  // f32 -> f16 / bf16: exactly one rounding of the float value.
  check_rounding("f32 -> f16", cast(f, DType::f16), true,
                 [&](int64_t i, double got) { return same_value(got, round_f16(vals[static_cast<size_t>(i)])); });
  check_rounding("f32 -> bf16", f.to(DType::bf16), false,
                 [&](int64_t i, double got) { return same_value(got, round_bf16(vals[static_cast<size_t>(i)])); });

  // f64 -> f16 / bf16 / f32: doubles between floats; one rounding of the double, or (allowed, as through
  // float) a rounding of the double's nearest float.
  std::vector<double> dv;
  for (float v : vals) dv.push_back(std::isfinite(v) ? static_cast<double>(v) * (1 + uniform(g, -1e-4, 1e-4)) : v);
  for (int i = 0; i < 2000; ++i) dv.push_back(std::ldexp(uniform(g, -2, 2), uniform_int(g, -30, 20)));
  const int64_t nd = static_cast<int64_t>(dv.size());
  Tensor d = from_vector<double>(dv, Shape{nd}, DType::f64);
  for (bool is_half : {true, false}) {
    Tensor out = cast(d, is_half ? DType::f16 : DType::bf16);
    INFO("f64 -> " << (is_half ? "f16" : "bf16"));
    REQUIRE(out.dtype() == (is_half ? DType::f16 : DType::bf16));
    int bad = 0;
    std::ostringstream msg;
    for (int64_t i = 0; i < nd; ++i) {
      const double x = dv[static_cast<size_t>(i)];
      const double got = is_half ? decode_f16(out.data<Half>()[i].bits) : decode_bf16(out.data<BFloat16>()[i].bits);
      auto rnd = [&](double v) { return is_half ? round_f16(v) : round_bf16(v); };
      if (!same_value(got, rnd(x)) && !same_value(got, rnd(static_cast<float>(x))) && bad++ < 5) {
        msg.precision(17);
        msg << "  input " << x << ": got " << got << " want " << rnd(x) << "\n";
      }
    }
    INFO(bad << " wrong:\n" << msg.str());
    CHECK(bad == 0);
  }
  {
    Tensor out = cast(d, DType::f32);
    REQUIRE(out.dtype() == DType::f32);
    const auto o = out.to_vector<float>();
    int bad = 0;
    for (int64_t i = 0; i < nd; ++i)
      if (!same_value(o[static_cast<size_t>(i)], static_cast<float>(dv[static_cast<size_t>(i)]))) ++bad;
    INFO("f64 -> f32: " << bad << " wrong");
    CHECK(bad == 0);
    // f32 -> f64 is exact.
    const auto back = cast(f, DType::f64).to_vector<double>();
    bad = 0;
    for (size_t i = 0; i < vals.size(); ++i)
      if (!same_value(back[i], vals[i])) ++bad;
    INFO("f32 -> f64: " << bad << " wrong");
    CHECK(bad == 0);
  }
}

// ------------------------------------------------------------------------------------------------
// overflow and underflow
// ------------------------------------------------------------------------------------------------

TEST_CASE("precision: f16 overflow and underflow, bf16 range", "[precision]") {
  const double inf = std::numeric_limits<double>::infinity();
  auto f16 = [](double v) { return full(Shape{}, v, DType::f16); };
  auto bf16 = [](double v) { return full(Shape{}, v, DType::bf16); };
  SECTION("f16 overflows to inf above 65504") {
    CHECK(exp(f16(12.0)).item() == inf);  // e^12 = 162754.8
    CHECK(exp(f16(11.0)).item() == Approx(std::exp(11.0)).epsilon(0x1p-11));  // 59874: still finite
    CHECK(exp(f16(12.0)).dtype() == DType::f16);
    CHECK((f16(300.0) * f16(300.0)).item() == inf);
    CHECK((f16(-300.0) * f16(300.0)).item() == -inf);
    CHECK((f16(255.0) * f16(256.0)).item() == 65280.0);  // largest products stay finite
    CHECK(cast(full(Shape{}, 70000.0, DType::f32), DType::f16).item() == inf);
    CHECK(cast(full(Shape{}, -70000.0, DType::f32), DType::f16).item() == -inf);
    CHECK(f16(70000.0).item() == inf);
    CHECK(sum(full(Shape{2}, 40000.0, DType::f16)).item() == inf);
    CHECK(matmul(full(Shape{1, 2}, 200.0, DType::f16), full(Shape{2, 1}, 200.0, DType::f16)).item() == inf);
  }
  SECTION("bf16 keeps float's range") {
    CHECK(exp(bf16(12.0)).item() == Approx(std::exp(12.0)).epsilon(0x1p-8));
    CHECK(exp(bf16(80.0)).item() == Approx(std::exp(80.0)).epsilon(0x1p-8));
    CHECK((bf16(300.0) * bf16(300.0)).item() == Approx(90000.0).epsilon(0x1p-8));
    const double big = cast(full(Shape{}, 1e38, DType::f32), DType::bf16).item();
    CHECK(std::isfinite(big));
    CHECK(big == Approx(1e38).epsilon(0x1p-8));
    CHECK(std::isfinite((bf16(1e19) * bf16(1e19)).item()));
    CHECK((bf16(1e19) * bf16(1e19)).item() == Approx(1e38).epsilon(0x1p-7));
    CHECK(cast(full(Shape{}, 1e38, DType::f32), DType::f16).item() == inf);
  }
  SECTION("f16 underflows below 2^-25, with gradual underflow above") {
    CHECK(cast(full(Shape{}, 1e-8, DType::f32), DType::f16).item() == 0.0);
    CHECK(cast(full(Shape{}, 1e-7, DType::f32), DType::f16).item() == 0x1p-23);  // subnormal: 2 * 2^-24
    CHECK(cast(full(Shape{}, 6e-8, DType::f32), DType::f16).item() == 0x1p-24);  // smallest subnormal
    CHECK((f16(1e-4) * f16(1e-4)).item() == 0.0);
    CHECK(exp(f16(-20.0)).item() == 0x1p-24 * std::nearbyint(std::exp(-20.0) / 0x1p-24));  // 2.06e-9 -> 0
    CHECK(exp(f16(-16.0)).item() == 0x1p-24 * std::nearbyint(std::exp(-16.0) / 0x1p-24));  // 1.1e-7 -> 2^-23
    // bf16 keeps 1e-8 (normal range down to ~1e-38).
    CHECK(cast(full(Shape{}, 1e-8, DType::f32), DType::bf16).item() == Approx(1e-8).epsilon(0x1p-8));
    CHECK((bf16(1e-4) * bf16(1e-4)).item() == Approx(1e-8).epsilon(0x1p-7));
  }
  SECTION("NaN and inf propagate") {
    CHECK(std::isnan((f16(inf) - f16(inf)).item()));
    CHECK(std::isnan(log(f16(-1.0)).item()));
    CHECK(log(f16(0.0)).item() == -inf);
    CHECK(std::isnan(maximum(f16(std::nan("")), f16(1.0)).item()));
    CHECK(std::isnan(cast(full(Shape{}, std::nan(""), DType::f32), DType::bf16).item()));
  }
}
