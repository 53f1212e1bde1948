// The CUDA backend's host side: device queries, library versions and checked calls. Compiled only in a
// build with MIXTAPE_WITH_CUDA. Everything here runs on a machine without a GPU; the GPU-only cases
// report "no CUDA device: skipping ..." and return (Catch2 v2 has no SKIP).
#ifdef MIXTAPE_WITH_CUDA

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/functors.h"
#include "core/half.h"
#include "cuda/check.h"
#include "cuda/cuda_runtime_info.h"
#include "cuda/functor_kernels.h"

using Catch::Matchers::Contains;
using namespace mixtape;

namespace {

/// A call that fails like cuBLASLt does, to exercise MIXTAPE_CUBLAS_CHECK without a GPU.
cublasStatus_t failing_cublas_call() { return CUBLAS_STATUS_NOT_SUPPORTED; }
cudnnStatus_t failing_cudnn_call() { return CUDNN_STATUS_BAD_PARAM; }

/// Device buffer freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { MIXTAPE_CUDA_CHECK(cudaMalloc(&ptr, bytes)); }
  ~DeviceBuffer() { cudaFree(ptr); }
};

/// Runs op on the GPU over `values` stored as T, returns the results as floats.
template <class T>
std::vector<float> run_unary_on_gpu(UnaryOp op, DType dtype, const std::vector<float>& values) {
  std::vector<T> host(values.begin(), values.end());
  const size_t bytes = host.size() * sizeof(T);
  DeviceBuffer x(bytes), y(bytes);
  MIXTAPE_CUDA_CHECK(cudaMemcpy(x.ptr, host.data(), bytes, cudaMemcpyHostToDevice));
  cuda::launch_unary(op, dtype, x.ptr, y.ptr, static_cast<int64_t>(host.size()));
  MIXTAPE_CUDA_CHECK(cudaDeviceSynchronize());
  MIXTAPE_CUDA_CHECK(cudaMemcpy(host.data(), y.ptr, bytes, cudaMemcpyDeviceToHost));
  return {host.begin(), host.end()};
}

}  // namespace

TEST_CASE("cuda: device_count never throws and agrees with the core backend query", "[cuda]") {
  int n = -1;
  REQUIRE_NOTHROW(n = cuda::device_count());
  CHECK(n >= 0);
  CHECK(cuda::device_count() == n);  // stable across calls, including after a failed driver probe
  if (n == 0) {
    CHECK_FALSE(cuda::no_device_reason().empty());
  } else {
    CHECK(cuda::no_device_reason().empty());
  }
  CHECK(cuda_device_count() == n);
}

TEST_CASE("cuda: library versions are reported without a GPU", "[cuda]") {
  const std::string cudnn = cuda::cudnn_version_string();
  const std::string cublaslt = cuda::cublaslt_version_string();
  const std::string runtime = cuda::cuda_runtime_version_string();
  INFO("cuDNN " << cudnn << ", cuBLASLt " << cublaslt << ", runtime " << runtime);
  CHECK(cudnn.rfind("9.", 0) == 0);  // cuDNN 9 is required by the build
  CHECK(std::count(cublaslt.begin(), cublaslt.end(), '.') == 2);
  CHECK(std::count(runtime.begin(), runtime.end(), '.') == 1);
  CHECK_FALSE(cuda::cuda_driver_version_string().empty());
}

TEST_CASE("cuda: device_info rejects an index that is negative or not below device_count()", "[cuda]") {
  const int n = cuda::device_count();
  CHECK_THROWS_AS(cuda::device_info(-1), Error);
  CHECK_THROWS_WITH(cuda::device_info(n), Contains("device index " + std::to_string(n)) && Contains("out of range"));
}

TEST_CASE("cuda: check macros throw mixtape::Error naming the call and the error", "[cuda]") {
  CHECK_THROWS_WITH([&] { MIXTAPE_CUBLAS_CHECK(failing_cublas_call()); }(),
                    Contains("failing_cublas_call()") && Contains("CUBLAS_STATUS_NOT_SUPPORTED"));
  CHECK_THROWS_WITH([&] { MIXTAPE_CUDNN_CHECK(failing_cudnn_call()); }(),
                    Contains("failing_cudnn_call()") && Contains("CUDNN_STATUS_BAD_PARAM"));
  CHECK_THROWS_WITH([&] { MIXTAPE_CUDA_CHECK(cudaErrorInvalidValue); }(),
                    Contains("cudaErrorInvalidValue") && Contains("failed"));
  CHECK_NOTHROW([&] { MIXTAPE_CUDA_CHECK(cudaSuccess); }());
  if (cuda::device_count() == 0) {
    // Without a driver or GPU a real runtime call fails, and the message names it.
    void* p = nullptr;
    CHECK_THROWS_WITH([&] { MIXTAPE_CUDA_CHECK(cudaMalloc(&p, 256)); }(),
                      Contains("cudaMalloc(&p, 256)") && Contains("failed: cuda"));
    // ... and the queries keep answering afterwards.
    CHECK(cuda::device_count() == 0);
  }
}

