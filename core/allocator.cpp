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

/// The calling thread's net bytes per allocator (a process has a handful of allocators: a linear scan).
struct ThreadNet {
  static constexpr int kSlots = 16;
  const Allocator* owner[kSlots] = {};
  int64_t bytes[kSlots] = {};
  int64_t& slot(const Allocator* a) {
    for (int i = 0; i < kSlots; ++i) {
      if (owner[i] == a) return bytes[i];
      if (!owner[i]) {
        owner[i] = a;
        return bytes[i];
      }
    }
    return overflow;  // more allocators than slots: shared, still exact for a thread using one of them
  }
  int64_t overflow = 0;
};
thread_local ThreadNet t_net;
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
  t_net.slot(this) += static_cast<int64_t>(bytes);
}

void Allocator::record_free(size_t bytes) {
  current_.fetch_sub(static_cast<int64_t>(bytes));
  t_net.slot(this) -= static_cast<int64_t>(bytes);
}

int64_t Allocator::thread_net_bytes() const { return t_net.slot(this); }

Allocator& allocator_for(Device device) { return backend_for(device).allocator(); }
MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }
int64_t thread_net_bytes(Device device) { return allocator_for(device).thread_net_bytes(); }
void empty_cache(Device device) { allocator_for(device).empty_cache(); }

}  // namespace mixtape
