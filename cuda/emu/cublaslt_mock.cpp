// A mock of cuBLASLt for the emulation build (MIXTAPE_CUDA_EMU): the entry points the CUDA backend calls, with
// the C signatures of /usr/local/cuda/include/cublasLt.h (cuBLAS 13.1), over the fake runtime (cuda/emu/runtime.h).
//
// It is written from NVIDIA's documentation (the comments in cublasLt.h and the cuBLAS guide's cuBLASLt API
// section) and from NVIDIA's own wrapper nvmath-python where the guide was not at hand; each check cites its
// source. Where the documentation is silent the mock picks the stricter behaviour and says so. A mock shares any
// misreading of the documentation by its author: a call it accepts may still fail on a real GPU, and only a real
// GPU proves the numerics of NVIDIA's kernels (see cuda/emu/cublaslt_mock_compute.cpp for what is computed).
//
// This file: handles, descriptors and their attributes, versions and status strings. cublaslt_mock_matmul.cpp:
// validation, algorithms, cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul. Every failure records a reason,
// readable through mixtape::emu::cublaslt_last_error() (and printed when MIXTAPE_EMU_CUBLASLT_LOG is set).
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "cuda/emu/cublaslt_mock.h"
#include "cuda/emu/runtime.h"

namespace mixtape::emu {

namespace {
thread_local std::string g_last_error;
}  // namespace

std::string cublaslt_last_error() { return g_last_error; }

namespace lt {

cublasStatus_t fail(cublasStatus_t status, std::string why) {
  static const bool log = std::getenv("MIXTAPE_EMU_CUBLASLT_LOG") != nullptr;
  if (log) std::fprintf(stderr, "[cuBLASLt mock] status %d: %s\n", static_cast<int>(status), why.c_str());
  g_last_error = std::move(why);
  return status;
}

namespace {

/// Kinds of live objects in the registry.
enum class Kind : uint8_t { handle, matmul_desc, layout, preference };

/// Every live object the mock handed out, so a destroyed or garbage handle is an error, not a crash.
struct Registry {
  std::mutex mu;
  std::unordered_map<const void*, Kind> live;
};
Registry& registry() {
  static Registry r;
  return r;
}

void add_object(const void* p, Kind kind) {
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().live[p] = kind;
}
bool is_live(const void* p, Kind kind) {
  std::lock_guard<std::mutex> lock(registry().mu);
  const auto it = registry().live.find(p);
  return it != registry().live.end() && it->second == kind;
}
bool remove_object(const void* p, Kind kind) {
  std::lock_guard<std::mutex> lock(registry().mu);
  const auto it = registry().live.find(p);
  if (it == registry().live.end() || it->second != kind) return false;
  registry().live.erase(it);
  return true;
}

constexpr uint64_t kNoType = static_cast<uint64_t>(static_cast<uint32_t>(-1));  // int32 -1: "same as D"

// Attribute ids, sizes and defaults: cublasLt.h, cublasLtMatmulDescAttributes_t.
constexpr AttrSpec kDescSpecs[] = {
    {CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, 4, 0},          {CUBLASLT_MATMUL_DESC_SCALE_TYPE, 4, 0},
    {CUBLASLT_MATMUL_DESC_POINTER_MODE, 4, 0},          {CUBLASLT_MATMUL_DESC_TRANSA, 4, CUBLAS_OP_N},
    {CUBLASLT_MATMUL_DESC_TRANSB, 4, CUBLAS_OP_N},      {CUBLASLT_MATMUL_DESC_TRANSC, 4, CUBLAS_OP_N},
    {CUBLASLT_MATMUL_DESC_FILL_MODE, 4, CUBLAS_FILL_MODE_FULL},
    {CUBLASLT_MATMUL_DESC_EPILOGUE, 4, CUBLASLT_EPILOGUE_DEFAULT},
    {CUBLASLT_MATMUL_DESC_BIAS_POINTER, 8, 0},          {CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, 8, 0},
    {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, 8, 0},  {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, 8, 0},
    {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, 8, 0},
    {CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE, 8, 0},
    {CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, 4, 0},       {CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, 8, 0},
    {CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, 8, 0},       {CUBLASLT_MATMUL_DESC_C_SCALE_POINTER, 8, 0},
    {CUBLASLT_MATMUL_DESC_D_SCALE_POINTER, 8, 0},       {CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, 8, 0},
    {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, 4, kNoType},
    {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER, 8, 0},
    {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER, 8, 0},
    {CUBLASLT_MATMUL_DESC_FAST_ACCUM, 1, 0},            {CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, 4, kNoType},
    {CUBLASLT_MATMUL_DESC_A_SCALE_MODE, 4, 0},          {CUBLASLT_MATMUL_DESC_B_SCALE_MODE, 4, 0},
    {CUBLASLT_MATMUL_DESC_C_SCALE_MODE, 4, 0},          {CUBLASLT_MATMUL_DESC_D_SCALE_MODE, 4, 0},
    {CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_MODE, 4, 0},
    {CUBLASLT_MATMUL_DESC_D_OUT_SCALE_POINTER, 8, 0},   {CUBLASLT_MATMUL_DESC_D_OUT_SCALE_MODE, 4, 0},
    {CUBLASLT_MATMUL_DESC_EMULATION_DESCRIPTOR, 8, 0},
};

// cublasLt.h, cublasLtMatrixLayoutAttribute_t (rows, cols, ld and type come from cublasLtMatrixLayoutCreate).
constexpr AttrSpec kLayoutSpecs[] = {
    {CUBLASLT_MATRIX_LAYOUT_TYPE, 4, 0},         {CUBLASLT_MATRIX_LAYOUT_ORDER, 4, CUBLASLT_ORDER_COL},
    {CUBLASLT_MATRIX_LAYOUT_ROWS, 8, 0},         {CUBLASLT_MATRIX_LAYOUT_COLS, 8, 0},
    {CUBLASLT_MATRIX_LAYOUT_LD, 8, 0},           {CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, 4, 1},
    {CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, 8, 0},
    {CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET, 8, 0}, {CUBLASLT_MATRIX_LAYOUT_BATCH_MODE, 4, CUBLASLT_BATCH_MODE_STRIDED},
};

// cublasLt.h, cublasLtMatmulPreferenceAttributes_t: no workspace, every reduction scheme, 256-byte alignments.
constexpr AttrSpec kPreferenceSpecs[] = {
    {CUBLASLT_MATMUL_PREF_SEARCH_MODE, 4, CUBLASLT_SEARCH_BEST_FIT},
    {CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, 8, 0},
    {CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, 4, CUBLASLT_REDUCTION_SCHEME_MASK},
    {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, 4, 256},
    {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, 4, 256},
    {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, 4, 256},
    {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, 4, 256},
    {CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT, 4, 0},  // float 0.0f
    {CUBLASLT_MATMUL_PREF_IMPL_MASK, 8, ~uint64_t{0}},
};

/// Known compute types (cublas_api.h, cublasComputeType_t).
bool known_compute_type(cublasComputeType_t c) {
  switch (c) {
    case CUBLAS_COMPUTE_16F: case CUBLAS_COMPUTE_16F_PEDANTIC: case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC: case CUBLAS_COMPUTE_32F_FAST_16F: case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32: case CUBLAS_COMPUTE_32F_EMULATED_16BFX9: case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC: case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT: case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC: return true;
  }
  return false;
}

template <class Obj, class Api>
cublasStatus_t create_object(Api* out, Kind kind, const char* call, Obj* obj) {
  if (!out) {
    delete obj;
    return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": the output pointer is null");
  }
  add_object(obj, kind);
  *out = reinterpret_cast<Api>(obj);
  return CUBLAS_STATUS_SUCCESS;
}

template <class Obj>
cublasStatus_t destroy_object(const void* p, Kind kind, const char* call) {
  if (!p) return CUBLAS_STATUS_SUCCESS;  // like free(NULL); not documented, harmless
  // Not documented: destroying an unknown or already destroyed descriptor is undefined on a GPU; an error here.
  if (!remove_object(p, kind))
    return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": not a live descriptor (destroyed twice?)");
  delete static_cast<const Obj*>(p);
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

Attributes::Attributes(const AttrSpec* specs, size_t count) : specs_(specs), count_(count) {
  for (size_t i = 0; i < count; ++i) slots_[specs[i].id] = specs[i].initial;
}

const AttrSpec* Attributes::spec(int32_t id) const {
  for (size_t i = 0; i < count_; ++i)
    if (specs_[i].id == id) return &specs_[i];
  return nullptr;
}

bool Attributes::is_default(int32_t id) const {
  const AttrSpec* s = spec(id);
  return s && slots_[id] == s->initial;
}

cublasStatus_t Attributes::set(int32_t id, const void* buf, size_t size, const char* call) {
  const AttrSpec* s = spec(id);
  // cublasLt.h, *SetAttribute: "CUBLAS_STATUS_INVALID_VALUE if buf is NULL or sizeInBytes doesn't match size of
  // internal storage for selected attribute". An attribute the header does not define is invalid as well.
  if (!s) return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": unknown attribute " + std::to_string(id));
  if (!buf) return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": buf is null");
  if (size != s->size)
    return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": attribute " + std::to_string(id) + " takes " +
                                                 std::to_string(s->size) + " bytes, got sizeInBytes " +
                                                 std::to_string(size));
  slots_[id] = 0;
  std::memcpy(&slots_[id], buf, size);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t Attributes::get(int32_t id, void* buf, size_t size, size_t* written, const char* call) const {
  const AttrSpec* s = spec(id);
  if (!s) return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": unknown attribute " + std::to_string(id));
  // cublasLt.h, *GetAttribute: INVALID_VALUE "if sizeInBytes is 0 and sizeWritten is NULL, or if sizeInBytes is
  // non-zero and buf is NULL or sizeInBytes doesn't match size of internal storage"; with sizeInBytes == 0,
  // sizeWritten receives the number of bytes needed.
  if (size == 0) {
    if (!written) return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": sizeInBytes 0 and sizeWritten null");
    *written = s->size;
    return CUBLAS_STATUS_SUCCESS;
  }
  if (!buf || size != s->size)
    return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(call) + ": buf null or sizeInBytes " + std::to_string(size) +
                                                 " is not the attribute's size " + std::to_string(s->size));
  std::memcpy(buf, &slots_[id], size);
  if (written) *written = size;
  return CUBLAS_STATUS_SUCCESS;
}