TEST_CASE("cuda: launch_unary validates its arguments before touching the GPU", "[cuda]") {
  CHECK_THROWS_WITH(cuda::launch_unary(UnaryOp::relu, DType::f64, nullptr, nullptr, 4),
                    Contains("relu") && Contains("f64"));
  CHECK_THROWS_WITH(cuda::launch_unary(UnaryOp::exp, DType::i64, nullptr, nullptr, 4), Contains("i64"));
  CHECK_THROWS_AS(cuda::launch_unary(UnaryOp::relu, DType::f32, nullptr, nullptr, -1), Error);
  CHECK_NOTHROW(cuda::launch_unary(UnaryOp::relu, DType::f16, nullptr, nullptr, 0));
  if (cuda::device_count() == 0) {
    // A launch without a GPU fails and is reported as a mixtape::Error (not a silent no-op).
    alignas(16) static float fake[4];
    CHECK_THROWS_AS(cuda::launch_unary(UnaryOp::relu, DType::f32, fake, fake, 4), Error);
  }
}

TEST_CASE("cuda: shared functors give the CPU functor's result on the GPU", "[cuda][gpu]") {
  if (cuda::device_count() == 0) {
    WARN("no CUDA device: skipping the GPU elementwise kernel test (" << cuda::no_device_reason() << ")");
    return;
  }
  const std::vector<float> values = {-3.5f, -1.0f, -0.25f, 0.0f, 0.125f, 0.5f, 1.0f, 2.0f, 7.25f, 60000.0f};
  auto check_op = [&](UnaryOp op, auto f) {
    INFO("op " << op_name(op));
    // f32: GPU math may differ from the host libm by a few ulps.
    const std::vector<float> got32 = run_unary_on_gpu<float>(op, DType::f32, values);
    for (size_t i = 0; i < values.size(); ++i) {
      const float want = f(values[i]);
      INFO("x = " << values[i]);
      if (std::isnan(want)) {
        CHECK(std::isnan(got32[i]));
      } else if (std::isinf(want)) {
        CHECK(got32[i] == want);
      } else {
        CHECK(std::abs(got32[i] - want) <= 4e-6f * std::max(1.0f, std::abs(want)));
      }
    }
    // f16/bf16: inputs rounded to the dtype, computed in float, rounded once; allow one unit in the last place.
    const std::vector<float> got16 = run_unary_on_gpu<Half>(op, DType::f16, values);
    const std::vector<float> gotb16 = run_unary_on_gpu<BFloat16>(op, DType::bf16, values);
    for (size_t i = 0; i < values.size(); ++i) {
      const float want16 = static_cast<float>(Half(f(static_cast<float>(Half(values[i])))));
      const float wantb16 = static_cast<float>(BFloat16(f(static_cast<float>(BFloat16(values[i])))));
      INFO("x = " << values[i]);
      if (std::isnan(want16)) CHECK(std::isnan(got16[i]));
      else if (std::isinf(want16)) CHECK(got16[i] == want16);
      else CHECK(std::abs(got16[i] - want16) <= std::ldexp(std::max(std::abs(want16), 6.2e-5f), -10));
      if (std::isnan(wantb16)) CHECK(std::isnan(gotb16[i]));
      else if (std::isinf(wantb16)) CHECK(gotb16[i] == wantb16);
      else CHECK(std::abs(gotb16[i] - wantb16) <= std::ldexp(std::abs(wantb16), -7));
    }
  };
  check_op(UnaryOp::relu, [](float v) { return fn::Relu{}(v); });
  check_op(UnaryOp::neg, [](float v) { return fn::Neg{}(v); });
  check_op(UnaryOp::abs, [](float v) { return fn::Abs{}(v); });
  check_op(UnaryOp::exp, [](float v) { return fn::Exp{}(v); });
  check_op(UnaryOp::tanh, [](float v) { return fn::Tanh{}(v); });
  check_op(UnaryOp::sigmoid, [](float v) { return fn::Sigmoid{}(v); });
  check_op(UnaryOp::gelu, [](float v) { return fn::Gelu{}(v); });
  check_op(UnaryOp::log, [](float v) { return fn::Log{}(v); });
  check_op(UnaryOp::sqrt, [](float v) { return fn::Sqrt{}(v); });
}

TEST_CASE("cuda: device_info describes every device", "[cuda][gpu]") {
  const int n = cuda::device_count();
  if (n == 0) {
    WARN("no CUDA device: skipping the device_info test");
    return;
  }
  for (int i = 0; i < n; ++i) {
    const cuda::DeviceInfo d = cuda::device_info(i);
    INFO("cuda:" << i << " " << d.name);
    CHECK_FALSE(d.name.empty());
    CHECK(d.major >= 7);  // CUDA 13 supports Turing (7.5) and newer
    CHECK(d.total_mem > 0);
    CHECK(d.sm_count > 0);
  }
}

#endif  // MIXTAPE_WITH_CUDA
