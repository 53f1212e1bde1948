// CPU conv2d (im2col + Eigen GEMM) and 2-D pooling, NCHW contiguous. f16/bf16 are widened to float, computed in
// float and rounded once on store; f32 computes in float, f64 in double.
#include <Eigen/Core>
#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_backend.h"

namespace mixtape::cpu {

namespace {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The compute type of a storage type: double for f64, float otherwise.
template <class T>
using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T, class S>
void load(const T* src, S* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<S>(src[i]);
}
template <class T, class S>
void save(const S* src, T* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = store<T>(src[i]);
}

/// Sizes of one convolution, read from x (N, C, H, W), w (OC, C, KH, KW) and gy/out (N, OC, OH, OW).
struct ConvDims {
  int64_t n, c, h, w, oc, kh, kw, oh, ow;
  int64_t ckk() const { return c * kh * kw; }
  int64_t ohw() const { return oh * ow; }
};

ConvDims dims_of(const Tensor& x, const Tensor& w, const Tensor& y) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), y.size(2), y.size(3)};
}

/// cols (C*KH*KW, OH*OW) from one sample xs (C, H, W); zero where the window reads padding.
template <class S>
void im2col(const S* xs, S* cols, const ConvDims& d, const Conv2dParams& p) {
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        S* row = cols + ((c * d.kh + i) * d.kw + j) * d.ohw();
        for (int64_t oh = 0; oh < d.oh; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
          S* r = row + oh * d.ow;
          if (ih < 0 || ih >= d.h) {
            std::fill(r, r + d.ow, S(0));
            continue;
          }
          const S* xr = xs + (c * d.h + ih) * d.w;
          for (int64_t ow = 0; ow < d.ow; ++ow) {
            const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dil_w;
            r[ow] = (iw >= 0 && iw < d.w) ? xr[iw] : S(0);
          }
        }
      }
}

/// xs (C, H, W) += the columns scattered back (the adjoint of im2col); xs must be zeroed by the caller.
template <class S>
void col2im(const S* cols, S* xs, const ConvDims& d, const Conv2dParams& p) {
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        const S* row = cols + ((c * d.kh + i) * d.kw + j) * d.ohw();
        for (int64_t oh = 0; oh < d.oh; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
          if (ih < 0 || ih >= d.h) continue;
          const S* r = row + oh * d.ow;
          S* xr = xs + (c * d.h + ih) * d.w;
          for (int64_t ow = 0; ow < d.ow; ++ow) {
            const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dil_w;
            if (iw >= 0 && iw < d.w) xr[iw] += r[ow];
          }
        }
      }
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p) {
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const ConvDims d = dims_of(x, w, out);
    std::vector<S> wf(static_cast<size_t>(d.oc * d.ckk())), bf(static_cast<size_t>(d.oc), S(0));
    load(w.data<T>(), wf.data(), d.oc * d.ckk());
    if (b.defined()) load(b.data<T>(), bf.data(), d.oc);
    std::vector<S> xs(static_cast<size_t>(d.c * d.h * d.w)), cols(static_cast<size_t>(d.ckk() * d.ohw())),
        ys(static_cast<size_t>(d.oc * d.ohw()));
    Eigen::Map<const RowMat<S>> W(wf.data(), d.oc, d.ckk());
    Eigen::Map<const RowMat<S>> C(cols.data(), d.ckk(), d.ohw());
    Eigen::Map<RowMat<S>> Y(ys.data(), d.oc, d.ohw());
    Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>> B(bf.data(), d.oc);
    for (int64_t n = 0; n < d.n; ++n) {
      load(x.data<T>() + n * d.c * d.h * d.w, xs.data(), d.c * d.h * d.w);
      im2col(xs.data(), cols.data(), d, p);
      Y.noalias() = W * C;
      if (b.defined()) Y.colwise() += B;
      save(ys.data(), out.data<T>() + n * d.oc * d.ohw(), d.oc * d.ohw());
    }
  });
}

void CpuBackend::conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p) {
  dispatch_floating(gy.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const ConvDims d = dims_of(gx, w, gy);
    std::vector<S> wf(static_cast<size_t>(d.oc * d.ckk()));
    load(w.data<T>(), wf.data(), d.oc * d.ckk());
    std::vector<S> gs(static_cast<size_t>(d.oc * d.ohw())), cols(static_cast<size_t>(d.ckk() * d.ohw())),
        xs(static_cast<size_t>(d.c * d.h * d.w));
    Eigen::Map<const RowMat<S>> W(wf.data(), d.oc, d.ckk());
    Eigen::Map<const RowMat<S>> G(gs.data(), d.oc, d.ohw());
    Eigen::Map<RowMat<S>> C(cols.data(), d.ckk(), d.ohw());
    for (int64_t n = 0; n < d.n; ++n) {
      load(gy.data<T>() + n * d.oc * d.ohw(), gs.data(), d.oc * d.ohw());
      C.noalias() = W.transpose() * G;
      std::fill(xs.begin(), xs.end(), S(0));
      col2im(cols.data(), xs.data(), d, p);
      save(xs.data(), gx.data<T>() + n * d.c * d.h * d.w, d.c * d.h * d.w);
    }
  });
}

