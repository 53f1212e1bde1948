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
  /// Sets the peak to the current bytes.
  void reset_peak();

 protected:
  /// Subclasses call these so the counters follow what users hold.
  void record_alloc(size_t bytes);
  void record_free(size_t bytes);

 private:
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> count_{0};
};

/// The allocator of a device (throws when that device's backend is not available).
Allocator& allocator_for(Device device);
/// Shortcut: allocator_for(device).stats().
MemoryStats memory_stats(Device device = Device::cpu());
/// Shortcut: allocator_for(device).reset_peak().
void reset_peak_memory(Device device = Device::cpu());

}  // namespace mixtape
