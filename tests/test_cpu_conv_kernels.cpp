// CPU convolution on both implementations (oneDNN and im2col + Eigen, core/cpu_kernels.h) and the vectorised
// batch norm, against float64: the forward pass and both backward passes in f32 and bf16, with the bound float32
// accumulation gives plus one rounding to the output dtype; weights reordered once per version; the same bits run
// to run at a fixed thread count.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/conv_kernels.h"
#include "core/cpu/cpu_onednn.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "core/tensor.h"
#include "gemm_reference.h"
#include "rounding.h"

using namespace mixtape;
using mixtape::testing::acc_unit_roundoff;
using mixtape::testing::CpuKernelsGuard;
using mixtape::testing::random_tensor;
using mixtape::testing::unit_roundoff;

namespace {

struct Geometry {
  int64_t n, c, h, w, oc, k, stride, pad, dil;
};

// 3x3 same-padding, stride 2 with a dropped last row/column (floor mode: oneDNN sees negative right padding),
// dilation, 1x1, and the cnn demo's first and second layers at a small batch.
const Geometry kGeometries[] = {
    {2, 3, 7, 7, 4, 3, 1, 1, 1},   {2, 5, 9, 8, 6, 3, 2, 0, 1},  {1, 4, 8, 8, 3, 3, 2, 2, 2},
    {3, 16, 6, 6, 32, 1, 1, 0, 1}, {2, 1, 28, 28, 32, 3, 1, 1, 1}, {2, 32, 14, 14, 64, 3, 1, 1, 1},
};

Conv2dParams params_of(const Geometry& g) {
  Conv2dParams p;
  p.stride_h = p.stride_w = g.stride;
  p.pad_h = p.pad_w = g.pad;
  p.dil_h = p.dil_w = g.dil;
  return p;
}

Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }
std::vector<double> absolute(std::vector<double> v) {
  for (double& x : v) x = std::fabs(x);
  return v;
}

/// Counts elements of got outside |got - want| <= u |want| + terms * u_acc * (mag + 1) (float32 accumulation of
/// `terms` products whose magnitudes sum to mag, then one rounding to the output dtype), reporting the first few.
size_t outside_bound(const std::string& what, const Tensor& got_t, const Tensor& want_t, const Tensor& mag_t,
                     int64_t terms, DType dt) {
  const std::vector<double> got = got_t.to_vector<double>(), want = want_t.to_vector<double>(),
                            mag = mag_t.to_vector<double>();
  REQUIRE(got.size() == want.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = unit_roundoff(dt) * std::fabs(want[i]) + 1.2 * static_cast<double>(terms + 2) * acc_unit_roundoff(dt) * (mag[i] + 1.0);
    if (!(std::fabs(got[i] - want[i]) <= tol) && bad++ < 3)
      FAIL_CHECK(what << " element " << i << ": got " << got[i] << ", want " << want[i] << " (bound " << tol << ")");
  }
  return bad;
}

}  // namespace

