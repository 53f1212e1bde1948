#include "core/allocator.h"

#include <cstdlib>
#include <new>

#include "core/backend.h"
#include "core/error.h"

namespace mixtape {

namespace {
void raise_to(std::atomic<int64_t>& peak, int64_t now) {
  int64_t seen = peak.load();
  while (now > seen && !peak.compare_exchange_weak(seen, now)) {
  }
}
}  // namespace

MemoryStats Allocator::stats() const {
  MemoryStats s;
  s.current_bytes = current_.load(std::memory_order_relaxed);
  s.peak_bytes = peak_.load(std::memory_order_relaxed);
  s.allocations = count_.load(std::memory_order_relaxed);
  s.reserved_bytes = caching_ ? reserved_.load(std::memory_order_relaxed) : s.current_bytes;
  s.peak_reserved_bytes = caching_ ? peak_reserved_.load(std::memory_order_relaxed) : s.peak_bytes;
  s.raw_allocations = caching_ ? raw_count_.load(std::memory_order_relaxed) : s.allocations;
  return s;
}

void Allocator::reset_peak() {
  peak_.store(current_.load());
  peak_reserved_.store(reserved_.load());
}

void Allocator::record_reserve(int64_t delta_bytes) {
  const int64_t now = reserved_.fetch_add(delta_bytes) + delta_bytes;
  if (delta_bytes > 0) {
    raw_count_.fetch_add(1);
    raise_to(peak_reserved_, now);
  }
}

void Allocator::record_alloc(size_t bytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  raise_to(peak_, now);
  count_.fetch_add(1);
}

void Allocator::record_free(size_t bytes) { current_.fetch_sub(static_cast<int64_t>(bytes)); }

Allocator& allocator_for(Device device) { return backend_for(device).allocator(); }
MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }
void empty_cache(Device device) { allocator_for(device).empty_cache(); }

}  // namespace mixtape
