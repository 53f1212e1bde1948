// CPU conv2d and 2-D pooling, NCHW contiguous. Convolutions run on oneDNN where core/cpu_kernels.h chooses it
// (cpu_onednn_conv.cpp), else on im2col + the threaded GEMM of cpu_gemm.h: f16/bf16 are widened to float, computed
// in float and rounded once on store; f32 computes in float, f64 in double.
#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_gemm.h"
#include "core/cpu/cpu_onednn.h"
#include "core/cpu/cpu_simd.h"
#include "core/cpu_threads.h"

namespace mixtape::cpu {

namespace {

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

/// cols (C*KH*KW, OH*OW), rows ld apart, from one sample xs (C, H, W); zero where the window reads padding.
template <class S>
void im2col(const S* xs, S* cols, int64_t ld, const ConvDims& d, const Conv2dParams& p) {
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        S* row = cols + ((c * d.kh + i) * d.kw + j) * ld;
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

/// xs (C, H, W) += the columns (rows ld apart) scattered back (the adjoint of im2col); xs is zeroed by the caller.
template <class S>
void col2im(const S* cols, int64_t ld, S* xs, const ConvDims& d, const Conv2dParams& p) {
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < d.kh; ++i)
      for (int64_t j = 0; j < d.kw; ++j) {
        const S* row = cols + ((c * d.kh + i) * d.kw + j) * ld;
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

/// src (n values of T) in the compute type S: src itself when T is S, else widened into scratch slot `slot`.
template <class T, class S>
const S* as_compute(const T* src, int64_t n, int slot) {
  if constexpr (std::is_same_v<T, S>) {
    return src;
  } else {
    S* dst = thread_scratch<S>(slot, n);
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) widen(src, dst, n);
    else load(src, dst, n);
    return dst;
  }
}

/// Samples per im2col GEMM: as many as keep the column matrix (C*KH*KW, samples*OH*OW) under ~8 MiB of floats,
/// at least one. One GEMM over many samples gives the threaded GEMM a wide product to split.
int64_t chunk_samples(const ConvDims& d) {
  constexpr int64_t kColsBudget = int64_t{1} << 21;
  return std::clamp<int64_t>(kColsBudget / std::max<int64_t>(d.ckk() * d.ohw(), 1), 1, std::max<int64_t>(d.n, 1));
}

}  // namespace

// Each convolution runs over chunks of samples: the chunk's im2col columns side by side, (C*KH*KW, nb*OH*OW), and
// one GEMM through cpu_gemm.h's threaded (AVX2 + FMA where available) path in the compute type; f16/bf16 are
// widened first and each output is rounded once.

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p) {
  if (onednn_conv2d(x, w, b, out, p)) return;
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const ConvDims d = dims_of(x, w, out);
    const int64_t chw = d.c * d.h * d.w, ohw = d.ohw(), ckk = d.ckk(), chunk = chunk_samples(d);
    const S* wf = as_compute<T, S>(w.data<T>(), d.oc * ckk, 0);
    std::vector<S> bf(static_cast<size_t>(d.oc), S(0));
    if (b.defined()) load(b.data<T>(), bf.data(), d.oc);
    S* cols = thread_scratch<S>(1, ckk * chunk * ohw);
    S* ys = thread_scratch<S>(2, d.oc * chunk * ohw);
    for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
      const int64_t nb = std::min(chunk, d.n - n0), ld = nb * ohw;
      for (int64_t s = 0; s < nb; ++s)
        im2col(as_compute<T, S>(x.data<T>() + (n0 + s) * chw, chw, 3), cols + s * ohw, ld, d, p);
      gemm_acc(wf, ckk, false, cols, ld, false, ys, ld, d.oc, ld, ckk, S(1), S(0));  // (OC, nb*OH*OW)
      for (int64_t s = 0; s < nb; ++s)
        for (int64_t o = 0; o < d.oc; ++o) {
          const S* y = ys + o * ld + s * ohw;
          T* dst = out.data<T>() + ((n0 + s) * d.oc + o) * ohw;
          if (b.defined()) {
            const S bias = bf[static_cast<size_t>(o)];
            for (int64_t j = 0; j < ohw; ++j) dst[j] = store<T>(y[j] + bias);
          } else {
            for (int64_t j = 0; j < ohw; ++j) dst[j] = store<T>(y[j]);
          }
        }
    }
  });
}

