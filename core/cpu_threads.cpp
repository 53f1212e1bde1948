// The CPU backend's thread count: an atomic override of the default, which is OMP_NUM_THREADS when set (the usual
// way to size a process's threads), else the CPUs this process may run on (its affinity mask: taskset, a
// container's CPU limit), else the hardware threads.
#include "core/cpu_threads.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if MIXTAPE_PARALLEL_OPENMP
#include <omp.h>
#endif

namespace mixtape {

namespace {
constexpr int kMaxThreads = 64;
std::atomic<int> g_threads{0};  // 0: the default

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

int default_threads() {
  static const int n = [] {
    int v = omp_num_threads_value(std::getenv("OMP_NUM_THREADS"));
    if (v <= 0) v = affinity_cpus();
    if (v <= 0) v = static_cast<int>(std::thread::hardware_concurrency());
    return std::clamp(v, 1, kMaxThreads);
  }();
  return n;
}
}  // namespace

int omp_num_threads_value(const char* text) {
  if (!text) return 0;
  int v = 0;
  const char* p = text;
  while (*p == ' ') ++p;
  if (*p < '0' || *p > '9') return 0;
  for (; *p >= '0' && *p <= '9'; ++p) {
    v = v * 10 + (*p - '0');
    if (v > 1 << 20) return 0;
  }
  while (*p == ' ') ++p;
  return *p == '\0' || *p == ',' ? v : 0;  // "4" or "4,2" (the outermost level)
}

int cpu_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_threads();
}

void set_cpu_threads(int n) { g_threads.store(n <= 0 ? 0 : std::min(n, kMaxThreads), std::memory_order_relaxed); }

void parallel_for(int64_t parts, const std::function<void(int64_t)>& fn) {
  if (parts <= 1) {
    if (parts == 1) fn(0);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mu;
  auto guarded = [&](int64_t p) {
    try {
      fn(p);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
    }
  };
#if MIXTAPE_PARALLEL_OPENMP
  // One part per thread of the team (the calling thread is thread 0): the same threads oneDNN's primitives use.
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static, 1)
  for (int64_t p = 0; p < parts; ++p) guarded(p);
#else
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(parts - 1));
  for (int64_t p = 1; p < parts; ++p) workers.emplace_back(guarded, p);
  guarded(0);
  for (auto& t : workers) t.join();
#endif
  if (error) std::rethrow_exception(error);
}

void parallel_range(int64_t count, int64_t cost_per_item, const std::function<void(int64_t, int64_t)>& fn) {
  if (count <= 0) return;
  constexpr int64_t kMinCost = int64_t{1} << 16;
  const int64_t total = count * std::max<int64_t>(cost_per_item, 1);
  const int64_t parts = std::clamp<int64_t>(total / kMinCost, 1, std::min<int64_t>(cpu_threads(), count));
  if (parts == 1) return fn(0, count);
  const int64_t step = (count + parts - 1) / parts;
  parallel_for((count + step - 1) / step, [&](int64_t p) { fn(p * step, std::min(count, (p + 1) * step)); });
}

const char* parallel_runtime() {
#if MIXTAPE_PARALLEL_OPENMP
  return "openmp";
#else
  return "std::thread";
#endif
}

}  // namespace mixtape
