// The cuDNN mock's reference convolution (see cudnn_mock.cpp for the API and its checks). Straightforward on
// purpose: each operand is gathered once into a packed array of the accumulation type (float for float, half and
// bfloat16 data, double for double), each image is unrolled into a column matrix (im2col: one row per filter tap
// (c, r, s), one column per output position) and multiplied in loops the compiler vectorises; the result is scaled
// by alpha, blended with beta times the old output (only when beta != 0) and rounded once to the data type.
//
// It computes what the documentation says cuDNN computes, not what a GPU's kernels do bit for bit: summation order,
// Winograd/FFT rounding and tensor-core internals differ, so tests compare with tolerances.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "cuda/emu/cudnn_mock.h"

namespace mixtape::emu::cudnn_mock {

namespace {

/// Sizes of one convolution, from x (n, c, h, w), w (k, c, r, s), y (n, k, oh, ow).
struct Dims {
  int64_t n, c, h, w, k, r, s, oh, ow;
  int64_t taps() const { return c * r * s; }     ///< rows of the column matrix
  int64_t positions() const { return oh * ow; }  ///< columns of the column matrix
};

Dims dims_of(const ConvJob& j) {
  return {j.x.dims[0], j.x.dims[1], j.x.dims[2], j.x.dims[3], j.w.dims[0],
          j.w.dims[2], j.w.dims[3], j.y.dims[2], j.y.dims[3]};
}

/// float rounded to TF32 (10-bit mantissa, round to nearest, ties away from zero, as cvt.rna.tf32.f32).
float round_tf32(float f) {
  if (!std::isfinite(f)) return f;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

float apply_rounding(float f, InputRounding r) {
  switch (r) {
    case InputRounding::tf32: return round_tf32(f);
    case InputRounding::half: return static_cast<float>(Half(f));
    case InputRounding::none: break;
  }
  return f;
}

/// Element `i` (in elements) of data of type `t`, as Acc.
template <class Acc>
Acc read_element(const char* base, int64_t i, cudnnDataType_t t) {
  switch (t) {
    case CUDNN_DATA_DOUBLE: return static_cast<Acc>(reinterpret_cast<const double*>(base)[i]);
    case CUDNN_DATA_HALF: return static_cast<Acc>(static_cast<float>(reinterpret_cast<const Half*>(base)[i]));
    case CUDNN_DATA_BFLOAT16: return static_cast<Acc>(static_cast<float>(reinterpret_cast<const BFloat16*>(base)[i]));
    default: return static_cast<Acc>(reinterpret_cast<const float*>(base)[i]);
  }
}

/// Stores v into element `i` of data of type `t`: the one rounding of the result.
template <class Acc>
void write_element(char* base, int64_t i, cudnnDataType_t t, Acc v) {
  switch (t) {
    case CUDNN_DATA_DOUBLE: reinterpret_cast<double*>(base)[i] = static_cast<double>(v); break;
    case CUDNN_DATA_HALF: reinterpret_cast<Half*>(base)[i] = Half(static_cast<float>(v)); break;
    case CUDNN_DATA_BFLOAT16: reinterpret_cast<BFloat16*>(base)[i] = BFloat16(static_cast<float>(v)); break;
    default: reinterpret_cast<float*>(base)[i] = static_cast<float>(v); break;
  }
}

/// Element offset of logical index (a, b, c, d) of o.
int64_t offset(const Operand& o, int64_t a, int64_t b, int64_t c, int64_t d) {
  return a * o.strides[0] + b * o.strides[1] + c * o.strides[2] + d * o.strides[3];
}

/// o gathered into a packed (n, c, h, w) array of Acc, float inputs rounded as the math type says.
template <class Acc>
std::vector<Acc> load(const Operand& o, const void* data, InputRounding rounding) {
  const auto& d = o.dims;
  std::vector<Acc> out(static_cast<size_t>(d[0] * d[1] * d[2] * d[3]));
  const char* base = static_cast<const char*>(data);
  const bool round = rounding != InputRounding::none && o.type == CUDNN_DATA_FLOAT;
  size_t i = 0;
  for (int64_t a = 0; a < d[0]; ++a)
    for (int64_t b = 0; b < d[1]; ++b)
      for (int64_t c = 0; c < d[2]; ++c)
        for (int64_t e = 0; e < d[3]; ++e) {
          Acc v = read_element<Acc>(base, offset(o, a, b, c, e), o.type);
          if (round) v = static_cast<Acc>(apply_rounding(static_cast<float>(v), rounding));
          out[i++] = v;
        }
  return out;
}

/// out = alpha * result + beta * out, rounded once into o's type. With beta == 0 the old values are not read
/// (cuDNN: "if beta is zero, the output is not read", so NaN there must not leak).
template <class Acc>
void store(const Operand& o, const void* data, const std::vector<Acc>& result, double alpha, double beta) {
  const auto& d = o.dims;
  char* base = static_cast<char*>(const_cast<void*>(data));
  const Acc a = static_cast<Acc>(alpha), b = static_cast<Acc>(beta);
  size_t i = 0;
  for (int64_t n = 0; n < d[0]; ++n)
    for (int64_t c = 0; c < d[1]; ++c)
      for (int64_t h = 0; h < d[2]; ++h)
        for (int64_t w = 0; w < d[3]; ++w) {
          const int64_t at = offset(o, n, c, h, w);
          Acc v = a * result[i++];
          if (beta != 0.0) v += b * read_element<Acc>(base, at, o.type);
          write_element<Acc>(base, at, o.type, v);
        }
}

/// Reverses the (r, s) taps of every (k, c) slice of a packed filter: CUDNN_CONVOLUTION's rotated kernel.
template <class Acc>
void flip_filter(std::vector<Acc>& w, const Dims& d) {
  for (int64_t kc = 0; kc < d.k * d.c; ++kc) std::reverse(w.begin() + kc * d.r * d.s, w.begin() + (kc + 1) * d.r * d.s);
}

/// Input row of output row oh for tap r (may fall in the padding: < 0 or >= h).
int64_t input_row(const ConvJob& j, int64_t oh, int64_t r) { return oh * j.stride[0] - j.pad[0] + r * j.dilation[0]; }
int64_t input_col(const ConvJob& j, int64_t ow, int64_t s) { return ow * j.stride[1] - j.pad[1] + s * j.dilation[1]; }

/// col (taps x positions) = the image x_img (c, h, w) unrolled; zero where a tap falls in the padding.
template <class Acc>
void im2col(const ConvJob& j, const Dims& d, const Acc* x_img, Acc* col) {
  const int64_t p_count = d.positions();
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t r = 0; r < d.r; ++r)
      for (int64_t s = 0; s < d.s; ++s) {
        Acc* row = col + ((c * d.r + r) * d.s + s) * p_count;
        for (int64_t oh = 0; oh < d.oh; ++oh) {
          const int64_t ih = input_row(j, oh, r);
          Acc* out = row + oh * d.ow;
          if (ih < 0 || ih >= d.h) {
            std::fill(out, out + d.ow, Acc(0));
            continue;
          }
          const Acc* in = x_img + (c * d.h + ih) * d.w;
          for (int64_t ow = 0; ow < d.ow; ++ow) {
            const int64_t iw = input_col(j, ow, s);
            out[ow] = iw >= 0 && iw < d.w ? in[iw] : Acc(0);
          }
        }
      }
}

/// dx_img (c, h, w) += col (taps x positions) folded back onto the image (the adjoint of im2col).
template <class Acc>
void col2im(const ConvJob& j, const Dims& d, const Acc* col, Acc* dx_img) {
  const int64_t p_count = d.positions();
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t r = 0; r < d.r; ++r)
      for (int64_t s = 0; s < d.s; ++s) {
        const Acc* row = col + ((c * d.r + r) * d.s + s) * p_count;
        for (int64_t oh = 0; oh < d.oh; ++oh) {
          const int64_t ih = input_row(j, oh, r);
          if (ih < 0 || ih >= d.h) continue;
          Acc* out = dx_img + (c * d.h + ih) * d.w;
          for (int64_t ow = 0; ow < d.ow; ++ow) {
            const int64_t iw = input_col(j, ow, s);
            if (iw >= 0 && iw < d.w) out[iw] += row[oh * d.ow + ow];
          }
        }
      }
}

/// Two 16-byte vectors of Acc (GCC vector extension; SSE2 registers on x86-64): one row of a register tile.
template <class Acc>
using Vec16 __attribute__((vector_size(16))) = Acc;
constexpr int kTileRows = 4;  ///< output rows of a register tile
template <class Acc>
constexpr int kTileCols = 2 * 16 / sizeof(Acc);  ///< output columns of a register tile (8 floats, 4 doubles)

/// One full tile of gemm(): kTileRows x kTileCols outputs at (i0, p0), each a sum over q in order (reversed with
/// `reverse`), accumulated in eight vector registers.
template <class Acc>
void gemm_tile(const Acc* a, int64_t a_row, int64_t a_col, const Acc* b, Acc* out, int64_t inner, int64_t len,
               int64_t i0, int64_t p0, bool reverse) {
  using V = Vec16<Acc>;
  V acc[kTileRows][2] = {};
  for (int64_t t = 0; t < inner; ++t) {
    const int64_t q = reverse ? inner - 1 - t : t;
    V lo, hi;
    std::memcpy(&lo, b + q * len + p0, sizeof lo);
    std::memcpy(&hi, b + q * len + p0 + kTileCols<Acc> / 2, sizeof hi);
    const Acc* coef = a + i0 * a_row + q * a_col;
    for (int i = 0; i < kTileRows; ++i) {
      const Acc c = coef[i * a_row];
      acc[i][0] += c * lo;
      acc[i][1] += c * hi;
    }
  }
  for (int i = 0; i < kTileRows; ++i) std::memcpy(out + (i0 + i) * len + p0, acc[i], sizeof acc[i]);
}

/// A partial tile at the bottom or right edge: the same sums, one output at a time.
template <class Acc>
void gemm_edge(const Acc* a, int64_t a_row, int64_t a_col, const Acc* b, Acc* out, int64_t inner, int64_t len,
               int64_t i0, int64_t p0, int64_t rows, int64_t cols, bool reverse) {
  for (int64_t i = i0; i < i0 + rows; ++i)
    for (int64_t p = p0; p < p0 + cols; ++p) {
      Acc acc = 0;
      for (int64_t t = 0; t < inner; ++t) {
        const int64_t q = reverse ? inner - 1 - t : t;
        acc += a[i * a_row + q * a_col] * b[q * len + p];
      }
      out[i * len + p] = acc;
    }
}

/// out (m x len) = a (m x inner, element (i, q) at a[i * a_row + q * a_col]) times b (inner x len, row-major).
/// Each output is one sum over q in order (reversed with `reverse`), accumulated in Acc.
template <class Acc>
void gemm(const Acc* a, int64_t a_row, int64_t a_col, const Acc* b, Acc* out, int64_t m, int64_t inner, int64_t len,
          bool reverse) {
  for (int64_t i0 = 0; i0 < m; i0 += kTileRows)
    for (int64_t p0 = 0; p0 < len; p0 += kTileCols<Acc>) {
      const int64_t rows = std::min<int64_t>(kTileRows, m - i0), cols = std::min<int64_t>(kTileCols<Acc>, len - p0);
      if (rows == kTileRows && cols == kTileCols<Acc>)
        gemm_tile(a, a_row, a_col, b, out, inner, len, i0, p0, reverse);
      else
        gemm_edge(a, a_row, a_col, b, out, inner, len, i0, p0, rows, cols, reverse);
    }
}

/// t (cols x rows) = the transpose of m (rows x cols).
template <class Acc>
void transpose(const Acc* m, int64_t rows, int64_t cols, Acc* t) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = m[r * cols + c];
}

