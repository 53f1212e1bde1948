// cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul of the cuBLASLt mock (see cuda/emu/cublaslt_mock.cpp for the
// honesty note): the mock's two algorithms, the call-time checks of every pointer, and the queued computation
// (cuda/emu/cublaslt_mock_compute.cpp). The descriptors are validated in cuda/emu/cublaslt_mock_problem.cpp.
//
// Sources cited below: [H] = the comments of /usr/local/cuda/include/cublasLt.h (cuBLAS 13.1); [G] = the cuBLAS
// guide, cuBLASLt API section (docs.nvidia.com/cuda/cublas, the 13.x text with CUBLAS_COMPUTE_32F_EMULATED_16BFX9,
// read from a copy of its cublasLtMatmul, cublasLtCreate/Destroy and heuristic sections); [N] = NVIDIA's nvmath-python
// (nvmath/linalg/advanced/matmulmod.py, nvmath/linalg/_internal/epilog_protocol.py). "Mock's choice" marks a
// rule the documentation does not state, chosen stricter than a real GPU may be.
#include <cublasLt.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/emu/cublaslt_mock.h"
#include "cuda/emu/runtime.h"

namespace mixtape::emu::lt {

namespace {

constexpr cublasStatus_t kInvalid = CUBLAS_STATUS_INVALID_VALUE;
constexpr cublasStatus_t kUnsupported = CUBLAS_STATUS_NOT_SUPPORTED;

std::string s(int64_t v) { return std::to_string(v); }

// ---- the mock's algorithms ------------------------------------------------------------------------------------

constexpr uint64_t kMagic = 0x4d584c54414c474full;  // "MXLTALGO"
constexpr uint64_t kAlgoPlain = 1;   ///< no workspace; operands aligned to their element size
constexpr uint64_t kAlgoSplitK = 2;  ///< split-K through a float workspace; 16-byte aligned operands
constexpr int64_t kSplitKMinK = 512;
constexpr size_t kSplitKAlign = 16;
constexpr size_t kWorkspaceAlign = 256;  // [G] cublasLtMatmul, workspace

/// An algorithm as the heuristic returns it.
struct Candidate {
  uint64_t id = kAlgoPlain;
  int splits = 1;
  size_t workspace = 0;
};

/// Mixes v into the hash h.
uint64_t mix(uint64_t h, uint64_t v) {
  return (h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2))) * 0xff51afd7ed558ccdull;
}

/// What an algorithm was chosen for: compute/scale/operand types and epilogue (an algo from another problem kind
/// is rejected, as [H] cublasLtMatmulAlgoCheck: "INVALID_VALUE if matrix layout descriptors or operation
/// descriptor don't match algo descriptor").
uint64_t signature(const Problem& p) {
  uint64_t h = 0;
  for (uint64_t v : {uint64_t(p.compute), uint64_t(p.scale), uint64_t(p.a.type), uint64_t(p.c.type),
                     uint64_t(p.epilogue)})
    h = mix(h, v);
  return h;
}

cublasLtMatmulAlgo_t encode(const Candidate& c, const Problem& p) {
  cublasLtMatmulAlgo_t a{};
  a.data[0] = kMagic;
  a.data[1] = c.id;
  a.data[2] = static_cast<uint64_t>(c.splits);
  a.data[3] = signature(p);
  for (int i = 0; i < 7; ++i) a.data[7] = mix(a.data[7], a.data[i]);
  return a;
}

/// The candidate of an algo from the heuristic; INVALID_VALUE for a garbage, zeroed or foreign one ([H]
/// cublasLtMatmulAlgoInit: INVALID_VALUE "if algoId is outside of recognized range").
cublasStatus_t decode(const cublasLtMatmulAlgo_t& a, const Problem& p, Candidate& c) {
  uint64_t check = 0;
  for (int i = 0; i < 7; ++i) check = mix(check, a.data[i]);
  const bool ok = a.data[0] == kMagic && a.data[7] == check &&
                  (a.data[1] == kAlgoPlain || (a.data[1] == kAlgoSplitK && a.data[2] >= 2 && a.data[2] <= 64));
  if (!ok) return fail(kInvalid, "algo is not one cublasLtMatmulAlgoGetHeuristic returned (garbage or zeroed)");
  if (a.data[3] != signature(p))
    return fail(kInvalid, "algo was chosen for other types, compute type or epilogue than this call's");
  c.id = a.data[1];
  c.splits = static_cast<int>(a.data[2]);
  c.workspace = c.id == kAlgoSplitK ? splitk_workspace_bytes(p.m, p.n, c.splits) : 0;
  return CUBLAS_STATUS_SUCCESS;
}