void CpuBackend::conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                                        const Conv2dParams& p) {
  dispatch_floating(gy.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const ConvDims d = dims_of(x, gw, gy);
    std::vector<S> gws(static_cast<size_t>(d.oc * d.ckk()), S(0)), gbs(static_cast<size_t>(d.oc), S(0));
    std::vector<S> gs(static_cast<size_t>(d.oc * d.ohw())), cols(static_cast<size_t>(d.ckk() * d.ohw())),
        xs(static_cast<size_t>(d.c * d.h * d.w));
    Eigen::Map<RowMat<S>> GW(gws.data(), d.oc, d.ckk());
    Eigen::Map<const RowMat<S>> G(gs.data(), d.oc, d.ohw());
    Eigen::Map<const RowMat<S>> C(cols.data(), d.ckk(), d.ohw());
    Eigen::Map<Eigen::Matrix<S, Eigen::Dynamic, 1>> GB(gbs.data(), d.oc);
    for (int64_t n = 0; n < d.n; ++n) {
      load(gy.data<T>() + n * d.oc * d.ohw(), gs.data(), d.oc * d.ohw());
      if (gw.defined()) {
        load(x.data<T>() + n * d.c * d.h * d.w, xs.data(), d.c * d.h * d.w);
        im2col(xs.data(), cols.data(), d, p);
        GW.noalias() += G * C.transpose();
      }
      if (gb.defined()) GB += G.rowwise().sum();
    }
    if (gw.defined()) save(gws.data(), gw.data<T>(), d.oc * d.ckk());
    if (gb.defined()) save(gbs.data(), gb.data<T>(), d.oc);
  });
}

void CpuBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices, const Pool2dParams& p) {
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), oh = out.size(2), ow = out.size(3);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    int64_t* pi = indices.data<int64_t>();
    for (int64_t q = 0; q < planes; ++q) {
      const T* xp = px + q * h * w;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const int64_t h0 = i * p.stride_h - p.pad_h, w0 = j * p.stride_w - p.pad_w;
          S best = -std::numeric_limits<S>::infinity();
          int64_t arg = -1;
          bool nan = false;
          for (int64_t a = std::max<int64_t>(h0, 0); a < std::min(h0 + p.kernel_h, h) && !nan; ++a)
            for (int64_t b = std::max<int64_t>(w0, 0); b < std::min(w0 + p.kernel_w, w); ++b) {
              const S v = static_cast<S>(xp[a * w + b]);
              if (arg < 0 || v > best || v != v) {  // NaN propagates, as PyTorch
                best = v;
                arg = a * w + b;
                if (v != v) {
                  nan = true;
                  break;
                }
              }
            }
          const int64_t o = (q * oh + i) * ow + j;
          po[o] = store<T>(best);
          pi[o] = arg;
        }
    }
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  dispatch_floating(gy.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const int64_t planes = gx.size(0) * gx.size(1), hw = gx.size(2) * gx.size(3), ohw = gy.size(2) * gy.size(3);
    std::vector<S> acc(static_cast<size_t>(hw));
    for (int64_t q = 0; q < planes; ++q) {
      std::fill(acc.begin(), acc.end(), S(0));
      const T* g = gy.data<T>() + q * ohw;
      const int64_t* idx = indices.data<int64_t>() + q * ohw;
      for (int64_t o = 0; o < ohw; ++o)
        if (idx[o] >= 0) acc[static_cast<size_t>(idx[o])] += static_cast<S>(g[o]);
      save(acc.data(), gx.data<T>() + q * hw, hw);
    }
  });
}

namespace {
/// PyTorch's avg-pool window: [h0, h1) x [w0, w1) clipped to the input, divisor counting padding.
struct AvgWindow {
  int64_t h0, h1, w0, w1, count;
};
AvgWindow avg_window(int64_t i, int64_t j, int64_t h, int64_t w, const Pool2dParams& p) {
  int64_t h0 = i * p.stride_h - p.pad_h, w0 = j * p.stride_w - p.pad_w;
  int64_t h1 = std::min(h0 + p.kernel_h, h + p.pad_h), w1 = std::min(w0 + p.kernel_w, w + p.pad_w);
  const int64_t count = (h1 - h0) * (w1 - w0);
  return {std::max<int64_t>(h0, 0), std::min(h1, h), std::max<int64_t>(w0, 0), std::min(w1, w), count};
}
}  // namespace

void CpuBackend::avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) {
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), oh = out.size(2), ow = out.size(3);
    for (int64_t q = 0; q < planes; ++q) {
      const T* xp = x.data<T>() + q * h * w;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const AvgWindow win = avg_window(i, j, h, w, p);
          S s = 0;
          for (int64_t a = win.h0; a < win.h1; ++a)
            for (int64_t b = win.w0; b < win.w1; ++b) s += static_cast<S>(xp[a * w + b]);
          out.data<T>()[(q * oh + i) * ow + j] = store<T>(s / static_cast<S>(win.count));
        }
    }
  });
}

void CpuBackend::avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  dispatch_floating(gy.dtype(), "avg_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const int64_t planes = gx.size(0) * gx.size(1), h = gx.size(2), w = gx.size(3), oh = gy.size(2), ow = gy.size(3);
    std::vector<S> acc(static_cast<size_t>(h * w));
    for (int64_t q = 0; q < planes; ++q) {
      std::fill(acc.begin(), acc.end(), S(0));
      const T* g = gy.data<T>() + q * oh * ow;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const AvgWindow win = avg_window(i, j, h, w, p);
          const S v = static_cast<S>(g[i * ow + j]) / static_cast<S>(win.count);
          for (int64_t a = win.h0; a < win.h1; ++a)
            for (int64_t b = win.w0; b < win.w1; ++b) acc[static_cast<size_t>(a * w + b)] += v;
        }
      save(acc.data(), gx.data<T>() + q * h * w, h * w);
    }
  });
}

}  // namespace mixtape::cpu
