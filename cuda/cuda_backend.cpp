#include "cuda/cuda_backend.h"

#include <array>
#include <mutex>

#include <cstring>
#include <string>

#include "core/caching_allocator.h"
#include "cuda/check.h"
#include "cuda/cuda_runtime_info.h"
#include "cuda/pinned_pool.h"

namespace mixtape::cuda {

DeviceGuard::DeviceGuard(int index) {
  MIXTAPE_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != index) MIXTAPE_CUDA_CHECK(cudaSetDevice(index));
}
DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
}

namespace {

/// cudaMalloc/cudaFree on one device: the raw blocks of its CachingAllocator. cudaFree waits for the device,
/// so a segment is never released while a kernel may still use it.
class CudaMallocResource final : public RawMemoryResource {
 public:
  explicit CudaMallocResource(int index) : index_(index) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) == cudaSuccess) total_ = prop.totalGlobalMem;
    (void)cudaGetLastError();
  }
  void* allocate(size_t bytes) override {
    DeviceGuard g(index_);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // out of memory is an answer: the allocator releases its cache and retries
      return nullptr;
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw_cuda_error(detail::cat("cudaMalloc(", bytes, " bytes) on cuda:", index_).c_str(), err, __FILE__, __LINE__);
    }
    return p;
  }
  void deallocate(void* ptr, size_t /*bytes*/) noexcept override {
    int previous = -1;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
    if (previous != index_) (void)cudaSetDevice(index_);
    (void)cudaFree(ptr);
    if (previous >= 0 && previous != index_) (void)cudaSetDevice(previous);
    (void)cudaGetLastError();
  }
  std::string device_name() const override { return detail::cat("cuda:", index_); }
  size_t total_bytes() const override { return total_; }

 private:
  int index_;
  size_t total_ = 0;
};

/// Makes `waiter` wait on the device for everything queued so far on `signaller` (no host synchronisation).
void stream_wait(int signaller_device, cudaStream_t signaller, cudaStream_t waiter) {
  DeviceGuard g(signaller_device);
  cudaEvent_t ev = nullptr;
  MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t err = cudaEventRecord(ev, signaller);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(waiter, ev, 0);
  (void)cudaEventDestroy(ev);  // released once the event completes; the wait stays valid
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw_cuda_error("cudaEventRecord/cudaStreamWaitEvent between two devices' streams", err, __FILE__, __LINE__);
  }
}

}  // namespace

CudaBackend::CudaBackend(int index) : index_(index) {
  const int n = device_count();
  MIXTAPE_CHECK(index >= 0 && index < n, "device cuda:", index, " requested but ",
                n == 0 ? "no CUDA device is available (" + no_device_reason() + "); use the cpu device"
                       : ::mixtape::detail::cat("this machine has ", n, " CUDA device(s) (cuda:0..cuda:", n - 1, ")"));
  DeviceGuard g(index_);
  MIXTAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  allocator_ = std::make_unique<CachingAllocator>(std::make_unique<CudaMallocResource>(index_));
}

CudaBackend::~CudaBackend() {
  // Backends live until process exit; the driver may already be shutting down, so nothing here may throw.
  if (workspace_) (void)cudaFreeAsync(workspace_, stream_);
  if (cudnn_) (void)cudnnDestroy(cudnn_);
  if (lt_) (void)cublasLtDestroy(lt_);
}

Allocator& CudaBackend::allocator() { return *allocator_; }

cublasLtHandle_t CudaBackend::lt_handle() {
  if (!lt_) {
    DeviceGuard g(index_);
    MIXTAPE_CUBLAS_CHECK(cublasLtCreate(&lt_));
  }
  return lt_;
}

cudnnHandle_t CudaBackend::cudnn_handle() {
  if (!cudnn_) {
    DeviceGuard g(index_);
    MIXTAPE_CUDNN_CHECK(cudnnCreate(&cudnn_));
    MIXTAPE_CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
  }
  return cudnn_;
}

