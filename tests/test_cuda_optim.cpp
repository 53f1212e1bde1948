// CUDA fused optimizer and AMP kernels (cuda/cuda_optim.cu) against the CPU backend, bit for bit: SGD / Adam /
// AdamW over several steps with and without compute copies, found-inf skipping on the device, the multi-tensor
// unscale over many tensors of mixed sizes and dtypes, the loss-scale update sequence, GradScaler and optimizer
// state living on the GPU. Every case skips with a visible message on a machine without a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "core/backend.h"
#include "core/tensor.h"
#include "cuda/multi_tensor.h"
#include "cuda_test_util.h"
#include "optim/optimizer.h"

using namespace mixtape;
using mixtape::testing::gpu;
using mixtape::testing::gpu_or_skip;

namespace {

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  std::vector<uint8_t> out(h.nbytes());
  if (!out.empty()) std::memcpy(out.data(), h.raw_data(), out.size());
  return out;
}

/// Index of the first differing element (for messages), or -1.
int64_t first_difference(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i])))) return static_cast<int64_t>(i);
  return -1;
}

#define REQUIRE_SAME_BITS(gpu_t, cpu_t)                                                             \
  do {                                                                                              \
    INFO("first difference at element " << first_difference(gpu_t, cpu_t));                        \
    REQUIRE(bytes_of(gpu_t) == bytes_of(cpu_t));                                                    \
  } while (0)

std::vector<float> spread(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-12, 3);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i % 97 == 5 ? 0.0f : scale * std::ldexp(mant(rng), expo(rng));
  return v;
}

Tensor f32(const std::vector<float>& v, Device d = Device::cpu()) {
  return from_vector(v, Shape{static_cast<int64_t>(v.size())}).to(d);
}

struct Slot {
  Tensor param, s1, s2, copy;
};

Slot make_slot(size_t n, DType copy_dtype, Device d) {
  Slot s;
  s.param = f32(spread(n, 11), d);
  s.s1 = zeros({static_cast<int64_t>(n)}).to(d);
  s.s2 = zeros({static_cast<int64_t>(n)}).to(d);
  if (copy_dtype != DType::f32) s.copy = full({static_cast<int64_t>(n)}, 7.0, copy_dtype).to(d);
  return s;
}

struct Case {
  std::string name;
  bool adam = false;
  bool momentum = false;
  SgdUpdate sgd;
  AdamUpdate adam_u;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  Case a;
  a.name = "sgd plain";
  a.sgd.lr = 0.1;
  out.push_back(a);
  Case b;
  b.name = "sgd momentum dampening wd";
  b.adam = false;
  b.momentum = true;
  b.sgd.lr = 0.05;
  b.sgd.momentum = 0.9;
  b.sgd.dampening = 0.1;
  b.sgd.weight_decay = 1e-2;
  out.push_back(b);
  Case c;
  c.name = "sgd nesterov";
  c.adam = false;
  c.momentum = true;
  c.sgd.lr = 0.03;
  c.sgd.momentum = 0.8;
  c.sgd.nesterov = true;
  c.sgd.weight_decay = 5e-4;
  out.push_back(c);
  Case d;
  d.name = "adam l2";
  d.adam = true;
  d.adam_u.lr = 3e-3;
  d.adam_u.weight_decay = 1e-2;
  out.push_back(d);
  Case e;
  e.name = "adamw";
  e.adam = true;
  e.adam_u.lr = 1e-2;
  e.adam_u.weight_decay = 0.1;
  e.adam_u.decoupled_weight_decay = true;
  out.push_back(e);
  return out;
}

void apply(const Case& c, Slot& s, const Tensor& grad, int step, const Tensor& found_inf = Tensor()) {
  Backend& b = backend_for(s.param.device());
  if (c.adam) {
    AdamUpdate u = c.adam_u;
    u.step = step;
    u.compute_copy = s.copy;
    u.found_inf = found_inf;
    b.adam_update(s.param, grad, s.s1, s.s2, u);
  } else {
    SgdUpdate u = c.sgd;
    u.first_step = step == 1;
    u.compute_copy = s.copy;
    u.found_inf = found_inf;
    b.sgd_update(s.param, grad, c.momentum ? s.s1 : Tensor(), u);
  }
}

}  // namespace

