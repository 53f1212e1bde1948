#pragma once
// nn::Module: named parameters, buffers and submodules; train/eval; device moves; state dicts.
// Modules never mention a precision: under amp::Autocast the ops they call choose it.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mixtape::nn {

/// Base class of every layer and model. Hold submodules as std::shared_ptr and register them.
class Module {
 public:
  virtual ~Module() = default;

  /// The module's computation for one input; modules with other signatures define their own forward.
  virtual Tensor forward(const Tensor& x);
  /// Shortcut for forward(x).
  Tensor operator()(const Tensor& x) { return forward(x); }
  /// A short type name ("Linear"), used in printing and errors.
  virtual std::string type_name() const { return "Module"; }

  /// Registers a trainable tensor (a float32 master): it becomes a leaf requiring grad, named `name`.
  Tensor register_parameter(const std::string& name, Tensor value);
  /// Registers a non-trainable tensor saved in the state dict (e.g. running statistics).
  Tensor register_buffer(const std::string& name, Tensor value);
  /// Registers a submodule; its parameters appear as "name.param".
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  /// All parameters, depth first, in registration order.
  std::vector<Tensor> parameters() const;
  /// All parameters with dotted names ("fc1.weight").
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  /// All buffers with dotted names.
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  /// Direct submodules with their names.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  /// Training mode (dropout active, batch statistics) for this module and every submodule.
  void train(bool on = true);
  /// Evaluation mode: train(false).
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Moves every parameter and buffer (and any accumulated gradient) to `device` in place: handles held
  /// elsewhere see the move; each moved tensor's version advances, so caches keyed on it are invalidated.
  /// Optimizers create their state on the parameters' device: move the model before building one.
  void to(Device device);

  /// Parameters and buffers by dotted name (tensors share storage with the module).
  std::map<std::string, Tensor> state_dict() const;
  /// Copies values in. With strict, missing or unexpected names are errors; shapes must match. Everything is
  /// validated before anything is written, so a failed load changes nothing.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  /// Number of parameter elements.
  int64_t num_parameters() const;
  /// A multi-line summary of the module tree.
  std::string to_string() const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  void collect(const std::string& prefix, bool params, std::vector<std::pair<std::string, Tensor>>& out) const;
  void describe(std::string& out, const std::string& name, int indent) const;
  static void check_name(const std::string& name, const char* what);
  void check_unique(const std::string& name, const char* what) const;

  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace mixtape::nn
