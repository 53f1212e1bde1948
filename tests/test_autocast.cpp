// Autocast: the output dtype of every op under f16 and bf16 autocast agrees with PyTorch's CUDA autocast lists,
// guards nest and disable, state is per thread, parameter casts are cached per version and step, gradients of
// float32 masters are float32.
#include <catch2/catch.hpp>

#include <memory>
#include <thread>

#include "amp/autocast.h"
#include "amp/policy.h"
#include "autograd/ops.h"
#include "nn/layers.h"
#include "optim/optimizer.h"
#include "autograd/tape.h"
#include "core/random.h"

using namespace mixtape;
using Catch::Matchers::Contains;

namespace {

// Expected output dtype of each op on float32 inputs under autocast(lower), transcribed from PyTorch's CUDA autocast
// lists (aten/src/ATen/autocast_mode.cpp: lower_precision_fp, fp32, fp32_set_opt_dtype, promote; ops in no list run
// in their input dtype, and binary ops follow PyTorch's type promotion).
enum class Want { lower, f32, input };

struct Case {
  const char* name;
  Want want;
  std::function<Tensor(const Tensor& a, const Tensor& b)> run;  // a (4, 4) in [0.5, 1.5], b (4, 4)
};

std::vector<Case> cases() {
  const Tensor labels = from_vector<int64_t>({0, 1, 2, 3}, Shape{4});
  return {
      {"matmul", Want::lower, [](const Tensor& a, const Tensor& b) { return matmul(a, b); }},
      {"linear", Want::lower, [](const Tensor& a, const Tensor& b) { return linear(a, b, Tensor()); }},
      {"exp", Want::f32, [](const Tensor& a, const Tensor&) { return exp(a); }},
      {"log", Want::f32, [](const Tensor& a, const Tensor&) { return log(a); }},
      {"pow", Want::f32, [](const Tensor& a, const Tensor& b) { return pow(a, b); }},
      {"rsqrt", Want::f32, [](const Tensor& a, const Tensor&) { return rsqrt(a); }},
      {"softmax", Want::f32, [](const Tensor& a, const Tensor&) { return softmax(a); }},
      {"log_softmax", Want::f32, [](const Tensor& a, const Tensor&) { return log_softmax(a); }},
      {"cross_entropy", Want::f32, [labels](const Tensor& a, const Tensor&) { return cross_entropy(a, labels); }},
      {"sum", Want::f32, [](const Tensor& a, const Tensor&) { return sum(a); }},
      {"layer_norm", Want::f32, [](const Tensor& a, const Tensor&) { return layer_norm(a); }},
      {"mse_loss", Want::f32, [](const Tensor& a, const Tensor& b) { return mse_loss(a, b); }},
      {"add", Want::input, [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", Want::input, [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", Want::input, [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", Want::input, [](const Tensor& a, const Tensor& b) { return div(a, b); }},
      {"maximum", Want::input, [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", Want::input, [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"where", Want::input, [](const Tensor& a, const Tensor& b) { return where(gt(a, b), a, b); }},
      {"neg", Want::input, [](const Tensor& a, const Tensor&) { return neg(a); }},
      {"sqrt", Want::input, [](const Tensor& a, const Tensor&) { return sqrt(a); }},
      {"tanh", Want::input, [](const Tensor& a, const Tensor&) { return tanh(a); }},
      {"sigmoid", Want::input, [](const Tensor& a, const Tensor&) { return sigmoid(a); }},
      {"relu", Want::input, [](const Tensor& a, const Tensor&) { return relu(a); }},
      {"gelu", Want::input, [](const Tensor& a, const Tensor&) { return gelu(a); }},
      {"abs", Want::input, [](const Tensor& a, const Tensor&) { return abs(a); }},
      {"mean", Want::input, [](const Tensor& a, const Tensor&) { return mean(a); }},
      {"max", Want::input, [](const Tensor& a, const Tensor&) { return max(a); }},
      {"reshape", Want::input, [](const Tensor& a, const Tensor&) { return reshape(a, Shape{16}); }},
      // CNN ops: conv2d is in PyTorch's lower-precision list; pooling and batch_norm are in none (input dtype).
      {"conv2d", Want::lower, [](const Tensor& a, const Tensor& b) {
         return conv2d(reshape(a, Shape{1, 1, 4, 4}), reshape(b, Shape{4, 1, 2, 2}), Tensor(), 1, 0, 1);
       }},
      {"max_pool2d", Want::input, [](const Tensor& a, const Tensor&) { return max_pool2d(reshape(a, Shape{1, 1, 4, 4}), 2); }},
      {"avg_pool2d", Want::input, [](const Tensor& a, const Tensor&) { return avg_pool2d(reshape(a, Shape{1, 1, 4, 4}), 2); }},
      {"batch_norm", Want::input, [](const Tensor& a, const Tensor&) {
         return batch_norm(a, zeros(Shape{4}), ones(Shape{4}), ones(Shape{4}), zeros(Shape{4}), true);
       }},
      // transformer ops: cat is in PyTorch's promote list; permute, narrow (slicing) and embedding in none
      {"permute", Want::input, [](const Tensor& a, const Tensor&) { return permute(a, {1, 0}); }},
      {"narrow", Want::input, [](const Tensor& a, const Tensor&) { return narrow(a, 0, 1, 2); }},
      {"cat", Want::input, [](const Tensor& a, const Tensor& b) { return cat({a, b}, 0); }},
      {"embedding", Want::input, [](const Tensor& a, const Tensor&) {
         return embedding(a, from_vector<int64_t>({3, 0}, Shape{2}));
       }},
  };
}

Tensor inputs(uint64_t seed, DType dtype = DType::f32) {
  Generator g(seed);
  return rand(Shape{4, 4}, dtype, Device::cpu(), &g, 0.5, 1.5);
}

}  // namespace

TEST_CASE("every op's output dtype under autocast agrees with PyTorch's CUDA autocast lists", "[amp][autocast]") {
  const auto all = cases();
  REQUIRE(all.size() == static_cast<size_t>(OpKind::count_) - 1);  // every op kind except the explicit cast
  for (DType lower : {DType::f16, DType::bf16}) {
    for (DType in : {DType::f32, lower}) {
      for (const Case& c : all) {
        INFO(c.name << " under autocast " << dtype_name(lower) << " on " << dtype_name(in) << " inputs");
        Tensor y;
        {
          amp::Autocast ac(Device::cpu(), lower);
          y = c.run(inputs(1, in), inputs(2, in));
        }
        const DType want = c.want == Want::lower ? lower : c.want == Want::f32 ? DType::f32 : in;
        CHECK(dtype_name(y.dtype()) == std::string(dtype_name(want)));
      }
    }
  }
}

TEST_CASE("promote ops run mixed inputs in the widest dtype", "[amp][autocast]") {
  amp::Autocast ac(Device::cpu(), DType::f16);
  CHECK((inputs(1, DType::f16) + inputs(2)).dtype() == DType::f32);
  CHECK((inputs(1, DType::f16) * inputs(2, DType::bf16)).dtype() == DType::f32);  // f16 with bf16 -> f32, as PyTorch
  CHECK(where(gt(inputs(1), inputs(2)), inputs(1, DType::f16), inputs(2)).dtype() == DType::f32);
  CHECK(maximum(inputs(1, DType::bf16), inputs(2, DType::bf16)).dtype() == DType::bf16);
  // f64 is never touched by autocast (as PyTorch)
  CHECK(matmul(inputs(1, DType::f64), inputs(2, DType::f64)).dtype() == DType::f64);
}

TEST_CASE("outside autocast nothing is cast and mixed dtypes are an error", "[amp][autocast]") {
  CHECK_FALSE(amp::is_enabled());
  CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::f32);
  CHECK_THROWS_WITH(inputs(1, DType::f16) + inputs(2), Contains("dtype mismatch"));
}

TEST_CASE("guards nest, disabled regions run in float32, and the state is restored", "[amp][autocast]") {
  {
    amp::Autocast outer(Device::cpu(), DType::bf16);
    CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::bf16);
    {
      amp::Autocast inner(Device::cpu(), DType::f16);
      CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::f16);
      {
        amp::Autocast off(Device::cpu(), DType::f16, false);
        CHECK_FALSE(amp::is_enabled());
        CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::f32);
      }
      CHECK(amp::is_enabled());
      CHECK(amp::autocast_dtype() == DType::f16);
    }
    CHECK(amp::autocast_dtype() == DType::bf16);
    CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::bf16);
  }
  CHECK_FALSE(amp::is_enabled());
  CHECK_THROWS_WITH(amp::Autocast(Device::cpu(), DType::f32), Contains("f16 or bf16"));
}

