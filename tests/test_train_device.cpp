// `mixtape train --device ...`: an unavailable device fails at startup with a message naming why (runs
// everywhere), and on a GPU the run trains on the device, matches the CPU run, and writes every CSV row
// although losses are read in groups (apps/trainer.h, kDeviceLossReadInterval).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "apps/trainer.h"
#include "core/backend.h"
#include "fashion_mnist_available.h"

using namespace mixtape;
using Catch::Matchers::Contains;
using mixtape::testing::have_fashion_mnist;
namespace fs = std::filesystem;

namespace {

app::TrainConfig device_config(const std::string& device) {
  app::TrainConfig c;
  c.device = device;
  c.limit = 1024;
  c.test_limit = 500;
  c.batch = 16;  // 64 steps per epoch: more than one group of deferred loss reads
  c.epochs = 1;
  c.seed = 5;
  c.progress = false;
  return c;
}

int count_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

TEST_CASE("train: --device cuda without a usable GPU fails at startup naming the reason", "[train][device]") {
  if (cuda_device_count() > 0) {
    WARN("a CUDA device is present: the no-GPU startup error is not exercised here");
    return;
  }
  app::TrainConfig c = device_config("cuda");
  c.data_dir = "/nonexistent/mixtape-data";  // the device is checked before any data is read
  std::ostringstream log;
#ifdef MIXTAPE_WITH_CUDA
  CHECK_THROWS_WITH(app::train(c, log), Contains("device cuda:0 requested but no CUDA device is available") &&
                                            Contains("use the cpu device"));
#else
  CHECK_THROWS_WITH(app::train(c, log), Contains("device cuda:0 requested but mixtape was built without CUDA"));
#endif
  c.device = "cuda:1";
  CHECK_THROWS_WITH(app::train(c, log), Contains("cuda:1"));
  c.device = "tpu";
  CHECK_THROWS_WITH(app::train(c, log), Contains("unknown device 'tpu'"));
  CHECK(log.str().empty());  // nothing ran
}

TEST_CASE("train: --device auto falls back to the cpu without a GPU", "[train][device]") {
  if (cuda_device_count() > 0 || !have_fashion_mnist()) {
    WARN("skipping the auto-device fallback (a GPU is present or Fashion-MNIST is not installed)");
    return;
  }
  app::TrainConfig c = device_config("auto");
  c.limit = 128;
  c.test_limit = 100;
  std::ostringstream log;
  const app::TrainResult r = app::train(c, log);
  CHECK(r.device == "cpu");
  CHECK(r.peak_reserved_bytes >= r.peak_mem_bytes);  // the CPU allocator's cache is reserved too
}

TEST_CASE("train: on a GPU the MLP trains on the device and matches the CPU run", "[train][device][gpu]") {
  if (cuda_device_count() == 0 || !have_fashion_mnist()) {
    WARN("no CUDA device or no Fashion-MNIST: skipping the GPU training run");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("mixtape_train_device_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  app::TrainConfig cpu = device_config("cpu");
  cpu.log_path = (dir / "cpu.csv").string();
  app::TrainConfig gpu = device_config("cuda");
  gpu.log_path = (dir / "gpu.csv").string();
  std::ostringstream log;
  const app::TrainResult rc = app::train(cpu, log);
  const app::TrainResult rg = app::train(gpu, log);
  CHECK(rg.device == "cuda:0");
  CHECK(rg.steps == rc.steps);
  CHECK(count_lines(gpu.log_path) == rg.steps + 1);  // every step has its row, header included
  CHECK(count_lines(cpu.log_path) == rc.steps + 1);
  // fp32 with TF32 off: the same run up to float rounding in a different order
  CHECK(std::fabs(rg.final_loss - rc.final_loss) <= 1e-2 * std::max(1.0, std::fabs(rc.final_loss)));
  CHECK(std::fabs(rg.test_acc - rc.test_acc) <= 0.02);
  CHECK(rg.peak_mem_bytes > 0);
  CHECK(rg.peak_reserved_bytes >= rg.peak_mem_bytes);
  CHECK(rg.activation_bytes > 0);
  for (const char* precision : {"fp16", "bf16"}) {
    INFO(precision);
    app::TrainConfig c = device_config("cuda");
    c.precision = precision;
    const app::TrainResult r = app::train(c, log);
    CHECK(std::isfinite(r.final_loss));
    CHECK(r.test_acc > 0.5);
    CHECK(r.activation_bytes < rg.activation_bytes);  // half-width activations
  }
  fs::remove_all(dir);
}
