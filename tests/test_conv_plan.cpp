// Host-side planning of the CUDA conv / pooling / batch-norm kernels (cuda/conv_plan.h), checked without a GPU:
// output shapes against core's conv2d_output_shape and cuDNN's own cudnnGetConvolution2dForwardOutputDim
// (descriptor calls need no GPU), descriptor strides, batch slicing at cuDNN's int limit, math types, the
// algorithm-cache key and ranking, and the pooling index arithmetic of the CUDA kernels replayed on the host
// against the CPU backend bit for bit.
#ifdef MIXTAPE_WITH_CUDA

#include <catch2/catch.hpp>

#include <climits>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "core/conv_kernels.h"
#include "core/tensor.h"
#include "cuda/check.h"
#include "cuda/conv_plan.h"

using Catch::Matchers::Contains;
using namespace mixtape;
using namespace mixtape::cuda;

namespace {

/// cuDNN's output dimensions for the descriptors conv_descs builds (pure host computation in cuDNN).
std::array<int, 4> cudnn_output_dims(const ConvShape& s, const Conv2dParams& p, DType dt) {
  const ConvDescs d = conv_descs(s, s.n, p);
  const ConvMath m = conv_math(dt, false);
  cudnnTensorDescriptor_t x = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t c = nullptr;
  MIXTAPE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
  MIXTAPE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
  MIXTAPE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
  MIXTAPE_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(x, m.data, d.x.dims[0], d.x.dims[1], d.x.dims[2], d.x.dims[3],
                                                   d.x.strides[0], d.x.strides[1], d.x.strides[2], d.x.strides[3]));
  MIXTAPE_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(w, m.data, CUDNN_TENSOR_NCHW, d.w.dims[0], d.w.dims[1], d.w.dims[2], d.w.dims[3]));
  MIXTAPE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, d.pad[0], d.pad[1], d.stride[0], d.stride[1], d.dilation[0],
                                                      d.dilation[1], CUDNN_CROSS_CORRELATION, m.compute));
  MIXTAPE_CUDNN_CHECK(cudnnSetConvolutionMathType(c, m.math));
  std::array<int, 4> out{};
  MIXTAPE_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(c, x, w, &out[0], &out[1], &out[2], &out[3]));
  cudnnDestroyConvolutionDescriptor(c);
  cudnnDestroyFilterDescriptor(w);
  cudnnDestroyTensorDescriptor(x);
  return out;
}

}  // namespace

TEST_CASE("conv plan: output shapes agree with core and with cuDNN over many geometries", "[cuda][conv_plan]") {
  int checked = 0, rejected = 0;
  for (int64_t h : {1, 2, 5, 8})
    for (int64_t w : {1, 3, 7})
      for (int64_t k : {1, 2, 3, 5})
        for (int64_t stride : {1, 2, 3})
          for (int64_t pad : {0, 1, 2})
            for (int64_t dil : {1, 2}) {
              const Conv2dParams p{stride, stride + (w % 2), pad, (pad + 1) % 3, dil, 3 - dil};
              const Shape xs{2, 3, h, w}, ws{4, 3, k, (k % 3) + 1};
              Shape want;
              bool core_ok = true;
              try {
                want = kernels::conv2d_output_shape(xs, ws, p);
              } catch (const Error&) {
                core_ok = false;
              }
              INFO("x " << xs.to_string() << " w " << ws.to_string() << " stride " << p.stride_h << "x" << p.stride_w
                        << " pad " << p.pad_h << "x" << p.pad_w << " dilation " << p.dil_h << "x" << p.dil_w);
              if (!core_ok) {
                CHECK_THROWS_AS(conv_shape(xs, ws, p), Error);
                ++rejected;
                continue;
              }
              const ConvShape s = conv_shape(xs, ws, p);
              CHECK(Shape{s.n, s.oc, s.oh, s.ow} == want);
              CHECK((s.c == 3 && s.h == h && s.w == w && s.kh == ws[2] && s.kw == ws[3]));
              const std::array<int, 4> cud = cudnn_output_dims(s, p, DType::f16);
              CHECK(cud == std::array<int, 4>{2, 4, static_cast<int>(want[2]), static_cast<int>(want[3])});
              ++checked;
            }
  CHECK(checked > 300);  // both branches are exercised
  CHECK(rejected > 50);
}

