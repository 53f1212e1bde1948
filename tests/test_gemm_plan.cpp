// The host-side planning of cuBLASLt GEMMs (cuda/gemm_plan.h), run on the CPU: the row-major -> column-major
// mapping is checked by executing the plan with a plain column-major GEMM written here (what cuBLASLt computes
// from the layouts and transposes) and comparing with a row-major product; plus compute types, epilogue
// selection and fallbacks, alignment, the cache key and the algorithm cache. Compiled in CUDA builds only.
#ifdef MIXTAPE_WITH_CUDA
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "core/error.h"
#include "cuda/gemm_plan.h"

using namespace mixtape;
using namespace mixtape::cuda;

namespace {

GemmDesc desc(int64_t m, int64_t n, int64_t k, bool ta = false, bool tb = false, DType dt = DType::f32) {
  GemmDesc d;
  d.dtype = dt;
  d.m = m;
  d.n = n;
  d.k = k;
  d.trans_a = ta;
  d.trans_b = tb;
  return d;
}

/// What cuBLASLt computes for a plan: D = alpha * op(A) op(B) + beta * C on column-major layouts, per batch entry.
void run_column_major(const GemmPlan& p, const std::vector<double>& a, const std::vector<double>& b,
                      std::vector<double>& c) {
  REQUIRE(p.a.batch == p.b.batch);
  REQUIRE(p.a.batch == p.c.batch);
  for (int32_t e = 0; e < p.c.batch; ++e) {
    const double* A = a.data() + e * p.a.stride;
    const double* B = b.data() + e * p.b.stride;
    double* C = c.data() + e * p.c.stride;
    // op(A) is m x k, op(B) is k x n; the stored shapes must agree with the layouts.
    const bool ta = p.op_a == CUBLAS_OP_T, tb = p.op_b == CUBLAS_OP_T;
    REQUIRE(p.a.rows == static_cast<uint64_t>(ta ? p.k : p.m));
    REQUIRE(p.a.cols == static_cast<uint64_t>(ta ? p.m : p.k));
    REQUIRE(p.b.rows == static_cast<uint64_t>(tb ? p.n : p.k));
    REQUIRE(p.b.cols == static_cast<uint64_t>(tb ? p.k : p.n));
    REQUIRE(p.c.rows == static_cast<uint64_t>(p.m));
    REQUIRE(p.c.cols == static_cast<uint64_t>(p.n));
    REQUIRE(p.a.ld >= static_cast<int64_t>(p.a.rows));
    REQUIRE(p.b.ld >= static_cast<int64_t>(p.b.rows));
    REQUIRE(p.c.ld >= static_cast<int64_t>(p.c.rows));
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < p.k; ++l) {
          const double av = ta ? A[l + i * p.a.ld] : A[i + l * p.a.ld];
          const double bv = tb ? B[j + l * p.b.ld] : B[l + j * p.b.ld];
          s += av * bv;
        }
        double& d = C[i + j * p.c.ld];
        d = p.alpha * s + p.beta * d;
      }
  }
}

}  // namespace

