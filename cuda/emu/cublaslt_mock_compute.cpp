// The computation of the cuBLASLt mock (see cuda/emu/cublaslt_mock.cpp for the API and its validation): a plain
// reference GEMM, not a model of NVIDIA's kernels. Each output element is accumulated in float over k in order
// (products of the operands widened to float, after the compute type's input rounding: TF32, f16 or bf16 for the
// FAST compute types), then alpha * acc + beta * C, bias and ReLU in float, and ONE rounding to D's type
// (round to nearest even). The split-K algorithm sums k in `splits` contiguous parts into float partial results in
// the workspace and adds them in a fixed order, so its results differ from the plain algorithm in the last bits,
// as a real split-K does. Runs only inside queued work, when device memory is accessible.
//
// Speed: op(A) and op(B) are packed once per batch entry into float panels (8 rows of op(A), 4 columns of op(B),
// k-contiguous), and an 8 x 4 register tile is accumulated with GCC vector extensions, so the inner loop has no
// per-element dispatch and vectorises at -O2 on any x86-64.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "cuda/emu/cublaslt_mock.h"

namespace mixtape::emu::lt {

namespace {

using v4 = float __attribute__((vector_size(16)));
constexpr int64_t kMr = 8;  ///< rows of op(A) per packed panel
constexpr int64_t kNr = 4;  ///< columns of op(B) per packed panel

/// Calls f(T{}) with T the storage type of `type` (float, Half, BFloat16; validated before queuing).
template <class F>
void with_type(cudaDataType_t type, F&& f) {
  switch (type) {
    case CUDA_R_16F: f(Half{}); break;
    case CUDA_R_16BF: f(BFloat16{}); break;
    default: f(float{}); break;
  }
}

/// `x` rounded to TF32 (10 explicit mantissa bits), to nearest even; inf and NaN unchanged.
float round_tf32(float x) {
  uint32_t u = detail::float_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  u += 0xfffu + ((u >> 13) & 1u);
  return detail::bits_float(u & ~0x1fffu);
}

/// Applies the compute type's rounding of the multiplication inputs to a packed buffer.
void round_inputs(cublasComputeType_t compute, std::vector<float>& v) {
  switch (compute) {
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      for (float& x : v) x = round_tf32(x);
      break;
    case CUBLAS_COMPUTE_32F_FAST_16F:
      for (float& x : v) x = static_cast<float>(Half(x));
      break;
    case CUBLAS_COMPUTE_32F_FAST_16BF:
      for (float& x : v) x = static_cast<float>(BFloat16(x));
      break;
    default: break;
  }
}

/// op(A) (m x k) as panels of kMr rows: out[(p * k + l) * kMr + r] = op(A)[p * kMr + r, l], zero-padded. Reads
/// follow the stored matrix's contiguous dimension.
template <class T>
void pack_a(const T* a, int64_t ld, bool trans, int64_t m, int64_t k, float* out) {
  const int64_t panels = (m + kMr - 1) / kMr;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t rows = std::min(kMr, m - p * kMr);
    float* o = out + p * k * kMr;
    if (trans) {  // op(A)[i, l] = A[l + i * ld]: contiguous in l
      for (int64_t r = 0; r < kMr; ++r)
        for (int64_t l = 0; l < k; ++l) o[l * kMr + r] = r < rows ? static_cast<float>(a[l + (p * kMr + r) * ld]) : 0.0f;
    } else {  // op(A)[i, l] = A[i + l * ld]: contiguous in i
      for (int64_t l = 0; l < k; ++l)
        for (int64_t r = 0; r < kMr; ++r) o[l * kMr + r] = r < rows ? static_cast<float>(a[p * kMr + r + l * ld]) : 0.0f;
    }
  }
}

/// op(B) (k x n) as panels of kNr columns: out[(q * k + l) * kNr + c] = op(B)[l, q * kNr + c], zero-padded.
template <class T>
void pack_b(const T* b, int64_t ld, bool trans, int64_t k, int64_t n, float* out) {
  const int64_t panels = (n + kNr - 1) / kNr;
  for (int64_t q = 0; q < panels; ++q) {
    const int64_t cols = std::min(kNr, n - q * kNr);
    float* o = out + q * k * kNr;
    if (trans) {  // op(B)[l, j] = B[j + l * ld]: contiguous in j
      for (int64_t l = 0; l < k; ++l)
        for (int64_t c = 0; c < kNr; ++c) o[l * kNr + c] = c < cols ? static_cast<float>(b[q * kNr + c + l * ld]) : 0.0f;
    } else {  // op(B)[l, j] = B[l + j * ld]: contiguous in l
      for (int64_t c = 0; c < kNr; ++c)
        for (int64_t l = 0; l < k; ++l) o[l * kNr + c] = c < cols ? static_cast<float>(b[l + (q * kNr + c) * ld]) : 0.0f;
    }
  }
}

/// The kMr x kNr tile sum_{l in [l0, l1)} a_panel[l] b_panel[l]^T, accumulated in order of l, into tile
/// (column-major, ld kMr).
void tile_kernel(const float* ap, const float* bp, int64_t l0, int64_t l1, float* tile) {
  v4 acc[kNr][2] = {};
  for (int64_t l = l0; l < l1; ++l) {
    v4 a0, a1;
    std::memcpy(&a0, ap + l * kMr, sizeof a0);
    std::memcpy(&a1, ap + l * kMr + 4, sizeof a1);
    const float* b = bp + l * kNr;
    for (int c = 0; c < kNr; ++c) {
      acc[c][0] += a0 * b[c];
      acc[c][1] += a1 * b[c];
    }
  }
  std::memcpy(tile, acc, sizeof acc);
}

/// r (m x n, ld m) = op(A) op(B) over k in [l0, l1), from packed panels with k columns.
void multiply(const float* ap, const float* bp, int64_t m, int64_t n, int64_t k, int64_t l0, int64_t l1, float* r) {
  const int64_t mp = (m + kMr - 1) / kMr, nq = (n + kNr - 1) / kNr;
  // Columns of op(B) per chunk: about 256 KiB of packed B, reused from cache by every panel of op(A).
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 16) / (std::max<int64_t>(k, 1) * kNr));
  float tile[kMr * kNr];
  for (int64_t q0 = 0; q0 < nq; q0 += chunk)
    for (int64_t p = 0; p < mp; ++p)
      for (int64_t q = q0; q < std::min(q0 + chunk, nq); ++q) {
        tile_kernel(ap + p * k * kMr, bp + q * k * kNr, l0, l1, tile);
        const int64_t rows = std::min(kMr, m - p * kMr), cols = std::min(kNr, n - q * kNr);
        for (int64_t c = 0; c < cols; ++c)
          std::memcpy(r + (q * kNr + c) * m + p * kMr, tile + c * kMr, static_cast<size_t>(rows) * sizeof(float));
      }
}

