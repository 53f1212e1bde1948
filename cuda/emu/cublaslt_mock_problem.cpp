// The descriptors of a cuBLASLt mock call (cublasLtMatmul, cublasLtMatmulAlgoGetHeuristic) validated into a
// Problem: layouts, types against the documented table, shapes, transposes, epilogue and its bias, and the
// descriptor attributes the mock does not model. Pointers are checked later, in cuda/emu/cublaslt_mock_matmul.cpp.
//
// Sources cited below: [H] = the comments of /usr/local/cuda/include/cublasLt.h (cuBLAS 13.1); [G] = the cuBLAS
// guide, cuBLASLt API section (docs.nvidia.com/cuda/cublas, the 13.x text with CUBLAS_COMPUTE_32F_EMULATED_16BFX9,
// read from a copy of its cublasLtMatmul, cublasLtCreate/Destroy and heuristic sections); [N] = NVIDIA's nvmath-python
// (nvmath/linalg/advanced/matmulmod.py, nvmath/linalg/_internal/epilog_protocol.py). "Mock's choice" marks a
// rule the documentation does not state, chosen stricter than a real GPU may be.
#include <cublasLt.h>

#include <string>

#include "cuda/emu/cublaslt_mock.h"

namespace mixtape::emu::lt {

/// Bytes per element of the types the mock computes (0 for any other type).
size_t esize(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: case CUDA_R_16BF: return 2;
    default: return 0;
  }
}

/// "CUDA_R_32F", ... for messages.
std::string type_name(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    default: return "cudaDataType " + std::to_string(static_cast<int>(t));
  }
}

