// Mixed-precision training end to end: fp16/bf16 reach float32's accuracy with the same seed, keep less alive
// for backward, resume exactly with the loss scale, and `compare` lays the runs side by side.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "apps/compare_command.h"
#include "apps/trainer.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "fashion_mnist_available.h"

using namespace mixtape;
using mixtape::testing::have_fashion_mnist;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

app::TrainResult run(app::TrainConfig c, const std::string& precision) {
  std::ostringstream log;
  c.precision = precision;
  c.progress = false;
  return app::train(c, log);
}

}  // namespace

TEST_CASE("fp16 and bf16 training reach float32's test accuracy within 0.5 points", "[amp][train][accuracy]") {
  if (!have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): skipping");
    return;
  }
  app::TrainConfig c;
  c.limit = 6000;
  c.test_limit = 4000;
  c.epochs = 1;
  c.seed = 5;
  const app::TrainResult f32 = run(c, "fp32"), f16 = run(c, "fp16"), bf16 = run(c, "bf16");
  INFO("fp32 " << f32.test_acc << ", fp16 " << f16.test_acc << ", bf16 " << bf16.test_acc);
  CHECK(f32.test_acc > 0.75);
  CHECK(std::fabs(f16.test_acc - f32.test_acc) <= 0.005);
  CHECK(std::fabs(bf16.test_acc - f32.test_acc) <= 0.005);
  // fp16 scales the loss (PyTorch's default start, no overflow expected here); bf16 and fp32 do not.
  CHECK(f16.loss_scale >= 65536.0);
  CHECK(f16.skipped_steps == 0);
  CHECK(bf16.loss_scale == 1.0);
  CHECK(f32.loss_scale == 1.0);
  CHECK(f16.precision == "fp16");
}

TEST_CASE("at batch 4096 the AMP runs keep at most 0.7 of float32's activation bytes", "[amp][train]") {
  if (!have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed: skipping");
    return;
  }
  app::TrainConfig c;
  c.limit = 4096;
  c.batch = 4096;
  c.test_limit = 100;
  c.epochs = 1;
  const app::TrainResult f32 = run(c, "fp32"), f16 = run(c, "fp16"), bf16 = run(c, "bf16");
  INFO("activation bytes: fp32 " << f32.activation_bytes << ", fp16 " << f16.activation_bytes << ", bf16 "
                                 << bf16.activation_bytes);
  // fp32 keeps at least the two hidden activations (2 x 4096 x 1024 x 4 bytes) alive for backward
  CHECK(f32.activation_bytes >= 2 * 4096 * 1024 * 4);
  CHECK(static_cast<double>(f16.activation_bytes) <= 0.7 * static_cast<double>(f32.activation_bytes));
  CHECK(static_cast<double>(bf16.activation_bytes) <= 0.7 * static_cast<double>(f32.activation_bytes));
  // ... and more than half: the weights' compute copies and the first layer's input cast stay too
  CHECK(static_cast<double>(f16.activation_bytes) > 0.5 * static_cast<double>(f32.activation_bytes));
}

TEST_CASE("an fp16 run resumes exactly, loss scale included", "[amp][train]") {
  if (!have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed: skipping");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("mixtape_amp_resume_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  app::TrainConfig c;
  c.limit = 512;
  c.test_limit = 200;
  c.batch = 64;
  c.epochs = 2;
  c.precision = "fp16";
  c.progress = false;
  std::ostringstream log;
  c.save_path = (dir / "straight.safetensors").string();
  const app::TrainResult a = app::train(c, log);
  app::TrainConfig first = c;
  first.epochs = 1;
  first.save_path = (dir / "half.safetensors").string();
  app::train(first, log);
  app::TrainConfig second = c;
  second.resume_path = first.save_path;
  second.save_path = (dir / "resumed.safetensors").string();
  const app::TrainResult b = app::train(second, log);
  CHECK(a.final_loss == b.final_loss);
  CHECK(a.loss_scale == b.loss_scale);
  const auto fa = load_safetensors(c.save_path), fb = load_safetensors(second.save_path);
  REQUIRE(fa.tensors.count("scaler.scale") == 1);
  for (const auto& [name, t] : fa.tensors) {
    INFO(name);
    CHECK(t.to_vector<double>() == fb.tensors.at(name).to_vector<double>());
  }
  // resuming an fp16 run as bf16 is refused: the run would not be the same
  app::TrainConfig wrong = second;
  wrong.precision = "bf16";
  CHECK_THROWS_WITH(app::train(wrong, log), Contains("precision"));
  fs::remove_all(dir);
}

TEST_CASE("the compare table puts ratios against the first run", "[amp]") {
  app::TrainResult a, b;
  a.precision = "fp32";
  a.samples_per_s = 1000;
  a.peak_mem_bytes = 200 << 20;
  a.activation_bytes = 100 << 20;
  a.test_acc = 0.875;
  b = a;
  b.precision = "bf16";
  b.samples_per_s = 2500;
  b.peak_mem_bytes = 150 << 20;
  b.activation_bytes = 60 << 20;
  b.loss_scale = 1;
  const std::string t = app::compare_table({a, b});
  CHECK_THAT(t, Contains("speedup") && Contains("test acc") && Contains("loss scale"));
  CHECK_THAT(t, Contains("2.50x"));  // samples/s ratio
  CHECK_THAT(t, Contains("0.75"));   // peak memory ratio
  CHECK_THAT(t, Contains("0.60"));   // activation ratio
  CHECK_THAT(t, Contains("87.50%"));
}

TEST_CASE("unknown precisions and loss-scale modes are rejected", "[amp][train]") {
  app::TrainConfig c;
  c.precision = "fp8";
  std::ostringstream log;
  CHECK_THROWS_WITH(app::train(c, log), Contains("unknown precision 'fp8'"));
  c.precision = "fp16";
  c.loss_scale = "maybe";
  CHECK_THROWS_WITH(app::train(c, log), Contains("--loss-scale"));
}
