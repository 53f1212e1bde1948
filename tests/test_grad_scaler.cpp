// amp::GradScaler: loss-scale trajectories and masters against PyTorch 1.13's GradScaler (values computed by
// tests/reference/grad_scaler_reference.py and committed as tests/data/grad_scaler_reference.json; no Python
// runs here), overflow and underflow behaviour against float64 references, the stage machine, hysteresis,
// floor and ceiling, the skip diagnosis, state dicts, gradient accumulation and clipping.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pytorch_reference.h"
#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/tensor.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "optim/clip.h"
#include "optim/optimizer.h"

using namespace mixtape;
using amp::GradScaler;
using amp::GradScalerOptions;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------------------
// The committed PyTorch reference
// ---------------------------------------------------------------------------------------------------------

const json& reference() {
  static const json data = testing::load_reference("grad_scaler_reference.json");
  return data;
}

using testing::dtype_of_name;
using testing::number;
using testing::numbers;

/// "" when `t` holds exactly `expected` (rounded once to t's dtype; NaN matches NaN), else the first mismatch.
std::string bit_mismatch(const Tensor& t, const std::vector<double>& expected) {
  if (!t.defined()) return "undefined tensor";
  if (t.numel() != static_cast<int64_t>(expected.size()))
    return detail::cat("size ", t.numel(), " != expected ", expected.size());
  const std::vector<double> actual = t.to_vector<double>();  // exact for f32 and f64
  for (size_t i = 0; i < expected.size(); ++i) {
    const double want = t.dtype() == DType::f32 ? static_cast<double>(static_cast<float>(expected[i])) : expected[i];
    const bool same = (std::isnan(want) && std::isnan(actual[i])) ||
                      std::memcmp(&want, &actual[i], sizeof(double)) == 0;
    if (!same) return detail::cat("element ", i, ": got ", actual[i], ", expected ", want);
  }
  return "";
}

std::string bit_mismatch(const Tensor& a, const Tensor& b) { return bit_mismatch(a, b.to_vector<double>()); }

Tensor tensor_of(const json& values, const Shape& shape, DType dtype) {
  return from_vector<double>(numbers(values), shape, dtype);
}

/// The reference's model: parameters "w" (2, 3) and "b" (3,), named like in the script.
struct RefModel {
  std::map<std::string, Tensor> params;
  std::map<std::string, Shape> shapes;
  std::map<std::string, DType> dtypes;
  std::vector<Tensor> list() const { return {params.at("w"), params.at("b")}; }
};

RefModel make_ref_model(const json& initial, const json& dtypes) {
  RefModel m;
  for (const std::string name : {"w", "b"}) {
    m.shapes[name] = name == "w" ? Shape{2, 3} : Shape{3};
    m.dtypes[name] = dtypes.is_null() ? DType::f32 : dtype_of_name(dtypes[name].get<std::string>());
    Tensor p = tensor_of(initial[name], m.shapes[name], m.dtypes[name]);
    p.set_requires_grad(true);
    p.autograd_meta()->name = name;
    m.params[name] = p;
  }
  return m;
}

/// loss = sum over the parameters in `inputs` of sum(p * x); backward(scaler.scale(loss)).
void scaled_backward(const GradScaler& scaler, const RefModel& m, const json& inputs) {
  Tensor loss;
  for (const std::string name : {"w", "b"}) {
    if (!inputs.contains(name) || inputs[name].is_null()) continue;
    const Tensor x = tensor_of(inputs[name], m.shapes.at(name), m.dtypes.at(name));
    const Tensor term = sum(mul(m.params.at(name), x));
    loss = loss.defined() ? add(loss, term) : term;
  }
  backward(scaler.scale(loss));
}

GradScalerOptions options_of(const json& o) {
  GradScalerOptions opt;
  opt.init_scale = o["init_scale"].get<double>();
  opt.growth_factor = o["growth_factor"].get<double>();
  opt.backoff_factor = o["backoff_factor"].get<double>();
  opt.growth_interval = o["growth_interval"].get<int>();
  return opt;  // floor 0, ceiling 2^24, hysteresis 1: PyTorch's rule below 2^24
}

/// A float32 parameter (requires grad) holding `values`.
Tensor param(const std::vector<double>& values, const std::string& name = "") {
  Tensor p = from_vector<double>(values, Shape{static_cast<int64_t>(values.size())}, DType::f32);
  p.set_requires_grad(true);
  if (!name.empty()) p.autograd_meta()->name = name;
  return p;
}

/// Sets p's gradient to `values` (as if a backward pass had produced them), in `dtype` (default: p's).
void set_grad(const Tensor& p, const std::vector<double>& values, DType dtype = DType::f32) {
  p.set_grad(from_vector<double>(values, p.shape(), dtype));
}

/// Deep copies of tensors (snapshots for bit-for-bit comparisons).
std::vector<Tensor> snapshot(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.defined() ? t.clone() : Tensor());
  return out;
}

std::string state_mismatch(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  if (a.size() != b.size()) return detail::cat("sizes ", a.size(), " != ", b.size());
  for (const auto& [key, t] : a) {
    auto it = b.find(key);
    if (it == b.end()) return "missing " + key;
    if (t.dtype() != it->second.dtype() || !(t.shape() == it->second.shape())) return "dtype/shape of " + key;
    const std::string m = bit_mismatch(t, it->second);
    if (!m.empty()) return key + ": " + m;
  }
  return "";
}

}  // namespace

// -------------------------------------------------------------------------------------------------------------
// Against PyTorch
// -------------------------------------------------------------------------------------------------------------

TEST_CASE("GradScaler: the reference was produced by PyTorch's GradScaler with documented substitutes",
          "[amp][scaler]") {
  const json& ref = reference();
  CHECK(ref["generator"] == "tests/reference/grad_scaler_reference.py");
  CHECK(ref["torch_version"].get<std::string>().rfind("1.13", 0) == 0);
  CHECK_THAT(ref["substituted_ops"].get<std::string>(), Contains("_amp_update_scale_") &&
                                                           Contains("_amp_foreach_non_finite_check_and_unscale_"));
  REQUIRE(ref["scenarios"].size() >= 7);
  REQUIRE(ref["state_machine"].size() >= 9);
}

