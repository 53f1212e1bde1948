#pragma once
// How many threads the CPU backend splits large kernels (GEMM, convolution) into. The split depends only on the
// shapes and this count, so results are the same bits run to run for a given count.

#include <cstdint>
#include <functional>

namespace mixtape {

/// The number of threads CPU kernels use (1 to 64): the value set by set_cpu_threads, else OMP_NUM_THREADS (its
/// first value), else the CPUs this process may run on (its affinity mask), else the hardware threads.
int cpu_threads();

/// Sets the CPU kernels' thread count (clamped to 1..64); 0 restores the default.
void set_cpu_threads(int n);

/// Runs fn(0), ..., fn(parts - 1) at once, part 0 on the calling thread and each other part on a thread of its own,
/// and returns when all are done (the first exception thrown by a part is rethrown). Builds with oneDNN (GCC) run
/// the parts on OpenMP's threads, the runtime oneDNN's primitives use, so the two share one pool of cpu_threads()
/// threads instead of competing for the cores; other builds start std::threads.
void parallel_for(int64_t parts, const std::function<void(int64_t)>& fn);
/// Runs fn(lo, hi) over contiguous ranges covering [0, count), in parallel (parallel_for) when the work is worth
/// threads: count * cost_per_item (roughly, elements touched) of at least 2^16 per part, at most cpu_threads()
/// parts. For loops whose items are independent (channels, planes): every item is computed the same way whatever
/// the split, so results do not depend on the thread count.
void parallel_range(int64_t count, int64_t cost_per_item, const std::function<void(int64_t, int64_t)>& fn);
/// "openmp" or "std::thread": what parallel_for runs on in this build.
const char* parallel_runtime();

/// The thread count OMP_NUM_THREADS's text gives ("4", or "4,2" for nested levels: 4); 0 when it is absent or
/// not a positive whole number.
int omp_num_threads_value(const char* text);

}  // namespace mixtape
