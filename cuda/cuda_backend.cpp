#include "cuda/cuda_backend.h"

#include <array>
#include <mutex>

#include "cuda/check.h"
#include "cuda/cuda_runtime_info.h"

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

/// Plain cudaMallocAsync/cudaFreeAsync on the device's stream, with current/peak accounting.
class StreamAllocator final : public Allocator {
 public:
  StreamAllocator(int index, cudaStream_t stream) : index_(index), stream_(stream) {}
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    DeviceGuard g(index_);
    void* p = nullptr;
    MIXTAPE_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream_));
    record_alloc(bytes);
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    if (!ptr) return;
    DeviceGuard g(index_);
    (void)cudaFreeAsync(ptr, stream_);  // never throws from a destructor path
    record_free(bytes);
  }

 private:
  int index_;
  cudaStream_t stream_;
};

}  // namespace

CudaBackend::CudaBackend(int index) : index_(index) {
  const int n = device_count();
  MIXTAPE_CHECK(index >= 0 && index < n, "device cuda:", index, " requested but ",
                n == 0 ? "no CUDA device is available (" + no_device_reason() + "); use the cpu device"
                       : ::mixtape::detail::cat("this machine has ", n, " CUDA device(s) (cuda:0..cuda:", n - 1, ")"));
  DeviceGuard g(index_);
  MIXTAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  allocator_ = std::make_unique<StreamAllocator>(index_, stream_);
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
  static std::mutex mu;
  static std::array<std::unique_ptr<CudaBackend>, 64> backends;
  MIXTAPE_CHECK(index >= 0 && index < static_cast<int>(backends.size()), "device cuda:", index, " is out of range");
  std::lock_guard<std::mutex> lock(mu);
  auto& b = backends[static_cast<size_t>(index)];
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
    from.synchronize();  // the source is complete
    DeviceGuard g(to.index());
    MIXTAPE_CUDA_CHECK(cudaMemcpyPeerAsync(dst.raw_data(), to.index(), src.raw_data(), from.index(), bytes, to.stream()));
    return;
  }
  if (dst.device().is_cuda()) {  // host -> device
    CudaBackend& to = backend_of(dst);
    DeviceGuard g(to.index());
    MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyHostToDevice, to.stream()));
    // A pageable host source may be reused by the caller as soon as we return.
    MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(to.stream()));
    return;
  }
  CudaBackend& from = backend_of(src);  // device -> host
  DeviceGuard g(from.index());
  MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToHost, from.stream()));
  MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(from.stream()));
}

}  // namespace mixtape::cuda
