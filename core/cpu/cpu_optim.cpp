// CPU optimizer updates and AMP loss-scaling kernels: one fused pass per parameter, following PyTorch 1.13's
// single-tensor formulas. The CUDA kernels (cuda/cuda_optim.cu) mirror this arithmetic operation for operation.
#include <algorithm>
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_simd.h"
#include "core/cpu_threads.h"

namespace mixtape::cpu {

namespace {

/// Checks the optional compute copy and found-inf flag of an update of `param` (throws naming `who`).
void check_update_extras(const char* who, const Tensor& param, const Tensor& compute_copy, const Tensor& found_inf) {
  if (compute_copy.defined()) {
    MIXTAPE_CHECK(compute_copy.dtype() == DType::f16 || compute_copy.dtype() == DType::bf16, who,
                  ": compute_copy must be f16 or bf16, got ", dtype_name(compute_copy.dtype()));
    MIXTAPE_CHECK(compute_copy.shape() == param.shape() && compute_copy.device() == param.device(), who,
                  ": compute_copy is ", compute_copy.shape().to_string(), " on ", compute_copy.device().to_string(),
                  " but the parameter is ", param.shape().to_string(), " on ", param.device().to_string());
  }
  if (found_inf.defined())
    MIXTAPE_CHECK(found_inf.dtype() == DType::f32 && found_inf.numel() == 1 && found_inf.device() == param.device(),
                  who, ": found_inf must be a one-element f32 tensor on ", param.device().to_string(), ", got ",
                  dtype_name(found_inf.dtype()), " ", found_inf.shape().to_string(), " on ",
                  found_inf.device().to_string());
}

/// Whether an optional found-inf flag says "skip".
bool skip_update(const Tensor& found_inf) { return found_inf.defined() && found_inf.data<float>()[0] != 0.0f; }

/// Calls f(type_tag<C>{}) with C the compute copy's storage type, or void when there is none.
template <class F>
void dispatch_copy(const Tensor& compute_copy, F&& f) {
  if (!compute_copy.defined()) return f(type_tag<void>{});
  if (compute_copy.dtype() == DType::f16) return f(type_tag<Half>{});
  return f(type_tag<BFloat16>{});
}

}  // namespace

void CpuBackend::sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdUpdate& u) {
  check_update_extras("sgd_update", param, u.compute_copy, u.found_inf);
  if (skip_update(u.found_inf)) return;
  dispatch_floating(param.dtype(), "sgd_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    dispatch_copy(u.compute_copy, [&](auto copy_tag) {
      using C = typename decltype(copy_tag)::type;
      T* p = static_cast<T*>(param.raw_data());
      const T* g = static_cast<const T*>(grad.raw_data());
      T* buf = momentum_buf.defined() ? static_cast<T*>(momentum_buf.raw_data()) : nullptr;
      C* c = nullptr;
      if constexpr (!std::is_void_v<C>) c = static_cast<C*>(u.compute_copy.raw_data());
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
        // The compute copy is the stored master rounded once, exactly what a cast after the update gives.
        if constexpr (!std::is_void_v<C>) c[i] = store<C>(p[i]);
      }
    });
  });
}

