// Device and pinned memory of the emulated GPUs (cuda/emu/memory.h).
//
// A device allocation of `size` bytes is one private anonymous mapping:
//   [ slack | data (size rounded up to 256 bytes) ][ guard page ]
// with the data ending at the guard page, so the first byte past a 256-multiple allocation faults. The slack (less
// than a page, before the data) and the bytes between `size` and the 256 boundary are filled with a canary and
// checked when device work ends. New device and pinned memory is filled with 0xff bytes (NaN, -1): it is
// uninitialised in CUDA, so code that assumes zeros shows. Data pages are PROT_NONE except inside an AccessScope
// (device work), so host code that dereferences a device pointer faults, and the handler says so. Freed device
// memory keeps its mapping, PROT_NONE and emptied (MADV_DONTNEED), up to kQuarantineBytes of address space, so a
// use after free faults too.
#include "cuda/emu/memory.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda/emu/emu.h"
#include "cuda/emu/lock.h"

namespace mixtape::emu::memory {

namespace {

constexpr size_t kAlign = 256;
constexpr unsigned char kCanary = 0xcd;
constexpr unsigned char kPoison = 0xff;  // NaN in every floating type, -1 in the integer ones
constexpr size_t kQuarantineBytes = size_t{64} << 30;  // address space kept for freed device memory

size_t page_size() {
  static const size_t p = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}
size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

struct Alloc {
  char* map = nullptr;     // the whole mapping
  size_t map_bytes = 0;
  char* base = nullptr;    // what the caller got
  size_t size = 0;         // what the caller asked for
  size_t data_bytes = 0;   // size rounded up to 256
  MemKind kind = MemKind::none;
  int device = -1;
};

struct State {
  std::map<uintptr_t, Alloc> allocs;  // by base: live device, pinned and quarantined (freed) device memory
  std::deque<uintptr_t> quarantine;   // freed device allocations, oldest first
  size_t quarantine_bytes = 0;
  std::vector<size_t> used;           // per device
  size_t capacity = 0;
  int access_depth = 0;
};

State& state() {
  static State* s = new State();  // never destroyed: tensors may free device memory during static destruction
  return *s;
}

// ---- a lock-free copy of the address ranges for the fault handler (updated under the runtime lock) ----

enum class RangeKind : uint8_t { device_data, device_guard, freed, stack_guard };
struct Range {
  uintptr_t lo, hi;    // [lo, hi)
  uintptr_t base;      // allocation base (device kinds)
  size_t size;         // allocation size
  RangeKind kind;
  int device;
};
constexpr size_t kMaxRanges = size_t{1} << 16;
Range g_ranges[kMaxRanges];
std::atomic<size_t> g_range_count{0};
size_t g_stack_guards = 0;  // the first g_stack_guards entries are stack guards (never removed)
thread_local const char* t_fault_context = nullptr;

void rebuild_ranges_locked() {
  State& s = state();
  size_t n = g_stack_guards;
  for (const auto& [b, a] : s.allocs) {
    if (a.kind == MemKind::pinned_host) continue;
    if (n + 2 > kMaxRanges) break;
    const uintptr_t data_end = reinterpret_cast<uintptr_t>(a.base) + a.data_bytes;
    if (a.kind == MemKind::freed) {
      g_ranges[n++] = {reinterpret_cast<uintptr_t>(a.map), reinterpret_cast<uintptr_t>(a.map) + a.map_bytes, b, a.size,
                       RangeKind::freed, a.device};
    } else {
      g_ranges[n++] = {reinterpret_cast<uintptr_t>(a.map), data_end, b, a.size, RangeKind::device_data, a.device};
      g_ranges[n++] = {data_end, data_end + page_size(), b, a.size, RangeKind::device_guard, a.device};
    }
  }
  g_range_count.store(n, std::memory_order_release);
}

void protect_locked(const Alloc& a, bool accessible) {
  const size_t data_pages = a.map_bytes - page_size();
  ::mprotect(a.map, data_pages, accessible ? PROT_READ | PROT_WRITE : PROT_NONE);
}

void fill_canaries(const Alloc& a) {
  std::memset(a.map, kCanary, static_cast<size_t>(a.base - a.map));
  std::memset(a.base + a.size, kCanary, a.data_bytes - a.size);
}

/// Checks the canaries of every live device allocation (memory accessible); reports the first overrun.
void check_canaries_locked() {
  for (const auto& [b, a] : state().allocs) {
    if (a.kind != MemKind::device) continue;
    const size_t head = std::min<size_t>(static_cast<size_t>(a.base - a.map), kAlign);
    for (const char* p = a.base - head; p < a.base; ++p)
      if (static_cast<unsigned char>(*p) != kCanary) {
        fail_device(cudaErrorIllegalAddress,
                    "device work wrote " + std::to_string(a.base - p) + " bytes before the start of device allocation " +
                        std::to_string(a.size) + " bytes at " + std::to_string(b) + " (cuda:" +
                        std::to_string(a.device) + ")");
        std::memset(const_cast<char*>(p), kCanary, static_cast<size_t>(a.base - p));
        break;
      }
    for (const char* p = a.base + a.size; p < a.base + a.data_bytes; ++p)
      if (static_cast<unsigned char>(*p) != kCanary) {
        fail_device(cudaErrorIllegalAddress,
                    "device work wrote past the end of device allocation of " + std::to_string(a.size) +
                        " bytes (at byte " + std::to_string(p - a.base) + ") on cuda:" + std::to_string(a.device));
        std::memset(a.base + a.size, kCanary, a.data_bytes - a.size);
        break;
      }
  }
}

// ---- the fault handler ----

struct sigaction g_old_segv, g_old_bus;

void write_str(const char* s) {
  ssize_t r = ::write(2, s, std::strlen(s));
  (void)r;
}
void write_num(uintptr_t v, bool hex) {
  char buf[32];
  int n = 0;
  const unsigned radix = hex ? 16 : 10;
  do {
    buf[n++] = "0123456789abcdef"[v % radix];
    v /= radix;
  } while (v && n < 31);
  if (hex) write_str("0x");
  while (n) {
    char c[2] = {buf[--n], 0};
    write_str(c);
  }
}

std::atomic<bool> g_in_handler{false};

void on_fault(int sig, siginfo_t* info, void* uctx) {
  if (g_in_handler.exchange(true)) {  // a fault inside the handler, or the chained handler raised again
    ::signal(sig, SIG_DFL);
    return;
  }
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const size_t n = g_range_count.load(std::memory_order_acquire);
  const Range* hit = nullptr;
  for (size_t i = 0; i < n; ++i)
    if (addr >= g_ranges[i].lo && addr < g_ranges[i].hi) {
      hit = &g_ranges[i];
      break;
    }
  if (hit) {
    write_str("\nmixtape-emu: invalid memory access at ");
    write_num(addr, true);
    switch (hit->kind) {
      case RangeKind::stack_guard:
        write_str(": an emulated GPU thread overflowed its stack");
        break;
      case RangeKind::device_guard:
        write_str(": ");
        write_num(addr - hit->base - hit->size, false);
        write_str(" bytes past the end of a device allocation of ");
        write_num(hit->size, false);
        write_str(" bytes at ");
        write_num(hit->base, true);
        break;
      case RangeKind::freed:
        write_str(": use after free of a device allocation of ");
        write_num(hit->size, false);
        write_str(" bytes at ");
        write_num(hit->base, true);
        break;
      case RangeKind::device_data:
        if (addr < hit->base) {
          write_str(": before the start of a device allocation at ");
          write_num(hit->base, true);
        } else {
          write_str(": host code dereferenced device memory (a device pointer used as a host pointer; offset ");
          write_num(addr - hit->base, false);
          write_str(" of an allocation of ");
          write_num(hit->size, false);
          write_str(" bytes)");
        }
        break;
    }
    write_str(" on cuda:");
    write_num(static_cast<uintptr_t>(hit->device < 0 ? 0 : hit->device), false);
    if (t_fault_context) {
      write_str(", while executing ");
      write_str(t_fault_context);
    }
    write_str("\n");
  }
  // Let the previous handler (a test framework's, say) report too, then the default action terminates.
  const struct sigaction old = sig == SIGBUS ? g_old_bus : g_old_segv;
  ::signal(sig, SIG_DFL);  // the faulting instruction runs again and terminates the process
  if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction && old.sa_sigaction != on_fault) {
    old.sa_sigaction(sig, info, uctx);
  } else if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN && old.sa_handler) {
    old.sa_handler(sig);
  }
  ::signal(sig, SIG_DFL);
}

}  // namespace