MatmulDesc::MatmulDesc() : attrs(kDescSpecs, std::size(kDescSpecs)) {}
Layout::Layout() : attrs(kLayoutSpecs, std::size(kLayoutSpecs)) {}
Preference::Preference() : attrs(kPreferenceSpecs, std::size(kPreferenceSpecs)) {}

Handle* find(cublasLtHandle_t h) { return is_live(h, Kind::handle) ? reinterpret_cast<Handle*>(h) : nullptr; }
MatmulDesc* find(cublasLtMatmulDesc_t d) {
  return is_live(d, Kind::matmul_desc) ? reinterpret_cast<MatmulDesc*>(d) : nullptr;
}
Layout* find(cublasLtMatrixLayout_t l) { return is_live(l, Kind::layout) ? reinterpret_cast<Layout*>(l) : nullptr; }
Preference* find(cublasLtMatmulPreference_t p) {
  return is_live(p, Kind::preference) ? reinterpret_cast<Preference*>(p) : nullptr;
}

}  // namespace lt
}  // namespace mixtape::emu

using namespace mixtape::emu;
using namespace mixtape::emu::lt;

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  auto* h = new Handle;
  // cuBLAS guide, cublasLtCreate: "The cuBLASLt library context is tied to the current CUDA device"; INVALID_VALUE
  // "lighthandle is NULL".
  h->device = current_device();
  return create_object(handle, Kind::handle, "cublasLtCreate", h);
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  // cuBLAS guide, cublasLtDestroy: INVALID_VALUE if lightHandle is NULL; NOT_INITIALIZED if the library was not
  // initialised (here: a handle that is not live).
  if (!handle) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtDestroy: lightHandle is NULL");
  if (!remove_object(handle, Kind::handle))
    return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtDestroy: not a live cuBLASLt handle");
  delete reinterpret_cast<Handle*>(handle);
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "<unknown>";
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
  }
  return "<unknown>";
}

