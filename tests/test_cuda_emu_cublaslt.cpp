// The cuBLASLt mock of the emulation build (cuda/emu/cublaslt_mock*.cpp), called through the cuBLASLt API on
// device buffers of the fake runtime: results against a float64 reference computed here from the same rounded
// inputs, for every type combination, both transposes, ld > rows, strided and stride-0 batches, alpha/beta (beta 0
// never reads C), every epilogue, in place, both algorithms and both pointer modes. The status codes for bad
// arguments are in test_cuda_emu_cublaslt_status.cpp.
#ifdef MIXTAPE_CUDA_EMU
#include "cuda_emu/cublaslt_fixture.h"

using namespace mixtape::testing::cublaslt;

TEST_CASE("cublaslt mock: every type combination and transpose matches float64, with ld > rows and alpha, beta",
          "[cuda_emu][cublaslt]") {
  for (const TypeCombo& tc : kCombos)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.0f, -0.75f}) {
        Spec s;
        s.compute = tc.compute, s.ab = tc.ab, s.cd = tc.cd;
        s.ta = t & 1, s.tb = t & 2;
        s.alpha = 1.5f, s.beta = beta;
        s.seed = static_cast<unsigned>(t + 10);
        Gemm g(s);
        g.run_and_check();
      }
}

TEST_CASE("cublaslt mock: strided batches, stride 0 operands and in-place C == D", "[cuda_emu][cublaslt]") {
  for (const TypeCombo& tc : {kCombos[0], kCombos[1], kCombos[3]})
    for (int t = 0; t < 4; ++t)
      for (int shared = 0; shared < 3; ++shared)
        for (bool in_place : {false, true}) {
          Spec s;
          s.compute = tc.compute, s.ab = tc.ab, s.cd = tc.cd;
          s.ta = t & 1, s.tb = t & 2;
          s.batch = 3, s.shared_a = shared == 1, s.shared_b = shared == 2;
          s.alpha = 0.5f, s.beta = in_place && shared ? 0.0f : 2.0f;  // beta == 0 in place: NaN in C must vanish
          s.in_place = in_place;
          Gemm g(s);
          g.run_and_check();
        }
}

TEST_CASE("cublaslt mock: C with leading dimension 0 broadcasts its first column, an omitted Cdesc is Ddesc",
          "[cuda_emu][cublaslt]") {
  for (const TypeCombo& tc : {kCombos[0], kCombos[2], kCombos[3]}) {
    Spec s;
    s.compute = tc.compute, s.ab = tc.ab, s.cd = tc.cd, s.batch = 2, s.beta = 0.5f, s.tb = true;
    Gemm g(s);
    // On the device, C's columns after the first are NaN: with ld 0 only column 0 is read ([G] cublasLtMatmul:
    // "the leading dimension of C can be 0 to achieve row or column broadcast").
    HostMat device_c = g.c;
    for (int32_t e = 0; e < s.batch; ++e)
      for (int64_t j = 1; j < s.n; ++j)
        for (int64_t i = 0; i < s.m; ++i) device_c.at(e, i, j) = kNaN, g.c.at(e, i, j) = g.c.at(e, i, 0);
    upload(g.dc, device_c);
    Gemm::set_layout(g.lc, CUBLASLT_MATRIX_LAYOUT_LD, int64_t{0});
    g.run_and_check();
  }
  Spec s;
  s.beta = 1.0f;
  Gemm g(s);
  REQUIRE(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, nullptr, g.dd.p, g.ld,
                         nullptr, nullptr, 0, g.stream) == kOk);
  g.check();
}

TEST_CASE("cublaslt mock: BIAS, RELU_BIAS, RELU, BGRADA and BGRADB epilogues match float64", "[cuda_emu][cublaslt]") {
  for (const TypeCombo& tc : kCombos)
    for (uint32_t ep : {CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_RELU_BIAS, CUBLASLT_EPILOGUE_RELU,
                        CUBLASLT_EPILOGUE_BGRADA, CUBLASLT_EPILOGUE_BGRADB})
      for (int t = 0; t < 4; ++t) {
        Spec s;
        s.compute = tc.compute, s.ab = tc.ab, s.cd = tc.cd;
        s.ta = t & 1, s.tb = t & 2;
        if (ep == CUBLASLT_EPILOGUE_BGRADA && s.ta) continue;  // NOT_SUPPORTED, tested below
        if (ep == CUBLASLT_EPILOGUE_BGRADB && !s.tb) continue;
        s.epilogue = ep;
        s.beta = t == 3 ? 0.25f : 0.0f;
        Gemm g(s);
        g.run_and_check();
      }
  // Batched: one broadcast bias (stride 0), per-entry biases and per-entry bias gradients.
  for (uint32_t ep : {CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_BGRADB})
    for (int64_t stride : {int64_t{0}, int64_t{16}}) {
      if (ep == CUBLASLT_EPILOGUE_BGRADB && stride == 0) continue;  // overlapping outputs: rejected below
      Spec s;
      s.tb = true, s.batch = 3, s.bias_stride = stride, s.epilogue = ep, s.ab = s.cd = CUDA_R_16BF;
      Gemm g(s);
      g.run_and_check();
    }
}

