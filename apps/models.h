#pragma once
// The models `mixtape train --model NAME` builds. Plain nn code: no precision anywhere.
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace mixtape::app {

/// Names accepted by make_model.
std::vector<std::string> model_names();
/// "mlp": 784 -> 1024 -> 1024 -> 10 with ReLU (inputs (N, 784) or (N, 1, 28, 28)); throws for unknown names.
std::shared_ptr<nn::Module> make_model(const std::string& name);

}  // namespace mixtape::app