size_t cublasLtGetVersion(void) { return CUBLAS_VERSION; }  // the headers this mock stands in for: 13.1.0

size_t cublasLtGetCudartVersion(void) { return CUDART_VERSION; }

cublasStatus_t cublasLtGetProperty(libraryPropertyType type, int* value) {
  // cuBLAS guide, cublasLtGetProperty: INVALID_VALUE "if invalid value of the type input argument, or if value is
  // NULL".
  if (!value) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtGetProperty: value is NULL");
  switch (type) {
    case MAJOR_VERSION: *value = CUBLAS_VER_MAJOR; return CUBLAS_STATUS_SUCCESS;
    case MINOR_VERSION: *value = CUBLAS_VER_MINOR; return CUBLAS_STATUS_SUCCESS;
    case PATCH_LEVEL: *value = CUBLAS_VER_PATCH; return CUBLAS_STATUS_SUCCESS;
  }
  return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtGetProperty: unknown property type");
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (!known_compute_type(compute))  // not documented; an enumerator the header does not define is invalid
    return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescCreate: unknown compute type " +
                                                 std::to_string(static_cast<int>(compute)));
  auto* d = new MatmulDesc;
  d->attrs.put(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, static_cast<int32_t>(compute));
  d->attrs.put(CUBLASLT_MATMUL_DESC_SCALE_TYPE, static_cast<int32_t>(scale));
  return create_object(desc, Kind::matmul_desc, "cublasLtMatmulDescCreate", d);
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  return destroy_object<MatmulDesc>(desc, Kind::matmul_desc, "cublasLtMatmulDescDestroy");
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  MatmulDesc* d = find(desc);
  if (!d) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescSetAttribute: not a live matmul descriptor");
  return d->attrs.set(attr, buf, size, "cublasLtMatmulDescSetAttribute");
}

cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              void* buf, size_t size, size_t* written) {
  const MatmulDesc* d = find(desc);
  if (!d) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescGetAttribute: not a live matmul descriptor");
  return d->attrs.get(attr, buf, size, written, "cublasLtMatmulDescGetAttribute");
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  auto* l = new Layout;
  l->attrs.put(CUBLASLT_MATRIX_LAYOUT_TYPE, static_cast<uint32_t>(type));
  l->attrs.put(CUBLASLT_MATRIX_LAYOUT_ROWS, rows);
  l->attrs.put(CUBLASLT_MATRIX_LAYOUT_COLS, cols);
  l->attrs.put(CUBLASLT_MATRIX_LAYOUT_LD, ld);
  return create_object(layout, Kind::layout, "cublasLtMatrixLayoutCreate", l);
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  return destroy_object<Layout>(layout, Kind::layout, "cublasLtMatrixLayoutDestroy");
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  Layout* l = find(layout);
  if (!l) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutSetAttribute: not a live layout");
  return l->attrs.set(attr, buf, size, "cublasLtMatrixLayoutSetAttribute");
}

cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                void* buf, size_t size, size_t* written) {
  const Layout* l = find(layout);
  if (!l) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutGetAttribute: not a live layout");
  return l->attrs.get(attr, buf, size, written, "cublasLtMatrixLayoutGetAttribute");
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  return create_object(pref, Kind::preference, "cublasLtMatmulPreferenceCreate", new Preference);
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  return destroy_object<Preference>(pref, Kind::preference, "cublasLtMatmulPreferenceDestroy");
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  Preference* p = find(pref);
  if (!p) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceSetAttribute: not a live preference");
  return p->attrs.set(attr, buf, size, "cublasLtMatmulPreferenceSetAttribute");
}

cublasStatus_t cublasLtMatmulPreferenceGetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, void* buf, size_t size,
                                                    size_t* written) {
  const Preference* p = find(pref);
  if (!p) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceGetAttribute: not a live preference");
  return p->attrs.get(attr, buf, size, written, "cublasLtMatmulPreferenceGetAttribute");
}

}  // extern "C"
