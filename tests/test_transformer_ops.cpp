// The ops a transformer needs (autograd/ops.h: permute/transpose, narrow/slice, cat/stack/split, embedding,
// masked_fill, softmax on any axis, scaled_dot_product_attention, Tensor::t and item<T>): values against an
// independent reference (index math written here, float64 loops), gradients by float64 finite differences,
// layout ops bit-exact in every dtype, the embedding gradient's determinism, attention under float16 autocast
// without overflow, and the errors. The CUDA backend's kernels are compared with these on the emulated GPU in
// test_cuda_kernels.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "amp/autocast.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/kernels.h"
#include "core/random.h"
#include "nn/transformer.h"
#include "optim/optimizer.h"
#include "test_util.h"

using namespace mixtape;
using mixtape::testing::strides_of;
using mixtape::testing::unravel;

namespace {

Tensor random_f64(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, DType::f64, Device::cpu(), &g);
}

/// The bytes of a tensor.
std::vector<unsigned char> bytes(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  return {p, p + t.nbytes()};
}

void require_grad_ok(const GradcheckResult& r) {
  INFO(r.message);
  CHECK(r.ok);
}

}  // namespace

TEST_CASE("permute moves every element to its permuted place, bit-exact in every dtype", "[ops][layout]") {
  const std::vector<int64_t> shape = {2, 3, 4, 5};
  const std::vector<int64_t> perm = {2, 0, 3, 1};
  const Tensor x64 = random_f64(Shape(shape), 1);
  for (DType dt : {DType::f64, DType::f32, DType::f16, DType::bf16, DType::i64, DType::u8}) {
    INFO(dtype_name(dt));
    const Tensor x = kernels::cast(kernels::binary(BinaryOp::mul, x64, scalar_tensor(40.0, DType::f64)), dt);
    const Tensor y = permute(x, perm);
    std::vector<int64_t> out_shape;
    for (int64_t p : perm) out_shape.push_back(shape[static_cast<size_t>(p)]);
    REQUIRE(y.shape() == Shape(out_shape));
    const auto xs = strides_of(shape);
    const size_t es = dtype_size(dt);
    const auto* xp = static_cast<const unsigned char*>(x.raw_data());
    const auto* yp = static_cast<const unsigned char*>(y.raw_data());
    int bad = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      const auto idx = unravel(i, out_shape);
      int64_t src = 0;
      for (size_t d = 0; d < perm.size(); ++d) src += idx[d] * xs[static_cast<size_t>(perm[d])];
      bad += std::memcmp(yp + static_cast<size_t>(i) * es, xp + static_cast<size_t>(src) * es, es) != 0;
    }
    CHECK(bad == 0);
  }
  // transpose and t() are permutations of two axes
  const Tensor m = random_f64(Shape{3, 5}, 2);
  CHECK(bytes(m.t()) == bytes(permute(m, {1, 0})));
  CHECK(bytes(transpose(x64, 1, -1)) == bytes(permute(x64, {0, 3, 2, 1})));
}

TEST_CASE("narrow, slice, cat, stack and split agree with index math and invert each other", "[ops][layout]") {
  const Tensor x = random_f64(Shape{4, 6, 3}, 3);
  const Tensor n = narrow(x, 1, 2, 3);
  REQUIRE(n.shape() == Shape{4, 3, 3});
  const std::vector<double> xv = x.to_vector<double>(), nv = n.to_vector<double>();
  int bad = 0;
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 3; ++c) bad += nv[static_cast<size_t>((a * 3 + b) * 3 + c)] != xv[static_cast<size_t>((a * 6 + b + 2) * 3 + c)];
  CHECK(bad == 0);
  // Python-style slices
  CHECK(slice(x, 1, -4, -1).to_vector<double>() == narrow(x, 1, 2, 3).to_vector<double>());
  CHECK(slice(x, 0, 2, 100).shape() == Shape{2, 6, 3});
  CHECK(slice(x, 0, 3, 1).shape() == Shape{0, 6, 3});
  // split then cat gives x back, on every axis
  for (int64_t axis : {0, 1, 2, -1}) {
    const std::vector<Tensor> parts = split(x, 2, axis);
    CHECK(bytes(cat(parts, axis)) == bytes(x));
  }
  CHECK(split(x, 4, 1).size() == 2);
  CHECK(split(x, 4, 1)[1].shape() == Shape{4, 2, 3});
  // stack: a new axis
  const Tensor a = random_f64(Shape{2, 3}, 4), b = random_f64(Shape{2, 3}, 5);
  const Tensor s = stack({a, b}, 1);
  REQUIRE(s.shape() == Shape{2, 2, 3});
  CHECK(narrow(s, 1, 1, 1).to_vector<double>() == b.to_vector<double>());
  CHECK(stack({a, b}, -1).shape() == Shape{2, 3, 2});
}