/// Parts of a split-K run: k / 256, between 2 and 4.
int splits_for(int64_t k) { return static_cast<int>(std::clamp<int64_t>(k / 256, 2, 4)); }

/// Whether every leading dimension and batch stride is a multiple of 16 bytes (split-K's vector accesses).
bool strides_aligned(const Problem& p) {
  for (const Mat* x : {&p.a, &p.b, &p.c, &p.d}) {
    const int64_t e = static_cast<int64_t>(esize(x->type));
    if ((x->ld * e) % kSplitKAlign || (p.batch > 1 && (x->stride * e) % kSplitKAlign)) return false;
  }
  return true;
}

/// The algorithms the preference admits, best first: split-K when its workspace fits and k is large, then plain.
std::vector<Candidate> candidates(const Problem& p, const Preference& pref) {
  const auto align = [&](cublasLtMatmulPreferenceAttributes_t attr) {
    return pref.attrs.as<uint32_t>(attr);
  };
  // [H] MIN_ALIGNMENT_*: "Selecting a smaller value will exclude algorithms that can not work with matrix A that is
  // not as strictly aligned as they need." [H] BIAS_POINTER: the heuristic "depend[s] on its value to determine
  // expected pointer alignment" (a null bias pointer is not held against any algorithm here).
  const auto admits = [&](size_t need_a, size_t need_b, size_t need_c, size_t need_d, size_t need_bias) {
    const auto ok = [](uint32_t have, size_t need) { return have != 0 && have % need == 0; };
    const uintptr_t bias = reinterpret_cast<uintptr_t>(p.bias);
    return ok(align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES), need_a) &&
           ok(align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES), need_b) &&
           ok(align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES), need_c) &&
           ok(align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES), need_d) &&
           (p.bias_use == BiasUse::none || bias % need_bias == 0);
  };
  std::vector<Candidate> out;
  const uint64_t max_ws = pref.attrs.as<uint64_t>(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
  const uint32_t schemes = pref.attrs.as<uint32_t>(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK);
  Candidate split{kAlgoSplitK, splits_for(p.k), splitk_workspace_bytes(p.m, p.n, splits_for(p.k))};
  // [H] MAX_WORKSPACE_BYTES "Maximum allowed workspace size"; REDUCTION_SCHEME_MASK filters the reduction scheme
  // (split-K keeps its partial sums in the compute type: CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE).
  if (p.k >= kSplitKMinK && split.workspace <= max_ws && (schemes & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE) &&
      strides_aligned(p) && admits(kSplitKAlign, kSplitKAlign, kSplitKAlign, kSplitKAlign, kSplitKAlign))
    out.push_back(split);
  if (admits(esize(p.a.type), esize(p.b.type), esize(p.c.type), esize(p.d.type), esize(p.bias_type)))
    out.push_back(Candidate{});
  // [H] MAX_WAVES_COUNT: a non-zero value excludes algorithms reporting more waves (the mock reports 1.0).
  const float waves = pref.attrs.as<float>(CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT);
  if (waves > 0.0f && waves < 1.0f) out.clear();
  // [H] IMPL_MASK filters by implementation flags: the mock's algorithms are FMA with float accumulators.
  const uint64_t input = p.compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_TF32
                         : p.a.type == CUDA_R_16F                 ? CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16F
                         : p.a.type == CUDA_R_16BF                ? CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16BF
                                                                  : CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_32F;
  const uint64_t flags = CUBLASLT_NUMERICAL_IMPL_FLAGS_FMA | CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_32F | input;
  if ((pref.attrs.as<uint64_t>(CUBLASLT_MATMUL_PREF_IMPL_MASK) & flags) != flags) out.clear();
  return out;
}

// ---- call-time checks of cublasLtMatmul -----------------------------------------------------------------------

/// A byte range an operation touches.
struct Span {
  const char* what;
  const char* lo;
  size_t bytes;
  bool written;
  bool pinned_ok = false;  ///< device-accessible pinned host memory is acceptable (alpha/beta in device mode)
};

/// Bytes a layout covers from its pointer: the last element of the last batch entry, plus one.
size_t span_bytes(const Mat& x, int32_t batch) {
  const __int128 last = static_cast<__int128>(batch - 1) * x.stride +
                        static_cast<__int128>(static_cast<int64_t>(x.cols) - 1) * x.ld + static_cast<int64_t>(x.rows);
  const __int128 bytes = last * static_cast<__int128>(esize(x.type));
  return bytes > (__int128{1} << 50) ? SIZE_MAX : static_cast<size_t>(bytes);
}

