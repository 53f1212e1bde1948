// Optimizers, LR schedules and gradient clipping, checked against values computed by PyTorch 1.13
// (tests/reference/optim_reference.py wrote tests/data/optim_reference.json; no Python runs here).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <map>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "pytorch_reference.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/tensor.h"
#include "optim/clip.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"
#include "test_util.h"

using namespace mixtape;
using Catch::Matchers::Contains;
using mixtape::testing::error_of;
using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// The committed reference
// ---------------------------------------------------------------------------------------------

const json& reference() {
  static const json data = testing::load_reference("optim_reference.json");
  return data;
}

using testing::dtype_of_name;
using testing::number;
using testing::numbers;

Shape shape_of(const json& v) { return Shape(v.get<std::vector<int64_t>>()); }

Tensor tensor_of(const json& values, const json& shape, DType dtype) {
  return from_vector<double>(numbers(values), shape_of(shape), dtype);
}

/// Largest error of `actual` against `expected`, in units of the dtype's epsilon times
/// max(|expected_i|, floor * max_j |expected_j|): relative per element, with a floor at a fraction of the
/// tensor's scale for elements that cancelled to near zero. NaN must match NaN, inf the same inf.
struct Comparison {
  double worst = 0.0;  ///< in epsilons
  int64_t index = -1;
  double actual = 0.0, expected = 0.0;
};

Comparison compare(const std::vector<double>& actual, const std::vector<double>& expected, DType dtype,
                   double floor = 1e-3) {
  REQUIRE(actual.size() == expected.size());
  const double eps = dtype == DType::f64 ? std::numeric_limits<double>::epsilon()
                                         : static_cast<double>(std::numeric_limits<float>::epsilon());
  double scale = 0.0;
  for (double e : expected)
    if (std::isfinite(e)) scale = std::max(scale, std::fabs(e));
  Comparison c;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    double err;
    if (std::isnan(e) || std::isnan(a) || std::isinf(e) || std::isinf(a)) {
      const bool same = (std::isnan(e) && std::isnan(a)) || a == e;
      err = same ? 0.0 : std::numeric_limits<double>::infinity();
    } else {
      const double denom = std::max({std::fabs(e), floor * scale, std::numeric_limits<double>::min()});
      err = std::fabs(a - e) / (eps * denom);
    }
    if (err > c.worst || c.index < 0) c = {err, static_cast<int64_t>(i), a, e};
  }
  return c;
}

/// Tolerances, in epsilons of the dtype: float64 to 1e-12 relative, float32 to 4 * 2^-23 = 8 * 2^-24 relative.
/// (The CPU backend reproduces the reference bit for bit; the slack is for backends that fuse
/// multiply-adds. The float32 bound still catches a coefficient rounded in float instead of double, which
/// moved exp_avg_sq by ~109 epsilons.)
double tolerance(DType dtype) { return dtype == DType::f64 ? 1e-12 / std::numeric_limits<double>::epsilon() : 4.0; }

#define CHECK_CLOSE(actual_tensor, expected_json, what)                                                        \
  do {                                                                                                        \
    const Tensor& t_ = (actual_tensor);                                                                       \
    const Comparison c_ = compare(t_.to_vector<double>(), numbers(expected_json), t_.dtype());                \
    INFO((what) << ": worst error " << c_.worst << " eps at element " << c_.index << " (got "                 \
                << std::setprecision(17) << c_.actual << ", PyTorch " << c_.expected << ")");                 \
    CHECK(c_.worst <= tolerance(t_.dtype()));                                                                 \
  } while (0)

/// Bitwise equality of two tensors (dtype, shape and bytes).
bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return std::memcmp(ha.raw_data(), hb.raw_data(), a.nbytes()) == 0;
}

bool bit_equal(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end() || !bit_equal(t, it->second)) return false;
  }
  return true;
}

/// An optimizer as a reference case describes it (options named like mixtape's option structs).
std::unique_ptr<optim::Optimizer> make_optimizer(const std::string& kind, const json& o, std::vector<Tensor> params) {
  auto get = [&](const char* key, double fallback) { return o.contains(key) ? o[key].get<double>() : fallback; };
  if (kind == "sgd") {
    optim::SGDOptions s;
    s.lr = get("lr", s.lr);
    s.momentum = get("momentum", s.momentum);
    s.dampening = get("dampening", s.dampening);
    s.weight_decay = get("weight_decay", s.weight_decay);
    s.nesterov = o.contains("nesterov") && o["nesterov"].get<bool>();
    return std::make_unique<optim::SGD>(std::move(params), s);
  }
  if (kind == "adam") {
    optim::AdamOptions a;
    a.lr = get("lr", a.lr);
    a.beta1 = get("beta1", a.beta1);
    a.beta2 = get("beta2", a.beta2);
    a.eps = get("eps", a.eps);
    a.weight_decay = get("weight_decay", a.weight_decay);
    return std::make_unique<optim::Adam>(std::move(params), a);
  }
  REQUIRE(kind == "adamw");
  optim::AdamWOptions a;
  a.lr = get("lr", a.lr);
  a.beta1 = get("beta1", a.beta1);
  a.beta2 = get("beta2", a.beta2);
  a.eps = get("eps", a.eps);
  a.weight_decay = get("weight_decay", a.weight_decay);
  return std::make_unique<optim::AdamW>(std::move(params), a);
}

