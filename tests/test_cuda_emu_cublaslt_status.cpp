// The cuBLASLt mock's documented status codes for bad arguments (see test_cuda_emu_cublaslt.cpp for the results):
// shapes, leading dimensions and batches in conflict, unsupported type/compute combinations, orders, epilogues and
// modes, bias pointers, algorithms, host/freed/pinned/short/foreign pointers, devices, dead objects and attribute
// sizes. Each rejection is also checked for its recorded reason, so a call rejected for another reason fails.
#ifdef MIXTAPE_CUDA_EMU
#include "cuda_emu/cublaslt_fixture.h"

using namespace mixtape::testing::cublaslt;

TEST_CASE("cublaslt mock: shapes, leading dimensions and batches in conflict are INVALID_VALUE",
          "[cuda_emu][cublaslt]") {
  Spec s;
  s.batch = 2;
  Gemm g(s);
  REQUIRE(g.run(nullptr, 0) == kOk);  // the unspoiled call succeeds
  g.check();
  SECTION("ld < rows") {
    g.set_layout(g.la, CUBLASLT_MATRIX_LAYOUT_LD, int64_t{12});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "leading dimension 12 < rows 13");
    std::vector<cublasLtMatmulHeuristicResult_t> found;
    CHECK_REJECTED(g.heuristic(found), kInvalid, "leading dimension");
  }
  SECTION("k of op(A) and op(B) differ") {
    g.set_layout(g.lb, CUBLASLT_MATRIX_LAYOUT_ROWS, uint64_t{18});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "op(A) is 13 x 19 but op(B) is 18 x 7");
  }
  SECTION("a transpose flips the shapes") {
    g.set_desc(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "op(A) is 19 x 13");
  }
  SECTION("C's rows") {
    g.set_layout(g.lc, CUBLASLT_MATRIX_LAYOUT_ROWS, uint64_t{12});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "C is 12 x 7");
  }
  SECTION("batch counts differ") {
    g.set_layout(g.lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, int32_t{3});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "batch counts differ");
  }
  SECTION("D's batch entries overlap (stride 0)") {
    g.set_layout(g.ld, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, int64_t{0});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "outputs overlap");
  }
  SECTION("an empty matrix") {
    g.set_layout(g.la, CUBLASLT_MATRIX_LAYOUT_COLS, uint64_t{0});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "at least 1");
  }
  SECTION("C == D with a leading dimension of 0 (broadcast is for out of place only)") {
    g.set_layout(g.lc, CUBLASLT_MATRIX_LAYOUT_LD, int64_t{0});
    CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dc.p,
                                  g.ld, nullptr, nullptr, 0, g.stream),
                   kInvalid, "leading dimension 0 < rows 13");
  }
  SECTION("C == D with another leading dimension") {
    g.set_layout(g.ld, CUBLASLT_MATRIX_LAYOUT_LD, int64_t{17});
    CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dc.p,
                                  g.ld, nullptr, nullptr, 0, g.stream),
                   kInvalid, "in place");
  }
  SECTION("D overlaps A") {
    CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc,
                                  g.da.at(8), g.ld, nullptr, nullptr, 0, g.stream),
                   kInvalid, "matrix A and matrix D overlap");
  }
}