TEST_CASE("conv plan: shape errors name the mismatch", "[cuda][conv_plan]") {
  CHECK_THROWS_WITH(conv_shape(Shape{1, 3, 5, 5}, Shape{2, 4, 3, 3}, {}), Contains("3 channels") && Contains("groups = 1"));
  CHECK_THROWS_WITH(conv_shape(Shape{1, 3, 2, 2}, Shape{2, 3, 3, 3}, {}), Contains("larger than the padded input"));
  Conv2dParams bad;
  bad.stride_h = 0;
  CHECK_THROWS_WITH(conv_shape(Shape{1, 3, 5, 5}, Shape{2, 3, 3, 3}, bad), Contains("stride"));
  CHECK_THROWS_WITH(conv_shape(Shape{1, 0, 5, 5}, Shape{2, 0, 3, 3}, {}), Contains("at least one channel"));
}

TEST_CASE("conv plan: descriptors are packed NCHW with int dimensions", "[cuda][conv_plan]") {
  const Desc4 d = nchw_desc(2, 3, 5, 7);
  CHECK(d.dims == std::array<int, 4>{2, 3, 5, 7});
  CHECK(d.strides == std::array<int, 4>{105, 35, 7, 1});

  const Conv2dParams p{2, 1, 1, 0, 1, 2};
  const ConvShape s = conv_shape(Shape{6, 3, 9, 8}, Shape{4, 3, 3, 2}, p);
  const ConvDescs cd = conv_descs(s, 5, p);
  CHECK(cd.x.dims == std::array<int, 4>{5, 3, 9, 8});
  CHECK(cd.w.dims == std::array<int, 4>{4, 3, 3, 2});
  CHECK(cd.y.dims == std::array<int, 4>{5, 4, static_cast<int>(s.oh), static_cast<int>(s.ow)});
  CHECK(cd.y.strides[0] == 4 * s.oh * s.ow);
  CHECK(cd.bias.dims == std::array<int, 4>{1, 4, 1, 1});
  CHECK(cd.pad == std::array<int, 2>{1, 0});
  CHECK(cd.stride == std::array<int, 2>{2, 1});
  CHECK(cd.dilation == std::array<int, 2>{1, 2});
  CHECK_THROWS_AS(conv_descs(s, 7, p), Error);  // a slice larger than the batch
  CHECK_THROWS_AS(conv_descs(s, 0, p), Error);

  CHECK(to_cudnn_int(INT_MAX, "x") == INT_MAX);
  CHECK_THROWS_WITH(to_cudnn_int(int64_t{INT_MAX} + 1, "batch stride"), Contains("batch stride") && Contains("2147483648"));
  CHECK_THROWS_AS(nchw_desc(1, 1 << 16, 1 << 8, 1 << 8), Error);  // batch stride 2^32
}

TEST_CASE("conv plan: batches are sliced to cuDNN's 2^31 - 1 elements per tensor", "[cuda][conv_plan]") {
  ConvShape s{128, 32, 28, 28, 64, 3, 3, 28, 28};
  CHECK(conv_batch_chunk(s) == 128);
  s = ConvShape{4096, 16, 256, 256, 8, 3, 3, 256, 256};  // 2^20 input elements per sample, 2^19 output
  const int64_t chunk = conv_batch_chunk(s);
  CHECK(chunk == INT_MAX / (int64_t{1} << 20));
  CHECK(chunk * (int64_t{1} << 20) <= INT_MAX);
  CHECK((chunk + 1) * (int64_t{1} << 20) > INT_MAX);
  s = ConvShape{2, 8, 256, 256, 64 * 128, 1, 1, 256, 256};  // the output of one sample is 2^29 * ... too large
  s.oc = 40000;
  CHECK_THROWS_WITH(conv_batch_chunk(s), Contains("one sample"));
  CHECK(conv_batch_chunk(ConvShape{0, 3, 4, 4, 2, 3, 3, 2, 2}) == 1);  // empty batch: any positive slice
}

