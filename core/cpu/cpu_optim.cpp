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
    // Scalars are formed in double and rounded once to the accumulate type, as PyTorch rounds a Python
    // float (e.g. alpha = 1 - dampening) to the tensor's type.
    const A lr = static_cast<A>(u.lr), mom = static_cast<A>(u.momentum), wd = static_cast<A>(u.weight_decay);
    const A one_minus_damp = static_cast<A>(1.0 - u.dampening);
    for (int64_t i = 0, n = param.numel(); i < n; ++i) {
      A d = static_cast<A>(g[i]);
      if (wd != A(0)) d += wd * static_cast<A>(p[i]);
      if (buf) {
        const A b = u.first_step ? d : mom * static_cast<A>(buf[i]) + one_minus_damp * d;  // mul_ then add_
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
    // Every scalar is computed in double, as PyTorch's Python code does, and rounded once to the accumulate
    // type: e.g. 1 - beta2 rounded from double is 1e-3 to float precision, while 1 - float(0.999) is
    // 1.3e-5 (relative) away from it.
    const A b1 = static_cast<A>(u.beta1), b2 = static_cast<A>(u.beta2), eps = static_cast<A>(u.eps),
            wd = static_cast<A>(u.weight_decay);
    const A one_minus_b1 = static_cast<A>(1.0 - u.beta1), one_minus_b2 = static_cast<A>(1.0 - u.beta2);
    const double bc1 = 1.0 - std::pow(u.beta1, static_cast<double>(u.step));
    const A bc2_sqrt = static_cast<A>(std::sqrt(1.0 - std::pow(u.beta2, static_cast<double>(u.step))));
    const A step_size = static_cast<A>(u.lr / bc1);
    const A decay = static_cast<A>(1.0 - u.lr * u.weight_decay);
    for (int64_t i = 0, n = param.numel(); i < n; ++i) {
      A pv = static_cast<A>(p[i]), gv = static_cast<A>(g[i]);
      if (u.decoupled_weight_decay) pv *= decay;
      else if (wd != A(0)) gv += wd * pv;
      // PyTorch 1.13: exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) (a lerp only from 2.0 on);
      // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2), i.e. ((1 - beta2) * g) * g.
      const A mv = static_cast<A>(m[i]) * b1 + one_minus_b1 * gv;
      const A vv = static_cast<A>(v[i]) * b2 + one_minus_b2 * gv * gv;
      m[i] = store<T>(mv);
      v[i] = store<T>(vv);
      // param.addcdiv_(exp_avg, sqrt(v) / bc2_sqrt + eps, value=-step_size): (value * m) / denom.
      p[i] = store<T>(pv - step_size * mv / (std::sqrt(vv) / bc2_sqrt + eps));
    }
  });
}

bool CpuBackend::unscale_and_check(const std::vector<Tensor>& grads, double inv_scale) {
  bool found_inf = false;
  for (const Tensor& grad : grads) {
    dispatch_floating(grad.dtype(), "unscale_and_check", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = acc_t<T>;
      T* g = static_cast<T*>(grad.raw_data());
      const A inv = static_cast<A>(inv_scale);
      bool bad = false;
      for (int64_t i = 0, n = grad.numel(); i < n; ++i) {
        const A v = static_cast<A>(g[i]);
        bad |= !(v - v == A(0));  // inf - inf and NaN - NaN are NaN
        g[i] = store<T>(v * inv);
      }
      found_inf |= bad;
    });
  }
  return found_inf;
}

}  // namespace mixtape::cpu
