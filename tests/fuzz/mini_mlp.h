#pragma once
// The MLP of apps/models.cpp (make_mlp) in miniature: the same modules, names and order (Flatten, Linear, ReLU,
// Linear, ReLU, Linear), 4-3-3-2 units, so a checkpoint of it is a few hundred bytes (the checkpoint fuzz target
// and its seed corpus).
#include <memory>
#include <optional>

#include "amp/autocast.h"
#include "autograd/ops.h"
#include "core/tensor.h"
#include "nn/layers.h"

namespace mixtape::fuzz {

inline std::shared_ptr<nn::Module> mini_mlp() {
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Flatten>())
      .add(std::make_shared<nn::Linear>(4, 3))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::Linear>(3, 3))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::Linear>(3, 2));
  return net;
}

/// The loss of `model` (a mini_mlp) on a fixed batch of two samples, under autocast to `lower` unless it is f32:
/// the forward half of one training step, as the checkpoint target resumes and make_corpus trains.
inline Tensor mini_mlp_loss(nn::Module& model, DType lower) {
  const Tensor x = from_vector<float>({0.5f, -1.f, 2.f, 0.25f, -0.5f, 1.f, 0.f, 3.f}, Shape{2, 4});
  const Tensor y = from_vector<int64_t>({1, 0}, Shape{2});
  std::optional<amp::Autocast> autocast;
  if (lower != DType::f32) autocast.emplace(Device::cpu(), lower);
  return cross_entropy(model.forward(x), y);
}

}  // namespace mixtape::fuzz
