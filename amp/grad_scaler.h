#pragma once
// Dynamic loss scaling for float16 training (PyTorch's torch.cuda.amp.GradScaler, plus a floor, a ceiling,
// Megatron-LM's hysteresis and a diagnosis after too many skipped steps).
//
// The loop (DESIGN.md §7):
//   opt.zero_grad();
//   backward(scaler.scale(loss));     // gradients of the masters are now multiplied by the scale
//   scaler.unscale();                 // optional: only to inspect or clip the true gradients
//   optim::clip_grad_norm(params, 1.0);
//   if (scaler.step()) schedule.step();   // skipped when a gradient holds inf/NaN
//   scaler.update();                  // back off after an overflow, grow after growth_interval clean steps
//
// The state (scale f32, growth and hysteresis trackers i64, found_inf f32) lives in one-element tensors on the
// device of the optimizer's first parameter, and the per-step work runs there: scale() multiplies by the scale
// tensor, unscale() is one Backend::unscale_and_check_into pass per (device, dtype) group (a single multi-tensor
// launch on CUDA), update() is Backend::update_loss_scale. The only host synchronisation of a step is step()
// reading the found-inf flag to decide whether to run the optimizer; get_scale(), the tracker accessors,
// found_inf() and state_dict() read the state back on demand.
//
// Semantics follow PyTorch 1.13 bit for bit where PyTorch has the feature: the scale is kept in float32,
// unscaling multiplies by inv_scale = float32(1 / double(scale)) in the gradient's accumulate type, a backoff
// or growth computes float32(double(scale) * factor); the per-step stage machine (READY -> UNSCALED -> STEPPED,
// reset by update()) raises the same errors. Differences from PyTorch are listed on GradScaler below.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"
#include "optim/optimizer.h"

namespace mixtape::amp {

/// Options of GradScaler. The defaults are PyTorch's, with a ceiling of 2^24 and no floor.
struct GradScalerOptions {
  double init_scale = 65536.0;      ///< initial scale (> 0, finite, within [min_scale, max_scale])
  double growth_factor = 2.0;       ///< multiplier after growth_interval clean steps in a row (> 1)
  double backoff_factor = 0.5;      ///< multiplier after an overflow (in (0, 1))
  int growth_interval = 2000;       ///< clean steps in a row before growing (>= 1)
  bool enabled = true;              ///< false: scale() is the identity and step() just steps (e.g. bf16)
  double min_scale = 0.0;           ///< floor of the scale (0 = none); a backoff never goes below it
  double max_scale = 16777216.0;    ///< ceiling of the scale (2^24; +inf = none); a growth never goes above it
  /// Overflows needed (since the last growth) before the scale backs off; Megatron-LM's DynamicGradScaler
  /// semantics, see GradScaler::update(). 1 = back off at every overflow (PyTorch).
  int hysteresis = 1;
  /// 0 = unlimited; else step() throws mixtape::Error when this many steps in a row were skipped, naming the
  /// parameters whose gradients were non-finite and the current scale.
  int max_consecutive_skips = 0;
  /// Called with the one-element found-inf flag (f32 on the scaler's device) after each unscale's checks, before
  /// anything reads it: the place to combine it across processes, so that every rank applies or skips the same
  /// steps and keeps the same scale (dist::DataParallel::attach sets it to a MAX all-reduce). Null: this process
  /// decides alone.
  std::function<void(const Tensor&)> reduce_found_inf = nullptr;
};

/// Scales the loss so that small float16 gradients do not flush to zero, then unscales the gradients of one
/// optimizer's float32 master parameters, skips the optimizer step when any of them holds inf/NaN, and adapts
/// the scale. The optimizer must outlive the scaler.
///
/// Per step (between two update() calls) the scaler moves through the stages READY -> UNSCALED (unscale(),
/// explicit or inside step()) -> STEPPED (step()); update() returns it to READY. Like PyTorch:
///   * unscale() twice in a step, or after step(), throws; step() twice in a step throws;
///   * step() unscales first unless unscale() already ran this step;
///   * update() needs an inf/NaN check recorded this step (by unscale() or step()), else it throws
///     ("no inf checks were recorded"), changing nothing; unscale() then update() without step() is allowed
///     and adapts the scale from unscale()'s check (the skip counters do not move: no step was skipped);
///   * step() throws when no parameter has a gradient (nothing could be checked); the stage then returns to
///     READY, so the next step can start over (PyTorch stays stuck in UNSCALED).
/// Differences from PyTorch: one optimizer per scaler; the scale exists from construction (no lazy creation
/// by the first scale() call, so nothing requires scale() to have run); gradients of every float dtype are
/// unscaled (PyTorch refuses float16 gradients); the floor, ceiling, hysteresis and skip limit are additions
/// (with their defaults, the trajectory is PyTorch's as long as the scale stays below 2^24).
class GradScaler {
 public:
  /// Wraps `optimizer`; validates the options (throws mixtape::Error naming the bad option).
  explicit GradScaler(optim::Optimizer& optimizer, GradScalerOptions options = {});
  GradScaler(const GradScaler&) = delete;
  GradScaler& operator=(const GradScaler&) = delete;