TEST_CASE("cublaslt mock: unsupported types, orders, epilogues and modes are NOT_SUPPORTED", "[cuda_emu][cublaslt]") {
  const auto rejected = [](Spec s, const char* why, const std::function<void(Gemm&)>& spoil = {}) {
    INFO(describe(s) << " / " << why);
    Gemm g(s);
    if (spoil) spoil(g);
    std::vector<cublasLtMatmulHeuristicResult_t> found;
    CHECK_REJECTED(g.heuristic(found), kUnsupported, why);
    CHECK(found.empty());
    CHECK_REJECTED(g.run(nullptr, 0), kUnsupported, why);
  };
  Spec s;
  s.ab = CUDA_R_16F, s.cd = CUDA_R_16BF;
  rejected(s, "not a combination");  // f16 inputs, bf16 output: not in the table
  s.ab = CUDA_R_32F, s.cd = CUDA_R_16F;
  rejected(s, "not a combination");  // f32 inputs, f16 output
  s.compute = CUBLAS_COMPUTE_32F_FAST_TF32, s.ab = s.cd = CUDA_R_16F;
  rejected(s, "not a combination");  // TF32 is for f32 operands only
  s = Spec{};
  rejected(s, "mixes them", [](Gemm& g) { Gemm::set_layout(g.lb, CUBLASLT_MATRIX_LAYOUT_TYPE, uint32_t{CUDA_R_16F}); });
  rejected(s, "Dtype must equal Ctype",
           [](Gemm& g) { Gemm::set_layout(g.ld, CUBLASLT_MATRIX_LAYOUT_TYPE, uint32_t{CUDA_R_16F}); });
  rejected(s, "not a combination", [](Gemm& g) { g.set_desc(CUBLASLT_MATMUL_DESC_SCALE_TYPE, int32_t{CUDA_R_16F}); });
  // Rows of the documented table the mock does not compute: NOT_SUPPORTED, and the reason says so.
  s.compute = CUBLAS_COMPUTE_16F, s.ab = s.cd = CUDA_R_16F;
  rejected(s, "the mock does not compute it",
           [](Gemm& g) { g.set_desc(CUBLASLT_MATMUL_DESC_SCALE_TYPE, int32_t{CUDA_R_16F}); });
  s = Spec{};
  s.compute = CUBLAS_COMPUTE_32F_EMULATED_16BFX9;
  rejected(s, "the mock does not compute it");
  s = Spec{};
  rejected(s, "ORDER_COL",
           [](Gemm& g) { Gemm::set_layout(g.la, CUBLASLT_MATRIX_LAYOUT_ORDER, int32_t{CUBLASLT_ORDER_ROW}); });
  rejected(s, "not modelled",
           [](Gemm& g) { g.set_desc(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_GELU_BIAS); });
  rejected(s, "TRANSC", [](Gemm& g) { g.set_desc(CUBLASLT_MATMUL_DESC_TRANSC, CUBLAS_OP_T); });
  rejected(s, "pointer mode",
           [](Gemm& g) { g.set_desc(CUBLASLT_MATMUL_DESC_POINTER_MODE, CUBLASLT_POINTER_MODE_DEVICE_VECTOR); });
  s.epilogue = CUBLASLT_EPILOGUE_BGRADB;  // with op(B) = N
  rejected(s, "BGRADB requires TRANSB");
  s.epilogue = CUBLASLT_EPILOGUE_BGRADA, s.ta = true;
  rejected(s, "BGRADA requires TRANSA");
  s = Spec{};
  s.epilogue = CUBLASLT_EPILOGUE_BIAS;
  rejected(s, "bias data type", [](Gemm& g) { g.set_desc(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t{CUDA_R_16F}); });
  // A compute type the header does not define. 100 lies within the enum's range of values (0-127, from its
  // enumerators 64-79), so the cast is defined C++; 12345 was not (UBSan: invalid enum load).
  cublasLtMatmulDesc_t d = nullptr;
  CHECK_REJECTED(cublasLtMatmulDescCreate(&d, static_cast<cublasComputeType_t>(100), CUDA_R_32F), kInvalid,
                 "unknown compute type 100");
}

TEST_CASE("cublaslt mock: bias pointers, epilogue values, algorithms and transposes are checked",
          "[cuda_emu][cublaslt]") {
  Spec s;
  s.epilogue = CUBLASLT_EPILOGUE_BIAS;
  Gemm g(s);
  REQUIRE(g.run(nullptr, 0) == kOk);
  g.check();
  SECTION("bias epilogue without a bias pointer") {
    g.set_desc(CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<void*>(nullptr));
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "BIAS_POINTER");
  }
  SECTION("a bias one element short") {
    g.set_desc(CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<void*>(g.dbias.at(g.dbias.bytes - 12 * 4)));
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "bias vector");
  }
  SECTION("an epilogue value that does not exist") {
    g.set_desc(CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t{12345});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "not a cublasLtEpilogue_t");
  }
  SECTION("a transpose value that does not exist") {
    g.set_desc(CUBLASLT_MATMUL_DESC_TRANSA, int32_t{7});
    CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "not a cublasOperation_t");
  }
  SECTION("zeroed and garbage algorithms") {
    cublasLtMatmulAlgo_t algo{};
    CHECK_REJECTED(g.run(&algo, 0), kInvalid, "garbage or zeroed");
    auto r = g.best();
    r.algo.data[1] ^= 1;
    CHECK_REJECTED(g.run(&r.algo, 0), kInvalid, "garbage or zeroed");
  }
  SECTION("an algorithm chosen for another epilogue") {
    const auto r = g.best();
    g.set_desc(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_RELU_BIAS);
    CHECK_REJECTED(g.run(&r.algo, 0), kInvalid, "chosen for other");
  }
  SECTION("batched bias gradients that overlap") {
    Spec b;
    b.tb = true, b.batch = 2, b.bias_stride = 3, b.epilogue = CUBLASLT_EPILOGUE_BGRADB;
    Gemm h(b);
    CHECK_REJECTED(h.run(nullptr, 0), kInvalid, "outputs overlap");
  }
}