TEST_CASE("GradScaler: scale trajectory, skipped steps and masters equal PyTorch's bit for bit", "[amp][scaler]") {
  for (const json& sc : reference()["scenarios"]) {
    const std::string name = sc["name"].get<std::string>();
    INFO("scenario " << name);
    RefModel m = make_ref_model(sc["initial"], sc["dtypes"]);
    optim::SGDOptions so;
    so.lr = sc["sgd"]["lr"].get<double>();
    so.momentum = sc["sgd"]["momentum"].get<double>();
    optim::SGD opt(m.list(), so);
    GradScaler scaler(opt, options_of(sc["options"]));
    int64_t skipped = 0;
    size_t k = 0;
    for (const json& st : sc["steps"]) {
      INFO("step " << k++);
      opt.zero_grad();
      for (const json& mb : st["micro_batches"]) scaled_backward(scaler, m, mb);
      if (st["unscale"].get<bool>()) scaler.unscale();
      const std::vector<Tensor> before = snapshot(m.list());
      const bool applied = scaler.step();
      CHECK(applied == st["stepped"].get<bool>());
      CHECK(scaler.found_inf() == st["found_inf"].get<bool>());
      if (!applied) {
        ++skipped;
        for (size_t i = 0; i < before.size(); ++i) CHECK(bit_mismatch(m.list()[i], before[i]) == "");
      }
      scaler.update();
      CHECK(scaler.get_scale() == st["scale"].get<double>());
      CHECK(scaler.growth_tracker() == st["growth_tracker"].get<int64_t>());
      CHECK(scaler.skipped_steps() == skipped);
      for (size_t i = 0; i < 2; ++i) {
        const std::string pname = i == 0 ? "w" : "b";
        INFO("parameter " << pname);
        const Tensor& p = m.params.at(pname);
        CHECK(bit_mismatch(p, numbers(st["params"][pname])) == "");
        if (st["grads"][pname].is_null()) {
          CHECK_FALSE(p.grad().defined());
        } else {
          CHECK(bit_mismatch(p.grad(), numbers(st["grads"][pname])) == "");  // unscaled, inf/NaN included
        }
        const auto& state = opt.state(i);
        if (st["momentum_buffer"][pname].is_null()) {
          CHECK(state.count("momentum_buffer") == 0);
        } else {
          REQUIRE(state.count("momentum_buffer") == 1);
          CHECK(bit_mismatch(state.at("momentum_buffer"), numbers(st["momentum_buffer"][pname])) == "");
        }
      }
    }
    const json& sd = sc["final_state_dict"];
    const auto ours = scaler.state_dict();
    CHECK(ours.at("scale").item() == sd["scale"].get<double>());
    CHECK(ours.at("growth_tracker").item() == sd["_growth_tracker"].get<double>());
    CHECK(ours.at("growth_factor").item() == sd["growth_factor"].get<double>());
    CHECK(ours.at("backoff_factor").item() == sd["backoff_factor"].get<double>());
    CHECK(ours.at("growth_interval").item() == sd["growth_interval"].get<double>());
  }
}

TEST_CASE("GradScaler: stage machine raises where PyTorch's raises", "[amp][scaler]") {
  for (const json& sm : reference()["state_machine"]) {
    INFO("sequence " << sm["name"].get<std::string>());
    RefModel m = make_ref_model(sm["initial"], json());
    optim::SGDOptions so;
    so.lr = 0.1;
    optim::SGD opt(m.list(), so);
    GradScaler scaler(opt, options_of(sm["options"]));
    size_t k = 0;
    for (const json& c : sm["calls"]) {
      const std::string call = c["call"].get<std::string>();
      INFO("call " << k++ << ": " << call << (c.contains("error") ? " (PyTorch: " + c["error"].get<std::string>() + ")"
                                                                  : std::string()));
      bool raised = false;
      try {
        if (call == "sb" || call == "sb_inf") {
          scaled_backward(scaler, m, c["inputs"]);
        } else if (call == "unscale") {
          scaler.unscale();
        } else if (call == "step") {
          scaler.step();
        } else if (call == "update") {
          scaler.update();
        } else if (call == "zero_grad") {
          opt.zero_grad();
        } else {
          FAIL("unknown call " << call);
        }
      } catch (const Error&) {
        raised = true;
      }
      CHECK(raised == c["raised"].get<bool>());
      CHECK(scaler.get_scale() == c["scale"].get<double>());
      CHECK(scaler.growth_tracker() == c["growth_tracker"].get<int64_t>());
      CHECK(opt.step_count() == c["optimizer_steps"].get<int64_t>());
    }
    CHECK(bit_mismatch(m.params.at("w"), numbers(sm["params"]["w"])) == "");
    CHECK(bit_mismatch(m.params.at("b"), numbers(sm["params"]["b"])) == "");
  }
}

// -------------------------------------------------------------------------------------------------------------
// Overflow and underflow
// -------------------------------------------------------------------------------------------------------------

TEST_CASE("GradScaler: an inf gradient skips the step, keeps masters and Adam state bit-identical, halves the scale",
          "[amp][scaler]") {
  // Two identical Adam setups: one behind the scaler (sees an injected inf on step 2), one plain (sees only the
  // clean steps, unscaled). Power-of-two scales make unscaling exact, so they must agree bit for bit.
  const std::vector<double> init{0.5, -1.25, 2.0, 0.75};
  Tensor p = param(init, "fc.weight"), q = param(init);
  optim::AdamOptions ao;
  ao.lr = 0.01;
  optim::Adam opt(std::vector<Tensor>{p}, ao);
  optim::Adam plain(std::vector<Tensor>{q}, ao);
  GradScalerOptions so;
  so.init_scale = 1024.0;
  GradScaler scaler(opt, so);
  const std::vector<double> g1{0.1, -0.2, 0.3, 0.05}, g3{-0.4, 0.25, 0.125, 1.5};
  auto x_of = [](const std::vector<double>& g) { return from_vector<double>(g, Shape{4}, DType::f32); };

  // step 1: clean
  opt.zero_grad();
  backward(scaler.scale(sum(mul(p, x_of(g1)))));
  CHECK(bit_mismatch(p.grad(), std::vector<double>{102.4f, -204.8f, 307.2f, 51.2f}) == "");  // scaled by 1024
  CHECK(scaler.step());
  scaler.update();
  q.set_grad(x_of(g1));
  plain.step();
  CHECK(bit_mismatch(p, q) == "");

  // step 2: an inf in the gradient
  const Tensor p_before = p.clone();
  const auto state_before = opt.state_dict();
  opt.zero_grad();
  backward(scaler.scale(sum(mul(p, x_of({0.1, kInf, 0.3, 0.05})))));
  CHECK_FALSE(scaler.step());
  CHECK(scaler.found_inf());
  CHECK(bit_mismatch(p, p_before) == "");
  CHECK(state_mismatch(opt.state_dict(), state_before) == "");  // exp_avg, exp_avg_sq, steps, step count
  CHECK(opt.step_count() == 1);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.consecutive_skips() == 1);
  scaler.update();
  CHECK(scaler.get_scale() == 512.0);

  // step 3: clean again: applied, equal to the plain run's second step
  opt.zero_grad();
  backward(scaler.scale(sum(mul(p, x_of(g3)))));
  CHECK(scaler.step());
  CHECK_FALSE(scaler.found_inf());
  CHECK(scaler.consecutive_skips() == 0);
  scaler.update();
  q.set_grad(x_of(g3));
  plain.step();
  CHECK_FALSE(bit_mismatch(p, p_before) == "");
  CHECK(bit_mismatch(p, q) == "");
  CHECK(state_mismatch(opt.state_dict(), plain.state_dict()) == "");
  CHECK(scaler.get_scale() == 512.0);
  CHECK(scaler.skipped_steps() == 1);
}