std::vector<Tensor> initial_params(const json& c) {
  const DType dtype = dtype_of_name(c["dtype"]);
  std::vector<Tensor> params;
  for (size_t i = 0; i < c["initial"].size(); ++i) {
    Tensor p = tensor_of(c["initial"][i], c["shapes"][i], dtype);
    p.set_requires_grad();
    params.push_back(p);
  }
  return params;
}

/// Sets the gradients of reference step `s` (null: no gradient).
void set_grads(const json& c, size_t s, const std::vector<Tensor>& params) {
  const DType dtype = dtype_of_name(c["dtype"]);
  for (size_t i = 0; i < params.size(); ++i) {
    const json& g = c["grads"][s][i];
    params[i].set_grad(g.is_null() ? Tensor() : tensor_of(g, c["shapes"][i], dtype));
  }
}

/// Fresh parameters of a small problem (random values, from the global generator).
std::vector<Tensor> small_params(DType dtype = DType::f32) {
  std::vector<Tensor> ps{randn({4, 3}, dtype, Device::cpu(), nullptr), randn({6}, dtype, Device::cpu(), nullptr)};
  for (Tensor& p : ps) p.set_requires_grad();
  return ps;
}

std::vector<Tensor> copies(const std::vector<Tensor>& ps) {
  std::vector<Tensor> out;
  for (const Tensor& p : ps) {
    Tensor c = p.clone();
    c.set_requires_grad();
    out.push_back(c);
  }
  return out;
}

/// Deterministic gradients for step s; with skip_second_on_even, parameter 1 has none on even steps.
void set_synthetic_grads(const std::vector<Tensor>& ps, int s, bool skip_second_on_even = false) {
  for (size_t i = 0; i < ps.size(); ++i) {
    if (skip_second_on_even && i == 1 && s % 2 == 0) {
      ps[i].set_grad(Tensor());
      continue;
    }
    std::vector<double> g(static_cast<size_t>(ps[i].numel()));
    for (size_t k = 0; k < g.size(); ++k)
      g[k] = std::sin(0.7 * static_cast<double>(k + 1) + 1.3 * s + static_cast<double>(i)) * (1.0 + 0.25 * s);
    ps[i].set_grad(from_vector<double>(g, ps[i].shape(), ps[i].dtype()));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The reference itself
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim reference: the committed PyTorch data is there and complete", "[optim]") {
  const json& r = reference();
  INFO("torch " << r["torch_version"] << " (" << r["debian_package"] << ")");
  CHECK(r["debian_package"].get<std::string>().find("1.13") != std::string::npos);
  CHECK(r["optimizers"].size() >= 20);
  CHECK(r["clip"].size() >= 12);
  CHECK(r["lr_schedules"].size() >= 5);
  for (const json& c : r["optimizers"]) {
    CHECK(c["params"].size() == r["steps"].get<size_t>());
    CHECK(c["grads"].size() == r["steps"].get<size_t>());
  }
}

// ---------------------------------------------------------------------------------------------
// Trajectories
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim: SGD, Adam and AdamW trajectories match PyTorch (float64 and float32)", "[optim]") {
  for (const json& c : reference()["optimizers"]) {
    const std::string label = c["name"].get<std::string>() + " " + c["dtype"].get<std::string>();
    DYNAMIC_SECTION(label) {
      std::vector<Tensor> params = initial_params(c);
      std::unique_ptr<optim::Optimizer> opt = make_optimizer(c["optimizer"], c["options"], params);
      std::unique_ptr<optim::StepLR> schedule;
      if (!c["schedule"].is_null())
        schedule = std::make_unique<optim::StepLR>(*opt, c["schedule"]["step_size"].get<int64_t>(),
                                                   c["schedule"]["gamma"].get<double>());
      const std::vector<std::string> state_names =
          c["optimizer"] == "sgd" ? std::vector<std::string>{"momentum_buffer"}
                                  : std::vector<std::string>{"exp_avg", "exp_avg_sq"};
      for (size_t s = 0; s < c["params"].size(); ++s) {
        INFO(label << ", step " << s + 1);
        set_grads(c, s, params);
        CHECK(opt->lr() == c["lrs"][s].get<double>());  // the lr this step uses, bit for bit
        std::vector<Tensor> before;
        for (const Tensor& p : params) before.push_back(p.clone());
        opt->step();
        if (schedule) schedule->step();
        CHECK(opt->step_count() == static_cast<int64_t>(s + 1));
        for (size_t i = 0; i < params.size(); ++i) {
          CHECK_CLOSE(params[i], c["params"][s][i], detail::cat("param ", i));
          if (c["grads"][s][i].is_null()) CHECK(bit_equal(params[i], before[i]));  // skipped: untouched
        }
        const json& state = c["state"][s];
        for (size_t i = 0; i < params.size(); ++i) {
          const auto& st = opt->state(i);
          for (const std::string& n : state_names) {
            const std::string key = detail::cat(i, ".", n);
            if (!state.contains(key)) {
              CHECK(st.count(n) == 0);  // PyTorch has not created it yet: neither have we
              continue;
            }
            REQUIRE(st.count(n) == 1);
            CHECK_CLOSE(st.at(n), state[key], "state " + key);
          }
          const std::string step_key = detail::cat(i, ".step");
          if (state.contains(step_key)) {
            REQUIRE(st.count("step") == 1);
            CHECK(st.at("step").to_vector<int64_t>()[0] == state[step_key].get<int64_t>());
          } else {
            CHECK(st.count("step") == 0);
          }
        }
      }
    }
  }
}

