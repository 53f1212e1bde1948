// cuDNN 2-D convolution (NCHW contiguous, groups = 1): forward, backward-data and backward-filter. The bias and
// its gradient are small own kernels (cuda_pool_norm.cu): deterministic, float accumulation with one rounding,
// and independent of which data types cuDNN's cudnnAddTensor / cudnnConvolutionBackwardBias accept.
//
// API choice: cuDNN 9 still ships the legacy convolution API (cudnn_cnn.h: cudnnConvolutionForward & co.). It is
// marked CUDNN_DEPRECATED, but that attribute only expands to a warning when CUDNN_WARN_DEPRECATED is defined,
// which this build does not do, so no local warning suppression is needed. It compiles and links against
// cuDNN 9.19 (libcudnn dispatches to libcudnn_cnn).
//
// Precision: f16/bf16 use tensor-op math with float compute (float accumulation, one rounding of the convolution
// result); f32 uses FMA math (exact float32, no TF32) unless TF32 is allowed; f64 computes in double. With a bias,
// the convolution result is rounded to the output dtype before the bias is added (in float, then rounded
// again), so f16/bf16 outputs with a bias may differ from the CPU's single rounding by one unit
// in the last place.
//
// Algorithms: chosen once per (device, dtype, TF32 setting, pass, shape, geometry) from cuDNN's heuristics
// (cudnnGet*Algorithm_v7), deterministic algorithms first, within kConvWorkspaceLimit; the first that runs is
// cached with its workspace size, so later calls make no queries. Workspace comes from CudaBackend::workspace().
// Batches whose tensors exceed cuDNN's int limits are processed in slices (conv_batch_chunk).
#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/gemm_settings.h"
#include "cuda/check.h"
#include "cuda/conv_plan.h"
#include "cuda/cuda_backend.h"

