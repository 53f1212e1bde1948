// The Optimizer base: parameter checks, the step driver, zero_grad, and state dict save/load/validation.
#include "optim/optimizer.h"

#include <cmath>
#include <set>

#include "amp/autocast.h"
#include "autograd/tape.h"
#include "core/error.h"

namespace mixtape::optim {

namespace {

constexpr const char* kStatePrefix = "state.";

/// "state.<i>.<name>" split into (i, name); false when `key` does not have that form.
bool parse_state_key(const std::string& key, size_t& index, std::string& name) {
  if (key.rfind(kStatePrefix, 0) != 0) return false;
  const size_t begin = std::char_traits<char>::length(kStatePrefix);
  const size_t dot = key.find('.', begin);
  if (dot == std::string::npos || dot == begin || dot + 1 >= key.size() || dot - begin > 18) return false;
  size_t value = 0;
  for (size_t k = begin; k < dot; ++k) {
    if (key[k] < '0' || key[k] > '9') return false;
    value = value * 10 + static_cast<size_t>(key[k] - '0');
  }
  if (key[begin] == '0' && dot - begin > 1) return false;  // no leading zeros: one spelling per index
  index = value;
  name = key.substr(dot + 1);
  return true;
}

std::string state_key(size_t i, const std::string& name) { return detail::cat(kStatePrefix, i, ".", name); }

std::string describe(const Tensor& t) {
  return detail::cat(dtype_name(t.dtype()), " ", t.shape().to_string(), " on ", t.device().to_string());
}

}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {
  MIXTAPE_CHECK(!params_.empty(), "optimizer: got an empty parameter list");
  std::set<const void*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    MIXTAPE_CHECK(p.defined(), "optimizer: parameter ", i, " is an undefined tensor");
    MIXTAPE_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "optimizer: parameter ", i,
                  " must be a float32 (or float64) master tensor, got ", dtype_name(p.dtype()));
    MIXTAPE_CHECK(p.requires_grad(), "optimizer: parameter ", i,
                  " does not require grad; call set_requires_grad() on it or leave it out of the parameter list");
    MIXTAPE_CHECK(p.is_leaf(), "optimizer: parameter ", i, " is not a leaf tensor (it was computed by a recorded op); "
                  "optimize the leaf it came from, or a detach()ed copy marked set_requires_grad()");
    MIXTAPE_CHECK(seen.insert(p.impl()).second, "optimizer: parameter ", i,
                  " appears more than once in the parameter list");
  }
  state_.resize(params_.size());
  amp::register_persistent_parameters(params_);
}

Optimizer::~Optimizer() { amp::unregister_persistent_parameters(params_); }

void Optimizer::zero_grad() { mixtape::zero_grad(params_); }

void Optimizer::set_lr(double lr) {
  MIXTAPE_CHECK(std::isfinite(lr) && lr >= 0.0, "optimizer: invalid learning rate ", lr,
                " (expected a finite value >= 0)");
  lr_ = lr;
}

const std::map<std::string, Tensor>& Optimizer::state(size_t i) const {
  MIXTAPE_CHECK(i < state_.size(), "optimizer: state(", i, "): there are only ", state_.size(), " parameters");
  return state_[i];
}

void Optimizer::check_option(bool ok, const std::string& what) const {
  if (!ok) throw Error(detail::cat(name(), ": ", what));
}

