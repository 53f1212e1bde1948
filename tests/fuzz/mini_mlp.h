#pragma once
// The MLP of apps/models.cpp (make_mlp) in miniature: the same modules, names and order (Flatten, Linear, ReLU,
// Linear, ReLU, Linear), 4-3-3-2 units, so a checkpoint of it is a few hundred bytes (the checkpoint fuzz target
// and its seed corpus).
#include <memory>

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

}  // namespace mixtape::fuzz
