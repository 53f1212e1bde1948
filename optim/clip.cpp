// Gradient clipping by total norm; per-tensor norms in double on the CPU, via kernels elsewhere. On a device
// (CUDA) every gradient's partial norm stays on the device and is combined there, so clip_grad_norm reads the
// host once per device, not once per gradient.
#include "optim/clip.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <limits>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/kernels.h"

namespace mixtape::optim {

namespace {

void check_norm_type(double norm_type, const char* who) {
  MIXTAPE_CHECK((std::isfinite(norm_type) && norm_type > 0.0) || norm_type == std::numeric_limits<double>::infinity(),
                who, ": norm_type must be > 0 or +inf, got ", norm_type);
}

/// |x| combined into the running norm state: max for p = inf (NaN wins), else sum of |x|^p.
struct NormAccumulator {
  double p;
  double acc = 0.0;
  void add(double x) {
    const double a = std::fabs(x);
    if (std::isinf(p)) {
      if (std::isnan(a) || a > acc) acc = std::isnan(acc) ? acc : a;
    } else if (p == 2.0) {
      acc += a * a;
    } else if (p == 1.0) {
      acc += a;
    } else {
      acc += std::pow(a, p);
    }
  }
  /// A partial already reduced elsewhere: sum of |x|^p (max |x| for p = inf) over some elements.
  void add_partial(double partial) {
    if (std::isinf(p)) {
      if (std::isnan(partial) || partial > acc) acc = std::isnan(acc) ? acc : partial;
    } else {
      acc += partial;
    }
  }
  double result() const {
    if (std::isinf(p) || p == 1.0) return acc;
    if (p == 2.0) return std::sqrt(acc);
    return std::pow(acc, 1.0 / p);
  }
};

}  // namespace

double tensor_norm(const Tensor& t, double norm_type) {
  MIXTAPE_CHECK(t.defined(), "tensor_norm: undefined tensor");
  MIXTAPE_CHECK(is_floating(t.dtype()), "tensor_norm: expected a floating-point tensor, got ", dtype_name(t.dtype()));
  check_norm_type(norm_type, "tensor_norm");
  if (!t.device().is_cpu()) return detail::tensor_norm_kernels(t, norm_type);
  NormAccumulator acc{norm_type};
  if (t.dtype() == DType::f32) {
    const float* x = t.data<float>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) acc.add(static_cast<double>(x[i]));
  } else if (t.dtype() == DType::f64) {
    const double* x = t.data<double>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) acc.add(x[i]);
  } else {
    for (double v : t.to_vector<double>()) acc.add(v);
  }
  return acc.result();
}

namespace detail {

namespace {
/// sum |x|^p (max |x| for p = inf) over t as a one-element tensor on t's device, without a host read.
/// f16/bf16 are widened to float32 first (their squares overflow at 256); f32 accumulates in float32, f64 in f64.
Tensor norm_partial(const Tensor& t, double norm_type) {
  Tensor x = t.detach();
  if (x.dtype() == DType::f16 || x.dtype() == DType::bf16) x = kernels::cast(x, DType::f32);
  const Tensor a = kernels::unary(UnaryOp::abs, x);
  if (std::isinf(norm_type)) return kernels::reduce(ReduceOp::max, a, {}, false);
  if (norm_type == 1.0) return kernels::reduce(ReduceOp::sum, a, {}, false);
  if (norm_type == 2.0) return kernels::reduce(ReduceOp::sum, kernels::binary(BinaryOp::mul, a, a), {}, false);
  const Tensor powers = kernels::binary(BinaryOp::pow, a, scalar_tensor(norm_type, a.dtype(), a.device()));
  return kernels::reduce(ReduceOp::sum, powers, {}, false);
}

/// The norm from a partial of norm_partial.
double finish_norm(double partial, double norm_type) {
  if (std::isinf(norm_type) || norm_type == 1.0) return partial;
  if (norm_type == 2.0) return std::sqrt(partial);
  return std::pow(partial, 1.0 / norm_type);
}
}  // namespace

double tensor_norm_kernels(const Tensor& t, double norm_type) {
  MIXTAPE_CHECK(t.defined() && is_floating(t.dtype()), "tensor_norm: expected a defined floating-point tensor");
  check_norm_type(norm_type, "tensor_norm");
  if (t.numel() == 0) return 0.0;
  NoGradGuard no_grad;
  return finish_norm(norm_partial(t, norm_type).item(), norm_type);
}

}  // namespace detail

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  check_norm_type(norm_type, "clip_grad_norm");
  MIXTAPE_CHECK(max_norm >= 0.0, "clip_grad_norm: max_norm must be >= 0 (or inf), got ", max_norm);
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    MIXTAPE_CHECK(params[i].defined(), "clip_grad_norm: parameter ", i, " is an undefined tensor");
    Tensor g = params[i].grad();
    if (g.defined()) grads.push_back(std::move(g));
  }
  if (grads.empty()) return 0.0;

  const bool inf_norm = std::isinf(norm_type);
  NormAccumulator total{norm_type};  // combines the per-gradient norms like torch.norm(torch.stack(norms), p)
  {
    NoGradGuard no_grad;
    // Device gradients: partials summed (max for p = inf) on their device, read once per device at the end.
    std::vector<std::pair<Device, Tensor>> device_partials;
    for (const Tensor& g : grads) {
      MIXTAPE_CHECK(is_floating(g.dtype()), "clip_grad_norm: expected floating-point gradients, got ",
                    dtype_name(g.dtype()));
      if (g.device().is_cpu()) {
        total.add(tensor_norm(g, norm_type));
        continue;
      }
      if (g.numel() == 0) continue;
      const Tensor part = detail::norm_partial(g, norm_type);
      auto it = std::find_if(device_partials.begin(), device_partials.end(),
                             [&](const auto& dp) { return dp.first == g.device(); });
      if (it == device_partials.end()) {
        device_partials.emplace_back(g.device(), part);
        continue;
      }
      const Tensor p = part.dtype() == it->second.dtype() ? part : kernels::cast(part, it->second.dtype());
      it->second = kernels::binary(inf_norm ? BinaryOp::maximum : BinaryOp::add, it->second, p);
    }
    for (const auto& [device, partial] : device_partials) total.add_partial(partial.item());  // the host read
  }
  const double total_norm = inf_norm ? total.acc : total.result();

  const double coef = max_norm / (total_norm + 1e-6);
  if (!(coef < 1.0) && !std::isnan(coef)) return total_norm;  // clamp(coef, max=1) == 1: nothing changes
  NoGradGuard no_grad;
  for (const Tensor& g : grads) {
    const Tensor scaled = kernels::binary(BinaryOp::mul, g, scalar_tensor(coef, g.dtype(), g.device()));
    g.copy_(scaled);
  }
  return total_norm;
}

}  // namespace mixtape::optim
