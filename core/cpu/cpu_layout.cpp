// Layout kernels of the CPU backend: copies between strided views (permute, narrow, concatenation) and the
// embedding gather with its deterministic scatter-add (core/backend.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cast_rules.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu_threads.h"
#include "core/error.h"

namespace mixtape::cpu {

namespace {
/// Moves `c.numel` elements of `bytes` bytes each as bits. The innermost dimension runs as a tight loop (a memcpy when
/// both sides are contiguous along it).
template <class U>
void strided_copy_as(const char* src, char* dst, const StridedCopy& c) {
  const U* s = reinterpret_cast<const U*>(src) + c.src_offset;
  U* d = reinterpret_cast<U*>(dst) + c.dst_offset;
  const BroadcastIndex<2>& ix = c.index;
  const int last = ix.ndim - 1;
  const int64_t inner = last >= 0 ? ix.sizes[last] : 1;
  const int64_t ds = last >= 0 ? ix.strides[0][last] : 0, ss = last >= 0 ? ix.strides[1][last] : 0;
  const int64_t rows = inner > 0 ? c.numel / inner : 0;
  // the rows (every index but the innermost): a row's start from the index math, with the innermost index 0
  BroadcastIndex<2> outer = ix;
  if (last >= 0) {
    outer.sizes[last] = 1;
    outer.strides[0][last] = outer.strides[1][last] = 0;
  }
  parallel_range(rows, std::max<int64_t>(inner, 1), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off[2];
      outer.offsets(r, off);
      U* dr = d + off[0];
      const U* sr = s + off[1];
      if (ds == 1 && ss == 1) {
        std::memcpy(dr, sr, static_cast<size_t>(inner) * sizeof(U));
      } else {
        for (int64_t i = 0; i < inner; ++i) dr[i * ds] = sr[i * ss];
      }
    }
  });
}
}  // namespace

void CpuBackend::strided_copy(const Tensor& src, const Tensor& dst, const StridedCopy& c) {
  MIXTAPE_CHECK(src.dtype() == dst.dtype(), "strided_copy: dtypes differ (", dtype_name(src.dtype()), " vs ",
                dtype_name(dst.dtype()), ")");
  if (c.numel == 0) return;
  const char* s = static_cast<const char*>(src.raw_data());
  char* d = static_cast<char*>(dst.raw_data());
  dispatch_bits(dtype_size(src.dtype()), "strided_copy",
                [&](auto tag) { strided_copy_as<typename decltype(tag)::type>(s, d, c); });
}

void CpuBackend::embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  const int64_t v = weight.size(0), d = weight.size(1), n = ids.numel();
  const int64_t* id = ids.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    MIXTAPE_CHECK(id[i] >= 0 && id[i] < v, "embedding: index ", id[i], " at position ", i, " is outside [0, ", v,
                  ") (the number of rows of the weight)");
  const size_t row = static_cast<size_t>(d) * dtype_size(weight.dtype());
  const char* w = static_cast<const char*>(weight.raw_data());
  char* o = static_cast<char*>(out.raw_data());
  parallel_range(n, std::max<int64_t>(d, 1), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(o + static_cast<size_t>(i) * row, w + static_cast<size_t>(id[i]) * row, row);
  });
}

void CpuBackend::embedding_backward(const Tensor& g, const Tensor& ids, const Tensor& gw) {
  dispatch_floating(g.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const int64_t v = gw.size(0), d = gw.size(1), n = ids.numel();
    const int64_t* id = ids.data<int64_t>();
    const T* gp = g.data<T>();
    T* out = gw.data<T>();
    // each row's sum in ascending n, in the accumulate type, rounded once (as the CUDA kernel: the same bits)
    std::vector<A> acc(static_cast<size_t>(v * d), A(0));
    for (int64_t i = 0; i < n; ++i) {
      MIXTAPE_CHECK(id[i] >= 0 && id[i] < v, "embedding backward: index ", id[i], " at position ", i, " is outside [0, ",
                    v, ")");
      A* a = acc.data() + id[i] * d;
      const T* row = gp + i * d;
      for (int64_t k = 0; k < d; ++k) a[k] += static_cast<A>(row[k]);
    }
    for (int64_t k = 0; k < v * d; ++k) out[k] = store<T>(acc[static_cast<size_t>(k)]);
  });
}

}  // namespace mixtape::cpu
