#pragma once
#include <cstdint>

namespace mixtape {

/// Every differentiable op, as known to the tape and to the AMP policy table (amp/policy).
enum class OpKind : uint8_t {
  add, sub, mul, div, neg, exp, log, sqrt, rsqrt, pow, tanh, sigmoid, relu, gelu, abs, maximum, minimum,
  where, sum, mean, max, matmul, linear, softmax, log_softmax, cross_entropy, layer_norm, mse_loss, cast, reshape,
  conv2d, max_pool2d, avg_pool2d, batch_norm, permute, narrow, cat, embedding,
  count_  ///< number of kinds (not an op)
};

/// "add", "matmul", ... for reports and messages.
const char* op_kind_name(OpKind kind);

}  // namespace mixtape