/// The float result of one batch entry: plain, or split-K through the workspace (partials added in order).
const float* product(const GemmJob& job, const float* ap, const float* bp, std::vector<float>& scratch) {
  const int64_t m = job.m, n = job.n, k = job.k;
  if (job.splits <= 1) {
    scratch.resize(static_cast<size_t>(m * n));
    multiply(ap, bp, m, n, k, 0, k, scratch.data());
    return scratch.data();
  }
  float* parts = static_cast<float*>(job.workspace);
  const size_t size = static_cast<size_t>(m * n);
  for (int s = 0; s < job.splits; ++s)
    multiply(ap, bp, m, n, k, k * s / job.splits, k * (s + 1) / job.splits, parts + s * size);
  for (int s = 1; s < job.splits; ++s)
    for (size_t e = 0; e < size; ++e) parts[e] += parts[s * size + e];
  return parts;
}

/// The bias vector of batch entry `e` widened to float (BIAS epilogues), length m.
std::vector<float> load_bias(const GemmJob& job, int32_t e) {
  std::vector<float> v(static_cast<size_t>(job.m));
  with_type(job.bias_type, [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(job.bias) + e * job.bias_stride;
    for (int64_t i = 0; i < job.m; ++i) v[static_cast<size_t>(i)] = static_cast<float>(src[i]);
  });
  return v;
}

