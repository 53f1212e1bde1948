#pragma once
// Helpers of the cuDNN mock's tests (tests/test_cuda_emu_cudnn*.cpp, emulation build only): a float64 reference
// convolution written from its definition, device buffers of the fake runtime, descriptors set from a geometry,
// one call of any pass, the heuristics of any pass, and the parity check of a pass over every algorithm offered.
#include <catch2/catch.hpp>

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"

namespace mixtape::testing::cudnn_emu {

using Dims = std::array<int, 4>;

/// Which pass a call runs.
enum class Pass { forward, backward_data, backward_filter };
inline const char* pass_name(Pass p) {
  return p == Pass::forward ? "forward" : p == Pass::backward_data ? "backward data" : "backward filter";
}

/// Sizes and geometry of one convolution: x (n, c, h, w), w (k, c, r, s).
struct Geometry {
  int n, c, h, w, k, r, s;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  bool flip = false;  ///< CUDNN_CONVOLUTION instead of CUDNN_CROSS_CORRELATION
  int oh() const { return (h + 2 * pad_h - ((r - 1) * dil_h + 1)) / stride_h + 1; }
  int ow() const { return (w + 2 * pad_w - ((s - 1) * dil_w + 1)) / stride_w + 1; }
  Dims x_dims() const { return {n, c, h, w}; }
  Dims w_dims() const { return {k, c, r, s}; }
  Dims y_dims() const { return {n, k, oh(), ow()}; }
  std::string name() const {
    return "x " + std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) +
           " w " + std::to_string(k) + "x" + std::to_string(r) + "x" + std::to_string(s) + " pad " +
           std::to_string(pad_h) + "," + std::to_string(pad_w) + " stride " + std::to_string(stride_h) + "," +
           std::to_string(stride_w) + " dil " + std::to_string(dil_h) + "," + std::to_string(dil_w) +
           (flip ? " convolution" : "");
  }
};

/// Geometries with padding, strides, dilations and non-square kernels.
inline std::vector<Geometry> geometries() {
  std::vector<Geometry> g = {
      {2, 3, 7, 6, 4, 3, 3, 1, 1},               // 3x3 pad 1, odd sizes
      {1, 2, 9, 11, 3, 5, 3, 2, 0, 2, 3},        // 5x3, stride 2x3, asymmetric padding
      {2, 2, 10, 9, 2, 3, 2, 1, 2, 1, 2, 2, 1},  // 3x2, dilation 2x1, stride 1x2
      {3, 4, 5, 5, 5, 1, 1},                     // 1x1
      {1, 1, 4, 4, 2, 3, 3, 2, 2},               // padding wider than the image edge
  };
  Geometry flipped = g[1];
  flipped.flip = true;
  g.push_back(flipped);
  return g;
}

/// Element strides of a packed NCHW tensor.
inline Dims packed(const Dims& d) { return {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1}; }

/// Number of elements spanned by (dims, strides), gaps included.
inline size_t span(const Dims& d, const Dims& st) {
  size_t last = 0;
  for (int i = 0; i < 4; ++i) last += static_cast<size_t>(d[i] - 1) * static_cast<size_t>(st[i]);
  return last + 1;
}

inline size_t element_size(cudnnDataType_t t) { return t == CUDNN_DATA_DOUBLE ? 8 : t == CUDNN_DATA_FLOAT ? 4 : 2; }

/// v rounded to t (what t can hold), round to nearest even.
inline double quantize(double v, cudnnDataType_t t) {
  switch (t) {
    case CUDNN_DATA_FLOAT: return static_cast<float>(v);
    case CUDNN_DATA_HALF: return static_cast<float>(mixtape::Half(static_cast<float>(v)));
    case CUDNN_DATA_BFLOAT16: return static_cast<float>(mixtape::BFloat16(static_cast<float>(v)));
    default: return v;
  }
}