void* allocate_device(int device, size_t bytes) {
  install_fault_handler();  // device memory exists from now on: faults on it get named
  State& s = state();
  if (s.used.size() <= static_cast<size_t>(device)) s.used.resize(static_cast<size_t>(device) + 1, 0);
  if (s.capacity == 0) s.capacity = settings().memory_bytes;
  const size_t data = round_up(bytes, kAlign);
  if (data < bytes || data > s.capacity - std::min(s.capacity, s.used[static_cast<size_t>(device)])) return nullptr;
  const size_t pages = round_up(data, page_size());
  const size_t map_bytes = pages + page_size();
  void* m = ::mmap(nullptr, map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  Alloc a;
  a.map = static_cast<char*>(m);
  a.map_bytes = map_bytes;
  a.base = a.map + (pages - data);
  a.size = bytes;
  a.data_bytes = data;
  a.kind = MemKind::device;
  a.device = device;
  ::mprotect(a.map, pages, PROT_READ | PROT_WRITE);
  std::memset(a.base, kPoison, a.size);  // cudaMalloc's memory is uninitialised: code that assumes zeros shows
  fill_canaries(a);
  if (s.access_depth == 0 && settings().protect) protect_locked(a, false);
  s.used[static_cast<size_t>(device)] += data;
  s.allocs[reinterpret_cast<uintptr_t>(a.base)] = a;
  rebuild_ranges_locked();
  return a.base;
}

std::string free_device(void* ptr) {
  State& s = state();
  auto it = s.allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.allocs.end()) {
    const MemInfo m = lookup(ptr);
    if (m.kind == MemKind::none) return "it is not device memory from cudaMalloc";
    return "it points into an allocation, not at its start";
  }
  Alloc& a = it->second;
  if (a.kind == MemKind::freed) return "it was freed already (double free)";
  if (a.kind == MemKind::pinned_host) return "it is pinned host memory (free it with cudaFreeHost)";
  s.used[static_cast<size_t>(a.device)] -= a.data_bytes;
  a.kind = MemKind::freed;
  ::mprotect(a.map, a.map_bytes, PROT_NONE);
  ::madvise(a.map, a.map_bytes, MADV_DONTNEED);
  s.quarantine.push_back(it->first);
  s.quarantine_bytes += a.map_bytes;
  while (s.quarantine_bytes > kQuarantineBytes && !s.quarantine.empty()) {
    auto old = s.allocs.find(s.quarantine.front());
    s.quarantine.pop_front();
    if (old == s.allocs.end()) continue;
    s.quarantine_bytes -= old->second.map_bytes;
    ::munmap(old->second.map, old->second.map_bytes);
    s.allocs.erase(old);
  }
  rebuild_ranges_locked();
  return "";
}

