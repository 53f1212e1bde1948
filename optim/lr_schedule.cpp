// Learning-rate schedules: the base (step counting, state dict) and StepLR / WarmupCosine.
#include "optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace mixtape::optim {

LRSchedule::LRSchedule(Optimizer& optimizer) : optimizer_(optimizer), base_lr_(optimizer.lr()) {}

LRSchedule::~LRSchedule() = default;

void LRSchedule::apply() { optimizer_.set_lr(lr_at(last_step_)); }

void LRSchedule::step() {
  ++last_step_;
  apply();
}

std::map<std::string, Tensor> LRSchedule::state_dict() const {
  return {{"last_step", scalar_tensor(static_cast<double>(last_step_), DType::i64)},
          {"base_lr", scalar_tensor(base_lr_, DType::f64)}};
}

void LRSchedule::load_state_dict(const std::map<std::string, Tensor>& dict) {
  const std::string who = detail::cat(name(), ".load_state_dict: ");
  for (const auto& [key, t] : dict)
    MIXTAPE_CHECK(key == "last_step" || key == "base_lr", who, "unexpected key \"", key,
                  "\" (expected \"last_step\" and \"base_lr\")");
  auto find = [&](const std::string& key, DType dtype) -> const Tensor& {
    auto it = dict.find(key);
    MIXTAPE_CHECK(it != dict.end(), who, "missing key \"", key, "\"");
    const Tensor& t = it->second;
    MIXTAPE_CHECK(t.defined() && t.dim() == 0 && t.dtype() == dtype, who, "key \"", key, "\" must be a 0-d ",
                  dtype_name(dtype), " tensor, got ",
                  t.defined() ? detail::cat(dtype_name(t.dtype()), " ", t.shape().to_string()) : "an undefined tensor");
    return t;
  };
  const int64_t last_step = find("last_step", DType::i64).to_vector<int64_t>()[0];
  const double base_lr = find("base_lr", DType::f64).item();
  MIXTAPE_CHECK(last_step >= 0, who, "key \"last_step\" must be >= 0, got ", last_step);
  MIXTAPE_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, who, "key \"base_lr\" must be finite and >= 0, got ",
                base_lr);
  const double old_base_lr = base_lr_;
  base_lr_ = base_lr;  // lr_at reads it
  try {
    optimizer_.set_lr(lr_at(last_step));  // set_lr validates before it changes the optimizer
  } catch (const Error& e) {
    base_lr_ = old_base_lr;
    throw Error(detail::cat(who, e.what()));
  }
  last_step_ = last_step;
}

// ---- StepLR ----

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRSchedule(optimizer), step_size_(step_size), gamma_(gamma) {
  MIXTAPE_CHECK(step_size > 0, "StepLR: step_size must be > 0, got ", step_size);
  MIXTAPE_CHECK(std::isfinite(gamma) && gamma >= 0.0, "StepLR: gamma must be finite and >= 0, got ", gamma);
  apply();
}

double StepLR::lr_at(int64_t step) const {
  MIXTAPE_CHECK(step >= 0, "StepLR::lr_at: step must be >= 0, got ", step);
  // PyTorch's chainable form multiplies the previous lr by gamma at each period boundary.
  double lr = base_lr();
  for (int64_t k = step / step_size_; k > 0 && lr != 0.0; --k) lr *= gamma_;
  return lr;
}

// ---- WarmupCosine ----

WarmupCosine::WarmupCosine(Optimizer& optimizer, int64_t warmup_steps, int64_t total_steps, double min_lr)
    : LRSchedule(optimizer), warmup_steps_(warmup_steps), total_steps_(total_steps), min_lr_(min_lr) {
  MIXTAPE_CHECK(total_steps > 0, "WarmupCosine: total_steps must be > 0, got ", total_steps);
  MIXTAPE_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps,
                "WarmupCosine: warmup_steps must be in [0, total_steps = ", total_steps, "], got ", warmup_steps);
  MIXTAPE_CHECK(std::isfinite(min_lr) && min_lr >= 0.0, "WarmupCosine: min_lr must be finite and >= 0, got ", min_lr);
  apply();
}

double WarmupCosine::lr_at(int64_t step) const {
  MIXTAPE_CHECK(step >= 0, "WarmupCosine::lr_at: step must be >= 0, got ", step);
  const double base = base_lr();
  if (step < warmup_steps_) return base * static_cast<double>(step) / static_cast<double>(warmup_steps_);
  if (step >= total_steps_) return min_lr_;
  const double progress =
      static_cast<double>(step - warmup_steps_) / static_cast<double>(total_steps_ - warmup_steps_);
  return min_lr_ + (base - min_lr_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace mixtape::optim