TEST_CASE("cublaslt mock: the output is rounded once (f16 bias epilogue) and TF32, f16, bf16 inputs are emulated",
          "[cuda_emu][cublaslt]") {
  // acc = 2^-11 + 2^-22 (exact in float); + bias 1 rounds once to 1 + 2^-10 in f16. Rounding acc to f16 first
  // gives 2^-11, and 1 + 2^-11 then ties to even: 1.0.
  Spec s;
  s.ab = s.cd = CUDA_R_16F, s.m = 1, s.n = 1, s.k = 2, s.pad = 0, s.epilogue = CUBLASLT_EPILOGUE_BIAS;
  Gemm g(s);
  g.a.v = {0x1p-11, 0x1p-22};
  g.b.v = {1.0, 1.0};
  g.bias.v = {1.0};
  upload(g.da, g.a), upload(g.db, g.b), upload(g.dbias, g.bias);
  g.run_and_check();
  HostMat d = g.c;
  download(g.dd, d);
  CHECK(d.v[0] == 1.0 + 0x1p-10);
  // x times 1 for x exact in float: TF32 and f16 keep 10 mantissa bits (1 + 3 * 2^-11 is a tie: to even, 1 + 2^-9),
  // bf16 keeps 7.
  struct Expect {
    cublasComputeType_t compute;
    double small, tie;  // results for x = 1 + 2^-12 and x = 1 + 3 * 2^-11
  };
  for (const Expect& x : {Expect{CUBLAS_COMPUTE_32F, 1.0 + 0x1p-12, 1.0 + 0x3p-11},
                          Expect{CUBLAS_COMPUTE_32F_FAST_TF32, 1.0, 1.0 + 0x1p-9},
                          Expect{CUBLAS_COMPUTE_32F_FAST_16F, 1.0, 1.0 + 0x1p-9},
                          Expect{CUBLAS_COMPUTE_32F_FAST_16BF, 1.0, 1.0}})
    for (int tie = 0; tie < 2; ++tie) {
      Spec t;
      t.compute = x.compute, t.m = 1, t.n = 1, t.k = 1, t.pad = 0;
      Gemm h(t);
      h.a.v = {tie ? 1.0 + 0x3p-11 : 1.0 + 0x1p-12};
      h.b.v = {1.0};
      upload(h.da, h.a), upload(h.db, h.b);
      h.run_and_check();
      HostMat out = h.c;
      download(h.dd, out);
      CHECK(out.v[0] == (tie ? x.tie : x.small));
    }
}

TEST_CASE("cublaslt mock: split-K needs a workspace, is offered first when allowed and differs in the last bits",
          "[cuda_emu][cublaslt]") {
  Spec s;
  s.m = 60, s.n = 33, s.k = 1100, s.pad = 4, s.beta = 0.5f, s.max_workspace = 32 << 20;  // ld 64: 16-byte multiples
  s.epilogue = CUBLASLT_EPILOGUE_RELU_BIAS;
  Gemm g(s);
  std::vector<cublasLtMatmulHeuristicResult_t> found;
  REQUIRE(g.heuristic(found) == kOk);
  REQUIRE(found.size() == 2);
  CHECK(found[0].workspaceSize == size_t{4} * 60 * 33 * 4);  // 4 parts of float partial sums
  CHECK(found[1].workspaceSize == 0);
  REQUIRE(g.run(&found[0].algo, found[0].workspaceSize) == kOk);
  g.check();
  HostMat split = g.c;
  download(g.dd, split);
  REQUIRE(g.run(&found[1].algo, 0) == kOk);
  g.check();
  HostMat plain = g.c;
  download(g.dd, plain);
  CHECK(split.v != plain.v);  // another summation order
  // A workspace smaller than the algorithm needs, or none.
  CHECK_REJECTED(g.run(&found[0].algo, found[0].workspaceSize - 1), kInvalid, "workspaceSizeInBytes");
  DeviceBuffer small(1024);
  CHECK_REJECTED(g.run(&found[0].algo, found[0].workspaceSize, small.p), kInvalid, "cublasLtMatmul: workspace");
  // The workspace pointer must be 256-byte aligned, and not NULL when a size is given ([G] cublasLtMatmul).
  CHECK_REJECTED(g.run(&found[1].algo, 1024, g.dwork.at(16)), kInvalid, "256-byte aligned");
  CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dd.p,
                                g.ld, &found[1].algo, nullptr, 1024, g.stream),
                 kInvalid, "cublasLtMatmul: workspace");
  // No workspace allowed: only the plain algorithm.
  g.set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{1000});
  REQUIRE(g.heuristic(found) == kOk);
  REQUIRE(found.size() == 1);
  CHECK(found[0].workspaceSize == 0);
  // An operand the preference says is only 4-byte aligned excludes split-K (16 bytes); 2 bytes excludes every f32
  // algorithm.
  g.set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{32} << 20);
  g.set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t{4});
  REQUIRE(g.heuristic(found) == kOk);
  CHECK(found.size() == 1);
  g.set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32_t{2});
  CHECK_REJECTED(g.heuristic(found), kUnsupported, "no algorithm meets the preference");
  CHECK(found.empty());
}