TEST_CASE("optim: a parameter without a gradient is skipped (no update, no version bump, no state)", "[optim]") {
  for (const char* kind : {"sgd", "adam", "adamw"}) {
    DYNAMIC_SECTION(kind) {
      std::vector<Tensor> ps = small_params();
      const Tensor before0 = ps[0].clone(), before1 = ps[1].clone();
      auto opt = make_optimizer(kind, json{{"lr", 0.1}, {"momentum", 0.9}}, ps);
      set_synthetic_grads(ps, 0);
      ps[1].set_grad(Tensor());
      const uint64_t v0 = ps[0].version(), v1 = ps[1].version();
      opt->step();
      CHECK_FALSE(bit_equal(ps[0], before0));
      CHECK(ps[0].version() > v0);  // updated in place: AMP's cast cache must see it
      CHECK(bit_equal(ps[1], before1));
      CHECK(ps[1].version() == v1);
      CHECK_FALSE(opt->state(0).empty());
      CHECK(opt->state(1).empty());
      CHECK(opt->step_count() == 1);
      // A step with no gradient at all changes nothing but the count.
      opt->zero_grad();
      const Tensor after0 = ps[0].clone();
      opt->step();
      CHECK(bit_equal(ps[0], after0));
      CHECK(opt->step_count() == 2);
    }
  }
}

TEST_CASE("optim: step updates in place, bumps the version once and records nothing on the tape", "[optim]") {
  std::vector<Tensor> ps = small_params();
  const void* storage = ps[0].raw_data();
  optim::Adam opt(ps, {.lr = 0.01});
  set_synthetic_grads(ps, 0);
  clear_tape();
  const uint64_t v = ps[0].version();
  opt.step();
  CHECK(ps[0].raw_data() == storage);
  CHECK(opt.params()[0].is_same(ps[0]));
  CHECK(ps[0].version() == v + 1);
  CHECK(tape_size() == 0);
  CHECK(grad_enabled());  // the guard is released
  CHECK(ps[0].requires_grad());
  CHECK(ps[0].is_leaf());
}

TEST_CASE("optim: zero_grad clears every gradient", "[optim]") {
  std::vector<Tensor> ps = small_params();
  optim::SGD opt(ps, {.lr = 0.1});
  set_synthetic_grads(ps, 0);
  REQUIRE(ps[0].grad().defined());
  REQUIRE(ps[1].grad().defined());
  opt.zero_grad();
  CHECK_FALSE(ps[0].grad().defined());
  CHECK_FALSE(ps[1].grad().defined());
  // Gradients accumulated by backward after zero_grad start from scratch.
  Tensor loss = sum(ps[0] * ps[0]);
  backward(loss);
  const std::vector<float> g = ps[0].grad().to_vector<float>(), p = ps[0].to_vector<float>();
  for (size_t k = 0; k < g.size(); ++k) CHECK(g[k] == 2.0f * p[k]);
}

TEST_CASE("optim: set_lr takes effect on the next step", "[optim]") {
  std::vector<Tensor> ps = small_params(DType::f64);
  optim::SGD opt(ps, {.lr = 0.5});
  CHECK(opt.lr() == 0.5);
  opt.set_lr(0.25);
  CHECK(opt.lr() == 0.25);
  CHECK(opt.options().lr == 0.25);
  const std::vector<double> p0 = ps[1].to_vector<double>();
  set_synthetic_grads(ps, 0);
  const std::vector<double> g = ps[1].grad().to_vector<double>();
  opt.step();
  const std::vector<double> p1 = ps[1].to_vector<double>();
  for (size_t k = 0; k < p0.size(); ++k) CHECK(p1[k] == p0[k] - 0.25 * g[k]);
  CHECK_THAT(error_of([&] { opt.set_lr(-1.0); }), Contains("learning rate"));
  CHECK_THAT(error_of([&] { opt.set_lr(std::nan("")); }), Contains("learning rate"));
  CHECK(opt.lr() == 0.25);
}

