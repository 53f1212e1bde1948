// The cuDNN mock of the emulation build (cuda/emu/cudnn_mock*.cpp) computes what cuDNN documents, called directly
// on device buffers of the fake runtime: forward, backward-data and backward-filter against a float64 reference
// convolution, for f32, f16, bf16 and f64, with padding, stride, dilation, non-square kernels, both convolution
// modes, alpha/beta (beta = 0 never reads the output; beta = 1 accumulates batch slices as the backend's
// backward-filter does), every algorithm the heuristics offer, packed, padded and channels-last strides; the math
// types' precision; the heuristics' answers; queued execution. Bad arguments: test_cuda_emu_cudnn_errors.cpp.
#ifdef MIXTAPE_CUDA_EMU

#include <catch2/catch.hpp>

#include <tuple>

#include "cuda_emu/cudnn_test_util.h"

using namespace mixtape::testing::cudnn_emu;

TEST_CASE("cudnn mock reports the header's version and names its status codes", "[cuda_emu][cudnn]") {
  int major = -1, minor = -1, patch = -1;
  CHECK(cudnnGetProperty(MAJOR_VERSION, &major) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetProperty(MINOR_VERSION, &minor) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetProperty(PATCH_LEVEL, &patch) == CUDNN_STATUS_SUCCESS);
  CHECK((major == CUDNN_MAJOR && minor == CUDNN_MINOR && patch == CUDNN_PATCHLEVEL));
  CHECK(cudnnGetProperty(MAJOR_VERSION, nullptr) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnGetVersion() == static_cast<size_t>(CUDNN_VERSION));
  CHECK(cudnnGetCudartVersion() == static_cast<size_t>(CUDART_VERSION));
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM)) == "CUDNN_STATUS_BAD_PARAM");
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED)) == "CUDNN_STATUS_NOT_SUPPORTED");
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_SUCCESS)) == "CUDNN_STATUS_SUCCESS");
}

TEST_CASE("cudnn mock output dimensions follow the documented formula", "[cuda_emu][cudnn]") {
  for (const Geometry& g : geometries()) {
    INFO(g.name());
    Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
    std::array<int, 4> out{};
    REQUIRE(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &out[0], &out[1], &out[2], &out[3]) ==
            CUDNN_STATUS_SUCCESS);
    // 1 + (in + 2*pad - ((filter - 1)*dilation + 1)) / stride, written out independently of Geometry::oh
    const int oh = 1 + (g.h + 2 * g.pad_h - ((g.r - 1) * g.dil_h + 1)) / g.stride_h;
    const int ow = 1 + (g.w + 2 * g.pad_w - ((g.s - 1) * g.dil_w + 1)) / g.stride_w;
    CHECK(out == std::array<int, 4>{g.n, g.k, oh, ow});
  }
  Geometry g{1, 3, 5, 5, 2, 3, 3};
  Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
  std::array<int, 4> out{};
  REQUIRE(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 2, 4, 3, 3) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &out[0], &out[1], &out[2], &out[3]) ==
        CUDNN_STATUS_BAD_PARAM);  // [cnn] feature maps of input and filter differ
  REQUIRE(cudnnSetFilter4dDescriptor(d.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 2, 3, 7, 3) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &out[0], &out[1], &out[2], &out[3]) ==
        CUDNN_STATUS_BAD_PARAM);  // filter taller than the (unpadded) input: no output
}

TEST_CASE("cudnn mock convolutions match a float64 reference for every pass type and algorithm", "[cuda_emu][cudnn]") {
  std::mt19937 gen(11);
  Handle h;
  for (const Geometry& g : geometries())
    for (cudnnDataType_t t : kTypes) {
      Descriptors d(g, config_for(t));
      for (Pass p : kPasses) check_pass(gen, h, d, p);
    }
}

