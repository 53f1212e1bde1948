// GradScaler: PyTorch's loss-scaling state machine with float32 scale arithmetic, plus floor, ceiling,
// hysteresis and the consecutive-skip diagnosis.
#include "amp/grad_scaler.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <set>
#include <utility>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/backend.h"
#include "core/error.h"

namespace mixtape::amp {

namespace {

/// Throws mixtape::Error naming the problem unless `scale` can be the scale under options `o`.
void validate_scale(double scale, const GradScalerOptions& o, const std::string& who, const std::string& name) {
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(detail::cat(who, name, " ", what));
  };
  check(std::isfinite(scale) && scale > 0.0, detail::cat("must be finite and > 0, got ", scale));
  const float f = static_cast<float>(scale);
  check(std::isfinite(f) && f > 0.0f,
        detail::cat(scale, " is not representable in float32 (the scale is kept in float32)"));
  check(scale >= o.min_scale && scale <= o.max_scale,
        detail::cat(scale, " must lie within [min_scale, max_scale] = [", o.min_scale, ", ", o.max_scale, "]"));
}

/// Throws mixtape::Error naming the bad option (`who` says where they came from); init_scale excepted.
void validate_options(const GradScalerOptions& o, const std::string& who) {
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(who + what);
  };
  check(std::isfinite(o.growth_factor) && o.growth_factor > 1.0,
        detail::cat("growth_factor must be finite and > 1, got ", o.growth_factor));
  check(o.backoff_factor > 0.0 && o.backoff_factor < 1.0,
        detail::cat("backoff_factor must be in (0, 1), got ", o.backoff_factor));
  check(o.growth_interval >= 1, detail::cat("growth_interval must be >= 1, got ", o.growth_interval));
  check(std::isfinite(o.min_scale) && o.min_scale >= 0.0,
        detail::cat("min_scale must be finite and >= 0 (0 = no floor), got ", o.min_scale));
  check(!std::isnan(o.max_scale) && o.max_scale > 0.0,
        detail::cat("max_scale must be > 0 (+inf = no ceiling), got ", o.max_scale));
  check(o.min_scale <= o.max_scale,
        detail::cat("min_scale (", o.min_scale, ") must not exceed max_scale (", o.max_scale, ")"));
  check(o.hysteresis >= 1, detail::cat("hysteresis must be >= 1 (1 = back off at every overflow), got ", o.hysteresis));
  check(o.max_consecutive_skips >= 0,
        detail::cat("max_consecutive_skips must be >= 0 (0 = unlimited), got ", o.max_consecutive_skips));
}

/// PyTorch's inv_scale: scale.double().reciprocal().float().
float inverse_scale(float scale) { return static_cast<float>(1.0 / static_cast<double>(scale)); }

/// The name of parameter i for messages: its AutogradMeta name, else "param #i".
std::string param_name(const Tensor& p, size_t i) {
  const auto& meta = p.impl()->autograd;
  if (meta && !meta->name.empty()) return meta->name;
  return detail::cat("param #", i);
}

std::string describe(const Tensor& t) {
  return detail::cat(dtype_name(t.dtype()), " ", t.shape().to_string());
}

}  // namespace

GradScaler::GradScaler(optim::Optimizer& optimizer, GradScalerOptions options)
    : optimizer_(optimizer), options_(options), device_(optimizer.params().front().device()) {
  validate_options(options_, "GradScaler: ");
  validate_scale(options_.init_scale, options_, "GradScaler: ", "init_scale");
  scale_ = scalar_tensor(static_cast<double>(static_cast<float>(options_.init_scale)), DType::f32, device_);
  growth_tracker_ = scalar_tensor(0.0, DType::i64, device_);
  hysteresis_tracker_ = scalar_tensor(static_cast<double>(options_.hysteresis), DType::i64, device_);
  found_inf_ = scalar_tensor(0.0, DType::f32, device_);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  MIXTAPE_CHECK(loss.defined(), "GradScaler::scale: the loss is an undefined tensor");
  if (!options_.enabled) return loss;
  MIXTAPE_CHECK(is_floating(loss.dtype()), "GradScaler::scale: the loss must be a floating-point tensor, got ",
                dtype_name(loss.dtype()));
  const Tensor wide = loss.dtype() == DType::f64 || loss.dtype() == DType::f32 ? loss : cast(loss, DType::f32);
  // The scale tensor itself when it lives with a float32 loss (no host read; a copy, so that update() may
  // change the scale in place while the tape still holds the factor); else its value read back.
  const Tensor factor = wide.dtype() == DType::f32 && wide.device() == device_
                            ? scale_.clone()
                            : scalar_tensor(get_scale(), wide.dtype(), wide.device());
  return mul(wide, factor);
}

