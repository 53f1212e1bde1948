// The fake CUDA runtime (MIXTAPE_CUDA_EMU): the libcudart entry points the backend and its tests call, with the
// signatures of the toolkit's cuda_runtime_api.h, over emulated devices (cuda/emu/runtime_state.h) and their
// memory (cuda/emu/memory.h). Every argument the runtime documents as checked is checked, with the documented
// error code, and cudaGetErrorString adds what exactly was wrong ("[mixtape-emu: ...]").
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/emu/emu.h"
#include "cuda/emu/lock.h"
#include "cuda/emu/memory.h"
#include "cuda/emu/runtime_state.h"

using namespace mixtape::emu;

namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

/// The emulated device's name: H100-class numbers, and says what it is.
constexpr const char* kDeviceName = "mixtape emulated GPU (H100-class, sm_90; runs on the CPU)";

/// Returns the current device's sticky error, or cudaSuccess.
cudaError_t sticky_of_current() {
  const int d = current_device();
  return valid_device(d) ? device_state(d).sticky : cudaSuccess;
}

cudaError_t fail(cudaError_t err, const std::string& message) { return set_error(err, message); }

cudaError_t no_device() {
  return fail(cudaErrorNoDevice, "MIXTAPE_EMU_DEVICES=0: the emulation is configured without devices");
}

std::string ptr_text(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost: return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice: return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost: return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice: return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault: return "cudaMemcpyDefault";
  }
  return "an invalid cudaMemcpyKind";
}

/// At execution: fails the device when a range stopped being valid memory since the call was made.
bool still_valid(const void* p, size_t n, bool device_side, int device, const char* what, const std::string& op) {
  if (!device_side) return true;
  const std::string err = check_device_range(p, n, device, what, true);
  if (err.empty()) return true;
  fail_device(cudaErrorIllegalAddress, op + ": " + err);
  return false;
}

/// The checks and queueing shared by every cudaMemcpy* (see the CUDA Runtime API, "API synchronization behavior").
cudaError_t memcpy_impl(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream, bool sync,
                        const char* api) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  if (const cudaError_t e = sticky_of_current()) return e;
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": unknown or destroyed stream");
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return fail(cudaErrorInvalidMemcpyDirection, std::string(api) + ": kind " + std::to_string(kind) + " is not a cudaMemcpyKind");
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue, std::string(api) + ": null " + (dst ? "source" : "destination"));
  const MemInfo md = lookup(dst), ms = lookup(src);
  if (md.kind == MemKind::freed || ms.kind == MemKind::freed)
    return fail(cudaErrorInvalidValue, std::string(api) + ": the " + (md.kind == MemKind::freed ? "destination" : "source") +
                                           " points into freed device memory (use after free)");
  const bool dst_dev = md.kind == MemKind::device, src_dev = ms.kind == MemKind::device;
  if (kind == cudaMemcpyDefault)
    kind = src_dev ? (dst_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                   : (dst_dev ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  const bool want_src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool want_dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if (want_src_dev != src_dev || want_dst_dev != dst_dev)
    return fail(cudaErrorInvalidValue,
                std::string(api) + " with " + kind_name(kind) + ": the source " + ptr_text(src) + " is " +
                    (src_dev ? "device" : "host") + " memory and the destination " + ptr_text(dst) + " is " +
                    (dst_dev ? "device" : "host") + " memory (a copy in the wrong direction)");
  for (const auto& [p, m, what] : {std::tuple{static_cast<const void*>(dst), md, "destination"},
                                   std::tuple{src, ms, "source"}}) {
    if (m.kind == MemKind::device || m.kind == MemKind::pinned_host) {
      const std::string err = check_device_range(p, n, m.device, what, true);
      if (!err.empty()) return fail(cudaErrorInvalidValue, std::string(api) + ": " + err);
    }
  }
  const std::string what = std::string(api) + "(" + kind_name(kind) + ", " + std::to_string(n) + " bytes)";
  const int dd = md.device, sd = ms.device;
  uint64_t seq = 0;
  if (kind == cudaMemcpyHostToDevice && ms.kind != MemKind::pinned_host) {
    // Pageable source: the runtime stages it before returning, so the caller may reuse its buffer at once.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + n);
    seq = push(s, what, [dst, n, dd, staged, what] {
      if (still_valid(dst, n, true, dd, "destination", what)) std::memcpy(dst, staged->data(), n);
    });
  } else {
    seq = push(s, what, [=] {
      if (still_valid(dst, n, dst_dev, dd, "destination", what) && still_valid(src, n, src_dev, sd, "source", what))
        std::memmove(dst, src, n);
    });
  }
  // Pageable destinations and host-to-host copies complete before the call returns; cudaMemcpy always does.
  const bool host_waits = sync || kind == cudaMemcpyHostToHost ||
                          (kind == cudaMemcpyDeviceToHost && md.kind != MemKind::pinned_host);
  if (host_waits) drain(s, seq);
  return sticky_of_current();
}

cudaError_t memset_impl(void* p, int value, size_t n, cudaStream_t stream, const char* api) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  if (const cudaError_t e = sticky_of_current()) return e;
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": unknown or destroyed stream");
  if (n == 0) return cudaSuccess;
  const MemInfo m = lookup(p);
  const std::string err = check_device_range(p, n, m.kind == MemKind::device ? m.device : s->device, "the destination", true);
  if (!err.empty()) return fail(cudaErrorInvalidValue, std::string(api) + ": " + err);
  const std::string what = std::string(api) + "(" + std::to_string(n) + " bytes)";
  const int dev = m.device;
  const bool dev_side = m.kind == MemKind::device;
  push(s, what, [=] {
    if (still_valid(p, n, dev_side, dev, "destination", what)) std::memset(p, value, n);
  });
  return cudaSuccess;
}

}  // namespace

