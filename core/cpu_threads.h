#pragma once
// How many threads the CPU backend splits large kernels (GEMM, convolution) into. The split depends only on the
// shapes and this count, so results are the same bits run to run for a given count.

namespace mixtape {

/// The number of threads CPU kernels use: the value set by set_cpu_threads, else the hardware threads (1 to 64).
int cpu_threads();

/// Sets the CPU kernels' thread count (clamped to 1..64); 0 restores the default (the hardware threads).
void set_cpu_threads(int n);

}  // namespace mixtape
