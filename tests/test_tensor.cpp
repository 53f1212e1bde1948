// Tensor: factories, random numbers, views, conversions, printing, versions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "autograd/ops.h"
#include "core/random.h"
#include "core/tensor.h"

using namespace mixtape;
using Catch::Matchers::Contains;

namespace {
struct Moments {
  double mean = 0, var = 0;
};
Moments moments(const std::vector<double>& v) {
  Moments m;
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size() - 1);
  return m;
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Shape, Device, dtype basics
// ---------------------------------------------------------------------------------------------

TEST_CASE("Shape: numel, indexing, comparison, axis normalisation", "[tensor][shape]") {
  const Shape s{2, 3, 4};
  CHECK(s.size() == 3);
  CHECK(s.numel() == 24);
  CHECK(s[0] == 2);
  CHECK(s[-1] == 4);
  CHECK(s.vec() == std::vector<int64_t>{2, 3, 4});
  CHECK(Shape{}.numel() == 1);
  CHECK(Shape{}.size() == 0);
  CHECK(Shape{3, 0}.numel() == 0);
  CHECK(Shape{2, 3} == Shape(std::vector<int64_t>{2, 3}));
  CHECK(Shape{2, 3} != Shape{3, 2});
  CHECK(Shape{2, 3} != Shape{2, 3, 1});
  CHECK(s.axis(-1, "t") == 2);
  CHECK(s.axis(-3, "t") == 0);
  CHECK(s.axis(1, "t") == 1);
  CHECK_THROWS_AS(s.axis(3, "t"), Error);
  CHECK_THROWS_AS(s.axis(-4, "t"), Error);
  CHECK(s.to_string() == "(2, 3, 4)");
  Shape p;
  p.push_back(5);
  p.push_back(6);
  CHECK(p == Shape{5, 6});
}

TEST_CASE("broadcast_shapes follows NumPy rules", "[tensor][shape]") {
  CHECK(broadcast_shapes(Shape{2, 3, 4}, Shape{3, 1}, "t") == Shape{2, 3, 4});
  CHECK(broadcast_shapes(Shape{1}, Shape{2, 3}, "t") == Shape{2, 3});
  CHECK(broadcast_shapes(Shape{4, 1, 5}, Shape{1, 3, 1}, "t") == Shape{4, 3, 5});
  CHECK(broadcast_shapes(Shape{}, Shape{2, 3}, "t") == Shape{2, 3});
  CHECK(broadcast_shapes(Shape{}, Shape{}, "t") == Shape{});
  CHECK(broadcast_shapes(Shape{0, 1}, Shape{1, 3}, "t") == Shape{0, 3});
  CHECK_THROWS_AS(broadcast_shapes(Shape{2, 3}, Shape{4}, "t"), Error);
  CHECK_THROWS_AS(broadcast_shapes(Shape{2, 3}, Shape{3, 3}, "t"), Error);
}

TEST_CASE("Device and dtype names parse and print", "[tensor][device]") {
  CHECK(Device::cpu().to_string() == "cpu");
  CHECK(Device::cuda(1).to_string() == "cuda:1");
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK_THROWS_AS(Device::parse("tpu"), Error);
  CHECK(parse_dtype("f32") == DType::f32);
  CHECK(parse_dtype("float16") == DType::f16);
  CHECK(parse_dtype("half") == DType::f16);
  CHECK(parse_dtype("bfloat16") == DType::bf16);
  CHECK(parse_dtype("bf16") == DType::bf16);
  CHECK(parse_dtype("f64") == DType::f64);
  CHECK(parse_dtype("i64") == DType::i64);
  CHECK(parse_dtype("u8") == DType::u8);
  CHECK_THROWS_AS(parse_dtype("f8"), Error);
}

// ---------------------------------------------------------------------------------------------
// factories
// ---------------------------------------------------------------------------------------------

TEST_CASE("zeros / ones / full in every dtype", "[tensor][factory]") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::u8}) {
    INFO("dtype " << dtype_name(dt));
    const Tensor z = zeros(Shape{2, 3}, dt);
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.dtype() == dt);
    CHECK(z.device() == Device::cpu());
    CHECK(z.dim() == 2);
    CHECK(z.numel() == 6);
    CHECK(z.nbytes() == 6 * dtype_size(dt));
    for (double v : z.to_vector<double>()) CHECK(v == 0.0);
    const Tensor o = ones(Shape{4}, dt);
    CHECK(o.dtype() == dt);
    for (double v : o.to_vector<double>()) CHECK(v == 1.0);
    const Tensor f = full(Shape{3, 1, 2}, 7.0, dt);
    CHECK(f.shape() == Shape{3, 1, 2});
    for (double v : f.to_vector<double>()) CHECK(v == 7.0);
  }
  // raw bits of the 16-bit types
  CHECK(ones(Shape{1}, DType::f16).data<Half>()[0].bits == 0x3c00);
  CHECK(ones(Shape{1}, DType::bf16).data<BFloat16>()[0].bits == 0x3f80);
  CHECK(zeros(Shape{1}, DType::f16).data<Half>()[0].bits == 0x0000);
  // full rounds the value into the dtype
  CHECK(full(Shape{2}, 0.1, DType::f16).data<Half>()[1].bits == float_to_half_bits(0.1f));
  CHECK(full(Shape{2}, 0.1, DType::bf16).data<BFloat16>()[1].bits == float_to_bfloat16_bits(0.1f));
  CHECK(full(Shape{2}, 0.1, DType::f64).data<double>()[0] == 0.1);
  CHECK(full(Shape{1}, 1e6, DType::f16).data<Half>()[0].bits == 0x7c00);  // overflows f16
  CHECK(full(Shape{2}, -3.0, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{-3, -3});
  CHECK(full(Shape{1}, 200.0, DType::u8).to_vector<uint8_t>()[0] == 200);
  // scalar_tensor is 0-d
  const Tensor s = scalar_tensor(2.5, DType::f16);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.dtype() == DType::f16);
  CHECK(s.item() == 2.5);
}

