#pragma once
// The fixture of the cuBLASLt mock's tests (tests/test_cuda_emu_cublaslt*.cpp, emulation build only): host matrices
// in column-major layouts with padding and batches, device buffers of the fake runtime, a GEMM set up through the
// cuBLASLt API ready to run or to be spoiled one argument at a time, and its float64 reference check.
#include <catch2/catch.hpp>
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "cuda/emu/cublaslt_mock.h"
#include "cuda/emu/runtime.h"

namespace mixtape::testing::cublaslt {

using mixtape::BFloat16;
using mixtape::Half;
using mixtape::emu::cublaslt_last_error;

inline constexpr cublasStatus_t kOk = CUBLAS_STATUS_SUCCESS;
inline constexpr cublasStatus_t kInvalid = CUBLAS_STATUS_INVALID_VALUE;
inline constexpr cublasStatus_t kUnsupported = CUBLAS_STATUS_NOT_SUPPORTED;
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr double kSentinel = 768.0;  ///< exact in f32, f16 and bf16: marks bytes a call must not write

inline size_t esize(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

/// TF32 rounding written independently of the mock: 11 significant bits, to nearest even.
inline double round_tf32(double v) {
  if (!std::isfinite(v) || v == 0) return v;
  int e = 0;
  const double f = std::frexp(v, &e);  // |f| in [0.5, 1)
  return std::ldexp(std::nearbyint(std::ldexp(f, 11)), e - 11);
}

/// `v` as the type stores it (round to nearest even).
inline double round_to(cudaDataType_t t, double v) {
  switch (t) {
    case CUDA_R_16F: return static_cast<float>(Half(static_cast<float>(v)));
    case CUDA_R_16BF: return static_cast<float>(BFloat16(static_cast<float>(v)));
    default: return static_cast<float>(v);
  }
}

/// What the compute type does to a multiplication input.
inline double round_input(cublasComputeType_t c, double v) {
  switch (c) {
    case CUBLAS_COMPUTE_32F_FAST_TF32: return round_tf32(v);
    case CUBLAS_COMPUTE_32F_FAST_16F: return round_to(CUDA_R_16F, v);
    case CUBLAS_COMPUTE_32F_FAST_16BF: return round_to(CUDA_R_16BF, v);
    default: return v;
  }
}

/// Relative spacing of a type's values (one unit in the last place at 1.0).
inline double ulp(cudaDataType_t t) { return t == CUDA_R_16F ? 0x1p-10 : t == CUDA_R_16BF ? 0x1p-7 : 0x1p-23; }

/// A device allocation (freed on destruction unless taken).
struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) { REQUIRE(cudaMalloc(&p, n) == cudaSuccess); }
  ~DeviceBuffer() {
    if (p) (void)cudaFree(p);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  char* at(size_t offset) const { return static_cast<char*>(p) + offset; }
};

/// A column-major matrix (with batch entries) as doubles that its type represents exactly, padding included.
struct HostMat {
  cudaDataType_t type = CUDA_R_32F;
  int64_t rows = 0, cols = 0, ld = 0, stride = 0;
  int32_t batch = 1;
  std::vector<double> v;
  /// stride_elems < 0: the matrices follow each other with a gap of 5 elements.
  HostMat(cudaDataType_t t, int64_t r, int64_t c, int64_t pad, int32_t b, bool shared, int64_t stride_elems = -1)
      : type(t), rows(r), cols(c), ld(r + pad), stride(shared ? 0 : stride_elems >= 0 ? stride_elems : (r + pad) * c + 5),
        batch(b) {
    v.assign(static_cast<size_t>(shared ? ld * cols : (batch - 1) * stride + ld * cols), kSentinel);
  }
  size_t index(int32_t e, int64_t i, int64_t j) const { return static_cast<size_t>(e * stride + i + j * ld); }
  double& at(int32_t e, int64_t i, int64_t j) { return v[index(e, i, j)]; }
  double at(int32_t e, int64_t i, int64_t j) const { return v[index(e, i, j)]; }
  bool inside(size_t x) const {  // whether element x lies inside some batch entry's matrix
    const int64_t off = stride ? static_cast<int64_t>(x) % stride : static_cast<int64_t>(x);
    return (!stride || static_cast<int64_t>(x) / stride < batch) && off < ld * cols && off % ld < rows;
  }
  /// Fills the matrices with values in [-1, 1] (or `fill`), rounded to the type; padding keeps `pad_value`.
  void fill(std::mt19937& rng, double pad_value, double fill = 2.0) {
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    for (size_t x = 0; x < v.size(); ++x) v[x] = inside(x) ? round_to(type, fill == 2.0 ? d(rng) : fill) : pad_value;
  }
  std::vector<unsigned char> bytes() const {
    std::vector<unsigned char> out(v.size() * esize(type));
    for (size_t x = 0; x < v.size(); ++x) {
      const float f = static_cast<float>(v[x]);
      const uint16_t h = type == CUDA_R_16F ? Half(f).bits : BFloat16(f).bits;
      if (type == CUDA_R_32F) std::memcpy(&out[x * 4], &f, 4);
      else std::memcpy(&out[x * 2], &h, 2);
    }
    return out;
  }
  void set_bytes(const std::vector<unsigned char>& in) {
    for (size_t x = 0; x < v.size(); ++x) {
      uint16_t h = 0;
      float f = 0;
      if (type == CUDA_R_32F) std::memcpy(&f, &in[x * 4], 4);
      else std::memcpy(&h, &in[x * 2], 2);
      v[x] = type == CUDA_R_32F ? f : type == CUDA_R_16F ? float(Half::from_bits(h)) : float(BFloat16::from_bits(h));
    }
  }
};

inline void upload(const DeviceBuffer& d, const HostMat& h) {
  const auto b = h.bytes();
  REQUIRE(b.size() <= d.bytes);
  REQUIRE(cudaMemcpy(d.p, b.data(), b.size(), cudaMemcpyHostToDevice) == cudaSuccess);
}
inline void download(const DeviceBuffer& d, HostMat& h) {
  std::vector<unsigned char> b(h.v.size() * esize(h.type));
  REQUIRE(cudaMemcpy(b.data(), d.p, b.size(), cudaMemcpyDeviceToHost) == cudaSuccess);
  h.set_bytes(b);
}

/// One GEMM problem.
struct Spec {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t ab = CUDA_R_32F, cd = CUDA_R_32F;
  bool ta = false, tb = false;
  int64_t m = 13, n = 7, k = 19, pad = 3;
  int32_t batch = 1;
  bool shared_a = false, shared_b = false;  ///< strided batch offset 0
  float alpha = 1.0f, beta = 0.0f;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int64_t bias_stride = 0;                  ///< CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE (batch > 1)
  bool in_place = false;                    ///< C == D
  bool device_scalars = false;              ///< CUBLASLT_POINTER_MODE_DEVICE
  uint64_t max_workspace = 0;               ///< the preference's MAX_WORKSPACE_BYTES
  unsigned seed = 1;
};

inline std::string describe(const Spec& s) {
  return "compute " + std::to_string(s.compute) + " ab " + std::to_string(s.ab) + " cd " + std::to_string(s.cd) +
         (s.ta ? " T" : " N") + (s.tb ? "T" : "N") + " m " + std::to_string(s.m) + " n " + std::to_string(s.n) +
         " k " + std::to_string(s.k) + " pad " + std::to_string(s.pad) + " batch " + std::to_string(s.batch) +
         (s.shared_a ? " shared-a" : "") + (s.shared_b ? " shared-b" : "") + " alpha " + std::to_string(s.alpha) +
         " beta " + std::to_string(s.beta) + " epilogue " + std::to_string(s.epilogue) + (s.in_place ? " in-place" : "") +
         (s.device_scalars ? " device-scalars" : "");
}

inline bool has_bias(uint32_t e) { return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS; }
inline bool is_bgrad(uint32_t e) { return e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB; }

/// A GEMM through the cuBLASLt API with everything it needs, ready to run or to be spoiled one argument at a time.
struct Gemm {
  Spec s;
  HostMat a, b, c, bias;
  DeviceBuffer da, db, dc, dd, dbias, dscalars, dwork;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr, ld = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  float alpha = 1.0f, beta = 0.0f;  ///< host copies handed to cublasLtMatmul in host pointer mode

