#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace mixtape {

/// Bytes held by one device's allocator.
struct MemoryStats {
  int64_t current_bytes = 0;  ///< bytes handed out and not yet freed
  int64_t peak_bytes = 0;     ///< maximum of current_bytes since start or the last reset_peak()
  int64_t allocations = 0;    ///< number of allocate() calls since start
  /// Bytes obtained from the system: what tensors hold plus blocks a caching allocator keeps for reuse
  /// (equal to current_bytes for an allocator without a cache, such as the CPU one).
  int64_t reserved_bytes = 0;
  /// Maximum of reserved_bytes since start or the last reset_peak().
  int64_t peak_reserved_bytes = 0;
  /// Number of raw allocations from the system (cudaMalloc, ...) since start; equal to `allocations` for an
  /// allocator without a cache. A caching allocator in steady state does not increase it.
  int64_t raw_allocations = 0;
};

/// Per-device allocator interface; every tensor buffer goes through one, so memory claims are measured.
class Allocator {
 public:
  virtual ~Allocator() = default;
  /// A buffer of `bytes` (64-byte aligned on the CPU); throws mixtape::Error when out of memory.
  virtual void* allocate(size_t bytes) = 0;
  /// Returns a buffer from allocate() with the same size.
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  /// Current and peak bytes.
  MemoryStats stats() const;
  /// Sets the peak (and the reserved peak) to the current values.
  void reset_peak();
  /// Returns cached blocks no tensor uses to the system (a no-op without a cache).
  virtual void empty_cache() {}
  /// Bytes the calling thread allocated minus bytes it freed through this allocator, since the thread started.
  /// A difference of two readings is what that thread's code in between kept alive, unaffected by other
  /// threads (e.g. a data loader's prefetch thread allocating the next batch meanwhile).
  int64_t thread_net_bytes() const;

 protected:
  Allocator() = default;
  /// `caching`: the subclass keeps freed blocks and reports its reserved bytes with record_reserve().
  explicit Allocator(bool caching) : caching_(caching) {}
  /// Subclasses call these so the counters follow what users hold.
  void record_alloc(size_t bytes);
  void record_free(size_t bytes);
  /// A caching subclass reports each raw allocation (+bytes) and release (-bytes) from the system.
  void record_reserve(int64_t delta_bytes);

 private:
  bool caching_ = false;
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> reserved_{0};
  std::atomic<int64_t> peak_reserved_{0};
  std::atomic<int64_t> raw_count_{0};
};

/// The allocator of a device (throws when that device's backend is not available).
Allocator& allocator_for(Device device);
/// Shortcut: allocator_for(device).stats().
MemoryStats memory_stats(Device device = Device::cpu());
/// Shortcut: allocator_for(device).thread_net_bytes().
int64_t thread_net_bytes(Device device = Device::cpu());
/// Shortcut: allocator_for(device).reset_peak().
void reset_peak_memory(Device device = Device::cpu());
/// Shortcut: allocator_for(device).empty_cache(): cached device blocks no tensor uses go back to the system.
void empty_cache(Device device);

}  // namespace mixtape