TEST_CASE("zeros_like / ones_like / empty_like copy shape and dtype", "[tensor][factory]") {
  const Tensor t = full(Shape{2, 5}, 3.0, DType::bf16);
  const Tensor z = zeros_like(t), o = ones_like(t), e = empty_like(t);
  for (const Tensor* x : {&z, &o, &e}) {
    CHECK(x->shape() == t.shape());
    CHECK(x->dtype() == DType::bf16);
    CHECK(x->raw_data() != t.raw_data());
  }
  for (double v : z.to_vector<double>()) CHECK(v == 0.0);
  for (double v : o.to_vector<double>()) CHECK(v == 1.0);
}

TEST_CASE("arange", "[tensor][factory]") {
  const Tensor a = arange(int64_t{5});
  CHECK(a.shape() == Shape{5});
  CHECK(a.dtype() == DType::f32);
  CHECK(a.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4});
  CHECK(arange(0.0, 1.0, 0.25).to_vector<double>() == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(arange(2.0, 11.0, 3.0, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{2, 5, 8});
  CHECK(arange(2.0, 12.0, 3.0, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{2, 5, 8, 11});
  CHECK(arange(5.0, 0.0, -1.5).to_vector<double>() == std::vector<double>{5, 3.5, 2, 0.5});
  CHECK(arange(int64_t{4}, DType::f16).to_vector<double>() == std::vector<double>{0, 1, 2, 3});
  CHECK(arange(int64_t{3}, DType::f64).dtype() == DType::f64);
  CHECK(arange(3.0, 3.0).numel() == 0);
  // long f64 ranges are computed as start + i*step (no accumulated drift)
  const std::vector<double> r = arange(0.0, 1.0, 0.001, DType::f64).to_vector<double>();
  REQUIRE(r.size() == 1000);
  for (size_t i = 0; i < r.size(); i += 97) CHECK(r[i] == Approx(i * 0.001).margin(1e-12));
}

TEST_CASE("from_vector and to_vector", "[tensor][factory]") {
  const Tensor t = from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.dtype() == DType::f32);
  CHECK(t.data<float>()[4] == 5.0f);  // row-major
  CHECK(t.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(t.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 4, 5, 6});

  const Tensor one_d = from_vector(std::vector<double>{0.5, -1.5});
  CHECK(one_d.shape() == Shape{2});
  CHECK(one_d.dtype() == DType::f64);

  const Tensor l = from_vector(std::vector<int64_t>{3, -1, 7}, Shape{3});
  CHECK(l.dtype() == DType::i64);
  CHECK(l.to_vector<int64_t>() == std::vector<int64_t>{3, -1, 7});

  // conversion into another dtype on the way in
  const Tensor h = from_vector(std::vector<double>{1.0, 0.1, 70000.0, -2.5}, Shape{2, 2}, DType::f16);
  CHECK(h.dtype() == DType::f16);
  const std::vector<Half> hv = h.to_vector<Half>();
  CHECK(hv[0].bits == 0x3c00);
  CHECK(hv[1].bits == float_to_half_bits(0.1f));
  CHECK(hv[2].bits == 0x7c00);
  CHECK(hv[3].bits == 0xc100);
  const Tensor b = from_vector(std::vector<float>{3.14159265f}, Shape{1}, DType::bf16);
  CHECK(b.to_vector<BFloat16>()[0].bits == 0x4049);
  CHECK(b.to_vector<float>()[0] == 3.140625f);

  const Tensor u = from_vector(std::vector<uint8_t>{0, 255, 7}, Shape{3});
  CHECK(u.dtype() == DType::u8);
  CHECK(u.to_vector<float>() == std::vector<float>{0, 255, 7});

  // a 0-d tensor from one value
  const Tensor s = from_vector(std::vector<float>{4.0f}, Shape{});
  CHECK(s.dim() == 0);
  CHECK(s.item() == 4.0);
}

TEST_CASE("rand: uniform in low..high (high excluded) with the right moments", "[tensor][random]") {
  const int64_t n = 200000;
  Generator gen(123);
  const std::vector<double> v = rand(Shape{n}, DType::f32, Device::cpu(), &gen).to_vector<double>();
  REQUIRE(v.size() == static_cast<size_t>(n));
  CHECK(*std::min_element(v.begin(), v.end()) >= 0.0);
  CHECK(*std::max_element(v.begin(), v.end()) < 1.0);
  const Moments m = moments(v);
  // sd of U(0,1) = 1/sqrt(12); the sample mean's sd is that / sqrt(n): allow 6 sigma
  CHECK(std::abs(m.mean - 0.5) < 6.0 * std::sqrt(1.0 / 12.0 / n));
  // var of the sample variance of U(0,1): (mu4 - sigma^4)/n = (1/80 - 1/144)/n
  CHECK(std::abs(m.var - 1.0 / 12.0) < 6.0 * std::sqrt((1.0 / 80 - 1.0 / 144) / n));
  // each decile holds ~10% (binomial sd sqrt(0.09/n))
  std::vector<int> bins(10, 0);
  for (double x : v) ++bins[static_cast<size_t>(x * 10)];
  for (int b : bins) CHECK(std::abs(b / static_cast<double>(n) - 0.1) < 6.0 * std::sqrt(0.09 / n));

  const std::vector<double> w = rand(Shape{n}, DType::f64, Device::cpu(), &gen, -2.0, 3.0).to_vector<double>();
  CHECK(*std::min_element(w.begin(), w.end()) >= -2.0);
  CHECK(*std::max_element(w.begin(), w.end()) < 3.0);
  CHECK(std::abs(moments(w).mean - 0.5) < 6.0 * 5.0 * std::sqrt(1.0 / 12.0 / n));
}

TEST_CASE("rand in f16 and bf16 stays below 1 after rounding", "[tensor][random]") {
  // The largest floats below 1 round to 1.0 in f16/bf16; a uniform draw must still exclude 1.
  for (DType dt : {DType::f16, DType::bf16}) {
    INFO("dtype " << dtype_name(dt));
    Generator gen(9);
    const Tensor r = rand(Shape{100000}, dt, Device::cpu(), &gen);
    CHECK(r.dtype() == dt);
    const std::vector<double> v = r.to_vector<double>();
    CHECK(*std::min_element(v.begin(), v.end()) >= 0.0);
    CHECK(*std::max_element(v.begin(), v.end()) < 1.0);
    CHECK(std::abs(moments(v).mean - 0.5) < 0.01);
  }
}

TEST_CASE("randn: standard normal moments and shape of the distribution", "[tensor][random]") {
  const int64_t n = 200000;
  Generator gen(2024);
  const Tensor t = randn(Shape{400, 500}, DType::f32, Device::cpu(), &gen);
  CHECK(t.shape() == Shape{400, 500});
  const std::vector<double> v = t.to_vector<double>();
  const Moments m = moments(v);
  CHECK(std::abs(m.mean) < 6.0 / std::sqrt(n));
  // var of the sample variance of N(0,1) is 2/(n-1)
  CHECK(std::abs(m.var - 1.0) < 6.0 * std::sqrt(2.0 / n));
  // P(|x| < 1) = 0.682689..., P(|x| < 2) = 0.954500...; binomial sd sqrt(p(1-p)/n)
  double in1 = 0, in2 = 0;
  for (double x : v) {
    in1 += std::abs(x) < 1.0;
    in2 += std::abs(x) < 2.0;
  }
  CHECK(std::abs(in1 / n - 0.6826894921) < 6.0 * std::sqrt(0.6827 * 0.3173 / n));
  CHECK(std::abs(in2 / n - 0.9544997361) < 6.0 * std::sqrt(0.9545 * 0.0455 / n));
  for (double x : v) REQUIRE(std::isfinite(x));

  const std::vector<double> w = randn(Shape{n}, DType::f64, Device::cpu(), &gen, 3.0, 2.0).to_vector<double>();
  const Moments mw = moments(w);
  CHECK(std::abs(mw.mean - 3.0) < 6.0 * 2.0 / std::sqrt(n));
  CHECK(std::abs(std::sqrt(mw.var) - 2.0) < 6.0 * 2.0 * std::sqrt(0.5 / n));

  const Tensor h = randn(Shape{20000}, DType::bf16, Device::cpu(), &gen);
  CHECK(h.dtype() == DType::bf16);
  CHECK(std::abs(moments(h.to_vector<double>()).mean) < 6.0 / std::sqrt(20000.0));
}

TEST_CASE("random draws are reproducible from a seed and follow the counter-based formula", "[tensor][random]") {
  Generator g1(42), g2(42), g3(43);
  const std::vector<float> a = rand(Shape{1000}, DType::f32, Device::cpu(), &g1).to_vector<float>();
  const std::vector<float> b = rand(Shape{1000}, DType::f32, Device::cpu(), &g2).to_vector<float>();
  const std::vector<float> c = rand(Shape{1000}, DType::f32, Device::cpu(), &g3).to_vector<float>();
  CHECK(a == b);
  CHECK(a != c);
  // each draw advances the generator: the next draw differs from the first
  CHECK(g1.offset() == 1);
  const std::vector<float> a2 = rand(Shape{1000}, DType::f32, Device::cpu(), &g1).to_vector<float>();
  CHECK(a2 != a);
  // element i of draw k is random_uniform(seed, k, i) (so CUDA can reproduce it)
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i] == random_uniform(42, 0, i));
    REQUIRE(a2[i] == random_uniform(42, 1, i));
  }
  // restarting the seed restarts the sequence
  g1.manual_seed(42);
  CHECK(rand(Shape{1000}, DType::f32, Device::cpu(), &g1).to_vector<float>() == a);

  Generator n1(7);
  const std::vector<float> nv = randn(Shape{500}, DType::f32, Device::cpu(), &n1).to_vector<float>();
  for (size_t i = 0; i < nv.size(); ++i) REQUIRE(nv[i] == Approx(random_normal(7, 0, i)).epsilon(1e-6).margin(1e-6));
  // the shape does not matter, only the element index
  Generator n2(7);
  CHECK(randn(Shape{20, 25}, DType::f32, Device::cpu(), &n2).to_vector<float>() == nv);
}

