// The training run behind `mixtape train`: it learns, it resumes bit for bit, and it rejects bad checkpoints
// and bad data with clear errors without touching what was saved.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/models.h"
#include "apps/trainer.h"
#include "core/backend.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "fashion_mnist_available.h"
#include "test_util.h"

using namespace mixtape;
using mixtape::testing::have_fashion_mnist;
using Catch::Matchers::Contains;
using mixtape::testing::read_text;
using mixtape::testing::TempDir;
namespace fs = std::filesystem;

namespace {

app::TrainConfig small_config() {
  app::TrainConfig c;
  c.limit = 768;
  c.test_limit = 500;
  c.batch = 64;
  c.epochs = 2;
  c.seed = 3;
  c.progress = false;
  return c;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace

TEST_CASE("training the MLP on a Fashion-MNIST subset learns", "[train]") {
  if (!have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): skipping");
    return;
  }
  std::ostringstream log;
  app::TrainConfig c = small_config();
  c.limit = 2048;
  c.epochs = 2;
  const app::TrainResult r = app::train(c, log);
  CHECK(r.steps == 2 * 32);
  CHECK(r.samples == 2 * 2048);
  CHECK(r.test_acc > 0.70);  // chance is 0.10; 2 epochs over 2048 samples reach ~0.75-0.8
  CHECK(r.final_loss < 1.0);
  CHECK(r.peak_mem_bytes > 0);
  CHECK(log.str().find("epoch 2/2") != std::string::npos);
  const auto j = app::to_json(r);
  for (const char* key : {"model", "precision", "device", "epochs", "batch", "steps", "samples_per_s", "train_seconds",
                          "final_loss", "test_acc", "peak_mem_bytes"})
    CHECK(j.contains(key));
}

TEST_CASE("resuming is exact: 1 epoch + save + resume 1 epoch equals 2 epochs, bit for bit", "[train]") {
  if (!have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed: skipping");
    return;
  }
  TempDir dir;
  std::ostringstream log;
  for (const char* opt : {"adam", "sgd"}) {
    INFO("optimizer " << opt);
    app::TrainConfig straight = small_config();
    straight.optimizer = opt;
    straight.lr = std::string(opt) == "sgd" ? 0.05 : 1e-3;
    straight.save_path = dir.file(std::string("straight_") + opt + ".safetensors");
    straight.log_path = dir.file(std::string("straight_") + opt + ".csv");
    const app::TrainResult a = app::train(straight, log);

    app::TrainConfig first = straight;
    first.epochs = 1;
    first.save_path = dir.file(std::string("half_") + opt + ".safetensors");
    first.log_path = dir.file(std::string("resumed_") + opt + ".csv");
    app::train(first, log);
    app::TrainConfig second = straight;
    second.resume_path = first.save_path;
    second.save_path = dir.file(std::string("resumed_") + opt + ".safetensors");
    second.log_path = first.log_path;
    const app::TrainResult b = app::train(second, log);

    CHECK(a.final_loss == b.final_loss);
    CHECK(a.test_acc == b.test_acc);
    CHECK(a.steps == b.steps);
    const SafetensorsFile fa = load_safetensors(straight.save_path), fb = load_safetensors(second.save_path);
    REQUIRE(fa.tensors.size() == fb.tensors.size());
    for (const auto& [name, t] : fa.tensors) {
      INFO(name);
      REQUIRE(fb.tensors.count(name));
      CHECK(t.to_vector<double>() == fb.tensors.at(name).to_vector<double>());
    }
    CHECK(fa.metadata.at("step") == fb.metadata.at("step"));
    CHECK(fa.metadata.at("rng_offset") == fb.metadata.at("rng_offset"));
    // the per-step logs agree too (the resumed one is appended to)
    CHECK(read_text(straight.log_path) == read_text(first.log_path));
  }
}

TEST_CASE("bad checkpoints are rejected with clear errors and leave files untouched", "[train]") {
  if (!have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed: skipping");
    return;
  }
  TempDir dir;
  std::ostringstream log;
  app::TrainConfig c = small_config();
  c.epochs = 1;
  c.limit = 128;
  c.save_path = dir.file("good.safetensors");
  app::train(c, log);
  const std::string good = read_text(c.save_path);

  app::TrainConfig resume = small_config();
  resume.limit = 128;
  resume.epochs = 2;
  auto resume_error = [&](const std::string& path) {
    resume.resume_path = path;
    try {
      app::train(resume, log);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };

  write_bytes(dir.file("truncated.safetensors"), good.substr(0, good.size() / 2));
  CHECK_THAT(resume_error(dir.file("truncated.safetensors")), Contains("truncated.safetensors") && Contains("truncated"));

  std::string altered = good;
  altered[altered.size() - 3] ^= 0x10;  // one flipped bit in the last tensor's data
  write_bytes(dir.file("altered.safetensors"), altered);
  CHECK_THAT(resume_error(dir.file("altered.safetensors")), Contains("altered.safetensors") && Contains("checksum"));

  write_bytes(dir.file("garbage.safetensors"), "this is not a checkpoint at all, just text");
  CHECK_THAT(resume_error(dir.file("garbage.safetensors")), Contains("garbage.safetensors"));

  CHECK_THAT(resume_error(dir.file("missing.safetensors")), Contains("missing.safetensors") && Contains("no such file"));

  save_safetensors(dir.file("foreign.safetensors"), {{"weight", zeros(Shape{2, 2})}});
  CHECK_THAT(resume_error(dir.file("foreign.safetensors")), Contains("not a mixtape checkpoint"));

  resume.optimizer = "sgd";  // the checkpoint holds Adam state
  CHECK_THAT(resume_error(c.save_path), Contains("optimizer"));
  resume.optimizer = "adam";
  resume.epochs = 1;  // already done
  CHECK_THAT(resume_error(c.save_path), Contains("already completed"));

  CHECK(read_text(c.save_path) == good);  // failed resumes never touch the checkpoint
}

TEST_CASE("a failed save leaves the previous checkpoint intact", "[train]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"a", ones(Shape{3})}}, {{"k", "v"}});
  const std::string before = read_text(path);
  fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);  // no new files in the directory
  const bool root = ::geteuid() == 0;  // root ignores permissions: the test then only checks the happy path
  if (!root) CHECK_THROWS_WITH(save_safetensors(path, {{"a", zeros(Shape{3})}}), Contains(path));
  fs::permissions(dir.path, fs::perms::owner_all);
  CHECK((read_text(path) == before || root));
  for (const auto& e : fs::directory_iterator(dir.path)) CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("bad training flags and missing data give errors naming the problem", "[train]") {
  std::ostringstream log;
  app::TrainConfig c = small_config();
  c.data_dir = "/nonexistent/fashion";
  CHECK_THROWS_WITH(app::train(c, log), Contains("/nonexistent/fashion") && Contains("dataset-fashion-mnist"));
  c = small_config();
  c.model = "resnet";
  CHECK_THROWS_WITH(app::train(c, log), Contains("unknown model 'resnet'"));
  c = small_config();
  c.optimizer = "lbfgs";
  CHECK_THROWS_WITH(app::train(c, log), Contains("unknown optimizer 'lbfgs'"));
  c = small_config();
  c.lr = -1;
  CHECK_THROWS_WITH(app::train(c, log), Contains("--lr"));
  c = small_config();
  c.device = "cuda:0";
  if (!device_available(Device::cuda(0))) CHECK_THROWS_WITH(app::train(c, log), Contains("cuda"));
  c.device = "tpu";
  CHECK_THROWS_WITH(app::train(c, log), Contains("unknown device 'tpu'"));
}
