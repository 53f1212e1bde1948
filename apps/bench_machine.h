#pragma once
// What `mixtape bench` says about the machine: CPU features, the CPUs it runs on, and the measured float32 FMA
// peak (a register-blocked FMA loop on every thread used), with the bf16 dot-product peak where the CPU has it.
#include <string>

namespace mixtape::app {

/// The CPU features the kernels care about.
struct CpuFeatures {
  std::string model;  ///< brand string ("" when unknown)
  bool avx2 = false, fma = false, f16c = false, avx512f = false, avx512_bf16 = false;
};

/// Features of this CPU (all false off x86).
CpuFeatures cpu_features();

/// Restricts this process (and the threads and child processes it starts afterwards) to `threads` of the CPUs it
/// may use (0: all of them); returns the number of CPUs it runs on. Throws when more are asked for than exist.
int restrict_to_cpus(int threads);

/// Peak arithmetic rates measured with `threads` threads running independent FMA chains for about `seconds`.
struct PeakRates {
  double f32_gflops = 0;   ///< float32 FMA peak (2 flops per multiply-add), widest vectors the CPU has
  int vector_bits = 0;     ///< 512, 256 or 32 (scalar fallback)
  double bf16_gflops = 0;  ///< vdpbf16ps peak (AVX512-BF16 only; 0 when the CPU lacks it)
};

/// Measures the peaks (the machine's load lowers them: it is what the benchmarks get too).
PeakRates measure_peak(int threads, double seconds);

}  // namespace mixtape::app