void GradScaler::unscale_grads() {
  // Group the gradients by (device, dtype), keeping first-seen order; a gradient shared by two parameters
  // (same storage) is unscaled once.
  std::vector<std::pair<std::pair<Device, DType>, std::vector<Tensor>>> groups;
  std::set<const void*> seen;
  const std::vector<Tensor>& params = optimizer_.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    if (!g.defined()) continue;
    MIXTAPE_CHECK(is_floating(g.dtype()), "GradScaler::unscale: the gradient of ", param_name(params[i], i),
                  " is ", describe(g), "; expected a floating-point gradient");
    if (g.numel() > 0 && !seen.insert(g.raw_data()).second) continue;
    const std::pair<Device, DType> key{g.device(), g.dtype()};
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == key; });
    if (it == groups.end()) {
      groups.emplace_back(key, std::vector<Tensor>{});
      it = std::prev(groups.end());
    }
    it->second.push_back(g);
  }
  Backend& state_backend = backend_for(device_);
  state_backend.fill(found_inf_, 0.0);  // zeroed once per step; every group's check accumulates into it
  for (const auto& [key, grads] : groups) {
    if (key.first == device_) {
      state_backend.unscale_and_check_into(grads, scale_, found_inf_);
    } else {  // gradients on another device than the state: the host-side pass, with the scale read back
      const double inv = static_cast<double>(inverse_scale(static_cast<float>(scale_.item())));
      if (backend_for(key.first).unscale_and_check(grads, inv)) state_backend.fill(found_inf_, 1.0);
    }
    for (const Tensor& g : grads) g.bump_version();
  }
  if (options_.reduce_found_inf) options_.reduce_found_inf(found_inf_);
  inf_checked_ = !groups.empty();
  ever_checked_ = ever_checked_ || inf_checked_;
}

void GradScaler::unscale() {
  if (!options_.enabled) return;
  MIXTAPE_CHECK(stage_ != Stage::unscaled,
                "GradScaler::unscale: unscale() has already been called since the last update(); the gradients "
                "are already unscaled. Call it at most once per step, after the last backward pass of the step.");
  MIXTAPE_CHECK(stage_ != Stage::stepped,
                "GradScaler::unscale: unscale() is being called after step(); call unscale() before step() "
                "(step() unscales by itself when unscale() was not called), then update().");
  unscale_grads();
  stage_ = Stage::unscaled;
}

bool GradScaler::step() {
  if (!options_.enabled) {
    optimizer_.step();
    return true;
  }
  MIXTAPE_CHECK(stage_ != Stage::stepped,
                "GradScaler::step: step() has already been called since the last update(); call update() after "
                "each step().");
  if (stage_ == Stage::ready) unscale();
  if (!inf_checked_) {
    stage_ = Stage::ready;  // nothing was unscaled: the next step may start over
    throw Error(detail::cat("GradScaler::step: no inf checks were recorded: none of the ", optimizer_.params().size(),
                            " parameters of the ", optimizer_.name(),
                            " optimizer has a gradient. Call backward(scaler.scale(loss)) before step()."));
  }
  stage_ = Stage::stepped;
  if (!found_inf()) {  // the step's one host synchronisation
    optimizer_.step();
    consecutive_skips_ = 0;
    return true;
  }
  ++skipped_steps_;
  ++consecutive_skips_;
  if (options_.max_consecutive_skips > 0 && consecutive_skips_ >= options_.max_consecutive_skips) {
    throw Error(detail::cat(
        "GradScaler::step: ", consecutive_skips_, " optimizer steps in a row were skipped (max_consecutive_skips = ",
        options_.max_consecutive_skips, ") because gradients held inf/NaN; current loss scale ",
        get_scale(), " (min_scale ", options_.min_scale, "). Non-finite gradients this step: ",
        non_finite_parameters(),
        ". The gradients overflow even at this scale: look for a diverging loss (learning rate too high?), inf/NaN "
        "in the inputs or the parameters, or an op that overflows float16 in the forward pass (run it in float32 "
        "or use bf16)."));
  }
  return false;
}