namespace {

constexpr cublasStatus_t kInvalid = CUBLAS_STATUS_INVALID_VALUE;
constexpr cublasStatus_t kUnsupported = CUBLAS_STATUS_NOT_SUPPORTED;

std::string s(int64_t v) { return std::to_string(v); }

/// The attributes of a layout descriptor.
Mat read_layout(const Layout& l) {
  Mat m;
  m.type = static_cast<cudaDataType_t>(l.attrs.as<uint32_t>(CUBLASLT_MATRIX_LAYOUT_TYPE));
  m.order = l.attrs.as<int32_t>(CUBLASLT_MATRIX_LAYOUT_ORDER);
  m.rows = l.attrs.as<uint64_t>(CUBLASLT_MATRIX_LAYOUT_ROWS);
  m.cols = l.attrs.as<uint64_t>(CUBLASLT_MATRIX_LAYOUT_COLS);
  m.ld = l.attrs.as<int64_t>(CUBLASLT_MATRIX_LAYOUT_LD);
  m.batch = l.attrs.as<int32_t>(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
  m.stride = l.attrs.as<int64_t>(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
  m.plane = l.attrs.as<int64_t>(CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET);
  m.mode = l.attrs.as<uint32_t>(CUBLASLT_MATRIX_LAYOUT_BATCH_MODE);
  return m;
}

/// One layout on its own: order, batch mode, sizes, leading dimension, batch count and stride. `broadcast_ok`: C of
/// an out-of-place call, whose leading dimension may be 0.
cublasStatus_t check_layout(const Mat& x, const char* name, bool broadcast_ok) {
  const std::string w = std::string(name) + ": ";
  // The mock computes CUBLASLT_ORDER_COL, strided batches, real data only.
  if (x.order != CUBLASLT_ORDER_COL) return fail(kUnsupported, w + "only CUBLASLT_ORDER_COL is modelled by the mock");
  if (x.mode != CUBLASLT_BATCH_MODE_STRIDED) return fail(kUnsupported, w + "only strided batches are modelled");
  if (x.plane != 0) return fail(kUnsupported, w + "planar complex layouts are not modelled");
  // [H] ROWS/COLS: "Usually only values that can be expressed as int32_t are supported."
  if (x.rows > INT32_MAX || x.cols > INT32_MAX) return fail(kUnsupported, w + "rows/cols beyond int32_t");
  // Mock's choice: an empty matrix is rejected (the backend never sends one).
  if (x.rows == 0 || x.cols == 0) return fail(kInvalid, w + "rows and cols must be at least 1");
  // [H] LD: "must be large enough so that matrix memory locations are not overlapping (e.g. greater or equal to
  // CUBLASLT_MATRIX_LAYOUT_ROWS in case of CUBLASLT_ORDER_COL)". [G] cublasLtMatmul: out of place, "the leading
  // dimension of C can be 0 to achieve row or column broadcast".
  if (x.ld < static_cast<int64_t>(x.rows) && !(broadcast_ok && x.ld == 0))
    return fail(kInvalid, w + "leading dimension " + s(x.ld) + " < rows " + s(static_cast<int64_t>(x.rows)));
  // [H] BATCH_COUNT: "Number of matmul operations to perform in the batch" (so at least 1).
  if (x.batch < 1) return fail(kInvalid, w + "batch count " + s(x.batch) + " < 1");
  // Mock's choice: negative batch strides are rejected ([H] states "only non-negative values" for LD only).
  if (x.stride < 0) return fail(kInvalid, w + "negative strided batch offset " + s(x.stride));
  return CUBLAS_STATUS_SUCCESS;
}

/// [G] cublasLtMatmul, "Datatypes Supported", table of regular (non-FP8, non-FP4) matrices, where Dtype = Ctype:
/// the rows the mock computes. PEDANTIC compute types are the same rows (the mock has no faster path to forbid).
bool computed_row(cublasComputeType_t compute, cudaDataType_t scale, cudaDataType_t ab, cudaDataType_t cd) {
  if (scale != CUDA_R_32F) return false;
  switch (compute) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      return (ab == CUDA_R_32F && cd == CUDA_R_32F) || (ab == CUDA_R_16F && (cd == CUDA_R_16F || cd == CUDA_R_32F)) ||
             (ab == CUDA_R_16BF && (cd == CUDA_R_16BF || cd == CUDA_R_32F));
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF: return ab == CUDA_R_32F && cd == CUDA_R_32F;
    default: return false;
  }
}

/// The other real rows of the same table, which the mock does not compute (16-bit, integer and double compute,
/// BF16x9 emulation, int8 inputs): NOT_SUPPORTED with a message that says so.
bool documented_row(cublasComputeType_t compute, cudaDataType_t scale, cudaDataType_t ab, cudaDataType_t cd) {
  switch (compute) {
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC: return scale == CUDA_R_16F && ab == CUDA_R_16F && cd == CUDA_R_16F;
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC:
      return ab == CUDA_R_8I && ((scale == CUDA_R_32I && cd == CUDA_R_32I) || (scale == CUDA_R_32F && cd == CUDA_R_8I));
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC: return scale == CUDA_R_32F && ab == CUDA_R_8I && cd == CUDA_R_32F;
    case CUBLAS_COMPUTE_32F_EMULATED_16BFX9: return scale == CUDA_R_32F && ab == CUDA_R_32F && cd == CUDA_R_32F;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
    case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT: return scale == CUDA_R_64F && ab == CUDA_R_64F && cd == CUDA_R_64F;
    default: return false;
  }
}

/// Types of the four matrices against the compute and scale types.
cublasStatus_t check_types(const Problem& p) {
  if (p.a.type != p.b.type)
    return fail(kUnsupported, "A is " + type_name(p.a.type) + " but B is " + type_name(p.b.type) +
                                  ": no row of the supported-types table mixes them [G]");
  // [G] cublasLtMatmul: out of place, C and D "must have the same data type".
  if (p.c.type != p.d.type)
    return fail(kUnsupported, "C is " + type_name(p.c.type) + " but D is " + type_name(p.d.type) +
                                  ": Dtype must equal Ctype outside FP8 [G]");
  const std::string combo = "compute type " + s(p.compute) + ", scale " + type_name(p.scale) + ", A/B " +
                            type_name(p.a.type) + ", C/D " + type_name(p.c.type);
  if (documented_row(p.compute, p.scale, p.a.type, p.c.type))
    return fail(kUnsupported, combo + " is in the supported-types table [G] but the mock does not compute it");
  if (!computed_row(p.compute, p.scale, p.a.type, p.c.type))
    return fail(kUnsupported, combo + " is not a combination of the supported-types table [G]");
  return CUBLAS_STATUS_SUCCESS;
}

/// op(A) is m x k, op(B) k x n, C and D m x n; equal batch counts; D's batch entries must not overlap.
cublasStatus_t check_shapes(Problem& p) {
  const auto rows = [](const Mat& x) { return static_cast<int64_t>(x.rows); };
  const auto cols = [](const Mat& x) { return static_cast<int64_t>(x.cols); };
  p.m = p.trans_a ? cols(p.a) : rows(p.a);
  p.k = p.trans_a ? rows(p.a) : cols(p.a);
  const int64_t kb = p.trans_b ? cols(p.b) : rows(p.b);
  p.n = p.trans_b ? rows(p.b) : cols(p.b);
  // [H] cublasLtMatmul: INVALID_VALUE "if parameters are in conflict or in an impossible configuration".
  if (kb != p.k) return fail(kInvalid, "op(A) is " + s(p.m) + " x " + s(p.k) + " but op(B) is " + s(kb) + " x " + s(p.n));
  for (const Mat* x : {&p.c, &p.d})
    if (rows(*x) != p.m || cols(*x) != p.n)
      return fail(kInvalid, std::string(x == &p.c ? "C" : "D") + " is " + s(rows(*x)) + " x " + s(cols(*x)) +
                                ", op(A) op(B) is " + s(p.m) + " x " + s(p.n));
  p.batch = p.d.batch;
  // Mock's choice: every layout states the same batch count (broadcasting is a stride of 0).
  if (p.a.batch != p.batch || p.b.batch != p.batch || p.c.batch != p.batch)
    return fail(kInvalid, "batch counts differ: A " + s(p.a.batch) + ", B " + s(p.b.batch) + ", C " + s(p.c.batch) +
                              ", D " + s(p.d.batch));
  // Mock's choice: D's batch entries may not overlap (a stride of 0 would make them race on a GPU).
  const int64_t d_span = (cols(p.d) - 1) * p.d.ld + rows(p.d);
  if (p.batch > 1 && p.d.stride < d_span)
    return fail(kInvalid, "D's strided batch offset " + s(p.d.stride) + " is smaller than one matrix (" + s(d_span) +
                              " elements): the batch entries' outputs overlap");
  return CUBLAS_STATUS_SUCCESS;
}

/// A transpose attribute: N or T (the mock's choice: OP_C, a synonym of T for real types in legacy cuBLAS, is
/// NOT_SUPPORTED; any other value is invalid).
cublasStatus_t read_op(int32_t v, const char* name, bool& trans) {
  if (v == CUBLAS_OP_N || v == CUBLAS_OP_T) {
    trans = v == CUBLAS_OP_T;
    return CUBLAS_STATUS_SUCCESS;
  }
  if (v == CUBLAS_OP_C) return fail(kUnsupported, std::string(name) + ": CUBLAS_OP_C is not modelled by the mock");
  return fail(kInvalid, std::string(name) + ": " + s(v) + " is not a cublasOperation_t");
}

/// Descriptor attributes that change the computation in ways the mock does not model must keep their defaults.
cublasStatus_t check_unmodelled(const MatmulDesc& d) {
  static constexpr cublasLtMatmulDescAttributes_t kUnmodelled[] = {
      CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, CUBLASLT_MATMUL_DESC_C_SCALE_POINTER,
      CUBLASLT_MATMUL_DESC_D_SCALE_POINTER, CUBLASLT_MATMUL_DESC_AMAX_D_POINTER, CUBLASLT_MATMUL_DESC_FAST_ACCUM,
      CUBLASLT_MATMUL_DESC_A_SCALE_MODE,    CUBLASLT_MATMUL_DESC_B_SCALE_MODE,   CUBLASLT_MATMUL_DESC_C_SCALE_MODE,
      CUBLASLT_MATMUL_DESC_D_SCALE_MODE,    CUBLASLT_MATMUL_DESC_D_OUT_SCALE_POINTER,
      CUBLASLT_MATMUL_DESC_D_OUT_SCALE_MODE, CUBLASLT_MATMUL_DESC_EMULATION_DESCRIPTOR,
      CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE};
  for (const auto a : kUnmodelled)
    if (!d.attrs.is_default(a))
      return fail(kUnsupported, "matmul descriptor attribute " + s(a) + " is set; the mock does not model it");
  // [H] TRANSC: "Currently only CUBLAS_OP_N is supported."
  if (d.attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_TRANSC) != CUBLAS_OP_N) return fail(kUnsupported, "TRANSC must be N");
  if (d.attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_FILL_MODE) != CUBLAS_FILL_MODE_FULL)
    return fail(kUnsupported, "only CUBLAS_FILL_MODE_FULL is modelled");
  return CUBLAS_STATUS_SUCCESS;
}