TEST_CASE("autocast for one device type leaves tensors of another alone", "[amp][autocast]") {
  amp::Autocast ac(Device::cuda(0), DType::f16);  // no CUDA tensors here: CPU ops run as written
  CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::f32);
}

TEST_CASE("autocast state is thread-local", "[amp][autocast]") {
  amp::Autocast ac(Device::cpu(), DType::f16);
  DType other = DType::u8;
  bool other_enabled = true;
  std::thread t([&] {
    other_enabled = amp::is_enabled();
    other = matmul(inputs(1), inputs(2)).dtype();
  });
  t.join();
  CHECK_FALSE(other_enabled);
  CHECK(other == DType::f32);
  CHECK(matmul(inputs(1), inputs(2)).dtype() == DType::f16);
}

TEST_CASE("parameters are cast once per step: cached by version, dropped after backward and at guard exit",
          "[amp][autocast]") {
  manual_seed(4);
  nn::Linear fc(8, 8);
  const Tensor x = randn(Shape{2, 8});
  amp::reset_stats();
  {
    amp::Autocast ac(Device::cpu(), DType::f16);
    const Tensor y1 = fc.forward(x);
    const Tensor y2 = fc.forward(x);  // same weights: served from the cache
    CHECK(amp::cache_size() == 2);     // weight and bias
    const auto s = amp::stats().at(OpKind::linear);
    CHECK(s.calls == 2);
    CHECK(s.cache_hits == 2);
    CHECK(s.casts == 2 + 2);  // x twice (activations are never cached), weight and bias once
    CHECK(s.bytes_cast == 2 * (2 * 8 * 2) + (8 * 8 + 8) * 2);
    CHECK(s.ran_in.at(DType::f16) == 2);
    backward(sum(cast(y1, DType::f32)) + sum(cast(y2, DType::f32)));
    // The masters got float32 gradients through both uses of the one cached copy.
    REQUIRE(fc.weight.grad().defined());
    CHECK(fc.weight.grad().dtype() == DType::f32);
    CHECK(fc.bias.grad().to_vector<float>() == std::vector<float>(8, 4.0f));  // 2 rows x 2 uses
    // After backward the cast nodes are gone: the next use must cast again (not reuse a dead copy).
    const Tensor y3 = fc.forward(x);
    CHECK(amp::stats().at(OpKind::linear).cache_hits == 2);
    CHECK(amp::stats().at(OpKind::linear).casts == 4 + 3);
    const Tensor y4 = fc.forward(x);
    CHECK(amp::stats().at(OpKind::linear).cache_hits == 4);
    // An optimizer step writes the masters in place and bumps their version: the copies are stale.
    fc.weight.bump_version();
    const Tensor y5 = fc.forward(x);
    CHECK(amp::stats().at(OpKind::linear).cache_hits == 5);  // only the bias was still valid
    CHECK(amp::stats().at(OpKind::linear).casts == 7 + 1 + 2);
    clear_tape();
  }
  CHECK(amp::cache_size() == 0);  // dropped when the outermost guard exits
}

