// The CPU backend's thread count: an atomic override of the hardware thread count.
#include "core/cpu_threads.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace mixtape {

namespace {
constexpr int kMaxThreads = 64;
std::atomic<int> g_threads{0};  // 0: the hardware default

int hardware_threads() {
  static const int n = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads);
  return n;
}
}  // namespace

int cpu_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : hardware_threads();
}

void set_cpu_threads(int n) { g_threads.store(n <= 0 ? 0 : std::min(n, kMaxThreads), std::memory_order_relaxed); }

}  // namespace mixtape
