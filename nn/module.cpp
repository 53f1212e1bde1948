#include "nn/module.h"

#include <set>

#include "autograd/tape.h"
#include "core/kernels.h"

namespace mixtape::nn {

Tensor Module::forward(const Tensor&) {
  throw Error(detail::cat(type_name(), " has no single-input forward(x); call its own forward"));
}

void Module::check_name(const std::string& name, const char* what) {
  MIXTAPE_CHECK(!name.empty() && name.find('.') == std::string::npos, what, ": invalid name '", name,
                "' (names are non-empty and contain no '.')");
}

void Module::check_unique(const std::string& name, const char* what) const {
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  MIXTAPE_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), what, ": '", name,
                "' is already registered in this ", type_name());
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_name(name, "register_parameter");
  MIXTAPE_CHECK(value.defined(), "register_parameter('", name, "'): undefined tensor");
  check_unique(name, "register_parameter");
  value.set_requires_grad(true);
  value.autograd_meta()->name = name;
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_name(name, "register_buffer");
  MIXTAPE_CHECK(value.defined(), "register_buffer('", name, "'): undefined tensor");
  check_unique(name, "register_buffer");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "register_module");
  MIXTAPE_CHECK(module != nullptr, "register_module('", name, "'): null module");
  check_unique(name, "register_module");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool params, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, t] : params ? parameters_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, out);
  // Name the autograd slots with their full dotted names (used in overflow diagnostics).
  for (auto& [name, t] : out) t.autograd_meta()->name = name;
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, child] : children_) child->train(on);
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  auto move = [&](const Tensor& t) {
    if (t.device() == device) return;
    const Tensor moved = t.to(device);
    // Past the old storage's version, so nothing cached for the old storage (autocast compute copies, keyed
    // on the tensor and its version) can be taken for the new one.
    moved.impl()->storage->version.store(t.version() + 1);
    t.impl()->storage = moved.impl()->storage;  // in place: every handle to this tensor sees the new storage
    t.impl()->offset_bytes = moved.impl()->offset_bytes;
    if (Tensor g = t.grad(); g.defined()) t.set_grad(g.to(device));
  };
  for (auto& [_, t] : named_parameters()) move(t);
  for (auto& [_, t] : named_buffers()) move(t);
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out[name] = t;
  for (auto& [name, t] : named_buffers()) out[name] = t;
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  const std::map<std::string, Tensor> mine = state_dict();
  std::vector<std::string> missing, unexpected;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    MIXTAPE_CHECK(src.defined() && src.shape() == t.shape(), "load_state_dict: '", name, "' has shape ",
                  src.defined() ? src.shape().to_string() : "undefined", " but the module expects ", t.shape().to_string());
    MIXTAPE_CHECK(is_floating(src.dtype()) == is_floating(t.dtype()), "load_state_dict: '", name, "' has dtype ",
                  dtype_name(src.dtype()), " but the module expects ", dtype_name(t.dtype()));
  }
  for (const auto& [name, _] : state)
    if (!mine.count(name)) unexpected.push_back(name);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& n : v) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  MIXTAPE_CHECK(!strict || missing.empty(), "load_state_dict: missing entries: ", join(missing));
  MIXTAPE_CHECK(!strict || unexpected.empty(), "load_state_dict: unexpected entries: ", join(unexpected));
  NoGradGuard no_grad;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it != state.end()) t.copy_(it->second);
  }
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::describe(std::string& out, const std::string& name, int indent) const {
  out += std::string(static_cast<size_t>(indent) * 2, ' ') + (name.empty() ? "" : name + ": ") + type_name();
  for (const auto& [n, t] : parameters_) out += " " + n + t.shape().to_string();
  out += "\n";
  for (const auto& [n, child] : children_) child->describe(out, n, indent + 1);
}

std::string Module::to_string() const {
  std::string out;
  describe(out, "", 0);
  return out;
}

}  // namespace mixtape::nn
