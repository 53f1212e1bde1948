// CPU optimizer updates: one fused pass per parameter, following PyTorch 1.13's single-tensor formulas.
#include <cmath>

#include "core/cpu/cpu_backend.h"

namespace mixtape::cpu {

void CpuBackend::sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdUpdate& u) {
  dispatch_floating(param.dtype(), "sgd_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    T* p = static_cast<T*>(param.raw_data());
    const T* g = static_cast<const T*>(grad.raw_data());
    T* buf = momentum_buf.defined() ? static_cast<T*>(momentum_buf.raw_data()) : nullptr;
    const A lr = static_cast<A>(u.lr), mom = static_cast<A>(u.momentum), damp = static_cast<A>(u.dampening),
            wd = static_cast<A>(u.weight_decay);
    for (int64_t i = 0, n = param.numel(); i < n; ++i) {
      A d = static_cast<A>(g[i]);
      if (wd != A(0)) d += wd * static_cast<A>(p[i]);
      if (buf) {
        const A b = u.first_step ? d : mom * static_cast<A>(buf[i]) + (A(1) - damp) * d;
        buf[i] = store<T>(b);
        d = u.nesterov ? d + mom * b : b;
      }
      p[i] = store<T>(static_cast<A>(p[i]) - lr * d);
    }
  });
}

void CpuBackend::adam_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                             const AdamUpdate& u) {
  dispatch_floating(param.dtype(), "adam_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    T* p = static_cast<T*>(param.raw_data());
    const T* g = static_cast<const T*>(grad.raw_data());
    T* m = static_cast<T*>(exp_avg.raw_data());
    T* v = static_cast<T*>(exp_avg_sq.raw_data());
    const A lr = static_cast<A>(u.lr), b1 = static_cast<A>(u.beta1), b2 = static_cast<A>(u.beta2),
            eps = static_cast<A>(u.eps), wd = static_cast<A>(u.weight_decay);
    const A bc1 = A(1) - static_cast<A>(std::pow(u.beta1, static_cast<double>(u.step)));
    const A bc2_sqrt = static_cast<A>(std::sqrt(1.0 - std::pow(u.beta2, static_cast<double>(u.step))));
    const A step_size = lr / bc1;
    const A decay = A(1) - lr * wd;
    for (int64_t i = 0, n = param.numel(); i < n; ++i) {
      A pv = static_cast<A>(p[i]), gv = static_cast<A>(g[i]);
      if (u.decoupled_weight_decay) pv *= decay;
      else if (wd != A(0)) gv += wd * pv;
      const A mv = static_cast<A>(m[i]) + (gv - static_cast<A>(m[i])) * (A(1) - b1);  // lerp, as PyTorch
      const A vv = b2 * static_cast<A>(v[i]) + (A(1) - b2) * gv * gv;
      m[i] = store<T>(mv);
      v[i] = store<T>(vv);
      p[i] = store<T>(pv - step_size * mv / (std::sqrt(vv) / bc2_sqrt + eps));
    }
  });
}

}  // namespace mixtape::cpu