TEST_CASE("cpu conv: oneDNN and im2col + Eigen match float64 forward, backward data and backward weights, f32 and bf16",
          "[conv][cpu_kernels]") {
  CpuKernelsGuard guard;
  std::mt19937 rng(21);
  bool bf16_on_onednn = false;
  for (CpuKernels choice : {CpuKernels::onednn, CpuKernels::eigen}) {
    set_cpu_kernels(choice);
    for (DType dt : {DType::f32, DType::bf16})
      for (const Geometry& g : kGeometries)
        for (bool bias : {true, false}) {
          INFO(cpu_kernels_name(choice) << " " << dtype_name(dt) << " x(" << g.n << "," << g.c << "," << g.h << ","
                                        << g.w << ") oc " << g.oc << " k " << g.k << " s " << g.stride << " p " << g.pad
                                        << " d " << g.dil << (bias ? " bias" : ""));
          const Conv2dParams p = params_of(g);
          const Shape xs{g.n, g.c, g.h, g.w}, ws{g.oc, g.c, g.k, g.k}, bs{g.oc};
          std::vector<double> vx, vw, vb, vgy;
          const Tensor x = random_tensor(xs, dt, rng, vx), w = random_tensor(ws, dt, rng, vw),
                       b = random_tensor(bs, dt, rng, vb);
          const Shape ys = kernels::conv2d_output_shape(xs, ws, p);
          const Tensor gy = random_tensor(ys, dt, rng, vgy);
          reset_cpu_gemm_impl_counts();
          const Tensor y = kernels::conv2d(x, w, bias ? b : Tensor(), p);
          const Tensor gx = kernels::conv2d_backward_data(gy, w, xs, p);
          const auto [gw, gb] = kernels::conv2d_backward_filter(gy, x, ws, true, bias, p);
          const std::string impls = cpu_gemm_impl_counts();
          INFO("implementations: " << impls);
          const bool on_onednn = impls.find("conv2d ") != std::string::npos;
          if (choice == CpuKernels::eigen) CHECK_FALSE(on_onednn);
          if (choice == CpuKernels::onednn && dt == DType::f32 && onednn_built()) {
            CHECK(impls.find("conv2d backward data ") != std::string::npos);
            CHECK(impls.find("conv2d backward weights ") != std::string::npos);
          }
          if (choice == CpuKernels::onednn && dt == DType::bf16 && on_onednn) bf16_on_onednn = true;
          REQUIRE(y.dtype() == dt);
          REQUIRE(gx.dtype() == dt);
          REQUIRE(gw.dtype() == dt);
          // float64 references on the same (rounded) values, and the magnitudes: the same products of |values|
          const Tensor x64 = f64(vx, xs), w64 = f64(vw, ws), b64 = f64(vb, bs), gy64 = f64(vgy, ys);
          const Tensor ax = f64(absolute(vx), xs), aw = f64(absolute(vw), ws), ab = f64(absolute(vb), bs),
                       agy = f64(absolute(vgy), ys);
          const int64_t ckk = g.c * g.k * g.k, okk = g.oc * g.k * g.k, nohw = g.n * ys[2] * ys[3];
          CHECK(outside_bound("forward", y, kernels::conv2d(x64, w64, bias ? b64 : Tensor(), p),
                              kernels::conv2d(ax, aw, bias ? ab : Tensor(), p), ckk, dt) == 0);
          CHECK(outside_bound("backward data", gx, kernels::conv2d_backward_data(gy64, w64, xs, p),
                              kernels::conv2d_backward_data(agy, aw, xs, p), okk, dt) == 0);
          const auto [gw64, gb64] = kernels::conv2d_backward_filter(gy64, x64, ws, true, bias, p);
          const auto [mgw, mgb] = kernels::conv2d_backward_filter(agy, ax, ws, true, bias, p);
          CHECK(outside_bound("backward weights", gw, gw64, mgw, nohw, dt) == 0);
          if (bias) {
            REQUIRE(gb.dtype() == dt);
            CHECK(outside_bound("bias gradient", gb, gb64, mgb, nohw, dt) == 0);
          }
        }
  }
  if (onednn_built() && !bf16_on_onednn)
    WARN("not exercised here: oneDNN refuses bf16 convolutions on this CPU (" << onednn_description()
                                                                              << "); im2col + Eigen ran instead");
}

TEST_CASE("cpu conv: oneDNN reorders a weight into its layout once per weight version", "[conv][cpu_kernels]") {
  CpuKernelsGuard guard;
  if (!onednn_built()) {
    WARN("not exercised here: built without oneDNN");
    return;
  }
  set_cpu_kernels(CpuKernels::onednn);
  std::mt19937 rng(22);
  const Geometry g{4, 16, 10, 10, 32, 3, 1, 1, 1};
  const Conv2dParams p = params_of(g);
  std::vector<double> vx, vw, vw2;
  const Tensor x = random_tensor(Shape{g.n, g.c, g.h, g.w}, DType::f32, rng, vx);
  const Tensor w = random_tensor(Shape{g.oc, g.c, g.k, g.k}, DType::f32, rng, vw);
  const int64_t r0 = cpu::onednn_weight_reorders();
  const Tensor y1 = kernels::conv2d(x, w, Tensor(), p);
  const int64_t first = cpu::onednn_weight_reorders() - r0;
  if (first == 0) {
    WARN("not exercised here: oneDNN takes this convolution's weights as they are (no reorder)");
    return;
  }
  CHECK(first == 1);
  const Tensor y2 = kernels::conv2d(x, w, Tensor(), p);
  CHECK(cpu::onednn_weight_reorders() - r0 == 1);  // the kept copy served the second call
  CHECK(y1.to_vector<float>() == y2.to_vector<float>());
  // A write in place (the version moves on): reordered again, and the result is the new weight's.
  const Tensor w2 = random_tensor(w.shape(), DType::f32, rng, vw2);
  w.copy_(w2);
  const Tensor y3 = kernels::conv2d(x, w, Tensor(), p);
  CHECK(cpu::onednn_weight_reorders() - r0 == 2);
  CHECK(y3.to_vector<float>() == kernels::conv2d(x, w2, Tensor(), p).to_vector<float>());
  CHECK(y3.to_vector<float>() != y1.to_vector<float>());
}