TEST_CASE("gemm plan: the swapped column-major call computes the row-major product (transposes, batches, stride 0)",
          "[gemm][plan]") {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> small(-3, 3);
  struct Shape3 {
    int64_t batch, m, n, k;
    bool shared_a, shared_b;
  };
  for (const Shape3 s : {Shape3{1, 1, 1, 1, false, false}, Shape3{1, 7, 13, 5, false, false},
                         Shape3{3, 4, 6, 5, false, false}, Shape3{3, 4, 6, 5, true, false},
                         Shape3{3, 4, 6, 5, false, true}, Shape3{2, 3, 1, 9, false, false}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      INFO("batch " << s.batch << " m " << s.m << " n " << s.n << " k " << s.k << (ta ? " T" : " N") << (tb ? "T" : "N")
                    << (s.shared_a ? " shared a" : "") << (s.shared_b ? " shared b" : ""));
      GemmDesc d = desc(s.m, s.n, s.k, ta, tb);
      d.batch = s.batch;
      d.stride_a = s.shared_a ? 0 : s.m * s.k;
      d.stride_b = s.shared_b ? 0 : s.k * s.n;
      d.stride_out = s.m * s.n;
      d.alpha = 2.0;
      d.beta = 0.5;
      std::vector<double> a(static_cast<size_t>((s.shared_a ? 1 : s.batch) * s.m * s.k));
      std::vector<double> b(static_cast<size_t>((s.shared_b ? 1 : s.batch) * s.k * s.n));
      std::vector<double> out(static_cast<size_t>(s.batch * s.m * s.n));
      for (double& v : a) v = small(rng);
      for (double& v : b) v = small(rng);
      for (double& v : out) v = small(rng);
      std::vector<double> want = out;
      for (int64_t e = 0; e < s.batch; ++e)
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j) {
            double sum = 0;
            for (int64_t r = 0; r < s.k; ++r) {
              const double av = a[static_cast<size_t>(e * d.stride_a + (ta ? r * s.m + i : i * s.k + r))];
              const double bv = b[static_cast<size_t>(e * d.stride_b + (tb ? j * s.k + r : r * s.n + j))];
              sum += av * bv;
            }
            double& o = want[static_cast<size_t>(e * s.m * s.n + i * s.n + j)];
            o = 2.0 * sum + 0.5 * o;
          }
      const GemmPlan p = plan_gemm(d, {});
      CHECK(p.m == s.n);
      CHECK(p.n == s.m);
      CHECK(p.op_a == (tb ? CUBLAS_OP_T : CUBLAS_OP_N));  // cuBLASLt's A is our b
      CHECK(p.op_b == (ta ? CUBLAS_OP_T : CUBLAS_OP_N));
      if (s.batch == 1) CHECK(p.c.stride == 0);
      if (s.shared_a) CHECK(p.b.stride == 0);
      if (s.shared_b) CHECK(p.a.stride == 0);
      run_column_major(p, b, a, out);  // swapped operands
      CHECK(out == want);
    }
  }
}

TEST_CASE("gemm plan: compute types (float32 accumulation, TF32 only when allowed, f64 rejected)", "[gemm][plan]") {
  GemmPlanOptions tf32;
  tf32.allow_tf32 = true;
  CHECK(plan_gemm(desc(2, 2, 2), {}).compute == CUBLAS_COMPUTE_32F);
  CHECK(plan_gemm(desc(2, 2, 2), tf32).compute == CUBLAS_COMPUTE_32F_FAST_TF32);
  for (DType dt : {DType::f16, DType::bf16}) {
    const GemmPlan p = plan_gemm(desc(2, 2, 2, false, false, dt), tf32);
    CHECK(p.compute == CUBLAS_COMPUTE_32F);
    CHECK(p.scale_type == CUDA_R_32F);
    CHECK(p.a.type == lt_data_type(dt));
    CHECK(p.c.type == lt_data_type(dt));
  }
  CHECK(lt_data_type(DType::f16) == CUDA_R_16F);
  CHECK(lt_data_type(DType::bf16) == CUDA_R_16BF);
  CHECK_THROWS_WITH(plan_gemm(desc(2, 2, 2, false, false, DType::f64), {}), Catch::Contains("f64 is CPU-only"));
  CHECK_THROWS_WITH(lt_data_type(DType::i64), Catch::Contains("i64"));
  CHECK_THROWS_WITH(plan_gemm(desc(2, 0, 2), {}), Catch::Contains("n=0"));
}