  /// loss * scale, recorded on the tape so that backward() produces scaled gradients. The result is float32
  /// for a float32/float16/bfloat16 loss (16-bit losses are cast up first) and float64 for a float64 loss.
  /// Disabled: returns `loss` itself.
  Tensor scale(const Tensor& loss) const;
  /// Multiplies every gradient of the optimizer's parameters by 1/scale in place and records whether any
  /// held inf/NaN: one pass per (device, dtype) group of gradients. Call at most once per step, after all
  /// backward passes of the step (e.g. before clip_grad_norm). Disabled: does nothing.
  void unscale();
  /// Unscales (unless unscale() ran this step), then runs optimizer.step() unless a gradient held inf/NaN.
  /// Returns whether the update was applied (advance LR schedules only then). A skipped step leaves the
  /// parameters and the optimizer state bit-identical and counts in skipped_steps(). With
  /// max_consecutive_skips = N > 0, the N-th skip in a row throws mixtape::Error (after counting it and
  /// completing the step's bookkeeping, so update() may still be called). Disabled: optimizer.step(), true.
  bool step();
  /// Adapts the scale from this step's inf/NaN check, then starts a new step (stage READY):
  ///   overflow: growth_tracker = 0; hysteresis_tracker = max(hysteresis_tracker - 1, 0); when it is 0, the
  ///             scale backs off: scale = max(float32(scale * backoff_factor), min_scale).
  ///   clean:    growth_tracker += 1; when it reaches growth_interval: growth_tracker = 0,
  ///             hysteresis_tracker = hysteresis (refilled), scale = min(float32(scale * growth_factor),
  ///             max_scale) (unchanged if that product is not finite, like PyTorch).
  /// So with hysteresis = h the scale backs off at the h-th overflow since the last growth (the overflows need
  /// not be consecutive: clean steps do not refill the counter, as in Megatron-LM's DynamicGradScaler), and at
  /// every further overflow until the scale grows again; hysteresis = 1 is exactly PyTorch's rule.
  /// Disabled: does nothing.
  void update();

  /// The current scale (1.0 when disabled); reads the device state back.
  double get_scale() const;
  /// Whether scaling is enabled.
  bool enabled() const { return options_.enabled; }
  /// Steps skipped so far because of inf/NaN gradients.
  int64_t skipped_steps() const { return skipped_steps_; }
  /// Steps skipped in a row (0 after an applied step).
  int64_t consecutive_skips() const { return consecutive_skips_; }
  /// Whether the most recent inf/NaN check (unscale(), explicit or inside step()) found one; kept after
  /// update() until the next check, so it can be logged after the step; false before the first check.
  bool found_inf() const;
  /// Clean steps in a row since the last overflow or growth.
  int64_t growth_tracker() const;
  /// Overflows still allowed before the next backoff (see update()).
  int64_t hysteresis_tracker() const;
  /// The device the scaler's state lives on (that of the optimizer's first parameter).
  Device device() const { return device_; }
  /// The options in use (restored by load_state_dict, except `enabled`).
  const GradScalerOptions& options() const { return options_; }
  /// Sets GradScalerOptions::reduce_found_inf after construction.
  void set_reduce_found_inf(std::function<void(const Tensor&)> reduce) { options_.reduce_found_inf = std::move(reduce); }

  /// The state needed to resume, as 0-d CPU tensors: "scale", "growth_factor", "backoff_factor",
  /// "min_scale", "max_scale" (float64) and "growth_tracker", "hysteresis_tracker", "skipped_steps",
  /// "consecutive_skips", "growth_interval", "hysteresis", "max_consecutive_skips" (int64).
  /// Disabled: an empty map (like PyTorch). Take it after update(), at a step boundary.
  std::map<std::string, Tensor> state_dict() const;
  /// Restores a state_dict(): every key present, none unexpected, each a 0-d tensor of the right dtype with a
  /// valid value (the options are validated like the constructor's, the scale lies within [min_scale,
  /// max_scale], trackers within their ranges); throws mixtape::Error naming the key and changes nothing
  /// otherwise. Only at a step boundary (stage READY: before unscale()/step() or after update()).
  /// Disabled: does nothing. An empty dict (saved from a disabled scaler) into an enabled one throws.
  void load_state_dict(const std::map<std::string, Tensor>& dict);

 private:
  enum class Stage { ready, unscaled, stepped };
  /// The per-(device, dtype) unscale pass into found_inf_ (zeroed first); sets inf_checked_.
  void unscale_grads();
  /// The options as the device-side update rule takes them.
  LossScaleUpdate update_rule() const;
  /// "fc1.weight (inf/NaN), param #2 (inf/NaN)": the parameters whose gradients are not finite now.
  std::string non_finite_parameters() const;

  optim::Optimizer& optimizer_;
  GradScalerOptions options_;
  Device device_;                   // where the state tensors live
  Tensor scale_;                    // 0-d f32, like PyTorch's scale tensor
  Tensor growth_tracker_;           // 0-d i64
  Tensor hysteresis_tracker_;       // 0-d i64
  Tensor found_inf_;                // 0-d f32: nonzero when this step's check found inf/NaN
  int64_t skipped_steps_ = 0;
  int64_t consecutive_skips_ = 0;
  Stage stage_ = Stage::ready;
  bool inf_checked_ = false;        // an inf/NaN check was recorded this step
  bool ever_checked_ = false;       // found_inf_ holds a check's result
};

}  // namespace mixtape::amp