TEST_CASE("layout ops reject bad arguments with messages that name the problem", "[ops][layout][errors]") {
  const Tensor x = random_f64(Shape{2, 3}, 6);
  CHECK_THROWS_WITH(permute(x, {0, 0}), Catch::Contains("repeated"));
  CHECK_THROWS_WITH(permute(x, {0}), Catch::Contains("1 axes given"));
  CHECK_THROWS_WITH(narrow(x, 1, 2, 2), Catch::Contains("outside its size 3"));
  CHECK_THROWS_WITH(cat({x, random_f64(Shape{3, 3}, 7)}, 1), Catch::Contains("differ on axis 0"));
  CHECK_THROWS_WITH(cat({x, kernels::cast(x, DType::f32)}, 0), Catch::Contains("dtype mismatch"));
  CHECK_THROWS_WITH(stack({x, random_f64(Shape{3, 2}, 8)}, 0), Catch::Contains("every tensor must have shape"));
  CHECK_THROWS_WITH(split(x, 0, 0), Catch::Contains("at least 1"));
  CHECK_THROWS_WITH(random_f64(Shape{2, 3, 4}, 9).t(), Catch::Contains("expected a 2-D tensor"));
  const Tensor w = random_f64(Shape{5, 2}, 10);
  CHECK_THROWS_WITH(embedding(w, from_vector<int64_t>({1, 5}, Shape{2})), Catch::Contains("index 5 at position 1"));
  CHECK_THROWS_WITH(embedding(w, from_vector<int64_t>({-1}, Shape{1})), Catch::Contains("outside [0, 5)"));
  CHECK_THROWS_WITH(embedding(w, from_vector<double>({1.0}, Shape{1})), Catch::Contains("expected i64 indices"));
}

TEST_CASE("item<T> converts like a cast and keeps an i64 exact", "[ops][tensor]") {
  const int64_t big = (int64_t{1} << 53) + 1;  // not a double
  CHECK(from_vector<int64_t>({big}, Shape{}).item<int64_t>() == big);
  CHECK(scalar_tensor(2.5, DType::bf16).item<float>() == 2.5f);
  CHECK(scalar_tensor(1.0 / 3.0, DType::f64).item<double>() == 1.0 / 3.0);
  CHECK_THROWS_WITH(zeros(Shape{2}).item<float>(), Catch::Contains("expected one element"));
}

TEST_CASE("gradients of the layout and attention ops match float64 finite differences", "[ops][gradcheck]") {
  auto leaf = [](const Shape& s, uint64_t seed) { return random_f64(s, seed).set_requires_grad(); };
  require_grad_ok(gradcheck([](const std::vector<Tensor>& in) { return permute(in[0], {2, 0, 1}); }, {leaf(Shape{2, 3, 4}, 11)}));
  require_grad_ok(gradcheck([](const std::vector<Tensor>& in) { return narrow(in[0], 1, 1, 2); }, {leaf(Shape{2, 4, 3}, 12)}));
  require_grad_ok(gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[0]}, 1); },
                            {leaf(Shape{2, 1, 3}, 13), leaf(Shape{2, 4, 3}, 14)}));
  require_grad_ok(gradcheck([](const std::vector<Tensor>& in) { return stack({in[0], in[1]}, 2); },
                            {leaf(Shape{2, 3}, 15), leaf(Shape{2, 3}, 16)}));
  require_grad_ok(gradcheck([](const std::vector<Tensor>& in) { return split(in[0], 2, 0)[1]; }, {leaf(Shape{5, 2}, 17)}));
  // embedding with repeated ids: their gradients add up
  const Tensor ids = from_vector<int64_t>({3, 0, 3, 1, 3, 4}, Shape{2, 3});
  require_grad_ok(gradcheck([ids](const std::vector<Tensor>& in) { return embedding(in[0], ids); }, {leaf(Shape{5, 4}, 18)}));
  const Tensor mask = from_vector<uint8_t>({0, 1, 1, 0, 0, 1}, Shape{2, 3});
  require_grad_ok(gradcheck([mask](const std::vector<Tensor>& in) { return masked_fill(in[0], mask, -2.0); },
                            {leaf(Shape{4, 2, 3}, 19)}));
  require_grad_ok(gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0], 1); }, {leaf(Shape{2, 4, 3}, 20)}));
  for (bool causal : {false, true}) {
    INFO("causal " << causal);
    require_grad_ok(gradcheck(
        [causal](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], causal); },
        {leaf(Shape{2, 3, 4, 5}, 21), leaf(Shape{2, 3, 4, 5}, 22), leaf(Shape{2, 3, 4, 2}, 23)}));
  }
}

