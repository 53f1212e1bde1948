// GEMM micro-benchmark (not a test, not part of the build): GFLOP/s of mixtape::matmul per dtype and shape.
// Build against a build tree, e.g.:
//   g++ -O2 -std=c++20 -I. -Ibuild-perf/generated apps/bench/gemm_bench.cpp build-perf/libmixtape.a -lz -pthread \
//       -o build-perf/gemm_bench && build-perf/gemm_bench
#include <chrono>
#include <ctime>
#include <cstdio>

#include "core/kernels.h"
#include "core/tensor.h"

using namespace mixtape;

int main() {
  const struct { int64_t m, n, k; } shapes[] = {{1024, 1024, 1024}, {128, 1024, 1024}};
  const struct { DType dt; const char* name; } dtypes[] = {{DType::f32, "f32"}, {DType::f16, "f16"}, {DType::bf16, "bf16"}};
  for (const auto& s : shapes) {
    for (const auto& d : dtypes) {
      Tensor a = randn({s.m, s.k}, d.dt), b = randn({s.k, s.n}, d.dt);
      (void)kernels::matmul(a, b);  // warm up (scratch buffers, threads)
      const double flop = 2.0 * static_cast<double>(s.m * s.n * s.k);
      int iters = 0;
      const auto t0 = std::chrono::steady_clock::now();
      const std::clock_t c0 = std::clock();
      double sec = 0;
      do {
        (void)kernels::matmul(a, b);
        ++iters;
        sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } while (sec < 1.0);
      // Per CPU-second too: on a shared, loaded machine the wall-clock rate mostly measures the load.
      const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
      std::printf("%5lldx%5lldx%5lld %-4s %8.1f GFLOP/s wall %8.1f GFLOP per CPU-second\n", static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), d.name, flop * iters / sec * 1e-9,
                  flop * iters / cpu * 1e-9);
    }
  }
}
