#pragma once
// The emulated device's runtime as the library mocks (cuda/emu/cublaslt_mock.cpp, cuda/emu/cudnn_mock.cpp) and
// the kernel launcher see it. Internal to the emulation build (MIXTAPE_CUDA_EMU): production code never includes
// this; it talks to the fake runtime only through the CUDA runtime API (cuda/emu/fake_cudart.cpp).
//
// Model (see cuda/emu/README.md): device memory is host memory the runtime maps for each allocation, kept
// inaccessible (PROT_NONE) except while device work executes; work is queued per stream and executed in stream
// order at the synchronisation points that need it (cudaStreamSynchronize, a blocking cudaMemcpy, an event
// wait, ...), so a missing synchronisation reads stale data here as it would on a GPU.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace mixtape::emu {

/// What an address belongs to.
enum class MemKind : uint8_t {
  none,         ///< not memory the runtime handed out (ordinary host memory, or garbage)
  device,       ///< a live device allocation (cudaMalloc, cudaMallocAsync)
  pinned_host,  ///< live page-locked host memory (cudaHostAlloc, cudaMallocHost): device-accessible (UVA)
  freed,        ///< device memory that has been freed (kept unmapped so a later use is caught)
};

/// The allocation containing an address.
struct MemInfo {
  MemKind kind = MemKind::none;
  int device = -1;             ///< owning device of device/freed memory
  const char* base = nullptr;  ///< first byte of the allocation
  size_t size = 0;             ///< bytes the caller asked for
};

/// Looks up the allocation containing `p` (one past its end does not count).
MemInfo lookup(const void* p);

/// "" when [p, p + bytes) lies inside one live allocation of device `device` (with `allow_pinned`, inside live
/// pinned host memory too); otherwise a message naming `what`, the address and what is wrong (host memory, freed
/// memory, another device, too short). bytes == 0 checks only that p is such memory or null.
std::string check_device_range(const void* p, size_t bytes, int device, const char* what, bool allow_pinned = false);

/// The calling thread's current device (cudaGetDevice).
int current_device();
/// Number of emulated devices.
int device_count();
/// The device a stream belongs to; -1 for a handle the runtime does not know (destroyed or garbage). The legacy
/// default stream (nullptr, cudaStreamLegacy) and cudaStreamPerThread belong to the current device.
int stream_device(cudaStream_t s);

/// Queues `work` on `stream` after everything queued there before (and, for the legacy default stream, after the
/// blocking streams of its device). It runs at the first synchronisation that needs it, on whichever host thread
/// synchronises, with device memory accessible; `what` names it in diagnostics. Returns
/// cudaErrorInvalidResourceHandle for an unknown stream, or the sticky error when the device has failed.
cudaError_t enqueue(cudaStream_t stream, std::string what, std::function<void()> work);

/// Called from queued work that finds a fault (an argument that became invalid, ...): records `err` as the
/// device's sticky error with `message` (printed once to stderr), as a faulting kernel does on a GPU. Later work
/// on the device is skipped and every runtime call returns `err`.
void fail_device(cudaError_t err, const std::string& message);

/// The sticky error of the current device (cudaSuccess when none).
cudaError_t sticky_error();

}  // namespace mixtape::emu
