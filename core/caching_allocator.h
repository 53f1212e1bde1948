#pragma once
// A caching allocator over raw device memory (DESIGN §2): freed blocks are kept in size-ordered free lists and
// reused, so a training loop in steady state makes no raw allocation (no cudaMalloc per tensor). A simpler
// variant of PyTorch's CUDA caching allocator:
//   * every request is rounded up to a multiple of 512 bytes;
//   * requests up to 1 MiB come from 2 MiB segments (the small pool), larger ones from 20 MiB segments when
//     under 10 MiB, otherwise from a segment of the request rounded up to 2 MiB (the large pool);
//   * a free block bigger than the request is split (small pool: when at least 512 bytes remain; large pool:
//     when more than 1 MiB remains), and freed neighbours within a segment are merged again;
//   * on out-of-memory the cache is released and the raw allocation retried once, then mixtape::Error names
//     the request, the device, the bytes held by tensors, the bytes reserved and the device's total.
// The allocator assumes stream-ordered use: a freed block may be reused by the next kernel at once (one stream
// per device). Plain C++ over a small RawMemoryResource, so its logic is tested on the CPU with a fake one.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "core/allocator.h"

namespace mixtape {

/// Where a caching allocator gets its raw blocks (cudaMalloc/cudaFree on a GPU, a fake in tests).
class RawMemoryResource {
 public:
  virtual ~RawMemoryResource() = default;
  /// A raw block of `bytes`, or nullptr when the device is out of memory (other failures throw).
  virtual void* allocate(size_t bytes) = 0;
  /// Returns a block from allocate() (with its size). Must not throw.
  virtual void deallocate(void* ptr, size_t bytes) noexcept = 0;
  /// The device's name for messages, e.g. "cuda:0".
  virtual std::string device_name() const = 0;
  /// The device's total memory in bytes (0 when unknown).
  virtual size_t total_bytes() const = 0;
};

namespace caching {
constexpr size_t kMinBlock = 512;                 ///< every request is a multiple of this
constexpr size_t kSmallRequest = size_t{1} << 20;  ///< requests up to this use the small pool
constexpr size_t kSmallSegment = size_t{2} << 20;  ///< raw size of a small-pool segment
constexpr size_t kMidRequest = size_t{10} << 20;   ///< large requests under this share 20 MiB segments
constexpr size_t kLargeSegment = size_t{20} << 20; ///< raw size of a shared large-pool segment
constexpr size_t kRoundLarge = size_t{2} << 20;    ///< bigger requests get their own segment, rounded to this

/// The size a request occupies: `bytes` rounded up to a multiple of 512 (at least 512).
size_t round_size(size_t bytes);
/// Whether a rounded size is served by the small pool.
inline bool is_small(size_t rounded) { return rounded <= kSmallRequest; }
/// The raw segment allocated when no cached block fits a rounded request.
size_t segment_size(size_t rounded);
/// "1.50 MiB", "512 B", ... for messages.
std::string format_bytes(size_t bytes);
}  // namespace caching

/// Allocator that caches freed blocks of a RawMemoryResource (see the top of this file). Thread-safe.
class CachingAllocator final : public Allocator {
 public:
  /// Takes ownership of the resource.
  explicit CachingAllocator(std::unique_ptr<RawMemoryResource> resource);
  /// Returns every cached segment to the resource (blocks still held by tensors are left alone).
  ~CachingAllocator() override;
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  /// A block of at least `bytes` (nullptr for 0); throws mixtape::Error when the device is out of memory.
  void* allocate(size_t bytes) override;
  /// Returns a block to the cache (never to the resource).
  void deallocate(void* ptr, size_t bytes) override;
  /// Releases every whole cached segment to the resource.
  void empty_cache() override;

  /// Free blocks currently cached (both pools).
  size_t cached_blocks() const;
  /// Bytes in cached free blocks.
  size_t cached_bytes() const;
  /// The resource blocks come from.
  RawMemoryResource& resource() { return *resource_; }

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    bool small = false;
    bool allocated = false;
    Block* prev = nullptr;  ///< neighbour below in the same segment
    Block* next = nullptr;  ///< neighbour above in the same segment
  };
  struct BySize {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using Pool = std::set<Block*, BySize>;

  Pool& pool_of(bool small) { return small ? small_free_ : large_free_; }
  Block* take_free(size_t rounded);                    // best fit, removed from its pool; nullptr if none
  void* raw_allocate(size_t bytes);                    // with one release-and-retry on out-of-memory
  void release_cached_locked();                        // empty_cache with mu_ held
  [[noreturn]] void throw_oom(size_t requested, size_t rounded, size_t segment) const;

  std::unique_ptr<RawMemoryResource> resource_;
  mutable std::mutex mu_;
  Pool small_free_, large_free_;
  std::unordered_map<void*, Block*> active_;
  int64_t reserved_ = 0;  // mirrors stats().reserved_bytes, under mu_
};

}  // namespace mixtape