TEST_CASE("cublaslt mock: host, freed, pinned, short and foreign pointers are INVALID_VALUE", "[cuda_emu][cublaslt]") {
  Spec s;
  Gemm g(s);
  const auto call = [&](const void* alpha, const void* a, const void* b, const void* c, void* d) {
    return cublasLtMatmul(g.handle, g.desc, alpha, a, g.la, b, g.lb, &g.beta, c, g.lc, d, g.ld, nullptr, nullptr, 0,
                          g.stream);
  };
  REQUIRE(call(&g.alpha, g.da.p, g.db.p, g.dc.p, g.dd.p) == kOk);
  g.check();
  std::vector<float> host(4096);
  CHECK_REJECTED(call(&g.alpha, host.data(), g.db.p, g.dc.p, g.dd.p), kInvalid, "matrix A");
  void* freed = nullptr;
  REQUIRE(cudaMalloc(&freed, 4096) == cudaSuccess);
  REQUIRE(cudaFree(freed) == cudaSuccess);
  CHECK_REJECTED(call(&g.alpha, g.da.p, freed, g.dc.p, g.dd.p), kInvalid, "matrix B");
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, 4096) == cudaSuccess);
  CHECK_REJECTED(call(&g.alpha, g.da.p, g.db.p, g.dc.p, pinned), kInvalid, "matrix D");
  REQUIRE(cudaFreeHost(pinned) == cudaSuccess);
  DeviceBuffer short_a(g.da.bytes - (s.pad + 1) * 4);  // one float short of the layout's last element
  CHECK_REJECTED(call(&g.alpha, short_a.p, g.db.p, g.dc.p, g.dd.p), kInvalid, "matrix A");
  DeviceBuffer exact_a(g.da.bytes - s.pad * 4);  // ends at the layout's last element: enough
  CHECK(call(&g.alpha, exact_a.p, g.db.p, g.dc.p, g.dd.p) == kOk);
  CHECK_REJECTED(call(nullptr, g.da.p, g.db.p, g.dc.p, g.dd.p), kInvalid, "alpha or beta is null");
  CHECK_REJECTED(call(g.dscalars.p, g.da.p, g.db.p, g.dc.p, g.dd.p), kInvalid, "CUBLASLT_POINTER_MODE_HOST");
  g.set_desc(CUBLASLT_MATMUL_DESC_POINTER_MODE, int32_t{CUBLASLT_POINTER_MODE_DEVICE});
  CHECK_REJECTED(call(&g.alpha, g.da.p, g.db.p, g.dc.p, g.dd.p), kInvalid, "CUBLASLT_POINTER_MODE_DEVICE");
  REQUIRE(cudaStreamSynchronize(g.stream) == cudaSuccess);
}

TEST_CASE("cublaslt mock: a handle belongs to the device current at its creation", "[cuda_emu_multi][cublaslt]") {
  if (mixtape::emu::device_count() < 2) FAIL("needs two emulated devices: run with MIXTAPE_EMU_DEVICES=2");
  Spec s;
  Gemm g(s);
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  cudaStream_t other = nullptr;
  REQUIRE(cudaStreamCreate(&other) == cudaSuccess);
  CHECK_REJECTED(g.run(nullptr, 0), kInvalid, "current device is 1");
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dd.p,
                                g.ld, nullptr, nullptr, 0, other),
                 kInvalid, "belongs to device 1");
  // Memory of device 1 with device 0's handle and stream.
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  DeviceBuffer foreign(g.da.bytes);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, foreign.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc,
                                g.dd.p, g.ld, nullptr, nullptr, 0, g.stream),
                 kInvalid, "matrix A");
  REQUIRE(g.run(nullptr, 0) == kOk);
  g.check();
  REQUIRE(cudaStreamDestroy(other) == cudaSuccess);
}

