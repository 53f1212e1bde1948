// The fused optimizer and loss-scaling interface of the CPU backend (core/backend.h): compute copies written in
// the update pass (bit-exact against update-then-cast), found-inf skipping (bit-identical state), the
// device-side unscale into a flag, and update_loss_scale against an independent implementation of
// GradScaler::update()'s documented rule (and against GradScaler itself) over long random overflow patterns.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/backend.h"
#include "core/tensor.h"
#include "optim/optimizer.h"

using namespace mixtape;

namespace {

/// The raw bytes of a CPU tensor (for bit-exact comparisons: NaN payloads and signed zeros included).
std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  std::vector<uint8_t> out(h.nbytes());
  if (!out.empty()) std::memcpy(out.data(), h.raw_data(), out.size());
  return out;
}

/// n float32 values spread over several binades (so that every rounding mode matters), with a few exact zeros.
std::vector<float> spread(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-12, 3);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i % 97 == 5 ? 0.0f : scale * std::ldexp(mant(rng), expo(rng));
  return v;
}

Tensor f32(const std::vector<float>& v) { return from_vector(v, Shape{static_cast<int64_t>(v.size())}); }

/// One configuration of an optimizer update, applied either fused (compute copy written in the pass) or
/// unfused (update, then a separate cast).
struct Case {
  std::string name;
  bool adam = false;
  SgdUpdate sgd;
  AdamUpdate adam_u;
  bool momentum = false;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  {
    Case c;
    c.name = "sgd plain";
    c.sgd.lr = 0.1;
    out.push_back(c);
  }
  {
    Case c;
    c.name = "sgd momentum dampening weight decay";
    c.sgd.lr = 0.05;
    c.sgd.momentum = 0.9;
    c.sgd.dampening = 0.1;
    c.sgd.weight_decay = 1e-2;
    c.momentum = true;
    out.push_back(c);
  }
  {
    Case c;
    c.name = "sgd nesterov";
    c.sgd.lr = 0.03;
    c.sgd.momentum = 0.8;
    c.sgd.nesterov = true;
    c.sgd.weight_decay = 5e-4;
    c.momentum = true;
    out.push_back(c);
  }
  {
    Case c;
    c.name = "adam l2";
    c.adam = true;
    c.adam_u.lr = 3e-3;
    c.adam_u.weight_decay = 1e-2;
    out.push_back(c);
  }
  {
    Case c;
    c.name = "adamw";
    c.adam = true;
    c.adam_u.lr = 1e-2;
    c.adam_u.weight_decay = 0.1;
    c.adam_u.decoupled_weight_decay = true;
    out.push_back(c);
  }
  return out;
}

/// Master, state and compute copy of one parameter.
struct Slot {
  Tensor param, s1, s2, copy;
};

Slot make_slot(size_t n, DType copy_dtype) {
  Slot s;
  s.param = f32(spread(n, 11));
  s.s1 = zeros({static_cast<int64_t>(n)});
  s.s2 = zeros({static_cast<int64_t>(n)});
  s.copy = full({static_cast<int64_t>(n)}, 7.0, copy_dtype);  // a sentinel the update must overwrite
  return s;
}

/// Step `step` (1-based) of case `c` on slot `s`, with the copy fused or cast afterwards.
void apply(const Case& c, Slot& s, const Tensor& grad, int step, bool fused, const Tensor& found_inf = Tensor()) {
  Backend& b = cpu_backend();
  if (c.adam) {
    AdamUpdate u = c.adam_u;
    u.step = step;
    if (fused) u.compute_copy = s.copy;
    u.found_inf = found_inf;
    b.adam_update(s.param, grad, s.s1, s.s2, u);
  } else {
    SgdUpdate u = c.sgd;
    u.first_step = step == 1;
    if (fused) u.compute_copy = s.copy;
    u.found_inf = found_inf;
    b.sgd_update(s.param, grad, c.momentum ? s.s1 : Tensor(), u);
  }
  if (!fused) b.cast(s.param, s.copy);
}

}  // namespace

