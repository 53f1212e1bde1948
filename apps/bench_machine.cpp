// CPU features, CPU affinity and the measured FMA peak for `mixtape bench`. The FMA kernels are compiled for their
// instruction sets only (target attributes) and entered only when the CPU reports those features.
#include "apps/bench_machine.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/cpu/cpu_simd.h"
#include "core/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define MIXTAPE_BENCH_X86 1
#endif

namespace mixtape::app {

namespace {

using Clock = std::chrono::steady_clock;

#define MIXTAPE_REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define MIXTAPE_REP16(X) MIXTAPE_REP12(X) X(12) X(13) X(14) X(15)

#if MIXTAPE_BENCH_X86
/// 12 independent chains of 8-wide FMAs (enough to cover FMA latency x 2 ports): 192 flops per iteration.
__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters) {
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-4f);
#define MIXTAPE_DECL(i) __m256 c##i = _mm256_set1_ps(0.01f * (i));
  MIXTAPE_REP12(MIXTAPE_DECL)
#undef MIXTAPE_DECL
  for (int64_t it = 0; it < iters; ++it) {
#define MIXTAPE_STEP(i) c##i = _mm256_fmadd_ps(c##i, a, b);
    MIXTAPE_REP12(MIXTAPE_STEP)
#undef MIXTAPE_STEP
  }
  __m256 s = _mm256_setzero_ps();
#define MIXTAPE_SUM(i) s = _mm256_add_ps(s, c##i);
  MIXTAPE_REP12(MIXTAPE_SUM)
#undef MIXTAPE_SUM
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}

/// 16 independent chains of 16-wide FMAs: 512 flops per iteration.
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters) {
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-4f);
#define MIXTAPE_DECL(i) __m512 c##i = _mm512_set1_ps(0.01f * (i));
  MIXTAPE_REP16(MIXTAPE_DECL)
#undef MIXTAPE_DECL
  for (int64_t it = 0; it < iters; ++it) {
#define MIXTAPE_STEP(i) c##i = _mm512_fmadd_ps(c##i, a, b);
    MIXTAPE_REP16(MIXTAPE_STEP)
#undef MIXTAPE_STEP
  }
  __m512 s = _mm512_setzero_ps();
#define MIXTAPE_SUM(i) s = _mm512_add_ps(s, c##i);
  MIXTAPE_REP16(MIXTAPE_SUM)
#undef MIXTAPE_SUM
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0] + out[15];
}

/// 16 independent chains of vdpbf16ps (16 lanes x 2 bf16 products): 1024 flops per iteration.
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_chains(int64_t iters) {
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // pairs of bf16 1.0
#define MIXTAPE_DECL(i) __m512 c##i = _mm512_set1_ps(0.01f * (i));
  MIXTAPE_REP16(MIXTAPE_DECL)
#undef MIXTAPE_DECL
  for (int64_t it = 0; it < iters; ++it) {
#define MIXTAPE_STEP(i) c##i = _mm512_dpbf16_ps(c##i, a, a);
    MIXTAPE_REP16(MIXTAPE_STEP)
#undef MIXTAPE_STEP
  }
  __m512 s = _mm512_setzero_ps();
#define MIXTAPE_SUM(i) s = _mm512_add_ps(s, c##i);
  MIXTAPE_REP16(MIXTAPE_SUM)
#undef MIXTAPE_SUM
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0] + out[15];
}
#endif

/// 8 scalar chains: the portable fallback (2 flops per multiply-add, 16 per iteration).
float fma_chains_scalar(int64_t iters) {
  float c[8];
  for (int i = 0; i < 8; ++i) c[i] = 0.01f * static_cast<float>(i);
  for (int64_t it = 0; it < iters; ++it)
    for (float& v : c) v = v * 0.9999f + 1e-4f;
  float s = 0;
  for (float v : c) s += v;
  return s;
}

/// GFLOP/s of `kernel` (flops_per_iter per iteration) on `threads` threads started together, about `seconds` long.
double measure_rate(float (*kernel)(int64_t), double flops_per_iter, int threads, double seconds) {
  int64_t iters = 1 << 12;
  double dt = 0;
  for (;;) {  // calibrate on one thread
    const auto t0 = Clock::now();
    volatile float sink = kernel(iters);
    (void)sink;
    dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > 0.01 || iters > (int64_t{1} << 40)) break;
    iters *= 4;
  }
  iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * seconds / std::max(dt, 1e-9)));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<float> sink{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      sink.store(kernel(iters));
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = Clock::now();
  go.store(true);
  for (auto& w : workers) w.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  return flops_per_iter * static_cast<double>(iters) * threads / wall * 1e-9;
}

/// The best of two measurements (a loaded machine only ever lowers a peak).
double best_rate(float (*kernel)(int64_t), double flops_per_iter, int threads, double seconds) {
  return std::max(measure_rate(kernel, flops_per_iter, threads, seconds / 2),
                  measure_rate(kernel, flops_per_iter, threads, seconds / 2));
}

}  // namespace

CpuFeatures cpu_features() {
  CpuFeatures f;
#if MIXTAPE_BENCH_X86
  unsigned regs[12] = {};
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000u, nullptr)) >= 0x80000004u) {  // int in clang's cpuid.h
    for (unsigned i = 0; i < 3; ++i)
      __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    std::string s(reinterpret_cast<const char*>(regs), sizeof regs);
    s = s.c_str();  // stop at the first NUL
    const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
    f.model = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  }
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = cpu::cpu_has_f16c();  // clang has no __builtin_cpu_supports("f16c")
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  return f;
}

int restrict_to_cpus(int threads) {
  MIXTAPE_CHECK(threads >= 0, "--threads must be 0 (all CPUs) or positive, got ", threads);
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) {
    MIXTAPE_CHECK(threads == 0 || threads <= static_cast<int>(std::thread::hardware_concurrency()), "--threads ",
                  threads, ": this machine has ", std::thread::hardware_concurrency(), " hardware threads");
    return threads ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  const int available = CPU_COUNT(&mask);
  if (threads == 0 || threads == available) return available;
  MIXTAPE_CHECK(threads <= available, "--threads ", threads, ": this process may use only ", available, " CPU(s)");
  cpu_set_t keep;
  CPU_ZERO(&keep);
  for (int cpu = 0, taken = 0; cpu < CPU_SETSIZE && taken < threads; ++cpu) {
    if (CPU_ISSET(cpu, &mask)) {
      CPU_SET(cpu, &keep);
      ++taken;
    }
  }
  MIXTAPE_CHECK(sched_setaffinity(0, sizeof keep, &keep) == 0, "--threads ", threads,
                ": sched_setaffinity failed to restrict the process to ", threads, " CPU(s)");
  return threads;
}

PeakRates measure_peak(int threads, double seconds) {
  PeakRates p;
  const CpuFeatures f = cpu_features();
#if MIXTAPE_BENCH_X86
  if (f.avx512f) {
    p.vector_bits = 512;
    p.f32_gflops = best_rate(fma_chains_avx512, 16 * 16 * 2, threads, seconds);
    if (f.avx512_bf16) p.bf16_gflops = best_rate(dpbf16_chains, 16 * 16 * 4, threads, seconds);
    return p;
  }
  if (f.avx2 && f.fma) {
    p.vector_bits = 256;
    p.f32_gflops = best_rate(fma_chains_avx2, 12 * 8 * 2, threads, seconds);
    return p;
  }
#endif
  p.vector_bits = 32;
  p.f32_gflops = best_rate(fma_chains_scalar, 8 * 2, threads, seconds);
  return p;
}

}  // namespace mixtape::app