/// y (n, k, positions) = w (k, taps) * im2col(x) per image.
template <class Acc>
std::vector<Acc> forward(const ConvJob& j, const Dims& d) {
  const std::vector<Acc> x = load<Acc>(j.x, j.x_data, j.rounding);
  std::vector<Acc> w = load<Acc>(j.w, j.w_data, j.rounding);
  if (j.flip) flip_filter(w, d);
  std::vector<Acc> col(static_cast<size_t>(d.taps() * d.positions()));
  std::vector<Acc> y(static_cast<size_t>(d.n * d.k * d.positions()));
  for (int64_t n = 0; n < d.n; ++n) {
    im2col(j, d, x.data() + n * d.c * d.h * d.w, col.data());
    gemm(w.data(), d.taps(), 1, col.data(), y.data() + n * d.k * d.positions(), d.k, d.taps(), d.positions(), false);
  }
  return y;
}

/// dx (n, c, h, w) = col2im(w^T (taps, k) * dy) per image.
template <class Acc>
std::vector<Acc> backward_data(const ConvJob& j, const Dims& d) {
  const std::vector<Acc> dy = load<Acc>(j.y, j.y_data, j.rounding);
  std::vector<Acc> w = load<Acc>(j.w, j.w_data, j.rounding);
  if (j.flip) flip_filter(w, d);
  std::vector<Acc> col(static_cast<size_t>(d.taps() * d.positions()));
  std::vector<Acc> dx(static_cast<size_t>(d.n * d.c * d.h * d.w), Acc(0));
  for (int64_t n = 0; n < d.n; ++n) {
    gemm(w.data(), 1, d.taps(), dy.data() + n * d.k * d.positions(), col.data(), d.taps(), d.k, d.positions(),
         j.reverse_order);
    col2im(j, d, col.data(), dx.data() + n * d.c * d.h * d.w);
  }
  return dx;
}