TEST_CASE("cpu conv: the same bits run to run at each thread count, on each implementation", "[conv][cpu_kernels]") {
  CpuKernelsGuard guard;
  std::mt19937 rng(23);
  const Geometry g{8, 32, 14, 14, 64, 3, 1, 1, 1};
  const Conv2dParams p = params_of(g);
  const Shape xs{g.n, g.c, g.h, g.w}, ws{g.oc, g.c, g.k, g.k};
  for (CpuKernels choice : {CpuKernels::onednn, CpuKernels::eigen})
    for (DType dt : {DType::f32, DType::bf16})
      for (int threads : {1, 2}) {
        INFO(cpu_kernels_name(choice) << " " << dtype_name(dt) << " on " << threads << " thread(s)");
        set_cpu_kernels(choice);
        set_cpu_threads(threads);
        std::vector<double> vx, vw, vgy;
        const Tensor x = random_tensor(xs, dt, rng, vx), w = random_tensor(ws, dt, rng, vw);
        const Tensor gy = random_tensor(kernels::conv2d_output_shape(xs, ws, p), dt, rng, vgy);
        std::vector<std::vector<double>> runs;
        for (int r = 0; r < 3; ++r) {
          std::vector<double> all = kernels::conv2d(x, w, Tensor(), p).to_vector<double>();
          const std::vector<double> gx = kernels::conv2d_backward_data(gy, w, xs, p).to_vector<double>();
          const std::vector<double> gw = kernels::conv2d_backward_filter(gy, x, ws, true, false, p).first.to_vector<double>();
          all.insert(all.end(), gx.begin(), gx.end());
          all.insert(all.end(), gw.begin(), gw.end());
          runs.push_back(std::move(all));
        }
        CHECK(runs[0] == runs[1]);
        CHECK(runs[0] == runs[2]);
      }
}

TEST_CASE("cpu batch_norm: f32 and bf16 forward and backward agree with float64 formulas", "[conv][batchnorm][cpu_kernels]") {
  std::mt19937 rng(24);
  // rows (L) of 25, 1 (2-D input), 196 (vector body and tail) and 7
  for (const Shape& s : {Shape{4, 3, 5, 5}, Shape{6, 4}, Shape{8, 32, 14, 14}, Shape{3, 2, 7}})
    for (DType dt : {DType::f32, DType::bf16}) {
      INFO(s.to_string() << " " << dtype_name(dt));
      const int64_t n = s[0], c = s[1], l = s.numel() / (n * c);
      std::vector<double> vx, vgy, vg, vb, unused;
      const Tensor x = random_tensor(s, dt, rng, vx), gy = random_tensor(s, dt, rng, vgy);
      const Tensor gamma = random_tensor(Shape{c}, DType::f32, rng, vg), beta = random_tensor(Shape{c}, DType::f32, rng, vb);
      BatchNormParams p;
      const auto fw = kernels::batch_norm(x, Tensor(), Tensor(), gamma, beta, p);
      const auto bw = kernels::batch_norm_backward(gy, x, gamma, fw[1], fw[2], {true, true, true}, p);
      const std::vector<double> y = fw[0].to_vector<double>(), gx = bw[0].to_vector<double>(),
                                gw = bw[1].to_vector<double>(), gb = bw[2].to_vector<double>();
      const double m = static_cast<double>(n * l);
      size_t bad = 0;
      for (int64_t ch = 0; ch < c; ++ch) {
        auto at = [&](int64_t i, int64_t j) { return static_cast<size_t>((i * c + ch) * l + j); };
        double mean = 0, var = 0, sgy = 0, sgyx = 0, mag_gx = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < l; ++j) mean += vx[at(i, j)] / m;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < l; ++j) var += (vx[at(i, j)] - mean) * (vx[at(i, j)] - mean) / m;
        const double invstd = 1.0 / std::sqrt(var + p.eps), gam = vg[static_cast<size_t>(ch)];
        double xmax = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < l; ++j) {
            const double xhat = (vx[at(i, j)] - mean) * invstd;
            sgy += vgy[at(i, j)];
            sgyx += vgy[at(i, j)] * xhat;
            mag_gx += std::fabs(vgy[at(i, j)] * xhat);
            xmax = std::max(xmax, std::fabs(xhat));
          }
        // weight and bias gradients: float32 results of sums of m terms accumulated in double
        CHECK(gb[static_cast<size_t>(ch)] == Approx(sgy).margin(1e-6 * m));
        CHECK(gw[static_cast<size_t>(ch)] == Approx(sgyx).margin(1e-6 * mag_gx + 1e-6));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < l; ++j) {
            const size_t k = at(i, j);
            const double xhat = (vx[k] - mean) * invstd;
            const double want_y = xhat * gam + vb[static_cast<size_t>(ch)];
            const double want_gx = gam * invstd * (vgy[k] - sgy / m - xhat * sgyx / m);
            // y: float32 scale and shift (each rounded), a product and a sum in float32, one rounding to dt;
            // gx: a handful of float32 operations on terms bounded by |gy|, |mean gy| and |xhat| max|gy xhat|
            const double ty = unit_roundoff(dt) * std::fabs(want_y) +
                              8 * 0x1p-24 * (std::fabs(xhat * gam) + std::fabs(vb[static_cast<size_t>(ch)]) + 1);
            const double tg = unit_roundoff(dt) * std::fabs(want_gx) +
                              16 * 0x1p-24 * std::fabs(gam * invstd) *
                                  (std::fabs(vgy[k]) + std::fabs(sgy / m) + xmax * mag_gx / m + 1e-3);
            if (!(std::fabs(y[k] - want_y) <= ty) && bad++ < 3)
              FAIL_CHECK("y " << k << ": got " << y[k] << ", want " << want_y);
            if (!(std::fabs(gx[k] - want_gx) <= tg) && bad++ < 3)
              FAIL_CHECK("gx " << k << ": got " << gx[k] << ", want " << want_gx);
          }
      }
      CHECK(bad == 0);
    }
}