TEST_CASE("gemm plan: epilogue selection and fallbacks", "[gemm][plan]") {
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    INFO(dtype_name(dt));
    GemmDesc d = desc(5, 3, 4, false, true, dt);
    d.epilogue = GemmEpilogue::bias;
    GemmPlan p = plan_gemm(d, {});
    CHECK(p.epilogue == CUBLASLT_EPILOGUE_BIAS);
    CHECK(p.lt_bias);
    CHECK_FALSE(p.epilogue_pass);
    d.epilogue = GemmEpilogue::bias_relu;
    CHECK(plan_gemm(d, {}).epilogue == CUBLASLT_EPILOGUE_RELU_BIAS);
    // GELU: cuBLASLt's is the tanh approximation, fn::Gelu is exact -> never the fused epilogue.
    d.epilogue = GemmEpilogue::bias_gelu;
    d.beta = 0.25;
    p = plan_gemm(d, {});
    CHECK(p.epilogue == CUBLASLT_EPILOGUE_DEFAULT);
    CHECK_FALSE(p.lt_bias);
    CHECK(p.epilogue_pass);
    CHECK(p.act == EpilogueAct::gelu);
    if (dt == DType::f32) {
      CHECK_FALSE(p.float_buffer);  // cuBLASLt writes out (with beta), the pass adds bias in place
      CHECK(p.beta == 0.25f);
      CHECK(p.pass_beta == 0.0f);
    } else {
      CHECK(p.float_buffer);  // float result kept for the one rounding
      CHECK(p.c.type == CUDA_R_32F);
      CHECK(p.a.type == lt_data_type(dt));
      CHECK(p.beta == 0.0f);
      CHECK(p.pass_beta == 0.25f);
    }
    // No fused algorithm: the pass does bias / relu too.
    GemmPlanOptions no_lt;
    no_lt.lt_bias = false;
    d.epilogue = GemmEpilogue::bias_relu;
    p = plan_gemm(d, no_lt);
    CHECK(p.epilogue == CUBLASLT_EPILOGUE_DEFAULT);
    CHECK(p.epilogue_pass);
    CHECK(p.act == EpilogueAct::relu);
  }
  GemmDesc d = desc(6, 2, 8, true, false);
  d.epilogue = GemmEpilogue::bias;
  d.batch = 2;
  CHECK_THROWS_WITH(plan_gemm(d, {}), Catch::Contains("batch == 1"));
}

TEST_CASE("gemm plan: a_sums through BGRADB (our a is cuBLASLt's B) or a separate reduction", "[gemm][plan]") {
  GemmDesc d = desc(6, 2, 8, true, false, DType::f16);  // Linear's grad_weight: grad_out^T @ x
  d.a_sums = true;
  GemmPlan p = plan_gemm(d, {});
  CHECK(p.epilogue == CUBLASLT_EPILOGUE_BGRADB);
  CHECK(p.lt_a_sums);
  CHECK_FALSE(p.sums_pass);
  CHECK(static_cast<int64_t>(p.c.cols) == d.m);  // BGRADB: one sum per column of cuBLASLt's D = per row of ours
  GemmPlanOptions no_bgrad;
  no_bgrad.lt_bias_grad = false;
  p = plan_gemm(d, no_bgrad);
  CHECK(p.epilogue == CUBLASLT_EPILOGUE_DEFAULT);
  CHECK(p.sums_pass);
  d.alpha = 2.0;  // a_sums are unscaled; whether BGRAD sees alpha is not documented -> reduction
  CHECK(plan_gemm(d, {}).sums_pass);
  d.alpha = 1.0;
  d.epilogue = GemmEpilogue::bias;  // one cuBLASLt epilogue per call: the bias wins, the sums are a pass
  p = plan_gemm(d, {});
  CHECK(p.epilogue == CUBLASLT_EPILOGUE_BIAS);
  CHECK(p.sums_pass);
  CHECK_FALSE(p.lt_a_sums);
}

