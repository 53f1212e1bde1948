// nn: module registration and state dicts, layer forward passes against float64 references, gradchecks of the
// functional pieces the layers use (linear, layer_norm, mse_loss, dropout), and PyTorch-default initialisation.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/backend.h"
#include "nn/layers.h"

using namespace mixtape;
using Catch::Matchers::Contains;

namespace {

Tensor f64_leaf(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  Tensor t = rand(s, DType::f64, Device::cpu(), &g, lo, hi);
  t.set_requires_grad(true);
  return t;
}

void require_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& in) {
  const GradcheckResult r = gradcheck(f, in);
  INFO(r.message);
  REQUIRE(r.ok);
}

struct TwoLayer : nn::Module {
  std::shared_ptr<nn::Linear> fc1, fc2;
  TwoLayer() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(4, 3));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(3, 2, false));
    register_buffer("counter", zeros(Shape{1}));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
};

}  // namespace

TEST_CASE("modules register parameters, buffers and submodules with dotted names", "[nn]") {
  TwoLayer net;
  const auto named = net.named_parameters();
  REQUIRE(named.size() == 3);
  CHECK(named[0].first == "fc1.weight");
  CHECK(named[1].first == "fc1.bias");
  CHECK(named[2].first == "fc2.weight");
  CHECK(net.num_parameters() == 4 * 3 + 3 + 3 * 2);
  for (const auto& [name, p] : named) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
    CHECK(p.dtype() == DType::f32);
  }
  const auto sd = net.state_dict();
  CHECK(sd.size() == 4);
  CHECK(sd.count("counter") == 1);
  CHECK(net.parameters()[0].is_same(net.fc1->weight));
  CHECK_THROWS_WITH(net.register_parameter("fc1", zeros(Shape{1})), Contains("fc1") || Contains("already"));
  CHECK_THROWS_WITH(net.register_parameter("a.b", zeros(Shape{1})), Contains("invalid name"));
  CHECK(net.to_string().find("Linear") != std::string::npos);
}

