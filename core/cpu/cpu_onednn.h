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
/// Counts one use of a CPU kernel implementation (cpu_kernel_impl_counts).
void count_impl(const std::string& impl);

/// Convolutions on oneDNN (NCHW tensors, any layout inside): each runs and returns true when the current choice
/// (cpu_kernels()) and oneDNN accept it: f32 or bf16, an optimised (non-reference) oneDNN kernel, and geometry
/// oneDNN can express (no negative right padding). Otherwise they return false having written nothing, and the
/// caller runs im2col + Eigen. Accumulation is float32; each output is rounded once.
bool onednn_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p);
bool onednn_conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p);
/// gw must be defined (gb may be undefined).
bool onednn_conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                                   const Conv2dParams& p);
/// How many times a convolution weight was reordered into oneDNN's layout in this process (once per weight
/// version and layout; the kept copies serve the calls in between).
int64_t onednn_weight_reorders();

}  // namespace mixtape::cpu