TEST_CASE("amp::report lists each op with its policy, dtypes, casts and cache hits", "[amp][autocast]") {
  amp::reset_stats();
  {
    amp::Autocast ac(Device::cpu(), DType::bf16);
    (void)softmax(matmul(inputs(1), inputs(2)));
  }
  const std::string r = amp::report(1);
  CHECK_THAT(r, Contains("matmul") && Contains("lower") && Contains("bf16(1)"));
  CHECK_THAT(r, Contains("softmax") && Contains("fp32") && Contains("f32(1)"));
  amp::reset_stats();
  CHECK(amp::stats().empty());
}

// ---- persistent compute copies (parameters an optimizer updates) ----

namespace {

/// What several training steps of a small model under autocast produced.
struct PersistentRun {
  std::vector<double> losses;
  std::vector<float> weight, bias;
  int64_t linear_casts = 0, persistent_hits = 0;
};

/// `steps` Adam (or SGD with momentum) steps of a Linear under autocast(dtype), persistent copies on or off.
PersistentRun run_persistent(DType dtype, bool persistent, bool adam, int steps) {
  amp::set_persistent_compute_copies(persistent);
  manual_seed(21);
  nn::Linear fc(16, 8);
  const Tensor x = randn(Shape{4, 16});
  std::unique_ptr<optim::Optimizer> opt;
  if (adam) opt = std::make_unique<optim::Adam>(fc.parameters(), optim::AdamOptions{.lr = 1e-2});
  else opt = std::make_unique<optim::SGD>(fc.parameters(), optim::SGDOptions{.lr = 1e-2, .momentum = 0.9});
  amp::reset_stats();
  PersistentRun r;
  for (int s = 0; s < steps; ++s) {
    Tensor loss;
    {
      amp::Autocast ac(Device::cpu(), dtype);
      const Tensor y = fc.forward(x);          // casts x, and the weight and bias unless their copies are valid
      const Tensor z = fc.forward(x * 0.5);    // the same step: the per-step cache serves the parameters
      loss = sum(cast(y, DType::f32) * cast(z, DType::f32));
    }
    opt->zero_grad();
    backward(loss);
    REQUIRE(fc.weight.grad().defined());  // the gradients reached the masters through the cast nodes
    opt->step();
    r.losses.push_back(loss.item());
  }
  const amp::OpStats st = amp::stats().at(OpKind::linear);
  r.linear_casts = st.casts;
  r.persistent_hits = st.persistent_hits;
  r.weight = fc.weight.to_vector<float>();
  r.bias = fc.bias.to_vector<float>();
  amp::set_persistent_compute_copies(true);
  return r;
}

}  // namespace