TEST_CASE("GradScaler: float16 gradients that flush to zero unscaled are recovered with scaling", "[amp][scaler]") {
  // y = x @ W^T computed in float16 (W's float16 copy made with cast), loss = 1e-8 * sum(float32(y)).
  // dloss/dW[j][k] = 1e-8 * sum_n x[n][k]: about 1e-8, below float16's smallest subnormal (~6e-8), so without
  // scaling the float16 gradient of y, hence of W, is exactly zero.
  const int64_t n = 4, in = 3, out = 2;
  // A large learning rate makes the ~1e-8 updates visible next to float32 masters of order 0.1.
  const double tiny = 1e-8, lr = 1e6;
  const std::vector<double> xv{0.5, 1.25, -0.75, 2.0, 0.375, 1.0, -1.5, 0.625, 0.25, 1.75, -0.5, 0.875};
  const Tensor x16 = from_vector<double>(xv, Shape{n, in}, DType::f16);  // values exact in float16
  std::vector<double> ref_grad(out * in);  // float64 reference
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k) {
      double s = 0.0;
      for (int64_t r = 0; r < n; ++r) s += xv[r * in + k];
      ref_grad[j * in + k] = tiny * s;
    }
  const std::vector<double> w0{0.3, -0.2, 0.1, 0.05, 0.4, -0.6};
  auto run = [&](bool scaled, std::vector<double>& grad, std::vector<double>& w_after) {
    Tensor w = from_vector<double>(w0, Shape{out, in}, DType::f32);
    w.set_requires_grad(true);
    optim::SGDOptions so;
    so.lr = lr;
    optim::SGD opt(std::vector<Tensor>{w}, so);
    GradScalerOptions o;
    o.enabled = scaled;
    GradScaler scaler(opt, o);
    const Tensor y16 = linear(x16, cast(w, DType::f16));  // (n, out) float16
    REQUIRE(y16.dtype() == DType::f16);
    const Tensor loss = mul(sum(cast(y16, DType::f32)), scalar_tensor(tiny, DType::f32));
    backward(scaler.scale(loss));
    REQUIRE(scaler.step());
    scaler.update();
    REQUIRE(w.grad().dtype() == DType::f32);
    grad = w.grad().to_vector<double>();
    w_after = w.to_vector<double>();
  };
  std::vector<double> g_plain, w_plain, g_scaled, w_scaled;
  run(false, g_plain, w_plain);
  run(true, g_scaled, w_scaled);
  for (size_t i = 0; i < ref_grad.size(); ++i) {
    INFO("element " << i << ": reference " << ref_grad[i]);
    CHECK(g_plain[i] == 0.0);                       // flushed to zero in float16
    CHECK(w_plain[i] == static_cast<float>(w0[i]));  // so no update at all
    CHECK(g_scaled[i] != 0.0);
    // two float16 roundings on the way (grad of y, grad of W): relative error <= 2 * 2^-11
    CHECK(std::fabs(g_scaled[i] - ref_grad[i]) <= std::ldexp(1.0, -10) * std::fabs(ref_grad[i]));
    const double update = static_cast<double>(static_cast<float>(w0[i])) - w_scaled[i];
    CHECK(update != 0.0);
    CHECK(std::fabs(update - lr * ref_grad[i]) <= std::ldexp(1.0, -9) * std::fabs(lr * ref_grad[i]));
  }
}