/// dw (k, taps) = sum over images of dy (k, positions) * im2col(x)^T (positions, taps): one sum per image, then
/// the images' partial sums added in order (reversed with reverse_order).
template <class Acc>
std::vector<Acc> backward_filter(const ConvJob& j, const Dims& d) {
  const std::vector<Acc> x = load<Acc>(j.x, j.x_data, j.rounding);
  const std::vector<Acc> dy = load<Acc>(j.y, j.y_data, j.rounding);
  std::vector<Acc> col(static_cast<size_t>(d.taps() * d.positions())), col_t(col.size());
  std::vector<Acc> part(static_cast<size_t>(d.k * d.taps())), dw(part.size(), Acc(0));
  for (int64_t t = 0; t < d.n; ++t) {
    const int64_t n = j.reverse_order ? d.n - 1 - t : t;
    im2col(j, d, x.data() + n * d.c * d.h * d.w, col.data());
    transpose(col.data(), d.taps(), d.positions(), col_t.data());
    gemm(dy.data() + n * d.k * d.positions(), d.positions(), 1, col_t.data(), part.data(), d.k, d.positions(), d.taps(),
         false);
    for (size_t i = 0; i < dw.size(); ++i) dw[i] += part[i];
  }
  if (j.flip) flip_filter(dw, d);
  return dw;
}