TEST_CASE("fused compute copy is bit-identical to update then cast", "[optim][fused]") {
  for (const DType copy_dtype : {DType::f16, DType::bf16}) {
    for (const Case& c : cases()) {
      INFO(c.name << " copy " << dtype_name(copy_dtype));
      const size_t n = 1003;
      Slot fused = make_slot(n, copy_dtype), unfused = make_slot(n, copy_dtype);
      for (int step = 1; step <= 6; ++step) {
        const Tensor grad = f32(spread(n, 100 + static_cast<uint32_t>(step), 0.5f));
        apply(c, fused, grad, step, true);
        apply(c, unfused, grad, step, false);
        REQUIRE(bytes_of(fused.param) == bytes_of(unfused.param));
        REQUIRE(bytes_of(fused.s1) == bytes_of(unfused.s1));
        REQUIRE(bytes_of(fused.s2) == bytes_of(unfused.s2));
        REQUIRE(bytes_of(fused.copy) == bytes_of(unfused.copy));
      }
      // The copy really is the master rounded (not left at the sentinel).
      CHECK(fused.copy.to_vector<float>()[1] == static_cast<float>(cast(fused.param, copy_dtype).to_vector<float>()[1]));
      CHECK(fused.copy.to_vector<float>()[1] != 7.0f);
    }
  }
}

TEST_CASE("fused update: a compute copy does not change the master's update", "[optim][fused]") {
  // Fused with a copy vs no copy at all: masters and state bit-identical (the copy is a side output only).
  for (const Case& c : cases()) {
    INFO(c.name);
    Slot with = make_slot(257, DType::f16), without = make_slot(257, DType::f16);
    for (int step = 1; step <= 3; ++step) {
      const Tensor grad = f32(spread(257, 7 + static_cast<uint32_t>(step)));
      apply(c, with, grad, step, true);
      Backend& b = cpu_backend();
      if (c.adam) {
        AdamUpdate u = c.adam_u;
        u.step = step;
        b.adam_update(without.param, grad, without.s1, without.s2, u);
      } else {
        SgdUpdate u = c.sgd;
        u.first_step = step == 1;
        b.sgd_update(without.param, grad, c.momentum ? without.s1 : Tensor(), u);
      }
      REQUIRE(bytes_of(with.param) == bytes_of(without.param));
      REQUIRE(bytes_of(with.s1) == bytes_of(without.s1));
      REQUIRE(bytes_of(with.s2) == bytes_of(without.s2));
    }
  }
}

TEST_CASE("fused update: found_inf skips the whole update, bit for bit", "[optim][fused]") {
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  for (const Case& c : cases()) {
    INFO(c.name);
    Slot s = make_slot(301, DType::bf16), ref = make_slot(301, DType::bf16);
    // A first applied step so that the state is not trivially zero.
    const Tensor g1 = f32(spread(301, 1));
    apply(c, s, g1, 1, true, scalar_tensor(0.0));  // a zero flag applies the update
    apply(c, ref, g1, 1, true);
    REQUIRE(bytes_of(s.param) == bytes_of(ref.param));
    REQUIRE(bytes_of(s.copy) == bytes_of(ref.copy));
    const auto p0 = bytes_of(s.param), a0 = bytes_of(s.s1), b0 = bytes_of(s.s2), c0 = bytes_of(s.copy);
    for (const float flag : {1.0f, -2.0f, std::numeric_limits<float>::infinity(), kNaN}) {
      INFO("flag " << flag);
      apply(c, s, f32(spread(301, 2, 3.0f)), 2, true, scalar_tensor(flag));
      CHECK(bytes_of(s.param) == p0);
      CHECK(bytes_of(s.s1) == a0);
      CHECK(bytes_of(s.s2) == b0);
      CHECK(bytes_of(s.copy) == c0);
    }
  }
}

