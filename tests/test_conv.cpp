// conv2d, max/avg pooling and batch norm on the CPU: float64 gradchecks, forward against direct float64 loops,
// f16/bf16 against float64 with dtype-derived tolerances, BatchNorm running statistics against PyTorch's formula,
// float32 statistics for f16 inputs, module initialisation and a small CNN's shapes.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "nn/layers.h"

using namespace mixtape;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
using Vec = std::vector<double>;

Vec uniform_values(std::mt19937& g, int64_t n, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

/// Pairwise distinct values (>= 0.02 apart), shuffled: max pooling has no ties.
Vec distinct_values(std::mt19937& g, int64_t n) {
  Vec v(static_cast<size_t>(n));
  std::uniform_real_distribution<double> d(0.0, 0.005);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = -1.0 + 0.02 * static_cast<double>(i) + d(g);
  std::shuffle(v.begin(), v.end(), g);
  return v;
}

Tensor leaf(const Vec& v, const Shape& s) {
  Tensor t = from_vector<double>(v, s);
  t.set_requires_grad(true);
  return t;
}

void expect_gradcheck(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs) {
  clear_tape();
  const GradcheckResult r = gradcheck(f, inputs);
  INFO(what << ": " << r.message);
  CHECK(r.ok);
}

// ---- float64 references (direct loops) ----

struct ConvCase {
  int64_t n, c, h, w, oc, k, stride, pad, dil;
};

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

Vec ref_conv(const Vec& x, const Vec& w, const Vec* b, const ConvCase& c) {
  const int64_t oh = conv_out(c.h, c.k, c.stride, c.pad, c.dil), ow = conv_out(c.w, c.k, c.stride, c.pad, c.dil);
  Vec y(static_cast<size_t>(c.n * c.oc * oh * ow));
  for (int64_t n = 0; n < c.n; ++n)
    for (int64_t o = 0; o < c.oc; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = b ? (*b)[static_cast<size_t>(o)] : 0.0;
          for (int64_t ci = 0; ci < c.c; ++ci)
            for (int64_t a = 0; a < c.k; ++a)
              for (int64_t bb = 0; bb < c.k; ++bb) {
                const int64_t ih = i * c.stride - c.pad + a * c.dil, iw = j * c.stride - c.pad + bb * c.dil;
                if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
                s += x[static_cast<size_t>(((n * c.c + ci) * c.h + ih) * c.w + iw)] *
                     w[static_cast<size_t>(((o * c.c + ci) * c.k + a) * c.k + bb)];
              }
          y[static_cast<size_t>(((n * c.oc + o) * oh + i) * ow + j)] = s;
        }
  return y;
}

/// Max (is_max) or average (count_include_pad) pooling of x (planes, h, w).
Vec ref_pool(const Vec& x, int64_t planes, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p, bool is_max) {
  const int64_t oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
  Vec y;
  for (int64_t q = 0; q < planes; ++q)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0;
        const int64_t h0 = i * s - p, w0 = j * s - p;
        const int64_t h1 = std::min(h0 + k, h + p), w1 = std::min(w0 + k, w + p);
        for (int64_t a = h0; a < h1; ++a)
          for (int64_t b = w0; b < w1; ++b) {
            if (a < 0 || a >= h || b < 0 || b >= w) continue;
            const double v = x[static_cast<size_t>((q * h + a) * w + b)];
            best = std::max(best, v);
            sum += v;
          }
        y.push_back(is_max ? best : sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
  return y;
}

/// Training-mode batch norm of x (n, c, l) with batch statistics.
Vec ref_batch_norm(const Vec& x, int64_t n, int64_t c, int64_t l, const Vec& gamma, const Vec& beta, double eps,
                   Vec* mean_out = nullptr, Vec* var_out = nullptr) {
  Vec y(x.size());
  for (int64_t ch = 0; ch < c; ++ch) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < l; ++j) m += x[static_cast<size_t>((i * c + ch) * l + j)];
    m /= static_cast<double>(n * l);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < l; ++j) v += std::pow(x[static_cast<size_t>((i * c + ch) * l + j)] - m, 2);
    v /= static_cast<double>(n * l);
    if (mean_out) mean_out->push_back(m);
    if (var_out) var_out->push_back(v);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < l; ++j) {
        const size_t k = static_cast<size_t>((i * c + ch) * l + j);
        y[k] = (x[k] - m) / std::sqrt(v + eps) * gamma[static_cast<size_t>(ch)] + beta[static_cast<size_t>(ch)];
      }
  }
  return y;
}