  static int64_t bias_len(const Spec& s) { return s.epilogue == CUBLASLT_EPILOGUE_BGRADB ? s.n : s.m; }
  explicit Gemm(const Spec& spec)
      : s(spec),
        a(spec.ab, spec.ta ? spec.k : spec.m, spec.ta ? spec.m : spec.k, spec.pad, spec.batch, spec.shared_a),
        b(spec.ab, spec.tb ? spec.n : spec.k, spec.tb ? spec.k : spec.n, spec.pad, spec.batch, spec.shared_b),
        c(spec.cd, spec.m, spec.n, spec.pad, spec.batch, false),
        bias(spec.cd, bias_len(spec), 1, 0, spec.batch, spec.bias_stride == 0, spec.bias_stride),
        da(a.v.size() * esize(spec.ab)), db(b.v.size() * esize(spec.ab)), dc(c.v.size() * esize(spec.cd)),
        dd(c.v.size() * esize(spec.cd)), dbias(bias.v.size() * esize(spec.cd) + 256), dscalars(256),
        dwork(size_t{8} << 20) {
    std::mt19937 rng(s.seed);
    a.fill(rng, kNaN);  // NaN padding: reading it would poison the result
    b.fill(rng, kNaN);
    // beta == 0 must not read C: NaN there must not leak into D.
    c.fill(rng, kSentinel, s.beta == 0.0f ? kNaN : 2.0);
    bias.fill(rng, kSentinel, is_bgrad(s.epilogue) ? kSentinel : 2.0);
    upload(da, a), upload(db, b), upload(dc, c), upload(dbias, bias);
    HostMat sentinel = c;
    for (double& x : sentinel.v) x = kSentinel;
    upload(dd, sentinel);
    alpha = s.alpha, beta = s.beta;
    const float scalars[2] = {s.alpha, s.beta};
    REQUIRE(cudaMemcpy(dscalars.p, scalars, sizeof scalars, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
    create_descriptors();
  }
  ~Gemm() {
    for (auto* l : {la, lb, lc, ld}) (void)cublasLtMatrixLayoutDestroy(l);
    (void)cublasLtMatmulDescDestroy(desc);
    (void)cublasLtMatmulPreferenceDestroy(pref);
    (void)cublasLtDestroy(handle);
    (void)cudaStreamDestroy(stream);
  }
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void* d_ptr() const { return s.in_place ? dc.p : dd.p; }
  template <class T>
  void set_desc(cublasLtMatmulDescAttributes_t attr, const T& v) {
    REQUIRE(cublasLtMatmulDescSetAttribute(desc, attr, &v, sizeof v) == kOk);
  }
  template <class T>
  static void set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, const T& v) {
    REQUIRE(cublasLtMatrixLayoutSetAttribute(l, attr, &v, sizeof v) == kOk);
  }
  template <class T>
  void set_pref(cublasLtMatmulPreferenceAttributes_t attr, const T& v) {
    REQUIRE(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof v) == kOk);
  }
  cublasLtMatrixLayout_t make_layout(const HostMat& h) {
    cublasLtMatrixLayout_t l = nullptr;
    REQUIRE(cublasLtMatrixLayoutCreate(&l, h.type, static_cast<uint64_t>(h.rows), static_cast<uint64_t>(h.cols), h.ld) ==
            kOk);
    if (s.batch > 1) {
      set_layout(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, s.batch);
      set_layout(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, h.stride);
    }
    return l;
  }
  void create_descriptors() {
    REQUIRE(cublasLtCreate(&handle) == kOk);
    REQUIRE(cublasLtMatmulDescCreate(&desc, s.compute, CUDA_R_32F) == kOk);
    set_desc(CUBLASLT_MATMUL_DESC_TRANSA, s.ta ? CUBLAS_OP_T : CUBLAS_OP_N);
    set_desc(CUBLASLT_MATMUL_DESC_TRANSB, s.tb ? CUBLAS_OP_T : CUBLAS_OP_N);
    if (s.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      set_desc(CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<cublasLtEpilogue_t>(s.epilogue));
      set_desc(CUBLASLT_MATMUL_DESC_BIAS_POINTER, dbias.p);
      if (s.batch > 1) set_desc(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, s.bias_stride);
    }
    if (s.device_scalars) set_desc(CUBLASLT_MATMUL_DESC_POINTER_MODE, int32_t{CUBLASLT_POINTER_MODE_DEVICE});
    la = make_layout(a), lb = make_layout(b), lc = make_layout(c), ld = make_layout(c);
    REQUIRE(cublasLtMatmulPreferenceCreate(&pref) == kOk);
    set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, s.max_workspace);
  }