TEST_CASE("cpu max_pool2d: the first maximum wins ties and the first NaN propagates, on the 2x2 and general paths",
          "[conv][pool][cpu_kernels]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // One 4x4 plane: window (0,0) has a tie (3 at positions 1 and 4: the first wins), window (0,1) a NaN after a
  // larger value (the NaN wins), window (1,0) two NaNs (the first wins), window (1,1) a plain maximum.
  const std::vector<double> v = {1, 3, 5, nan,   //
                                 3, 2, 9, 0,     //
                                 nan, 0, 4, -1,  //
                                 1, nan, 6, 2};
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
    for (int64_t k : {2, 3}) {  // 2: the 2x2 fast path (not for f16); 3 (stride 2, padding 1): the general loop
      INFO(dtype_name(dt) << " kernel " << k);
      Pool2dParams p;
      p.kernel_h = p.kernel_w = k;
      p.stride_h = p.stride_w = 2;
      p.pad_h = p.pad_w = k == 3 ? 1 : 0;
      const auto [out, idx] = kernels::max_pool2d(from_vector<double>(v, Shape{1, 1, 4, 4}).to(dt), p);
      const std::vector<double> o = out.to_vector<double>();
      const std::vector<int64_t> i = idx.to_vector<int64_t>();
      REQUIRE(o.size() == 4);
      // k = 2: the four 2x2 windows. k = 3: windows over rows/columns [-1, 2) and [1, 4): (0,0) covers 1 3 / 3 2,
      // (0,1) covers 3 5 nan / 2 9 0, (1,0) covers 3 2 / nan 0 / 1 nan, (1,1) covers 2 9 0 / 0 4 -1 / nan 6 2.
      // The first three windows give the same winners either way.
      CHECK(o[0] == 3);
      CHECK(i[0] == 1);  // the tie: the first 3
      CHECK(std::isnan(o[1]));
      CHECK(i[1] == 3);  // the NaN after a larger value
      CHECK(std::isnan(o[2]));
      CHECK(i[2] == 8);  // the first of two NaNs
      if (k == 2) {
        CHECK(o[3] == 6);
        CHECK(i[3] == 14);
      } else {
        CHECK(std::isnan(o[3]));
        CHECK(i[3] == 13);
      }
    }
}

TEST_CASE("cpu max_pool2d: the vectorised 2x2 rows equal the general loop, ties and NaNs included", "[conv][pool][cpu_kernels]") {
  // Small integers (many ties) with NaNs sprinkled, rows wide enough for the 8-output vector loop and its tail;
  // f64 runs the general loop, f32 and bf16 the 2x2 row kernel, on the same (exactly representable) values.
  std::mt19937 rng(25);
  std::uniform_int_distribution<int> small(-3, 3), pick(0, 15);
  for (const Shape& s : {Shape{2, 3, 6, 38}, Shape{1, 2, 28, 28}, Shape{1, 1, 4, 17}}) {
    INFO(s.to_string());
    std::vector<double> v(static_cast<size_t>(s.numel()));
    for (double& x : v) x = pick(rng) == 0 ? std::numeric_limits<double>::quiet_NaN() : small(rng);
    Pool2dParams p;
    p.kernel_h = p.kernel_w = p.stride_h = p.stride_w = 2;
    const auto [want, want_idx] = kernels::max_pool2d(from_vector<double>(v, s), p);
    const std::vector<double> wv = want.to_vector<double>();
    for (DType dt : {DType::f32, DType::bf16}) {
      INFO(dtype_name(dt));
      const auto [got, got_idx] = kernels::max_pool2d(from_vector<double>(v, s).to(dt), p);
      CHECK(got_idx.to_vector<int64_t>() == want_idx.to_vector<int64_t>());
      const std::vector<double> gv = got.to_vector<double>();
      size_t bad = 0;
      for (size_t i = 0; i < gv.size(); ++i)
        if (!(gv[i] == wv[i] || (std::isnan(gv[i]) && std::isnan(wv[i])))) ++bad;
      CHECK(bad == 0);
    }
  }
}
