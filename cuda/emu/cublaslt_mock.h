#pragma once
// Internal to the cuBLASLt mock of the emulation build: cuda/emu/cublaslt_mock.cpp (handles, descriptors,
// attributes), cublaslt_mock_problem.cpp (descriptor validation), cublaslt_mock_matmul.cpp (algorithms, heuristic,
// cublasLtMatmul's pointer checks and queuing), cublaslt_mock_compute.cpp (the computation). Production code never
// includes this; tests may, for the reason of the last rejected call.
#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace mixtape::emu {

/// Why the calling thread's last cuBLASLt call that did not return CUBLAS_STATUS_SUCCESS failed ("" if none yet).
std::string cublaslt_last_error();

namespace lt {

/// Records `why` as the calling thread's last error (and prints it when MIXTAPE_EMU_CUBLASLT_LOG is set); returns
/// `status`.
cublasStatus_t fail(cublasStatus_t status, std::string why);

/// One attribute of a descriptor: its id, its documented size in bytes and its documented default.
struct AttrSpec {
  int32_t id;
  uint8_t size;
  uint64_t initial;
};

/// The attributes of one descriptor, each in an 8-byte slot (every cuBLASLt attribute used here fits).
class Attributes {
 public:
  Attributes(const AttrSpec* specs, size_t count);
  /// cublasLt*SetAttribute: INVALID_VALUE for an unknown attribute, a null buf or a size that is not the documented one.
  cublasStatus_t set(int32_t id, const void* buf, size_t size, const char* call);
  /// cublasLt*GetAttribute, with the documented size query (sizeInBytes == 0).
  cublasStatus_t get(int32_t id, void* buf, size_t size, size_t* written, const char* call) const;
  /// The value of a known attribute as T (T must have the attribute's size).
  template <class T>
  T as(int32_t id) const {
    T v;
    std::memcpy(&v, &slots_[static_cast<size_t>(id)], sizeof v);
    return v;
  }
  /// Stores a value directly (creation parameters).
  template <class T>
  void put(int32_t id, const T& v) {
    slots_[static_cast<size_t>(id)] = 0;
    std::memcpy(&slots_[static_cast<size_t>(id)], &v, sizeof v);
  }
  /// True when attribute `id` still has its documented default.
  bool is_default(int32_t id) const;

 private:
  const AttrSpec* spec(int32_t id) const;
  const AttrSpec* specs_;
  size_t count_;
  uint64_t slots_[40] = {};
};

/// A cuBLASLt handle: the device current at cublasLtCreate.
struct Handle {
  int device = 0;
};
/// A matmul descriptor.
struct MatmulDesc {
  Attributes attrs;
  MatmulDesc();
};
/// A matrix layout descriptor.
struct Layout {
  Attributes attrs;
  Layout();
};
/// A heuristic preference descriptor.
struct Preference {
  Attributes attrs;
  Preference();
};

/// The live object behind an API handle, or null for a destroyed or unknown one (never dereferences it).
Handle* find(cublasLtHandle_t h);
MatmulDesc* find(cublasLtMatmulDesc_t d);
Layout* find(cublasLtMatrixLayout_t l);
Preference* find(cublasLtMatmulPreference_t p);

/// One column-major operand as the computation reads or writes it.
struct Operand {
  const void* ptr = nullptr;
  cudaDataType_t type = CUDA_R_32F;
  int64_t ld = 0;      ///< elements between columns
  int64_t stride = 0;  ///< elements between batch entries (0: every entry uses the same matrix)
};

/// The epilogue's use of the bias pointer.
enum class BiasUse : uint8_t {
  none,    ///< no bias
  add,     ///< BIAS / RELU_BIAS: bias[i] added to row i of D
  grad_a,  ///< BGRADA: bias[i] = sum_k op(A)[i, k]
  grad_b,  ///< BGRADB: bias[j] = sum_k op(B)[k, j]
};

/// Everything the queued computation needs, captured by value at call time (descriptors may be gone by then).
struct GemmJob {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int32_t batch = 1;
  Operand a, b, c, d;  // d.ptr is written (const_cast in the computation)
  bool device_scalars = false;      ///< alpha/beta are read from alpha_ptr/beta_ptr when the job runs
  const float* alpha_ptr = nullptr;
  const float* beta_ptr = nullptr;
  float alpha = 1.0f, beta = 0.0f;  ///< host pointer mode: the values read at call time
  bool relu = false;
  BiasUse bias_use = BiasUse::none;
  void* bias = nullptr;
  cudaDataType_t bias_type = CUDA_R_32F;
  int64_t bias_stride = 0;          ///< elements between the bias vectors of batch entries
  int splits = 1;                   ///< > 1: split-K with float partial sums in `workspace`
  void* workspace = nullptr;
};

/// A matrix layout's attributes, read once.
struct Mat {
  cudaDataType_t type = CUDA_R_32F;
  int32_t order = CUBLASLT_ORDER_COL;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  int32_t batch = 1;
  int64_t stride = 0;
  int64_t plane = 0;
  uint32_t mode = 0;
};

/// A validated matmul: what the heuristic and the call both check.
struct Problem {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale = CUDA_R_32F;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int32_t batch = 1;
  Mat a, b, c, d;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  BiasUse bias_use = BiasUse::none;
  bool relu = false;
  const void* bias = nullptr;
  cudaDataType_t bias_type = CUDA_R_32F;
  int64_t bias_stride = 0;
};

/// Bytes per element of the types the mock computes (0 for any other type).
size_t esize(cudaDataType_t t);
/// "CUDA_R_32F", ... for messages.
std::string type_name(cudaDataType_t t);
/// Validates the descriptors of a call (everything but pointers) into `p`: layouts, types, shapes, transposes,
/// epilogue. `c_broadcast_ok`: C may have leading dimension 0 (out of place). Returns the documented status.
cublasStatus_t build_problem(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                             cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld, bool c_broadcast_ok, Problem& p);

/// Bytes of workspace a split-K run with `splits` parts needs for an m x n result.
size_t splitk_workspace_bytes(int64_t m, int64_t n, int splits);

/// Computes the job (device memory must be accessible: only from queued work).
void run_gemm(const GemmJob& job);

}  // namespace lt
}  // namespace mixtape::emu