extern "C" {

// ---- errors ----

cudaError_t cudaGetLastError(void) {
  Lock lock(runtime_mutex());
  return take_error();
}

cudaError_t cudaPeekAtLastError(void) {
  Lock lock(runtime_mutex());
  return peek_error();
}

// cudaGetErrorName / cudaGetErrorString: cuda/emu/errors.cpp

// ---- devices ----

cudaError_t cudaGetDeviceCount(int* count) {
  Lock lock(runtime_mutex());
  if (!count) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: null count");
  *count = settings().devices;
  if (*count == 0) return no_device();
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  Lock lock(runtime_mutex());
  if (!device) return fail(cudaErrorInvalidValue, "cudaGetDevice: null device");
  if (settings().devices == 0) return no_device();
  *device = current_device();
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  if (!valid_device(device))
    return fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + "): the emulation has " +
                                            std::to_string(settings().devices) + " device(s)");
  set_current_device(device);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  Lock lock(runtime_mutex());
  if (!prop) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: null prop");
  if (settings().devices == 0) return no_device();
  if (!valid_device(device))
    return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no device " + std::to_string(device));
  *prop = cudaDeviceProp{};
  std::strncpy(prop->name, kDeviceName, sizeof prop->name - 1);
  prop->uuid.bytes[0] = static_cast<char>(device + 1);
  prop->totalGlobalMem = memory::capacity_bytes(device);
  prop->sharedMemPerBlock = 48 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->texturePitchAlignment = 32;
  prop->multiProcessorCount = 132;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->pciBusID = device + 1;
  prop->asyncEngineCount = 3;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 5120;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->streamPrioritiesSupported = 1;
  prop->globalL1CacheSupported = 1;
  prop->localL1CacheSupported = 1;
  prop->sharedMemPerMultiprocessor = 233472;
  prop->regsPerMultiprocessor = 65536;
  prop->managedMemory = 1;
  prop->sharedMemPerBlockOptin = 232448;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->reservedSharedMemPerBlock = 1024;
  prop->memoryPoolsSupported = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (!value) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: null value");
  if (const cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute " + std::to_string(attr) +
                                                    " is not emulated");
  }
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue, "cudaRuntimeGetVersion: null");
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue, "cudaDriverGetVersion: null");
  *v = settings().devices == 0 ? 0 : CUDART_VERSION;  // no driver without devices, as on a machine without a GPU
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  drain_device(current_device());
  return sticky_of_current();
}