void* allocate_pinned(size_t bytes) {
  const size_t map_bytes = round_up(bytes, page_size());
  void* m = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  Alloc a;
  a.map = a.base = static_cast<char*>(m);
  a.map_bytes = map_bytes;
  a.size = bytes;
  a.data_bytes = map_bytes;
  a.kind = MemKind::pinned_host;
  std::memset(a.base, kPoison, bytes);  // uninitialised, as cudaHostAlloc's
  state().allocs[reinterpret_cast<uintptr_t>(a.base)] = a;
  return a.base;
}

std::string free_pinned(void* ptr) {
  State& s = state();
  auto it = s.allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == s.allocs.end() || it->second.kind != MemKind::pinned_host)
    return lookup(ptr).kind == MemKind::device ? "it is device memory (free it with cudaFree)"
                                               : "it is not pinned memory from cudaHostAlloc/cudaMallocHost";
  ::munmap(it->second.map, it->second.map_bytes);
  s.allocs.erase(it);
  return "";
}

size_t used_bytes(int device) {
  const State& s = state();
  return static_cast<size_t>(device) < s.used.size() ? s.used[static_cast<size_t>(device)] : 0;
}

size_t capacity_bytes(int) {
  State& s = state();
  if (s.capacity == 0) s.capacity = settings().memory_bytes;
  return s.capacity;
}

void set_capacity_bytes(size_t bytes) { state().capacity = bytes; }

size_t live_allocations(int device) {
  size_t n = 0;
  for (const auto& [b, a] : state().allocs) n += a.kind == MemKind::device && a.device == device;
  return n;
}

AccessScope::AccessScope() {
  State& s = state();
  if (s.access_depth++ == 0 && settings().protect)
    for (const auto& [b, a] : s.allocs)
      if (a.kind == MemKind::device) protect_locked(a, true);
}

AccessScope::~AccessScope() {
  State& s = state();
  if (--s.access_depth == 0) {
    check_canaries_locked();
    if (settings().protect)
      for (const auto& [b, a] : s.allocs)
        if (a.kind == MemKind::device) protect_locked(a, false);
  }
}

void register_stack_guard(const void* lo, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  if (g_stack_guards >= kMaxRanges / 2) return;
  // Stack guards live at the front of the table; the allocation ranges after them are rebuilt.
  const uintptr_t l = reinterpret_cast<uintptr_t>(lo);
  g_ranges[g_stack_guards++] = {l, l + bytes, l, bytes, RangeKind::stack_guard, -1};
  rebuild_ranges_locked();
}

void set_fault_context(const char* text) { t_fault_context = text; }

void install_fault_handler() {
  // Checked at every drain: a test framework may have put its own handler over ours since; ours goes back on top
  // and passes the signal on to it.
  for (auto [sig, old] : {std::pair{SIGSEGV, &g_old_segv}, std::pair{SIGBUS, &g_old_bus}}) {
    struct sigaction cur {};
    ::sigaction(sig, nullptr, &cur);
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault) continue;
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, old);
  }
  thread_local bool has_altstack = false;
  if (!has_altstack) {
    has_altstack = true;
    stack_t cur{};
    if (::sigaltstack(nullptr, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
      static thread_local std::vector<char> alt(size_t{64} << 10);
      stack_t st{};
      st.ss_sp = alt.data();
      st.ss_size = alt.size();
      ::sigaltstack(&st, nullptr);
    }
  }
}

}  // namespace mixtape::emu::memory

namespace mixtape::emu {

MemInfo lookup(const void* p) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  const memory::State& s = memory::state();
  const auto key = reinterpret_cast<uintptr_t>(p);
  auto it = s.allocs.upper_bound(key);
  if (it == s.allocs.begin()) return {};
  --it;
  const memory::Alloc& a = it->second;
  const size_t extent = a.kind == MemKind::freed ? a.data_bytes : a.size;
  if (key >= it->first + extent) return {};
  return {a.kind, a.device, a.base, a.size};
}

}  // namespace mixtape::emu
