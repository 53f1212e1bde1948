#pragma once
// Helpers shared by the CPU GEMM tests: random operands with their float64 values, and the epilogue activations
// in float64 (the reference the products are checked against).
#include <cmath>
#include <random>
#include <vector>

#include "core/backend.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "core/tensor.h"

namespace mixtape::testing {

/// A random tensor of `dtype` (uniform in [-1, 1)) and the float64 values it holds.
inline Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937& rng, std::vector<double>& values) {
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = d(rng);
  Tensor t = from_vector(v, shape, dtype);
  values = t.to_vector<double>();
  return t;
}

/// Restores the CPU kernels' implementation (core/cpu_kernels.h) and their default thread count when it goes out of
/// scope, for tests that switch either.
struct CpuKernelsGuard {
  CpuKernels saved = cpu_kernels();
  ~CpuKernelsGuard() {
    set_cpu_kernels(saved);
    set_cpu_threads(0);
  }
};

/// The epilogue's activation of x in float64 (identity for none and bias).
inline double epilogue_act(GemmEpilogue e, double x) {
  switch (e) {
    case GemmEpilogue::bias_relu: return x > 0 ? x : 0.0;
    case GemmEpilogue::bias_gelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    default: return x;
  }
}

}  // namespace mixtape::testing
