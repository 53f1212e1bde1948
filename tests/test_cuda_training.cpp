// End to end on the GPU: the same model, data and seed trained on the CPU and on CUDA give the same losses and
// weights within each precision's tolerance, and the GradScaler skip/back-off on an injected inf is identical
// on both backends. Compiled only with MIXTAPE_WITH_CUDA; skipped (with a visible message) without a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/allocator.h"
#include "cuda_test_util.h"
#include "nn/layers.h"
#include "optim/optimizer.h"

using namespace mixtape;
using mixtape::testing::check_close;
using mixtape::testing::gpu;
using mixtape::testing::gpu_or_skip;

namespace {

/// 784 -> 96 -> 96 -> 10 MLP with the trainer's layers; the same seed gives the same weights on any device.
std::shared_ptr<nn::Sequential> make_mlp(uint64_t seed) {
  manual_seed(seed);
  return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(784, 96), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(96, 96),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(96, 10)});
}

struct Run {
  std::vector<double> losses;
  std::map<std::string, Tensor> weights;  // on the CPU
  int64_t skipped = 0;
  double final_scale = 0;
};

/// `steps` Adam steps on fixed batches (drawn on the CPU, moved to `device`), under autocast to `lower` when
/// it is not f32, with a GradScaler for f16. `inject_inf_at` poisons one gradient at that step (-1: never).
Run train(Device device, DType lower, int steps, int inject_inf_at = -1) {
  auto model = make_mlp(7);
  model->to(device);
  optim::Adam opt(model->parameters(), {.lr = 1e-3});
  amp::GradScaler scaler(opt, {.enabled = lower == DType::f16});
  const nn::CrossEntropyLoss criterion;
  Generator gen(123);
  Run r;
  for (int s = 0; s < steps; ++s) {
    const Tensor x = randn(Shape{64, 784}, DType::f32, Device::cpu(), &gen).to(device);
    std::vector<int64_t> labels(64);
    for (int i = 0; i < 64; ++i) labels[static_cast<size_t>(i)] = (i * 7 + s) % 10;
    const Tensor y = from_vector(labels, Shape{64}, DType::i64, device);
    Tensor loss;
    {
      amp::Autocast ac(device, lower, lower != DType::f32);
      loss = criterion(model->forward(x), y);
    }
    opt.zero_grad();
    backward(scaler.scale(loss));
    if (s == inject_inf_at) {
      Tensor g = model->parameters().front().grad();
      g.copy_(full(g.shape(), std::numeric_limits<double>::infinity(), g.dtype(), Device::cpu()));
    }
    scaler.step();
    scaler.update();
    r.losses.push_back(loss.item());
  }
  for (auto& [name, t] : model->state_dict()) r.weights[name] = t.to(Device::cpu());
  r.skipped = scaler.skipped_steps();
  r.final_scale = scaler.get_scale();
  return r;
}

/// Losses and weights of a CUDA run against the CPU run. GEMM accumulation order differs between cuBLASLt and
/// Eigen, so the two agree to the precision's rounding, compounded over a few steps, not bit for bit.
void check_runs_agree(const Run& cuda_run, const Run& cpu_run, double rtol, double atol) {
  REQUIRE(cuda_run.losses.size() == cpu_run.losses.size());
  for (size_t i = 0; i < cpu_run.losses.size(); ++i) {
    INFO("step " << i);
    CHECK(std::fabs(cuda_run.losses[i] - cpu_run.losses[i]) <= atol + rtol * std::fabs(cpu_run.losses[i]));
  }
  for (const auto& [name, w] : cpu_run.weights) check_close(cuda_run.weights.at(name), w, rtol, atol, name);
  CHECK(cuda_run.skipped == cpu_run.skipped);
  CHECK(cuda_run.final_scale == cpu_run.final_scale);
}

}  // namespace

TEST_CASE("cuda training: fp32 Adam steps match the CPU backend", "[cuda][cuda_training]") {
  if (!gpu_or_skip("the fp32 training parity test")) return;
  // TF32 is off by default, so float32 GEMMs differ from the CPU's only in summation order.
  check_runs_agree(train(gpu(), DType::f32, 6), train(Device::cpu(), DType::f32, 6), 1e-4, 1e-5);
}

TEST_CASE("cuda training: fp16 autocast with GradScaler matches the CPU backend", "[cuda][cuda_training]") {
  if (!gpu_or_skip("the fp16 training parity test")) return;
  check_runs_agree(train(gpu(), DType::f16, 6), train(Device::cpu(), DType::f16, 6), 2e-2, 2e-3);
}

TEST_CASE("cuda training: bf16 autocast matches the CPU backend", "[cuda][cuda_training]") {
  if (!gpu_or_skip("the bf16 training parity test")) return;
  check_runs_agree(train(gpu(), DType::bf16, 6), train(Device::cpu(), DType::bf16, 6), 6e-2, 1e-2);
}

TEST_CASE("cuda training: an injected inf skips the step and halves the scale as on the CPU", "[cuda][cuda_training]") {
  if (!gpu_or_skip("the GradScaler overflow parity test")) return;
  const Run on_gpu = train(gpu(), DType::f16, 4, /*inject_inf_at=*/2);
  const Run on_cpu = train(Device::cpu(), DType::f16, 4, /*inject_inf_at=*/2);
  CHECK(on_gpu.skipped == 1);
  CHECK(on_gpu.final_scale == 32768.0);  // 65536 backed off once
  check_runs_agree(on_gpu, on_cpu, 2e-2, 2e-3);
}

TEST_CASE("cuda training: AMP keeps less activation memory than fp32 on the device", "[cuda][cuda_training]") {
  if (!gpu_or_skip("the device activation-memory test")) return;
  // Bytes a forward pass keeps for backward. The hidden activations (1024 x 512) dominate here, which is what
  // autocast halves; with 784 inputs and 96 hidden units the f16 copy of the input that the first weight gradient
  // needs would outweigh them (AMP would keep more, on any device).
  auto activation_bytes = [](Device device, DType lower) {
    manual_seed(3);
    auto model = std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(96, 512), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(512, 512),
        std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(512, 10)});
    model->to(device);
    const Tensor x = randn(Shape{1024, 96}, DType::f32, device);
    const Tensor y = zeros(Shape{1024}, DType::i64, device);
    const nn::CrossEntropyLoss criterion;
    const int64_t before = memory_stats(device).current_bytes;
    Tensor loss;
    {
      amp::Autocast ac(device, lower, lower != DType::f32);
      loss = criterion(model->forward(x), y);
    }
    const int64_t held = memory_stats(device).current_bytes - before;  // saved for backward
    backward(loss);
    return held;
  };
  const int64_t f32 = activation_bytes(gpu(), DType::f32), f16 = activation_bytes(gpu(), DType::f16);
  INFO("fp32 " << f32 << " bytes, fp16 " << f16 << " bytes");
  CHECK(f32 >= 2 * 1024 * 512 * 4);
  CHECK(static_cast<double>(f16) <= 0.75 * static_cast<double>(f32));
  // The same autograd graph keeps the same tensors on either backend.
  CHECK(f32 == activation_bytes(Device::cpu(), DType::f32));
  CHECK(f16 == activation_bytes(Device::cpu(), DType::f16));
}