cudaError_t cudaDeviceReset(void) {
  // Emulated: completes the device's work and clears its sticky error (allocations and streams stay valid).
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  drain_device(current_device());
  device_state(current_device()).sticky = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  if (!can) return fail(cudaErrorInvalidValue, "cudaDeviceCanAccessPeer: null");
  if (!valid_device(device) || !valid_device(peer)) return fail(cudaErrorInvalidDevice, "cudaDeviceCanAccessPeer");
  *can = device != peer;
  return cudaSuccess;
}

cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned int flags) {
  if (flags != 0) return fail(cudaErrorInvalidValue, "cudaDeviceEnablePeerAccess: flags must be 0");
  if (!valid_device(peer) || peer == current_device())
    return fail(cudaErrorInvalidDevice, "cudaDeviceEnablePeerAccess: invalid peer");
  return cudaSuccess;
}

// ---- memory ----

cudaError_t cudaMalloc(void** ptr, size_t size) {
  Lock lock(runtime_mutex());
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMalloc: null devPtr");
  if (settings().devices == 0) return no_device();
  if (const cudaError_t e = sticky_of_current()) return e;
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  const int dev = current_device();
  void* p = memory::allocate_device(dev, size);
  if (!p)
    return fail(cudaErrorMemoryAllocation,
                "cudaMalloc(" + std::to_string(size) + " bytes) on cuda:" + std::to_string(dev) + ": " +
                    std::to_string(memory::used_bytes(dev)) + " of " + std::to_string(memory::capacity_bytes(dev)) +
                    " bytes are allocated");
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  if (!ptr) return cudaSuccess;
  drain_all();  // cudaFree synchronises: no queued work may still use the memory
  if (const cudaError_t e = sticky_of_current()) return e;
  const std::string why = memory::free_device(ptr);
  if (!why.empty()) return fail(cudaErrorInvalidValue, "cudaFree(" + ptr_text(ptr) + "): " + why);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t stream) {
  Lock lock(runtime_mutex());
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMallocAsync: null devPtr");
  if (settings().devices == 0) return no_device();
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaMallocAsync: unknown or destroyed stream");
  if (const cudaError_t e = device_state(s->device).sticky) return e;
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  void* p = memory::allocate_device(s->device, size);
  if (!p)
    return fail(cudaErrorMemoryAllocation, "cudaMallocAsync(" + std::to_string(size) + " bytes) on cuda:" +
                                               std::to_string(s->device));
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaFreeAsync: unknown or destroyed stream");
  if (!ptr) return cudaSuccess;
  const MemInfo m = lookup(ptr);
  if (m.kind != MemKind::device || m.base != ptr)
    return fail(cudaErrorInvalidValue, "cudaFreeAsync(" + ptr_text(ptr) + "): " +
                                           (m.kind == MemKind::freed ? "freed already" : "not a device allocation"));
  push(s, "cudaFreeAsync", [ptr] {
    const std::string why = memory::free_device(ptr);
    if (!why.empty()) fail_device(cudaErrorIllegalAddress, "cudaFreeAsync(" + ptr_text(ptr) + "): " + why);
  });
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned int flags) {
  Lock lock(runtime_mutex());
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaHostAlloc: null pHost");
  if (flags & ~static_cast<unsigned>(cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined))
    return fail(cudaErrorInvalidValue, "cudaHostAlloc: unknown flags " + std::to_string(flags));
  if (settings().devices == 0) return no_device();
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  void* p = memory::allocate_pinned(size);
  if (!p) return fail(cudaErrorMemoryAllocation, "cudaHostAlloc(" + std::to_string(size) + " bytes)");
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* ptr) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  if (!ptr) return cudaSuccess;
  drain_all();  // cudaFreeHost synchronises
  const std::string why = memory::free_pinned(ptr);
  if (!why.empty()) return fail(cudaErrorInvalidValue, "cudaFreeHost(" + ptr_text(ptr) + "): " + why);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  Lock lock(runtime_mutex());
  if (!free_bytes || !total) return fail(cudaErrorInvalidValue, "cudaMemGetInfo: null");
  if (settings().devices == 0) return no_device();
  const int d = current_device();
  *total = memory::capacity_bytes(d);
  *free_bytes = *total - std::min(*total, memory::used_bytes(d));
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes* attr, const void* ptr) {
  if (!attr) return fail(cudaErrorInvalidValue, "cudaPointerGetAttributes: null attributes");
  const MemInfo m = lookup(ptr);
  *attr = cudaPointerAttributes{};
  attr->device = m.device < 0 ? current_device() : m.device;
  switch (m.kind) {
    case MemKind::device:
      attr->type = cudaMemoryTypeDevice;
      attr->devicePointer = const_cast<void*>(ptr);
      break;
    case MemKind::pinned_host:
      attr->type = cudaMemoryTypeHost;
      attr->devicePointer = attr->hostPointer = const_cast<void*>(ptr);
      break;
    case MemKind::freed:
      return fail(cudaErrorInvalidValue, "cudaPointerGetAttributes(" + ptr_text(ptr) + "): freed device memory");
    case MemKind::none:
      attr->type = cudaMemoryTypeUnregistered;
      attr->hostPointer = const_cast<void*>(ptr);
      break;
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, enum cudaMemcpyKind kind) {
  return memcpy_impl(dst, src, n, kind, nullptr, true, "cudaMemcpy");
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, enum cudaMemcpyKind kind, cudaStream_t stream) {
  return memcpy_impl(dst, src, n, kind, stream, false, "cudaMemcpyAsync");
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t n,
                                cudaStream_t stream) {
  {
    Lock lock(runtime_mutex());
    if (!valid_device(dst_device) || !valid_device(src_device))
      return fail(cudaErrorInvalidDevice, "cudaMemcpyPeerAsync: device " + std::to_string(dst_device) + " or " +
                                              std::to_string(src_device) + " does not exist");
    for (const auto& [p, d, what] : {std::tuple{static_cast<const void*>(dst), dst_device, "destination"},
                                     std::tuple{src, src_device, "source"}}) {
      const std::string err = check_device_range(p, n, d, what);
      if (!err.empty()) return fail(cudaErrorInvalidValue, "cudaMemcpyPeerAsync: " + err);
    }
  }
  return memcpy_impl(dst, src, n, cudaMemcpyDeviceToDevice, stream, false, "cudaMemcpyPeerAsync");
}

cudaError_t cudaMemcpyPeer(void* dst, int dst_device, const void* src, int src_device, size_t n) {
  if (const cudaError_t e = cudaMemcpyPeerAsync(dst, dst_device, src, src_device, n, nullptr)) return e;
  return cudaDeviceSynchronize();
}

cudaError_t cudaMemset(void* p, int value, size_t n) { return memset_impl(p, value, n, nullptr, "cudaMemset"); }

cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream) {
  return memset_impl(p, value, n, stream, "cudaMemsetAsync");
}