/// The epilogue, its bias pointer, type and batch stride.
cublasStatus_t check_epilogue(const MatmulDesc& d, Problem& p) {
  p.epilogue = d.attrs.as<uint32_t>(CUBLASLT_MATMUL_DESC_EPILOGUE);
  switch (p.epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT: break;
    case CUBLASLT_EPILOGUE_RELU: p.relu = true; break;
    case CUBLASLT_EPILOGUE_BIAS: p.bias_use = BiasUse::add; break;
    case CUBLASLT_EPILOGUE_RELU_BIAS: p.bias_use = BiasUse::add, p.relu = true; break;
    case CUBLASLT_EPILOGUE_BGRADA: p.bias_use = BiasUse::grad_a; break;
    case CUBLASLT_EPILOGUE_BGRADB: p.bias_use = BiasUse::grad_b; break;
    case CUBLASLT_EPILOGUE_RELU_AUX: case CUBLASLT_EPILOGUE_RELU_AUX_BIAS: case CUBLASLT_EPILOGUE_DRELU:
    case CUBLASLT_EPILOGUE_DRELU_BGRAD: case CUBLASLT_EPILOGUE_GELU: case CUBLASLT_EPILOGUE_GELU_AUX:
    case CUBLASLT_EPILOGUE_GELU_BIAS: case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: case CUBLASLT_EPILOGUE_DGELU:
    case CUBLASLT_EPILOGUE_DGELU_BGRAD:
      return fail(kUnsupported, "epilogue " + s(p.epilogue) + " exists in cuBLASLt but is not modelled by the mock");
    default: return fail(kInvalid, "epilogue " + s(p.epilogue) + " is not a cublasLtEpilogue_t");
  }
  // [N] matmulmod.py: "When the epilog is BGRADB, we transpose B internally ... since this epilog requires B to be
  // transposed". For BGRADA the mirror rule (op(A) = N, [N]'s example: 'a' must be column-major) is the mock's
  // inference: both reduce the stored matrix along its columns.
  if (p.bias_use == BiasUse::grad_b && !p.trans_b)
    return fail(kUnsupported, "BGRADB requires TRANSB = CUBLAS_OP_T [N]");
  if (p.bias_use == BiasUse::grad_a && p.trans_a)
    return fail(kUnsupported, "BGRADA requires TRANSA = CUBLAS_OP_N (mirror of BGRADB's rule [N])");
  p.bias = d.attrs.as<const void*>(CUBLASLT_MATMUL_DESC_BIAS_POINTER);
  p.bias_stride = d.attrs.as<int64_t>(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE);
  // [H] BIAS_DATA_TYPE, default -1: "Bias vector elements are the same type as the elements of output matrix
  // (Dtype)", exceptions only for IMMA and FP8 kernels; the mock accepts D's type only.
  const int32_t bias_type = d.attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE);
  p.bias_type = bias_type == -1 ? p.d.type : static_cast<cudaDataType_t>(bias_type);
  if (p.bias_use != BiasUse::none && p.bias_type != p.d.type)
    return fail(kUnsupported, "bias data type " + type_name(p.bias_type) + " differs from D's " + type_name(p.d.type));
  if (p.bias_stride < 0) return fail(kInvalid, "negative bias batch stride");
  // Mock's choice: batched bias gradients must not overlap ([H]: BIAS_BATCH_STRIDE default 0 broadcasts a bias).
  const int64_t len = p.bias_use == BiasUse::grad_b ? p.n : p.m;
  if ((p.bias_use == BiasUse::grad_a || p.bias_use == BiasUse::grad_b) && p.batch > 1 && p.bias_stride < len)
    return fail(kInvalid, "batched bias gradient with a bias batch stride " + s(p.bias_stride) + " < its length " +
                              s(len) + ": the outputs overlap");
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

