#pragma once
// Optimizers over float32 (or float64) master parameters: the Optimizer base (parameters, learning rate,
// step count, per-parameter state, state dicts) and SGD, Adam and AdamW, following PyTorch 1.13's
// torch.optim semantics. Updates run in place on each parameter's storage through its device's fused
// backend kernel (Backend::sgd_update / adam_update), then bump the parameter's version. Each parameter's
// state lives on the parameter's device (Adam's per-parameter step counter excepted: a host-side count).
// An optimizer registers its float32 parameters for persistent autocast compute copies (amp/autocast.h): the
// fused update writes the f16/bf16 copy in the same pass and marks it valid for the new version, so the next
// forward pass under autocast runs no cast kernel for them.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mixtape::optim {

/// Base of the optimizers: the parameters it updates, the learning rate, the number of steps taken and
/// the per-parameter state (created lazily by the first update of each parameter, like PyTorch).
///
/// State dict layout (all tensors are copies; hyper-parameters are 0-d float64, counts 0-d int64 on the CPU):
///   "step"            number of step() calls so far
///   "lr", ...         hyper-parameters ("lr" plus each optimizer's own, e.g. "momentum", "beta1")
///   "state.<i>.<name>" per-parameter state of parameter i, e.g. "state.3.exp_avg" (same shape and dtype
///                      as the parameter) or "state.3.step" (0-d int64); absent for a parameter not yet updated
class Optimizer {
 public:
  /// Takes the parameters to update: defined float32/float64 leaf tensors that require grad, no duplicates.
  /// Registers them for persistent autocast compute copies (undone by the destructor).
  explicit Optimizer(std::vector<Tensor> params);
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Applies one update to every parameter whose gradient is defined (the others are skipped), in place.
  virtual void step() = 0;
  /// Clears (sets to undefined) the gradient of every parameter.
  void zero_grad();

  /// The learning rate the next step uses.
  double lr() const { return lr_; }
  /// Sets the learning rate (finite and >= 0).
  void set_lr(double lr);
  /// The parameters, in the order given to the constructor (state indices refer to it).
  const std::vector<Tensor>& params() const { return params_; }
  /// Number of step() calls so far (restored by load_state_dict).
  int64_t step_count() const { return step_count_; }
  /// The state of parameter i by name ("exp_avg", ...), empty until its first update.
  const std::map<std::string, Tensor>& state(size_t i) const;
  /// "SGD", "Adam", "AdamW" (used in messages).
  virtual const char* name() const = 0;

  /// A snapshot (copies) of the step count, hyper-parameters and per-parameter state; layout above.
  virtual std::map<std::string, Tensor> state_dict() const;
  /// Restores a state_dict(): validates every key, shape, dtype and value first and throws mixtape::Error
  /// naming the offending key (missing, unexpected, mis-shaped, wrong dtype, invalid value); nothing is
  /// modified when it throws. Loaded state is copied onto each parameter's device.
  virtual void load_state_dict(const std::map<std::string, Tensor>& dict);

 protected:
  /// What a per-parameter state entry holds.
  enum class StateKind {
    like_param,  ///< a tensor of the parameter's shape, dtype and device
    count        ///< a 0-d int64 CPU tensor (e.g. Adam's per-parameter step)
  };
  /// One per-parameter state entry.
  struct StateSpec {
    std::string name;
    StateKind kind;
  };
  /// The per-parameter state entries of this optimizer, all created together by a parameter's first update.
  virtual std::vector<StateSpec> state_specs() const = 0;
  /// The hyper-parameters other than lr, by name, in the order they are saved.
  virtual std::vector<std::pair<std::string, double>> hyper_parameters() const = 0;
  /// Validates then applies hyper-parameters read by load_state_dict (every name of hyper_parameters() is
  /// present); throws mixtape::Error without modifying anything when a value is invalid.
  virtual void set_hyper_parameters(const std::map<std::string, double>& values) = 0;