TEST_CASE("optim: constructors validate parameters and options like PyTorch", "[optim]") {
  std::vector<Tensor> ps = small_params();
  SECTION("parameters") {
    CHECK_THAT(error_of([] { optim::SGD({}); }), Contains("empty parameter list"));
    Tensor frozen = zeros({3});
    CHECK_THAT(error_of([&] { optim::SGD({ps[0], frozen}); }), Contains("parameter 1") && Contains("require grad"));
    CHECK_THAT(error_of([&] { optim::Adam({ps[0], Tensor()}); }), Contains("parameter 1") && Contains("undefined"));
    CHECK_THAT(error_of([&] { optim::Adam({ps[0], ps[1], ps[0]}); }),
               Contains("parameter 2") && Contains("more than once"));
    Tensor half = zeros({3}, DType::f16);
    half.set_requires_grad();
    CHECK_THAT(error_of([&] { optim::AdamW({half}); }), Contains("parameter 0") && Contains("float32"));
    Tensor non_leaf = ps[0] * 2.0;
    REQUIRE_FALSE(non_leaf.is_leaf());
    CHECK_THAT(error_of([&] { optim::SGD({ps[1], non_leaf}); }), Contains("parameter 1") && Contains("leaf"));
  }
  SECTION("SGD options") {
    CHECK_THAT(error_of([&] { optim::SGD(ps, {.lr = -0.1}); }), Contains("SGD") && Contains("learning rate"));
    CHECK_THAT(error_of([&] { optim::SGD(ps, {.lr = 0.1, .momentum = -0.5}); }), Contains("momentum"));
    CHECK_THAT(error_of([&] { optim::SGD(ps, {.lr = 0.1, .weight_decay = -1e-4}); }), Contains("weight_decay"));
    CHECK_THAT(error_of([&] { optim::SGD(ps, {.lr = 0.1, .nesterov = true}); }), Contains("Nesterov"));
    CHECK_THAT(error_of([&] { optim::SGD(ps, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}); }),
               Contains("Nesterov") && Contains("dampening"));
    CHECK_THAT(error_of([&] { optim::SGD(ps, {.lr = std::numeric_limits<double>::infinity()}); }),
               Contains("learning rate"));
    CHECK_NOTHROW(optim::SGD(ps, {.lr = 0.0, .momentum = 0.9, .nesterov = true}));
    CHECK_NOTHROW(optim::SGD(ps, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5}));
  }
  SECTION("Adam and AdamW options") {
    CHECK_THAT(error_of([&] { optim::Adam(ps, {.lr = -1e-3}); }), Contains("Adam") && Contains("learning rate"));
    CHECK_THAT(error_of([&] { optim::Adam(ps, {.beta1 = 1.0}); }), Contains("beta1"));
    CHECK_THAT(error_of([&] { optim::Adam(ps, {.beta1 = -0.1}); }), Contains("beta1"));
    CHECK_THAT(error_of([&] { optim::Adam(ps, {.beta2 = 1.0}); }), Contains("beta2"));
    CHECK_THAT(error_of([&] { optim::Adam(ps, {.eps = -1e-8}); }), Contains("eps"));
    CHECK_THAT(error_of([&] { optim::Adam(ps, {.weight_decay = -0.1}); }), Contains("weight_decay"));
    CHECK_THAT(error_of([&] { optim::AdamW(ps, {.lr = -1e-3}); }), Contains("AdamW") && Contains("learning rate"));
    CHECK_THAT(error_of([&] { optim::AdamW(ps, {.beta2 = 1.5}); }), Contains("AdamW") && Contains("beta2"));
    CHECK_THAT(error_of([&] { optim::AdamW(ps, {.beta1 = std::nan("")}); }), Contains("beta1"));
    CHECK_THAT(error_of([&] { optim::AdamW(ps, {.weight_decay = -1.0}); }), Contains("weight_decay"));
    CHECK_NOTHROW(optim::Adam(ps, {.lr = 0.0, .beta1 = 0.0, .beta2 = 0.0, .eps = 0.0}));
    CHECK(optim::AdamW(ps).options().weight_decay == 1e-2);
    CHECK(optim::Adam(ps).options().weight_decay == 0.0);
  }
}

// ---------------------------------------------------------------------------------------------
// State dicts
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim: state_dict layout", "[optim]") {
  std::vector<Tensor> ps = small_params();
  optim::Adam opt(ps, {.lr = 2e-3, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-7, .weight_decay = 0.05});
  std::map<std::string, Tensor> sd = opt.state_dict();
  CHECK(sd.size() == 6);  // no per-parameter state before the first step
  CHECK(sd.at("step").dtype() == DType::i64);
  CHECK(sd.at("step").dim() == 0);
  CHECK(sd.at("step").to_vector<int64_t>()[0] == 0);
  for (auto [key, value] : std::vector<std::pair<std::string, double>>{
           {"lr", 2e-3}, {"beta1", 0.8}, {"beta2", 0.99}, {"eps", 1e-7}, {"weight_decay", 0.05}}) {
    INFO(key);
    REQUIRE(sd.count(key) == 1);
    CHECK(sd.at(key).dtype() == DType::f64);
    CHECK(sd.at(key).dim() == 0);
    CHECK(sd.at(key).item() == value);
  }
  set_synthetic_grads(ps, 0, /*skip_second_on_even=*/true);  // parameter 1 has no gradient
  opt.step();
  sd = opt.state_dict();
  CHECK(sd.size() == 9);
  CHECK(sd.at("state.0.exp_avg").shape() == ps[0].shape());
  CHECK(sd.at("state.0.exp_avg_sq").dtype() == DType::f32);
  CHECK(sd.at("state.0.step").to_vector<int64_t>()[0] == 1);
  CHECK(sd.count("state.1.exp_avg") == 0);
  // A snapshot: later steps do not change it.
  const Tensor saved = sd.at("state.0.exp_avg").clone();
  set_synthetic_grads(ps, 1);
  opt.step();
  CHECK(bit_equal(sd.at("state.0.exp_avg"), saved));
  CHECK(sd.at("state.0.step").to_vector<int64_t>()[0] == 1);
  CHECK(opt.state(0).at("step").to_vector<int64_t>()[0] == 2);

  optim::SGD sgd(ps, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
  const auto s2 = sgd.state_dict();
  CHECK(s2.at("momentum").item() == 0.9);
  CHECK(s2.at("dampening").item() == 0.1);
  CHECK(s2.at("weight_decay").item() == 0.01);
  CHECK(s2.at("nesterov").item() == 0.0);
}

