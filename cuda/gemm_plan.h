#pragma once
// Host-side planning of a cuBLASLt GEMM (no CUDA calls here, so every rule is unit-tested on the CPU in
// tests/test_gemm_plan.cpp):
//  * row-major -> column-major: a row-major (m, n) output is the column-major (n, m) matrix
//    C^T = op(b)^T op(a)^T, so cuBLASLt's A is our b and its B is our a (the operands swap, the transposes stay);
//  * leading dimensions and strided batches (stride 0 = one matrix reused by every batch entry);
//  * compute type (float32 accumulation everywhere; TF32 only when allowed), epilogue selection and its
//    fallbacks, and the key of the per-shape algorithm cache.
//
// Epilogues (GemmArgs::epilogue) after the swap:
//  * bias: cuBLASLt's bias has one element per row of its D = one per column of our output -> CUBLASLT_EPILOGUE_BIAS
//    and RELU_BIAS apply as they are. They compute in float and round once, like the CPU backend.
//  * bias_gelu: cuBLASLt's GELU epilogue is the tanh approximation, while fn::Gelu (core/functors.h) is the exact
//    erf GELU, so it is never used: cuBLASLt writes alpha * op(a) @ op(b) into a float32 buffer (the output itself
//    for f32) and a second pass (cuda_gemm_aux.cu) computes gelu(. + beta * out + bias) with one rounding.
//    The same pass is the fallback when cuBLASLt has no algorithm for BIAS / RELU_BIAS.
//  * a_sums[i] = sum_k op(a)[i, k]: our a is cuBLASLt's B and our m its n (the columns of D), so it is
//    CUBLASLT_EPILOGUE_BGRADB (a reduction over k of B). Used only for alpha == 1 with no bias epilogue (one
//    epilogue per call, and whether BGRAD sees alpha is not documented); otherwise, or when cuBLASLt has no algorithm
//    for it, a separate reduction (cuda_gemm_aux.cu) computes it.
#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/backend.h"