TEST_CASE("GradScaler: unscale handles gradients of every float dtype and detects inf/NaN in each",
          "[amp][scaler]") {
  // float32 and float64 masters: two dtype groups, one unscale pass each.
  Tensor a = param({1, 2, 3}, "a"), b = param({1, 2}, "b");
  Tensor c = from_vector<double>({1, 1}, Shape{2}, DType::f64), d = from_vector<double>({0, 0}, Shape{2}, DType::f64);
  c.set_requires_grad(true);
  d.set_requires_grad(true);
  optim::SGD opt(std::vector<Tensor>{a, c, b, d});
  GradScalerOptions o;
  o.init_scale = 1024.0;
  GradScaler scaler(opt, o);

  SECTION("clean: each gradient divided by the scale in its own dtype") {
    set_grad(a, {1024.0, -512.0, 3072.0});
    set_grad(b, {8.0, 10240.0});
    set_grad(c, {1.0, -4096.0}, DType::f64);
    set_grad(d, {3.0, 1e300}, DType::f64);  // finite in float64
    scaler.unscale();
    CHECK_FALSE(scaler.found_inf());
    CHECK(a.grad().to_vector<double>() == std::vector<double>{1.0, -0.5, 3.0});
    CHECK(b.grad().to_vector<double>() == std::vector<double>{8.0 / 1024.0, 10.0});
    CHECK(c.grad().to_vector<double>() == std::vector<double>{1.0 / 1024.0, -4.0});
    CHECK(d.grad().to_vector<double>() == std::vector<double>{3.0 / 1024.0, 1e300 / 1024.0});
    scaler.update();  // the check unscale() recorded is enough for update()
    CHECK(scaler.growth_tracker() == 1);
  }
  SECTION("a NaN in a float64 gradient alone") {
    set_grad(a, {1.0, 2.0, 3.0});
    set_grad(d, {1.0, kNaN}, DType::f64);
    CHECK_FALSE(scaler.step());
    CHECK(scaler.found_inf());
    scaler.update();
    CHECK(scaler.get_scale() == 512.0);
  }
  SECTION("an inf in a float32 gradient alone") {
    set_grad(a, {1.0, -kInf, 3.0});
    set_grad(c, {1.0, 2.0}, DType::f64);
    set_grad(d, {1.0, 2.0}, DType::f64);
    CHECK_FALSE(scaler.step());
    CHECK(scaler.found_inf());
  }
  SECTION("float16 and bfloat16 gradients") {
    // No optimizer takes 16-bit parameters today (and Tensor::set_grad insists on the parameter's dtype), so
    // these gradients are written into the autograd slots directly: the scaler groups and unscales any float dtype.
    a.autograd_meta()->grad = from_vector<double>({1024.0, -512.0, 65504.0}, Shape{3}, DType::f16).impl_ptr();
    b.autograd_meta()->grad = from_vector<double>({256.0, 2048.0}, Shape{2}, DType::bf16).impl_ptr();
    scaler.unscale();
    CHECK_FALSE(scaler.found_inf());  // 65504, float16's largest finite value, is finite
    REQUIRE(a.grad().dtype() == DType::f16);
    CHECK(a.grad().to_vector<double>() == std::vector<double>{1.0, -0.5, 65504.0 / 1024.0});
    REQUIRE(b.grad().dtype() == DType::bf16);
    CHECK(b.grad().to_vector<double>() == std::vector<double>{0.25, 2.0});
    scaler.update();
    b.autograd_meta()->grad = from_vector<double>({kInf, 1.0}, Shape{2}, DType::bf16).impl_ptr();
    scaler.unscale();
    CHECK(scaler.found_inf());
  }
}

TEST_CASE("GradScaler: unscaling uses PyTorch's float32 inverse of the scale", "[amp][scaler]") {
  // scale 3000: inv = float32(1 / 3000.0); a gradient is multiplied by it in float32 (float64 for float64).
  Tensor p = param({0.0, 0.0, 0.0});
  Tensor q = from_vector<double>({0.0}, Shape{1}, DType::f64);
  q.set_requires_grad(true);
  optim::SGD opt(std::vector<Tensor>{p, q});
  GradScalerOptions o;
  o.init_scale = 3000.0;
  GradScaler scaler(opt, o);
  const std::vector<float> g{7.0f, 3000.0f, 1.0e-3f};
  set_grad(p, {g[0], g[1], g[2]});
  q.set_grad(from_vector<double>({1.0}, Shape{1}, DType::f64));
  scaler.unscale();
  const float inv = static_cast<float>(1.0 / 3000.0);
  const std::vector<float> got = p.grad().to_vector<float>();
  for (size_t i = 0; i < g.size(); ++i) CHECK(got[i] == g[i] * inv);
  CHECK(q.grad().to_vector<double>()[0] == static_cast<double>(inv));  // not 1 / 3000.0 in double
  CHECK(static_cast<double>(inv) != 1.0 / 3000.0);
}

// -------------------------------------------------------------------------------------------------------------
// Stage machine, skip diagnosis, hysteresis, floor and ceiling
// -------------------------------------------------------------------------------------------------------------

TEST_CASE("GradScaler: stage machine errors say what went wrong", "[amp][scaler]") {
  Tensor p = param({1.0, 2.0});
  optim::SGD opt(std::vector<Tensor>{p});
  GradScaler scaler(opt);
  set_grad(p, {1.0, 2.0});

  SECTION("unscale twice in a step") {
    scaler.unscale();
    const std::vector<double> once = p.grad().to_vector<double>();
    CHECK_THROWS_WITH(scaler.unscale(), Contains("already been called") && Contains("update()"));
    CHECK(p.grad().to_vector<double>() == once);  // not unscaled twice
    CHECK(scaler.step());  // step() after an explicit unscale() does not unscale again
    CHECK(p.grad().to_vector<double>() == std::vector<double>{1.0 / 65536.0, 2.0 / 65536.0});
    scaler.update();
  }
  SECTION("unscale after step") {
    CHECK(scaler.step());
    CHECK_THROWS_WITH(scaler.unscale(), Contains("after step()"));
  }
  SECTION("step twice") {
    CHECK(scaler.step());
    CHECK_THROWS_WITH(scaler.step(), Contains("already been called") && Contains("update()"));
    CHECK(opt.step_count() == 1);
  }
  SECTION("update without an inf check changes nothing") {
    CHECK_THROWS_WITH(scaler.update(), Contains("no inf checks were recorded"));
    CHECK(scaler.get_scale() == 65536.0);
    CHECK(scaler.growth_tracker() == 0);
  }
  SECTION("step without any gradient") {
    p.set_grad(Tensor());
    CHECK_THROWS_WITH(scaler.step(), Contains("has a gradient") && Contains("backward(scaler.scale(loss))"));
    CHECK(opt.step_count() == 0);
    set_grad(p, {1.0, 2.0});
    CHECK(scaler.step());  // the next attempt starts over
  }
  SECTION("unscale then update without step adapts the scale, skips nothing") {
    set_grad(p, {kInf, 2.0});
    scaler.unscale();
    scaler.update();
    CHECK(scaler.get_scale() == 32768.0);
    CHECK(scaler.skipped_steps() == 0);
    CHECK(opt.step_count() == 0);
  }
  SECTION("a new step after update") {
    CHECK(scaler.step());
    scaler.update();
    set_grad(p, {1.0, 2.0});
    scaler.unscale();
    CHECK(scaler.step());
    scaler.update();
    CHECK(opt.step_count() == 2);
  }
}