void check_close(const std::string& what, const Vec& got, const Vec& want, double rtol, double atol) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]))) {
      if (bad++ < 5) UNSCOPED_INFO(what << " [" << i << "] got " << got[i] << " want " << want[i]);
    }
  INFO(what << ": " << bad << " of " << got.size() << " out of tolerance");
  CHECK(bad == 0);
}

const std::vector<ConvCase> kConvCases = {
    {2, 3, 5, 6, 4, 3, 1, 0, 1}, {2, 2, 6, 5, 3, 3, 1, 1, 1}, {1, 3, 7, 7, 2, 3, 2, 1, 1},
    {2, 2, 7, 6, 3, 2, 1, 0, 2}, {1, 2, 8, 8, 2, 3, 2, 2, 2}, {3, 1, 4, 4, 2, 1, 1, 0, 1},
};

std::string conv_name(const ConvCase& c) {
  return "conv x(" + std::to_string(c.n) + "," + std::to_string(c.c) + "," + std::to_string(c.h) + "," +
         std::to_string(c.w) + ") k" + std::to_string(c.k) + " oc" + std::to_string(c.oc) + " s" +
         std::to_string(c.stride) + " p" + std::to_string(c.pad) + " d" + std::to_string(c.dil);
}

}  // namespace

TEST_CASE("conv2d forward matches a direct float64 loop", "[conv]") {
  std::mt19937 g(11);
  for (const ConvCase& c : kConvCases)
    for (bool with_bias : {true, false}) {
      const Vec x = uniform_values(g, c.n * c.c * c.h * c.w, -1, 1), w = uniform_values(g, c.oc * c.c * c.k * c.k, -1, 1),
                b = uniform_values(g, c.oc, -1, 1);
      const Tensor y = conv2d(from_vector<double>(x, Shape{c.n, c.c, c.h, c.w}),
                              from_vector<double>(w, Shape{c.oc, c.c, c.k, c.k}),
                              with_bias ? from_vector<double>(b, Shape{c.oc}) : Tensor(), c.stride, c.pad, c.dil);
      const int64_t oh = conv_out(c.h, c.k, c.stride, c.pad, c.dil), ow = conv_out(c.w, c.k, c.stride, c.pad, c.dil);
      CHECK(y.shape() == Shape{c.n, c.oc, oh, ow});
      check_close(conv_name(c), y.to_vector<double>(), ref_conv(x, w, with_bias ? &b : nullptr, c), 1e-12, 1e-12);
      // f32 too
      const Tensor y32 = conv2d(from_vector<double>(x, Shape{c.n, c.c, c.h, c.w}).to(DType::f32),
                                from_vector<double>(w, Shape{c.oc, c.c, c.k, c.k}).to(DType::f32),
                                with_bias ? from_vector<double>(b, Shape{c.oc}).to(DType::f32) : Tensor(), c.stride,
                                c.pad, c.dil);
      CHECK(y32.dtype() == DType::f32);
      check_close(conv_name(c) + " f32", y32.to_vector<double>(), ref_conv(x, w, with_bias ? &b : nullptr, c), 1e-5, 1e-5);
    }
}

