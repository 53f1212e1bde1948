// The "cnn" model of `mixtape train`: its shapes, and a few Adam steps on a Fashion-MNIST slice lower the loss.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>
#include <sstream>

#include "apps/models.h"
#include "apps/trainer.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "data/dataset.h"
#include "fashion_mnist_available.h"

using namespace mixtape;
namespace fs = std::filesystem;

TEST_CASE("the cnn model maps (N, 784) to (N, 10) and every parameter gets a gradient", "[conv][train]") {
  clear_tape();
  auto net = app::make_model("cnn");
  CHECK(net->num_parameters() == 320 + 64 + 18496 + 128 + 3136 * 128 + 128 + 1290);
  Generator gen(2);
  const Tensor x = rand(Shape{3, 784}, DType::f32, Device::cpu(), &gen, 0, 1);
  const Tensor logits = net->forward(x);
  CHECK(logits.shape() == Shape{3, 10});
  backward(cross_entropy(logits, from_vector<int64_t>({1, 4, 9}, Shape{3})));
  for (const auto& [name, p] : net->named_parameters()) {
    INFO(name);
    CHECK(p.grad().defined());
  }
  CHECK(net->named_buffers().size() == 4);  // two BatchNorm2d: running_mean, running_var
}

TEST_CASE("training the cnn for a few steps on Fashion-MNIST lowers the loss", "[conv][train]") {
  if (!testing::have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): skipping");
    return;
  }
  app::TrainConfig c;
  c.model = "cnn";
  c.limit = 512;
  c.test_limit = 500;
  c.batch = 64;
  c.epochs = 2;
  c.seed = 1;
  c.progress = false;
  c.log_path = (fs::temp_directory_path() / ("mixtape_cnn_" + std::to_string(::getpid()) + ".csv")).string();
  std::ostringstream log;
  const app::TrainResult r = app::train(c, log);
  INFO(log.str());
  CHECK(r.steps == 16);
  // per-step losses: the mean of the last 4 is clearly below the first (about ln 10 = 2.30)
  std::ifstream in(c.log_path);
  std::string line;
  std::getline(in, line);  // header
  std::vector<double> losses;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string f;
    for (int i = 0; i < 3 && std::getline(ls, f, ','); ++i) {
    }
    losses.push_back(std::stod(f));
  }
  fs::remove(c.log_path);
  REQUIRE(losses.size() == 16);
  const double last = (losses[12] + losses[13] + losses[14] + losses[15]) / 4;
  INFO("first loss " << losses[0] << ", mean of the last four " << last << ", test accuracy " << r.test_acc);
  CHECK(losses[0] > 1.9);
  CHECK(last < 0.75 * losses[0]);
  CHECK(r.test_acc > 0.5);
}

TEST_CASE("at batch 512 the AMP cnn keeps at most 0.6 of float32's activation bytes", "[conv][train][amp]") {
  if (!testing::have_fashion_mnist()) {
    WARN("Fashion-MNIST is not installed: skipping");
    return;
  }
  auto run = [](const char* precision, const char* cpu_kernels = "") {
    app::TrainConfig c;
    c.model = "cnn";
    c.batch = 512;
    c.limit = 1024;  // two steps: the first one casts the weights, the second reuses their copies
    c.test_limit = 64;
    c.precision = precision;
    c.cpu_kernels = cpu_kernels;
    c.progress = false;
    std::ostringstream log;
    return app::train(c, log).activation_bytes;
  };
  const int64_t f32 = run("fp32"), f16 = run("fp16"), bf16 = run("bf16");
  INFO("activation bytes: fp32 " << f32 << ", fp16 " << f16 << ", bf16 " << bf16);
  // fp32 keeps at least conv1's output, its batch-norm output and its ReLU output (3 x 512x32x28x28 x 4 B)
  CHECK(f32 >= 3 * 512 * 32 * 28 * 28 * 4);
  CHECK(static_cast<double>(f16) <= 0.6 * static_cast<double>(f32));
  CHECK(static_cast<double>(bf16) <= 0.6 * static_cast<double>(f32));
  // ... and more than half: max pooling's i64 indices do not shrink with the precision
  CHECK(static_cast<double>(f16) > 0.5 * static_cast<double>(f32));
  // On the same kernels, f16 and bf16 keep the same bytes. (By default bf16 convolutions may run on oneDNN, which
  // keeps each weight in its own layout from the first forward pass on, while f16 ones run on Eigen.)
  const int64_t f16_eigen = run("fp16", "eigen"), bf16_eigen = run("bf16", "eigen");
  INFO("on Eigen: fp16 " << f16_eigen << ", bf16 " << bf16_eigen);
  CHECK(bf16_eigen == f16_eigen);
}
