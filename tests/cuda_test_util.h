#pragma once
// Shared pieces of the CUDA tests (tests/test_cuda_*.cpp, compiled only with MIXTAPE_WITH_CUDA): the skip on
// a machine without a GPU, and parity checks of a CUDA result against the CPU backend or a float64 reference.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"
#include "cuda/cuda_runtime_info.h"

namespace mixtape::testing {

/// The device CUDA tests run on.
inline Device gpu() { return Device::cuda(0); }

/// True when a GPU is present; otherwise prints "no CUDA device: skipping <what>" (a visible Catch2 warning)
/// and returns false, so the test returns without asserting anything GPU-side.
inline bool gpu_or_skip(const std::string& what) {
  if (cuda_device_count() > 0) return true;
  WARN("no CUDA device: skipping " << what << " (" << cuda::no_device_reason() << ")");
  return false;
}

/// Relative tolerance for comparing one rounding of `dtype` (a few units in the last place).
inline double ulp_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f16: return 4.0 * 9.765625e-4;   // 4 * 2^-10
    case DType::bf16: return 4.0 * 7.8125e-3;    // 4 * 2^-7
    case DType::f64: return 1e-12;
    default: return 4.0 * 1.1920929e-7;          // f32: 4 * 2^-23
  }
}

/// Checks |got - want| <= atol + rtol * |want| elementwise (NaN must match NaN, inf must match inf), reporting
/// the first few mismatches with their index. `got` may live on any device.
inline void check_close(const Tensor& got, const Tensor& want, double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  const std::vector<double> g = got.to_vector<double>();
  const std::vector<double> w = want.to_vector<double>();
  int reported = 0;
  size_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool ok = (std::isnan(w[i]) && std::isnan(g[i])) || (std::isinf(w[i]) && g[i] == w[i]) ||
                    std::fabs(g[i] - w[i]) <= atol + rtol * std::fabs(w[i]);
    if (!ok) {
      ++bad;
      if (reported++ < 5) FAIL_CHECK("element " << i << ": got " << g[i] << ", want " << w[i]);
    }
  }
  CHECK(bad == 0);
}

}  // namespace mixtape::testing
