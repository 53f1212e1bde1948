#pragma once
// Process-wide GEMM precision settings shared by every backend (cuBLASLt GEMM, cuDNN convolution).
//
// TF32: on Ampere and newer GPUs, float32 matrix products can run on tensor cores with TensorFloat-32 inputs
// (a 10-bit mantissa, float32 accumulation): several times faster, but inputs lose 13 bits of precision. It is
// OFF by default, so float32 means float32 (as PyTorch's torch.backends.cuda.matmul.allow_tf32 = False); turn it
// on with set_allow_tf32(true) when the speed is worth it. The CPU backend always computes in full float32.
namespace mixtape {

/// Whether float32 GEMMs and convolutions on CUDA may use TF32 tensor cores (default false).
bool allow_tf32();
/// Allows (true) or forbids (false) TF32 for float32 GEMMs and convolutions on CUDA; thread-safe, takes effect
/// for the next product launched.
void set_allow_tf32(bool allow);

}  // namespace mixtape
