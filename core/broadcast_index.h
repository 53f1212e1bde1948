#pragma once
// Broadcast index math shared by host and device (MIXTAPE_HD): maps the flat index of an output element to
// the flat offsets of N inputs broadcast against it (numpy rules, right-aligned, size-1 dims repeat).
// Built once on the host (make_broadcast_index), passed by value to a kernel, and unit-tested on the CPU
// against the CPU backend's broadcasting loops.
#include <array>
#include <cstdint>

#include "core/macros.h"
#include "core/shape.h"

namespace mixtape {

/// Output sizes and per-input element strides (0 along broadcast dims), after merging adjacent dims that
/// every operand walks contiguously. ndim <= Shape::kMaxDims; a 0-d output has ndim 0 (one element).
template <int N>
struct BroadcastIndex {
  int ndim = 0;
  int64_t sizes[Shape::kMaxDims] = {};
  int64_t strides[N][Shape::kMaxDims] = {};

  /// Offsets into each input of output element `i` (0 <= i < numel), I = uint32_t or int64_t.
  template <class I>
  MIXTAPE_HD MIXTAPE_INLINE void offsets(I i, I (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const I size = static_cast<I>(sizes[d]);
      const I q = i / size;
      const I r = i - q * size;
      for (int k = 0; k < N; ++k) off[k] += r * static_cast<I>(strides[k][d]);
      i = q;
    }
  }
};

/// Element strides of `in` read as `out` (0 where `in` is broadcast), right-aligned; `in` must broadcast to `out`.
inline void broadcast_strides(const Shape& in, const Shape& out, int64_t* strides) {
  const int n = out.size(), lead = n - in.size();
  int64_t s = 1;
  for (int i = n - 1; i >= 0; --i) {
    const int j = i - lead;
    if (j < 0 || in[j] == 1) {
      strides[i] = 0;
    } else {
      strides[i] = s;
      s *= in[j];
    }
  }
}

/// The index of N inputs broadcast to `out`: size-1 output dims are dropped, and dims d, d+1 are merged when
/// every input has strides[d] == strides[d+1] * sizes[d+1] (walks both contiguously, or broadcasts both).
template <int N>
BroadcastIndex<N> make_broadcast_index(const Shape& out, const std::array<const Shape*, N>& ins) {
  int64_t full[N][Shape::kMaxDims];
  for (int k = 0; k < N; ++k) broadcast_strides(*ins[k], out, full[k]);
  BroadcastIndex<N> bi;
  for (int d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;  // contributes nothing to any offset
    if (bi.ndim > 0) {
      const int p = bi.ndim - 1;
      bool merge = true;
      for (int k = 0; k < N; ++k) merge = merge && bi.strides[k][p] == full[k][d] * out[d];
      if (merge) {
        bi.sizes[p] *= out[d];
        for (int k = 0; k < N; ++k) bi.strides[k][p] = full[k][d];
        continue;
      }
    }
    bi.sizes[bi.ndim] = out[d];
    for (int k = 0; k < N; ++k) bi.strides[k][bi.ndim] = full[k][d];
    ++bi.ndim;
  }
  return bi;
}

}  // namespace mixtape
