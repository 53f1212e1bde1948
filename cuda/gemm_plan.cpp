#include "cuda/gemm_plan.h"

#include <cstring>
#include <limits>

#include "core/error.h"

namespace mixtape::cuda {

GemmDesc describe(const GemmArgs& g) {
  GemmDesc d;
  d.dtype = g.a.dtype();
  d.trans_a = g.trans_a;
  d.trans_b = g.trans_b;
  d.batch = g.batch;
  d.m = g.m;
  d.n = g.n;
  d.k = g.k;
  d.stride_a = g.stride_a;
  d.stride_b = g.stride_b;
  d.stride_out = g.stride_out;
  d.alpha = g.alpha;
  d.beta = g.beta;
  d.epilogue = g.epilogue;
  d.a_sums = g.a_sums.defined();
  return d;
}

cudaDataType_t lt_data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f64:
      throw Error("gemm: f64 is CPU-only (the CUDA backend computes in f32, f16 and bf16); move the tensors to the "
                  "CPU with .to(Device::cpu()) or cast them to f32");
    default: break;
  }
  throw Error(detail::cat("gemm: expected an f32, f16 or bf16 tensor on CUDA, got ", dtype_name(dtype)));
}

namespace {

/// The column-major layout of a row-major (rows, cols) matrix stored in `type`: (cols x rows), ld = cols.
LtLayout column_major_of_row_major(cudaDataType_t type, int64_t rows, int64_t cols, int64_t batch, int64_t stride) {
  LtLayout l;
  l.type = type;
  l.rows = static_cast<uint64_t>(cols);
  l.cols = static_cast<uint64_t>(rows);
  l.ld = cols;
  l.batch = static_cast<int32_t>(batch);
  l.stride = batch > 1 ? stride : 0;
  return l;
}

EpilogueAct act_of(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::bias_relu: return EpilogueAct::relu;
    case GemmEpilogue::bias_gelu: return EpilogueAct::gelu;
    default: return EpilogueAct::identity;
  }
}

}  // namespace

GemmPlan plan_gemm(const GemmDesc& d, const GemmPlanOptions& o) {
  const cudaDataType_t type = lt_data_type(d.dtype);
  MIXTAPE_CHECK(d.m >= 1 && d.n >= 1 && d.k >= 1 && d.batch >= 1, "gemm: expected m, n, k and batch >= 1, got m=", d.m,
                " n=", d.n, " k=", d.k, " batch=", d.batch);
  MIXTAPE_CHECK(d.batch <= std::numeric_limits<int32_t>::max(), "gemm: cuBLASLt takes at most ",
                std::numeric_limits<int32_t>::max(), " batch entries, got ", d.batch);
  MIXTAPE_CHECK(d.epilogue == GemmEpilogue::none || d.batch == 1, "gemm: a bias epilogue needs batch == 1, got ", d.batch);
  MIXTAPE_CHECK(!d.a_sums || d.batch == 1, "gemm: a_sums needs batch == 1, got ", d.batch);
  GemmPlan p;
  p.compute = d.dtype == DType::f32 && o.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  p.scale_type = CUDA_R_32F;
  // C^T = op(b)^T op(a)^T: cuBLASLt's A is our b, its B is our a; each keeps its transpose flag because the
  // column-major view of a row-major matrix is its transpose.
  p.op_a = d.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  p.op_b = d.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  p.m = d.n;
  p.n = d.m;
  p.k = d.k;
  // Stored row-major shapes: b is (n, k) if trans_b else (k, n); a is (k, m) if trans_a else (m, k).
  p.a = column_major_of_row_major(type, d.trans_b ? d.n : d.k, d.trans_b ? d.k : d.n, d.batch, d.stride_b);
  p.b = column_major_of_row_major(type, d.trans_a ? d.k : d.m, d.trans_a ? d.m : d.k, d.batch, d.stride_a);
  p.c = column_major_of_row_major(type, d.m, d.n, d.batch, d.stride_out);
  p.alpha = static_cast<float>(d.alpha);
  p.beta = static_cast<float>(d.beta);

  const bool lt_epilogue_ok = o.lt_bias && d.epilogue != GemmEpilogue::bias_gelu;  // see the header: GELU differs
  if (d.epilogue != GemmEpilogue::none && lt_epilogue_ok) {
    p.epilogue = d.epilogue == GemmEpilogue::bias_relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    p.lt_bias = true;
  } else if (d.epilogue != GemmEpilogue::none) {
    p.epilogue_pass = true;
    p.act = act_of(d.epilogue);
    if (d.dtype != DType::f32) {
      // f16/bf16: keep the float result for the pass, which then adds beta * out and rounds once.
      p.float_buffer = true;
      p.c.type = CUDA_R_32F;
      p.pass_beta = p.beta;
      p.beta = 0.0f;
    }
  }
  if (d.a_sums) {
    if (o.lt_bias_grad && !p.lt_bias && !p.epilogue_pass && d.alpha == 1.0) {
      p.epilogue = CUBLASLT_EPILOGUE_BGRADB;  // our a is cuBLASLt's B; our m is the columns of its D
      p.lt_a_sums = true;
    } else {
      p.sums_pass = true;
    }
  }
  return p;
}

