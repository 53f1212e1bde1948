// The cuDNN mock of the emulation build (cuda/emu/cudnn_mock*.cpp) refuses bad arguments with the status cuDNN
// documents ([ops] / [cnn]: the cudnn_ops / cudnn_cnn chapters of the cuDNN 9 API reference; "stricter" where the
// mock chose): descriptor setters, a wrong output descriptor, mismatched descriptors, unsupported configurations,
// the algorithm and workspace protocol, host / freed / short / misaligned / overlapping memory, destroyed objects.
// Every refused execution must leave its output untouched.
#ifdef MIXTAPE_CUDA_EMU

#include <catch2/catch.hpp>

#include "cuda_emu/cudnn_test_util.h"

using namespace mixtape::testing::cudnn_emu;

TEST_CASE("cudnn mock handles streams and descriptors round trip and destroyed ones are refused", "[cuda_emu][cudnn]") {
  cudnnHandle_t h = nullptr;
  REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
  cudaStream_t s = reinterpret_cast<cudaStream_t>(0x1234), got = nullptr;
  REQUIRE(cudnnGetStream(h, &s) == CUDNN_STATUS_SUCCESS);
  CHECK(s == nullptr);  // the legacy default stream until cudnnSetStream
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  CHECK(cudnnSetStream(h, s) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetStream(h, &got) == CUDNN_STATUS_SUCCESS);
  CHECK(got == s);
  CHECK(cudnnSetStream(h, reinterpret_cast<cudaStream_t>(0xdead0)) == CUDNN_STATUS_BAD_PARAM);  // not a stream

  cudnnTensorDescriptor_t t = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&t) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_HALF, 2, 3, 4, 5, 100, 30, 6, 1) == CUDNN_STATUS_SUCCESS);
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::array<int, 8> v{};
  REQUIRE(cudnnGetTensor4dDescriptor(t, &type, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(type == CUDNN_DATA_HALF);
  CHECK(v == std::array<int, 8>{2, 3, 4, 5, 100, 30, 6, 1});
  REQUIRE(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 3, 4, 5) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnGetTensor4dDescriptor(t, &type, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(v == std::array<int, 8>{2, 3, 4, 5, 60, 1, 15, 3});  // channels innermost
  REQUIRE(cudnnDestroyTensorDescriptor(t) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroyTensorDescriptor(t) == CUDNN_STATUS_BAD_PARAM);  // destroyed twice
  CHECK(cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_FLOAT, 1, 1, 1, 1, 1, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnGetTensor4dDescriptor(t, &type, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) ==
        CUDNN_STATUS_BAD_PARAM);

  REQUIRE(cudnnDestroy(h) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnSetStream(h, nullptr) == CUDNN_STATUS_BAD_PARAM);  // destroyed handle
  CHECK(cudnnDestroy(h) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnCreate(nullptr) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
}

TEST_CASE("cudnn mock descriptor setters return the documented status for bad arguments", "[cuda_emu][cudnn]") {
  cudnnTensorDescriptor_t t = nullptr;
  cudnnFilterDescriptor_t f = nullptr;
  cudnnConvolutionDescriptor_t c = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&t) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateFilterDescriptor(&f) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateConvolutionDescriptor(&c) == CUDNN_STATUS_SUCCESS);
  // [ops] cudnnSetTensor4dDescriptorEx: negative dimension or invalid data type -> BAD_PARAM; > 2^31 elements ->
  // NOT_SUPPORTED
  CHECK(cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_FLOAT, -1, 1, 1, 1, 1, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptorEx(t, static_cast<cudnnDataType_t>(31), 1, 1, 1, 1, 1, 1, 1, 1) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_FLOAT, 65536, 65536, 1, 1, 1, 1, 1, 1) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  // [ops] cudnnSetFilter4dDescriptor: negative dimension -> BAD_PARAM
  CHECK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, -4, 3, 3, 3) == CUDNN_STATUS_BAD_PARAM);
  // [cnn] cudnnSetConvolution2dDescriptor: negative padding, stride or dilation <= 0 -> BAD_PARAM
  CHECK(cudnnSetConvolution2dDescriptor(c, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 0, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_INT8) ==
        CUDNN_STATUS_BAD_PARAM);  // stricter: no configuration computes in int8
  CHECK(cudnnSetConvolution2dDescriptor(c, 1, 2, 3, 1, 2, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_SUCCESS);
  // group count: 1 only (grouped convolutions are outside the mock)
  CHECK(cudnnSetConvolutionGroupCount(c, 1) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnSetConvolutionGroupCount(c, 2) == CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(cudnnSetConvolutionGroupCount(c, 0) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnDestroyTensorDescriptor(t) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroyFilterDescriptor(f) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroyConvolutionDescriptor(c) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnSetConvolutionMathType(c, CUDNN_FMA_MATH) == CUDNN_STATUS_BAD_PARAM);  // destroyed
  CHECK(cudnnDestroyFilterDescriptor(f) == CUDNN_STATUS_BAD_PARAM);
}

namespace {

/// A valid forward/backward call set up so one argument at a time can be spoiled; every refused call must leave
/// the output as it was (checked after a synchronisation).
struct BadCall {
  Handle h;
  Geometry g{2, 3, 6, 6, 4, 3, 3, 1, 1};
  Descriptors d{g, config_for(CUDNN_DATA_FLOAT)};
  std::mt19937 gen{16};
  PassData data{gen, d, Pass::forward, 5.0};
  DeviceBuffer ws{4096};
  /// Runs pass p with algorithm 1 (which needs a workspace in every pass) and checks the status and that the
  /// output was not touched.
  void expect(cudnnStatus_t want, Pass p, const Descriptors& desc, Pointers io, const char* what) {
    INFO(what << " (" << pass_name(p) << ")");
    const std::vector<double> before = output(p);
    CHECK(run(h, desc, p, 1, io, 1.0, 0.0) == want);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(output(p) == before);
  }
  Pointers valid() const { return {data.dx->p, data.dw->p, data.dy->p, ws.p, ws.bytes}; }
  std::vector<double> output(Pass p) const {
    return (p == Pass::forward ? data.dy : p == Pass::backward_data ? data.dx : data.dw)->download(CUDNN_DATA_FLOAT);
  }
};

}  // namespace

TEST_CASE("cudnn mock refuses a wrong output descriptor, the backend's worst possible bug", "[cuda_emu][cudnn]") {
  BadCall b;
  // y one row taller than cudnnGetConvolution2dForwardOutputDim gives: [cnn] NOT_SUPPORTED for forward, BAD_PARAM
  // for backward data; BAD_PARAM for backward filter (stricter). The heuristics agree that nothing can run it.
  Descriptors wrong(b.g, config_for(CUDNN_DATA_FLOAT));
  wrong.set_tensor(wrong.y, {2, 4, 7, 6}, packed({2, 4, 7, 6}));
  DeviceBuffer big_y(2 * 4 * 7 * 6 * 4);
  Pointers io = b.valid();
  io.y = big_y.p;
  b.expect(CUDNN_STATUS_NOT_SUPPORTED, Pass::forward, wrong, io, "y 7 rows instead of 6");
  b.expect(CUDNN_STATUS_BAD_PARAM, Pass::backward_data, wrong, io, "dy 7 rows instead of 6");
  b.expect(CUDNN_STATUS_BAD_PARAM, Pass::backward_filter, wrong, io, "dy 7 rows instead of 6");
  cudnnStatus_t st = CUDNN_STATUS_INTERNAL_ERROR;
  for (const Entry& e : heuristics(b.h, wrong, Pass::forward, &st)) CHECK(e.status == CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(st == CUDNN_STATUS_SUCCESS);
  CHECK(heuristics(b.h, wrong, Pass::backward_data, &st).empty());
  CHECK(st == CUDNN_STATUS_BAD_PARAM);
  // y with the wrong channel or batch count: BAD_PARAM (stricter) in every pass and in the heuristics
  for (const Dims& y : {Dims{2, 5, 6, 6}, Dims{3, 4, 6, 6}}) {
    wrong.set_tensor(wrong.y, y, packed(y));
    for (Pass p : kPasses) b.expect(CUDNN_STATUS_BAD_PARAM, p, wrong, io, "y channels or batch");
    heuristics(b.h, wrong, Pass::forward, &st);
    CHECK(st == CUDNN_STATUS_BAD_PARAM);
  }
}

TEST_CASE("cudnn mock refuses mismatched descriptors and unsupported configurations", "[cuda_emu][cudnn]") {
  BadCall b;
  const Pointers io = b.valid();
  {  // [cnn] x and w with a non-matching number of input feature maps: BAD_PARAM
    Descriptors d(b.g, config_for(CUDNN_DATA_FLOAT));
    REQUIRE(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
    for (Pass p : kPasses) b.expect(CUDNN_STATUS_BAD_PARAM, p, d, io, "channels of x and w differ");
    size_t bytes = 0;
    CHECK(workspace_size(b.h, d, Pass::forward, 0, &bytes) == CUDNN_STATUS_BAD_PARAM);
  }
  {  // [cnn] x, w, y with a non-matching data type: BAD_PARAM
    Descriptors d(b.g, config_for(CUDNN_DATA_FLOAT));
    REQUIRE(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_HALF, CUDNN_TENSOR_NCHW, 4, 3, 3, 3) == CUDNN_STATUS_SUCCESS);
    for (Pass p : kPasses) b.expect(CUDNN_STATUS_BAD_PARAM, p, d, io, "w half, x and y float");
  }
  // [cnn] supported configurations: anything but PSEUDO_HALF, PSEUDO_BFLOAT16, FLOAT, DOUBLE is NOT_SUPPORTED here
  // (bfloat16 computed in half, float in double, double in float; TRUE_HALF is not emulated)
  for (auto [type, compute] :
       {std::pair{CUDNN_DATA_BFLOAT16, CUDNN_DATA_HALF}, std::pair{CUDNN_DATA_FLOAT, CUDNN_DATA_DOUBLE},
        std::pair{CUDNN_DATA_DOUBLE, CUDNN_DATA_FLOAT}, std::pair{CUDNN_DATA_HALF, CUDNN_DATA_HALF}}) {
    Config cfg = config_for(type);
    cfg.compute = compute;
    Descriptors d(b.g, cfg);
    DeviceBuffer x(4096), w(4096), y(4096);
    const Pointers p8{x.p, w.p, y.p, b.ws.p, b.ws.bytes};
    INFO("data " << type << " compute " << compute);
    for (Pass p : kPasses) CHECK(run(b.h, d, p, 0, p8, 1.0, 0.0) == CUDNN_STATUS_NOT_SUPPORTED);
    cudnnStatus_t st = CUDNN_STATUS_INTERNAL_ERROR;
    for (const Entry& e : heuristics(b.h, d, Pass::forward, &st)) CHECK(e.status == CUDNN_STATUS_NOT_SUPPORTED);
    CHECK(st == CUDNN_STATUS_SUCCESS);
  }
  {  // [cnn] negative tensor strides: NOT_SUPPORTED; overlapping output elements: NOT_SUPPORTED (stricter)
    Config cfg = config_for(CUDNN_DATA_FLOAT);
    cfg.y_strides = {144, 36, -6, 1};
    Descriptors d(b.g, cfg);
    b.expect(CUDNN_STATUS_NOT_SUPPORTED, Pass::forward, d, io, "negative stride");
    d.set_tensor(d.y, b.g.y_dims(), {144, 36, 3, 1});  // rows overlap
    b.expect(CUDNN_STATUS_NOT_SUPPORTED, Pass::forward, d, io, "overlapping output rows");
  }
  {  // a filter larger than the padded input: [cnn] BAD_PARAM
    Geometry g = b.g;
    g.pad_h = g.pad_w = 0;
    Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
    REQUIRE(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, 3, 7, 3) == CUDNN_STATUS_SUCCESS);
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, d, io, "filter taller than the input");
  }
  {  // a destroyed or never-set descriptor: BAD_PARAM
    Descriptors d(b.g, config_for(CUDNN_DATA_FLOAT));
    cudnnTensorDescriptor_t never = nullptr;
    REQUIRE(cudnnCreateTensorDescriptor(&never) == CUDNN_STATUS_SUCCESS);
    std::swap(d.x, never);
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, d, io, "x never set");
    std::swap(d.x, never);
    REQUIRE(cudnnDestroyTensorDescriptor(never) == CUDNN_STATUS_SUCCESS);
    std::swap(d.x, never);
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, d, io, "x destroyed");
    std::swap(d.x, never);
  }
}