TEST_CASE("gradcheck: conv2d over strides, paddings, dilations, with and without bias", "[conv][gradcheck]") {
  std::mt19937 g(12);
  for (const ConvCase& c : kConvCases) {
    Tensor x = leaf(uniform_values(g, c.n * c.c * c.h * c.w, -1, 1), Shape{c.n, c.c, c.h, c.w});
    Tensor w = leaf(uniform_values(g, c.oc * c.c * c.k * c.k, -1, 1), Shape{c.oc, c.c, c.k, c.k});
    Tensor b = leaf(uniform_values(g, c.oc, -1, 1), Shape{c.oc});
    const int64_t s = c.stride, p = c.pad, d = c.dil;
    expect_gradcheck(conv_name(c) + " bias",
                     [s, p, d](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], s, p, d); }, {x, w, b});
    expect_gradcheck(conv_name(c) + " no bias",
                     [s, p, d](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), s, p, d); }, {x, w});
  }
}

TEST_CASE("max_pool2d and avg_pool2d forward match direct float64 loops", "[conv][pool]") {
  std::mt19937 g(13);
  struct P { int64_t n, c, h, w, k, s, p; };
  for (const P& q : {P{2, 3, 6, 6, 2, 2, 0}, P{1, 2, 7, 5, 3, 2, 1}, P{2, 1, 5, 5, 3, 1, 1}, P{1, 2, 6, 7, 2, 1, 1},
                     P{1, 1, 4, 4, 4, 4, 2}}) {
    const Vec x = distinct_values(g, q.n * q.c * q.h * q.w);
    const Tensor xt = from_vector<double>(x, Shape{q.n, q.c, q.h, q.w});
    const std::string what = "pool x" + xt.shape().to_string() + " k" + std::to_string(q.k) + " s" +
                             std::to_string(q.s) + " p" + std::to_string(q.p);
    const Tensor mx = max_pool2d(xt, q.k, q.s, q.p), av = avg_pool2d(xt, q.k, q.s, q.p);
    const int64_t oh = (q.h + 2 * q.p - q.k) / q.s + 1, ow = (q.w + 2 * q.p - q.k) / q.s + 1;
    CHECK(mx.shape() == Shape{q.n, q.c, oh, ow});
    CHECK(av.shape() == Shape{q.n, q.c, oh, ow});
    check_close(what + " max", mx.to_vector<double>(), ref_pool(x, q.n * q.c, q.h, q.w, q.k, q.s, q.p, true), 0, 0);
    check_close(what + " avg", av.to_vector<double>(), ref_pool(x, q.n * q.c, q.h, q.w, q.k, q.s, q.p, false), 1e-14, 1e-14);
  }
  // stride defaults to the kernel
  const Tensor x = from_vector<double>(distinct_values(g, 16), Shape{1, 1, 4, 4});
  CHECK(max_pool2d(x, 2).shape() == Shape{1, 1, 2, 2});
  CHECK(avg_pool2d(x, 2).shape() == Shape{1, 1, 2, 2});
}

TEST_CASE("gradcheck: max_pool2d (distinct values) and avg_pool2d", "[conv][pool][gradcheck]") {
  std::mt19937 g(14);
  struct P { int64_t n, c, h, w, k, s, p; };
  for (const P& q : {P{2, 2, 6, 6, 2, 2, 0}, P{1, 2, 7, 5, 3, 2, 1}, P{1, 1, 5, 5, 3, 1, 1}}) {
    const Shape s{q.n, q.c, q.h, q.w};
    Tensor x = leaf(distinct_values(g, s.numel()), s);
    const int64_t k = q.k, st = q.s, p = q.p;
    expect_gradcheck("max_pool2d " + s.to_string(),
                     [k, st, p](const std::vector<Tensor>& in) { return max_pool2d(in[0], k, st, p); }, {x});
    expect_gradcheck("avg_pool2d " + s.to_string(),
                     [k, st, p](const std::vector<Tensor>& in) { return avg_pool2d(in[0], k, st, p); }, {x});
  }
}