void* CudaBackend::workspace(size_t bytes) {
  if (bytes > workspace_bytes_) {
    DeviceGuard g(index_);
    if (workspace_) MIXTAPE_CUDA_CHECK(cudaFreeAsync(workspace_, stream_));
    workspace_ = nullptr;
    workspace_bytes_ = 0;
    MIXTAPE_CUDA_CHECK(cudaMallocAsync(&workspace_, bytes, stream_));
    workspace_bytes_ = bytes;
  }
  return workspace_;
}

void CudaBackend::synchronize() {
  DeviceGuard g(index_);
  MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaBackend& backend(int index) {
  // Never destroyed: tensors with static lifetime (caches) may free device memory during static destruction,
  // after a static array would be gone; the process exit returns the device memory.
  static auto* mu = new std::mutex();
  static auto* backends = new std::array<std::unique_ptr<CudaBackend>, 64>();
  MIXTAPE_CHECK(index >= 0 && index < static_cast<int>(backends->size()), "device cuda:", index, " is out of range");
  std::lock_guard<std::mutex> lock(*mu);
  auto& b = (*backends)[static_cast<size_t>(index)];
  if (!b) b = std::make_unique<CudaBackend>(index);
  return *b;
}

CudaBackend& backend_of(const Tensor& t) {
  MIXTAPE_CHECK(t.device().is_cuda(), "expected a CUDA tensor, got one on ", t.device().to_string());
  return backend(t.device().index);
}

void copy_across_devices(const Tensor& src, const Tensor& dst) {
  const size_t bytes = src.nbytes();
  if (bytes == 0) return;
  if (src.device().is_cuda() && dst.device().is_cuda()) {
    CudaBackend& from = backend_of(src);
    CudaBackend& to = backend_of(dst);
    if (from.index() == to.index()) {
      DeviceGuard g(to.index());
      MIXTAPE_CUDA_CHECK(
          cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToDevice, to.stream()));
      return;
    }
    // Stream-ordered both ways: the copy (on the destination's stream) starts after the source is written,
    // and the source's stream may not reuse the source's block before the copy has read it.
    stream_wait(from.index(), from.stream(), to.stream());
    {
      DeviceGuard g(to.index());
      MIXTAPE_CUDA_CHECK(
          cudaMemcpyPeerAsync(dst.raw_data(), to.index(), src.raw_data(), from.index(), bytes, to.stream()));
    }
    stream_wait(to.index(), to.stream(), from.stream());
    return;
  }
  if (dst.device().is_cuda()) {  // host -> device: asynchronous, the stream orders it before later kernels
    CudaBackend& to = backend_of(dst);
    DeviceGuard g(to.index());
    const void* host = src.raw_data();
    if (pinned::contains(host, bytes)) {
      // Already pinned (DataLoader with pin_memory, cuda::empty_pinned): copy straight from it; the block is
      // not recycled before the copy has completed.
      MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), host, bytes, cudaMemcpyHostToDevice, to.stream()));
      pinned::record_use(host, to.index(), to.stream());
      return;
    }
    // Pageable: stage through a pinned block so the caller may reuse its buffer at once, without waiting for
    // the device. The staging block returns to the cache, reusable once this copy has completed.
    void* staging = pinned::acquire(bytes);
    try {
      std::memcpy(staging, host, bytes);
      MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), staging, bytes, cudaMemcpyHostToDevice, to.stream()));
      pinned::record_use(staging, to.index(), to.stream());
    } catch (...) {
      (void)cudaStreamSynchronize(to.stream());  // nothing may still read the block we give back
      pinned::release(staging);
      throw;
    }
    pinned::release(staging);
    return;
  }
  // device -> host: the host needs the data, so wait for it (and for every kernel that produced it).
  CudaBackend& from = backend_of(src);
  DeviceGuard g(from.index());
  MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToHost, from.stream()));
  MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(from.stream()));
}

}  // namespace mixtape::cuda
