// GEMM on CUDA through cuBLASLt. The planning (row-major -> column-major swap, layouts, compute type, epilogue
// choice, cache key) is in cuda/gemm_plan.cpp and tested on the CPU; this file only talks to cuBLASLt:
// descriptors, the cached heuristic query, the call on the device's stream with a 32 MiB workspace, and the
// passes of cuda/cuda_gemm_aux.cu where a cuBLASLt epilogue does not apply.
#include <optional>

#include "core/error.h"
#include "core/gemm_settings.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_gemm_aux.h"
#include "cuda/gemm_plan.h"

namespace mixtape::cuda {

namespace {

/// Owns a cublasLtMatmulDesc_t.
struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(cublasComputeType_t compute, cudaDataType_t scale) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, scale));
  }
  ~MatmulDesc() {
    if (desc) (void)cublasLtMatmulDescDestroy(desc);
  }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
  template <class V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& value) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
  }
};

/// Owns a cublasLtMatrixLayout_t built from an LtLayout.
struct MatrixLayout {
  cublasLtMatrixLayout_t layout = nullptr;
  explicit MatrixLayout(const LtLayout& l) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, l.type, l.rows, l.cols, l.ld));
    if (l.batch > 1) {
      const int32_t count = l.batch;
      const int64_t stride = l.stride;
      MIXTAPE_CUBLAS_CHECK(
          cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      MIXTAPE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                            &stride, sizeof(stride)));
    }
  }
  ~MatrixLayout() {
    if (layout) (void)cublasLtMatrixLayoutDestroy(layout);
  }
  MatrixLayout(const MatrixLayout&) = delete;
  MatrixLayout& operator=(const MatrixLayout&) = delete;
};

/// Owns a cublasLtMatmulPreference_t.
struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  Preference() { MIXTAPE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref)); }
  ~Preference() {
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
  }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  template <class V>
  void set(cublasLtMatmulPreferenceAttributes_t attr, const V& value) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
  }
};

/// The best algorithm for the described call, or nullopt when cuBLASLt has none (a query, not cached here).
std::optional<cublasLtMatmulAlgo_t> query_algo(cublasLtHandle_t handle, const MatmulDesc& desc, const MatrixLayout& a,
                                               const MatrixLayout& b, const MatrixLayout& c, const GemmKey& key) {
  Preference pref;
  const uint64_t workspace = kGemmWorkspaceBytes;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace);
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a);
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b);
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c);
  pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, desc.desc, a.layout, b.layout, c.layout,
                                                               c.layout, pref.pref, 1, &result, &found);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || (status == CUBLAS_STATUS_SUCCESS && found == 0)) return std::nullopt;
  if (status != CUBLAS_STATUS_SUCCESS)
    throw_cublas_error("cublasLtMatmulAlgoGetHeuristic", status, __FILE__, __LINE__);
  if (result.state != CUBLAS_STATUS_SUCCESS) return std::nullopt;
  return result.algo;
}

/// The operands of one cuBLASLt call (device pointers; bias and a_sums may be null).
struct GemmPointers {
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;
  const void* bias = nullptr;
  void* a_sums = nullptr;
};