/// The bytes of values of type t.
inline std::vector<unsigned char> encode(const std::vector<double>& v, cudnnDataType_t t) {
  std::vector<unsigned char> out(v.size() * element_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    unsigned char* p = out.data() + i * element_size(t);
    if (t == CUDNN_DATA_DOUBLE) {
      std::memcpy(p, &v[i], 8);
    } else if (t == CUDNN_DATA_FLOAT) {
      const float f = static_cast<float>(v[i]);
      std::memcpy(p, &f, 4);
    } else {
      const uint16_t b = t == CUDNN_DATA_HALF ? mixtape::Half(static_cast<float>(v[i])).bits
                                              : mixtape::BFloat16(static_cast<float>(v[i])).bits;
      std::memcpy(p, &b, 2);
    }
  }
  return out;
}

inline std::vector<double> decode(const std::vector<unsigned char>& b, cudnnDataType_t t) {
  std::vector<double> out(b.size() / element_size(t));
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char* p = b.data() + i * element_size(t);
    if (t == CUDNN_DATA_DOUBLE) {
      std::memcpy(&out[i], p, 8);
    } else if (t == CUDNN_DATA_FLOAT) {
      float f;
      std::memcpy(&f, p, 4);
      out[i] = f;
    } else {
      uint16_t bits;
      std::memcpy(&bits, p, 2);
      out[i] = t == CUDNN_DATA_HALF ? static_cast<float>(mixtape::Half::from_bits(bits))
                                    : static_cast<float>(mixtape::BFloat16::from_bits(bits));
    }
  }
  return out;
}

/// A strided buffer (span elements, gaps set to `gap`) holding the packed NCHW values at (dims, strides).
inline std::vector<double> scatter(const std::vector<double>& packed_values, const Dims& d, const Dims& st,
                                   double gap) {
  std::vector<double> buf(span(d, st), gap);
  size_t i = 0;
  for (int a = 0; a < d[0]; ++a)
    for (int b = 0; b < d[1]; ++b)
      for (int c = 0; c < d[2]; ++c)
        for (int e = 0; e < d[3]; ++e)
          buf[static_cast<size_t>(a * st[0] + b * st[1] + c * st[2] + e * st[3])] = packed_values[i++];
  return buf;
}

/// The packed NCHW values at (dims, strides) of a strided buffer.
inline std::vector<double> gather(const std::vector<double>& buf, const Dims& d, const Dims& st) {
  std::vector<double> out;
  for (int a = 0; a < d[0]; ++a)
    for (int b = 0; b < d[1]; ++b)
      for (int c = 0; c < d[2]; ++c)
        for (int e = 0; e < d[3]; ++e)
          out.push_back(buf[static_cast<size_t>(a * st[0] + b * st[1] + c * st[2] + e * st[3])]);
  return out;
}

/// n uniform values in [-1, 1) rounded to t.
inline std::vector<double> random_values(std::mt19937& gen, size_t n, cudnnDataType_t t) {
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = quantize(d(gen), t);
  return v;
}

/// A float64 result with, per element, the sum of |terms| and the number of terms (for the rounding tolerance).
struct Reference {
  std::vector<double> value, magnitude;
  int terms = 0;
};

/// The float64 reference: calls f(y index, x index, w index) for every product of the convolution, straight from
/// its definition y[n][k][i][j] = sum over c, r, s of x[n][c][i*stride - pad + r*dil][...] * w[k][c][r][s] (the
/// filter rotated by 180 degrees in CUDNN_CONVOLUTION mode).
template <class F>
inline void for_each_product(const Geometry& g, F f) {
  for (int n = 0; n < g.n; ++n)
    for (int k = 0; k < g.k; ++k)
      for (int i = 0; i < g.oh(); ++i)
        for (int j = 0; j < g.ow(); ++j)
          for (int c = 0; c < g.c; ++c)
            for (int r = 0; r < g.r; ++r)
              for (int s = 0; s < g.s; ++s) {
                const int ih = i * g.stride_h - g.pad_h + r * g.dil_h, iw = j * g.stride_w - g.pad_w + s * g.dil_w;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                const int fr = g.flip ? g.r - 1 - r : r, fs = g.flip ? g.s - 1 - s : s;
                f(((n * g.k + k) * g.oh() + i) * g.ow() + j, ((n * g.c + c) * g.h + ih) * g.w + iw,
                  ((k * g.c + c) * g.r + fr) * g.s + fs);
              }
}