TEST_CASE("optim: 3 steps + state_dict + load into a fresh optimizer + 2 steps == 5 steps, bit for bit", "[optim]") {
  const std::vector<std::pair<std::string, json>> cases{
      {"sgd", json{{"lr", 0.05}, {"momentum", 0.9}, {"dampening", 0.1}, {"weight_decay", 0.01}}},
      {"sgd", json{{"lr", 0.05}, {"momentum", 0.8}, {"nesterov", true}}},
      {"adam", json{{"lr", 1e-2}, {"weight_decay", 0.1}}},
      {"adamw", json{{"lr", 1e-2}, {"beta1", 0.85}}},
  };
  for (const DType dtype : {DType::f32, DType::f64}) {
    for (const auto& [kind, options] : cases) {
      for (const bool skip : {false, true}) {
        DYNAMIC_SECTION(kind << " " << options.dump() << " " << dtype_name(dtype)
                             << (skip ? " with skipped grads" : "")) {
          const std::vector<Tensor> init = small_params(dtype);
          // Straight: 5 steps.
          std::vector<Tensor> a = copies(init);
          auto opt_a = make_optimizer(kind, options, a);
          optim::StepLR sched_a(*opt_a, 2, 0.5);
          for (int s = 0; s < 5; ++s) {
            set_synthetic_grads(a, s, skip);
            opt_a->step();
            sched_a.step();
          }
          // 3 steps, save, then a fresh optimizer (other hyper-parameters: the saved ones win) on copies.
          std::vector<Tensor> b = copies(init);
          std::map<std::string, Tensor> saved, saved_sched;
          {
            auto opt_b = make_optimizer(kind, options, b);
            optim::StepLR sched_b(*opt_b, 2, 0.5);
            for (int s = 0; s < 3; ++s) {
              set_synthetic_grads(b, s, skip);
              opt_b->step();
              sched_b.step();
            }
            saved = opt_b->state_dict();
            saved_sched = sched_b.state_dict();
          }
          std::vector<Tensor> c = copies(b);
          json other = options;
          other["lr"] = 0.7;
          if (kind != "sgd") other["beta2"] = 0.5;
          auto opt_c = make_optimizer(kind, other, c);
          optim::StepLR sched_c(*opt_c, 2, 0.5);
          opt_c->load_state_dict(saved);
          sched_c.load_state_dict(saved_sched);
          CHECK(opt_c->step_count() == 3);
          CHECK(sched_c.last_step() == 3);
          CHECK(bit_equal(opt_c->state_dict(), saved));
          for (int s = 3; s < 5; ++s) {
            set_synthetic_grads(c, s, skip);
            opt_c->step();
            sched_c.step();
          }
          for (size_t i = 0; i < a.size(); ++i) CHECK(bit_equal(a[i], c[i]));
          CHECK(bit_equal(opt_a->state_dict(), opt_c->state_dict()));
          CHECK(opt_a->lr() == opt_c->lr());
          // The loaded state is a copy: stepping did not touch the dict it came from.
          CHECK(saved.at("step").to_vector<int64_t>()[0] == 3);
        }
      }
    }
  }
}

