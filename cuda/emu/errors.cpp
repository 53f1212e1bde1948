// cudaGetErrorName / cudaGetErrorString of the fake CUDA runtime. Names come from the toolkit's driver_types.h
// (cuda_error_names.inc is generated from it at configure time); descriptions are the CUDA runtime's for the codes
// the emulation produces, followed by what the emulator found ("[mixtape-emu: ...]").
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>
#include <string>

#include "cuda/emu/lock.h"
#include "cuda/emu/runtime_state.h"

namespace {

struct NamedError {
  cudaError_t code;
  const char* name;
};
constexpr NamedError kNames[] = {
#include "cuda_error_names.inc"
};

const char* description(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorNotSupported: return "operation not supported";
    default: return nullptr;
  }
}

}  // namespace

extern "C" {

const char* cudaGetErrorName(cudaError_t error) {
  for (const NamedError& n : kNames)
    if (n.code == error) return n.name;
  return "unrecognized error code";
}

const char* cudaGetErrorString(cudaError_t error) {
  std::lock_guard<std::recursive_mutex> lock(mixtape::emu::runtime_mutex());
  static std::map<int, std::string>* texts = new std::map<int, std::string>();
  const char* base = description(error);
  std::string text = base ? base : cudaGetErrorName(error);
  const std::string detail = error == cudaSuccess ? std::string() : mixtape::emu::error_detail(error);
  if (!detail.empty()) text += " [mixtape-emu: " + detail + "]";
  std::string& slot = (*texts)[static_cast<int>(error)];
  if (slot != text) slot = text;  // the pointer of an unchanged text stays valid
  return slot.c_str();
}

}  // extern "C"