  /// cublasLtMatmulAlgoGetHeuristic with the preference; `found` gets the results.
  cublasStatus_t heuristic(std::vector<cublasLtMatmulHeuristicResult_t>& found, int requested = 8) {
    found.assign(static_cast<size_t>(requested), {});
    int count = -1;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, desc, la, lb, lc, ld, pref, requested, found.data(), &count);
    found.resize(static_cast<size_t>(std::max(count, 0)));
    return st;
  }
  /// The heuristic's first algorithm (which must exist).
  cublasLtMatmulHeuristicResult_t best() {
    std::vector<cublasLtMatmulHeuristicResult_t> found;
    REQUIRE(heuristic(found) == kOk);
    REQUIRE(!found.empty());
    CHECK(found[0].state == kOk);
    return found[0];
  }
  /// cublasLtMatmul with this object's arguments (alpha/beta from the host copies or the device buffer).
  cublasStatus_t run(const cublasLtMatmulAlgo_t* algo, size_t ws_bytes, void* ws = nullptr) {
    const void* pa = s.device_scalars ? dscalars.at(0) : static_cast<const void*>(&alpha);
    const void* pb = s.device_scalars ? dscalars.at(4) : static_cast<const void*>(&beta);
    return cublasLtMatmul(handle, desc, pa, da.p, la, db.p, lb, pb, dc.p, lc, d_ptr(), ld, algo, ws ? ws : dwork.p,
                          ws_bytes, stream);
  }
  /// Runs the heuristic's first algorithm with its workspace and checks the result.
  void run_and_check() {
    const auto r = best();
    REQUIRE(run(&r.algo, r.workspaceSize) == kOk);
    check();
  }

  double op_a(int32_t e, int64_t i, int64_t l) const { return s.ta ? a.at(e, l, i) : a.at(e, i, l); }
  double op_b(int32_t e, int64_t l, int64_t j) const { return s.tb ? b.at(e, j, l) : b.at(e, l, j); }

  /// Synchronises, then compares D (and the bias gradient) with the float64 reference; D's padding is untouched.
  void check() {
    INFO(describe(s));
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
    HostMat got = c;
    download(s.in_place ? dc : dd, got);
    HostMat got_bias = bias;
    download(dbias, got_bias);
    int bad = 0;
    for (int32_t e = 0; e < s.batch; ++e) {
      for (int64_t j = 0; j < s.n; ++j)
        for (int64_t i = 0; i < s.m; ++i) {
          double acc = 0, mag = 0;
          for (int64_t l = 0; l < s.k; ++l) {
            const double p = round_input(s.compute, op_a(e, i, l)) * round_input(s.compute, op_b(e, l, j));
            acc += p, mag += std::fabs(p);
          }
          double want = s.alpha * acc, err = (s.k + 2) * 0x1p-24 * mag * std::fabs(s.alpha);
          if (s.beta != 0) want += s.beta * c.at(e, i, j), err += 0x1p-23 * std::fabs(s.beta * c.at(e, i, j));
          if (has_bias(s.epilogue)) want += bias.at(s.bias_stride ? e : 0, i, 0), err += 0x1p-23 * std::fabs(want);
          if ((s.epilogue & CUBLASLT_EPILOGUE_RELU) && want < 0) want = 0;
          const double tol = err + ulp(s.cd) * (std::fabs(want) + err) + 0x1p-24;
          const double g = got.at(e, i, j);
          if (!(std::fabs(g - want) <= tol) && bad++ < 5)
            FAIL_CHECK("D[" << e << "](" << i << ", " << j << "): got " << g << ", want " << want << " +- " << tol);
        }
      if (is_bgrad(s.epilogue)) check_bias_gradient(got_bias, e, bad);
    }
    for (size_t x = 0; x < got.v.size(); ++x)
      if (!got.inside(x) && got.v[x] != kSentinel && bad++ < 5) FAIL_CHECK("D's padding element " << x << " was written");
    CHECK(bad == 0);
  }
  void check_bias_gradient(const HostMat& got, int32_t e, int& bad) const {
    const bool of_a = s.epilogue == CUBLASLT_EPILOGUE_BGRADA;
    for (int64_t x = 0; x < (of_a ? s.m : s.n); ++x) {
      double want = 0, mag = 0;
      for (int64_t l = 0; l < s.k; ++l) {
        const double v = of_a ? op_a(e, x, l) : op_b(e, l, x);
        want += v, mag += std::fabs(v);
      }
      const double tol = (s.k + 1) * 0x1p-24 * mag + ulp(s.cd) * std::fabs(want) + 0x1p-24;
      const double g = got.at(s.bias_stride ? e : 0, x, 0);
      if (!(std::fabs(g - want) <= tol) && bad++ < 5)
        FAIL_CHECK("bias gradient[" << e << "](" << x << "): got " << g << ", want " << want << " +- " << tol);
    }
  }
};