TEST_CASE("optim: load_state_dict rejects bad dicts, naming the key, and changes nothing", "[optim]") {
  std::vector<Tensor> ps = small_params();
  optim::Adam source(copies(ps), {.lr = 1e-2});
  for (int s = 0; s < 2; ++s) {
    set_synthetic_grads(source.params(), s);
    source.step();
  }
  const std::map<std::string, Tensor> good = source.state_dict();

  // The target has its own history, which must survive every failed load.
  optim::Adam target(ps, {.lr = 3e-3, .beta1 = 0.7});
  set_synthetic_grads(ps, 5, /*skip_second_on_even=*/false);
  target.step();
  const std::map<std::string, Tensor> target_before = target.state_dict();
  const std::vector<Tensor> params_before = copies(ps);

  auto expect_rejected = [&](std::map<std::string, Tensor> bad, const std::vector<std::string>& words) {
    const std::string msg = error_of([&] { target.load_state_dict(bad); });
    INFO(msg);
    CHECK_THAT(msg, Contains("load_state_dict"));
    for (const std::string& w : words) CHECK_THAT(msg, Contains(w));
    CHECK(bit_equal(target.state_dict(), target_before));
    CHECK(target.lr() == 3e-3);
    CHECK(target.options().beta1 == 0.7);
    CHECK(target.step_count() == 1);
    for (size_t i = 0; i < ps.size(); ++i) CHECK(bit_equal(ps[i], params_before[i]));
  };
  SECTION("missing per-parameter entry") {
    auto bad = good;
    bad.erase("state.1.exp_avg_sq");
    expect_rejected(bad, {"missing", "state.1.exp_avg_sq"});
  }
  SECTION("missing step count of a parameter") {
    auto bad = good;
    bad.erase("state.0.step");
    expect_rejected(bad, {"missing", "state.0.step"});
  }
  SECTION("missing hyper-parameter") {
    auto bad = good;
    bad.erase("beta1");
    expect_rejected(bad, {"missing", "\"beta1\""});
  }
  SECTION("missing step") {
    auto bad = good;
    bad.erase("step");
    expect_rejected(bad, {"missing", "\"step\""});
  }
  SECTION("wrong shape") {
    auto bad = good;
    bad["state.0.exp_avg"] = zeros({3, 4});
    expect_rejected(bad, {"state.0.exp_avg", "(3, 4)", "(4, 3)"});
  }
  SECTION("wrong dtype") {
    auto bad = good;
    bad["state.1.exp_avg"] = zeros({6}, DType::f64);
    expect_rejected(bad, {"state.1.exp_avg", dtype_name(DType::f64)});
  }
  SECTION("hyper-parameter of the wrong kind") {
    auto bad = good;
    bad["lr"] = scalar_tensor(1e-3, DType::f32);
    expect_rejected(bad, {"\"lr\"", "f64"});
    bad = good;
    bad["eps"] = zeros({1}, DType::f64);
    expect_rejected(bad, {"\"eps\""});
  }
  SECTION("unexpected keys") {
    for (const char* key : {"state.2.exp_avg", "state.0.momentum_buffer", "momentum", "state.x.exp_avg",
                            "state.01.step", "bogus"}) {
      auto bad = good;
      bad[key] = zeros({6});
      expect_rejected(bad, {"unexpected", detail::cat("\"", key, "\"")});
    }
  }
  SECTION("invalid values") {
    auto bad = good;
    bad["beta2"] = scalar_tensor(1.5, DType::f64);
    expect_rejected(bad, {"beta2"});
    bad = good;
    bad["lr"] = scalar_tensor(-1.0, DType::f64);
    expect_rejected(bad, {"\"lr\""});
    bad = good;
    bad["step"] = scalar_tensor(-2.0, DType::i64);
    expect_rejected(bad, {"\"step\""});
  }
  SECTION("counts whose next step would overflow int64, or beyond 2^53 (not exact through a double)") {
    for (const char* key : {"step", "state.0.step"}) {
      for (int64_t v : {INT64_MAX, (int64_t{1} << 53) + 1}) {
        auto bad = good;
        bad[key] = from_vector<int64_t>({v}, Shape{});
        expect_rejected(bad, {detail::cat("\"", key, "\""), "too large"});
      }
    }
    auto fine = good;
    fine["state.0.step"] = from_vector<int64_t>({int64_t{1} << 53}, Shape{});
    target.load_state_dict(fine);
    CHECK(target.state_dict().at("state.0.step").to_vector<int64_t>()[0] == int64_t{1} << 53);
  }
  SECTION("an SGD dict into Adam") {
    optim::SGD sgd(copies(ps), {.lr = 0.1, .momentum = 0.9});
    set_synthetic_grads(sgd.params(), 0);
    sgd.step();
    expect_rejected(sgd.state_dict(), {"missing"});
  }
  SECTION("the good dict loads") {
    target.load_state_dict(good);
    CHECK(bit_equal(target.state_dict(), good));
    CHECK(target.options().beta1 == source.options().beta1);
  }
}