/// Each device pointer against the allocations of `device` over the exact bytes the call touches, then overlaps.
cublasStatus_t check_spans(const std::vector<Span>& spans, int device) {
  for (const Span& sp : spans) {
    // [H] cublasLtMatmul's pointers are device memory: a host, freed, short or foreign pointer is invalid (mock's
    // choice: pinned host memory is refused too, as the backend must never hand it to cuBLASLt).
    const std::string err = check_device_range(sp.lo, sp.bytes, device, sp.what, sp.pinned_ok);
    if (sp.bytes == SIZE_MAX || !err.empty())
      return fail(kInvalid, "cublasLtMatmul: " + (err.empty() ? std::string(sp.what) + " spans too many bytes" : err));
  }
  // Mock's choice: an output may not overlap an input or another output (the one exception, C == D with the same
  // layout, is left out of the list by the caller).
  for (size_t i = 0; i < spans.size(); ++i)
    for (size_t j = i + 1; j < spans.size(); ++j) {
      const Span &x = spans[i], &y = spans[j];
      const bool overlap = x.lo < y.lo + y.bytes && y.lo < x.lo + x.bytes;
      if ((x.written || y.written) && overlap)
        return fail(kInvalid, std::string("cublasLtMatmul: ") + x.what + " and " + y.what + " overlap");
    }
  return CUBLAS_STATUS_SUCCESS;
}

/// The pointers' alignment against what the chosen algorithm needs.
cublasStatus_t check_alignment(const Problem& p, const Candidate& c, const void* const ptrs[4], const void* bias) {
  const char* names[4] = {"A", "B", "C", "D"};
  const Mat* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  const bool split = c.id == kAlgoSplitK;
  // [H] cublasLtMatmulAlgoCheck: "SUCCESS doesn't fully guarantee algo will run (will fail if e.g. buffers are not
  // correctly aligned)". Mock's choice of status: INVALID_VALUE, a conflict with the configured algo like [H]'s
  // workspace example.
  for (int i = 0; i < 4; ++i) {
    const size_t need = split ? kSplitKAlign : esize(mats[i]->type);
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % need)
      return fail(kInvalid,
                  std::string(names[i]) + " is not " + std::to_string(need) + "-byte aligned as the algo needs");
  }
  if (split && !strides_aligned(p)) return fail(kInvalid, "split-K algo needs 16-byte multiples of ld and batch strides");
  const size_t need_bias = split ? kSplitKAlign : esize(p.bias_type);
  if (p.bias_use != BiasUse::none && reinterpret_cast<uintptr_t>(bias) % need_bias)
    return fail(kInvalid, "bias is not " + std::to_string(need_bias) + "-byte aligned as the algo needs");
  return CUBLAS_STATUS_SUCCESS;
}

/// alpha and beta: read now in host pointer mode; checked as device memory in device pointer mode.
cublasStatus_t read_scalars(const Problem& p, const void* alpha, const void* beta, int device, GemmJob& job) {
  if (!alpha || !beta) return fail(kInvalid, "alpha or beta is null");
  if (p.pointer_mode == CUBLASLT_POINTER_MODE_DEVICE) {
    for (const void* x : {alpha, beta}) {
      const std::string err = check_device_range(x, sizeof(float), device, x == alpha ? "alpha" : "beta", true);
      if (!err.empty()) return fail(kInvalid, "CUBLASLT_POINTER_MODE_DEVICE: " + err);
    }
    job.device_scalars = true;
    job.alpha_ptr = static_cast<const float*>(alpha);
    job.beta_ptr = static_cast<const float*>(beta);
    return CUBLAS_STATUS_SUCCESS;
  }
  for (const void* x : {alpha, beta}) {
    const MemKind kind = lookup(x).kind;
    if (kind == MemKind::device || kind == MemKind::freed)
      return fail(kInvalid, std::string(x == alpha ? "alpha" : "beta") +
                                " points to device memory but the pointer mode is CUBLASLT_POINTER_MODE_HOST");
  }
  job.alpha = *static_cast<const float*>(alpha);  // scale type CUDA_R_32F (check_types)
  job.beta = *static_cast<const float*>(beta);
  return CUBLAS_STATUS_SUCCESS;
}