TEST_CASE("cudnn mock reads and writes padded and channels-last strides and nothing between", "[cuda_emu][cudnn]") {
  std::mt19937 gen(12);
  Handle h;
  const Geometry g{2, 3, 7, 6, 4, 3, 2, 1, 0, 2, 1};  // y 2x4x4x5
  Config padded = config_for(CUDNN_DATA_FLOAT);
  padded.x_strides = {3 * 70 + 9, 70, 9, 1};  // rows of 9 for 6 values, channel gaps, batch gap
  padded.y_strides = {4 * 24 + 5, 24, 6, 1};
  Config channels_last = config_for(CUDNN_DATA_HALF);
  channels_last.x_strides = {7 * 6 * 3, 1, 6 * 3, 3};
  channels_last.y_strides = {4 * 5 * 4, 1, 5 * 4, 4};
  for (const Config& cfg : {padded, channels_last}) {
    Descriptors d(g, cfg);
    for (Pass p : kPasses) check_pass(gen, h, d, p);
  }
}

TEST_CASE("cudnn mock accumulates backward-filter batch slices with beta 1 as the backend does", "[cuda_emu][cudnn]") {
  std::mt19937 gen(13);
  Handle h;
  for (cudnnDataType_t t : kTypes) {
    const Geometry full{4, 3, 6, 6, 2, 3, 3, 1, 1};
    Geometry half_batch = full;
    half_batch.n = 2;
    Descriptors whole(full, config_for(t)), slice(half_batch, config_for(t));
    PassData data(gen, whole, Pass::backward_filter, 0.0);
    const size_t x_per = 3 * 6 * 6 * element_size(t), y_per = 2 * 6 * 6 * element_size(t);
    for (int part = 0; part < 2; ++part) {
      const Pointers io{data.dx->at(part * 2 * x_per), data.dw->p, data.dy->at(part * 2 * y_per)};
      REQUIRE(run(h, slice, Pass::backward_filter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, io, 1.0,
                  part == 0 ? 0.0 : 1.0) == CUDNN_STATUS_SUCCESS);
    }
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    // The first slice's sum is rounded to t once more before the second adds to it.
    const std::vector<double> x_first(data.x.begin(), data.x.begin() + 2 * 3 * 6 * 6);
    const std::vector<double> dy_first(data.y.begin(), data.y.begin() + 2 * 2 * 6 * 6);
    const Reference first = reference(Pass::backward_filter, half_batch, x_first, dy_first);
    std::vector<double> extra(first.value.size());
    for (size_t i = 0; i < extra.size(); ++i) extra[i] = 2 * unit_roundoff(t) * std::fabs(first.value[i]);
    check_result(data.dw->download(t), reference(Pass::backward_filter, full, data.x, data.y), data.w, 1.0, 0.0, t,
                 "two slices of type " + std::to_string(t), extra);
  }
}