TEST_CASE("manual_seed seeds the default generator", "[tensor][random]") {
  manual_seed(1234);
  const std::vector<float> a = randn(Shape{256}).to_vector<float>();
  const std::vector<float> a_next = randn(Shape{256}).to_vector<float>();
  CHECK(a != a_next);
  manual_seed(1234);
  CHECK(randn(Shape{256}).to_vector<float>() == a);
  CHECK(randn(Shape{256}).to_vector<float>() == a_next);
  manual_seed(1235);
  CHECK(randn(Shape{256}).to_vector<float>() != a);
  CHECK(default_generator().seed() == 1235);
}

// ---------------------------------------------------------------------------------------------
// views and copies
// ---------------------------------------------------------------------------------------------

TEST_CASE("reshape is a view sharing storage", "[tensor][view]") {
  const Tensor t = arange(int64_t{12});
  const Tensor v = t.reshape(Shape{3, 4});
  CHECK(v.shape() == Shape{3, 4});
  CHECK(v.raw_data() == t.raw_data());
  v.data<float>()[5] = 42.0f;  // element (1, 1)
  CHECK(t.to_vector<float>()[5] == 42.0f);
  t.data<float>()[11] = -1.0f;
  CHECK(v.to_vector<float>()[11] == -1.0f);
  // -1 infers one dimension
  CHECK(t.reshape(Shape{-1, 6}).shape() == Shape{2, 6});
  CHECK(t.reshape(Shape{2, -1, 3}).shape() == Shape{2, 2, 3});
  CHECK(t.reshape(Shape{-1}).shape() == Shape{12});
  CHECK(v.reshape(Shape{12, 1}).to_vector<float>() == t.to_vector<float>());
  // reshapes to and from 0-d
  const Tensor one = full(Shape{1, 1}, 3.0);
  CHECK(one.reshape(Shape{}).dim() == 0);
  CHECK(one.reshape(Shape{}).item() == 3.0);
  CHECK(scalar_tensor(2.0).reshape(Shape{1, 1, 1}).shape() == Shape{1, 1, 1});
  // the free function is the same
  CHECK(reshape(t, Shape{4, 3}).raw_data() == t.raw_data());
  // bad reshapes throw
  CHECK_THROWS_AS(t.reshape(Shape{5, -1}), Error);
  CHECK_THROWS_AS(t.reshape(Shape{-1, -1}), Error);
  CHECK_THROWS_AS(t.reshape(Shape{13}), Error);
  CHECK_THROWS_AS(t.reshape(Shape{2, 2, 2}), Error);
}