namespace {
/// g (OC, nb*OH*OW), rows ld apart, gathered from nb samples of gy (N, OC, OH, OW) starting at sample n0.
template <class T, class S>
void gather_grad(const T* gy, int64_t n0, int64_t nb, const ConvDims& d, S* g, int64_t ld) {
  const int64_t ohw = d.ohw();
  for (int64_t s = 0; s < nb; ++s)
    for (int64_t o = 0; o < d.oc; ++o) {
      const T* src = gy + ((n0 + s) * d.oc + o) * ohw;
      S* dst = g + o * ld + s * ohw;
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) widen(src, dst, ohw);
      else load(src, dst, ohw);
    }
}
}  // namespace

void CpuBackend::conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p) {
  if (onednn_conv2d_backward_data(gy, w, gx, p)) return;
  dispatch_floating(gy.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const ConvDims d = dims_of(gx, w, gy);
    const int64_t chw = d.c * d.h * d.w, ohw = d.ohw(), ckk = d.ckk(), chunk = chunk_samples(d);
    const S* wf = as_compute<T, S>(w.data<T>(), d.oc * ckk, 0);
    S* cols = thread_scratch<S>(1, ckk * chunk * ohw);
    S* gs = thread_scratch<S>(2, d.oc * chunk * ohw);
    S* xs = thread_scratch<S>(3, chw);
    for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
      const int64_t nb = std::min(chunk, d.n - n0), ld = nb * ohw;
      gather_grad(gy.data<T>(), n0, nb, d, gs, ld);
      gemm_acc(wf, ckk, true, gs, ld, false, cols, ld, ckk, ld, d.oc, S(1), S(0));  // (C*KH*KW, nb*OH*OW)
      for (int64_t s = 0; s < nb; ++s) {
        T* dst = gx.data<T>() + (n0 + s) * chw;
        if constexpr (std::is_same_v<T, S>) {
          std::fill(dst, dst + chw, S(0));
          col2im(cols + s * ohw, ld, dst, d, p);
        } else {
          std::fill(xs, xs + chw, S(0));
          col2im(cols + s * ohw, ld, xs, d, p);
          save(xs, dst, chw);
        }
      }
    }
  });
}

void CpuBackend::conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                                        const Conv2dParams& p) {
  if (onednn_conv2d_backward_filter(gy, x, gw, gb, p)) return;
  dispatch_floating(gy.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const ConvDims d = dims_of(x, gw, gy);
    const int64_t chw = d.c * d.h * d.w, ohw = d.ohw(), ckk = d.ckk(), chunk = chunk_samples(d);
    std::vector<S> gws(static_cast<size_t>(d.oc * ckk), S(0)), gbs(static_cast<size_t>(d.oc), S(0));
    S* cols = thread_scratch<S>(1, ckk * chunk * ohw);
    S* gs = thread_scratch<S>(2, d.oc * chunk * ohw);
    for (int64_t n0 = 0; n0 < d.n; n0 += chunk) {
      const int64_t nb = std::min(chunk, d.n - n0), ld = nb * ohw;
      gather_grad(gy.data<T>(), n0, nb, d, gs, ld);
      if (gw.defined()) {
        for (int64_t s = 0; s < nb; ++s)
          im2col(as_compute<T, S>(x.data<T>() + (n0 + s) * chw, chw, 3), cols + s * ohw, ld, d, p);
        // gw (OC, C*KH*KW) += g (OC, nb*OH*OW) cols^T
        gemm_acc(gs, ld, false, cols, ld, true, gws.data(), ckk, d.oc, ckk, ld, S(1), n0 == 0 ? S(0) : S(1));
      }
      if (gb.defined())  // per sample, then across samples (short float sums)
        for (int64_t s = 0; s < nb; ++s)
          for (int64_t o = 0; o < d.oc; ++o) {
            const S* row = gs + o * ld + s * ohw;
            S sum = S(0);
            for (int64_t j = 0; j < ohw; ++j) sum += row[j];
            gbs[static_cast<size_t>(o)] += sum;
          }
    }
    if (gw.defined()) save(gws.data(), gw.data<T>(), d.oc * ckk);
    if (gb.defined()) save(gbs.data(), gb.data<T>(), d.oc);
  });
}

void CpuBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices, const Pool2dParams& p) {
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), oh = out.size(2), ow = out.size(3);
    // Each output column's window [w0, w1) clipped to the input, once (rows are clipped per output row).
    std::vector<int64_t> col_lo(static_cast<size_t>(ow)), col_hi(static_cast<size_t>(ow));
    for (int64_t j = 0; j < ow; ++j) {
      const int64_t w0 = j * p.stride_w - p.pad_w;
      col_lo[static_cast<size_t>(j)] = std::max<int64_t>(w0, 0);
      col_hi[static_cast<size_t>(j)] = std::min(w0 + p.kernel_w, w);
    }
    T* po = out.data<T>();
    int64_t* pi = indices.data<int64_t>();
    parallel_range(planes, h * w, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        if constexpr (std::is_same_v<T, float> || std::is_same_v<T, BFloat16>) {
          if (p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 && p.pad_w == 0) {
            // The common 2x2 window: the vector row kernel of cpu_simd.h (same rules as the loop below). bf16 rows
            // are widened exactly and the winners narrowed back exactly.
            const T* xt = x.data<T>() + q * h * w;
            for (int64_t i = 0; i < oh; ++i) {
              T* orow = po + (q * oh + i) * ow;
              int64_t* irow = pi + (q * oh + i) * ow;
              if constexpr (std::is_same_v<T, float>) {
                maxpool2x2_row(xt + 2 * i * w, xt + (2 * i + 1) * w, ow, w, 2 * i * w, orow, irow);
              } else {
                float* rows = thread_scratch<float>(3, 2 * w + ow);
                widen(xt + 2 * i * w, rows, 2 * w);
                maxpool2x2_row(rows, rows + w, ow, w, 2 * i * w, rows + 2 * w, irow);
                narrow(rows + 2 * w, orow, ow);
              }
            }
            continue;
          }
        }
        const S* xp = as_compute<T, S>(x.data<T>() + q * h * w, h * w, 3);
        for (int64_t i = 0; i < oh; ++i) {
          const int64_t h0 = i * p.stride_h - p.pad_h;
          const int64_t a0 = std::max<int64_t>(h0, 0), a1 = std::min(h0 + p.kernel_h, h);
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t b0 = col_lo[static_cast<size_t>(j)], b1 = col_hi[static_cast<size_t>(j)];
            // The first element of the window, then strictly greater ones (the first maximum wins); a NaN
            // propagates and ends the search, as PyTorch.
            int64_t arg = a0 * w + b0;
            S best = xp[arg];
            for (int64_t a = a0; a < a1 && best == best; ++a)
              for (int64_t b = (a == a0 ? b0 + 1 : b0); b < b1; ++b) {
                const S v = xp[a * w + b];
                if (v > best || v != v) {
                  best = v;
                  arg = a * w + b;
                  if (v != v) break;
                }
              }
            const int64_t o = (q * oh + i) * ow + j;
            po[o] = store<T>(best);
            pi[o] = arg;
          }
        }
      }
    });
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  dispatch_floating(gy.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using S = Acc<T>;
    const int64_t planes = gx.size(0) * gx.size(1), hw = gx.size(2) * gx.size(3), ohw = gy.size(2) * gy.size(3);
    parallel_range(planes, hw, [&](int64_t q0, int64_t q1) {
      std::vector<S> acc(static_cast<size_t>(hw));  // one per range: ranges may run at once
      for (int64_t q = q0; q < q1; ++q) {
        std::fill(acc.begin(), acc.end(), S(0));
        const T* g = gy.data<T>() + q * ohw;
        const int64_t* idx = indices.data<int64_t>() + q * ohw;
        for (int64_t o = 0; o < ohw; ++o)
          if (idx[o] >= 0) acc[static_cast<size_t>(idx[o])] += static_cast<S>(g[o]);
        save(acc.data(), gx.data<T>() + q * hw, hw);
      }
    });
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