TEST_CASE("cuda fused optimizers match the CPU bit for bit over several steps", "[cuda][optim]") {
  if (!gpu_or_skip("fused optimizer parity")) return;
  // Bit-identical by construction: the kernels use the CPU's float coefficients, its operation order and
  // explicitly rounded intrinsics (no FMA contraction), and the shared f16/bf16 conversions.
  for (const size_t n : {size_t{1}, size_t{3}, size_t{1000003}}) {
    for (const DType copy_dtype : {DType::f32 /* no copy */, DType::f16, DType::bf16}) {
      for (const Case& c : cases()) {
        INFO(c.name << ", n " << n << ", copy " << (copy_dtype == DType::f32 ? "none" : dtype_name(copy_dtype)));
        Slot host = make_slot(n, copy_dtype, Device::cpu()), dev = make_slot(n, copy_dtype, gpu());
        for (int step = 1; step <= 4; ++step) {
          const Tensor g = f32(spread(n, 50 + static_cast<uint32_t>(step), 0.5f));
          apply(c, host, g, step);
          apply(c, dev, g.to(gpu()), step);
        }
        REQUIRE_SAME_BITS(dev.param, host.param);
        REQUIRE_SAME_BITS(dev.s1, host.s1);
        REQUIRE_SAME_BITS(dev.s2, host.s2);
        if (copy_dtype != DType::f32) {
          REQUIRE_SAME_BITS(dev.copy, host.copy);
          REQUIRE_SAME_BITS(dev.copy, cast(host.param, copy_dtype));  // the copy is the master rounded once
        }
      }
    }
  }
}

TEST_CASE("cuda fused optimizers skip on the device flag", "[cuda][optim]") {
  if (!gpu_or_skip("found_inf skipping")) return;
  for (const Case& c : cases()) {
    INFO(c.name);
    Slot s = make_slot(4099, DType::f16, gpu());
    apply(c, s, f32(spread(4099, 1), gpu()), 1, zeros({}, DType::f32, gpu()));  // a zero flag applies
    const auto p0 = bytes_of(s.param), a0 = bytes_of(s.s1), b0 = bytes_of(s.s2), c0 = bytes_of(s.copy);
    CHECK(bytes_of(s.param) != bytes_of(make_slot(4099, DType::f16, Device::cpu()).param));
    for (const double flag : {1.0, std::numeric_limits<double>::quiet_NaN()}) {
      apply(c, s, f32(spread(4099, 2, 3.0f), gpu()), 2, scalar_tensor(flag, DType::f32, gpu()));
      CHECK(bytes_of(s.param) == p0);
      CHECK(bytes_of(s.s1) == a0);
      CHECK(bytes_of(s.s2) == b0);
      CHECK(bytes_of(s.copy) == c0);
    }
  }
}

TEST_CASE("cuda multi-tensor unscale over mixed sizes and dtypes matches the CPU", "[cuda][amp]") {
  if (!gpu_or_skip("multi-tensor unscale")) return;
  using cuda::kChunkElems;
  using cuda::kMaxChunksPerLaunch;
  // 0, 1, odd, exactly one chunk, one past a chunk, several chunks, and enough in all for two launches.
  const std::vector<int64_t> sizes = {0, 1, 3, 1001, kChunkElems, kChunkElems + 1, 3 * kChunkElems + 17, 0,
                                      kChunkElems * (kMaxChunksPerLaunch - 2) + 5, 7};
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  for (const bool with_inf : {false, true}) {
    INFO((with_inf ? "an inf in the last tensor" : "all finite"));
    std::vector<Tensor> host, dev;
    for (size_t i = 0; i < sizes.size(); ++i) {
      // up to 60000 in magnitude (spread's largest is 8 * scale): finite in f16, whose largest value is 65504
      std::vector<float> v = spread(static_cast<size_t>(sizes[i]), static_cast<uint32_t>(i), 7500.0f);
      if (with_inf && i + 1 == sizes.size()) v[5] = std::numeric_limits<float>::infinity();
      const Tensor t = cast(f32(v), dtypes[i % 3]);
      host.push_back(t.clone());
      dev.push_back(t.to(gpu()));
    }
    const float scale = 3.0f * 32768.0f;
    const Tensor flag_cpu = zeros({}), flag_gpu = zeros({}, DType::f32, gpu());
    cpu_backend().unscale_and_check_into(host, scalar_tensor(scale), flag_cpu);
    backend_for(gpu()).unscale_and_check_into(dev, scalar_tensor(scale, DType::f32, gpu()), flag_gpu);
    CHECK(flag_gpu.item() == flag_cpu.item());
    CHECK(flag_gpu.item() == (with_inf ? 1.0 : 0.0));
    for (size_t i = 0; i < sizes.size(); ++i) {
      INFO("tensor " << i << " of " << sizes[i]);
      REQUIRE_SAME_BITS(dev[i], host[i]);
    }
    // The synchronous form, on the unscaled results (inv_scale 1 leaves them as they are).
    CHECK(backend_for(gpu()).unscale_and_check(dev, 1.0) == with_inf);
  }
}