TEST_CASE("train() and eval() reach every submodule", "[nn]") {
  TwoLayer net;
  CHECK(net.is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  CHECK_FALSE(net.fc1->is_training());
  net.train();
  CHECK(net.fc2->is_training());
}

TEST_CASE("state dicts round trip and bad loads change nothing", "[nn]") {
  manual_seed(1);
  TwoLayer a;
  manual_seed(2);
  TwoLayer b;
  REQUIRE(a.fc1->weight.to_vector<float>() != b.fc1->weight.to_vector<float>());
  const uint64_t v0 = b.fc1->weight.version();
  b.load_state_dict(a.state_dict());
  CHECK(b.fc1->weight.to_vector<float>() == a.fc1->weight.to_vector<float>());
  CHECK(b.fc2->weight.to_vector<float>() == a.fc2->weight.to_vector<float>());
  CHECK(b.fc1->weight.version() > v0);  // in-place write is visible to caches

  manual_seed(3);
  TwoLayer c;
  const auto before = c.fc1->weight.to_vector<float>();
  auto missing = a.state_dict();
  missing.erase("fc2.weight");
  CHECK_THROWS_WITH(c.load_state_dict(missing), Contains("missing") && Contains("fc2.weight"));
  auto unexpected = a.state_dict();
  unexpected["fc3.weight"] = zeros(Shape{2});
  CHECK_THROWS_WITH(c.load_state_dict(unexpected), Contains("unexpected") && Contains("fc3.weight"));
  auto misshaped = a.state_dict();
  misshaped["fc2.weight"] = zeros(Shape{3, 2});
  CHECK_THROWS_WITH(c.load_state_dict(misshaped), Contains("fc2.weight") && Contains("(3, 2)") && Contains("(2, 3)"));
  CHECK(c.fc1->weight.to_vector<float>() == before);  // nothing was written by the failed loads
  c.load_state_dict(missing, /*strict=*/false);       // non-strict loads what is there
  CHECK(c.fc1->weight.to_vector<float>() == a.fc1->weight.to_vector<float>());
}

TEST_CASE("Linear matches a float64 reference and PyTorch's default initialisation", "[nn]") {
  manual_seed(7);
  const int64_t in = 256, out = 64;
  nn::Linear fc(in, out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  const auto w = fc.weight.to_vector<double>();
  const auto b = fc.bias.to_vector<double>();
  double sum = 0, sq = 0;
  for (double v : w) {
    REQUIRE(std::fabs(v) <= bound);
    sum += v;
    sq += v * v;
  }
  const double n = static_cast<double>(w.size());
  // U(-bound, bound): mean 0 (std of the mean bound/sqrt(3n)), variance bound^2/3
  CHECK(std::fabs(sum / n) < 4 * bound / std::sqrt(3 * n));
  CHECK(sq / n == Approx(bound * bound / 3).epsilon(0.05));
  for (double v : b) REQUIRE(std::fabs(v) <= bound);

  const Tensor x = randn(Shape{5, in});
  const auto xv = x.to_vector<double>();
  const auto y = fc.forward(x).to_vector<double>();
  REQUIRE(y.size() == 5 * out);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double ref = b[static_cast<size_t>(o)];
      for (int64_t k = 0; k < in; ++k) ref += xv[static_cast<size_t>(i * in + k)] * w[static_cast<size_t>(o * in + k)];
      REQUIRE(y[static_cast<size_t>(i * out + o)] == Approx(ref).margin(1e-5));
    }
  CHECK_THROWS_WITH(fc.forward(randn(Shape{5, in + 1})), Contains("linear") && Contains("in_features"));
}

TEST_CASE("gradcheck: linear with 1-D, 2-D and 3-D inputs, with and without bias", "[nn][gradcheck]") {
  const auto with_bias = [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); };
  const auto no_bias = [](const std::vector<Tensor>& t) { return linear(t[0], t[1]); };
  require_gradcheck(with_bias, {f64_leaf({4, 3}, 1), f64_leaf({5, 3}, 2), f64_leaf({5}, 3)});
  require_gradcheck(with_bias, {f64_leaf({2, 4, 3}, 4), f64_leaf({5, 3}, 5), f64_leaf({5}, 6)});
  require_gradcheck(with_bias, {f64_leaf({3}, 7), f64_leaf({2, 3}, 8), f64_leaf({2}, 9)});
  require_gradcheck(no_bias, {f64_leaf({4, 3}, 10), f64_leaf({5, 3}, 11)});
  // gradient only for the weight (a constant input)
  Tensor x = f64_leaf({4, 3}, 12);
  x.set_requires_grad(false);
  require_gradcheck([&](const std::vector<Tensor>& t) { return linear(x, t[0], t[1]); }, {f64_leaf({5, 3}, 13), f64_leaf({5}, 14)});
}

TEST_CASE("layer_norm matches float64 math and passes gradcheck", "[nn][gradcheck]") {
  const Tensor x = f64_leaf({3, 6}, 21, -2, 2), w = f64_leaf({6}, 22), b = f64_leaf({6}, 23);
  const auto y = layer_norm(x, w, b, 1e-5).to_vector<double>();
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  for (int r = 0; r < 3; ++r) {
    double mu = 0, var = 0;
    for (int j = 0; j < 6; ++j) mu += xv[static_cast<size_t>(r * 6 + j)] / 6;
    for (int j = 0; j < 6; ++j) var += std::pow(xv[static_cast<size_t>(r * 6 + j)] - mu, 2) / 6;
    for (int j = 0; j < 6; ++j) {
      const size_t i = static_cast<size_t>(r * 6 + j);
      REQUIRE(y[i] == Approx((xv[i] - mu) / std::sqrt(var + 1e-5) * wv[static_cast<size_t>(j)] + bv[static_cast<size_t>(j)]).margin(1e-12));
    }
  }
  require_gradcheck([](const std::vector<Tensor>& t) { return layer_norm(t[0], t[1], t[2]); }, {x, w, b});
  nn::LayerNorm ln(6);
  CHECK(ln.weight.to_vector<float>() == std::vector<float>(6, 1.0f));
  CHECK(ln.bias.to_vector<float>() == std::vector<float>(6, 0.0f));
}