std::string GradScaler::non_finite_parameters() const {
  std::string out;
  const std::vector<Tensor>& params = optimizer_.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    if (!g.defined() || g.numel() == 0) continue;
    // A check on a copy, with inv_scale 1: the gradient itself is left as it is.
    if (!backend_for(g.device()).unscale_and_check({g.clone()}, 1.0)) continue;
    if (!out.empty()) out += ", ";
    out += param_name(params[i], i) + " (" + describe(g) + ")";
  }
  return out.empty() ? std::string("none now (the overflow was in the scaled gradients only)") : out;
}

LossScaleUpdate GradScaler::update_rule() const {
  LossScaleUpdate u;
  u.growth_factor = options_.growth_factor;
  u.backoff_factor = options_.backoff_factor;
  u.min_scale = options_.min_scale;
  u.max_scale = options_.max_scale;
  u.growth_interval = options_.growth_interval;
  u.hysteresis = options_.hysteresis;
  return u;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  MIXTAPE_CHECK(inf_checked_,
                "GradScaler::update: no inf checks were recorded prior to update(); call step() (or unscale()) "
                "after the backward pass of each step, then update() once.");
  // On the state's device, without a host round-trip (the rule is documented on update() in the header).
  backend_for(device_).update_loss_scale(scale_, growth_tracker_, hysteresis_tracker_, found_inf_, update_rule());
  stage_ = Stage::ready;
  inf_checked_ = false;
}

double GradScaler::get_scale() const { return options_.enabled ? scale_.item() : 1.0; }

bool GradScaler::found_inf() const { return ever_checked_ && found_inf_.item() != 0.0; }

int64_t GradScaler::growth_tracker() const { return growth_tracker_.to_vector<int64_t>()[0]; }

int64_t GradScaler::hysteresis_tracker() const { return hysteresis_tracker_.to_vector<int64_t>()[0]; }

std::map<std::string, Tensor> GradScaler::state_dict() const {
  if (!options_.enabled) return {};
  auto f64 = [](double v) { return scalar_tensor(v, DType::f64); };
  auto i64 = [](int64_t v) { return scalar_tensor(static_cast<double>(v), DType::i64); };
  return {
      {"scale", f64(scale_.item())},
      {"growth_tracker", i64(growth_tracker())},
      {"hysteresis_tracker", i64(hysteresis_tracker())},
      {"skipped_steps", i64(skipped_steps_)},
      {"consecutive_skips", i64(consecutive_skips_)},
      {"growth_factor", f64(options_.growth_factor)},
      {"backoff_factor", f64(options_.backoff_factor)},
      {"growth_interval", i64(options_.growth_interval)},
      {"min_scale", f64(options_.min_scale)},
      {"max_scale", f64(options_.max_scale)},
      {"hysteresis", i64(options_.hysteresis)},
      {"max_consecutive_skips", i64(options_.max_consecutive_skips)},
  };
}