TEST_CASE("to(dtype) converts and rounds, to(cpu) returns the same tensor", "[tensor][convert]") {
  const Tensor x = from_vector(std::vector<float>{1.0f, 0.1f, 65520.0f, -3.0e-8f, 1.0f + 1.0f / 2048.0f}, Shape{5});
  const Tensor h = x.to(DType::f16);
  CHECK(h.dtype() == DType::f16);
  CHECK(h.shape() == x.shape());
  const std::vector<Half> hv = h.to_vector<Half>();
  const std::vector<float> xv = x.to_vector<float>();
  for (size_t i = 0; i < xv.size(); ++i) CHECK(hv[i].bits == float_to_half_bits(xv[i]));
  CHECK(hv[4].bits == 0x3c00);  // tie rounds to even
  const Tensor b = x.to(DType::bf16);
  const std::vector<BFloat16> bv = b.to_vector<BFloat16>();
  for (size_t i = 0; i < xv.size(); ++i) CHECK(bv[i].bits == float_to_bfloat16_bits(xv[i]));
  const Tensor d = x.to(DType::f64);
  CHECK(d.dtype() == DType::f64);
  for (size_t i = 0; i < xv.size(); ++i) CHECK(d.data<double>()[i] == static_cast<double>(xv[i]));
  // a conversion is a copy
  CHECK(d.raw_data() != x.raw_data());
  // f16 -> f32 is exact
  CHECK(h.to(DType::f32).to_vector<float>()[1] == half_bits_to_float(float_to_half_bits(0.1f)));

  const Tensor same = x.to(Device::cpu());
  CHECK(same.device() == Device::cpu());
  CHECK(same.raw_data() == x.raw_data());
}