TEST_CASE("GradScaler: max_consecutive_skips throws naming the non-finite parameters and the scale",
          "[amp][scaler]") {
  struct Net : nn::Module {
    std::shared_ptr<nn::Linear> fc1;
    Tensor extra;
    Net() {
      fc1 = register_module("fc1", std::make_shared<nn::Linear>(3, 2));
      extra = register_parameter("extra", zeros(Shape{2}));
    }
  };
  Net net;
  std::vector<Tensor> params;
  for (auto& [name, t] : net.named_parameters()) params.push_back(t);  // fc1.weight, fc1.bias, extra
  Tensor unnamed = param({0.0, 0.0});                                    // no name: "param #3"
  params.push_back(unnamed);
  optim::SGD opt(params);
  GradScalerOptions o;
  o.max_consecutive_skips = 3;
  GradScaler scaler(opt, o);
  auto bad_grads = [&] {
    set_grad(net.fc1->weight, {1, 2, kInf, 4, 5, 6});
    net.fc1->bias.set_grad(full(Shape{2}, 1.0));
    net.extra.set_grad(full(Shape{2}, 3.0));
    set_grad(unnamed, {kNaN, 1.0});
  };
  auto clean_grads = [&] {
    for (const Tensor& p : params) p.set_grad(ones_like(p));
  };

  SECTION("a clean step resets the count") {
    for (int k = 0; k < 2; ++k) {
      bad_grads();
      CHECK_FALSE(scaler.step());
      scaler.update();
    }
    clean_grads();
    CHECK(scaler.step());
    scaler.update();
    for (int k = 0; k < 2; ++k) {
      bad_grads();
      CHECK_NOTHROW(scaler.step());
      scaler.update();
    }
    CHECK(scaler.consecutive_skips() == 2);
    CHECK(scaler.skipped_steps() == 4);
  }
  SECTION("the third skip in a row throws") {
    for (int k = 0; k < 2; ++k) {
      bad_grads();
      CHECK_FALSE(scaler.step());
      scaler.update();
    }
    CHECK(scaler.get_scale() == 16384.0);
    bad_grads();
    std::string message;
    try {
      scaler.step();
    } catch (const Error& e) {
      message = e.what();
    }
    INFO(message);
    CHECK_THAT(message, Contains("3 optimizer steps in a row were skipped") && Contains("max_consecutive_skips = 3"));
    CHECK_THAT(message, Contains("scale 16384"));
    CHECK_THAT(message, Contains("fc1.weight") && Contains("param #3"));
    CHECK(message.find("fc1.bias") == std::string::npos);
    CHECK(message.find("extra") == std::string::npos);
    CHECK(opt.step_count() == 0);
    CHECK(scaler.skipped_steps() == 3);
    scaler.update();  // the step's bookkeeping was completed
    CHECK(scaler.get_scale() == 8192.0);
  }
}

TEST_CASE("GradScaler: hysteresis backs off at the h-th overflow since the last growth (Megatron-LM)",
          "[amp][scaler]") {
  Tensor p = param({1.0});
  optim::SGD opt(std::vector<Tensor>{p});
  GradScalerOptions o;
  o.init_scale = 1024.0;
  o.growth_interval = 3;
  o.hysteresis = 2;
  GradScaler scaler(opt, o);
  // Hand-computed: (event, scale after update, growth tracker, hysteresis tracker).
  struct Expect {
    bool overflow;
    double scale;
    int64_t growth, hysteresis;
  };
  const std::vector<Expect> expected{
      {true, 1024, 0, 1},   // first overflow: tolerated
      {true, 512, 0, 0},    // second: back off
      {true, 256, 0, 0},    // every further overflow backs off until a growth
      {false, 256, 1, 0},   //
      {false, 256, 2, 0},   //
      {false, 512, 0, 2},   // growth refills the hysteresis
      {true, 512, 0, 1},    // tolerated again
      {false, 512, 1, 1},   // a clean step does not refill it...
      {true, 256, 0, 0},    // ...so this non-consecutive overflow backs off
      {false, 256, 1, 0},
  };
  for (size_t k = 0; k < expected.size(); ++k) {
    INFO("step " << k);
    set_grad(p, {expected[k].overflow ? kInf : 1.0});
    CHECK(scaler.step() == !expected[k].overflow);
    scaler.update();
    CHECK(scaler.get_scale() == expected[k].scale);
    CHECK(scaler.growth_tracker() == expected[k].growth);
    CHECK(scaler.hysteresis_tracker() == expected[k].hysteresis);
  }
  CHECK(scaler.skipped_steps() == 5);  // every overflow skips its step, backed off or not
}

TEST_CASE("GradScaler: the scale stays between min_scale and max_scale", "[amp][scaler]") {
  Tensor p = param({1.0});
  optim::SGD opt(std::vector<Tensor>{p});
  auto run = [&](GradScalerOptions o, const std::vector<bool>& overflows) {
    GradScaler scaler(opt, o);
    std::vector<double> scales;
    for (bool overflow : overflows) {
      set_grad(p, {overflow ? kNaN : 1.0});
      scaler.step();
      scaler.update();
      scales.push_back(scaler.get_scale());
    }
    return scales;
  };
  SECTION("default ceiling 2^24") {
    GradScalerOptions o;
    o.init_scale = 4194304.0;  // 2^22
    o.growth_interval = 1;
    CHECK(run(o, {false, false, false, false, true, false}) ==
          std::vector<double>{8388608.0, 16777216.0, 16777216.0, 16777216.0, 8388608.0, 16777216.0});
  }
  SECTION("a ceiling that is not a power of the growth factor") {
    GradScalerOptions o;
    o.init_scale = 300000.0;
    o.growth_interval = 2;
    o.max_scale = 1e6;
    CHECK(run(o, {false, false, false, false, false, false}) ==
          std::vector<double>{300000.0, 600000.0, 600000.0, 1e6, 1e6, 1e6});
  }
  SECTION("no ceiling (+inf): growth stops only where float32 would overflow, like PyTorch") {
    GradScalerOptions o;
    o.init_scale = 2e38;  // 4e38 does not fit in float32
    o.max_scale = kInf;
    o.growth_interval = 1;
    const float f = static_cast<float>(2e38);
    CHECK(run(o, {false, false}) == std::vector<double>{static_cast<double>(f), static_cast<double>(f)});
  }
  SECTION("floor") {
    GradScalerOptions o;
    o.init_scale = 4096.0;
    o.min_scale = 1000.0;
    CHECK(run(o, {true, true, true, true, false}) == std::vector<double>{2048.0, 1024.0, 1000.0, 1000.0, 1000.0});
  }
  SECTION("no floor: backs off below 1") {
    GradScalerOptions o;
    o.init_scale = 2.0;
    CHECK(run(o, {true, true, true}) == std::vector<double>{1.0, 0.5, 0.25});
  }
}

