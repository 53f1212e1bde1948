// The caching device allocator's logic (core/caching_allocator.h) on the CPU, over a fake raw resource that
// counts raw allocations and can be told to run out of memory: size classes, reuse, splitting and merging,
// no raw allocation in a steady-state loop, current/peak/reserved accounting, empty_cache, the OOM retry path.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/caching_allocator.h"
#include "core/error.h"

using Catch::Matchers::Contains;
using namespace mixtape;

namespace {

/// Host memory standing in for a device: counts raw calls, enforces a capacity, remembers live blocks.
struct FakeResource final : RawMemoryResource {
  size_t capacity = size_t{1} << 40;
  size_t in_use = 0;
  int64_t raw_allocs = 0, raw_frees = 0, failed = 0;
  std::map<void*, size_t> live;

  void* allocate(size_t bytes) override {
    if (in_use + bytes > capacity) {
      ++failed;
      return nullptr;
    }
    void* p = std::aligned_alloc(512, bytes);
    REQUIRE(p != nullptr);
    live[p] = bytes;
    in_use += bytes;
    ++raw_allocs;
    return p;
  }
  void deallocate(void* ptr, size_t bytes) noexcept override {
    auto it = live.find(ptr);
    if (it == live.end() || it->second != bytes) std::abort();  // freeing something not handed out, or a wrong size
    live.erase(it);
    in_use -= bytes;
    ++raw_frees;
    std::free(ptr);
  }
  std::string device_name() const override { return "fake:0"; }
  size_t total_bytes() const override { return capacity; }
};

struct Fixture {
  FakeResource* res;  // owned by the allocator
  CachingAllocator alloc;
  Fixture() : Fixture(std::make_unique<FakeResource>()) {}
  explicit Fixture(std::unique_ptr<FakeResource> r) : res(r.get()), alloc(std::move(r)) {}
};

constexpr size_t MiB = size_t{1} << 20;

}  // namespace

TEST_CASE("caching allocator: size classes round to 512 bytes and pick 2 MiB, 20 MiB or own segments",
          "[caching_allocator]") {
  using namespace caching;
  CHECK(round_size(0) == 512);
  CHECK(round_size(1) == 512);
  CHECK(round_size(512) == 512);
  CHECK(round_size(513) == 1024);
  CHECK(round_size(1000003) == 1000448);  // 1954 * 512
  CHECK(round_size(1000003) % 512 == 0);
  CHECK(round_size(1000003) - 1000003 < 512);
  CHECK(is_small(MiB));
  CHECK_FALSE(is_small(MiB + 512));
  CHECK(segment_size(512) == 2 * MiB);
  CHECK(segment_size(MiB) == 2 * MiB);
  CHECK(segment_size(MiB + 512) == 20 * MiB);
  CHECK(segment_size(10 * MiB - 512) == 20 * MiB);
  CHECK(segment_size(10 * MiB) == 10 * MiB);
  CHECK(segment_size(10 * MiB + 512) == 12 * MiB);
  CHECK(segment_size(64 * MiB) == 64 * MiB);
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(3 * MiB / 2) == "1.50 MiB");
}

TEST_CASE("caching allocator: a freed block is reused without a new raw allocation", "[caching_allocator]") {
  Fixture f;
  void* a = f.alloc.allocate(1000);
  REQUIRE(a != nullptr);
  CHECK(f.res->raw_allocs == 1);
  CHECK(f.res->live.at(a) == 2 * MiB);  // the first small block starts its segment
  f.alloc.deallocate(a, 1000);
  void* b = f.alloc.allocate(900);  // same 1024-byte class
  CHECK(b == a);
  CHECK(f.res->raw_allocs == 1);
  // small requests share one 2 MiB segment: 2047 more 1 KiB blocks fit without a raw allocation
  std::vector<void*> blocks;
  for (int i = 0; i < 2047; ++i) blocks.push_back(f.alloc.allocate(1024));
  CHECK(f.res->raw_allocs == 1);
  void* more = f.alloc.allocate(1024);  // the segment is full
  CHECK(f.res->raw_allocs == 2);
  // blocks never overlap
  std::vector<char*> all{static_cast<char*>(b), static_cast<char*>(more)};
  for (void* p : blocks) all.push_back(static_cast<char*>(p));
  std::sort(all.begin(), all.end());
  for (size_t i = 1; i < all.size(); ++i) CHECK(all[i] - all[i - 1] >= 1024);
  for (void* p : blocks) f.alloc.deallocate(p, 1024);
  f.alloc.deallocate(b, 900);
  f.alloc.deallocate(more, 1024);
  CHECK(f.res->raw_frees == 0);  // deallocate never returns memory to the resource
}