TEST_CASE("conv plan: math types (no TF32 for f32 unless allowed, tensor ops for f16/bf16)", "[cuda][conv_plan]") {
  CHECK(conv_math(DType::f32, false) == ConvMath{CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH});
  CHECK(conv_math(DType::f32, true) == ConvMath{CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_DEFAULT_MATH});
  for (bool tf32 : {false, true}) {
    CHECK(conv_math(DType::f16, tf32) == ConvMath{CUDNN_DATA_HALF, CUDNN_DATA_FLOAT, CUDNN_TENSOR_OP_MATH});
    CHECK(conv_math(DType::bf16, tf32) == ConvMath{CUDNN_DATA_BFLOAT16, CUDNN_DATA_FLOAT, CUDNN_TENSOR_OP_MATH});
    CHECK(conv_math(DType::f64, tf32) == ConvMath{CUDNN_DATA_DOUBLE, CUDNN_DATA_DOUBLE, CUDNN_FMA_MATH});
  }
  CHECK_THROWS_WITH(conv_math(DType::i64, false), Contains("i64"));
  CHECK_THROWS_AS(cudnn_data_type(DType::u8), Error);
}

TEST_CASE("conv plan: the algorithm-cache key separates everything that changes the choice", "[cuda][conv_plan]") {
  const Conv2dParams p{1, 1, 1, 1, 1, 1};
  const ConvShape s = conv_shape(Shape{8, 3, 10, 10}, Shape{4, 3, 3, 3}, p);
  const ConvAlgoKey base = conv_algo_key(0, DType::f16, false, ConvPass::forward, s, 8, p);
  CHECK(base == conv_algo_key(0, DType::f16, false, ConvPass::forward, s, 8, p));
  CHECK(base == conv_algo_key(0, DType::f16, true, ConvPass::forward, s, 8, p));  // TF32 only matters for f32
  CHECK(conv_algo_key(0, DType::f32, false, ConvPass::forward, s, 8, p) !=
        conv_algo_key(0, DType::f32, true, ConvPass::forward, s, 8, p));
  Conv2dParams p2 = p;
  p2.dil_w = 2;
  const ConvShape s2 = conv_shape(Shape{8, 3, 10, 10}, Shape{4, 3, 3, 3}, p2);
  const ConvShape s3 = conv_shape(Shape{8, 3, 10, 11}, Shape{4, 3, 3, 3}, p);
  std::vector<ConvAlgoKey> keys = {base,
                                   conv_algo_key(1, DType::f16, false, ConvPass::forward, s, 8, p),
                                   conv_algo_key(0, DType::bf16, false, ConvPass::forward, s, 8, p),
                                   conv_algo_key(0, DType::f16, false, ConvPass::backward_data, s, 8, p),
                                   conv_algo_key(0, DType::f16, false, ConvPass::backward_filter, s, 8, p),
                                   conv_algo_key(0, DType::f16, false, ConvPass::forward, s, 5, p),
                                   conv_algo_key(0, DType::f16, false, ConvPass::forward, s2, 8, p2),
                                   conv_algo_key(0, DType::f16, false, ConvPass::forward, s3, 8, p)};
  std::map<ConvAlgoKey, int> cache;
  for (size_t i = 0; i < keys.size(); ++i) cache[keys[i]] = static_cast<int>(i);
  CHECK(cache.size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) CHECK(cache.at(keys[i]) == static_cast<int>(i));
}

TEST_CASE("conv plan: algorithms are ranked deterministic first within the workspace limit", "[cuda][conv_plan]") {
  const std::vector<AlgoCandidate> c = {
      {5, true, 100, false},  // fastest, nondeterministic
      {1, false, 0, true},    // not supported
      {2, true, 5000, true},  // too much workspace
      {0, true, 0, true},     {6, true, 10, false}, {0, true, 0, true},  // a duplicate
      {3, true, 1000, true},
  };
  CHECK(rank_algorithms(c, 1000) == std::vector<int>{0, 3, 5, 6});
  CHECK(rank_algorithms(c, 10000) == std::vector<int>{2, 0, 3, 5, 6});
  CHECK(rank_algorithms({}, 10).empty());
  CHECK(rank_algorithms({{4, false, 0, true}}, 10).empty());
}