TEST_CASE("optim: SGD load_state_dict validates nesterov against momentum and dampening", "[optim]") {
  std::vector<Tensor> ps = small_params();
  optim::SGD opt(ps, {.lr = 0.1, .momentum = 0.9});
  auto sd = opt.state_dict();
  sd["nesterov"] = scalar_tensor(1.0, DType::f64);
  sd["dampening"] = scalar_tensor(0.5, DType::f64);
  CHECK_THAT(error_of([&] { opt.load_state_dict(sd); }), Contains("Nesterov"));
  CHECK_FALSE(opt.options().nesterov);
  CHECK(opt.options().dampening == 0.0);
  sd["nesterov"] = scalar_tensor(0.5, DType::f64);
  sd["dampening"] = scalar_tensor(0.0, DType::f64);
  CHECK_THAT(error_of([&] { opt.load_state_dict(sd); }), Contains("nesterov"));
  sd["nesterov"] = scalar_tensor(1.0, DType::f64);
  opt.load_state_dict(sd);
  CHECK(opt.options().nesterov);
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim: clip_grad_norm matches PyTorch's clip_grad_norm_", "[optim]") {
  for (const json& c : reference()["clip"]) {
    const std::string label = c["name"].get<std::string>() + " " + c["dtype"].get<std::string>();
    DYNAMIC_SECTION(label) {
      const DType dtype = dtype_of_name(c["dtype"]);
      std::vector<Tensor> params;
      for (size_t i = 0; i < c["grads"].size(); ++i) {
        Tensor p = zeros(shape_of(c["shapes"][i]), dtype);
        p.set_requires_grad();
        p.set_grad(tensor_of(c["grads"][i], c["shapes"][i], dtype));
        params.push_back(p);
      }
      const double total = optim::clip_grad_norm(params, c["max_norm"].get<double>(), number(c["norm_type"]));
      const Comparison t = compare({total}, {number(c["total_norm"])}, dtype);
      INFO("total norm " << std::setprecision(17) << total << ", PyTorch " << number(c["total_norm"]) << " ("
                         << t.worst << " eps)");
      CHECK(t.worst <= tolerance(dtype));
      for (size_t i = 0; i < params.size(); ++i)
        CHECK_CLOSE(params[i].grad(), c["clipped"][i], detail::cat("grad ", i));
    }
  }
}

TEST_CASE("optim: clip_grad_norm edge cases and validation", "[optim]") {
  std::vector<Tensor> ps = small_params(DType::f64);
  SECTION("no gradients: 0 and nothing to do") {
    CHECK(optim::clip_grad_norm(ps, 1.0) == 0.0);
    CHECK(optim::clip_grad_norm({}, 1.0) == 0.0);
  }
  SECTION("parameters without a gradient are ignored") {
    ps[0].set_grad(from_vector<double>(std::vector<double>(12, 1.0), Shape{4, 3}, DType::f64));
    const double total = optim::clip_grad_norm(ps, 1.0);
    CHECK(total == Approx(std::sqrt(12.0)).epsilon(1e-15));
    CHECK_FALSE(ps[1].grad().defined());
    for (double g : ps[0].grad().to_vector<double>()) CHECK(g == Approx(1.0 / (std::sqrt(12.0) + 1e-6)).epsilon(1e-15));
  }
  SECTION("below the limit: gradients untouched, bit for bit") {
    set_synthetic_grads(ps, 0);
    const Tensor before = ps[0].grad().clone();
    const uint64_t v = ps[0].grad().version();
    optim::clip_grad_norm(ps, 1e6);
    CHECK(bit_equal(ps[0].grad(), before));
    CHECK(ps[0].grad().version() == v);
    optim::clip_grad_norm(ps, std::numeric_limits<double>::infinity());
    CHECK(bit_equal(ps[0].grad(), before));
  }
  SECTION("invalid arguments") {
    set_synthetic_grads(ps, 0);
    CHECK_THAT(error_of([&] { optim::clip_grad_norm(ps, -1.0); }), Contains("max_norm"));
    CHECK_THAT(error_of([&] { optim::clip_grad_norm(ps, std::nan("")); }), Contains("max_norm"));
    CHECK_THAT(error_of([&] { optim::clip_grad_norm(ps, 1.0, 0.0); }), Contains("norm_type"));
    CHECK_THAT(error_of([&] { optim::clip_grad_norm(ps, 1.0, -std::numeric_limits<double>::infinity()); }),
               Contains("norm_type"));
  }
}

TEST_CASE("optim: tensor_norm on the CPU and through the device kernels agree", "[optim]") {
  for (const DType dtype : {DType::f32, DType::f64}) {
    Tensor t = randn({37, 5}, dtype, Device::cpu(), nullptr, 0.0, 3.0);
    const std::vector<double> v = t.to_vector<double>();
    double l1 = 0, l2 = 0, l3 = 0, linf = 0;
    for (double x : v) {
      l1 += std::fabs(x);
      l2 += x * x;
      l3 += std::pow(std::fabs(x), 3.0);
      linf = std::max(linf, std::fabs(x));
    }
    const double tol = dtype == DType::f64 ? 1e-13 : 1e-5;
    for (auto [p, expected] : std::vector<std::pair<double, double>>{
             {1.0, l1}, {2.0, std::sqrt(l2)}, {3.0, std::cbrt(l3)}, {std::numeric_limits<double>::infinity(), linf}}) {
      INFO(dtype_name(dtype) << " p = " << p);
      CHECK(optim::tensor_norm(t, p) == Approx(expected).epsilon(1e-14));
      CHECK(optim::detail::tensor_norm_kernels(t, p) == Approx(expected).epsilon(tol));
    }
  }
  CHECK(optim::tensor_norm(zeros({0}), 2.0) == 0.0);
  CHECK(optim::detail::tensor_norm_kernels(zeros({0}), 2.0) == 0.0);
}

// ---------------------------------------------------------------------------------------------
// LR schedules
// ---------------------------------------------------------------------------------------------