/// The reference of a pass over packed inputs: forward (x, w), backward data (dy, w), backward filter (x, dy).
inline Reference reference(Pass p, const Geometry& g, const std::vector<double>& a, const std::vector<double>& b) {
  const auto count = [](const Dims& d) { return static_cast<size_t>(d[0]) * d[1] * d[2] * d[3]; };
  const size_t out = count(p == Pass::forward ? g.y_dims() : p == Pass::backward_data ? g.x_dims() : g.w_dims());
  Reference ref{std::vector<double>(out, 0.0), std::vector<double>(out, 0.0), 0};
  for_each_product(g, [&](int yi, int xi, int wi) {
    const int at = p == Pass::forward ? yi : p == Pass::backward_data ? xi : wi;
    const double prod = p == Pass::forward         ? a[static_cast<size_t>(xi)] * b[static_cast<size_t>(wi)]
                        : p == Pass::backward_data ? a[static_cast<size_t>(yi)] * b[static_cast<size_t>(wi)]
                                                   : a[static_cast<size_t>(xi)] * b[static_cast<size_t>(yi)];
    ref.value[static_cast<size_t>(at)] += prod;
    ref.magnitude[static_cast<size_t>(at)] += std::fabs(prod);
  });
  ref.terms = p == Pass::backward_filter ? g.n * g.oh() * g.ow() : g.c * g.r * g.s * (p == Pass::forward ? 1 : g.k);
  return ref;
}

/// Unit roundoff of t.
inline double unit_roundoff(cudnnDataType_t t) {
  return t == CUDNN_DATA_HALF       ? 0x1p-11
         : t == CUDNN_DATA_BFLOAT16 ? 0x1p-8
         : t == CUDNN_DATA_DOUBLE   ? 0x1p-53
                                    : 0x1p-24;
}

/// Checks got == alpha * ref + beta * old within one rounding of t plus float (double for f64) accumulation error,
/// plus `extra` (per element, when given).
inline void check_result(const std::vector<double>& got, const Reference& ref, const std::vector<double>& old,
                         double alpha, double beta, cudnnDataType_t t, const std::string& what,
                         const std::vector<double>& extra = {}) {
  INFO(what);
  REQUIRE(got.size() == ref.value.size());
  const double u = unit_roundoff(t);
  const double ua = t == CUDNN_DATA_DOUBLE ? 0x1p-53 : 0x1p-24;
  const double tiny = t == CUDNN_DATA_HALF ? 0x1p-24 : 1e-300;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double old_part = beta == 0.0 ? 0.0 : beta * old[i];
    const double want = alpha * ref.value[i] + old_part;
    const double tol = 2 * u * std::fabs(want) +
                       (ref.terms + 4) * ua * (std::fabs(alpha) * ref.magnitude[i] + std::fabs(old_part)) + tiny +
                       (extra.empty() ? 0.0 : extra[i]);
    if (!(std::fabs(got[i] - want) <= tol) && bad++ < 5)
      FAIL_CHECK("element " << i << ": got " << got[i] << ", want " << want);
  }
  CHECK(bad == 0);
}