template <class Acc>
void run_typed(const ConvJob& j) {
  const Dims d = dims_of(j);
  switch (j.pass) {
    case Pass::forward: store(j.y, j.y_data, forward<Acc>(j, d), j.alpha, j.beta); break;
    case Pass::backward_data: store(j.x, j.x_data, backward_data<Acc>(j, d), j.alpha, j.beta); break;
    case Pass::backward_filter: store(j.w, j.w_data, backward_filter<Acc>(j, d), j.alpha, j.beta); break;
  }
}

}  // namespace

size_t element_size(cudnnDataType_t type) {
  switch (type) {
    case CUDNN_DATA_FLOAT: return 4;
    case CUDNN_DATA_DOUBLE: return 8;
    case CUDNN_DATA_HALF:
    case CUDNN_DATA_BFLOAT16: return 2;
    default: return 0;
  }
}

size_t span_bytes(const Operand& o) {
  int64_t last = 0;
  for (int i = 0; i < 4; ++i) last += (o.dims[i] - 1) * o.strides[i];
  return static_cast<size_t>(last + 1) * element_size(o.type);
}

void run_conv(const ConvJob& job) {
  // A real algorithm uses its workspace: overwrite it, so a workspace that aliases live data shows.
  if (job.workspace != nullptr && job.workspace_bytes > 0) std::memset(job.workspace, 0xA5, job.workspace_bytes);
  if (job.x.type == CUDNN_DATA_DOUBLE)
    run_typed<double>(job);
  else
    run_typed<float>(job);
}

}  // namespace mixtape::emu::cudnn_mock