namespace mixtape::cuda {

namespace {

/// Whether f32 convolutions may use TF32 tensor cores: the process-wide setting of core/gemm_settings.h (off by
/// default).
bool tf32_allowed() { return ::mixtape::allow_tf32(); }

class TensorDesc {
 public:
  TensorDesc(cudnnDataType_t type, const Desc4& d) {
    MIXTAPE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_));
    const cudnnStatus_t st = cudnnSetTensor4dDescriptorEx(desc_, type, d.dims[0], d.dims[1], d.dims[2], d.dims[3],
                                                          d.strides[0], d.strides[1], d.strides[2], d.strides[3]);
    if (st != CUDNN_STATUS_SUCCESS) {
      (void)cudnnDestroyTensorDescriptor(desc_);
      throw_cudnn_error("cudnnSetTensor4dDescriptorEx", st, __FILE__, __LINE__);
    }
  }
  ~TensorDesc() { (void)cudnnDestroyTensorDescriptor(desc_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc(cudnnDataType_t type, const Desc4& d) {
    MIXTAPE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_));
    const cudnnStatus_t st =
        cudnnSetFilter4dDescriptor(desc_, type, CUDNN_TENSOR_NCHW, d.dims[0], d.dims[1], d.dims[2], d.dims[3]);
    if (st != CUDNN_STATUS_SUCCESS) {
      (void)cudnnDestroyFilterDescriptor(desc_);
      throw_cudnn_error("cudnnSetFilter4dDescriptor", st, __FILE__, __LINE__);
    }
  }
  ~FilterDesc() { (void)cudnnDestroyFilterDescriptor(desc_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc(const ConvDescs& d, const ConvMath& m) {
    MIXTAPE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_));
    cudnnStatus_t st = cudnnSetConvolution2dDescriptor(desc_, d.pad[0], d.pad[1], d.stride[0], d.stride[1],
                                                       d.dilation[0], d.dilation[1], CUDNN_CROSS_CORRELATION,
                                                       m.compute);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnnSetConvolutionMathType(desc_, m.math);
    if (st != CUDNN_STATUS_SUCCESS) {
      (void)cudnnDestroyConvolutionDescriptor(desc_);
      throw_cudnn_error("cudnnSetConvolution2dDescriptor/cudnnSetConvolutionMathType", st, __FILE__, __LINE__);
    }
  }
  ~ConvDesc() { (void)cudnnDestroyConvolutionDescriptor(desc_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return desc_; }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

/// The descriptors of one batch slice.
struct Descriptors {
  ConvDescs dims;
  ConvMath math;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Descriptors(const ConvShape& s, int64_t n, const Conv2dParams& p, DType dtype, bool tf32)
      : dims(conv_descs(s, n, p)),
        math(conv_math(dtype, tf32)),
        x(math.data, dims.x),
        y(math.data, dims.y),
        w(math.data, dims.w),
        conv(dims, math) {
    // cuDNN's own output size must be the one conv_plan computed: a disagreement (a bug in the plan) is named
    // here with both shapes, instead of surfacing as "no cuDNN algorithm supports this convolution".
    std::array<int, 4> out{};
    MIXTAPE_CUDNN_CHECK(
        cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &out[0], &out[1], &out[2], &out[3]));
    MIXTAPE_CHECK(out == dims.y.dims, "conv2d (cuda): cuDNN computes an output of (", out[0], ", ", out[1], ", ",
                  out[2], ", ", out[3], ") but the plan has (", dims.y.dims[0], ", ", dims.y.dims[1], ", ",
                  dims.y.dims[2], ", ", dims.y.dims[3], ")");
  }
};

/// A cached choice: the ranked algorithms, and once one has run, it alone with its workspace size.
struct AlgoPlan {
  std::vector<int> algos;
  bool settled = false;
  size_t workspace = 0;
};

std::mutex& cache_mutex() {
  static std::mutex mu;
  return mu;
}
std::map<ConvAlgoKey, AlgoPlan>& cache() {
  static std::map<ConvAlgoKey, AlgoPlan> c;
  return c;
}

template <class Perf>
std::vector<AlgoCandidate> to_candidates(const std::vector<Perf>& perf, int returned) {
  std::vector<AlgoCandidate> out;
  for (int i = 0; i < returned; ++i)
    out.push_back({static_cast<int>(perf[static_cast<size_t>(i)].algo),
                   perf[static_cast<size_t>(i)].status == CUDNN_STATUS_SUCCESS, perf[static_cast<size_t>(i)].memory,
                   perf[static_cast<size_t>(i)].determinism == CUDNN_DETERMINISTIC});
  return out;
}

/// cuDNN's heuristic ranking for one pass, filtered and ordered by rank_algorithms.
std::vector<int> query_algorithms(cudnnHandle_t h, ConvPass pass, const Descriptors& d) {
  int max_count = 0, returned = 0;
  std::vector<AlgoCandidate> candidates;
  switch (pass) {
    case ConvPass::forward: {
      MIXTAPE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(max_count, 1)));
      MIXTAPE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                                 max_count, &returned, perf.data()));
      candidates = to_candidates(perf, returned);
      break;
    }
    case ConvPass::backward_data: {
      MIXTAPE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(max_count, 1)));
      MIXTAPE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w.get(), d.y.get(), d.conv.get(),
                                                                      d.x.get(), max_count, &returned, perf.data()));
      candidates = to_candidates(perf, returned);
      break;
    }
    case ConvPass::backward_filter: {
      MIXTAPE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(std::max(max_count, 1)));
      MIXTAPE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x.get(), d.y.get(), d.conv.get(),
                                                                        d.w.get(), max_count, &returned, perf.data()));
      candidates = to_candidates(perf, returned);
      break;
    }
  }
  return rank_algorithms(candidates, kConvWorkspaceLimit);
}