  /// Runs one step: under NoGradGuard, checks every defined gradient (shape, dtype, device) before touching
  /// anything, then calls update(i, param, grad, compute_copy) for each parameter with a gradient, bumps its
  /// version, and counts the step. compute_copy is the parameter's persistent autocast copy (undefined when it
  /// keeps none): the update must write it (pass it as the backend update's compute_copy); it is then marked
  /// valid for the parameter's new version.
  void for_each_update(
      const std::function<void(size_t i, const Tensor& param, const Tensor& grad, const Tensor& compute_copy)>& update);
  /// Throws mixtape::Error with "<name>: <what>" unless `ok`.
  void check_option(bool ok, const std::string& what) const;

  /// Per-parameter state, indexed like params().
  std::vector<std::map<std::string, Tensor>> state_;

 private:
  std::vector<Tensor> params_;
  double lr_ = 0.0;
  int64_t step_count_ = 0;
};

/// Options of SGD (PyTorch's torch.optim.SGD).
struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and L2 weight decay:
///   d = grad + weight_decay * param
///   buf = d on a parameter's first step, else momentum * buf + (1 - dampening) * d   (when momentum != 0)
///   d = nesterov ? d + momentum * buf : buf                                           (when momentum != 0)
///   param -= lr * d
/// State: "momentum_buffer" (only when momentum != 0).
class SGD : public Optimizer {
 public:
  /// Validates like PyTorch: lr >= 0, momentum >= 0, weight_decay >= 0, nesterov needs momentum > 0 and
  /// dampening == 0; all values finite.
  SGD(std::vector<Tensor> params, const SGDOptions& options = {});
  void step() override;
  const char* name() const override { return "SGD"; }
  /// The current options (lr as set by set_lr or a schedule).
  SGDOptions options() const;

 protected:
  std::vector<StateSpec> state_specs() const override;
  std::vector<std::pair<std::string, double>> hyper_parameters() const override;
  void set_hyper_parameters(const std::map<std::string, double>& values) override;

 private:
  /// Throws unless the options (other than lr) are valid.
  void validate(const SGDOptions& o) const;
  SGDOptions options_;
};

/// Options of Adam (PyTorch's torch.optim.Adam, betas = (beta1, beta2)).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

/// Options of AdamW (PyTorch's torch.optim.AdamW; note the default weight decay of 1e-2).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

/// Adam and AdamW share everything but how weight decay is applied (kDecoupled) and their default options.
template <class Options, bool kDecoupled>
class AdamFamily : public Optimizer {
 public:
  /// Validates like PyTorch: lr >= 0, eps >= 0, 0 <= beta1, beta2 < 1, weight_decay >= 0; all finite.
  AdamFamily(std::vector<Tensor> params, const Options& options, const char* who);
  void step() override;
  /// The current options (lr as set by set_lr or a schedule).
  Options options() const;

 protected:
  std::vector<StateSpec> state_specs() const override;
  std::vector<std::pair<std::string, double>> hyper_parameters() const override;
  void set_hyper_parameters(const std::map<std::string, double>& values) override;

 private:
  Options options_;
};
extern template class AdamFamily<AdamOptions, false>;
extern template class AdamFamily<AdamWOptions, true>;

/// Adam with L2 weight decay folded into the gradient; t is the parameter's own step count (1-based):
///   g = grad + weight_decay * param
///   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
///   param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// State: "exp_avg" (m), "exp_avg_sq" (v), "step" (t, a 0-d int64).
class Adam : public AdamFamily<AdamOptions, false> {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options = {}) : AdamFamily(std::move(params), options, "Adam") {}
  const char* name() const override { return "Adam"; }
};

/// AdamW: Adam with decoupled weight decay, param *= 1 - lr * weight_decay before the Adam update (the
/// gradient is not modified). Same state as Adam.
class AdamW : public AdamFamily<AdamWOptions, true> {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options = {}) : AdamFamily(std::move(params), options, "AdamW") {}
  const char* name() const override { return "AdamW"; }
};

}  // namespace mixtape::optim