TEST_CASE("persistent compute copies: no parameter cast after the first step, bit-identical training",
          "[amp][autocast][persistent]") {
  const int steps = 5;
  for (const DType dtype : {DType::f16, DType::bf16}) {
    for (const bool adam : {true, false}) {
      INFO(dtype_name(dtype) << (adam ? " Adam" : " SGD"));
      const PersistentRun on = run_persistent(dtype, true, adam, steps);
      const PersistentRun off = run_persistent(dtype, false, adam, steps);
      // Per step: x and x * 0.5 are cast (activations); the weight and bias only on the first step with
      // persistent copies (the optimizer writes them afterwards), on every step without.
      CHECK(off.linear_casts == steps * (2 + 2));
      CHECK(on.linear_casts == steps * 2 + 2);
      CHECK(on.persistent_hits == 2 * (steps - 1));
      CHECK(off.persistent_hits == 0);
      CHECK(on.losses == off.losses);
      CHECK(on.weight == off.weight);
      CHECK(on.bias == off.bias);
      CHECK(on.losses.front() != on.losses.back());  // it did train
    }
  }
}

TEST_CASE("persistent compute copies: backward uses the kept copy instead of casting the weight again",
          "[amp][autocast][persistent]") {
  // Two layers, so the second one's input requires grad and its backward needs its weight (for that gradient);
  // fc1's input needs none, so fc1's weight is not needed. Without persistent copies backward casts W2 again from
  // its master; with them it uses the kept copy: one allocation fewer, the same gradients.
  auto backward_allocations = [](bool persistent, std::vector<float>& grad) {
    amp::set_persistent_compute_copies(persistent);
    manual_seed(5);
    nn::Linear fc1(8, 32), fc2(32, 4);
    std::vector<Tensor> params = fc1.parameters();
    for (const Tensor& p : fc2.parameters()) params.push_back(p);
    optim::Adam opt(params, optim::AdamOptions{.lr = 1e-2});
    const Tensor x = randn(Shape{4, 8});
    int64_t allocations = 0;
    for (int step = 0; step < 3; ++step) {
      Tensor loss;
      {
        amp::Autocast ac(Device::cpu(), DType::bf16);
        loss = sum(cast(fc2.forward(relu(fc1.forward(x))), DType::f32));
      }
      opt.zero_grad();
      const int64_t before = memory_stats(Device::cpu()).allocations;
      backward(loss);
      allocations = memory_stats(Device::cpu()).allocations - before;  // the last step's
      opt.step();
    }
    grad = fc2.weight.grad().to_vector<float>();
    const std::vector<float> g1 = fc1.weight.grad().to_vector<float>();
    grad.insert(grad.end(), g1.begin(), g1.end());
    amp::set_persistent_compute_copies(true);
    return allocations;
  };
  std::vector<float> grad_kept, grad_recast;
  const int64_t kept = backward_allocations(true, grad_kept);
  const int64_t recast = backward_allocations(false, grad_recast);
  CHECK(recast - kept == 1);  // W2's bf16 copy, cast again in backward only without persistent copies
  CHECK(grad_kept == grad_recast);
  // The kept copy is still checked against its master: a write into the master before backward is refused.
  manual_seed(5);
  nn::Linear fc1(8, 32), fc2(32, 4);
  optim::SGD opt(fc2.parameters(), {.lr = 0.1});
  fc2.weight.set_grad(ones({4, 32}));
  opt.step();  // creates fc2's persistent copies on the next cast
  const Tensor x = randn(Shape{4, 8}, DType::f32, Device::cpu(), nullptr, 0.0, 1.0);
  for (int pass = 0; pass < 2; ++pass) {  // the first pass casts, the optimizer step makes the copy persistent
    Tensor loss;
    {
      amp::Autocast ac(Device::cpu(), DType::bf16);
      loss = sum(cast(fc2.forward(relu(fc1.forward(x))), DType::f32));
    }
    if (pass == 0) {
      backward(loss);
      opt.step();
      continue;
    }
    fc2.weight.copy_(zeros({4, 32}));
    CHECK_THROWS_WITH(backward(loss), Contains("modified in place between the forward pass and backward()"));
  }
  clear_tape();
}

