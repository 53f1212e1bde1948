#include "cuda/cuda_runtime_info.h"

#include <cuda_runtime_api.h>
#include <library_types.h>

#include "cuda/check.h"

namespace mixtape::cuda {

namespace {
/// The runtime's answer to cudaGetDeviceCount, with the error when it failed.
struct CountResult {
  int count = 0;
  cudaError_t err = cudaSuccess;
};

CountResult query_device_count() {
  CountResult r;
  r.err = cudaGetDeviceCount(&r.count);
  if (r.err != cudaSuccess) {
    (void)cudaGetLastError();  // a missing driver or GPU is an answer, not an error for later calls
    r.count = 0;
  }
  return r;
}
}  // namespace

int device_count() {
  try {
    return query_device_count().count;
  } catch (...) {
    return 0;
  }
}

std::string no_device_reason() {
  const CountResult r = query_device_count();
  if (r.err != cudaSuccess) return ::mixtape::detail::cat(cudaGetErrorName(r.err), ": ", cudaGetErrorString(r.err));
  if (r.count == 0) return "the CUDA runtime reports no devices";
  return "";
}

DeviceInfo device_info(int index) {
  const int n = device_count();
  MIXTAPE_CHECK(index >= 0 && index < n, "cuda::device_info: device index ", index, " is out of range (",
                n == 0 ? std::string("no CUDA devices are available") : ::mixtape::detail::cat(n, " CUDA device(s): 0..", n - 1), ")");
  cudaDeviceProp prop{};
  MIXTAPE_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.total_mem = prop.totalGlobalMem;
  info.sm_count = prop.multiProcessorCount;
  return info;
}

std::string cuda_runtime_version_string() {
  int v = 0;
  MIXTAPE_CUDA_CHECK(cudaRuntimeGetVersion(&v));
  return ::mixtape::detail::cat(v / 1000, ".", (v % 1000) / 10);
}

std::string cuda_driver_version_string() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess || v == 0) {
    (void)cudaGetLastError();
    return "none";
  }
  return ::mixtape::detail::cat(v / 1000, ".", (v % 1000) / 10);
}

std::string cudnn_version_string() {
  int major = 0, minor = 0, patch = 0;
  MIXTAPE_CUDNN_CHECK(cudnnGetProperty(MAJOR_VERSION, &major));
  MIXTAPE_CUDNN_CHECK(cudnnGetProperty(MINOR_VERSION, &minor));
  MIXTAPE_CUDNN_CHECK(cudnnGetProperty(PATCH_LEVEL, &patch));
  return ::mixtape::detail::cat(major, ".", minor, ".", patch);
}

std::string cublaslt_version_string() {
  int major = 0, minor = 0, patch = 0;
  MIXTAPE_CUBLAS_CHECK(cublasLtGetProperty(MAJOR_VERSION, &major));
  MIXTAPE_CUBLAS_CHECK(cublasLtGetProperty(MINOR_VERSION, &minor));
  MIXTAPE_CUBLAS_CHECK(cublasLtGetProperty(PATCH_LEVEL, &patch));
  return ::mixtape::detail::cat(major, ".", minor, ".", patch);
}

}  // namespace mixtape::cuda