uint32_t pointer_alignment(const void* address) {
  const auto v = reinterpret_cast<uintptr_t>(address);
  if (v == 0) return 256;
  uint32_t align = 1;
  while (align < 256 && (v & (align * 2 - 1)) == 0) align *= 2;
  return align;
}

GemmKey make_key(const GemmPlan& p, int device, const void* a, const void* b, const void* c, const void* bias) {
  GemmKey k;
  k.device = device;
  k.compute = p.compute;
  k.op_a = p.op_a;
  k.op_b = p.op_b;
  k.m = p.m;
  k.n = p.n;
  k.k = p.k;
  k.a = p.a;
  k.b = p.b;
  k.c = p.c;
  k.epilogue = p.epilogue;
  k.align_a = pointer_alignment(a);
  k.align_b = pointer_alignment(b);
  k.align_c = pointer_alignment(c);
  k.align_bias = (p.lt_bias || p.lt_a_sums) ? pointer_alignment(bias) : 0;
  return k;
}

namespace {
void mix(size_t& h, uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); }
void mix_layout(size_t& h, const LtLayout& l) {
  mix(h, static_cast<uint64_t>(l.type));
  mix(h, l.rows);
  mix(h, l.cols);
  mix(h, static_cast<uint64_t>(l.ld));
  mix(h, static_cast<uint64_t>(l.batch));
  mix(h, static_cast<uint64_t>(l.stride));
}
const char* type_name(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_32F: return "f32";
    case CUDA_R_16F: return "f16";
    case CUDA_R_16BF: return "bf16";
    default: return "?";
  }
}
const char* epilogue_name(cublasLtEpilogue_t e) {
  switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT: return "none";
    case CUBLASLT_EPILOGUE_BIAS: return "BIAS";
    case CUBLASLT_EPILOGUE_RELU_BIAS: return "RELU_BIAS";
    case CUBLASLT_EPILOGUE_GELU_BIAS: return "GELU_BIAS";
    case CUBLASLT_EPILOGUE_BGRADA: return "BGRADA";
    case CUBLASLT_EPILOGUE_BGRADB: return "BGRADB";
    default: return "other";
  }
}
}  // namespace

size_t hash_key(const GemmKey& k) {
  size_t h = 0;
  mix(h, static_cast<uint64_t>(k.device));
  mix(h, static_cast<uint64_t>(k.compute));
  mix(h, static_cast<uint64_t>(k.op_a));
  mix(h, static_cast<uint64_t>(k.op_b));
  mix(h, static_cast<uint64_t>(k.m));
  mix(h, static_cast<uint64_t>(k.n));
  mix(h, static_cast<uint64_t>(k.k));
  mix_layout(h, k.a);
  mix_layout(h, k.b);
  mix_layout(h, k.c);
  mix(h, static_cast<uint64_t>(k.epilogue));
  mix(h, (uint64_t{k.align_a} << 48) ^ (uint64_t{k.align_b} << 32) ^ (uint64_t{k.align_c} << 16) ^ k.align_bias);
  return h;
}

std::string describe_key(const GemmKey& k) {
  return detail::cat(type_name(k.a.type), " -> ", type_name(k.c.type), " (cuBLASLt column-major) op_a=",
                     k.op_a == CUBLAS_OP_T ? "T" : "N", " op_b=", k.op_b == CUBLAS_OP_T ? "T" : "N", " m=", k.m,
                     " n=", k.n, " k=", k.k, " batch=", k.c.batch, " lda=", k.a.ld, " ldb=", k.b.ld, " ldc=", k.c.ld,
                     " strides=", k.a.stride, "/", k.b.stride, "/", k.c.stride, " epilogue=", epilogue_name(k.epilogue),
                     k.compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? " tf32" : "", " on cuda:", k.device);
}

bool GemmAlgoCache::find(const GemmKey& key, std::optional<cublasLtMatmulAlgo_t>& algo) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = map_.find(key);
  if (it == map_.end()) return false;
  algo = it->second;
  return true;
}

void GemmAlgoCache::insert(const GemmKey& key, const std::optional<cublasLtMatmulAlgo_t>& algo) {
  std::lock_guard<std::mutex> lock(mu_);
  map_[key] = algo;
  ++queries_;
}

size_t GemmAlgoCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

uint64_t GemmAlgoCache::queries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queries_;
}

void GemmAlgoCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  map_.clear();
  queries_ = 0;
}

GemmAlgoCache& gemm_algo_cache() {
  static GemmAlgoCache cache;
  return cache;
}

}  // namespace mixtape::cuda