TEST_CASE("cublaslt mock: dead handles, descriptors and heuristic arguments are rejected", "[cuda_emu][cublaslt]") {
  Spec s;
  Gemm g(s);
  cublasLtHandle_t dead = nullptr;
  REQUIRE(cublasLtCreate(&dead) == kOk);
  REQUIRE(cublasLtDestroy(dead) == kOk);
  CHECK_REJECTED(cublasLtMatmul(dead, g.desc, &g.alpha, g.da.p, g.la, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dd.p, g.ld,
                                nullptr, nullptr, 0, g.stream),
                 CUBLAS_STATUS_NOT_INITIALIZED, "not a live cuBLASLt handle");
  CHECK_REJECTED(cublasLtDestroy(dead), CUBLAS_STATUS_NOT_INITIALIZED, "not a live");
  CHECK_REJECTED(cublasLtDestroy(nullptr), kInvalid, "NULL");
  CHECK_REJECTED(cublasLtCreate(nullptr), kInvalid, "null");
  cublasLtMatrixLayout_t l = nullptr;
  REQUIRE(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 13, 19, 16) == kOk);
  REQUIRE(cublasLtMatrixLayoutDestroy(l) == kOk);
  CHECK_REJECTED(cublasLtMatmul(g.handle, g.desc, &g.alpha, g.da.p, l, g.db.p, g.lb, &g.beta, g.dc.p, g.lc, g.dd.p, g.ld,
                                nullptr, nullptr, 0, g.stream),
                 kInvalid, "Adesc is not a live");
  CHECK_REJECTED(cublasLtMatrixLayoutDestroy(l), kInvalid, "not a live descriptor");
  std::vector<cublasLtMatmulHeuristicResult_t> found;
  CHECK_REJECTED(g.heuristic(found, 0), kInvalid, "requestedAlgoCount");
  cublasLtMatmulHeuristicResult_t r{};
  CHECK_REJECTED(cublasLtMatmulAlgoGetHeuristic(g.handle, g.desc, g.la, g.lb, g.lc, g.ld, g.pref, 1, &r, nullptr),
                 kInvalid, "null results or count");
}

TEST_CASE("cublaslt mock: attributes take their documented sizes and read back", "[cuda_emu][cublaslt]") {
  Spec s;
  Gemm g(s);
  const int64_t wrong = CUBLAS_OP_T;  // TRANSA is an int32_t
  CHECK_REJECTED(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &wrong, sizeof wrong), kInvalid,
                 "takes 4 bytes");
  CHECK_REJECTED(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, nullptr, 4), kInvalid, "null");
  CHECK_REJECTED(cublasLtMatmulDescSetAttribute(g.desc, static_cast<cublasLtMatmulDescAttributes_t>(9), &wrong, 8),
                 kInvalid, "unknown attribute");
  const uint32_t ws32 = 1 << 20;  // MAX_WORKSPACE_BYTES is a uint64_t
  CHECK_REJECTED(cublasLtMatmulPreferenceSetAttribute(g.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws32, 4),
                 kInvalid, "takes 8 bytes");
  const int64_t count = 2;  // BATCH_COUNT is an int32_t
  CHECK_REJECTED(cublasLtMatrixLayoutSetAttribute(g.la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, 8), kInvalid,
                 "takes 4 bytes");
  size_t written = 0;
  REQUIRE(cublasLtMatmulDescGetAttribute(g.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, nullptr, 0, &written) == kOk);
  CHECK(written == sizeof(void*));
  CHECK_REJECTED(cublasLtMatmulDescGetAttribute(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, nullptr, 0, nullptr), kInvalid,
                 "sizeWritten null");
  int32_t bias_type = 0;
  REQUIRE(cublasLtMatmulDescGetAttribute(g.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, 4, &written) == kOk);
  CHECK(bias_type == -1);  // documented default
  uint32_t align = 0;
  REQUIRE(cublasLtMatmulPreferenceGetAttribute(g.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align, 4,
                                               &written) == kOk);
  CHECK(align == 256);
  uint64_t rows = 0;
  REQUIRE(cublasLtMatrixLayoutGetAttribute(g.la, CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, 8, &written) == kOk);
  CHECK(rows == 13);
  int32_t trans = -1;
  REQUIRE(cublasLtMatmulDescGetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, 4, &written) == kOk);
  CHECK(trans == CUBLAS_OP_N);
  int major = 0, minor = -1;
  REQUIRE(cublasLtGetProperty(MAJOR_VERSION, &major) == kOk);
  REQUIRE(cublasLtGetProperty(MINOR_VERSION, &minor) == kOk);
  CHECK(cublasLtGetVersion() == static_cast<size_t>(major * 10000 + minor * 100));
  CHECK(std::string(cublasLtGetStatusName(kUnsupported)) == "CUBLAS_STATUS_NOT_SUPPORTED");
}

#endif  // MIXTAPE_CUDA_EMU