TEST_CASE("cublaslt mock: pointers must meet the chosen algorithm's alignment", "[cuda_emu][cublaslt]") {
  Spec s;
  s.m = 64, s.n = 16, s.k = 600, s.pad = 0, s.max_workspace = 32 << 20;
  Gemm g(s);
  const auto split = g.best();
  REQUIRE(split.workspaceSize > 0);
  // A one float further into its allocation: in bounds, 4-byte aligned, not 16-byte aligned.
  DeviceBuffer big(g.da.bytes + 64);
  const auto call = [&](const void* a, const cublasLtMatmulAlgo_t* algo, size_t ws) {
    return cublasLtMatmul(g.handle, g.desc, &g.alpha, a, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dd.p, g.ld, algo,
                          g.dwork.p, ws, g.stream);
  };
  CHECK(call(big.at(16), &split.algo, split.workspaceSize) == kOk);
  CHECK_REJECTED(call(big.at(4), &split.algo, split.workspaceSize), kInvalid, "16-byte aligned");
  CHECK_REJECTED(call(big.at(2), nullptr, 0), kInvalid, "4-byte aligned");  // algo NULL: the plain algorithm
  CHECK(call(big.at(4), nullptr, 0) == kOk);
  REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
}

TEST_CASE("cublaslt mock: alpha and beta are read at call time in host mode, on the device in device mode",
          "[cuda_emu][cublaslt]") {
  Spec s;
  s.alpha = 2.0f, s.beta = 0.5f;
  Gemm g(s);
  const auto r = g.best();
  REQUIRE(g.run(&r.algo, 0) == kOk);
  g.alpha = 100.0f, g.beta = -100.0f;  // changed after the call, before the work runs: no effect
  g.check();
  for (float beta : {0.5f, 0.0f}) {  // beta 0 read on the device: C (NaN) is still not read
    Spec d = s;
    d.device_scalars = true, d.beta = beta;
    Gemm h(d);
    h.run_and_check();
  }
  // Descriptors destroyed right after the call: the queued work has its own copy.
  Gemm q(s);
  REQUIRE(q.run(nullptr, 0) == kOk);
  for (auto* l : {q.la, q.lb, q.lc, q.ld}) REQUIRE(cublasLtMatrixLayoutDestroy(l) == kOk);
  REQUIRE(cublasLtMatmulDescDestroy(q.desc) == kOk);
  q.la = q.lb = q.lc = q.ld = nullptr, q.desc = nullptr;
  q.check();
}

TEST_CASE("cublaslt mock: the backend's row-major forward (BIAS) and weight gradient (BGRADB) calls",
          "[cuda_emu][cublaslt]") {
  // cuda/gemm_plan.cpp: row-major out (m, n) = x (m, k) @ w^T is cuBLASLt's D (n x m) = op(A) op(B) with A = w
  // (k x n column-major, op T) and B = x (k x m, op N); bias has n elements = D's rows.
  Spec fwd;
  fwd.ab = fwd.cd = CUDA_R_16F, fwd.ta = true, fwd.m = 24, fwd.n = 32, fwd.k = 48, fwd.pad = 0;
  fwd.epilogue = CUBLASLT_EPILOGUE_BIAS, fwd.max_workspace = 32 << 20;
  Gemm f(fwd);
  f.run_and_check();
  // grad_w (n_out, n_in) = grad_y^T (n_out x batch) @ x: cuBLASLt's B = grad_y with op T; BGRADB sums it over the
  // batch into the bias gradient (length n_out = D's columns).
  Spec wg;
  wg.ab = wg.cd = CUDA_R_16BF, wg.tb = true, wg.m = 48, wg.n = 24, wg.k = 128, wg.pad = 0;
  wg.epilogue = CUBLASLT_EPILOGUE_BGRADB, wg.max_workspace = 32 << 20;
  Gemm w(wg);
  w.run_and_check();
}

#endif  // MIXTAPE_CUDA_EMU
