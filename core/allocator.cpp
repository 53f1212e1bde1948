#include "core/allocator.h"

#include <cstdlib>
#include <new>

#include "core/backend.h"
#include "core/error.h"

namespace mixtape {

MemoryStats Allocator::stats() const {
  return {current_.load(std::memory_order_relaxed), peak_.load(std::memory_order_relaxed),
          count_.load(std::memory_order_relaxed)};
}

void Allocator::reset_peak() { peak_.store(current_.load()); }

void Allocator::record_alloc(size_t bytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  count_.fetch_add(1);
}

void Allocator::record_free(size_t bytes) { current_.fetch_sub(static_cast<int64_t>(bytes)); }

Allocator& allocator_for(Device device) { return backend_for(device).allocator(); }
MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }

}  // namespace mixtape