TEST_CASE("softmax on any axis equals the last-axis softmax of the moved axis", "[ops]") {
  const Tensor x = random_f64(Shape{3, 4, 5}, 24);
  const std::vector<double> got = softmax(x, 0).to_vector<double>(), xv = x.to_vector<double>();
  double worst = 0;
  for (int64_t j = 0; j < 4; ++j)
    for (int64_t k = 0; k < 5; ++k) {
      double m = -INFINITY, s = 0;
      for (int64_t i = 0; i < 3; ++i) m = std::max(m, xv[static_cast<size_t>((i * 4 + j) * 5 + k)]);
      for (int64_t i = 0; i < 3; ++i) s += std::exp(xv[static_cast<size_t>((i * 4 + j) * 5 + k)] - m);
      for (int64_t i = 0; i < 3; ++i) {
        const size_t e = static_cast<size_t>((i * 4 + j) * 5 + k);
        worst = std::max(worst, std::abs(got[e] - std::exp(xv[e] - m) / s));
      }
    }
  CHECK(worst < 1e-15);
}

TEST_CASE("scaled_dot_product_attention equals a float64 loop, causal or not", "[ops][attention]") {
  const int64_t b = 2, l = 5, e = 4, ev = 3;
  const Tensor q = random_f64(Shape{b, l, e}, 25), k = random_f64(Shape{b, l, e}, 26), v = random_f64(Shape{b, l, ev}, 27);
  const std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  for (bool causal : {false, true}) {
    const std::vector<double> got = scaled_dot_product_attention(q, k, v, causal).to_vector<double>();
    double worst = 0;
    for (int64_t n = 0; n < b; ++n)
      for (int64_t i = 0; i < l; ++i) {
        std::vector<double> w(static_cast<size_t>(l));
        double m = -INFINITY;
        for (int64_t j = 0; j < l; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < e; ++c) dot += qv[static_cast<size_t>((n * l + i) * e + c)] * kv[static_cast<size_t>((n * l + j) * e + c)];
          w[static_cast<size_t>(j)] = causal && j > i ? -INFINITY : dot / std::sqrt(static_cast<double>(e));
          m = std::max(m, w[static_cast<size_t>(j)]);
        }
        double s = 0;
        for (double& x : w) s += (x = std::exp(x - m));
        for (int64_t c = 0; c < ev; ++c) {
          double o = 0;
          for (int64_t j = 0; j < l; ++j) o += w[static_cast<size_t>(j)] / s * vv[static_cast<size_t>((n * l + j) * ev + c)];
          worst = std::max(worst, std::abs(o - got[static_cast<size_t>((n * l + i) * ev + c)]));
        }
      }
    INFO("causal " << causal);
    CHECK(worst < 1e-14);
  }
}

TEST_CASE("attention under float16 autocast: the logits are scaled before their product, so they do not overflow",
          "[ops][attention][amp]") {
  // q.k = 64 * 56^2 = 200704 overflows float16 (max 65504); scaled by 1/sqrt(64) first it is 25088, which fits.
  const int64_t e = 64;
  Generator g(28);
  const Tensor q = full(Shape{1, 3, e}, 56.0), k = full(Shape{1, 3, e}, 56.0);
  const Tensor v = randn(Shape{1, 3, 2}, DType::f32, Device::cpu(), &g);
  Tensor y;
  {
    amp::Autocast ac(Device::cpu(), DType::f16);
    y = scaled_dot_product_attention(q, k, v, false);
  }
  CHECK(y.dtype() == DType::f16);
  // equal logits: every output row is the mean of v's rows
  const std::vector<float> got = y.to_vector<float>(), vv = v.to_vector<float>();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t c = 0; c < 2; ++c) {
      const float want = (vv[static_cast<size_t>(c)] + vv[static_cast<size_t>(2 + c)] + vv[static_cast<size_t>(4 + c)]) / 3.0f;
      CHECK(std::isfinite(got[static_cast<size_t>(i * 2 + c)]));
      CHECK(std::abs(got[static_cast<size_t>(i * 2 + c)] - want) <= 2e-3 * (1 + std::abs(want)));
    }
}