/// Checks a rejected call: its status and that its recorded reason contains `why`.
#define CHECK_REJECTED(call, status, why)                    \
  do {                                                       \
    CHECK((call) == (status));                               \
    CHECK_THAT(cublaslt_last_error(), Catch::Contains(why)); \
  } while (0)

struct TypeCombo {
  cublasComputeType_t compute;
  cudaDataType_t ab, cd;
};
/// Every combination of the documented table the mock computes.
inline constexpr TypeCombo kCombos[] = {
    {CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_32F},           {CUBLAS_COMPUTE_32F, CUDA_R_16F, CUDA_R_16F},
    {CUBLAS_COMPUTE_32F, CUDA_R_16F, CUDA_R_32F},           {CUBLAS_COMPUTE_32F, CUDA_R_16BF, CUDA_R_16BF},
    {CUBLAS_COMPUTE_32F, CUDA_R_16BF, CUDA_R_32F},          {CUBLAS_COMPUTE_32F_PEDANTIC, CUDA_R_16F, CUDA_R_16F},
    {CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F, CUDA_R_32F}, {CUBLAS_COMPUTE_32F_FAST_16F, CUDA_R_32F, CUDA_R_32F},
    {CUBLAS_COMPUTE_32F_FAST_16BF, CUDA_R_32F, CUDA_R_32F},
};

}  // namespace mixtape::testing::cublaslt