TEST_CASE("optim: StepLR and WarmupCosine lr sequences match the reference", "[optim]") {
  for (const json& s : reference()["lr_schedules"]) {
    DYNAMIC_SECTION(s.dump().substr(0, 90)) {
      std::vector<Tensor> ps = small_params();
      optim::SGD opt(ps, {.lr = s["base_lr"].get<double>()});
      std::unique_ptr<optim::LRSchedule> sched;
      if (s["kind"] == "step_lr")
        sched = std::make_unique<optim::StepLR>(opt, s["step_size"].get<int64_t>(), s["gamma"].get<double>());
      else
        sched = std::make_unique<optim::WarmupCosine>(opt, s["warmup_steps"].get<int64_t>(),
                                                      s["total_steps"].get<int64_t>(), s["min_lr"].get<double>());
      CHECK(sched->base_lr() == s["base_lr"].get<double>());
      const std::vector<double> lrs = numbers(s["lrs"]);
      for (size_t k = 0; k < lrs.size(); ++k) {
        INFO("step " << k << ": " << std::setprecision(17) << opt.lr() << " vs " << lrs[k]);
        CHECK(sched->last_step() == static_cast<int64_t>(k));
        if (s["kind"] == "step_lr")
          CHECK(opt.lr() == lrs[k]);  // PyTorch's chainable products, bit for bit
        else
          CHECK(compare({opt.lr()}, {lrs[k]}, DType::f64, 1e-6).worst <= 4.0);
        CHECK(sched->lr_at(static_cast<int64_t>(k)) == opt.lr());
        set_synthetic_grads(ps, static_cast<int>(k));
        opt.step();
        sched->step();
      }
    }
  }
}

TEST_CASE("optim: WarmupCosine shape and schedule validation", "[optim]") {
  std::vector<Tensor> ps = small_params();
  optim::SGD opt(ps, {.lr = 0.4});
  optim::WarmupCosine wc(opt, 4, 10, 0.04);
  CHECK(opt.lr() == 0.0);  // the first update uses lr_at(0) = 0
  CHECK(wc.lr_at(2) == Approx(0.2).epsilon(1e-15));
  CHECK(wc.lr_at(4) == 0.4);
  CHECK(wc.lr_at(7) == Approx(0.22).epsilon(1e-14));  // halfway: (base + min) / 2
  CHECK(wc.lr_at(10) == 0.04);
  CHECK(wc.lr_at(1000) == 0.04);
  for (int64_t s = 4; s < 10; ++s) CHECK(wc.lr_at(s + 1) < wc.lr_at(s));
  CHECK_THAT(error_of([&] { wc.lr_at(-1); }), Contains("step"));
  CHECK_THAT(error_of([&] { optim::WarmupCosine(opt, 5, 4); }), Contains("warmup_steps"));
  CHECK_THAT(error_of([&] { optim::WarmupCosine(opt, 0, 0); }), Contains("total_steps"));
  CHECK_THAT(error_of([&] { optim::WarmupCosine(opt, -1, 4); }), Contains("warmup_steps"));
  CHECK_THAT(error_of([&] { optim::WarmupCosine(opt, 1, 4, -0.1); }), Contains("min_lr"));
  CHECK_THAT(error_of([&] { optim::StepLR(opt, 0, 0.1); }), Contains("step_size"));
  CHECK_THAT(error_of([&] { optim::StepLR(opt, 3, -0.1); }), Contains("gamma"));
}

TEST_CASE("optim: LR schedule state_dict round trip and validation", "[optim]") {
  std::vector<Tensor> ps = small_params();
  optim::SGD opt(ps, {.lr = 0.3});
  optim::StepLR sched(opt, 2, 0.1);
  for (int k = 0; k < 5; ++k) sched.step();
  const auto sd = sched.state_dict();
  CHECK(sd.at("last_step").to_vector<int64_t>()[0] == 5);
  CHECK(sd.at("base_lr").item() == 0.3);

  optim::SGD opt2(copies(ps), {.lr = 0.9});
  optim::StepLR sched2(opt2, 2, 0.1);
  CHECK(sched2.base_lr() == 0.9);
  sched2.load_state_dict(sd);
  CHECK(sched2.last_step() == 5);
  CHECK(sched2.base_lr() == 0.3);
  CHECK(opt2.lr() == opt.lr());
  sched.step();
  sched2.step();
  CHECK(opt2.lr() == opt.lr());

  const double lr_before = opt2.lr();
  auto bad = sd;
  bad.erase("last_step");
  CHECK_THAT(error_of([&] { sched2.load_state_dict(bad); }), Contains("missing") && Contains("last_step"));
  bad = sd;
  bad["extra"] = zeros({1});
  CHECK_THAT(error_of([&] { sched2.load_state_dict(bad); }), Contains("unexpected") && Contains("extra"));
  bad = sd;
  bad["base_lr"] = scalar_tensor(-1.0, DType::f64);
  CHECK_THAT(error_of([&] { sched2.load_state_dict(bad); }), Contains("base_lr"));
  bad = sd;
  bad["last_step"] = scalar_tensor(3.0, DType::f64);
  CHECK_THAT(error_of([&] { sched2.load_state_dict(bad); }), Contains("last_step") && Contains("i64"));
  CHECK(sched2.last_step() == 6);
  CHECK(sched2.base_lr() == 0.3);
  CHECK(opt2.lr() == lr_before);
}