/// Runs `d` on `backend`; false when cuBLASLt has no algorithm even without fused epilogues (nothing was launched).
bool run_gemm(CudaBackend& backend, const GemmDesc& d, const GemmPointers& ptr, Device device) {
  GemmPlanOptions options;
  options.allow_tf32 = mixtape::allow_tf32();
  for (;;) {
    const GemmPlan p = plan_gemm(d, options);
    // The float32 result of a second-pass epilogue (f16/bf16); freed in stream order after the pass.
    const Tensor buffer = p.float_buffer ? Tensor::empty(Shape{d.m, d.n}, DType::f32, device) : Tensor();
    const void* lt_a = ptr.b;  // swapped: cuBLASLt's A is our b, its B is our a
    const void* lt_b = ptr.a;
    void* lt_c = p.float_buffer ? buffer.raw_data() : ptr.out;
    void* lt_bias = p.lt_bias ? const_cast<void*>(ptr.bias) : p.lt_a_sums ? ptr.a_sums : nullptr;
    const GemmKey key = make_key(p, backend.index(), lt_a, lt_b, lt_c, lt_bias);

    MatmulDesc desc(p.compute, p.scale_type);
    desc.set(CUBLASLT_MATMUL_DESC_TRANSA, p.op_a);
    desc.set(CUBLASLT_MATMUL_DESC_TRANSB, p.op_b);
    if (p.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, p.epilogue);
      desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, lt_bias);
    }
    MatrixLayout la(p.a), lb(p.b), lc(p.c);

    std::optional<cublasLtMatmulAlgo_t> algo;
    GemmAlgoCache& cache = gemm_algo_cache();
    if (!cache.find(key, algo)) {
      algo = query_algo(backend.lt_handle(), desc, la, lb, lc, key);
      cache.insert(key, algo);
    }
    // Without an algorithm for a fused epilogue, plan again with the separate pass (remembered per key).
    auto drop_fused = [&] {
      if (p.lt_bias) options.lt_bias = false;
      else if (p.lt_a_sums) options.lt_bias_grad = false;
      else return false;
      return true;
    };
    if (!algo) {
      if (drop_fused()) continue;
      return false;
    }

    void* workspace = backend.workspace(kGemmWorkspaceBytes);
    const cublasStatus_t status =
        cublasLtMatmul(backend.lt_handle(), desc.desc, &p.alpha, lt_a, la.layout, lt_b, lb.layout, &p.beta, lt_c,
                       lc.layout, lt_c, lc.layout, &*algo, workspace, kGemmWorkspaceBytes, backend.stream());
    if (status == CUBLAS_STATUS_NOT_SUPPORTED && (p.lt_bias || p.lt_a_sums)) {
      // The heuristic offered an algorithm the call then refused for this epilogue: never ask again.
      cache.insert(key, std::nullopt);
      drop_fused();
      continue;
    }
    if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error("cublasLtMatmul", status, __FILE__, __LINE__);
    if (p.epilogue_pass)
      launch_gemm_epilogue(d.dtype, static_cast<const float*>(lt_c), ptr.out, ptr.bias, p.pass_beta, p.act, d.m, d.n,
                           backend.stream());
    if (p.sums_pass) launch_op_row_sums(d.dtype, ptr.a, d.trans_a, d.m, d.k, ptr.a_sums, backend.stream());
    return true;
  }
}

}  // namespace

void CudaBackend::gemm(const GemmArgs& g) {
  DeviceGuard guard(index_);
  const GemmDesc d = describe(g);
  GemmPointers ptr;
  ptr.a = g.a.raw_data();
  ptr.b = g.b.raw_data();
  ptr.out = g.out.raw_data();
  if (g.bias.defined()) ptr.bias = g.bias.raw_data();
  if (g.a_sums.defined()) ptr.a_sums = g.a_sums.raw_data();
  if (run_gemm(*this, d, ptr, g.out.device())) return;
  // No strided-batched algorithm (e.g. for a stride-0 operand): one call per batch entry (no epilogues: batch > 1).
  MIXTAPE_CHECK(d.batch > 1, "gemm: cuBLASLt has no algorithm for ",
                describe_key(make_key(plan_gemm(d, {}), index_, ptr.b, ptr.a, ptr.out, nullptr)));
  GemmDesc one = d;
  one.batch = 1;
  one.stride_a = one.stride_b = one.stride_out = 0;
  const size_t bytes = dtype_size(d.dtype);
  for (int64_t e = 0; e < d.batch; ++e) {
    GemmPointers p;
    p.a = static_cast<const char*>(ptr.a) + static_cast<size_t>(e * d.stride_a) * bytes;
    p.b = static_cast<const char*>(ptr.b) + static_cast<size_t>(e * d.stride_b) * bytes;
    p.out = static_cast<char*>(ptr.out) + static_cast<size_t>(e * d.stride_out) * bytes;
    MIXTAPE_CHECK(run_gemm(*this, one, p, g.out.device()), "gemm: cuBLASLt has no algorithm for ",
                  describe_key(make_key(plan_gemm(one, {}), index_, p.b, p.a, p.out, nullptr)));
  }
}

}  // namespace mixtape::cuda