// ---- streams ----

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  Lock lock(runtime_mutex());
  if (!stream) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: null pStream");
  if (flags != cudaStreamDefault && flags != cudaStreamNonBlocking)
    return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: unknown flags " + std::to_string(flags));
  if (settings().devices == 0) return no_device();
  if (const cudaError_t e = sticky_of_current()) return e;
  *stream = reinterpret_cast<cudaStream_t>(create_stream(flags == cudaStreamDefault));
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Lock lock(runtime_mutex());
  Stream* s = stream ? resolve_stream(stream) : nullptr;
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown, destroyed or default stream");
  s->alive = false;  // queued work still runs (the CUDA runtime releases the stream once it is done)
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  Lock lock(runtime_mutex());
  if (settings().devices == 0) return no_device();
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: unknown or destroyed stream");
  drain(s, s->last());
  return device_state(s->device).sticky;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  Lock lock(runtime_mutex());
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamQuery: unknown or destroyed stream");
  if (const cudaError_t e = device_state(s->device).sticky) return e;
  if (s->done >= s->last()) return cudaSuccess;
  drain(s, s->last());  // the device makes progress: the next query finds the work done
  return cudaErrorNotReady;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  Lock lock(runtime_mutex());
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown or destroyed stream");
  Event* e = resolve_event(event);
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown or destroyed event");
  if (flags != 0) return fail(cudaErrorInvalidValue, "cudaStreamWaitEvent: flags must be 0 (cudaEventWaitDefault)");
  if (const cudaError_t err = device_state(s->device).sticky) return err;
  if (!e->stream) return cudaSuccess;  // never recorded: nothing to wait for
  push(s, "cudaStreamWaitEvent", nullptr, {{e->stream, e->seq}});
  return cudaSuccess;
}

