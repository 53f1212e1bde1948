#pragma once
// The CPU backend's oneDNN matrix products (core/cpu_kernels.h says when they run).
#include <string>

#include "core/backend.h"

namespace mixtape::cpu {

/// Runs the product on oneDNN and returns true when the current choice (cpu_kernels()) and oneDNN accept it:
/// f32 or bf16 operands, alpha == 1 whenever there is a bias epilogue, and an optimised oneDNN kernel for its
/// shape. Returns false, having written nothing, otherwise (the caller then runs Eigen). a_sums is not computed
/// here. Primitives are created once per shape, dtype, transposes, epilogue, beta and thread count.
bool onednn_gemm(const GemmArgs& g);

/// Records the implementation that ran the calling thread's last product (see last_cpu_gemm_impl).
void set_last_gemm_impl(const char* impl);

}  // namespace mixtape::cpu