TEST_CASE("gemm plan: pointer alignment and the cache key", "[gemm][plan]") {
  CHECK(pointer_alignment(nullptr) == 256);
  CHECK(pointer_alignment(reinterpret_cast<void*>(0x10000)) == 256);
  CHECK(pointer_alignment(reinterpret_cast<void*>(0x10002)) == 2);
  CHECK(pointer_alignment(reinterpret_cast<void*>(0x10008)) == 8);
  CHECK(pointer_alignment(reinterpret_cast<void*>(0x10010)) == 16);
  CHECK(pointer_alignment(reinterpret_cast<void*>(0x10001)) == 1);

  void* p0 = reinterpret_cast<void*>(0x100000);
  void* p2 = reinterpret_cast<void*>(0x100002);
  const GemmPlan base = plan_gemm(desc(7, 13, 5), {});
  const GemmKey k0 = make_key(base, 0, p0, p0, p0, nullptr);
  CHECK(k0 == make_key(base, 0, p0, p0, p0, nullptr));
  CHECK(hash_key(k0) == hash_key(make_key(base, 0, p0, p0, p0, nullptr)));
  CHECK(k0.align_bias == 0);  // no bias pointer in this plan
  // Each thing the heuristic sees changes the key.
  CHECK_FALSE(k0 == make_key(base, 1, p0, p0, p0, nullptr));                             // device
  CHECK_FALSE(k0 == make_key(base, 0, p2, p0, p0, nullptr));                             // alignment of A
  CHECK_FALSE(k0 == make_key(base, 0, p0, p0, p2, nullptr));                             // alignment of C
  CHECK_FALSE(k0 == make_key(plan_gemm(desc(7, 13, 6), {}), 0, p0, p0, p0, nullptr));    // k
  CHECK_FALSE(k0 == make_key(plan_gemm(desc(7, 13, 5, true), {}), 0, p0, p0, p0, nullptr));  // transpose
  CHECK_FALSE(k0 == make_key(plan_gemm(desc(7, 13, 5, false, false, DType::bf16), {}), 0, p0, p0, p0, nullptr));
  GemmPlanOptions tf32;
  tf32.allow_tf32 = true;
  CHECK_FALSE(k0 == make_key(plan_gemm(desc(7, 13, 5), tf32), 0, p0, p0, p0, nullptr));
  GemmDesc bias = desc(7, 13, 5);
  bias.epilogue = GemmEpilogue::bias;
  const GemmKey kb = make_key(plan_gemm(bias, {}), 0, p0, p0, p0, p2);
  CHECK_FALSE(k0 == kb);
  CHECK(kb.align_bias == 2);
  GemmDesc batched = desc(7, 13, 5);
  batched.batch = 3;
  batched.stride_a = 35;
  batched.stride_b = 65;
  batched.stride_out = 91;
  GemmDesc shared = batched;
  shared.stride_b = 0;
  CHECK_FALSE(make_key(plan_gemm(batched, {}), 0, p0, p0, p0, nullptr) ==
              make_key(plan_gemm(shared, {}), 0, p0, p0, p0, nullptr));
  CHECK(describe_key(kb).find("epilogue=BIAS") != std::string::npos);
  CHECK(describe_key(k0).find("m=13 n=7 k=5") != std::string::npos);
}

TEST_CASE("gemm plan: the algorithm cache remembers answers and counts queries", "[gemm][plan]") {
  GemmAlgoCache cache;
  const GemmKey k1 = make_key(plan_gemm(desc(3, 4, 5), {}), 0, nullptr, nullptr, nullptr, nullptr);
  const GemmKey k2 = make_key(plan_gemm(desc(3, 4, 6), {}), 0, nullptr, nullptr, nullptr, nullptr);
  std::optional<cublasLtMatmulAlgo_t> algo;
  CHECK_FALSE(cache.find(k1, algo));
  cublasLtMatmulAlgo_t a{};
  a.data[0] = 42;
  cache.insert(k1, a);
  cache.insert(k2, std::nullopt);  // "no algorithm" is an answer too
  CHECK(cache.queries() == 2);
  CHECK(cache.size() == 2);
  REQUIRE(cache.find(k1, algo));
  REQUIRE(algo.has_value());
  CHECK(algo->data[0] == 42);
  REQUIRE(cache.find(k2, algo));
  CHECK_FALSE(algo.has_value());
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK(cache.queries() == 0);
  CHECK_FALSE(cache.find(k1, algo));
}
#endif  // MIXTAPE_WITH_CUDA