TEST_CASE("cudnn mock enforces the algorithm and workspace protocol", "[cuda_emu][cudnn]") {
  BadCall b;
  for (Pass p : kPasses) {
    size_t need = 0;
    REQUIRE(workspace_size(b.h, b.d, p, 1, &need) == CUDNN_STATUS_SUCCESS);
    REQUIRE(need > 0);  // algorithm 1 needs a workspace in every pass
    REQUIRE(need <= b.ws.bytes);
    Pointers io = b.valid();
    io.ws_bytes = need - 1;
    b.expect(CUDNN_STATUS_BAD_PARAM, p, b.d, io, "workspace one byte short");
    io.ws = nullptr;
    io.ws_bytes = need;
    b.expect(CUDNN_STATUS_BAD_PARAM, p, b.d, io, "NULL workspace");
    std::vector<char> host(need);
    io.ws = host.data();
    b.expect(CUDNN_STATUS_BAD_PARAM, p, b.d, io, "host workspace");
    io = b.valid();
    io.ws_bytes = b.ws.bytes + 1;
    b.expect(CUDNN_STATUS_BAD_PARAM, p, b.d, io, "workspace smaller than its stated size");
    const int count = algo_count(p);
    CHECK(run(b.h, b.d, p, count, b.valid(), 1.0, 0.0) == CUDNN_STATUS_BAD_PARAM);  // out of range (stricter)
    CHECK(workspace_size(b.h, b.d, p, count, &need) == CUDNN_STATUS_BAD_PARAM);
    // the algorithm that needs none runs without a workspace
    const int none = p == Pass::forward ? CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM : 0;
    CHECK(run(b.h, b.d, p, none, {b.data.dx->p, b.data.dw->p, b.data.dy->p, nullptr, 0}, 1.0, 0.0) ==
          CUDNN_STATUS_SUCCESS);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  }
  // FFT with stride 2: [cnn] NOT_SUPPORTED (FFT needs stride 1)
  Geometry g = b.g;
  g.stride_h = 2;
  Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
  DeviceBuffer y(4096);
  size_t bytes = 0;
  CHECK(workspace_size(b.h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_FFT, &bytes) == CUDNN_STATUS_NOT_SUPPORTED);
  CHECK(run(b.h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_FFT,
            {b.data.dx->p, b.data.dw->p, y.p, b.ws.p, b.ws.bytes}, 1.0, 0.0) == CUDNN_STATUS_NOT_SUPPORTED);
  cudnnStatus_t st = CUDNN_STATUS_INTERNAL_ERROR;
  CHECK(heuristics(b.h, b.d, Pass::forward, &st, -1).empty());  // [cnn] requestedAlgoCount <= 0: BAD_PARAM
  CHECK(st == CUDNN_STATUS_BAD_PARAM);
}