TEST_CASE("fused update: bad compute copies and flags are rejected", "[optim][fused]") {
  Tensor p = f32(spread(8, 3)), g = f32(spread(8, 4));
  SgdUpdate u;
  u.compute_copy = zeros({8}, DType::f32);
  CHECK_THROWS_WITH(cpu_backend().sgd_update(p, g, Tensor(), u), Catch::Matchers::Contains("f16 or bf16"));
  u.compute_copy = zeros({7}, DType::f16);
  CHECK_THROWS_WITH(cpu_backend().sgd_update(p, g, Tensor(), u), Catch::Matchers::Contains("compute_copy is"));
  u.compute_copy = Tensor();
  u.found_inf = zeros({2});
  CHECK_THROWS_WITH(cpu_backend().sgd_update(p, g, Tensor(), u), Catch::Matchers::Contains("found_inf"));
}

TEST_CASE("unscale_and_check_into matches unscale_and_check and accumulates the flag", "[amp][fused]") {
  for (const DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    const float scale = 3.0f * 65536.0f;  // 1/scale is not a power of two: the rounding of inv_scale matters
    const double inv = static_cast<double>(static_cast<float>(1.0 / static_cast<double>(scale)));
    std::vector<Tensor> a, b;
    for (size_t n : {0u, 1u, 17u, 1000u}) {
      const Tensor t = cast(f32(spread(n, static_cast<uint32_t>(n), 4096.0f)), dt);
      a.push_back(t.clone());
      b.push_back(t.clone());
    }
    const Tensor flag = scalar_tensor(0.0);
    cpu_backend().unscale_and_check_into(a, scalar_tensor(scale), flag);
    CHECK_FALSE(cpu_backend().unscale_and_check(b, inv));
    for (size_t i = 0; i < a.size(); ++i) CHECK(bytes_of(a[i]) == bytes_of(b[i]));
    CHECK(flag.item() == 0.0);
    // Clean grads leave a set flag set (callers zero it once per step).
    const Tensor set = scalar_tensor(1.0);
    cpu_backend().unscale_and_check_into(a, scalar_tensor(scale), set);
    CHECK(set.item() == 1.0);
    // An inf in the last tensor sets it; the other tensors are still scaled.
    Tensor last = a.back();
    std::vector<double> v = last.to_vector<double>();
    v.back() = std::numeric_limits<double>::infinity();
    a.back() = from_vector(v, last.shape(), dt);
    const Tensor other = a[2].clone();  // a clean tensor of the same call: still unscaled
    CHECK_FALSE(cpu_backend().unscale_and_check({other}, inv));
    cpu_backend().unscale_and_check_into(a, scalar_tensor(scale), flag);
    CHECK(flag.item() == 1.0);
    CHECK(bytes_of(a[2]) == bytes_of(other));
    CHECK(std::isinf(a.back().to_vector<double>().back()));
  }
}

namespace {

/// GradScaler::update()'s rule as documented in amp/grad_scaler.h, written independently of the library.
struct RefScaler {
  float scale;
  int64_t growth = 0, hyst;
  LossScaleUpdate u;
  void update(bool overflow) {
    if (overflow) {
      growth = 0;
      if (hyst > 0) --hyst;
      if (hyst == 0) {
        float s = static_cast<float>(static_cast<double>(scale) * u.backoff_factor);
        if (s < static_cast<float>(u.min_scale)) s = static_cast<float>(u.min_scale);
        scale = s;
      }
    } else if (++growth == u.growth_interval) {
      const float s = static_cast<float>(static_cast<double>(scale) * u.growth_factor);
      if (std::isfinite(s)) scale = std::min(s, static_cast<float>(u.max_scale));
      growth = 0;
      hyst = u.hysteresis;
    }
  }
};

}  // namespace