void Optimizer::for_each_update(
    const std::function<void(size_t, const Tensor&, const Tensor&, const Tensor&)>& update) {
  NoGradGuard no_grad;
  // Check everything first, so that a bad gradient leaves every parameter untouched.
  std::vector<Tensor> grads(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    MIXTAPE_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), name(),
                  ".step: the gradient of parameter ", i, " is ", describe(g), " but the parameter is ", describe(p));
    grads[i] = std::move(g);
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!grads[i].defined()) continue;
    const Tensor copy = amp::persistent_copy_to_refresh(params_[i]);
    update(i, params_[i], grads[i], copy);
    params_[i].bump_version();
    if (copy.defined()) {
      copy.bump_version();  // rewritten in place too: caches keyed on its version (e.g. oneDNN's weight layouts) see it
      amp::persistent_copy_refreshed(params_[i], copy);
    }
  }
  ++step_count_;
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> out;
  out["step"] = scalar_tensor(static_cast<double>(step_count_), DType::i64);
  out["lr"] = scalar_tensor(lr_, DType::f64);
  for (const auto& [key, value] : hyper_parameters()) out[key] = scalar_tensor(value, DType::f64);
  for (size_t i = 0; i < state_.size(); ++i)
    for (const auto& [key, t] : state_[i]) out[state_key(i, key)] = t.clone();
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& dict) {
  const std::string who = detail::cat(name(), ".load_state_dict: ");
  auto find = [&](const std::string& key) -> const Tensor& {
    auto it = dict.find(key);
    if (it == dict.end()) throw Error(detail::cat(who, "missing key \"", key, "\""));
    MIXTAPE_CHECK(it->second.defined(), who, "key \"", key, "\" holds an undefined tensor");
    return it->second;
  };
  auto scalar = [&](const std::string& key, DType dtype) -> double {
    const Tensor& t = find(key);
    MIXTAPE_CHECK(t.dim() == 0 && t.dtype() == dtype, who, "key \"", key, "\" must be a 0-d ", dtype_name(dtype),
                  " tensor, got ", describe(t));
    return t.item();
  };
  auto count = [&](const std::string& key) -> int64_t {
    const Tensor& t = find(key);
    MIXTAPE_CHECK(t.dim() == 0 && t.dtype() == DType::i64, who, "key \"", key, "\" must be a 0-d i64 tensor, got ",
                  describe(t));
    const int64_t value = t.to_vector<int64_t>()[0];
    MIXTAPE_CHECK(value >= 0, who, "key \"", key, "\" must be >= 0, got ", value);
    // Counts are stored through a double (scalar_tensor) and step() adds 1: beyond 2^53 neither is exact, and at
    // INT64_MAX the next step would overflow.
    MIXTAPE_CHECK(value <= (int64_t{1} << 53), who, "key \"", key, "\" is too large: ", value, " (at most 2^53)");
    return value;
  };

  // ---- the scalars: step count and hyper-parameters ----
  const int64_t step = count("step");
  const double lr = scalar("lr", DType::f64);
  MIXTAPE_CHECK(std::isfinite(lr) && lr >= 0.0, who, "key \"lr\": invalid learning rate ", lr,
                " (expected a finite value >= 0)");
  std::map<std::string, double> hyper;
  std::set<std::string> known{"step", "lr"};
  for (const auto& [key, unused] : hyper_parameters()) {
    hyper[key] = scalar(key, DType::f64);
    known.insert(key);
  }

  // ---- per-parameter state: every key known, each parameter's entries complete and well-formed ----
  const std::vector<StateSpec> specs = state_specs();
  std::vector<std::set<std::string>> present(params_.size());
  for (const auto& [key, t] : dict) {
    if (known.count(key)) continue;
    size_t i = 0;
    std::string entry;
    bool ok = parse_state_key(key, i, entry) && i < params_.size();
    if (ok) {
      ok = false;
      for (const StateSpec& s : specs) ok = ok || s.name == entry;
    }
    MIXTAPE_CHECK(ok, who, "unexpected key \"", key, "\" (", name(), " with ", params_.size(),
                  " parameters saves \"step\", \"lr\", its hyper-parameters and \"state.<i>.<name>\" for i < ",
                  params_.size(), ")");
    present[i].insert(entry);
  }
  std::vector<std::map<std::string, Tensor>> new_state(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (present[i].empty()) continue;  // this parameter has not been updated yet
    const Tensor& p = params_[i];
    for (const StateSpec& s : specs) {
      const std::string key = state_key(i, s.name);
      const Tensor& t = find(key);
      if (s.kind == StateKind::like_param) {
        MIXTAPE_CHECK(t.shape() == p.shape() && t.dtype() == p.dtype(), who, "key \"", key, "\" is ", describe(t),
                      " but parameter ", i, " is ", describe(p));
        Tensor copy = Tensor::empty(p.shape(), p.dtype(), p.device());
        copy.copy_(t);
        new_state[i][s.name] = copy;
      } else {
        new_state[i][s.name] = scalar_tensor(static_cast<double>(count(key)), DType::i64);
      }
    }
  }

  // ---- apply: set_hyper_parameters validates before it changes anything; the rest cannot fail ----
  try {
    set_hyper_parameters(hyper);
  } catch (const Error& e) {
    throw Error(detail::cat(who, "invalid hyper-parameter in the state dict: ", e.what()));
  }
  lr_ = lr;
  step_count_ = step;
  state_ = std::move(new_state);
}

}  // namespace mixtape::optim