void GradScaler::load_state_dict(const std::map<std::string, Tensor>& dict) {
  if (!options_.enabled) return;
  const std::string who = "GradScaler::load_state_dict: ";
  MIXTAPE_CHECK(!dict.empty(), who,
                "the state dict is empty, possibly because it was saved from a disabled GradScaler");
  MIXTAPE_CHECK(stage_ == Stage::ready, who,
                "called in the middle of a step (after unscale() or step()); load the state before the step's "
                "unscale()/step() or after update()");
  static const std::set<std::string> f64_keys{"scale", "growth_factor", "backoff_factor", "min_scale", "max_scale"};
  static const std::set<std::string> i64_keys{"growth_tracker", "hysteresis_tracker", "skipped_steps",
                                              "consecutive_skips", "growth_interval", "hysteresis",
                                              "max_consecutive_skips"};
  for (const auto& [key, t] : dict) {
    MIXTAPE_CHECK(f64_keys.count(key) || i64_keys.count(key), who, "unexpected key \"", key,
                  "\" (a GradScaler state dict holds scale, growth_tracker, hysteresis_tracker, skipped_steps, "
                  "consecutive_skips and the options growth_factor, backoff_factor, growth_interval, min_scale, "
                  "max_scale, hysteresis, max_consecutive_skips)");
  }
  auto find = [&](const std::string& key, DType dtype) -> const Tensor& {
    auto it = dict.find(key);
    MIXTAPE_CHECK(it != dict.end(), who, "missing key \"", key, "\"");
    const Tensor& t = it->second;
    MIXTAPE_CHECK(t.defined(), who, "key \"", key, "\" holds an undefined tensor");
    MIXTAPE_CHECK(t.dim() == 0 && t.dtype() == dtype, who, "key \"", key, "\" must be a 0-d ", dtype_name(dtype),
                  " tensor, got ", describe(t));
    return t;
  };
  auto real = [&](const std::string& key) { return find(key, DType::f64).item(); };
  auto count = [&](const std::string& key) {
    const int64_t v = find(key, DType::i64).to_vector<int64_t>()[0];
    MIXTAPE_CHECK(v >= 0, who, "key \"", key, "\" must be >= 0, got ", v);
    // Counts are stored through a double (state_dict) and step() adds 1 to the skip counts: beyond 2^53 neither
    // is exact, and at INT64_MAX the next skipped step would overflow.
    MIXTAPE_CHECK(v <= (int64_t{1} << 53), who, "key \"", key, "\" is too large: ", v, " (at most 2^53)");
    return v;
  };
  auto as_int = [&](const std::string& key, int64_t v) {
    MIXTAPE_CHECK(v <= std::numeric_limits<int>::max(), who, "key \"", key, "\" is too large: ", v);
    return static_cast<int>(v);
  };

  GradScalerOptions o = options_;
  o.growth_factor = real("growth_factor");
  o.backoff_factor = real("backoff_factor");
  o.min_scale = real("min_scale");
  o.max_scale = real("max_scale");
  o.growth_interval = as_int("growth_interval", count("growth_interval"));
  o.hysteresis = as_int("hysteresis", count("hysteresis"));
  o.max_consecutive_skips = as_int("max_consecutive_skips", count("max_consecutive_skips"));
  validate_options(o, who + "invalid option in the state dict: ");
  const double scale = real("scale");
  validate_scale(scale, o, who, "key \"scale\"");
  const int64_t growth = count("growth_tracker");
  const int64_t hysteresis = count("hysteresis_tracker");
  const int64_t skipped = count("skipped_steps");
  const int64_t consecutive = count("consecutive_skips");
  MIXTAPE_CHECK(growth < o.growth_interval, who, "key \"growth_tracker\" (", growth,
                ") must be smaller than growth_interval (", o.growth_interval, ")");
  MIXTAPE_CHECK(hysteresis <= o.hysteresis, who, "key \"hysteresis_tracker\" (", hysteresis,
                ") must not exceed hysteresis (", o.hysteresis, ")");
  MIXTAPE_CHECK(consecutive <= skipped, who, "key \"consecutive_skips\" (", consecutive,
                ") must not exceed skipped_steps (", skipped, ")");

  // Everything is valid: apply (nothing below can throw).
  options_ = o;
  scale_.copy_(scalar_tensor(static_cast<double>(static_cast<float>(scale)), DType::f32));
  growth_tracker_.copy_(scalar_tensor(static_cast<double>(growth), DType::i64));
  hysteresis_tracker_.copy_(scalar_tensor(static_cast<double>(hysteresis), DType::i64));
  skipped_steps_ = skipped;
  consecutive_skips_ = consecutive;
}

}  // namespace mixtape::amp
