#pragma once
// The models `mixtape train --model NAME` builds. Plain nn code: no precision anywhere.
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace mixtape::app {

/// Names accepted by make_model.
std::vector<std::string> model_names();
/// "mlp": 784 -> 1024 -> 1024 -> 10 with ReLU (inputs (N, 784) or (N, 1, 28, 28)); "cnn": conv(1->32, 3x3, pad 1)-BN-
/// ReLU-maxpool 2 -> conv(32->64, 3x3, pad 1)-BN-ReLU-maxpool 2 -> flatten -> 3136 -> 128 -> 10 (same inputs, reshaped
/// to (N, 1, 28, 28)); "wide": the mlp with 8192 hidden units, GEMM-bound at large batches (about 441 MFLOP per sample
/// per training step; meant for a GPU); throws for unknown names.
std::shared_ptr<nn::Module> make_model(const std::string& name);

}  // namespace mixtape::app
