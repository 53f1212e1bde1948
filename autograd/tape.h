#pragma once
// The thread-local tape: each recorded op appends a node (inputs' grad slots, output slot, backward
// closure); backward() runs the nodes in reverse, un-broadcasts, accumulates into leaves, then clears it.
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "autograd/op_kind.h"
#include "core/tensor.h"

namespace mixtape {

/// Whether ops are recorded on this thread (on by default).
bool grad_enabled();
/// Turns recording on or off for this thread.
void set_grad_enabled(bool on);

/// RAII: no recording inside (e.g. evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// Backpropagates from a one-element `loss` (seed 1), accumulating into the .grad of leaves that require
/// grad, then clears the tape. Throws when loss has more than one element (use the seeded overload).
void backward(const Tensor& loss);
/// Backpropagates from `y` with the gradient `seed` (same shape as y).
void backward(const Tensor& y, const Tensor& seed);
/// Clears the .grad of each tensor.
void zero_grad(std::span<const Tensor> tensors);
/// Drops everything recorded on this thread's tape (frees saved activations).
void clear_tape();
/// Number of nodes on this thread's tape.
size_t tape_size();
/// Counts clears of this thread's tape: a recorded tensor from an older generation has no node any more
/// (caches of recorded tensors, like amp's cast cache, check it).
uint64_t tape_generation();

namespace autograd {

/// The backward of one node: gradients for each input given the output's gradient. `needs[i]` tells
/// whether input i wants one; an entry may be left undefined. Returned gradients may have a broadcast
/// shape (the engine sums them back) and another float dtype (the engine casts them back).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out, const std::vector<bool>& needs)>;

/// True if recording is on and any input requires grad.
bool should_record(std::span<const Tensor* const> inputs);
inline bool should_record(std::initializer_list<const Tensor*> inputs) {
  return should_record(std::span<const Tensor* const>(inputs.begin(), inputs.size()));
}
/// Appends a node producing `out` from `inputs` and marks `out` as requiring grad; returns out.
/// Call only when should_record(inputs).
Tensor record(OpKind kind, std::span<const Tensor* const> inputs, Tensor out, BackwardFn backward);
inline Tensor record(OpKind kind, std::initializer_list<const Tensor*> inputs, Tensor out, BackwardFn backward) {
  return record(kind, std::span<const Tensor* const>(inputs.begin(), inputs.size()), std::move(out), std::move(backward));
}

}  // namespace autograd
}  // namespace mixtape
