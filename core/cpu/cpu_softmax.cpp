// CPU softmax, log-softmax and fused cross-entropy over the last axis, computed in float (double for f64).
#include <cmath>

#include "core/cpu/cpu_backend.h"

namespace mixtape::cpu {

namespace {
/// max and log(sum(exp(x - max))) of one row; x - max - log_sum is the log-softmax, computed in that order
/// (x - max is exact near the maximum). The sum is 1 + (the other terms), so log_sum = log1p(others): accurate
/// when one logit dominates and its log-probability is tiny.
template <class T, class A>
void row_stats(const T* x, int64_t cols, A& mx, A& log_sum) {
  int64_t arg = 0;
  mx = static_cast<A>(x[0]);
  for (int64_t j = 1; j < cols; ++j)
    if (static_cast<A>(x[j]) > mx) {
      mx = static_cast<A>(x[j]);
      arg = j;
    }
  A others = 0;
  for (int64_t j = 0; j < cols; ++j)
    if (j != arg) others += std::exp(static_cast<A>(x[j]) - mx);
  log_sum = std::log1p(others);
}
}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    for (int64_t r = 0; r < rows; ++r) {
      const T* px = static_cast<const T*>(x.raw_data()) + r * cols;
      T* po = static_cast<T*>(out.raw_data()) + r * cols;
      A mx, log_sum;
      row_stats(px, cols, mx, log_sum);
      for (int64_t j = 0; j < cols; ++j) {
        const A z = (static_cast<A>(px[j]) - mx) - log_sum;
        po[j] = store<T>(log ? z : std::exp(z));
      }
    }
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  dispatch_floating(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const int64_t cols = y.size(-1), rows = y.numel() / cols;
    for (int64_t r = 0; r < rows; ++r) {
      const T* py = static_cast<const T*>(y.raw_data()) + r * cols;
      const T* pg = static_cast<const T*>(gy.raw_data()) + r * cols;
      T* po = static_cast<T*>(gx.raw_data()) + r * cols;
      A s = 0;
      for (int64_t j = 0; j < cols; ++j) s += log ? static_cast<A>(pg[j]) : static_cast<A>(pg[j]) * static_cast<A>(py[j]);
      for (int64_t j = 0; j < cols; ++j) {
        const A yv = static_cast<A>(py[j]), gv = static_cast<A>(pg[j]);
        po[j] = store<T>(log ? gv - std::exp(yv) * s : yv * (gv - s));
      }
    }
  });
}

namespace {
int64_t checked_label(const int64_t* labels, int64_t row, int64_t classes) {
  const int64_t y = labels[row];
  MIXTAPE_CHECK(y >= 0 && y < classes, "cross_entropy: label ", y, " at index ", row, " is out of range for ", classes,
                " classes (expected 0..", classes - 1, ")");
  return y;
}
}  // namespace

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses, double smoothing) {
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const int64_t rows = logits.size(0), cols = logits.size(1);
    const int64_t* pl = static_cast<const int64_t*>(labels.raw_data());
    T* po = static_cast<T*>(losses.raw_data());
    const A eps = static_cast<A>(smoothing);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = checked_label(pl, r, cols);
      const T* px = static_cast<const T*>(logits.raw_data()) + r * cols;
      A mx, log_sum;
      row_stats(px, cols, mx, log_sum);
      // -log p_y = log_sum - (x_y - max); the smoothing term is the mean of -log p_c
      A loss = (A(1) - eps) * (log_sum - (static_cast<A>(px[y]) - mx));
      if (eps != A(0)) {
        A mean = 0;
        for (int64_t j = 0; j < cols; ++j) mean += static_cast<A>(px[j]) - mx;
        loss += eps * (log_sum - mean / static_cast<A>(cols));
      }
      po[r] = store<T>(loss);
    }
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& grad_losses,
                                        const Tensor& grad_logits, double smoothing) {
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const int64_t rows = logits.size(0), cols = logits.size(1);
    const int64_t* pl = static_cast<const int64_t*>(labels.raw_data());
    const T* pg = static_cast<const T*>(grad_losses.raw_data());
    const A eps = static_cast<A>(smoothing), uniform = eps / static_cast<A>(cols);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = checked_label(pl, r, cols);
      const T* px = static_cast<const T*>(logits.raw_data()) + r * cols;
      T* po = static_cast<T*>(grad_logits.raw_data()) + r * cols;
      A mx, log_sum;
      row_stats(px, cols, mx, log_sum);
      const A g = static_cast<A>(pg[r]);
      for (int64_t j = 0; j < cols; ++j) {
        const A target = (j == y ? A(1) - eps : A(0)) + uniform;
        po[j] = store<T>(g * (std::exp((static_cast<A>(px[j]) - mx) - log_sum) - target));
      }
    }
  });
}


}  // namespace mixtape::cpu
