#pragma once
// What the CUDA runtime, cuBLASLt and cuDNN report about this machine. Plain C++ (no CUDA headers), so
// core/ and apps/ can include it; compiled only in a build with MIXTAPE_WITH_CUDA.
#include <cstddef>
#include <string>

namespace mixtape::cuda {

/// Number of usable CUDA devices: 0 when there is no driver or no GPU. Never throws.
int device_count();

/// Why device_count() is 0 ("" when devices were found), e.g. the runtime's "no CUDA-capable device".
std::string no_device_reason();

/// Properties of one GPU.
struct DeviceInfo {
  std::string name;      ///< e.g. "NVIDIA H100 80GB HBM3"
  int major = 0;         ///< compute capability, major
  int minor = 0;         ///< compute capability, minor
  size_t total_mem = 0;  ///< global memory in bytes
  int sm_count = 0;      ///< streaming multiprocessors
};

/// Properties of device `index`; throws mixtape::Error when index is not in [0, device_count()).
DeviceInfo device_info(int index);

/// Version of the CUDA runtime library in use, e.g. "13.0".
std::string cuda_runtime_version_string();
/// Highest CUDA version the installed driver supports, e.g. "13.0", or "none" without a driver.
std::string cuda_driver_version_string();
/// Version of the cuDNN library in use, e.g. "9.19.0" (needs no GPU).
std::string cudnn_version_string();
/// Version of the cuBLASLt library in use, e.g. "13.0.2" (needs no GPU).
std::string cublaslt_version_string();

}  // namespace mixtape::cuda
