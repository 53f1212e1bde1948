#pragma once
// Which implementation runs the CPU backend's matrix products and convolutions: oneDNN (where the build has it and
// oneDNN accepts the op) or Eigen (everywhere; convolutions as im2col + Eigen). Chosen per op at run time:
//   auto    oneDNN where it pays on this CPU: float32 and bfloat16 products when oneDNN runs AVX-512 code here
//           (bfloat16 only with the AVX512_BF16 instructions); Eigen otherwise (on AVX2-only CPUs oneDNN's float32
//           GEMM is no faster than Eigen's, and it refuses bfloat16). Float32 convolutions on oneDNN on every CPU it
//           has a JIT kernel for (its AVX2 convolution beats im2col too), bfloat16 ones with AVX512_BF16. The default.
//   onednn  oneDNN for every float32 and bfloat16 op it accepts with an optimised (non-reference) kernel;
//           Eigen for the rest (float16, float64, and what oneDNN refuses).
//   eigen   Eigen only.
// The environment variable MIXTAPE_CPU_KERNELS=auto|onednn|eigen sets the starting value; set_cpu_kernels
// changes it for the next product. Accumulation is float32 on every path (float64 for f64), and each output is
// rounded once.
#include <string>

namespace mixtape {

enum class CpuKernels { automatic, onednn, eigen };

/// The current choice (MIXTAPE_CPU_KERNELS at first use, else automatic; an unknown value throws mixtape::Error).
CpuKernels cpu_kernels();
/// Sets the choice for the products that follow (thread-safe).
void set_cpu_kernels(CpuKernels k);
/// "auto", "onednn", "eigen".
const char* cpu_kernels_name(CpuKernels k);
/// Parses "auto", "onednn" or "eigen"; throws mixtape::Error naming the accepted values otherwise.
CpuKernels parse_cpu_kernels(const std::string& s);

/// Whether this build has oneDNN (MIXTAPE_ONEDNN).
bool onednn_built();
/// oneDNN's version and the instruction set it runs here ("oneDNN 2.6.3, avx512_core_bf16"), or why it is absent.
std::string onednn_description();
/// The implementation of the last CPU matrix product on the calling thread: oneDNN's own name for it
/// ("brg:avx512_core_bf16", "gemm:jit") or "eigen" (with "+avx2" when the AVX2 build ran); empty before any.
std::string last_cpu_gemm_impl();
/// How many CPU matrix products and oneDNN convolutions each implementation ran since the last reset, in this
/// process ("brg:avx512_core_amx_bf16 x 120, conv2d backward data jit:avx512_core x 32, eigen+avx2 x 4"; empty
/// when none ran). Convolutions on im2col + Eigen count as their matrix products.
std::string cpu_gemm_impl_counts();
/// Forgets the counts of cpu_gemm_impl_counts.
void reset_cpu_gemm_impl_counts();

}  // namespace mixtape