TEST_CASE("batch_norm forward (training and eval) matches float64 references", "[conv][batchnorm]") {
  std::mt19937 g(15);
  for (const Shape& s : {Shape{4, 3, 5, 5}, Shape{6, 4}, Shape{3, 2, 7}}) {
    const int64_t n = s[0], c = s[1], l = s.numel() / (n * c);
    const Vec x = uniform_values(g, s.numel(), -2, 3), gamma = uniform_values(g, c, 0.5, 1.5),
              beta = uniform_values(g, c, -1, 1);
    const Tensor xt = from_vector<double>(x, s);
    Tensor rm = zeros(Shape{c}, DType::f64), rv = ones(Shape{c}, DType::f64);
    const Tensor gt = from_vector<double>(gamma, Shape{c}), bt = from_vector<double>(beta, Shape{c});
    const Tensor y = batch_norm(xt, rm, rv, gt, bt, true, 0.1, 1e-5);
    check_close("batch_norm train " + s.to_string(), y.to_vector<double>(), ref_batch_norm(x, n, c, l, gamma, beta, 1e-5),
                1e-10, 1e-10);
    // eval with the running statistics
    const auto m = rm.to_vector<double>(), v = rv.to_vector<double>();
    Vec want(x.size());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t j = 0; j < l; ++j) {
          const size_t k = static_cast<size_t>((i * c + ch) * l + j), q = static_cast<size_t>(ch);
          want[k] = (x[k] - m[q]) / std::sqrt(v[q] + 1e-5) * gamma[q] + beta[q];
        }
    const Tensor ye = batch_norm(xt, rm, rv, gt, bt, false, 0.1, 1e-5);
    check_close("batch_norm eval " + s.to_string(), ye.to_vector<double>(), want, 1e-12, 1e-12);
    CHECK(rm.to_vector<double>() == m);  // eval leaves the running statistics alone
  }
}

TEST_CASE("gradcheck: batch_norm in training and eval, 4-D and 2-D", "[conv][batchnorm][gradcheck]") {
  std::mt19937 g(16);
  for (const Shape& s : {Shape{3, 2, 3, 4}, Shape{5, 3}, Shape{2, 3, 4}}) {
    const int64_t c = s[1];
    Tensor x = leaf(uniform_values(g, s.numel(), -2, 2), s);
    Tensor w = leaf(uniform_values(g, c, 0.5, 1.5), Shape{c});
    Tensor b = leaf(uniform_values(g, c, -1, 1), Shape{c});
    Tensor rm = from_vector<double>(uniform_values(g, c, -0.5, 0.5), Shape{c});
    Tensor rv = from_vector<double>(uniform_values(g, c, 0.5, 2), Shape{c});
    for (bool training : {true, false}) {
      const std::string what = std::string("batch_norm ") + (training ? "train " : "eval ") + s.to_string();
      expect_gradcheck(what, [rm, rv, training](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm, rv, in[1], in[2], training, 0.1, 1e-5);
      }, {x, w, b});
      expect_gradcheck(what + " no affine", [rm, rv, training](const std::vector<Tensor>& in) {
        return batch_norm(in[0], rm, rv, Tensor(), Tensor(), training, 0.1, 1e-5);
      }, {x});
    }
  }
}

