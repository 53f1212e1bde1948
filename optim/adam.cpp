// Adam and AdamW: option validation, lazy state (exp_avg, exp_avg_sq, per-parameter step) and the fused
// per-parameter update of the backend. The two differ only in how weight decay is applied.
#include <cmath>

#include "core/backend.h"
#include "core/error.h"
#include "optim/optimizer.h"

namespace mixtape::optim {

namespace {

/// The hyper-parameters Adam and AdamW share.
struct AdamHyper {
  double beta1, beta2, eps, weight_decay;
};

/// Throws "<who>: ..." unless the hyper-parameters are valid (PyTorch's rules, plus finiteness).
void validate_adam(const char* who, const AdamHyper& h) {
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(detail::cat(who, ": ", what));
  };
  check(std::isfinite(h.eps) && h.eps >= 0.0, detail::cat("invalid eps ", h.eps, " (expected a finite value >= 0)"));
  check(h.beta1 >= 0.0 && h.beta1 < 1.0, detail::cat("invalid beta1 ", h.beta1, " (expected 0 <= beta1 < 1)"));
  check(h.beta2 >= 0.0 && h.beta2 < 1.0, detail::cat("invalid beta2 ", h.beta2, " (expected 0 <= beta2 < 1)"));
  check(std::isfinite(h.weight_decay) && h.weight_decay >= 0.0,
        detail::cat("invalid weight_decay ", h.weight_decay, " (expected a finite value >= 0)"));
}

void validate_lr(const char* who, double lr) {
  if (!(std::isfinite(lr) && lr >= 0.0))
    throw Error(detail::cat(who, ": invalid learning rate ", lr, " (expected a finite value >= 0)"));
}

std::vector<std::pair<std::string, double>> adam_hyper_list(const AdamHyper& h) {
  return {{"beta1", h.beta1}, {"beta2", h.beta2}, {"eps", h.eps}, {"weight_decay", h.weight_decay}};
}

AdamHyper adam_hyper_from(const std::map<std::string, double>& v) {
  return {v.at("beta1"), v.at("beta2"), v.at("eps"), v.at("weight_decay")};
}

/// One parameter's Adam/AdamW update: creates the state on its first update, counts its step, calls the backend.
void adam_update_one(std::map<std::string, Tensor>& state, const Tensor& param, const Tensor& grad,
                     const Tensor& compute_copy, double lr, const AdamHyper& h, bool decoupled) {
  if (state.empty()) {
    state["exp_avg"] = zeros_like(param);
    state["exp_avg_sq"] = zeros_like(param);
    state["step"] = scalar_tensor(0.0, DType::i64);  // a host-side count whatever the parameter's device
  }
  int64_t& step = state.at("step").data<int64_t>()[0];
  AdamUpdate u;
  u.lr = lr;
  u.beta1 = h.beta1;
  u.beta2 = h.beta2;
  u.eps = h.eps;
  u.weight_decay = h.weight_decay;
  u.decoupled_weight_decay = decoupled;
  u.step = step + 1;
  u.compute_copy = compute_copy;
  backend_for(param.device()).adam_update(param, grad, state.at("exp_avg"), state.at("exp_avg_sq"), u);
  step = u.step;
}

}  // namespace

template <class Options, bool kDecoupled>
AdamFamily<Options, kDecoupled>::AdamFamily(std::vector<Tensor> params, const Options& options, const char* who)
    : Optimizer(std::move(params)) {
  validate_lr(who, options.lr);
  validate_adam(who, {options.beta1, options.beta2, options.eps, options.weight_decay});
  set_lr(options.lr);
  options_ = options;
}

template <class Options, bool kDecoupled>
Options AdamFamily<Options, kDecoupled>::options() const {
  Options o = options_;
  o.lr = lr();
  return o;
}

template <class Options, bool kDecoupled>
void AdamFamily<Options, kDecoupled>::step() {
  const AdamHyper h{options_.beta1, options_.beta2, options_.eps, options_.weight_decay};
  for_each_update([&](size_t i, const Tensor& param, const Tensor& grad, const Tensor& compute_copy) {
    adam_update_one(state_[i], param, grad, compute_copy, lr(), h, kDecoupled);
  });
}

template <class Options, bool kDecoupled>
std::vector<Optimizer::StateSpec> AdamFamily<Options, kDecoupled>::state_specs() const {
  return {{"exp_avg", StateKind::like_param}, {"exp_avg_sq", StateKind::like_param}, {"step", StateKind::count}};
}

template <class Options, bool kDecoupled>
std::vector<std::pair<std::string, double>> AdamFamily<Options, kDecoupled>::hyper_parameters() const {
  return adam_hyper_list({options_.beta1, options_.beta2, options_.eps, options_.weight_decay});
}

template <class Options, bool kDecoupled>
void AdamFamily<Options, kDecoupled>::set_hyper_parameters(const std::map<std::string, double>& values) {
  const AdamHyper h = adam_hyper_from(values);
  validate_adam(name(), h);
  options_.beta1 = h.beta1;
  options_.beta2 = h.beta2;
  options_.eps = h.eps;
  options_.weight_decay = h.weight_decay;
}

template class AdamFamily<AdamOptions, false>;
template class AdamFamily<AdamWOptions, true>;

}  // namespace mixtape::optim