TEST_CASE("persistent compute copies follow the master's version and are freed with the optimizer",
          "[amp][autocast][persistent]") {
  const size_t before = amp::persistent_copy_count();
  manual_seed(3);
  nn::Linear fc(4, 4);
  const Tensor x = randn(Shape{2, 4});
  {
    optim::SGD opt(fc.parameters(), {.lr = 0.1});
    auto forward_casts = [&] {
      amp::reset_stats();
      amp::Autocast ac(Device::cpu(), DType::f16);
      const Tensor y = fc.forward(x);
      clear_tape();
      return amp::stats().at(OpKind::linear).casts;
    };
    auto weight_copy = [&] {
      amp::Autocast ac(Device::cpu(), DType::f16);
      const std::vector<float> w16 = cast(fc.weight, DType::f16).to_vector<float>();
      clear_tape();
      return w16;
    };
    auto step_with_grads = [&](bool bias) {
      fc.weight.set_grad(ones({4, 4}));
      fc.bias.set_grad(bias ? ones({4}) : Tensor());
      opt.step();
    };
    // Until the optimizer's first update, the parameters are cast as usual and nothing is kept.
    CHECK(forward_casts() == 1 + 2);
    CHECK(forward_casts() == 1 + 2);
    CHECK(amp::persistent_copy_count() == before);
    step_with_grads(true);  // creates and writes both f16 copies
    CHECK(amp::persistent_copy_count() == before + 2);
    CHECK(forward_casts() == 1);  // only x: valid across guard exits and tape generations
    CHECK(forward_casts() == 1);
    // A write into the master (copy_ bumps the version) makes its copy stale: it is cast again, once.
    fc.weight.copy_(zeros({4, 4}));
    CHECK(forward_casts() == 1 + 1);
    CHECK(forward_casts() == 1);
    CHECK(weight_copy() == std::vector<float>(16, 0.0f));
    // A step without a bias gradient: the weight's copy is rewritten by the update, the bias's stays valid.
    step_with_grads(false);
    CHECK(forward_casts() == 1);
    CHECK(weight_copy() == std::vector<float>(16, static_cast<float>(Half(-0.1f))));
    // Another dtype gets a copy of its own at the next update; the optimizer refreshes the one cast last.
    amp::reset_stats();
    {
      amp::Autocast ac(Device::cpu(), DType::bf16);
      const Tensor y = fc.forward(x);
      clear_tape();
    }
    CHECK(amp::stats().at(OpKind::linear).casts == 1 + 2);
    step_with_grads(true);
    CHECK(amp::persistent_copy_count() == before + 4);
    CHECK(forward_casts() == 1 + 2);  // the f16 copies are stale now (the bf16 ones were written)
    amp::set_persistent_compute_copies(false);
    CHECK(amp::persistent_copy_count() == before);
    CHECK(forward_casts() == 1 + 2);  // off: plain per-step casts
    step_with_grads(true);
    CHECK(amp::persistent_copy_count() == before);
    amp::set_persistent_compute_copies(true);
  }
  CHECK(amp::persistent_copy_count() == before);  // freed with the optimizer
}