/// Validates the descriptors (everything but pointers) into `p`; `c_broadcast_ok`: C may have ld 0 (out of place).
cublasStatus_t build_problem(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                             cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld, bool c_broadcast_ok, Problem& p) {
  const MatmulDesc* d = find(desc);
  if (!d) return fail(kInvalid, "computeDesc is not a live matmul descriptor");
  // [G] cublasLtMatmul: "If Cdesc is omitted, this function assumes it to be equal to Ddesc."
  const Layout* ls[4] = {find(la), find(lb), lc ? find(lc) : find(ld), find(ld)};
  const char* names[4] = {"Adesc", "Bdesc", "Cdesc", "Ddesc"};
  Mat* mats[4] = {&p.a, &p.b, &p.c, &p.d};
  for (int i = 0; i < 4; ++i) {
    if (!ls[i]) return fail(kInvalid, std::string(names[i]) + " is not a live matrix layout");
    *mats[i] = read_layout(*ls[i]);
    if (const cublasStatus_t st = check_layout(*mats[i], names[i], i == 2 && c_broadcast_ok)) return st;
  }
  p.compute = static_cast<cublasComputeType_t>(d->attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE));
  p.scale = static_cast<cudaDataType_t>(d->attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_SCALE_TYPE));
  p.pointer_mode = d->attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_POINTER_MODE);
  if (p.pointer_mode != CUBLASLT_POINTER_MODE_HOST && p.pointer_mode != CUBLASLT_POINTER_MODE_DEVICE)
    return fail(kUnsupported, "pointer mode " + s(p.pointer_mode) + " is not modelled (HOST and DEVICE are)");
  const int32_t op_a = d->attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_TRANSA);
  const int32_t op_b = d->attrs.as<int32_t>(CUBLASLT_MATMUL_DESC_TRANSB);
  if (const cublasStatus_t st = read_op(op_a, "TRANSA", p.trans_a)) return st;
  if (const cublasStatus_t st = read_op(op_b, "TRANSB", p.trans_b)) return st;
  if (const cublasStatus_t st = check_unmodelled(*d)) return st;
  if (const cublasStatus_t st = check_types(p)) return st;
  if (const cublasStatus_t st = check_shapes(p)) return st;
  return check_epilogue(*d, p);
}

}  // namespace mixtape::emu::lt