/// A device allocation, freed on scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) { REQUIRE(cudaMalloc(&p, n) == cudaSuccess); }
  DeviceBuffer(const std::vector<double>& v, cudnnDataType_t t) : DeviceBuffer(v.size() * element_size(t)) {
    upload(v, t);
  }
  ~DeviceBuffer() {
    if (p != nullptr) (void)cudaFree(p);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<double>& v, cudnnDataType_t t) const {
    const std::vector<unsigned char> b = encode(v, t);
    REQUIRE(b.size() <= bytes);
    REQUIRE(cudaMemcpy(p, b.data(), b.size(), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<double> download(cudnnDataType_t t) const {
    std::vector<unsigned char> b(bytes);
    REQUIRE(cudaMemcpy(b.data(), p, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    return decode(b, t);
  }
  char* at(size_t byte_offset) const { return static_cast<char*>(p) + byte_offset; }
};

/// A cuDNN handle on the current device, destroyed on scope exit.
struct Handle {
  cudnnHandle_t h = nullptr;
  Handle() { REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS); }
  ~Handle() { (void)cudnnDestroy(h); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

/// Types and layouts of one call's descriptors.
struct Config {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  Dims x_strides{}, y_strides{};  ///< packed when all zero
};

/// The compute type and math type the backend uses for a data type (cuda/conv_plan.cpp: conv_math).
inline Config config_for(cudnnDataType_t t) {
  Config c;
  c.type = t;
  c.compute = t == CUDNN_DATA_DOUBLE ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  c.math = t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
  return c;
}

/// The four descriptors of a convolution, set from a geometry and a config; destroyed on scope exit.
struct Descriptors {
  Geometry g;
  Config cfg;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Descriptors(const Geometry& geo, const Config& config) : g(geo), cfg(config) {
    if (cfg.x_strides == Dims{}) cfg.x_strides = packed(g.x_dims());
    if (cfg.y_strides == Dims{}) cfg.y_strides = packed(g.y_dims());
    REQUIRE(cudnnCreateTensorDescriptor(&x) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&y) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateFilterDescriptor(&w) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateConvolutionDescriptor(&conv) == CUDNN_STATUS_SUCCESS);
    set_tensor(x, g.x_dims(), cfg.x_strides);
    set_tensor(y, g.y_dims(), cfg.y_strides);
    REQUIRE(cudnnSetFilter4dDescriptor(w, cfg.type, CUDNN_TENSOR_NCHW, g.k, g.c, g.r, g.s) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolution2dDescriptor(conv, g.pad_h, g.pad_w, g.stride_h, g.stride_w, g.dil_h, g.dil_w,
                                            g.flip ? CUDNN_CONVOLUTION : CUDNN_CROSS_CORRELATION,
                                            cfg.compute) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolutionMathType(conv, cfg.math) == CUDNN_STATUS_SUCCESS);
  }
  ~Descriptors() {
    (void)cudnnDestroyTensorDescriptor(x);
    (void)cudnnDestroyTensorDescriptor(y);
    (void)cudnnDestroyFilterDescriptor(w);
    (void)cudnnDestroyConvolutionDescriptor(conv);
  }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
  void set_tensor(cudnnTensorDescriptor_t t, const Dims& d, const Dims& st) const {
    REQUIRE(cudnnSetTensor4dDescriptorEx(t, cfg.type, d[0], d[1], d[2], d[3], st[0], st[1], st[2], st[3]) ==
            CUDNN_STATUS_SUCCESS);
  }
};

/// Device pointers of one call in the forward roles: x (dx), w (dw), y (dy), and the workspace.
struct Pointers {
  const void* x;
  const void* w;
  const void* y;
  void* ws = nullptr;
  size_t ws_bytes = 0;
};

/// Runs pass p with algorithm `algo`; alpha and beta passed as float, or double for double data.
inline cudnnStatus_t run(const Handle& h, const Descriptors& d, Pass p, int algo, const Pointers& io, double alpha,
                         double beta) {
  const float af = static_cast<float>(alpha), bf = static_cast<float>(beta);
  const bool dbl = d.cfg.type == CUDNN_DATA_DOUBLE;
  const void* a = dbl ? static_cast<const void*>(&alpha) : &af;
  const void* b = dbl ? static_cast<const void*>(&beta) : &bf;
  switch (p) {
    case Pass::forward:
      return cudnnConvolutionForward(h.h, a, d.x, io.x, d.w, io.w, d.conv, static_cast<cudnnConvolutionFwdAlgo_t>(algo),
                                     io.ws, io.ws_bytes, b, d.y, const_cast<void*>(io.y));
    case Pass::backward_data:
      return cudnnConvolutionBackwardData(h.h, a, d.w, io.w, d.y, io.y, d.conv,
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), io.ws, io.ws_bytes, b, d.x,
                                          const_cast<void*>(io.x));
    case Pass::backward_filter:
      return cudnnConvolutionBackwardFilter(h.h, a, d.x, io.x, d.y, io.y, d.conv,
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), io.ws, io.ws_bytes, b,
                                            d.w, const_cast<void*>(io.w));
  }
  return CUDNN_STATUS_BAD_PARAM;
}

/// One heuristic entry, pass-independent.
struct Entry {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  bool deterministic;
  cudnnMathType_t math;
};

template <class Perf>
inline std::vector<Entry> to_entries(const std::vector<Perf>& perf, int returned) {
  std::vector<Entry> out;
  for (int i = 0; i < returned; ++i) {
    const Perf& q = perf[static_cast<size_t>(i)];
    out.push_back({static_cast<int>(q.algo), q.status, q.memory, q.determinism == CUDNN_DETERMINISTIC, q.mathType});
  }
  return out;
}

/// The _v7 heuristics of pass p, asked for `requested` entries (MaxCount when 0); the call's status in *status.
inline std::vector<Entry> heuristics(const Handle& h, const Descriptors& d, Pass p, cudnnStatus_t* status,
                                     int requested = 0) {
  int max = 0, returned = -1;
  switch (p) {
    case Pass::forward: {
      REQUIRE(cudnnGetConvolutionForwardAlgorithmMaxCount(h.h, &max) == CUDNN_STATUS_SUCCESS);
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(max));
      *status = cudnnGetConvolutionForwardAlgorithm_v7(h.h, d.x, d.w, d.conv, d.y, requested ? requested : max,
                                                       &returned, perf.data());
      return to_entries(perf, returned);
    }
    case Pass::backward_data: {
      REQUIRE(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h.h, &max) == CUDNN_STATUS_SUCCESS);
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(max));
      *status = cudnnGetConvolutionBackwardDataAlgorithm_v7(h.h, d.w, d.y, d.conv, d.x, requested ? requested : max,
                                                            &returned, perf.data());
      return to_entries(perf, returned);
    }
    case Pass::backward_filter: {
      REQUIRE(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h.h, &max) == CUDNN_STATUS_SUCCESS);
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(max));
      *status = cudnnGetConvolutionBackwardFilterAlgorithm_v7(h.h, d.x, d.y, d.conv, d.w, requested ? requested : max,
                                                              &returned, perf.data());
      return to_entries(perf, returned);
    }
  }
  return {};
}