/// BGRADA / BGRADB: the sums over k of the packed op(A) rows or op(B) columns, rounded once to the bias type.
void bias_gradient(const GemmJob& job, int32_t e, const float* ap, const float* bp) {
  const bool of_a = job.bias_use == BiasUse::grad_a;
  const int64_t len = of_a ? job.m : job.n, width = of_a ? kMr : kNr;
  const float* packed = of_a ? ap : bp;
  with_type(job.bias_type, [&](auto tag) {
    using T = decltype(tag);
    T* out = static_cast<T*>(job.bias) + e * job.bias_stride;
    for (int64_t x = 0; x < len; ++x) {
      const float* col = packed + (x / width) * job.k * width + x % width;
      float sum = 0.0f;
      for (int64_t l = 0; l < job.k; ++l) sum += col[l * width];
      out[x] = T(sum);
    }
  });
}

/// D = act(alpha * r + beta * C + bias), rounded once to D's type; C is not read when beta == 0.
template <class T>
void epilogue(const GemmJob& job, const float* r, const T* c, T* d, const float* bias, float alpha, float beta) {
  for (int64_t j = 0; j < job.n; ++j) {
    const float* rc = r + j * job.m;
    const T* cc = c + j * job.c.ld;
    T* dc = d + j * job.d.ld;
    for (int64_t i = 0; i < job.m; ++i) {
      float v = alpha * rc[i];
      if (beta != 0.0f) v += beta * static_cast<float>(cc[i]);
      if (bias) v += bias[i];
      if (job.relu && v < 0.0f) v = 0.0f;  // NaN stays NaN (not documented; the stricter choice)
      dc[i] = T(v);
    }
  }
}

/// Packs one operand of batch entry `e` into `out` (sized here).
void pack_operand(const GemmJob& job, const Operand& o, bool is_a, int32_t e, std::vector<float>& out) {
  const int64_t rows = is_a ? job.m : job.k, cols = is_a ? job.k : job.n;
  const int64_t width = is_a ? kMr : kNr, panels = ((is_a ? rows : cols) + width - 1) / width;
  out.resize(static_cast<size_t>(panels * width * job.k));
  with_type(o.type, [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(o.ptr) + e * o.stride;
    if (is_a) pack_a(src, o.ld, job.trans_a, rows, cols, out.data());
    else pack_b(src, o.ld, job.trans_b, rows, cols, out.data());
  });
}

}  // namespace

size_t splitk_workspace_bytes(int64_t m, int64_t n, int splits) {
  return static_cast<size_t>(splits) * static_cast<size_t>(m) * static_cast<size_t>(n) * sizeof(float);
}

void run_gemm(const GemmJob& job) {
  const float alpha = job.device_scalars ? *job.alpha_ptr : job.alpha;
  const float beta = job.device_scalars ? *job.beta_ptr : job.beta;
  std::vector<float> ap, bp, scratch, bias;
  for (int32_t e = 0; e < job.batch; ++e) {
    pack_operand(job, job.a, true, e, ap);
    pack_operand(job, job.b, false, e, bp);
    if (job.bias_use == BiasUse::grad_a || job.bias_use == BiasUse::grad_b) bias_gradient(job, e, ap.data(), bp.data());
    round_inputs(job.compute, ap);
    round_inputs(job.compute, bp);
    const float* r = product(job, ap.data(), bp.data(), scratch);
    if (job.bias_use == BiasUse::add) bias = load_bias(job, e);
    with_type(job.d.type, [&](auto tag) {
      using T = decltype(tag);
      const T* c = static_cast<const T*>(job.c.ptr) + e * job.c.stride;
      T* d = static_cast<T*>(const_cast<void*>(job.d.ptr)) + e * job.d.stride;
      epilogue(job, r, c, d, job.bias_use == BiasUse::add ? bias.data() : nullptr, alpha, beta);
    });
  }
}

}  // namespace mixtape::emu::lt