TEST_CASE("cudnn mock refuses host, freed, short, misaligned and overlapping memory", "[cuda_emu][cudnn]") {
  BadCall b;
  std::vector<float> host(1024);
  for (Pass p : kPasses) {
    Pointers io = b.valid();
    io.x = host.data();
    b.expect(CUDNN_STATUS_BAD_PARAM, p, b.d, io, "x in host memory");
    io = b.valid();
    io.w = nullptr;
    b.expect(CUDNN_STATUS_BAD_PARAM, p, b.d, io, "NULL w");
  }
  {
    void* freed = nullptr;
    REQUIRE(cudaMalloc(&freed, b.data.dw->bytes) == cudaSuccess);
    REQUIRE(cudaFree(freed) == cudaSuccess);
    Pointers io = b.valid();
    io.w = freed;
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, b.d, io, "w freed");
  }
  {
    DeviceBuffer short_y(b.data.dy->bytes - 4);
    Pointers io = b.valid();
    io.y = short_y.p;
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, b.d, io, "y one element short");
  }
  {
    DeviceBuffer big_x(b.data.dx->bytes + 16);
    Pointers io = b.valid();
    io.x = big_x.at(2);
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, b.d, io, "x misaligned");
  }
  {
    void* pinned = nullptr;
    REQUIRE(cudaMallocHost(&pinned, b.data.dx->bytes) == cudaSuccess);
    Pointers io = b.valid();
    io.x = pinned;
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, b.d, io, "x in pinned host memory (stricter)");
    CHECK(cudaFreeHost(pinned) == cudaSuccess);
  }
  {
    Pointers io = b.valid();
    io.ws = b.data.dy->p;  // the workspace is the output
    io.ws_bytes = b.data.dy->bytes;
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, b.d, io, "workspace overlapping y");
    io = b.valid();
    io.y = io.x;  // in place
    Descriptors same(Geometry{2, 3, 6, 6, 3, 1, 1}, config_for(CUDNN_DATA_FLOAT));
    b.expect(CUDNN_STATUS_BAD_PARAM, Pass::forward, same, io, "y is x");
  }
  {  // [cnn] NULL alpha or beta: BAD_PARAM
    const float one = 1.0f;
    CHECK(cudnnConvolutionForward(b.h.h, nullptr, b.d.x, b.data.dx->p, b.d.w, b.data.dw->p, b.d.conv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &one, b.d.y,
                                  b.data.dy->p) == CUDNN_STATUS_BAD_PARAM);
    CHECK(cudnnConvolutionForward(b.h.h, &one, b.d.x, b.data.dx->p, b.d.w, b.data.dw->p, b.d.conv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, nullptr, b.d.y,
                                  b.data.dy->p) == CUDNN_STATUS_BAD_PARAM);
  }
}

#endif  // MIXTAPE_CUDA_EMU