namespace mixtape::cuda {

/// The bytes of workspace every cuBLASLt GEMM may use (taken from CudaBackend::workspace()).
inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

/// A GEMM as plain numbers: GemmArgs without the tensors (what planning needs).
struct GemmDesc {
  DType dtype = DType::f32;  ///< a, b, out (and bias, a_sums)
  bool trans_a = false, trans_b = false;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  int64_t stride_a = 0, stride_b = 0, stride_out = 0;
  double alpha = 1.0, beta = 0.0;
  GemmEpilogue epilogue = GemmEpilogue::none;
  bool a_sums = false;  ///< GemmArgs::a_sums is defined
};

/// The description of `args` (its tensors are not touched).
GemmDesc describe(const GemmArgs& args);

/// Which fused cuBLASLt features planning may use (turned off one by one when cuBLASLt has no algorithm).
struct GemmPlanOptions {
  bool allow_tf32 = false;     ///< f32 may run as TF32 (core/gemm_settings.h)
  bool lt_bias = true;         ///< BIAS / RELU_BIAS epilogues
  bool lt_bias_grad = true;    ///< BGRADB for a_sums
};

/// One column-major cuBLASLt matrix layout.
struct LtLayout {
  cudaDataType_t type = CUDA_R_32F;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;          ///< leading dimension (elements between columns)
  int32_t batch = 1;       ///< CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT
  int64_t stride = 0;      ///< CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (elements; 0 = reused)
  bool operator==(const LtLayout&) const = default;
};

/// The activation of the second pass (cuda_gemm_aux.cu).
enum class EpilogueAct : uint8_t { identity, relu, gelu };

/// How one GemmDesc runs: a cuBLASLt call on swapped operands plus at most two small passes.
struct GemmPlan {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale_type = CUDA_R_32F;  ///< alpha and beta are floats
  cublasOperation_t op_a = CUBLAS_OP_N;    ///< of cuBLASLt's A = our b
  cublasOperation_t op_b = CUBLAS_OP_N;    ///< of cuBLASLt's B = our a
  int64_t m = 0, n = 0, k = 0;             ///< cuBLASLt's: m = our n, n = our m
  LtLayout a, b, c;                        ///< A (our b), B (our a), C = D (our out, or a float32 buffer)
  float alpha = 1.0f, beta = 0.0f;         ///< what cuBLASLt gets
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  bool lt_bias = false;        ///< cuBLASLt's bias pointer is GemmArgs::bias
  bool lt_a_sums = false;      ///< cuBLASLt's bias pointer receives GemmArgs::a_sums (BGRADB)
  /// cuBLASLt writes a float32 (m, n) buffer instead of out (f16/bf16 with a second pass).
  bool float_buffer = false;
  /// Second pass: out = act(d + pass_beta * out + bias) rounded once, d = cuBLASLt's result (the buffer or out).
  bool epilogue_pass = false;
  EpilogueAct act = EpilogueAct::identity;
  float pass_beta = 0.0f;
  bool sums_pass = false;      ///< a_sums by a separate reduction
};

/// cuBLASLt's element type of `dtype` (f32, f16, bf16); f64 and the integer dtypes throw (the CUDA backend computes
/// in f32/f16/bf16 only; f64 is CPU-only).
cudaDataType_t lt_data_type(DType dtype);
/// The plan of `desc` under `options`. Throws mixtape::Error for f64 or sizes cuBLASLt cannot describe.
GemmPlan plan_gemm(const GemmDesc& desc, const GemmPlanOptions& options);

/// The largest power of two (at most 256) dividing `address` (256 for null): the pointer alignment of the cache key.
uint32_t pointer_alignment(const void* address);

/// The key of the algorithm cache: everything cublasLtMatmulAlgoGetHeuristic sees.
struct GemmKey {
  int device = 0;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cublasOperation_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;
  int64_t m = 0, n = 0, k = 0;
  LtLayout a, b, c;  ///< types, sizes, leading dimensions, batch counts and strides
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  uint32_t align_a = 0, align_b = 0, align_c = 0, align_bias = 0;  ///< bytes (cuBLASLt's A, B, C/D, bias)
  bool operator==(const GemmKey&) const = default;
};

/// The key of `plan` on `device` with cuBLASLt's A, B, C/D and bias pointers (bias may be null).
GemmKey make_key(const GemmPlan& plan, int device, const void* a, const void* b, const void* c, const void* bias);
/// A hash of every field of the key.
size_t hash_key(const GemmKey& key);
/// "f16 NT m=... n=... k=... batch=... epilogue=..." for messages.
std::string describe_key(const GemmKey& key);

/// Algorithms chosen by cublasLtMatmulAlgoGetHeuristic, per key (thread-safe). A key whose heuristic found
/// nothing is remembered too, so a fallback plan does not query again.
class GemmAlgoCache {
 public:
  /// The cached answer: an algorithm, or nullopt when cuBLASLt had none. Absent keys return false.
  bool find(const GemmKey& key, std::optional<cublasLtMatmulAlgo_t>& algo) const;
  /// Records the heuristic's answer for `key` and counts one query.
  void insert(const GemmKey& key, const std::optional<cublasLtMatmulAlgo_t>& algo);
  /// Number of keys cached.
  size_t size() const;
  /// Number of heuristic queries recorded (insert calls) since construction or clear().
  uint64_t queries() const;
  /// Forgets every entry and zeroes the query count.
  void clear();

 private:
  struct Hash {
    size_t operator()(const GemmKey& k) const { return hash_key(k); }
  };
  mutable std::mutex mu_;
  std::unordered_map<GemmKey, std::optional<cublasLtMatmulAlgo_t>, Hash> map_;
  uint64_t queries_ = 0;
};

/// The process-wide cache used by CudaBackend::gemm (its queries() is what tests count).
GemmAlgoCache& gemm_algo_cache();

}  // namespace mixtape::cuda