/// The handle, the stream and the current device agree.
cublasStatus_t check_device(const Handle* h, cudaStream_t stream) {
  const int sd = stream_device(stream);
  if (sd < 0) return fail(kInvalid, "cublasLtMatmul: stream is not a live stream");
  if (sd != h->device)
    return fail(kInvalid, "cublasLtMatmul: the stream belongs to device " + s(sd) + " but the handle to device " +
                              s(h->device));
  // [G] cublasLtCreate: the context is tied to the current device; one handle per device.
  if (current_device() != h->device)
    return fail(kInvalid, "cublasLtMatmul: the current device is " + s(current_device()) + ", the handle's " +
                              s(h->device));
  return CUBLAS_STATUS_SUCCESS;
}

/// The byte ranges of one call (C is left out when it is D with D's layout: in place).
std::vector<Span> spans_of(const Problem& p, const void* const ptrs[4], const void* bias) {
  std::vector<Span> out;
  const char* names[4] = {"matrix A", "matrix B", "matrix C", "matrix D"};
  const Mat* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  const bool in_place = ptrs[2] == ptrs[3];
  for (int i = 0; i < 4; ++i) {
    if (i == 2 && in_place) continue;
    out.push_back({names[i], static_cast<const char*>(ptrs[i]), span_bytes(*mats[i], p.batch), i == 3});
  }
  if (p.bias_use != BiasUse::none) {
    const int64_t len = p.bias_use == BiasUse::grad_b ? p.n : p.m;
    const size_t bytes = static_cast<size_t>((p.batch - 1) * p.bias_stride + len) * esize(p.bias_type);
    out.push_back({"bias vector", static_cast<const char*>(bias), bytes, p.bias_use != BiasUse::add});
  }
  return out;
}

/// Completes the job of a validated call (its scalars are already in `j`).
void make_job(const Problem& p, const void* const ptrs[4], const Candidate& c, void* workspace, GemmJob& j) {
  j.compute = p.compute;
  j.trans_a = p.trans_a;
  j.trans_b = p.trans_b;
  j.m = p.m, j.n = p.n, j.k = p.k;
  j.batch = p.batch;
  Operand* ops[4] = {&j.a, &j.b, &j.c, &j.d};
  const Mat* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  for (int i = 0; i < 4; ++i) *ops[i] = Operand{ptrs[i], mats[i]->type, mats[i]->ld, mats[i]->stride};
  j.relu = p.relu;
  j.bias_use = p.bias_use;
  j.bias = const_cast<void*>(p.bias);
  j.bias_type = p.bias_type;
  j.bias_stride = p.bias_stride;
  j.splits = c.splits;
  j.workspace = workspace;
}

