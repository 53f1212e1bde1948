#pragma once
// Learning-rate schedules: a pure function lr_at(step) of the number of applied optimizer steps, written
// into the optimizer by step(). Like PyTorch's schedulers, constructing one sets the optimizer's lr to
// lr_at(0) (the lr of the first update), and the loop calls optimizer.step() then schedule.step().
#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"
#include "optim/optimizer.h"

namespace mixtape::optim {

/// Base of the schedules: remembers the optimizer, its lr at construction (the base lr) and the number of
/// applied steps. The optimizer must outlive the schedule.
class LRSchedule {
 public:
  /// Records base_lr = optimizer.lr(); the derived constructor then sets the optimizer's lr to lr_at(0)
  /// through apply().
  explicit LRSchedule(Optimizer& optimizer);
  virtual ~LRSchedule();
  LRSchedule(const LRSchedule&) = delete;
  LRSchedule& operator=(const LRSchedule&) = delete;

  /// The learning rate after `step` applied optimizer steps (step >= 0).
  virtual double lr_at(int64_t step) const = 0;
  /// Counts one applied optimizer step and sets the optimizer's lr to lr_at(last_step()).
  /// With a GradScaler, call it only when the step was applied.
  void step();
  /// Number of applied steps counted so far.
  int64_t last_step() const { return last_step_; }
  /// The optimizer's lr when the schedule was created (restored by load_state_dict).
  double base_lr() const { return base_lr_; }
  /// The lr the schedule sets now, lr_at(last_step()).
  double current_lr() const { return lr_at(last_step_); }

  /// {"last_step": 0-d int64, "base_lr": 0-d float64}.
  std::map<std::string, Tensor> state_dict() const;
  /// Restores a state_dict() and sets the optimizer's lr to lr_at(last_step); validates keys, dtypes and
  /// values first (mixtape::Error naming the key; nothing changes when it throws).
  void load_state_dict(const std::map<std::string, Tensor>& dict);

 protected:
  /// Sets the optimizer's lr to lr_at(last_step()); derived constructors call it after validating.
  void apply();
  /// "StepLR", "WarmupCosine" (used in messages).
  virtual const char* name() const = 0;

 private:
  Optimizer& optimizer_;
  double base_lr_;
  int64_t last_step_ = 0;
};

/// PyTorch's StepLR: lr = base_lr * gamma^floor(step / step_size), computed as PyTorch does, by repeated
/// multiplication (base_lr * gamma * gamma * ..., one factor per completed period), so it matches bit for bit.
class StepLR : public LRSchedule {
 public:
  /// step_size > 0; gamma finite and >= 0.
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t step) const override;
  int64_t step_size() const { return step_size_; }
  double gamma() const { return gamma_; }

 protected:
  const char* name() const override { return "StepLR"; }

 private:
  int64_t step_size_;
  double gamma_;
};

/// Linear warm-up then cosine decay. With base = base_lr, W = warmup_steps, T = total_steps, s = step:
///   s <  W:       lr = base * s / W                                       (0 at s = 0, up to base)
///   W <= s < T:   lr = min_lr + (base - min_lr) * 0.5 * (1 + cos(pi * (s - W) / (T - W)))
///   s >= T:       lr = min_lr
/// So lr = base at s = W and reaches min_lr at s = T (the first update uses lr 0 when W > 0, as in
/// Hugging Face's get_cosine_schedule_with_warmup).
class WarmupCosine : public LRSchedule {
 public:
  /// 0 <= warmup_steps <= total_steps, total_steps > 0, min_lr finite and >= 0.
  WarmupCosine(Optimizer& optimizer, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  double lr_at(int64_t step) const override;
  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }
  double min_lr() const { return min_lr_; }

 protected:
  const char* name() const override { return "WarmupCosine"; }

 private:
  int64_t warmup_steps_, total_steps_;
  double min_lr_;
};

}  // namespace mixtape::optim