void CpuBackend::adam_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                             const AdamUpdate& u) {
  check_update_extras("adam_update", param, u.compute_copy, u.found_inf);
  if (skip_update(u.found_inf)) return;
  dispatch_floating(param.dtype(), "adam_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    dispatch_copy(u.compute_copy, [&](auto copy_tag) {
      using C = typename decltype(copy_tag)::type;
      T* p = static_cast<T*>(param.raw_data());
      const T* g = static_cast<const T*>(grad.raw_data());
      T* m = static_cast<T*>(exp_avg.raw_data());
      T* v = static_cast<T*>(exp_avg_sq.raw_data());
      C* c = nullptr;
      if constexpr (!std::is_void_v<C>) c = static_cast<C*>(u.compute_copy.raw_data());
      // Every scalar is computed in double, as PyTorch's Python code does, and rounded once to the accumulate
      // type: e.g. 1 - beta2 rounded from double is 1e-3 to float precision, while 1 - float(0.999) is
      // 1.3e-5 (relative) away from it.
      const double bc1 = 1.0 - std::pow(u.beta1, static_cast<double>(u.step));
      const AdamConsts<A> k{static_cast<A>(u.beta1),
                            static_cast<A>(u.beta2),
                            static_cast<A>(1.0 - u.beta1),
                            static_cast<A>(1.0 - u.beta2),
                            static_cast<A>(u.eps),
                            static_cast<A>(u.weight_decay),
                            static_cast<A>(u.lr / bc1),
                            static_cast<A>(std::sqrt(1.0 - std::pow(u.beta2, static_cast<double>(u.step)))),
                            static_cast<A>(1.0 - u.lr * u.weight_decay),
                            u.decoupled_weight_decay};
      const int64_t n = param.numel();
      if constexpr (std::is_same_v<T, float>) {
        // float32 masters (the AMP case): the vector loop, in blocks so the compute copy is written while the
        // block is in cache; blocks split across threads when the parameter is large (elementwise: the split
        // changes nothing)
        constexpr int64_t kBlock = 4096;
        parallel_range((n + kBlock - 1) / kBlock, 8 * kBlock, [&](int64_t b0, int64_t b1) {
          for (int64_t i0 = b0 * kBlock; i0 < std::min(n, b1 * kBlock); i0 += kBlock) {
            const int64_t len = std::min(kBlock, n - i0);
            adam_f32(p + i0, g + i0, m + i0, v + i0, len, k);
            if constexpr (!std::is_void_v<C>) narrow(p + i0, c + i0, len);
          }
        });
      } else {
        for (int64_t i = 0; i < n; ++i) {
          A mv = static_cast<A>(m[i]), vv = static_cast<A>(v[i]);
          const A pv = adam_one(static_cast<A>(p[i]), static_cast<A>(g[i]), mv, vv, k);
          m[i] = store<T>(mv);
          v[i] = store<T>(vv);
          p[i] = store<T>(pv);
          if constexpr (!std::is_void_v<C>) c[i] = store<C>(p[i]);
        }
      }
    });
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

void CpuBackend::unscale_and_check_into(const std::vector<Tensor>& grads, const Tensor& scale,
                                        const Tensor& found_inf) {
  MIXTAPE_CHECK(scale.dtype() == DType::f32 && scale.numel() == 1 && found_inf.dtype() == DType::f32 &&
                    found_inf.numel() == 1,
                "unscale_and_check_into: scale and found_inf must be one-element f32 tensors, got ",
                dtype_name(scale.dtype()), " ", scale.shape().to_string(), " and ", dtype_name(found_inf.dtype()), " ",
                found_inf.shape().to_string());
  // PyTorch's inv_scale: scale.double().reciprocal().float().
  const float inv = static_cast<float>(1.0 / static_cast<double>(scale.data<float>()[0]));
  if (unscale_and_check(grads, static_cast<double>(inv))) found_inf.data<float>()[0] = 1.0f;
}

void CpuBackend::update_loss_scale(const Tensor& scale, const Tensor& growth_tracker, const Tensor& hysteresis_tracker,
                                   const Tensor& found_inf, const LossScaleUpdate& u) {
  MIXTAPE_CHECK(scale.dtype() == DType::f32 && found_inf.dtype() == DType::f32 &&
                    growth_tracker.dtype() == DType::i64 && hysteresis_tracker.dtype() == DType::i64 &&
                    scale.numel() == 1 && found_inf.numel() == 1 && growth_tracker.numel() == 1 &&
                    hysteresis_tracker.numel() == 1,
                "update_loss_scale: expected one-element tensors scale (f32), growth_tracker (i64), "
                "hysteresis_tracker (i64), found_inf (f32)");
  float& s = scale.data<float>()[0];
  int64_t& growth = growth_tracker.data<int64_t>()[0];
  int64_t& hyst = hysteresis_tracker.data<int64_t>()[0];
  // The rule of amp::GradScaler::update(), in its arithmetic: float32 scale, products formed in double.
  if (found_inf.data<float>()[0] != 0.0f) {
    growth = 0;
    hyst = std::max<int64_t>(hyst - 1, 0);
    if (hyst == 0) {
      const float backed_off = static_cast<float>(static_cast<double>(s) * u.backoff_factor);
      s = std::max(backed_off, static_cast<float>(u.min_scale));
    }
  } else {
    const int64_t successful = growth + 1;
    if (successful >= u.growth_interval) {
      const float grown = static_cast<float>(static_cast<double>(s) * u.growth_factor);
      if (std::isfinite(grown)) s = std::min(grown, static_cast<float>(u.max_scale));
      growth = 0;
      hyst = u.hysteresis;
    } else {
      growth = successful;
    }
  }
}

}  // namespace mixtape::cpu
