#pragma once
// Composite functional ops used by the layers (built on the differentiable ops of autograd/ops.h).
#include "autograd/ops.h"

namespace mixtape::nn {

/// Zeroes each element with probability p and scales the rest by 1/(1-p) when `training`; identity otherwise.
/// The mask comes from `gen` (the default generator when null), so runs are reproducible for one seed.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);
/// Layer normalisation over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias (weight/bias optional).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
/// Mean (or sum, or none) of (a - b)^2.
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean);
/// Keeps dimension 0 and flattens the rest: (N, ...) -> (N, prod(...)).
Tensor flatten(const Tensor& x);

}  // namespace mixtape::nn