/// Workspace bytes of `algo` for one pass (CUDNN_STATUS_NOT_SUPPORTED and the like are returned, not thrown).
cudnnStatus_t workspace_size(cudnnHandle_t h, ConvPass pass, const Descriptors& d, int algo, size_t* bytes) {
  switch (pass) {
    case ConvPass::forward:
      return cudnnGetConvolutionForwardWorkspaceSize(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
    case ConvPass::backward_data:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(),
                                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
    case ConvPass::backward_filter:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
                                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

/// Pointers of one pass: forward reads x, w and writes y; backward-data reads y (= gy), w and writes x (= gx);
/// backward-filter reads x, y (= gy) and writes w (= gw), scaled by beta (alpha = 1).
struct PassData {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* y = nullptr;
  void* out = nullptr;
  bool accumulate = false;  ///< beta = 1 (later batch slices of backward-filter), else beta = 0
};

cudnnStatus_t execute(cudnnHandle_t h, ConvPass pass, const Descriptors& d, int algo, void* ws, size_t ws_bytes,
                      const PassData& io) {
  // Scaling factors are float for float/half/bfloat16 data and double for double data.
  const float one_f = 1.0f, beta_f = io.accumulate ? 1.0f : 0.0f;
  const double one_d = 1.0, beta_d = io.accumulate ? 1.0 : 0.0;
  const bool dbl = d.math.data == CUDNN_DATA_DOUBLE;
  const void* alpha = dbl ? static_cast<const void*>(&one_d) : static_cast<const void*>(&one_f);
  const void* beta = dbl ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f);
  switch (pass) {
    case ConvPass::forward:
      return cudnnConvolutionForward(h, alpha, d.x.get(), io.x, d.w.get(), io.w, d.conv.get(),
                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws, ws_bytes, beta, d.y.get(),
                                     io.out);
    case ConvPass::backward_data:
      return cudnnConvolutionBackwardData(h, alpha, d.w.get(), io.w, d.y.get(), io.y, d.conv.get(),
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws, ws_bytes, beta,
                                          d.x.get(), io.out);
    case ConvPass::backward_filter:
      return cudnnConvolutionBackwardFilter(h, alpha, d.x.get(), io.x, d.y.get(), io.y, d.conv.get(),
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), ws, ws_bytes, beta,
                                            d.w.get(), io.out);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

const char* pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::forward: return "cudnnConvolutionForward";
    case ConvPass::backward_data: return "cudnnConvolutionBackwardData";
    case ConvPass::backward_filter: return "cudnnConvolutionBackwardFilter";
  }
  return "convolution";
}

/// Runs one pass over one batch slice with the cached algorithm, choosing (and caching) it on first use: the
/// ranked algorithms are tried in order, skipping those cuDNN reports as unsupported for these descriptors.
void run_pass(CudaBackend& be, ConvPass pass, const Descriptors& d, const ConvAlgoKey& key, const PassData& io) {
  cudnnHandle_t h = be.cudnn_handle();
  AlgoPlan plan;
  {
    std::lock_guard<std::mutex> lock(cache_mutex());
    auto it = cache().find(key);
    if (it != cache().end()) plan = it->second;
  }
  if (plan.settled) {
    void* ws = be.workspace(plan.workspace);
    MIXTAPE_CUDNN_CHECK(execute(h, pass, d, plan.algos.front(), ws, plan.workspace, io));
    return;
  }
  if (plan.algos.empty()) plan.algos = query_algorithms(h, pass, d);
  cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
  for (int algo : plan.algos) {
    size_t bytes = 0;
    last = workspace_size(h, pass, d, algo, &bytes);
    if (last != CUDNN_STATUS_SUCCESS) continue;
    if (bytes > kConvWorkspaceLimit) continue;
    void* ws = be.workspace(bytes);
    last = execute(h, pass, d, algo, ws, bytes, io);
    if (last == CUDNN_STATUS_NOT_SUPPORTED) continue;
    if (last != CUDNN_STATUS_SUCCESS) throw_cudnn_error(pass_name(pass), last, __FILE__, __LINE__);
    std::lock_guard<std::mutex> lock(cache_mutex());
    cache()[key] = AlgoPlan{{algo}, true, bytes};
    return;
  }
  throw Error(detail::cat(pass_name(pass), ": no cuDNN algorithm supports this convolution (", plan.algos.size(),
                          " candidates within ", kConvWorkspaceLimit >> 20, " MiB of workspace; last status: ",
                          cudnnGetErrorString(last), ") for input (", key.dims[0], ", ", key.dims[1], ", ",
                          key.dims[2], ", ", key.dims[3], "), weight (", key.dims[4], ", ", key.dims[1], ", ",
                          key.dims[5], ", ", key.dims[6], "), dtype ", dtype_name(key.dtype)));
}

/// Byte offset of sample `n` in a (N, ...) tensor with `per_sample` elements per sample.
template <class P>
P* at_sample(P* base, int64_t n, int64_t per_sample, DType dtype) {
  using Byte = std::conditional_t<std::is_const_v<P>, const char, char>;
  return reinterpret_cast<P*>(reinterpret_cast<Byte*>(base) +
                              static_cast<size_t>(n * per_sample) * dtype_size(dtype));
}

}  // namespace

void CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p) {
  DeviceGuard g(index_);
  const ConvShape s = conv_shape(x.shape(), w.shape(), p);
  const DType dt = x.dtype();
  const bool tf32 = tf32_allowed();
  if (out.numel() == 0) return;
  const int64_t chunk = conv_batch_chunk(s);
  const int64_t x_per = s.c * s.h * s.w, y_per = s.oc * s.oh * s.ow;
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    const int64_t n = std::min(chunk, s.n - n0);
    Descriptors d(s, n, p, dt, tf32);
    void* y = at_sample(out.raw_data(), n0, y_per, dt);
    PassData io;
    io.x = at_sample(static_cast<const void*>(x.raw_data()), n0, x_per, dt);
    io.w = w.raw_data();
    io.out = y;
    run_pass(*this, ConvPass::forward, d, conv_algo_key(index_, dt, tf32, ConvPass::forward, s, n, p), io);
  }
  if (b.defined()) launch_conv_bias_add(dt, out.raw_data(), b.raw_data(), s.n, s.oc, s.oh * s.ow, stream_);
}

void CudaBackend::conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p) {
  DeviceGuard g(index_);
  const ConvShape s = conv_shape(gx.shape(), w.shape(), p);
  MIXTAPE_CHECK((gy.shape() == Shape{s.n, s.oc, s.oh, s.ow}), "conv2d backward (cuda): expected a gradient of shape (",
                s.n, ", ", s.oc, ", ", s.oh, ", ", s.ow, "), got ", gy.shape().to_string());
  const DType dt = gy.dtype();
  const bool tf32 = tf32_allowed();
  if (gx.numel() == 0) return;
  if (s.oc == 0) {  // no output channels: nothing flows back
    MIXTAPE_CUDA_CHECK(cudaMemsetAsync(gx.raw_data(), 0, gx.nbytes(), stream_));
    return;
  }
  const int64_t chunk = conv_batch_chunk(s);
  const int64_t x_per = s.c * s.h * s.w, y_per = s.oc * s.oh * s.ow;
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    const int64_t n = std::min(chunk, s.n - n0);
    Descriptors d(s, n, p, dt, tf32);
    PassData io;
    io.w = w.raw_data();
    io.y = at_sample(static_cast<const void*>(gy.raw_data()), n0, y_per, dt);
    io.out = at_sample(gx.raw_data(), n0, x_per, dt);
    run_pass(*this, ConvPass::backward_data, d, conv_algo_key(index_, dt, tf32, ConvPass::backward_data, s, n, p), io);
  }
}

void CudaBackend::conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                                         const Conv2dParams& p) {
  MIXTAPE_CHECK(gw.defined(), "conv2d backward (cuda): the filter pass needs gw (the bias gradient alone is a sum)");
  DeviceGuard g(index_);
  const ConvShape s = conv_shape(x.shape(), gw.shape(), p);
  MIXTAPE_CHECK((gy.shape() == Shape{s.n, s.oc, s.oh, s.ow}), "conv2d backward (cuda): expected a gradient of shape (",
                s.n, ", ", s.oc, ", ", s.oh, ", ", s.ow, "), got ", gy.shape().to_string());
  const DType dt = gy.dtype();
  const bool tf32 = tf32_allowed();
  const bool want_w = gw.defined() && gw.numel() > 0, want_b = gb.defined() && gb.numel() > 0;
  if (!want_w && !want_b) return;
  if (s.n == 0) {  // empty batch: zero gradients
    if (want_w) MIXTAPE_CUDA_CHECK(cudaMemsetAsync(gw.raw_data(), 0, gw.nbytes(), stream_));
    if (want_b) MIXTAPE_CUDA_CHECK(cudaMemsetAsync(gb.raw_data(), 0, gb.nbytes(), stream_));
    return;
  }
  const int64_t chunk = conv_batch_chunk(s);
  const int64_t x_per = s.c * s.h * s.w, y_per = s.oc * s.oh * s.ow;
  for (int64_t n0 = 0; want_w && n0 < s.n; n0 += chunk) {  // later slices accumulate into gw (beta = 1)
    const int64_t n = std::min(chunk, s.n - n0);
    Descriptors d(s, n, p, dt, tf32);
    PassData io;
    io.x = at_sample(static_cast<const void*>(x.raw_data()), n0, x_per, dt);
    io.y = at_sample(static_cast<const void*>(gy.raw_data()), n0, y_per, dt);
    io.out = gw.raw_data();
    io.accumulate = n0 > 0;
    run_pass(*this, ConvPass::backward_filter, d, conv_algo_key(index_, dt, tf32, ConvPass::backward_filter, s, n, p),
             io);
  }
  if (want_b) launch_conv_bias_grad(dt, gy.raw_data(), gb.raw_data(), s.n, s.oc, s.oh * s.ow, stream_);
}

}  // namespace mixtape::cuda