TEST_CASE("mse_loss and CrossEntropyLoss match their definitions", "[nn][gradcheck]") {
  const Tensor a = f64_leaf({4, 3}, 31), b = f64_leaf({4, 3}, 32);
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  double ref = 0;
  for (size_t i = 0; i < av.size(); ++i) ref += (av[i] - bv[i]) * (av[i] - bv[i]);
  CHECK(nn::MSELoss()(a, b).item() == Approx(ref / 12).margin(1e-14));
  CHECK(nn::MSELoss(Reduction::sum)(a, b).item() == Approx(ref).margin(1e-14));
  require_gradcheck([](const std::vector<Tensor>& t) { return mse_loss(t[0], t[1]); }, {a, b});
  CHECK_THROWS_WITH(mse_loss(a, zeros(Shape{3, 4}, DType::f64)), Contains("mse_loss"));

  const Tensor logits = f64_leaf({3, 5}, 33), labels = from_vector<int64_t>({0, 4, 2}, Shape{3});
  CHECK(nn::CrossEntropyLoss(Reduction::mean, 0.1)(logits, labels).item() ==
        Approx(cross_entropy(logits, labels, Reduction::mean, 0.1).item()));
}

TEST_CASE("dropout: identity in eval, seeded Bernoulli mask scaled by 1/(1-p) in training", "[nn]") {
  const Tensor x = ones(Shape{20000});
  nn::Dropout drop(0.25);
  drop.eval();
  CHECK(drop.forward(x).is_same(x));
  drop.train();
  manual_seed(5);
  const auto y = drop.forward(x).to_vector<float>();
  int64_t zeros_seen = 0;
  for (float v : y) {
    REQUIRE((v == 0.0f || v == Approx(1.0 / 0.75)));
    zeros_seen += v == 0.0f;
  }
  // Binomial(20000, 0.25): std ~ 61
  CHECK(std::abs(static_cast<double>(zeros_seen) - 5000.0) < 300.0);
  manual_seed(5);
  CHECK(drop.forward(x).to_vector<float>() == y);  // same seed, same mask
  // The gradient is the same mask: gradcheck with a fixed generator state per evaluation.
  Generator g(9);
  require_gradcheck(
      [&](const std::vector<Tensor>& t) {
        g.set_state(9, 0);
        return nn::dropout(t[0], 0.3, true, &g);
      },
      {f64_leaf({6, 5}, 41)});
  CHECK_THROWS_WITH(nn::Dropout(1.5), Contains("[0, 1]"));
}

TEST_CASE("Sequential and Flatten compose like the hand-written model", "[nn]") {
  manual_seed(11);
  auto seq = std::make_shared<nn::Sequential>();
  auto fc1 = std::make_shared<nn::Linear>(12, 8);
  auto fc2 = std::make_shared<nn::Linear>(8, 3);
  seq->add(std::make_shared<nn::Flatten>()).add(fc1).add(std::make_shared<nn::GELU>()).add(fc2);
  CHECK(seq->size() == 4);
  CHECK(seq->named_parameters()[0].first == "1.weight");
  const Tensor x = randn(Shape{2, 3, 4});
  const auto y = seq->forward(x).to_vector<float>();
  const auto ref = fc2->forward(gelu(fc1->forward(reshape(x, Shape{2, 12})))).to_vector<float>();
  CHECK(y == ref);
}

TEST_CASE("Module::to(cpu) keeps handles, an unavailable device is a clear error", "[nn]") {
  TwoLayer net;
  const Tensor w = net.fc1->weight;
  net.to(Device::cpu());
  CHECK(w.is_same(net.fc1->weight));
  if (!device_available(Device::cuda(0))) CHECK_THROWS_WITH(net.to(Device::cuda(0)), Contains("cuda"));
}