TEST_CASE("update_loss_scale reproduces GradScaler's rule over random overflow patterns", "[amp][fused]") {
  struct Config {
    double init, growth, backoff, min_scale, max_scale;
    int64_t interval, hysteresis;
    double p_overflow;
  };
  const std::vector<Config> configs = {
      {65536.0, 2.0, 0.5, 0.0, 16777216.0, 3, 1, 0.3},                      // PyTorch's rule, ceiling hit
      {1024.0, 2.0, 0.5, 1.0, 1e30, 2, 3, 0.5},                              // hysteresis, floor hit
      {3.0, 1.7, 0.37, 0.5, 97.0, 4, 2, 0.35},                               // inexact factors: float rounding
      {1e30, 3.0, 0.5, 0.0, std::numeric_limits<double>::infinity(), 1, 1, 0.1},  // growth overflows float
  };
  for (size_t ci = 0; ci < configs.size(); ++ci) {
    INFO("config " << ci);
    const Config& c = configs[ci];
    LossScaleUpdate u;
    u.growth_factor = c.growth;
    u.backoff_factor = c.backoff;
    u.min_scale = c.min_scale;
    u.max_scale = c.max_scale;
    u.growth_interval = c.interval;
    u.hysteresis = c.hysteresis;
    RefScaler ref{static_cast<float>(c.init), 0, c.hysteresis, u};
    const Tensor scale = scalar_tensor(static_cast<double>(static_cast<float>(c.init)));
    const Tensor growth = scalar_tensor(0.0, DType::i64), hyst = scalar_tensor(static_cast<double>(c.hysteresis), DType::i64);
    std::mt19937 rng(static_cast<uint32_t>(ci) + 1);
    std::bernoulli_distribution overflow(c.p_overflow);
    int backoffs = 0, growths = 0;
    for (int step = 0; step < 3000; ++step) {
      const bool o = overflow(rng);
      const float before = ref.scale;
      ref.update(o);
      backoffs += ref.scale < before;
      growths += ref.scale > before;
      cpu_backend().update_loss_scale(scale, growth, hyst, scalar_tensor(o ? 1.0 : 0.0), u);
      REQUIRE(static_cast<float>(scale.item()) == ref.scale);
      REQUIRE(growth.to_vector<int64_t>()[0] == ref.growth);
      REQUIRE(hyst.to_vector<int64_t>()[0] == ref.hyst);
    }
    CHECK(backoffs > 0);  // the sequence exercised both directions
    if (ci != 3) CHECK(growths > 0);
  }
}

TEST_CASE("GradScaler's device-side state follows the reference rule step by step", "[amp][fused][scaler]") {
  // The whole scaler (unscale into the flag, skip decision, update on the state's device) against RefScaler.
  Tensor w = zeros({3});
  w.set_requires_grad(true);
  optim::SGD opt({w}, {.lr = 0.0});
  amp::GradScalerOptions o;
  o.init_scale = 256.0;
  o.growth_interval = 3;
  o.hysteresis = 2;
  o.min_scale = 2.0;
  o.max_scale = 4096.0;
  amp::GradScaler scaler(opt, o);
  LossScaleUpdate u;
  u.growth_interval = 3;
  u.hysteresis = 2;
  u.min_scale = 2.0;
  u.max_scale = 4096.0;
  RefScaler ref{256.0f, 0, 2, u};
  CHECK(scaler.device() == Device::cpu());
  std::mt19937 rng(5);
  std::bernoulli_distribution overflow(0.45);
  int64_t skipped = 0;
  for (int step = 0; step < 400; ++step) {
    const bool o_now = overflow(rng);
    w.set_grad(from_vector(std::vector<float>{1.0f, o_now ? std::numeric_limits<float>::infinity() : 2.0f, 3.0f}));
    const bool applied = scaler.step();
    CHECK(applied == !o_now);
    CHECK(scaler.found_inf() == o_now);
    skipped += o_now;
    scaler.update();
    ref.update(o_now);
    REQUIRE(scaler.get_scale() == static_cast<double>(ref.scale));
    REQUIRE(scaler.growth_tracker() == ref.growth);
    REQUIRE(scaler.hysteresis_tracker() == ref.hyst);
    CHECK(scaler.found_inf() == o_now);  // kept after update() until the next check
  }
  CHECK(scaler.skipped_steps() == skipped);
}
