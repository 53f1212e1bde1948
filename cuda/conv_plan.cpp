#include "cuda/conv_plan.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace mixtape::cuda {

ConvShape conv_shape(const Shape& x, const Shape& w, const Conv2dParams& p) {
  MIXTAPE_CHECK(x.size() == 4 && w.size() == 4, "conv2d (cuda): expected a 4-D input and weight, got ",
                x.to_string(), " and ", w.to_string());
  MIXTAPE_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.dil_h > 0 && p.dil_w > 0 && p.pad_h >= 0 && p.pad_w >= 0,
                "conv2d (cuda): stride and dilation must be positive and padding non-negative");
  MIXTAPE_CHECK(x[1] > 0, "conv2d (cuda): expected an input with at least one channel, got ", x.to_string());
  MIXTAPE_CHECK(x[1] == w[1], "conv2d (cuda): input has ", x[1], " channels but the weight ", w.to_string(),
                " expects ", w[1], " (groups = 1)");
  const int64_t eh = p.dil_h * (w[2] - 1) + 1, ew = p.dil_w * (w[3] - 1) + 1;
  MIXTAPE_CHECK(x[2] + 2 * p.pad_h >= eh && x[3] + 2 * p.pad_w >= ew, "conv2d (cuda): kernel ", w.to_string(),
                " (dilated ", eh, "x", ew, ") is larger than the padded input ", x.to_string());
  ConvShape s;
  s.n = x[0], s.c = x[1], s.h = x[2], s.w = x[3];
  s.oc = w[0], s.kh = w[2], s.kw = w[3];
  s.oh = (x[2] + 2 * p.pad_h - eh) / p.stride_h + 1;
  s.ow = (x[3] + 2 * p.pad_w - ew) / p.stride_w + 1;
  return s;
}

int64_t conv_batch_chunk(const ConvShape& s) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const int64_t per_sample = std::max(s.c * s.h * s.w, s.oc * s.oh * s.ow);
  MIXTAPE_CHECK(per_sample <= kMax, "conv2d (cuda): one sample has ", per_sample,
                " elements in its input or output, more than cuDNN's limit of ", kMax, " per tensor");
  MIXTAPE_CHECK(s.oc * s.c * s.kh * s.kw <= kMax, "conv2d (cuda): the weight has ", s.oc * s.c * s.kh * s.kw,
                " elements, more than cuDNN's limit of ", kMax);
  if (per_sample == 0) return std::max<int64_t>(s.n, 1);
  return std::max<int64_t>(1, std::min(s.n, kMax / per_sample));
}

int to_cudnn_int(int64_t v, const char* what) {
  MIXTAPE_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "conv2d (cuda): ", what, " = ", v,
                " does not fit cuDNN's int");
  return static_cast<int>(v);
}

Desc4 nchw_desc(int64_t n, int64_t c, int64_t h, int64_t w) {
  Desc4 d;
  d.dims = {to_cudnn_int(n, "batch"), to_cudnn_int(c, "channels"), to_cudnn_int(h, "height"),
            to_cudnn_int(w, "width")};
  d.strides = {to_cudnn_int(c * h * w, "batch stride"), to_cudnn_int(h * w, "channel stride"),
               to_cudnn_int(w, "row stride"), 1};
  return d;
}

ConvDescs conv_descs(const ConvShape& s, int64_t n, const Conv2dParams& p) {
  MIXTAPE_CHECK(n >= 1 && n <= s.n, "conv2d (cuda): batch slice of ", n, " samples out of ", s.n);
  ConvDescs d;
  d.x = nchw_desc(n, s.c, s.h, s.w);
  d.w = nchw_desc(s.oc, s.c, s.kh, s.kw);
  d.y = nchw_desc(n, s.oc, s.oh, s.ow);
  d.bias = nchw_desc(1, s.oc, 1, 1);
  d.pad = {to_cudnn_int(p.pad_h, "padding"), to_cudnn_int(p.pad_w, "padding")};
  d.stride = {to_cudnn_int(p.stride_h, "stride"), to_cudnn_int(p.stride_w, "stride")};
  d.dilation = {to_cudnn_int(p.dil_h, "dilation"), to_cudnn_int(p.dil_w, "dilation")};
  return d;
}

cudnnDataType_t cudnn_data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    default: break;
  }
  throw Error(detail::cat("conv2d (cuda): expected a floating-point tensor (f32, f16, bf16 or f64), got ",
                          dtype_name(dtype)));
}

ConvMath conv_math(DType dtype, bool allow_tf32) {
  ConvMath m;
  m.data = cudnn_data_type(dtype);
  switch (dtype) {
    case DType::f16:
    case DType::bf16:  // tensor cores, float accumulation, one rounding of the output
      m.compute = CUDNN_DATA_FLOAT;
      m.math = CUDNN_TENSOR_OP_MATH;
      break;
    case DType::f64:
      m.compute = CUDNN_DATA_DOUBLE;
      m.math = CUDNN_FMA_MATH;
      break;
    default:  // f32: FMA math excludes TF32 tensor-core kernels; default math lets cuDNN use TF32
      m.compute = CUDNN_DATA_FLOAT;
      m.math = allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
      break;
  }
  return m;
}

ConvAlgoKey conv_algo_key(int device, DType dtype, bool allow_tf32, ConvPass pass, const ConvShape& s, int64_t n,
                          const Conv2dParams& p) {
  ConvAlgoKey k;
  k.device = device;
  k.dtype = dtype;
  k.allow_tf32 = dtype == DType::f32 && allow_tf32;  // the setting only matters for f32
  k.pass = pass;
  k.dims = {n, s.c, s.h, s.w, s.oc, s.kh, s.kw, s.oh, s.ow};
  k.geometry = {p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w};
  return k;
}

std::vector<int> rank_algorithms(const std::vector<AlgoCandidate>& candidates, size_t workspace_limit) {
  std::vector<int> out;
  for (int pass = 0; pass < 2; ++pass)
    for (const AlgoCandidate& c : candidates) {
      if (!c.ok || c.memory > workspace_limit || c.deterministic != (pass == 0)) continue;
      if (std::find(out.begin(), out.end(), c.algo) == out.end()) out.push_back(c.algo);
    }
  return out;
}

int batch_norm_threads(int64_t per_channel) {
  int t = 32;
  while (t < 512 && static_cast<int64_t>(t) * 4 < per_channel) t *= 2;
  return t;
}

int64_t grid_blocks(int64_t n, int threads, int64_t max_blocks) {
  const int64_t b = (n + threads - 1) / threads;
  return std::clamp<int64_t>(b, 1, max_blocks);
}

}  // namespace mixtape::cuda
