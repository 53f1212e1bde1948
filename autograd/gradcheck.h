#pragma once
// Finite-difference verification of analytic gradients, in float64.
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mixtape {

/// Outcome of gradcheck: ok, the worst mismatch, and a message naming the input and element.
struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string message;
};

/// Options for gradcheck.
struct GradcheckOptions {
  double eps = 1e-6;   ///< central-difference step
  double atol = 1e-5;  ///< |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
  uint64_t seed = 1234;  ///< seed of the random projection of the output
};

/// Compares the gradient of sum(f(inputs) * w) (w a fixed random tensor) computed by backward() with
/// central differences, for every element of every input that requires grad. Inputs must be f64 leaves.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace mixtape