TEST_CASE("the embedding gradient adds repeated rows in position order: the same bits every run", "[ops][embedding]") {
  // float32 sums depend on their order: 1e8 + 1 - 1e8 is 0 in that order, 1 in another
  const Tensor ids = from_vector<int64_t>({2, 2, 0, 2}, Shape{4});
  const Tensor g = from_vector<float>({1e8f, 1.0f, 7.0f, -1e8f}, Shape{4, 1});
  const Tensor gw = kernels::embedding_backward(g, ids, 3);
  const std::vector<float> v = gw.to_vector<float>();
  CHECK(v[0] == 7.0f);
  CHECK(v[1] == 0.0f);
  CHECK(v[2] == ((1e8f + 1.0f) + -1e8f));  // ascending positions, float32
  // through the op and the tape, twice
  std::vector<std::vector<unsigned char>> runs;
  for (int r = 0; r < 2; ++r) {
    clear_tape();
    Generator gen(29);
    const Tensor w = randn(Shape{7, 16}, DType::f32, Device::cpu(), &gen).set_requires_grad();
    const Tensor many = from_vector<int64_t>(std::vector<int64_t>(300, 3), Shape{300});
    backward(sum(mul(embedding(w, many), randn(Shape{300, 16}, DType::f32, Device::cpu(), &gen))));
    runs.push_back(bytes(w.grad()));
  }
  CHECK(runs[0] == runs[1]);
}

TEST_CASE("a small GPT: logits of the right shape, causal (a later token never changes an earlier logit), and it "
          "learns a repeating sequence", "[nn][gpt]") {
  Generator gen(31);
  nn::GPT model({.vocab = 5, .context = 8, .dim = 16, .depth = 2, .heads = 2}, &gen);
  const Tensor ids = from_vector<int64_t>({0, 1, 2, 3, 4, 0, 1, 2, 1, 2, 3, 4, 0, 1, 2, 3}, Shape{2, 8});
  const Tensor logits = model.forward(ids);
  REQUIRE(logits.shape() == Shape{2, 8, 5});
  // change the last token of row 0: the logits of positions 0..6 stay the same bits
  std::vector<int64_t> changed = ids.to_vector<int64_t>();
  changed[7] = 4;
  const Tensor other = model.forward(from_vector<int64_t>(changed, Shape{2, 8}));
  const std::vector<float> a = logits.to_vector<float>(), b = other.to_vector<float>();
  CHECK(std::equal(a.begin(), a.begin() + 7 * 5, b.begin()));
  CHECK_FALSE(std::equal(a.begin() + 7 * 5, a.begin() + 8 * 5, b.begin() + 7 * 5));
  CHECK_THROWS_WITH(model.forward(zeros(Shape{1, 9}, DType::i64)), Catch::Contains("does not fit the context of 8"));
  // next-token training on the cycle 0 1 2 3 4: the loss falls from ~ln 5 to near 0
  std::vector<int64_t> seq;
  for (int i = 0; i < 9; ++i) seq.push_back(i % 5);
  const Tensor x = from_vector<int64_t>(std::vector<int64_t>(seq.begin(), seq.end() - 1), Shape{1, 8});
  const Tensor y = from_vector<int64_t>(std::vector<int64_t>(seq.begin() + 1, seq.end()), Shape{8});
  optim::Adam opt(model.parameters(), optim::AdamOptions{.lr = 1e-2});
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    clear_tape();
    opt.zero_grad();
    const Tensor loss = cross_entropy(reshape(model.forward(x), Shape{8, 5}), y);
    backward(loss);
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  CHECK(first > 1.2);
  CHECK(last < 0.05);
}