TEST_CASE("caching allocator: a training-like loop makes no raw allocation after the first step",
          "[caching_allocator]") {
  Fixture f;
  // A step's tensors: weights-sized, activation-sized, small bias/scalar ones, one large; odd sizes included.
  const std::vector<size_t> step = {4, 40, 3136 * 4, 128 * 1024 * 4, 1024 * 784 * 2, 1024 * 1024 * 4, 256 * 1024 * 4,
                                    1024 * 2, 10 * 4, 12 * MiB + 7, 1000003, 64 * MiB, 513, 1};
  std::mt19937 rng(7);
  int64_t raw_after_first = -1;
  for (int iter = 0; iter < 50; ++iter) {
    std::vector<std::pair<void*, size_t>> held;
    std::vector<size_t> order = step;
    std::shuffle(order.begin(), order.end(), rng);  // a different allocation order each step
    for (size_t n : order) held.emplace_back(f.alloc.allocate(n), n);
    std::shuffle(held.begin(), held.end(), rng);
    for (auto& [p, n] : held) f.alloc.deallocate(p, n);
    if (iter == 0) raw_after_first = f.res->raw_allocs;
  }
  INFO("raw allocations after the first step: " << raw_after_first);
  CHECK(f.res->raw_allocs == raw_after_first);
  CHECK(f.alloc.stats().raw_allocations == raw_after_first);
  CHECK(f.alloc.stats().current_bytes == 0);
  CHECK(f.alloc.stats().allocations == 50 * static_cast<int64_t>(step.size()));
}

TEST_CASE("caching allocator: current and peak count requested bytes, reserved counts raw segments",
          "[caching_allocator]") {
  Fixture f;
  void* a = f.alloc.allocate(1000);
  void* b = f.alloc.allocate(3 * MiB);
  MemoryStats s = f.alloc.stats();
  CHECK(s.current_bytes == 1000 + 3 * static_cast<int64_t>(MiB));
  CHECK(s.peak_bytes == s.current_bytes);
  CHECK(s.reserved_bytes == static_cast<int64_t>(2 * MiB + 20 * MiB));
  CHECK(s.reserved_bytes == static_cast<int64_t>(f.res->in_use));
  CHECK(s.raw_allocations == 2);
  f.alloc.deallocate(b, 3 * MiB);
  s = f.alloc.stats();
  CHECK(s.current_bytes == 1000);
  CHECK(s.peak_bytes == 1000 + 3 * static_cast<int64_t>(MiB));
  CHECK(s.reserved_bytes == static_cast<int64_t>(22 * MiB));  // cached, still reserved
  f.alloc.reset_peak();
  CHECK(f.alloc.stats().peak_bytes == 1000);
  CHECK(f.alloc.stats().peak_reserved_bytes == static_cast<int64_t>(22 * MiB));
  f.alloc.deallocate(a, 1000);
  CHECK(f.alloc.stats().current_bytes == 0);
  CHECK(f.alloc.allocate(0) == nullptr);  // zero bytes: no block
  f.alloc.deallocate(nullptr, 0);
  CHECK(f.alloc.stats().current_bytes == 0);
}

TEST_CASE("caching allocator: split blocks merge back so a segment serves a larger request later",
          "[caching_allocator]") {
  Fixture f;
  // three 4 MiB requests share one 20 MiB segment
  void* a = f.alloc.allocate(4 * MiB);
  void* b = f.alloc.allocate(4 * MiB);
  void* c = f.alloc.allocate(4 * MiB);
  CHECK(f.res->raw_allocs == 1);
  CHECK(static_cast<char*>(b) - static_cast<char*>(a) == static_cast<ptrdiff_t>(4 * MiB));
  CHECK(static_cast<char*>(c) - static_cast<char*>(b) == static_cast<ptrdiff_t>(4 * MiB));
  f.alloc.deallocate(b, 4 * MiB);
  f.alloc.deallocate(a, 4 * MiB);
  f.alloc.deallocate(c, 4 * MiB);
  CHECK(f.alloc.cached_blocks() == 1);  // everything merged into the whole segment
  CHECK(f.alloc.cached_bytes() == 20 * MiB);
  void* big = f.alloc.allocate(18 * MiB);  // fits only in the merged segment
  CHECK(big == a);
  CHECK(f.res->raw_allocs == 1);
  f.alloc.deallocate(big, 18 * MiB);
}

TEST_CASE("caching allocator: small and large requests come from separate pools", "[caching_allocator]") {
  Fixture f;
  void* large = f.alloc.allocate(2 * MiB);  // 20 MiB segment
  f.alloc.deallocate(large, 2 * MiB);
  void* small = f.alloc.allocate(512);  // must not carve the cached large segment
  CHECK(f.res->raw_allocs == 2);
  CHECK(f.res->live.count(small) == 1);  // starts a fresh 2 MiB segment
  CHECK(f.res->live.at(small) == 2 * MiB);
  f.alloc.deallocate(small, 512);
}

