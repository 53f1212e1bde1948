// A user-defined model trained from C++: a residual MLP written as nn::Module subclasses, trained with AdamW
// on synthetic 2-D spirals through data::DataLoader, then evaluated on a fresh draw of the spirals.
//
//   custom_model [min_accuracy]   exits 1 when the test accuracy is below min_accuracy (default 0.9)
#include <cstdint>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "optim/optimizer.h"

using namespace mixtape;

// x + gate * fc2(gelu(fc1(norm(x)))): a pre-norm residual block. `gate` is a hand-written parameter (one
// value per feature, starting at zero, so the block begins as the identity and learns how much to add).
struct ResidualBlock : nn::Module {
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> fc1, fc2;
  Tensor gate;  // (width)

  explicit ResidualBlock(int64_t width) {
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(width));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(width, 2 * width));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(2 * width, width));
    gate = register_parameter("gate", zeros(Shape{width}));
  }
  std::string type_name() const override { return "ResidualBlock"; }
  Tensor forward(const Tensor& x) override {  // (N, width) -> (N, width)
    return x + gate * fc2->forward(gelu(fc1->forward(norm->forward(x))));
  }
};

// Input projection, a stack of residual blocks, and a classifier head.
struct ResidualMLP : nn::Module {
  std::shared_ptr<nn::Linear> embed, head;
  std::vector<std::shared_ptr<ResidualBlock>> blocks;

  ResidualMLP(int64_t in, int64_t width, int depth, int64_t classes) {
    embed = register_module("embed", std::make_shared<nn::Linear>(in, width));
    for (int i = 0; i < depth; ++i)
      blocks.push_back(register_module("block" + std::to_string(i), std::make_shared<ResidualBlock>(width)));
    head = register_module("head", std::make_shared<nn::Linear>(width, classes));
  }
  std::string type_name() const override { return "ResidualMLP"; }
  Tensor forward(const Tensor& x) override {  // (N, in) -> logits (N, classes)
    Tensor h = embed->forward(x);
    for (auto& block : blocks) h = block->forward(h);
    return head->forward(h);
  }
};

// Fraction of samples whose arg-max logit is the label.
double accuracy(nn::Module& model, const data::Dataset& ds) {
  NoGradGuard no_grad;
  model.eval();
  const auto pred = argmax(model.forward(ds.inputs), -1).to_vector<int64_t>();
  const auto labels = ds.labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += pred[i] == labels[i];
  model.train();
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

// Usage: custom_model [MIN_ACCURACY] [fp32|fp16|bf16]. The model code is the same in every precision: under
// amp::Autocast its matmuls run in the lower precision and its losses in float32, with float32 master weights.
int main(int argc, char** argv) {
  const double min_accuracy = argc > 1 ? std::atof(argv[1]) : 0.9;
  const std::string precision = argc > 2 ? argv[2] : "fp32";
  if (precision != "fp32" && precision != "fp16" && precision != "bf16") {
    std::cerr << "custom_model: precision must be fp32, fp16 or bf16, got '" << precision << "'\n";
    return EXIT_FAILURE;
  }
  const bool use_amp = precision != "fp32";
  const DType lower = precision == "bf16" ? DType::bf16 : DType::f16;
  manual_seed(0);  // parameter initialisation

  // Same spirals, independent noise: seed 1 to train, seed 2 to test.
  const data::Dataset train_set = data::make_spirals(1500, 3, /*seed=*/1, /*noise=*/0.05);
  const data::Dataset test_set = data::make_spirals(600, 3, /*seed=*/2, /*noise=*/0.05);
  data::DataLoader loader(train_set, {.batch_size = 32, .seed = 42});

  auto model = std::make_shared<ResidualMLP>(2, 32, 2, train_set.num_classes);
  std::cout << model->to_string() << model->num_parameters() << " parameters\n";
  optim::AdamW opt(model->parameters(), {.lr = 3e-3, .weight_decay = 1e-4});
  const nn::CrossEntropyLoss criterion;
  amp::GradScaler scaler(opt, {.enabled = precision == "fp16"});  // fp16 needs loss scaling; bf16 does not

  const int epochs = 20;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double total = 0;
    int64_t steps = 0;
    for (auto [x, y] : loader) {  // x (32, 2) f32, y (32) i64
      Tensor loss;
      {
        amp::Autocast autocast(Device::cpu(), lower, use_amp);  // enabled=false: plain float32
        loss = criterion(model->forward(x), y);
      }
      opt.zero_grad();
      backward(scaler.scale(loss));
      scaler.step();  // skipped if a gradient overflowed
      scaler.update();
      total += loss.item();
      ++steps;
    }
    std::cout << "epoch " << std::setw(2) << epoch << "  loss " << std::fixed << std::setprecision(4)
              << total / static_cast<double>(steps) << '\n';
  }

  const double acc = accuracy(*model, test_set);
  std::cout << precision << " test accuracy " << std::setprecision(3) << acc << " (need >= " << min_accuracy << ")\n";
  return acc >= min_accuracy ? EXIT_SUCCESS : EXIT_FAILURE;
}