TEST_CASE("cuda loss-scale update follows the CPU sequence", "[cuda][amp]") {
  if (!gpu_or_skip("loss-scale update")) return;
  LossScaleUpdate u;
  u.growth_factor = 1.7;
  u.backoff_factor = 0.37;
  u.min_scale = 0.5;
  u.max_scale = 97.0;
  u.growth_interval = 3;
  u.hysteresis = 2;
  const Tensor s_c = scalar_tensor(3.0), g_c = zeros({}, DType::i64), h_c = scalar_tensor(2.0, DType::i64);
  const Tensor s_g = s_c.to(gpu()), g_g = g_c.to(gpu()), h_g = h_c.to(gpu());
  std::mt19937 rng(3);
  std::bernoulli_distribution overflow(0.35);
  for (int step = 0; step < 500; ++step) {
    const double f = overflow(rng) ? 1.0 : 0.0;
    cpu_backend().update_loss_scale(s_c, g_c, h_c, scalar_tensor(f), u);
    backend_for(gpu()).update_loss_scale(s_g, g_g, h_g, scalar_tensor(f, DType::f32, gpu()), u);
    REQUIRE(bytes_of(s_g) == bytes_of(s_c));
    REQUIRE(bytes_of(g_g) == bytes_of(g_c));
    REQUIRE(bytes_of(h_g) == bytes_of(h_c));
  }
}

TEST_CASE("cuda GradScaler keeps its state on the GPU and matches the CPU scaler", "[cuda][amp][scaler]") {
  if (!gpu_or_skip("GradScaler on the GPU")) return;
  Tensor wc = from_vector(std::vector<float>{0.5f, -1.0f, 2.0f});
  wc.set_requires_grad(true);
  Tensor wg = wc.detach().to(gpu());
  wg.set_requires_grad(true);
  optim::Adam oc({wc}, {.lr = 0.01}), og({wg}, {.lr = 0.01});
  amp::GradScalerOptions o;
  o.init_scale = 1024.0;
  o.growth_interval = 2;
  o.hysteresis = 2;
  amp::GradScaler sc(oc, o), sg(og, o);
  CHECK(sg.device() == gpu());
  std::mt19937 rng(9);
  std::bernoulli_distribution overflow(0.4);
  for (int step = 0; step < 40; ++step) {
    const bool inf = overflow(rng);
    const std::vector<float> g = {1000.0f * static_cast<float>(step + 1), inf ? INFINITY : 3.0f, -7.0f};
    wc.set_grad(from_vector(g));
    wg.set_grad(from_vector(g).to(gpu()));
    CHECK(sg.step() == sc.step());
    sc.update();
    sg.update();
    REQUIRE(sg.get_scale() == sc.get_scale());
    REQUIRE(sg.growth_tracker() == sc.growth_tracker());
    REQUIRE(sg.hysteresis_tracker() == sc.hysteresis_tracker());
    REQUIRE(bytes_of(wg) == bytes_of(wc));
  }
  // Optimizer state on the parameter's device, the per-parameter step counter on the host.
  CHECK(og.state(0).at("exp_avg").device() == gpu());
  CHECK(og.state(0).at("step").device() == Device::cpu());
  const auto dict = og.state_dict();
  optim::Adam restored({wg}, {.lr = 0.01});
  restored.load_state_dict(dict);
  CHECK(restored.state(0).at("exp_avg_sq").device() == gpu());
  CHECK(bytes_of(restored.state(0).at("exp_avg_sq")) == bytes_of(oc.state(0).at("exp_avg_sq")));
  const auto sdict = sg.state_dict();
  CHECK(sdict.at("scale").device() == Device::cpu());
  CHECK(sdict.at("scale").item() == sc.get_scale());
}
