#include "core/caching_allocator.h"

#include <cstdio>
#include <vector>

#include "core/error.h"

namespace mixtape {

namespace caching {

size_t round_size(size_t bytes) {
  if (bytes < kMinBlock) return kMinBlock;
  return (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
}

size_t segment_size(size_t rounded) {
  if (is_small(rounded)) return kSmallSegment;
  if (rounded < kMidRequest) return kLargeSegment;
  return (rounded + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
}

std::string format_bytes(size_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace caching

CachingAllocator::CachingAllocator(std::unique_ptr<RawMemoryResource> resource)
    : Allocator(true), resource_(std::move(resource)) {
  MIXTAPE_CHECK(resource_ != nullptr, "CachingAllocator: a raw memory resource is required");
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
  // Blocks still held (tensors alive at exit) keep their segments; their Block records are dropped with us.
  for (auto& [ptr, b] : active_) {
    (void)ptr;
    delete b;
  }
  for (Block* b : small_free_) delete b;
  for (Block* b : large_free_) delete b;
}

CachingAllocator::Block* CachingAllocator::take_free(size_t rounded) {
  Pool& pool = pool_of(caching::is_small(rounded));
  Block key;
  key.size = rounded;
  key.ptr = nullptr;
  auto it = pool.lower_bound(&key);  // the smallest block of at least `rounded` bytes
  if (it == pool.end()) return nullptr;
  Block* b = *it;
  pool.erase(it);
  return b;
}

void* CachingAllocator::raw_allocate(size_t bytes) {
  void* p = resource_->allocate(bytes);
  if (!p) {
    release_cached_locked();  // give the cache back and retry once
    p = resource_->allocate(bytes);
  }
  return p;
}

void CachingAllocator::release_cached_locked() {
  for (Pool* pool : {&small_free_, &large_free_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* b = *it;
      if (b->prev || b->next) {  // part of a segment some other block still uses
        ++it;
        continue;
      }
      resource_->deallocate(b->ptr, b->size);
      reserved_ -= static_cast<int64_t>(b->size);
      record_reserve(-static_cast<int64_t>(b->size));
      it = pool->erase(it);
      delete b;
    }
  }
}

void CachingAllocator::throw_oom(size_t requested, size_t rounded, size_t segment) const {
  const size_t total = resource_->total_bytes();
  const MemoryStats s = stats();
  throw Error(detail::cat("out of memory on ", resource_->device_name(), ": cannot allocate ",
                          caching::format_bytes(requested), " (", requested, " bytes, a ", caching::format_bytes(rounded),
                          " block in a new ", caching::format_bytes(segment), " segment); tensors hold ",
                          caching::format_bytes(static_cast<size_t>(s.current_bytes)), ", the allocator has reserved ",
                          caching::format_bytes(static_cast<size_t>(reserved_)), " (after releasing its cache), the device has ",
                          total ? caching::format_bytes(total) : std::string("an unknown amount"),
                          " in total; use a smaller batch, a lower precision (--precision fp16/bf16) or free tensors"));
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) {
    record_alloc(0);
    return nullptr;
  }
  const size_t rounded = caching::round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  Block* b = take_free(rounded);
  if (!b) {
    const size_t segment = caching::segment_size(rounded);
    void* p = raw_allocate(segment);
    if (!p) throw_oom(bytes, rounded, segment);
    b = new Block;
    b->ptr = static_cast<char*>(p);
    b->size = segment;
    b->small = caching::is_small(rounded);
    reserved_ += static_cast<int64_t>(segment);
    record_reserve(static_cast<int64_t>(segment));
  }
  const size_t remaining = b->size - rounded;
  const bool split = b->small ? remaining >= caching::kMinBlock : remaining > caching::kSmallRequest;
  if (split) {
    Block* rest = new Block;
    rest->ptr = b->ptr + rounded;
    rest->size = remaining;
    rest->small = b->small;
    rest->prev = b;
    rest->next = b->next;
    if (b->next) b->next->prev = rest;
    b->next = rest;
    b->size = rounded;
    pool_of(rest->small).insert(rest);
  }
  b->allocated = true;
  active_[b->ptr] = b;
  record_alloc(bytes);
  return b->ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (!ptr) {
    record_free(0);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = active_.find(ptr);
  if (it == active_.end()) return;  // not ours (a bug elsewhere); nothing safe to do from a destructor path
  Block* b = it->second;
  active_.erase(it);
  b->allocated = false;
  record_free(bytes);
  Pool& pool = pool_of(b->small);
  if (Block* prev = b->prev; prev && !prev->allocated) {  // merge into the free block below
    pool.erase(prev);
    prev->size += b->size;
    prev->next = b->next;
    if (b->next) b->next->prev = prev;
    delete b;
    b = prev;
  }
  if (Block* next = b->next; next && !next->allocated) {  // absorb the free block above
    pool.erase(next);
    b->size += next->size;
    b->next = next->next;
    if (next->next) next->next->prev = b;
    delete next;
  }
  pool.insert(b);
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
}

size_t CachingAllocator::cached_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return small_free_.size() + large_free_.size();
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const Block* b : small_free_) n += b->size;
  for (const Block* b : large_free_) n += b->size;
  return n;
}

}  // namespace mixtape
