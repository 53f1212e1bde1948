#pragma once
// Composite functional ops used by the layers (built on the differentiable ops of autograd/ops.h).
#include "autograd/ops.h"

namespace mixtape::nn {

/// Zeroes each element with probability p and scales the rest by 1/(1-p) when `training`; identity otherwise.
/// The mask comes from `gen` (the default generator when null), so runs are reproducible for one seed.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);
/// Keeps dimension 0 and flattens the rest: (N, ...) -> (N, prod(...)).
Tensor flatten(const Tensor& x);

}  // namespace mixtape::nn
