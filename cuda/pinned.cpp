// The pinned host block cache (cuda/pinned.h, cuda/pinned_pool.h).
#include "cuda/pinned.h"

#include <cuda_runtime_api.h>

#include <bit>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/caching_allocator.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_runtime_info.h"
#include "cuda/pinned_pool.h"

namespace mixtape::cuda {

namespace {

/// Pinned blocks by exact (power-of-two) size, reused once the copies that read them have completed.
class PinnedCache final : public Allocator {
 public:
  PinnedCache() : Allocator(true) {}

  void* allocate(size_t bytes) override {
    if (bytes == 0) {
      record_alloc(0);
      return nullptr;
    }
    const size_t size = pinned::round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    collect_completed_locked();
    Block* b = nullptr;
    if (auto it = free_.find(size); it != free_.end()) {
      b = it->second;
      free_.erase(it);
    } else {
      b = new_block_locked(size, bytes);
    }
    b->in_use = true;
    b->requested = bytes;
    record_alloc(bytes);
    return b->ptr;
  }

  void deallocate(void* ptr, size_t /*bytes*/) override {
    if (!ptr) {
      record_free(0);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    Block* b = find_locked(ptr);
    if (!b || !b->in_use) return;  // not ours: nothing safe to do from a destructor path
    b->in_use = false;
    record_free(b->requested);
    if (b->events.empty())
      free_.emplace(b->size, b);
    else
      pending_.push_back(b);
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    collect_completed_locked();
    release_free_locked();
  }

  void record_use(const void* ptr, int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    Block* b = find_locked(ptr);
    if (!b) return;
    drop_completed_events(*b);  // a long-lived pinned tensor copied every step keeps only the copies in flight
    DeviceGuard g(device);
    cudaEvent_t ev = nullptr;
    MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    const cudaError_t err = cudaEventRecord(ev, stream);
    if (err != cudaSuccess) {
      (void)cudaEventDestroy(ev);
      (void)cudaGetLastError();
      throw_cuda_error("cudaEventRecord(ev, stream)", err, __FILE__, __LINE__);
    }
    b->events.push_back(ev);
  }

  bool contains(const void* ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    Block* b = find_locked(ptr);
    return b && static_cast<const char*>(ptr) + bytes <= b->ptr + b->size;
  }

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    size_t requested = 0;
    bool in_use = false;
    std::vector<cudaEvent_t> events;  ///< copies reading the block, not yet known to be complete
  };

  Block* find_locked(const void* ptr) {
    const char* p = static_cast<const char*>(ptr);
    auto it = blocks_.upper_bound(const_cast<char*>(p));
    if (it == blocks_.begin()) return nullptr;
    --it;
    Block* b = it->second.get();
    return p < b->ptr + b->size ? b : nullptr;
  }

  Block* new_block_locked(size_t size, size_t requested) {
    void* p = nullptr;
    cudaError_t err = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {  // release what the cache holds and retry once
      (void)cudaGetLastError();
      collect_completed_locked();
      release_free_locked();
      err = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(detail::cat("cannot allocate ", caching::format_bytes(requested), " of pinned host memory (",
                              cudaGetErrorName(err), ": ", cudaGetErrorString(err), "); ",
                              caching::format_bytes(static_cast<size_t>(stats().reserved_bytes)),
                              " are already pinned by the cache"));
    }
    auto owned = std::make_unique<Block>();
    owned->ptr = static_cast<char*>(p);
    owned->size = size;
    Block* b = owned.get();
    blocks_.emplace(b->ptr, std::move(owned));
    record_reserve(static_cast<int64_t>(size));
    return b;
  }

  // Destroys the events of b's completed copies; returns whether none is left.
  static bool drop_completed_events(Block& b) {
    auto& evs = b.events;
    for (size_t j = 0; j < evs.size();) {
      const cudaError_t q = cudaEventQuery(evs[j]);
      if (q == cudaErrorNotReady) {
        ++j;
        continue;
      }
      (void)cudaGetLastError();  // a failed copy reports at the stream's next check; the block is reusable
      (void)cudaEventDestroy(evs[j]);
      evs[j] = evs.back();
      evs.pop_back();
    }
    return evs.empty();
  }

  // Gives every free block back to the system.
  void release_free_locked() {
    for (auto& [size, b] : free_) {
      (void)cudaFreeHost(b->ptr);
      record_reserve(-static_cast<int64_t>(size));
      blocks_.erase(b->ptr);  // destroys the Block
    }
    free_.clear();
  }

  // Drops the events of completed copies; pending blocks with none left become free.
  void collect_completed_locked() {
    for (size_t i = 0; i < pending_.size();) {
      Block* b = pending_[i];
      if (drop_completed_events(*b)) {
        free_.emplace(b->size, b);
        pending_[i] = pending_.back();
        pending_.pop_back();
      } else {
        ++i;
      }
    }
  }

  std::mutex mu_;
  std::map<char*, std::unique_ptr<Block>> blocks_;  // every block, by address
  std::multimap<size_t, Block*> free_;               // reusable now
  std::vector<Block*> pending_;                      // released, copies still in flight
};

// Never destroyed: tensors released during static destruction may still return blocks to it.
PinnedCache& cache() {
  static PinnedCache* c = new PinnedCache();
  return *c;
}

}  // namespace

namespace pinned {

size_t round_size(size_t bytes) { return bytes <= 512 ? 512 : std::bit_ceil(bytes); }

void* acquire(size_t bytes) {
  MIXTAPE_CHECK(bytes > 0, "pinned::acquire: zero bytes");
  return cache().allocate(bytes);
}

void record_use(const void* ptr, int device, cudaStream_t stream) { cache().record_use(ptr, device, stream); }

void release(void* ptr) { cache().deallocate(ptr, 0); }

bool contains(const void* ptr, size_t bytes) { return ptr && cache().contains(ptr, bytes); }

}  // namespace pinned

bool pinned_memory_available() { return device_count() > 0; }

Tensor empty_pinned(const Shape& shape, DType dtype) {
  for (int64_t d : shape) MIXTAPE_CHECK(d >= 0, "empty_pinned: negative dimension in ", shape.to_string());
  MIXTAPE_CHECK(pinned_memory_available(), "pinned host memory requested but no CUDA device is available (",
                no_device_reason(), ")");
  const size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  if (bytes == 0) return Tensor::empty(shape, dtype);
  void* block = pinned::acquire(bytes);
  // A CPU Storage whose data is swapped for the pinned block; the deleter gives the block back to the cache
  // and restores the Storage's own (empty) buffer so it frees exactly what it allocated.
  Storage* raw = nullptr;
  try {
    raw = new Storage(0, Device::cpu());
  } catch (...) {
    pinned::release(block);
    throw;
  }
  void* own = raw->data;
  raw->data = block;
  raw->nbytes = bytes;
  std::shared_ptr<Storage> storage(raw, [own](Storage* s) {
    pinned::release(s->data);
    s->data = own;
    s->nbytes = 0;
    delete s;
  });
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

bool is_pinned(const Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.nbytes() > 0 && pinned::contains(t.raw_data(), t.nbytes());
}

MemoryStats pinned_memory_stats() { return cache().stats(); }

void empty_pinned_cache() { cache().empty_cache(); }

}  // namespace mixtape::cuda
