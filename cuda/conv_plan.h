#pragma once
// Host-side planning of the CUDA convolution, pooling and batch-norm kernels (cuda_conv.cpp, cuda_pool_norm.cu),
// kept free of GPU calls so it is unit-tested on a machine without a GPU (tests/test_conv_plan.cpp):
// cuDNN descriptor dimensions and strides, batch chunking (cuDNN's legacy API takes int dimensions and at most
// 2^31 - 1 elements per tensor), the math type of each dtype, the algorithm-cache key and the algorithm ranking,
// and the window/index arithmetic the pooling kernels share with the CPU backend (MIXTAPE_HD: host and device).
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/macros.h"

namespace mixtape::cuda {

/// Sizes of one 2-D convolution: x (n, c, h, w), w (oc, c, kh, kw), y (n, oc, oh, ow).
struct ConvShape {
  int64_t n = 0, c = 0, h = 0, w = 0, oc = 0, kh = 0, kw = 0, oh = 0, ow = 0;
  friend bool operator==(const ConvShape&, const ConvShape&) = default;
};

/// The sizes of conv(x, w) with geometry p; oh/ow use the same formula as kernels::conv2d_output_shape and the
/// same checks (x and w 4-D, matching channels, kernel fits the padded input), throwing mixtape::Error otherwise.
ConvShape conv_shape(const Shape& x, const Shape& w, const Conv2dParams& p);

/// The largest batch slice whose input and output each have at most 2^31 - 1 elements (cuDNN's int limit);
/// throws when one sample alone is larger. Returns s.n when the whole batch fits.
int64_t conv_batch_chunk(const ConvShape& s);

/// `v` as an int, throwing mixtape::Error naming `what` when it does not fit.
int to_cudnn_int(int64_t v, const char* what);

/// Dimensions and strides of one cuDNN 4-D descriptor (NCHW, fully packed).
struct Desc4 {
  std::array<int, 4> dims{};
  std::array<int, 4> strides{};
  friend bool operator==(const Desc4&, const Desc4&) = default;
};
/// Packed NCHW strides of (n, c, h, w): (c*h*w, h*w, w, 1); throws when a value exceeds int.
Desc4 nchw_desc(int64_t n, int64_t c, int64_t h, int64_t w);

/// Everything cuDNN needs to describe one convolution call on a batch slice of `n` samples.
struct ConvDescs {
  Desc4 x, w, y, bias;                 ///< x (n, c, h, w), w (oc, c, kh, kw), y (n, oc, oh, ow), bias (1, oc, 1, 1)
  std::array<int, 2> pad{}, stride{}, dilation{};
};
/// The descriptors of a slice of n samples (n <= s.n) of the convolution s with geometry p.
ConvDescs conv_descs(const ConvShape& s, int64_t n, const Conv2dParams& p);

/// Data, compute and math type of a convolution of `dtype`: f32 -> float compute with FMA math (exact, no TF32)
/// unless allow_tf32 (then default math, which permits TF32 on Ampere and newer); f16/bf16 -> float compute with
/// tensor-op math; f64 -> double compute. Throws for a non-floating dtype.
struct ConvMath {
  cudnnDataType_t data = CUDNN_DATA_FLOAT, compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  friend bool operator==(const ConvMath&, const ConvMath&) = default;
};
ConvMath conv_math(DType dtype, bool allow_tf32);

/// cuDNN's data type of a floating dtype (f32, f16, bf16, f64); throws otherwise.
cudnnDataType_t cudnn_data_type(DType dtype);

/// The three passes of a convolution, each with its own algorithm.
enum class ConvPass : uint8_t { forward, backward_data, backward_filter };

/// The algorithm-cache key: one entry per (device, dtype, TF32 setting, pass, slice shape, geometry).
struct ConvAlgoKey {
  int device = 0;
  DType dtype = DType::f32;
  bool allow_tf32 = false;
  ConvPass pass = ConvPass::forward;
  std::array<int64_t, 9> dims{};      ///< n (of the slice), c, h, w, oc, kh, kw, oh, ow
  std::array<int64_t, 6> geometry{};  ///< stride h/w, pad h/w, dilation h/w
  friend auto operator<=>(const ConvAlgoKey&, const ConvAlgoKey&) = default;
};
/// The key of pass `pass` over a slice of `n` samples of s.
ConvAlgoKey conv_algo_key(int device, DType dtype, bool allow_tf32, ConvPass pass, const ConvShape& s, int64_t n,
                          const Conv2dParams& p);

/// One algorithm as cuDNN's heuristics report it (cudnnConvolution*AlgoPerf_t, without the cuDNN type).
struct AlgoCandidate {
  int algo = 0;
  bool ok = false;            ///< status == CUDNN_STATUS_SUCCESS
  size_t memory = 0;          ///< workspace bytes
  bool deterministic = false; ///< determinism == CUDNN_DETERMINISTIC
};
/// The algorithms worth trying, best first: those that are ok and need at most `workspace_limit` bytes, the
/// deterministic ones first (results do not change run to run), each group in cuDNN's order; duplicates dropped.
std::vector<int> rank_algorithms(const std::vector<AlgoCandidate>& candidates, size_t workspace_limit);

/// Most workspace a convolution algorithm may use (bytes): larger requests fall back to the next algorithm.
inline constexpr size_t kConvWorkspaceLimit = size_t{1} << 30;

// ---- pooling index arithmetic shared by the CUDA kernels and checked against the CPU backend ----

/// [lo, hi) of the output positions along one axis whose pooling window covers input position a
/// (window of output i: [i*stride - pad, i*stride - pad + kernel)), clipped to [0, out_size).
struct CoverRange {
  int64_t lo, hi;
};
MIXTAPE_HD inline CoverRange pool_cover_range(int64_t a, int64_t kernel, int64_t stride, int64_t pad,
                                              int64_t out_size) {
  // i*stride - pad <= a  <=>  i <= (a + pad) / stride;   a < i*stride - pad + kernel  <=>  i*stride > a + pad - kernel
  const int64_t top = a + pad;  // >= 0
  int64_t hi = top / stride + 1;
  const int64_t t = top - kernel + 1;  // smallest i with i*stride >= t
  int64_t lo = t <= 0 ? 0 : (t + stride - 1) / stride;
  if (hi > out_size) hi = out_size;
  if (lo > hi) lo = hi;
  return {lo, hi};
}

/// PyTorch's average-pool window of output (i, j) over an h x w input: [h0, h1) x [w0, w1) clipped to the input,
/// and the divisor, which counts padding (count_include_pad) but not the part beyond the padded input.
struct AvgWindow {
  int64_t h0, h1, w0, w1, count;
};
MIXTAPE_HD inline AvgWindow avg_pool_window(int64_t i, int64_t j, int64_t h, int64_t w, const Pool2dParams& p) {
  const int64_t h0 = i * p.stride_h - p.pad_h, w0 = j * p.stride_w - p.pad_w;
  const int64_t h1 = h0 + p.kernel_h < h + p.pad_h ? h0 + p.kernel_h : h + p.pad_h;
  const int64_t w1 = w0 + p.kernel_w < w + p.pad_w ? w0 + p.kernel_w : w + p.pad_w;
  const int64_t count = (h1 - h0) * (w1 - w0);
  return {h0 > 0 ? h0 : 0, h1 < h ? h1 : h, w0 > 0 ? w0 : 0, w1 < w ? w1 : w, count};
}

// ---- launch configuration ----

/// Threads per block of the batch-norm kernels (one block per channel): a power of two in [32, 512], about one
/// thread per 4 elements of the channel, so small channels do not idle 512 threads.
int batch_norm_threads(int64_t per_channel);
/// Blocks of a grid-stride launch over n items with `threads` per block, at least 1 and at most max_blocks.
int64_t grid_blocks(int64_t n, int threads, int64_t max_blocks = 65535);

// ---- launchers defined in cuda_pool_norm.cu, used by cuda_conv.cpp (asynchronous on `stream`) ----

/// y (n, oc, hw) += b (oc) in place, in float (double for f64), rounded once into dtype.
void launch_conv_bias_add(DType dtype, void* y, const void* b, int64_t n, int64_t oc, int64_t hw,
                          cudaStream_t stream);
/// gb (oc) = sum of gy (n, oc, hw) over n and hw: float accumulation (double for f64) in a fixed order
/// (deterministic), rounded once into dtype.
void launch_conv_bias_grad(DType dtype, const void* gy, void* gb, int64_t n, int64_t oc, int64_t hw,
                           cudaStream_t stream);

}  // namespace mixtape::cuda