TEST_CASE("cudnn mock float16 and bfloat16 accumulate in float and round once", "[cuda_emu][cudnn]") {
  Handle h;
  // 1x1 convolution over 17 channels: x = (2048, 1, ..., 1), w = 1. Half accumulation would stay at 2048 (its
  // spacing there is 2); float accumulation reaches 2064, which float16 holds exactly. Likewise 256 + 16 in bfloat16.
  for (auto [t, big] : {std::pair{CUDNN_DATA_HALF, 2048.0}, std::pair{CUDNN_DATA_BFLOAT16, 256.0}}) {
    const Geometry g{1, 17, 1, 1, 1, 1, 1};
    Descriptors d(g, config_for(t));
    std::vector<double> x(17, 1.0);
    x[0] = big;
    DeviceBuffer dx(x, t), dw(std::vector<double>(17, 1.0), t), dy(std::vector<double>{0.0}, t);
    REQUIRE(run(h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, {dx.p, dw.p, dy.p}, 1.0, 0.0) ==
            CUDNN_STATUS_SUCCESS);
    CHECK(dy.download(t)[0] == big + 16.0);
  }
  // One rounding also means overflow to infinity past float16's range (65504).
  const Geometry g{1, 2, 1, 1, 1, 1, 1};
  Descriptors d(g, config_for(CUDNN_DATA_HALF));
  DeviceBuffer dx(std::vector<double>{40000.0, 40000.0}, CUDNN_DATA_HALF),
      dw(std::vector<double>{1.0, 1.0}, CUDNN_DATA_HALF);
  DeviceBuffer dy(std::vector<double>{0.0}, CUDNN_DATA_HALF);
  REQUIRE(run(h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, {dx.p, dw.p, dy.p}, 1.0, 0.0) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(std::isinf(dy.download(CUDNN_DATA_HALF)[0]));
}

TEST_CASE("cudnn mock float32 is exact with FMA math, TF32 with default or tensor-op math, half with conversion",
          "[cuda_emu][cudnn]") {
  Handle h;
  // x = 1 + 2^-12 needs 12 mantissa bits; TF32 keeps 10 and reads it as 1. 64 such terms sum exactly in float.
  const double v = 1.0 + std::ldexp(1.0, -12);
  const Geometry g{1, 64, 1, 1, 1, 1, 1};
  // TENSOR_OP_MATH_ALLOW_CONVERSION down-converts float inputs: to float16 in the mock, so 2^17 becomes infinity
  // (TF32 would keep it).
  const double inf = std::numeric_limits<double>::infinity();
  for (auto [math, x, want] :
       {std::tuple{CUDNN_FMA_MATH, v, 64.0 * v}, std::tuple{CUDNN_DEFAULT_MATH, v, 64.0},
        std::tuple{CUDNN_TENSOR_OP_MATH, v, 64.0}, std::tuple{CUDNN_TENSOR_OP_MATH, 131072.0, 64.0 * 131072.0},
        std::tuple{CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, 131072.0, inf}}) {
    Config cfg = config_for(CUDNN_DATA_FLOAT);
    cfg.math = math;
    Descriptors d(g, cfg);
    DeviceBuffer dx(std::vector<double>(64, x), CUDNN_DATA_FLOAT), dw(std::vector<double>(64, 1.0), CUDNN_DATA_FLOAT);
    DeviceBuffer dy(std::vector<double>{0.0}, CUDNN_DATA_FLOAT);
    REQUIRE(run(h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, {dx.p, dw.p, dy.p}, 1.0, 0.0) ==
            CUDNN_STATUS_SUCCESS);
    INFO("math type " << math);
    CHECK(dy.download(CUDNN_DATA_FLOAT)[0] == want);
  }
}

TEST_CASE("cudnn mock heuristics list every algorithm with status workspace and determinism", "[cuda_emu][cudnn]") {
  Handle h;
  for (int stride : {1, 2}) {
    Geometry g{2, 3, 8, 8, 4, 3, 3, 1, 1};
    g.stride_h = g.stride_w = stride;
    Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
    for (Pass p : kPasses) {
      INFO(pass_name(p) << " stride " << stride);
      cudnnStatus_t st = CUDNN_STATUS_INTERNAL_ERROR;
      const std::vector<Entry> list = heuristics(h, d, p, &st);
      REQUIRE(st == CUDNN_STATUS_SUCCESS);
      const int count = algo_count(p);
      REQUIRE(static_cast<int>(list.size()) == count);
      std::vector<int> seen;
      bool refused_yet = false, workspace_seen = false;
      for (const Entry& e : list) {
        seen.push_back(e.algo);
        CHECK(e.math == CUDNN_FMA_MATH);  // the descriptor's math type
        if (e.status != CUDNN_STATUS_SUCCESS) {
          CHECK(e.status == CUDNN_STATUS_NOT_SUPPORTED);
          size_t bytes = 0;
          CHECK(workspace_size(h, d, p, e.algo, &bytes) == CUDNN_STATUS_NOT_SUPPORTED);
          refused_yet = true;
          continue;
        }
        CHECK_FALSE(refused_yet);  // supported entries first
        size_t bytes = 1;
        CHECK(workspace_size(h, d, p, e.algo, &bytes) == CUDNN_STATUS_SUCCESS);
        CHECK(bytes == e.memory);
        workspace_seen = workspace_seen || e.memory > 0;
      }
      std::sort(seen.begin(), seen.end());
      for (int i = 0; i < count; ++i) CHECK(seen[static_cast<size_t>(i)] == i);  // every enumerant once
      CHECK(workspace_seen);
      // FFT needs stride 1 ([cnn] algorithm support tables)
      const int fft = fft_algo(p);
      for (const Entry& e : list)
        if (e.algo == fft) CHECK((e.status == CUDNN_STATUS_SUCCESS) == (stride == 1));
      // the documented determinism of the backward algorithms 0 and 1; every forward algorithm is deterministic
      for (const Entry& e : list) {
        if (p == Pass::forward) CHECK(e.deterministic);
        if (p != Pass::forward && e.algo == 0) CHECK_FALSE(e.deterministic);
        if (p != Pass::forward && e.algo == 1) CHECK(e.deterministic);
      }
      CHECK(heuristics(h, d, p, &st, 2).size() == 2);  // requestedAlgoCount limits the answer
      CHECK(st == CUDNN_STATUS_SUCCESS);
    }
    // Setting the geometry again resets the math type (stricter: code that sets the math type first shows up).
    REQUIRE(cudnnSetConvolution2dDescriptor(d.conv, 1, 1, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT) == CUDNN_STATUS_SUCCESS);
    cudnnStatus_t st = CUDNN_STATUS_INTERNAL_ERROR;
    for (const Entry& e : heuristics(h, d, Pass::forward, &st)) CHECK(e.math == CUDNN_DEFAULT_MATH);
  }
}

TEST_CASE("cudnn mock deterministic algorithms reproduce their bits", "[cuda_emu][cudnn]") {
  std::mt19937 gen(14);
  Handle h;
  const Geometry g{8, 4, 9, 9, 6, 3, 3, 1, 1};
  Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
  for (Pass p : {Pass::backward_data, Pass::backward_filter})
    for (const Entry& e : supported_algorithms(h, d, p)) {
      if (!e.deterministic) continue;
      PassData data(gen, d, p, 0.0);
      DeviceBuffer ws(std::max<size_t>(e.memory, 1));
      std::vector<std::vector<double>> results;
      for (int run_index = 0; run_index < 3; ++run_index) {
        REQUIRE(run(h, d, p, e.algo, {data.dx->p, data.dw->p, data.dy->p, ws.p, e.memory}, 1.0, 0.0) ==
                CUDNN_STATUS_SUCCESS);
        results.push_back(data.result(d, p));
      }
      INFO(pass_name(p) << " algo " << e.algo);
      CHECK(results[0] == results[1]);
      CHECK(results[1] == results[2]);
    }
}

TEST_CASE("cudnn mock queues the work: scalars are read and descriptors may go at call time", "[cuda_emu][cudnn]") {
  std::mt19937 gen(15);
  Handle h;
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  REQUIRE(cudnnSetStream(h.h, s) == CUDNN_STATUS_SUCCESS);
  const Geometry g{2, 3, 6, 6, 4, 3, 3, 1, 1};
  auto d = std::make_unique<Descriptors>(g, config_for(CUDNN_DATA_FLOAT));
  PassData data(gen, *d, Pass::forward, std::numeric_limits<double>::quiet_NaN());
  float alpha = 2.0f, beta = 0.0f;
  REQUIRE(cudnnConvolutionForward(h.h, &alpha, d->x, data.dx->p, d->w, data.dw->p, d->conv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &beta, d->y,
                                  data.dy->p) == CUDNN_STATUS_SUCCESS);
  alpha = 100.0f;  // after the call: must not change the result
  d.reset();       // descriptors destroyed before the work runs
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  const Descriptors layout(g, config_for(CUDNN_DATA_FLOAT));
  check_result(data.result(layout, Pass::forward), reference(Pass::forward, g, data.x, data.w), data.y, 2.0, 0.0,
               CUDNN_DATA_FLOAT, "queued forward");
  REQUIRE(cudnnSetStream(h.h, nullptr) == CUDNN_STATUS_SUCCESS);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
}

TEST_CASE("cudnn mock beta 1 reads the output, so the NaN checks can fail", "[cuda_emu][cudnn]") {
  Handle h;
  const Geometry g{1, 1, 3, 3, 1, 3, 3};
  Descriptors d(g, config_for(CUDNN_DATA_FLOAT));
  DeviceBuffer x(std::vector<double>(9, 1.0), CUDNN_DATA_FLOAT), w(std::vector<double>(9, 1.0), CUDNN_DATA_FLOAT);
  DeviceBuffer y(std::vector<double>{std::numeric_limits<double>::quiet_NaN()}, CUDNN_DATA_FLOAT);
  REQUIRE(run(h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, {x.p, w.p, y.p}, 1.0, 1.0) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(std::isnan(y.download(CUDNN_DATA_FLOAT)[0]));
  REQUIRE(run(h, d, Pass::forward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, {x.p, w.p, y.p}, 1.0, 0.0) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(y.download(CUDNN_DATA_FLOAT)[0] == 9.0);
}

#endif  // MIXTAPE_CUDA_EMU