TEST_CASE("f16 and bf16 conv, pooling and batch norm agree with float64 within the dtype's precision",
          "[conv][precision]") {
  std::mt19937 g(17);
  for (auto [dtype, u] : {std::pair{DType::f16, 0x1p-11}, std::pair{DType::bf16, 0x1p-8}}) {
    INFO(dtype_name(dtype));
    // Inputs exactly representable in the dtype, so the only errors are the op's own.
    auto rounded = [&, dtype = dtype](int64_t n, double lo, double hi) {  // clang 14: no captured bindings
      return from_vector<double>(uniform_values(g, n, lo, hi), Shape{n}).to(dtype).to(DType::f64).to_vector<double>();
    };
    const ConvCase c{2, 3, 6, 6, 4, 3, 1, 1, 1};
    const Vec x = rounded(c.n * c.c * c.h * c.w, -1, 1), w = rounded(c.oc * c.c * 9, -1, 1), b = rounded(c.oc, -1, 1);
    const Tensor y = conv2d(from_vector<double>(x, Shape{c.n, c.c, c.h, c.w}).to(dtype),
                            from_vector<double>(w, Shape{c.oc, c.c, 3, 3}).to(dtype),
                            from_vector<double>(b, Shape{c.oc}).to(dtype), 1, 1, 1);
    CHECK(y.dtype() == dtype);
    // float accumulation of 27 products (error ~ 27 * 2^-24 * sum|x w|) plus one rounding to the dtype.
    const Vec ref = ref_conv(x, w, &b, c);
    Vec absref = ref_conv([&] { Vec a = x; for (auto& v : a) v = std::abs(v); return a; }(),
                          [&] { Vec a = w; for (auto& v : a) v = std::abs(v); return a; }(), nullptr, c);
    const Vec got = y.to_vector<double>();
    int bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double tol = u * std::abs(ref[i]) + 40 * 0x1p-24 * (absref[i] + 1) + 0x1p-24;
      if (std::abs(got[i] - ref[i]) > tol) ++bad;
    }
    CHECK(bad == 0);
    // pooling: max is exact, avg rounds once
    const Tensor xp = from_vector<double>(x, Shape{c.n, c.c, c.h, c.w});
    check_close("max_pool2d", max_pool2d(xp.to(dtype), 2).to_vector<double>(), ref_pool(x, 6, 6, 6, 2, 2, 0, true), 0, 0);
    check_close("avg_pool2d", avg_pool2d(xp.to(dtype), 3, 1, 1).to_vector<double>(),
                ref_pool(x, 6, 6, 6, 3, 1, 1, false), u, 1e-7);
    // batch norm in the input dtype with float32 statistics: error ~ one rounding of the output (+ float32 math)
    const Vec gamma(3, 1.0), beta(3, 0.0);
    Tensor rm = zeros(Shape{3}), rv = ones(Shape{3});
    const Tensor yb = batch_norm(xp.to(dtype), rm, rv, Tensor(), Tensor(), true);
    CHECK(yb.dtype() == dtype);
    check_close("batch_norm", yb.to_vector<double>(), ref_batch_norm(x, c.n, c.c, 36, gamma, beta, 1e-5), u, 1e-5);
  }
}