/// Queues the job; the queued work re-checks every range first (memory may have been freed since the call).
cublasStatus_t enqueue_job(const GemmJob& job, std::vector<Span> spans, int device, cudaStream_t stream) {
  auto work = [job, spans = std::move(spans), device] {
    for (const Span& sp : spans) {
      const std::string err = check_device_range(sp.lo, sp.bytes, device, sp.what, sp.pinned_ok);
      if (!err.empty()) return fail_device(cudaErrorIllegalAddress, "cublasLtMatmul (queued): " + err);
    }
    run_gemm(job);
  };
  const cudaError_t err = enqueue(stream, "cublasLtMatmul", std::move(work));
  // [H] cublasLtMatmul: EXECUTION_FAILED "if cuda reported execution error from the device".
  if (err != cudaSuccess) return fail(CUBLAS_STATUS_EXECUTION_FAILED, "cublasLtMatmul: the device reports an error");
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace mixtape::emu::lt

using namespace mixtape::emu;
using namespace mixtape::emu::lt;

extern "C" {

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                                              cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld,
                                              cublasLtMatmulPreference_t preference, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
  if (returned) *returned = 0;
  if (!find(handle)) return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtMatmulAlgoGetHeuristic: not a live handle");
  // [H]: INVALID_VALUE "if requestedAlgoCount is less or equal to zero".
  if (requested <= 0) return fail(kInvalid, "cublasLtMatmulAlgoGetHeuristic: requestedAlgoCount <= 0");
  if (!results || !returned) return fail(kInvalid, "cublasLtMatmulAlgoGetHeuristic: null results or count");
  const Preference* pref = find(preference);
  if (!pref) return fail(kInvalid, "cublasLtMatmulAlgoGetHeuristic: preference is not a live preference");
  // The mock implements the best-fit search only (LIMITED_BY_ALGO_ID needs cublasLtMatmulAlgoInit).
  if (pref->attrs.as<uint32_t>(CUBLASLT_MATMUL_PREF_SEARCH_MODE) != CUBLASLT_SEARCH_BEST_FIT)
    return fail(kUnsupported, "cublasLtMatmulAlgoGetHeuristic: only CUBLASLT_SEARCH_BEST_FIT is modelled");
  Problem p;
  // The heuristic sees no pointers: a C of leading dimension 0 is accepted, cublasLtMatmul rejects it in place.
  if (const cublasStatus_t st = build_problem(desc, la, lb, lc, ld, true, p)) return st;
  const std::vector<Candidate> found = candidates(p, *pref);
  // [H]: NOT_SUPPORTED "if no heuristic function available for current configuration" (also when no algorithm
  // meets the preference's workspace and alignment limits).
  if (found.empty())
    return fail(kUnsupported, "cublasLtMatmulAlgoGetHeuristic: no algorithm meets the preference (workspace " +
                                  std::to_string(pref->attrs.as<uint64_t>(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)) +
                                  " bytes, alignments, reduction schemes) for this problem");
  const int count = std::min<int>(requested, static_cast<int>(found.size()));
  for (int i = 0; i < count; ++i) {
    results[i] = cublasLtMatmulHeuristicResult_t{};
    results[i].algo = encode(found[static_cast<size_t>(i)], p);
    results[i].workspaceSize = found[static_cast<size_t>(i)].workspace;
    results[i].state = CUBLAS_STATUS_SUCCESS;
    results[i].wavesCount = 1.0f;
  }
  *returned = count;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t la, const void* B, cublasLtMatrixLayout_t lb, const void* beta,
                              const void* C, cublasLtMatrixLayout_t lc, void* D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  const Handle* h = find(handle);
  // [H]: NOT_INITIALIZED "if cuBLASLt handle has not been initialized".
  if (!h) return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtMatmul: not a live cuBLASLt handle");
  Problem p;
  if (const cublasStatus_t st = build_problem(desc, la, lb, lc, ld, C != D, p)) return st;
  Candidate c;
  if (algo) {
    if (const cublasStatus_t st = decode(*algo, p, c)) return st;
  }
  // [G] cublasLtMatmul, algo: "When NULL, an implicit heuristics query with default search preferences will be
  // performed": default preferences allow no workspace, so the mock's plain algorithm (Candidate{}).
  if (const cublasStatus_t st = check_device(h, stream)) return st;
  const int device = h->device;
  GemmJob job;
  if (const cublasStatus_t st = read_scalars(p, alpha, beta, device, job)) return st;
  const void* const ptrs[4] = {A, B, C, D};
  // [G] cublasLtMatmul: "in-place matrix multiplication (C == D and Cdesc == Ddesc)".
  if (C == D && (p.c.ld != p.d.ld || p.c.stride != p.d.stride))
    return fail(kInvalid, "C == D (in place) with different leading dimensions or batch strides");
  // [H] BIAS_POINTER: the bias (BIAS epilogues) or bias gradient output (BGRAD epilogues); required by them.
  if (p.bias_use != BiasUse::none && !p.bias)
    return fail(kInvalid, "the epilogue needs CUBLASLT_MATMUL_DESC_BIAS_POINTER");
  // [H]: INVALID_VALUE "when workspaceSizeInBytes is less than workspace required by configured algo".
  if (workspace_bytes < c.workspace)
    return fail(kInvalid, "workspaceSizeInBytes " + std::to_string(workspace_bytes) + " < the algo's " +
                              std::to_string(c.workspace));
  std::vector<Span> spans = spans_of(p, ptrs, p.bias);
  if (workspace_bytes > 0) {
    // [G] cublasLtMatmul: "The workspace pointer must be aligned to at least a multiple of 256 bytes." Mock's
    // choice: the whole declared workspace must be device memory (an algorithm may use all of it).
    if (reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlign)
      return fail(kInvalid, "the workspace is not 256-byte aligned");
    spans.push_back({"workspace", static_cast<const char*>(workspace), workspace_bytes, true});
  }
  if (const cublasStatus_t st = check_spans(spans, device)) return st;
  if (const cublasStatus_t st = check_alignment(p, c, ptrs, p.bias)) return st;
  make_job(p, ptrs, c, workspace, job);
  if (sticky_error() != cudaSuccess) return fail(CUBLAS_STATUS_EXECUTION_FAILED, "cublasLtMatmul: the device has failed");
  if (job.device_scalars) {
    spans.push_back({"alpha", static_cast<const char*>(alpha), sizeof(float), false, true});
    spans.push_back({"beta", static_cast<const char*>(beta), sizeof(float), false, true});
  }
  return enqueue_job(job, std::move(spans), device, stream);
}

}  // extern "C"