TEST_CASE("GradScaler: invalid options are rejected by name", "[amp][scaler]") {
  Tensor p = param({1.0});
  optim::SGD opt(std::vector<Tensor>{p});
  auto bad = [&](const std::function<void(GradScalerOptions&)>& edit, const std::string& name) {
    GradScalerOptions o;
    edit(o);
    CHECK_THROWS_WITH(GradScaler(opt, o), Contains(name));
  };
  bad([](auto& o) { o.init_scale = 0.0; }, "init_scale");
  bad([](auto& o) { o.init_scale = kNaN; }, "init_scale");
  bad([](auto& o) { o.init_scale = 1e300; o.max_scale = kInf; }, "init_scale");
  bad([](auto& o) { o.growth_factor = 1.0; }, "growth_factor");
  bad([](auto& o) { o.backoff_factor = 1.0; }, "backoff_factor");
  bad([](auto& o) { o.backoff_factor = 0.0; }, "backoff_factor");
  bad([](auto& o) { o.growth_interval = 0; }, "growth_interval");
  bad([](auto& o) { o.min_scale = -1.0; }, "min_scale");
  bad([](auto& o) { o.max_scale = kNaN; }, "max_scale");
  bad([](auto& o) { o.min_scale = 100.0; o.max_scale = 10.0; o.init_scale = 50.0; }, "min_scale");
  bad([](auto& o) { o.init_scale = 1e9; }, "init_scale");  // above the 2^24 ceiling
  bad([](auto& o) { o.hysteresis = 0; }, "hysteresis");
  bad([](auto& o) { o.max_consecutive_skips = -1; }, "max_consecutive_skips");
}

// -------------------------------------------------------------------------------------------------------------
// Disabled scaler, state dicts
// -------------------------------------------------------------------------------------------------------------

TEST_CASE("GradScaler: disabled, it is transparent", "[amp][scaler]") {
  Tensor p = param({1.0, 2.0});
  optim::SGD opt(std::vector<Tensor>{p});
  GradScalerOptions o;
  o.enabled = false;
  GradScaler scaler(opt, o);
  CHECK_FALSE(scaler.enabled());
  CHECK(scaler.get_scale() == 1.0);
  const Tensor loss = sum(mul(p, p));
  CHECK(scaler.scale(loss).is_same(loss));
  backward(scaler.scale(loss));
  CHECK(p.grad().to_vector<double>() == std::vector<double>{2.0, 4.0});
  scaler.unscale();
  scaler.unscale();  // no stage machine
  CHECK(p.grad().to_vector<double>() == std::vector<double>{2.0, 4.0});
  set_grad(p, {kInf, 1.0});
  CHECK(scaler.step());  // just optimizer.step(), even with inf
  CHECK(opt.step_count() == 1);
  CHECK(std::isinf(p.to_vector<double>()[0]));
  scaler.update();
  scaler.update();
  CHECK(scaler.get_scale() == 1.0);
  CHECK(scaler.skipped_steps() == 0);
  CHECK(scaler.state_dict().empty());
  CHECK_NOTHROW(scaler.load_state_dict({}));
}

TEST_CASE("GradScaler: scale() multiplies in float32 and stays differentiable", "[amp][scaler]") {
  Tensor p = param({1.0, 2.0});
  optim::SGD opt(std::vector<Tensor>{p});
  GradScalerOptions o;
  o.init_scale = 3.0;
  GradScaler scaler(opt, o);
  const Tensor l16 = cast(sum(mul(p, p)), DType::f16);
  const Tensor s16 = scaler.scale(l16);
  CHECK(s16.dtype() == DType::f32);
  CHECK(s16.item() == 15.0);
  backward(s16);
  CHECK(p.grad().to_vector<double>() == std::vector<double>{6.0, 12.0});
  const Tensor l64 = cast(sum(p), DType::f64);
  CHECK(scaler.scale(l64).dtype() == DType::f64);
  CHECK_THROWS_WITH(scaler.scale(from_vector<int64_t>({1})), Contains("floating-point"));
}

namespace {
/// Runs `steps` steps of a scaler over fixed gradients (overflow pattern from `pattern`), recording the scale,
/// trackers and the parameter after each.
std::vector<std::vector<double>> drive(GradScaler& scaler, const Tensor& p, const std::string& pattern) {
  std::vector<std::vector<double>> out;
  int k = 0;
  for (char c : pattern) {
    const double v = 0.5 + 0.125 * (k++ % 5);
    p.set_grad(from_vector<double>({c == 'x' ? kInf : v * scaler.get_scale(), -v * scaler.get_scale()}, Shape{2},
                                   DType::f32));
    const bool applied = scaler.step();
    scaler.update();
    const std::vector<double> pv = p.to_vector<double>();
    out.push_back({scaler.get_scale(), static_cast<double>(scaler.growth_tracker()),
                   static_cast<double>(scaler.hysteresis_tracker()), static_cast<double>(scaler.skipped_steps()),
                   static_cast<double>(scaler.consecutive_skips()), applied ? 1.0 : 0.0, pv[0], pv[1]});
  }
  return out;
}
}  // namespace