TEST_CASE("caching allocator: empty_cache releases whole free segments only", "[caching_allocator]") {
  Fixture f;
  void* a = f.alloc.allocate(100);
  void* b = f.alloc.allocate(100);  // same segment as a
  void* c = f.alloc.allocate(30 * MiB);
  f.alloc.deallocate(a, 100);
  f.alloc.deallocate(c, 30 * MiB);
  f.alloc.empty_cache();
  CHECK(f.res->raw_frees == 1);  // c's segment; a's segment still holds b
  CHECK(f.alloc.stats().reserved_bytes == static_cast<int64_t>(2 * MiB));
  CHECK(f.res->in_use == 2 * MiB);
  f.alloc.deallocate(b, 100);
  f.alloc.empty_cache();
  CHECK(f.res->raw_frees == 2);
  CHECK(f.res->in_use == 0);
  CHECK(f.alloc.stats().reserved_bytes == 0);
  CHECK(f.alloc.cached_blocks() == 0);
  void* d = f.alloc.allocate(100);  // works again afterwards
  CHECK(d != nullptr);
  f.alloc.deallocate(d, 100);
}

TEST_CASE("caching allocator: out of memory releases the cache, retries once, then names the sizes",
          "[caching_allocator]") {
  auto r = std::make_unique<FakeResource>();
  r->capacity = 64 * MiB;
  Fixture f(std::move(r));
  SECTION("the retry after releasing the cache succeeds") {
    void* a = f.alloc.allocate(40 * MiB);
    f.alloc.deallocate(a, 40 * MiB);  // cached: 40 MiB reserved, 24 MiB left on the device
    void* b = f.alloc.allocate(50 * MiB);  // no cached block fits; the raw call fails, the cache goes, retry works
    CHECK(b != nullptr);
    CHECK(f.res->failed == 1);
    CHECK(f.res->raw_frees == 1);
    CHECK(f.alloc.stats().reserved_bytes == static_cast<int64_t>(50 * MiB));
    f.alloc.deallocate(b, 50 * MiB);
  }
  SECTION("a request that cannot fit throws mixtape::Error naming the request, device, usage and total") {
    void* held = f.alloc.allocate(30 * MiB);
    void* cached = f.alloc.allocate(12 * MiB);
    f.alloc.deallocate(cached, 12 * MiB);
    CHECK_THROWS_AS(f.alloc.allocate(40 * MiB), Error);
    CHECK_THROWS_WITH(f.alloc.allocate(40 * MiB),
                      Contains("out of memory on fake:0") && Contains("cannot allocate 40.00 MiB") &&
                          Contains("tensors hold 30.00 MiB") && Contains("reserved 30.00 MiB") &&
                          Contains("64.00 MiB in total"));
    CHECK(f.res->failed == 4);  // first try and the retry, twice
    CHECK(f.res->raw_frees == 1);  // the cached 12 MiB segment was released before the retry
    // the allocator still works after the failure
    CHECK(f.alloc.stats().current_bytes == static_cast<int64_t>(30 * MiB));
    void* small = f.alloc.allocate(1000);
    CHECK(small != nullptr);
    f.alloc.deallocate(small, 1000);
    f.alloc.deallocate(held, 30 * MiB);
  }
}

TEST_CASE("caching allocator: random alloc/free keeps blocks disjoint and accounting exact", "[caching_allocator]") {
  Fixture f;
  std::mt19937_64 rng(123);
  std::map<char*, size_t> held;  // ptr -> requested bytes
  int64_t expected = 0;
  for (int i = 0; i < 3000; ++i) {
    if (held.empty() || rng() % 3 != 0) {
      const size_t n = (rng() % 4 == 0) ? 1 + rng() % (24 * MiB) : 1 + rng() % 8192;
      char* p = static_cast<char*>(f.alloc.allocate(n));
      // no overlap with the neighbours in address order
      auto next = held.lower_bound(p);
      if (next != held.end()) REQUIRE(p + n <= next->first);
      if (next != held.begin()) {
        auto prev = std::prev(next);
        REQUIRE(prev->first + prev->second <= p);
      }
      held[p] = n;
      expected += static_cast<int64_t>(n);
    } else {
      auto it = held.begin();
      std::advance(it, static_cast<long>(rng() % held.size()));
      f.alloc.deallocate(it->first, it->second);
      expected -= static_cast<int64_t>(it->second);
      held.erase(it);
    }
    REQUIRE(f.alloc.stats().current_bytes == expected);
    REQUIRE(f.alloc.stats().reserved_bytes == static_cast<int64_t>(f.res->in_use));
  }
  for (auto& [p, n] : held) f.alloc.deallocate(p, n);
  f.alloc.empty_cache();
  CHECK(f.res->in_use == 0);  // every split block merged back into whole segments
}