TEST_CASE("batch_norm's running statistics follow PyTorch's update", "[conv][batchnorm]") {
  std::mt19937 g(18);
  const Shape s{4, 3, 2, 2};
  const int64_t n = 4, c = 3, l = 4;
  nn::BatchNorm2d bn(3, 1e-5, 0.1);
  CHECK(bn.running_mean.to_vector<double>() == Vec{0, 0, 0});
  CHECK(bn.running_var.to_vector<double>() == Vec{1, 1, 1});
  Vec rm(3, 0.0), rv(3, 1.0);
  for (int step = 0; step < 3; ++step) {
    const Vec x = uniform_values(g, s.numel(), -1 + step, 2 + 2 * step);
    Vec mean, var;
    ref_batch_norm(x, n, c, l, Vec(3, 1.0), Vec(3, 0.0), 1e-5, &mean, &var);
    for (int ch = 0; ch < 3; ++ch) {
      rm[static_cast<size_t>(ch)] = 0.9 * rm[static_cast<size_t>(ch)] + 0.1 * mean[static_cast<size_t>(ch)];
      const double m = static_cast<double>(n * l);
      rv[static_cast<size_t>(ch)] = 0.9 * rv[static_cast<size_t>(ch)] + 0.1 * var[static_cast<size_t>(ch)] * m / (m - 1);
    }
    bn.forward(from_vector<double>(x, s).to(DType::f32));
    check_close("running_mean step " + std::to_string(step), bn.running_mean.to_vector<double>(), rm, 1e-6, 1e-6);
    check_close("running_var step " + std::to_string(step), bn.running_var.to_vector<double>(), rv, 1e-6, 1e-6);
  }
  CHECK(bn.named_buffers().size() == 2);
  CHECK(bn.state_dict().count("running_mean") == 1);
  // eval: running statistics used, and not updated
  bn.eval();
  const Vec x = uniform_values(g, s.numel(), -1, 1);
  const Tensor y = bn.forward(from_vector<double>(x, s).to(DType::f32));
  const auto yv = y.to_vector<double>();
  for (int64_t i = 0; i < s.numel(); ++i) {
    const size_t ch = static_cast<size_t>((i / l) % c);
    CHECK(yv[static_cast<size_t>(i)] ==
          Approx((static_cast<double>(static_cast<float>(x[static_cast<size_t>(i)])) - rm[ch]) / std::sqrt(rv[ch] + 1e-5))
              .epsilon(1e-5).margin(1e-6));
  }
  check_close("eval keeps running_mean", bn.running_mean.to_vector<double>(), rm, 1e-6, 1e-6);
  // BatchNorm1d on (N, C)
  nn::BatchNorm1d bn1(3);
  const Tensor y1 = bn1.forward(from_vector<double>(uniform_values(g, 15, -1, 1), Shape{5, 3}).to(DType::f32));
  CHECK(y1.shape() == Shape{5, 3});
  CHECK_THROWS(bn1.forward(zeros(Shape{2, 3, 2, 2})));
}

TEST_CASE("batch_norm of a large-magnitude f16 input stays finite (float32 statistics)", "[conv][batchnorm][precision]") {
  std::mt19937 g(19);
  const Shape s{8, 2, 3, 3};
  // values ~3e4: their squares (~1e9) and their sum over a channel (~2e6) overflow f16 (max 65504)
  const Vec x = uniform_values(g, s.numel(), 2.5e4, 3.5e4);
  const Vec xr = from_vector<double>(x, s).to(DType::f16).to(DType::f64).to_vector<double>();
  nn::BatchNorm2d bn(2);
  Tensor y;
  {
    amp::Autocast ac(Device::cpu(), DType::f16);
    y = bn.forward(from_vector<double>(x, s).to(DType::f16));
  }
  REQUIRE(y.dtype() == DType::f16);
  CHECK(bn.running_mean.dtype() == DType::f32);
  const Vec yv = y.to_vector<double>();
  for (double v : yv) REQUIRE(std::isfinite(v));
  check_close("f16 batch_norm", yv, ref_batch_norm(xr, 8, 2, 9, Vec(2, 1.0), Vec(2, 0.0), 1e-5), 0x1p-11, 2e-3);
  for (double v : bn.running_mean.to_vector<double>()) CHECK(std::abs(v - 3000.0) < 200.0);
  for (double v : bn.running_var.to_vector<double>()) CHECK(std::isfinite(v));
  // backward through it: gradients finite, the affine parameters' gradients float32
  clear_tape();
  Tensor xin = from_vector<double>(x, s).to(DType::f16);
  xin.set_requires_grad(true);
  Tensor loss;
  {
    amp::Autocast ac(Device::cpu(), DType::f16);
    loss = sum(mul(bn.forward(xin), from_vector<double>(uniform_values(g, s.numel(), -1, 1), s).to(DType::f16)));
  }
  backward(loss);
  REQUIRE(bn.weight.grad().defined());
  CHECK(bn.weight.grad().dtype() == DType::f32);
  CHECK(xin.grad().dtype() == DType::f16);
  for (double v : xin.grad().to_vector<double>()) REQUIRE(std::isfinite(v));
  for (double v : bn.weight.grad().to_vector<double>()) REQUIRE(std::isfinite(v));
}