// ---- events ----

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  Lock lock(runtime_mutex());
  if (!event) return fail(cudaErrorInvalidValue, "cudaEventCreateWithFlags: null event");
  if (flags & ~static_cast<unsigned>(cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess))
    return fail(cudaErrorInvalidValue, "cudaEventCreateWithFlags: unknown flags " + std::to_string(flags));
  if ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming))
    return fail(cudaErrorInvalidValue, "cudaEventCreateWithFlags: cudaEventInterprocess needs cudaEventDisableTiming");
  if (settings().devices == 0) return no_device();
  *event = reinterpret_cast<cudaEvent_t>(create_event(!(flags & cudaEventDisableTiming)));
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  Lock lock(runtime_mutex());
  Event* e = resolve_event(event);
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown or destroyed event");
  e->alive = false;  // a queued record still completes; the handle is invalid from now on
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  Lock lock(runtime_mutex());
  Event* e = resolve_event(event);
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown or destroyed event");
  Stream* s = resolve_stream(stream);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown or destroyed stream");
  if (s->device != e->device)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: the event belongs to cuda:" + std::to_string(e->device) +
                                                    " and the stream to cuda:" + std::to_string(s->device));
  if (const cudaError_t err = device_state(s->device).sticky) return err;
  e->stream = s;
  e->seq = push(s, "cudaEventRecord", [e] { e->when = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  Lock lock(runtime_mutex());
  Event* e = resolve_event(event);
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventQuery: unknown or destroyed event");
  if (const cudaError_t err = device_state(e->device).sticky) return err;
  if (!e->stream || e->stream->done >= e->seq) return cudaSuccess;
  drain(e->stream, e->seq);  // the device makes progress: the next query finds the event complete
  return cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  Lock lock(runtime_mutex());
  Event* e = resolve_event(event);
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: unknown or destroyed event");
  if (e->stream) drain(e->stream, e->seq);
  return device_state(e->device).sticky;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  Lock lock(runtime_mutex());
  if (!ms) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: null ms");
  Event* a = resolve_event(start);
  Event* b = resolve_event(end);
  if (!a || !b) return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: unknown or destroyed event");
  if (!a->stream || !b->stream)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event has not been recorded");
  if (!a->timing || !b->timing)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was created with cudaEventDisableTiming");
  if (a->stream->done < a->seq || b->stream->done < b->seq)
    return fail(cudaErrorNotReady, "cudaEventElapsedTime: an event has not completed");
  *ms = std::chrono::duration<float, std::milli>(b->when - a->when).count();
  return cudaSuccess;
}

}  // extern "C"