TEST_CASE("GradScaler: state_dict round trip resumes the identical trajectory", "[amp][scaler]") {
  GradScalerOptions o;
  o.init_scale = 1000.0;
  o.growth_factor = 3.0;
  o.backoff_factor = 0.3;
  o.growth_interval = 3;
  o.hysteresis = 2;
  o.min_scale = 10.0;
  o.max_scale = 1e5;
  o.max_consecutive_skips = 50;
  const std::string first = "..x.x...x", rest = "xx....x.....x.xxx......";

  Tensor pa = param({1.0, -1.0});
  optim::SGDOptions sgd;
  sgd.lr = 0.1;
  sgd.momentum = 0.9;
  optim::SGD opt_a(std::vector<Tensor>{pa}, sgd);
  GradScaler a(opt_a, o);
  drive(a, pa, first);
  const auto saved = a.state_dict();
  const auto saved_opt = opt_a.state_dict();
  const Tensor saved_p = pa.clone();

  // The layout: 0-d float64 reals, 0-d int64 counts.
  for (const char* key : {"scale", "growth_factor", "backoff_factor", "min_scale", "max_scale"}) {
    INFO(key);
    REQUIRE(saved.count(key) == 1);
    CHECK((saved.at(key).dtype() == DType::f64 && saved.at(key).dim() == 0));
  }
  for (const char* key : {"growth_tracker", "hysteresis_tracker", "skipped_steps", "consecutive_skips",
                          "growth_interval", "hysteresis", "max_consecutive_skips"}) {
    INFO(key);
    REQUIRE(saved.count(key) == 1);
    CHECK((saved.at(key).dtype() == DType::i64 && saved.at(key).dim() == 0));
  }
  CHECK(saved.size() == 12);
  CHECK(saved.at("skipped_steps").item() == 3.0);

  // A fresh scaler with default options, loaded: continues exactly like the original.
  Tensor pb = param({0.0, 0.0});
  pb.detach().copy_(saved_p);
  optim::SGD opt_b(std::vector<Tensor>{pb}, sgd);
  opt_b.load_state_dict(saved_opt);
  GradScaler b(opt_b);
  b.load_state_dict(saved);
  CHECK(b.get_scale() == a.get_scale());
  CHECK(b.options().hysteresis == 2);
  CHECK(b.options().growth_factor == 3.0);
  CHECK(state_mismatch(b.state_dict(), saved) == "");
  const auto traj_a = drive(a, pa, rest);
  const auto traj_b = drive(b, pb, rest);
  CHECK(traj_a == traj_b);
  // and the trajectory did exercise backoff, hysteresis and growth
  CHECK(traj_a.back()[3] > 3.0);
}

TEST_CASE("GradScaler: a bad state dict throws naming the key and changes nothing", "[amp][scaler]") {
  Tensor p = param({1.0, -1.0});
  optim::SGD opt(std::vector<Tensor>{p});
  GradScalerOptions o;
  o.growth_interval = 4;
  o.hysteresis = 3;
  GradScaler scaler(opt, o);
  drive(scaler, p, "x..x.");
  const auto before = scaler.state_dict();
  const auto good = before;

  auto expect_rejected = [&](std::map<std::string, Tensor> dict, const std::string& fragment) {
    INFO("expecting an error containing: " << fragment);
    CHECK_THROWS_WITH(scaler.load_state_dict(dict), Contains(fragment));
    CHECK(state_mismatch(scaler.state_dict(), before) == "");
    CHECK(scaler.get_scale() == before.at("scale").item());
    CHECK(scaler.options().hysteresis == 3);
  };
  auto with = [&](const std::string& key, Tensor value) {
    auto d = good;
    d[key] = value;
    return d;
  };
  auto without = [&](const std::string& key) {
    auto d = good;
    d.erase(key);
    return d;
  };
  expect_rejected({}, "empty");
  expect_rejected(without("hysteresis_tracker"), "missing key \"hysteresis_tracker\"");
  expect_rejected(with("bogus", scalar_tensor(1.0, DType::f64)), "unexpected key \"bogus\"");
  expect_rejected(with("scale", scalar_tensor(1024.0, DType::f32)), "\"scale\" must be a 0-d f");
  expect_rejected(with("scale", full(Shape{1}, 1024.0, DType::f64)), "\"scale\" must be a 0-d");
  expect_rejected(with("growth_tracker", scalar_tensor(1.0, DType::f64)), "\"growth_tracker\" must be a 0-d");
  expect_rejected(with("skipped_steps", scalar_tensor(-1.0, DType::i64)), "\"skipped_steps\" must be >= 0");
  // A count whose next increment would overflow int64 (found by tests/fuzz/fuzz_checkpoint), or beyond 2^53.
  expect_rejected(with("skipped_steps", from_vector<int64_t>({INT64_MAX}, Shape{})), "\"skipped_steps\" is too large");
  expect_rejected(with("consecutive_skips", from_vector<int64_t>({(int64_t{1} << 53) + 1}, Shape{})),
                  "\"consecutive_skips\" is too large");
  expect_rejected(with("scale", scalar_tensor(kNaN, DType::f64)), "key \"scale\"");
  expect_rejected(with("scale", scalar_tensor(0.0, DType::f64)), "key \"scale\"");
  expect_rejected(with("scale", scalar_tensor(1e9, DType::f64)), "max_scale");
  expect_rejected(with("growth_factor", scalar_tensor(0.5, DType::f64)), "growth_factor");
  expect_rejected(with("growth_tracker", scalar_tensor(4.0, DType::i64)), "growth_tracker");
  expect_rejected(with("hysteresis_tracker", scalar_tensor(4.0, DType::i64)), "hysteresis_tracker");
  expect_rejected(with("consecutive_skips", scalar_tensor(100.0, DType::i64)), "consecutive_skips");
  expect_rejected(with("hysteresis", scalar_tensor(0.0, DType::i64)), "hysteresis");

  // Mid-step (after unscale) loading is refused too.
  set_grad(p, {1.0, 1.0});
  scaler.unscale();
  CHECK_THROWS_WITH(scaler.load_state_dict(good), Contains("middle of a step"));
  scaler.step();
  scaler.update();
  // and a good dict loads
  CHECK_NOTHROW(scaler.load_state_dict(good));
  CHECK(state_mismatch(scaler.state_dict(), good) == "");
}

// -------------------------------------------------------------------------------------------------------------
// Gradient accumulation and clipping
// -------------------------------------------------------------------------------------------------------------