TEST_CASE("clone is deep, detach shares, copy_ copies", "[tensor][copy]") {
  Tensor x = from_vector(std::vector<float>{1, 2, 3, 4}, Shape{2, 2});
  x.set_requires_grad(true);
  const Tensor c = x.clone();
  CHECK(c.shape() == x.shape());
  CHECK(c.dtype() == x.dtype());
  CHECK(c.raw_data() != x.raw_data());
  c.data<float>()[0] = 100.0f;
  CHECK(x.to_vector<float>()[0] == 1.0f);
  CHECK(c.to_vector<float>() == std::vector<float>{100, 2, 3, 4});

  const Tensor d = x.detach();
  CHECK(d.raw_data() == x.raw_data());
  CHECK_FALSE(d.requires_grad());
  CHECK(x.requires_grad());
  CHECK(d.is_leaf());
  d.data<float>()[3] = -7.0f;
  CHECK(x.to_vector<float>()[3] == -7.0f);

  const Tensor dst = zeros(Shape{2, 2});
  const uint64_t v0 = dst.version();
  dst.copy_(c);
  CHECK(dst.to_vector<float>() == std::vector<float>{100, 2, 3, 4});
  CHECK(dst.version() > v0);
  CHECK(dst.raw_data() != c.raw_data());
  // f16 clone keeps the bits
  const Tensor h = full(Shape{3}, 0.1, DType::f16);
  CHECK(h.clone().to_vector<Half>()[2].bits == h.to_vector<Half>()[2].bits);
}

