#pragma once
// Checks for every CUDA runtime, cuBLASLt and cuDNN call: a failure throws mixtape::Error naming the
// call, the library's error name and message, and the source location. Host code only.
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "core/error.h"

namespace mixtape::cuda {

/// "CUBLAS_STATUS_NOT_SUPPORTED", ... with a hint of what it means (cublasLtGetStatusName gives the name alone).
inline const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (library not initialised: no driver or no GPU?)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (out of GPU memory)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (an unsupported value or parameter)";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH (feature absent on this GPU architecture)";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR (GPU memory access failed)";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED (a kernel failed to launch or run)";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (no algorithm for this configuration)";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

/// Throw the error of a failed call, naming it (used by the macros below).
[[noreturn]] inline void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line) {
  throw ::mixtape::Error(::mixtape::detail::cat(call, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                                ") at ", file, ":", line));
}
[[noreturn]] inline void throw_cublas_error(const char* call, cublasStatus_t status, const char* file, int line) {
  throw ::mixtape::Error(::mixtape::detail::cat(call, " failed: ", cublas_status_name(status), " (status ",
                                                static_cast<int>(status), ") at ", file, ":", line));
}
[[noreturn]] inline void throw_cudnn_error(const char* call, cudnnStatus_t status, const char* file, int line) {
  throw ::mixtape::Error(::mixtape::detail::cat(call, " failed: ", cudnnGetErrorString(status), " (status ",
                                                static_cast<int>(status), ") at ", file, ":", line));
}

}  // namespace mixtape::cuda

/// Throws mixtape::Error naming `call` when a CUDA runtime call does not return cudaSuccess.
#define MIXTAPE_CUDA_CHECK(call)                                                    \
  do {                                                                              \
    const cudaError_t mixtape_err_ = (call);                                        \
    if (mixtape_err_ != cudaSuccess) {                                              \
      (void)cudaGetLastError(); /* reset the last-error state for later checks */   \
      ::mixtape::cuda::throw_cuda_error(#call, mixtape_err_, __FILE__, __LINE__);   \
    }                                                                               \
  } while (0)

/// Throws mixtape::Error naming `call` when a cuBLAS/cuBLASLt call does not return CUBLAS_STATUS_SUCCESS.
#define MIXTAPE_CUBLAS_CHECK(call)                                                        \
  do {                                                                                    \
    const cublasStatus_t mixtape_status_ = (call);                                        \
    if (mixtape_status_ != CUBLAS_STATUS_SUCCESS)                                         \
      ::mixtape::cuda::throw_cublas_error(#call, mixtape_status_, __FILE__, __LINE__);    \
  } while (0)

/// Throws mixtape::Error naming `call` when a cuDNN call does not return CUDNN_STATUS_SUCCESS.
#define MIXTAPE_CUDNN_CHECK(call)                                                         \
  do {                                                                                    \
    const cudnnStatus_t mixtape_status_ = (call);                                         \
    if (mixtape_status_ != CUDNN_STATUS_SUCCESS)                                          \
      ::mixtape::cuda::throw_cudnn_error(#call, mixtape_status_, __FILE__, __LINE__);     \
  } while (0)

/// Checks the launch of the kernel just issued (launch errors are reported by cudaGetLastError).
#define MIXTAPE_CUDA_CHECK_LAUNCH() MIXTAPE_CUDA_CHECK(cudaGetLastError())