namespace {
/// A batch of 8 samples (8, 4) and targets (8, 2) for a 4 -> 2 linear model.
struct Batch {
  std::vector<double> x, t;
};
Batch make_batch() {
  Batch b;
  for (int i = 0; i < 32; ++i) b.x.push_back(std::sin(1.7 * i + 0.3));
  for (int i = 0; i < 16; ++i) b.t.push_back(std::cos(0.9 * i));
  return b;
}
/// Sum over rows [r0, r1) of ||x W^T + bias - t||^2 / 8 (so the two halves add up to the full batch's mean).
Tensor batch_loss(const Batch& b, const Tensor& w, const Tensor& bias, int64_t r0, int64_t r1) {
  const std::vector<double> xs(b.x.begin() + r0 * 4, b.x.begin() + r1 * 4);
  const std::vector<double> ts(b.t.begin() + r0 * 2, b.t.begin() + r1 * 2);
  const Tensor x = from_vector<double>(xs, Shape{r1 - r0, 4}, DType::f32);
  const Tensor t = from_vector<double>(ts, Shape{r1 - r0, 2}, DType::f32);
  const Tensor d = sub(linear(x, w, bias), t);
  return div(sum(mul(d, d)), scalar_tensor(8.0, DType::f32));
}
/// The float64 gradient of the full-batch loss with respect to W (2, 4) and bias (2).
void reference_gradient(const Batch& b, const std::vector<double>& w, const std::vector<double>& bias,
                        std::vector<double>& gw, std::vector<double>& gb) {
  gw.assign(8, 0.0);
  gb.assign(2, 0.0);
  for (int n = 0; n < 8; ++n)
    for (int j = 0; j < 2; ++j) {
      double y = bias[j];
      for (int k = 0; k < 4; ++k) y += w[j * 4 + k] * b.x[n * 4 + k];
      const double d = 2.0 * (y - b.t[n * 2 + j]) / 8.0;
      gb[j] += d;
      for (int k = 0; k < 4; ++k) gw[j * 4 + k] += d * b.x[n * 4 + k];
    }
}
double max_rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  double scale = 0.0, err = 0.0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::fabs(got[i] - want[i]));
  return err / scale;
}
}  // namespace

TEST_CASE("GradScaler: two scaled micro-batches and one step equal one unscaled full batch", "[amp][scaler]") {
  const Batch batch = make_batch();
  const std::vector<double> w0{0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8}, b0{0.05, -0.1};
  std::vector<double> gw_ref, gb_ref;
  reference_gradient(batch, w0, b0, gw_ref, gb_ref);
  auto make = [&](Tensor& w, Tensor& b) {
    w = from_vector<double>(w0, Shape{2, 4}, DType::f32);
    b = from_vector<double>(b0, Shape{2}, DType::f32);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
  };
  optim::SGDOptions so;
  so.lr = 0.5;

  // accumulated: two micro-batches of 4, scaled
  Tensor wa, ba;
  make(wa, ba);
  optim::SGD opt_a(std::vector<Tensor>{wa, ba}, so);
  GradScalerOptions o;
  o.init_scale = 4096.0;
  GradScaler scaler(opt_a, o);
  backward(scaler.scale(batch_loss(batch, wa, ba, 0, 4)));
  backward(scaler.scale(batch_loss(batch, wa, ba, 4, 8)));
  scaler.unscale();
  const std::vector<double> gwa = wa.grad().to_vector<double>(), gba = ba.grad().to_vector<double>();
  CHECK(scaler.step());
  scaler.update();

  // one full batch, no scaler
  Tensor wf, bf;
  make(wf, bf);
  optim::SGD opt_f(std::vector<Tensor>{wf, bf}, so);
  backward(batch_loss(batch, wf, bf, 0, 8));
  const std::vector<double> gwf = wf.grad().to_vector<double>(), gbf = bf.grad().to_vector<double>();
  opt_f.step();

  // both against the float64 reference; float32 accumulation over 8 samples
  CHECK(max_rel_error(gwa, gw_ref) < 1e-6);
  CHECK(max_rel_error(gba, gb_ref) < 1e-6);
  CHECK(max_rel_error(gwf, gw_ref) < 1e-6);
  CHECK(max_rel_error(gwa, gwf) < 1e-6);
  std::vector<double> w_ref(8);
  for (int i = 0; i < 8; ++i) w_ref[i] = w0[i] - so.lr * gw_ref[i];
  CHECK(max_rel_error(wa.to_vector<double>(), w_ref) < 1e-6);
  CHECK(max_rel_error(wa.to_vector<double>(), wf.to_vector<double>()) < 1e-6);
}

TEST_CASE("GradScaler: unscale() before clip_grad_norm clips the true gradients", "[amp][scaler]") {
  const Batch batch = make_batch();
  const std::vector<double> w0{1.1, -2.2, 3.3, 0.4, -1.5, 2.6, 0.7, -1.8}, b0{0.5, -1.0};
  auto make = [&](Tensor& w, Tensor& b) {
    w = from_vector<double>(w0, Shape{2, 4}, DType::f32);
    b = from_vector<double>(b0, Shape{2}, DType::f32);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
  };
  const double max_norm = 0.5;
  optim::SGDOptions so;
  so.lr = 0.1;

  // unscaled run
  Tensor wu, bu;
  make(wu, bu);
  optim::SGD opt_u(std::vector<Tensor>{wu, bu}, so);
  backward(batch_loss(batch, wu, bu, 0, 8));
  const double norm_u = optim::clip_grad_norm({wu, bu}, max_norm);
  REQUIRE(norm_u > 2.0 * max_norm);  // clipping does happen
  opt_u.step();

  // scaled run: scale(loss) -> backward -> unscale -> clip -> step (power-of-two scale: exact unscaling)
  Tensor ws, bs;
  make(ws, bs);
  optim::SGD opt_s(std::vector<Tensor>{ws, bs}, so);
  GradScalerOptions o;
  o.init_scale = 1024.0;
  GradScaler scaler(opt_s, o);
  backward(scaler.scale(batch_loss(batch, ws, bs, 0, 8)));
  scaler.unscale();
  const double norm_s = optim::clip_grad_norm({ws, bs}, max_norm);
  CHECK(norm_s == norm_u);
  CHECK(std::fabs(optim::clip_grad_norm({ws, bs}, kInf, 2.0) - max_norm) < 1e-6);  // clipped to max_norm
  CHECK(scaler.step());
  scaler.update();
  CHECK(bit_mismatch(ws, wu) == "");
  CHECK(bit_mismatch(bs, bu) == "");

  // clipping the still-scaled gradients would have measured a 1024x larger norm
  Tensor wx, bx;
  make(wx, bx);
  optim::SGD opt_x(std::vector<Tensor>{wx, bx}, so);
  GradScaler scaler_x(opt_x, o);
  backward(scaler_x.scale(batch_loss(batch, wx, bx, 0, 8)));
  CHECK(optim::clip_grad_norm({wx, bx}, max_norm) == 1024.0 * norm_u);
}
