// SGD: option validation, lazy momentum buffers, and the fused per-parameter update of the backend.
#include <cmath>

#include "core/backend.h"
#include "core/error.h"
#include "optim/optimizer.h"

namespace mixtape::optim {

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options) : Optimizer(std::move(params)) {
  check_option(std::isfinite(options.lr) && options.lr >= 0.0,
               detail::cat("invalid learning rate ", options.lr, " (expected a finite value >= 0)"));
  validate(options);
  set_lr(options.lr);
  options_ = options;
}

void SGD::validate(const SGDOptions& o) const {
  check_option(std::isfinite(o.momentum) && o.momentum >= 0.0,
               detail::cat("invalid momentum ", o.momentum, " (expected a finite value >= 0)"));
  check_option(std::isfinite(o.dampening),
               detail::cat("invalid dampening ", o.dampening, " (expected a finite value)"));
  check_option(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
               detail::cat("invalid weight_decay ", o.weight_decay, " (expected a finite value >= 0)"));
  check_option(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
               detail::cat("Nesterov momentum requires a momentum > 0 and zero dampening (got momentum ", o.momentum,
                           ", dampening ", o.dampening, ")"));
}

SGDOptions SGD::options() const {
  SGDOptions o = options_;
  o.lr = lr();
  return o;
}

void SGD::step() {
  for_each_update([&](size_t i, const Tensor& param, const Tensor& grad, const Tensor& compute_copy) {
    SgdUpdate u;
    u.compute_copy = compute_copy;
    u.lr = lr();
    u.momentum = options_.momentum;
    u.dampening = options_.dampening;
    u.weight_decay = options_.weight_decay;
    u.nesterov = options_.nesterov;
    Tensor buf;
    if (options_.momentum != 0.0) {
      auto it = state_[i].find("momentum_buffer");
      if (it == state_[i].end()) {  // first update of this parameter: the buffer starts as the direction
        buf = empty_like(param);
        u.first_step = true;
      } else {
        buf = it->second;
      }
    }
    backend_for(param.device()).sgd_update(param, grad, buf, u);
    if (u.first_step) state_[i]["momentum_buffer"] = buf;
  });
}

std::vector<Optimizer::StateSpec> SGD::state_specs() const { return {{"momentum_buffer", StateKind::like_param}}; }

std::vector<std::pair<std::string, double>> SGD::hyper_parameters() const {
  return {{"momentum", options_.momentum},
          {"dampening", options_.dampening},
          {"weight_decay", options_.weight_decay},
          {"nesterov", options_.nesterov ? 1.0 : 0.0}};
}

void SGD::set_hyper_parameters(const std::map<std::string, double>& values) {
  SGDOptions o = options_;
  o.momentum = values.at("momentum");
  o.dampening = values.at("dampening");
  o.weight_decay = values.at("weight_decay");
  const double nesterov = values.at("nesterov");
  check_option(nesterov == 0.0 || nesterov == 1.0,
               detail::cat("key \"nesterov\" must be 0 or 1, got ", nesterov));
  o.nesterov = nesterov == 1.0;
  validate(o);
  options_ = o;
}

}  // namespace mixtape::optim
