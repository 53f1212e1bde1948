// CPU reductions over the middle axis of an (outer, n, inner) view, accumulating in float (double for f64). Each
// output element adds (or compares) its n inputs in ascending order, one after the other, so the result does not
// depend on how the outer rows are split between threads. The operation is a template parameter, so the inner loop
// holds no branch on it (the compiler vectorises the inner == many case across outputs).
#include <limits>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu_threads.h"

namespace mixtape::cpu {

namespace {

template <ReduceOp Op, class T>
void reduce_rows(const T* px, int64_t o0, int64_t o1, int64_t n, int64_t inner, void* out) {
  using A = acc_t<T>;
  constexpr bool is_sum = Op == ReduceOp::sum || Op == ReduceOp::mean;
  std::vector<A> acc(static_cast<size_t>(inner));
  std::vector<int64_t> arg(Op == ReduceOp::argmax ? static_cast<size_t>(inner) : 0);
  for (int64_t o = o0; o < o1; ++o) {
    const T* base = px + o * n * inner;
    A* a = acc.data();
    if (inner == 1 && is_sum) {  // one output per row: a running sum
      A s = A(0);
      for (int64_t r = 0; r < n; ++r) s += static_cast<A>(base[r]);
      a[0] = s;
    } else {
      for (int64_t i = 0; i < inner; ++i) a[i] = is_sum ? A(0) : static_cast<A>(base[i]);
      if constexpr (Op == ReduceOp::argmax) std::fill(arg.begin(), arg.end(), 0);
      for (int64_t r = is_sum ? 0 : 1; r < n; ++r) {
        const T* row = base + r * inner;
        for (int64_t i = 0; i < inner; ++i) {
          const A v = static_cast<A>(row[i]);
          if constexpr (is_sum) {
            a[i] += v;
          } else if constexpr (Op == ReduceOp::max) {
            if (v > a[i] || v != v) a[i] = (a[i] != a[i]) ? a[i] : v;
          } else if constexpr (Op == ReduceOp::min) {
            if (v < a[i] || v != v) a[i] = (a[i] != a[i]) ? a[i] : v;
          } else {  // argmax: the first maximum; a NaN counts as the maximum, like PyTorch
            if (a[i] == a[i] && (v > a[i] || v != v)) {
              a[i] = v;
              arg[static_cast<size_t>(i)] = r;
            }
          }
        }
      }
    }
    if constexpr (Op == ReduceOp::argmax) {
      int64_t* po = static_cast<int64_t*>(out) + o * inner;
      for (int64_t i = 0; i < inner; ++i) po[i] = arg[static_cast<size_t>(i)];
    } else {
      T* po = static_cast<T*>(out) + o * inner;
      const A scale = Op == ReduceOp::mean ? (n ? A(1) / static_cast<A>(n) : std::numeric_limits<A>::quiet_NaN()) : A(1);
      for (int64_t i = 0; i < inner; ++i) po[i] = store<T>(Op == ReduceOp::mean ? a[i] * scale : a[i]);
    }
  }
}

template <ReduceOp Op>
void reduce_as(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  dispatch_floating(x.dtype(), op_name(Op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    void* po = out.raw_data();
    parallel_range(outer, std::max<int64_t>(n * inner, 1),
                   [&](int64_t o0, int64_t o1) { reduce_rows<Op, T>(px, o0, o1, n, inner, po); });
  });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  switch (op) {
    case ReduceOp::sum: return reduce_as<ReduceOp::sum>(x, outer, n, inner, out);
    case ReduceOp::mean: return reduce_as<ReduceOp::mean>(x, outer, n, inner, out);
    case ReduceOp::max: return reduce_as<ReduceOp::max>(x, outer, n, inner, out);
    case ReduceOp::min: return reduce_as<ReduceOp::min>(x, outer, n, inner, out);
    case ReduceOp::argmax: return reduce_as<ReduceOp::argmax>(x, outer, n, inner, out);
  }
}

}  // namespace mixtape::cpu