TEST_CASE("item reads one-element tensors", "[tensor][item]") {
  CHECK(scalar_tensor(-1.25).item() == -1.25);
  CHECK(full(Shape{1, 1, 1}, 6.0, DType::bf16).item() == 6.0);
  CHECK(from_vector(std::vector<int64_t>{9}, Shape{1}).item() == 9.0);
  CHECK(full(Shape{1}, 0.1, DType::f64).item() == 0.1);
  CHECK(full(Shape{1}, 0.1, DType::f16).item() == static_cast<double>(half_bits_to_float(float_to_half_bits(0.1f))));
  CHECK_THROWS_AS(zeros(Shape{2}).item(), Error);
  CHECK_THROWS_AS(zeros(Shape{0}).item(), Error);
}

TEST_CASE("printing shows values, shape and dtype", "[tensor][print]") {
  const Tensor t = from_vector(std::vector<float>{1.5f, -2.25f, 7.125f}, Shape{3, 1});
  const std::string s = t.to_string();
  CHECK_THAT(s, Contains("1.5") && Contains("-2.25") && Contains("7.125"));
  CHECK_THAT(s, Contains(Shape{3, 1}.to_string()));
  CHECK_THAT(s, Contains("f32"));
  std::ostringstream os;
  os << t;
  CHECK(os.str() == s);

  const std::string h = from_vector(std::vector<float>{0.5f, 3.0f}, Shape{2}, DType::f16).to_string();
  CHECK_THAT(h, Contains("0.5") && Contains("3") && Contains("f16"));
  const std::string l = from_vector(std::vector<int64_t>{11, 23}, Shape{1, 2}).to_string();
  CHECK_THAT(l, Contains("11") && Contains("23") && Contains("i64"));
  // large tensors are elided, not dumped
  const std::string big = arange(int64_t{1000}).to_string();
  CHECK(big.size() < 1000);
  CHECK_THAT(big, Contains("999"));
}

TEST_CASE("version counter lives on the storage", "[tensor][version]") {
  const Tensor t = zeros(Shape{4});
  const uint64_t v0 = t.version();
  t.bump_version();
  CHECK(t.version() == v0 + 1);
  const Tensor view = t.reshape(Shape{2, 2});
  CHECK(view.version() == v0 + 1);
  view.bump_version();
  CHECK(t.version() == v0 + 2);
  const Tensor c = t.clone();  // a new storage with its own counter
  const uint64_t cv = c.version();
  t.bump_version();
  CHECK(c.version() == cv);
  CHECK(t.version() == v0 + 3);
}

TEST_CASE("autograd slot: requires_grad, leaves, grad", "[tensor][autograd-slot]") {
  Tensor x = ones(Shape{3});
  CHECK_FALSE(x.requires_grad());
  CHECK(x.is_leaf());
  CHECK_FALSE(x.grad().defined());
  x.set_requires_grad(true);
  CHECK(x.requires_grad());
  const Tensor g = full(Shape{3}, 2.0);
  x.set_grad(g);
  CHECK(x.grad().defined());
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 2, 2});
  x.set_grad(Tensor());
  CHECK_FALSE(x.grad().defined());
  CHECK(x.size(-1) == 3);
  CHECK(x.size(0) == 3);
}