/// cudnnGet*WorkspaceSize of pass p and algorithm `algo`.
inline cudnnStatus_t workspace_size(const Handle& h, const Descriptors& d, Pass p, int algo, size_t* bytes) {
  switch (p) {
    case Pass::forward:
      return cudnnGetConvolutionForwardWorkspaceSize(h.h, d.x, d.w, d.conv, d.y,
                                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
    case Pass::backward_data:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h.h, d.w, d.y, d.conv, d.x,
                                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
    case Pass::backward_filter:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h.h, d.x, d.y, d.conv, d.w,
                                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

/// The supported entries of the heuristics, each checked against cudnnGet*WorkspaceSize.
inline std::vector<Entry> supported_algorithms(const Handle& h, const Descriptors& d, Pass p) {
  cudnnStatus_t st = CUDNN_STATUS_INTERNAL_ERROR;
  std::vector<Entry> out;
  for (const Entry& e : heuristics(h, d, p, &st))
    if (e.status == CUDNN_STATUS_SUCCESS) {
      size_t bytes = 0;
      CHECK(workspace_size(h, d, p, e.algo, &bytes) == CUDNN_STATUS_SUCCESS);
      CHECK(bytes == e.memory);
      out.push_back(e);
    }
  CHECK(st == CUDNN_STATUS_SUCCESS);
  return out;
}

/// The data of one call on the device: inputs a and b (forward x, w; backward data dy, w; backward filter x, dy),
/// and the output, in the descriptors' layouts.
struct PassData {
  std::vector<double> x, w, y;  ///< packed values (the output's are its old contents)
  std::unique_ptr<DeviceBuffer> dx, dw, dy;
  PassData(std::mt19937& gen, const Descriptors& d, Pass p, double old_fill) {
    const Geometry& g = d.g;
    const cudnnDataType_t t = d.cfg.type;
    const auto count = [](const Dims& dims) { return static_cast<size_t>(dims[0]) * dims[1] * dims[2] * dims[3]; };
    x = random_values(gen, count(g.x_dims()), t);
    w = random_values(gen, count(g.w_dims()), t);
    y = random_values(gen, count(g.y_dims()), t);
    std::vector<double>& out = p == Pass::forward ? y : p == Pass::backward_data ? x : w;
    if (std::isnan(old_fill)) std::fill(out.begin(), out.end(), old_fill);
    dx = std::make_unique<DeviceBuffer>(scatter(x, g.x_dims(), d.cfg.x_strides, 7.0), t);
    dw = std::make_unique<DeviceBuffer>(w, t);
    dy = std::make_unique<DeviceBuffer>(scatter(y, g.y_dims(), d.cfg.y_strides, 7.0), t);
  }
  Pointers pointers() const { return {dx->p, dw->p, dy->p}; }
  /// The output's described elements, after checking its gaps still hold 7.
  std::vector<double> result(const Descriptors& d, Pass p) const {
    const cudnnDataType_t t = d.cfg.type;
    if (p == Pass::backward_filter) return dw->download(t);
    const bool fwd = p == Pass::forward;
    const std::vector<double> buf = (fwd ? dy : dx)->download(t);
    const Dims dims = fwd ? d.g.y_dims() : d.g.x_dims();
    const Dims st = fwd ? d.cfg.y_strides : d.cfg.x_strides;
    CHECK(scatter(gather(buf, dims, st), dims, st, 7.0) == buf);  // nothing written between the elements
    return gather(buf, dims, st);
  }
};

/// Runs pass p with every supported algorithm and two (alpha, beta) pairs: (1, 0) over an output filled with NaN,
/// which must not leak, and (0.75, -0.5) over random old values; checks each against the float64 reference.
inline void check_pass(std::mt19937& gen, const Handle& h, const Descriptors& d, Pass p) {
  const std::vector<Entry> algos = supported_algorithms(h, d, p);
  REQUIRE(!algos.empty());
  for (const Entry& e : algos)
    for (const auto& [alpha, beta] : {std::pair{1.0, 0.0}, std::pair{0.75, -0.5}}) {
      const std::string what = std::string(pass_name(p)) + " algo " + std::to_string(e.algo) + " type " +
                               std::to_string(d.cfg.type) + " alpha " + std::to_string(alpha) + " beta " +
                               std::to_string(beta) + " " + d.g.name();
      PassData data(gen, d, p, beta == 0.0 ? std::numeric_limits<double>::quiet_NaN() : 0.0);
      std::unique_ptr<DeviceBuffer> ws = e.memory ? std::make_unique<DeviceBuffer>(e.memory) : nullptr;
      Pointers io = data.pointers();
      io.ws = ws ? ws->p : nullptr;
      io.ws_bytes = e.memory;
      REQUIRE(run(h, d, p, e.algo, io, alpha, beta) == CUDNN_STATUS_SUCCESS);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const std::vector<double>& a = p == Pass::backward_data ? data.y : data.x;
      const std::vector<double>& b = p == Pass::backward_filter ? data.y : data.w;
      const std::vector<double>& old = p == Pass::forward ? data.y : p == Pass::backward_data ? data.x : data.w;
      check_result(data.result(d, p), reference(p, d.g, a, b), old, alpha, beta, d.cfg.type, what);
    }
}

/// The number of algorithm enumerants of a pass (its *_ALGO_COUNT).
inline int algo_count(Pass p) {
  switch (p) {
    case Pass::forward: return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case Pass::backward_data: return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case Pass::backward_filter: return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
  return 0;
}

/// The FFT algorithm of a pass.
inline int fft_algo(Pass p) {
  switch (p) {
    case Pass::forward: return CUDNN_CONVOLUTION_FWD_ALGO_FFT;
    case Pass::backward_data: return CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT;
    case Pass::backward_filter: return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT;
  }
  return 0;
}

inline constexpr cudnnDataType_t kTypes[] = {CUDNN_DATA_FLOAT, CUDNN_DATA_HALF, CUDNN_DATA_BFLOAT16, CUDNN_DATA_DOUBLE};
inline constexpr Pass kPasses[] = {Pass::forward, Pass::backward_data, Pass::backward_filter};

}  // namespace mixtape::testing::cudnn_emu
