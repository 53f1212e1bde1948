// CPU reductions over the middle axis of an (outer, n, inner) view, accumulating in float (double for f64).
#include <limits>
#include <vector>

#include "core/cpu/cpu_backend.h"

namespace mixtape::cpu {

void CpuBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& out) {
  dispatch_floating(x.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* px = static_cast<const T*>(x.raw_data());
    std::vector<A> acc(static_cast<size_t>(inner));
    std::vector<int64_t> arg(op == ReduceOp::argmax ? static_cast<size_t>(inner) : 0);
    for (int64_t o = 0; o < outer; ++o) {
      const T* base = px + o * n * inner;
      const bool is_sum = op == ReduceOp::sum || op == ReduceOp::mean;
      for (int64_t i = 0; i < inner; ++i)
        acc[static_cast<size_t>(i)] = is_sum ? A(0) : static_cast<A>(base[i]);
      if (op == ReduceOp::argmax) std::fill(arg.begin(), arg.end(), 0);
      for (int64_t r = is_sum ? 0 : 1; r < n; ++r) {
        const T* row = base + r * inner;
        for (int64_t i = 0; i < inner; ++i) {
          const A v = static_cast<A>(row[i]);
          A& a = acc[static_cast<size_t>(i)];
          switch (op) {
            case ReduceOp::sum:
            case ReduceOp::mean: a += v; break;
            case ReduceOp::max: if (v > a || v != v) a = (a != a) ? a : v; break;
            case ReduceOp::min: if (v < a || v != v) a = (a != a) ? a : v; break;
            case ReduceOp::argmax:  // first maximum; a NaN counts as the maximum, like PyTorch
              if (a == a && (v > a || v != v)) {
                a = v;
                arg[static_cast<size_t>(i)] = r;
              }
              break;
          }
        }
      }
      if (op == ReduceOp::argmax) {
        int64_t* po = static_cast<int64_t*>(out.raw_data()) + o * inner;
        for (int64_t i = 0; i < inner; ++i) po[i] = arg[static_cast<size_t>(i)];
      } else {
        T* po = static_cast<T*>(out.raw_data()) + o * inner;
        const A scale = op == ReduceOp::mean ? (n ? A(1) / static_cast<A>(n) : std::numeric_limits<A>::quiet_NaN()) : A(1);
        for (int64_t i = 0; i < inner; ++i)
          po[i] = store<T>(op == ReduceOp::mean ? acc[static_cast<size_t>(i)] * scale : acc[static_cast<size_t>(i)]);
      }
    }
  });
}

}  // namespace mixtape::cpu