TEST_CASE("Conv2d and BatchNorm initialise like PyTorch", "[conv][nn]") {
  Generator gen(5);
  nn::Conv2d conv(4, 8, 3, 1, 1, 1, true, &gen);
  CHECK(conv.weight.shape() == Shape{8, 4, 3, 3});
  CHECK(conv.bias.shape() == Shape{8});
  CHECK(conv.parameters().size() == 2);
  const double bound = 1.0 / std::sqrt(36.0);
  double wmin = 1, wmax = -1;
  for (double v : conv.weight.to_vector<double>()) {
    wmin = std::min(wmin, v);
    wmax = std::max(wmax, v);
  }
  CHECK(wmin >= -bound);
  CHECK(wmax <= bound);
  CHECK(wmin < -0.8 * bound);  // actually spread over the interval
  CHECK(wmax > 0.8 * bound);
  for (double v : conv.bias.to_vector<double>()) CHECK(std::abs(v) <= bound);
  nn::Conv2d nobias(2, 3, 5, 2, 0, 1, false);
  CHECK(nobias.parameters().size() == 1);
  CHECK_FALSE(nobias.bias.defined());
  nn::BatchNorm2d bn(5);
  CHECK(bn.weight.to_vector<double>() == Vec(5, 1.0));
  CHECK(bn.bias.to_vector<double>() == Vec(5, 0.0));
  CHECK(bn.parameters().size() == 2);
}

TEST_CASE("a small CNN runs forward and backward with the expected shapes", "[conv][nn]") {
  clear_tape();
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Conv2d>(1, 4, 3, 1, 1))
      .add(std::make_shared<nn::BatchNorm2d>(4))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::MaxPool2d>(2))
      .add(std::make_shared<nn::AvgPool2d>(2))
      .add(std::make_shared<nn::Flatten>())
      .add(std::make_shared<nn::Linear>(4 * 2 * 2, 3));
  Generator gen(1);
  const Tensor x = rand(Shape{5, 1, 8, 8}, DType::f32, Device::cpu(), &gen, -1, 1);
  const Tensor labels = from_vector<int64_t>({0, 1, 2, 0, 1}, Shape{5});
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor loss;
    {
      amp::Autocast ac(Device::cpu(), dt, dt != DType::f32);
      const Tensor logits = net->forward(x);
      CHECK(logits.shape() == Shape{5, 3});
      loss = cross_entropy(logits, labels);
    }
    for (const Tensor& p : net->parameters()) p.set_grad(Tensor());
    backward(loss);
    for (const auto& [name, p] : net->named_parameters()) {
      INFO(name);
      REQUIRE(p.grad().defined());
      CHECK(p.grad().shape() == p.shape());
      CHECK(p.grad().dtype() == DType::f32);
    }
  }
}

TEST_CASE("conv/pool/batch_norm reject bad shapes with clear messages", "[conv][errors]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(conv2d(zeros(Shape{1, 3, 5, 5}), zeros(Shape{2, 4, 3, 3})), Contains("channels"));
  CHECK_THROWS_WITH(conv2d(zeros(Shape{3, 5, 5}), zeros(Shape{2, 3, 3, 3})), Contains("(N, C, H, W)"));
  CHECK_THROWS_WITH(conv2d(zeros(Shape{1, 3, 2, 2}), zeros(Shape{2, 3, 3, 3})), Contains("larger than"));
  CHECK_THROWS_WITH(max_pool2d(zeros(Shape{1, 1, 4, 4}), 3, 1, 2), Contains("half the kernel"));
  CHECK_THROWS_WITH(batch_norm(zeros(Shape{4, 3}), zeros(Shape{2}), ones(Shape{2}), Tensor(), Tensor(), true),
                    Contains("running_mean"));
  CHECK_THROWS_WITH(batch_norm(zeros(Shape{1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                    Contains("more than 1 value"));
}