TEST_CASE("conv plan: pool_cover_range lists exactly the windows covering an input position", "[cuda][conv_plan]") {
  for (int64_t k = 1; k <= 5; ++k)
    for (int64_t s = 1; s <= 3; ++s)
      for (int64_t pad = 0; 2 * pad <= k; ++pad)
        for (int64_t n = k; n <= 9; ++n) {
          const int64_t out = (n + 2 * pad - k) / s + 1;
          for (int64_t a = 0; a < n; ++a) {
            const CoverRange r = pool_cover_range(a, k, s, pad, out);
            INFO("kernel " << k << " stride " << s << " pad " << pad << " size " << n << " position " << a);
            for (int64_t i = 0; i < out; ++i) {
              const bool covers = i * s - pad <= a && a < i * s - pad + k;
              CHECK(covers == (i >= r.lo && i < r.hi));
            }
          }
        }
}

TEST_CASE("conv plan: the CUDA avg-pool gather replayed on the host equals the CPU backend bit for bit",
          "[cuda][conv_plan]") {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> d(-2.0f, 2.0f);
  const std::vector<Pool2dParams> geoms = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {3, 2, 1, 2, 1, 0},
                                           {5, 4, 3, 1, 2, 2}, {1, 1, 1, 1, 0, 0}, {4, 3, 2, 3, 2, 1}};
  for (const Pool2dParams& p : geoms) {
    const int64_t n = 2, c = 3, h = 11, w = 9;
    const Shape xs{n, c, h, w};
    const Shape ys = kernels::pool2d_output_shape(xs, p, "test");
    std::vector<float> g(static_cast<size_t>(ys.numel()));
    for (auto& v : g) v = d(gen);
    const Tensor gy = from_vector(g, ys);
    const std::vector<float> want = kernels::avg_pool2d_backward(gy, xs, p).to_vector<float>();
    const int64_t oh = ys[2], ow = ys[3];
    std::vector<float> got(static_cast<size_t>(xs.numel()));
    for (int64_t k = 0; k < xs.numel(); ++k) {  // the body of avg_pool_backward_kernel
      const int64_t b = k % w, a = (k / w) % h, q = k / (h * w);
      const CoverRange ri = pool_cover_range(a, p.kernel_h, p.stride_h, p.pad_h, oh);
      const CoverRange rj = pool_cover_range(b, p.kernel_w, p.stride_w, p.pad_w, ow);
      float s = 0;
      for (int64_t i = ri.lo; i < ri.hi; ++i)
        for (int64_t j = rj.lo; j < rj.hi; ++j)
          s += g[static_cast<size_t>(q * oh * ow + i * ow + j)] /
               static_cast<float>(avg_pool_window(i, j, h, w, p).count);
      got[static_cast<size_t>(k)] = s;
    }
    INFO("kernel " << p.kernel_h << "x" << p.kernel_w << " stride " << p.stride_h << "x" << p.stride_w << " pad "
                   << p.pad_h << "x" << p.pad_w);
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);

    // the forward's divisor: avg-pool of ones over the window equals (clipped size) / count on the CPU
    const Tensor ones_x = ones(xs);
    const std::vector<float> fwd = kernels::avg_pool2d(ones_x, p).to_vector<float>();
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const AvgWindow win = avg_pool_window(i, j, h, w, p);
        CHECK(fwd[static_cast<size_t>(i * ow + j)] ==
              static_cast<float>((win.h1 - win.h0) * (win.w1 - win.w0)) / static_cast<float>(win.count));
      }
  }
}

TEST_CASE("conv plan: launch configuration", "[cuda][conv_plan]") {
  CHECK(batch_norm_threads(1) == 32);
  CHECK(batch_norm_threads(128) == 32);
  CHECK(batch_norm_threads(129) == 64);
  CHECK(batch_norm_threads(1000) == 256);
  CHECK(batch_norm_threads(100352) == 512);
  for (int64_t m : {1, 5, 127, 128, 129, 4096, 100000}) {
    const int t = batch_norm_threads(m);
    CHECK((t >= 32 && t <= 512 && (t & (t - 1)) == 0));  // a power of two: the tree reduction halves it
  }
  CHECK(grid_blocks(0, 256) == 1);
  CHECK(grid_blocks(1, 256) == 1);
  CHECK(grid_blocks(256, 256) == 1);
  CHECK(grid_blocks(257, 256) == 2);
  CHECK(grid_blocks(int64_t{1} << 40, 256) == 65535);
  CHECK(grid_blocks(1000, 32, 10) == 10);
}

#endif  // MIXTAPE_WITH_CUDA
