#pragma once
// The one place where casts are inserted at op boundaries: every differentiable op passes its floating
// inputs through autocast_inputs() before computing. The amp module installs the hook; without it
// (no amp linked in, or no Autocast guard active) inputs pass through unchanged.
#include <span>

#include "autograd/op_kind.h"
#include "core/tensor.h"

namespace mixtape::autograd {

/// Rewrites `inputs` in place (casting them) for `kind` under the current autocast state.
using AutocastHook = void (*)(OpKind kind, std::span<Tensor> inputs);

/// Installs the hook (amp does this); nullptr removes it.
void set_autocast_hook(AutocastHook hook);
/// Applies the installed hook, if any (not while an AutocastPause is alive on this thread).
void autocast_inputs(OpKind kind, std::span<Tensor> inputs);

/// Whether `copy`, an op input autocast made from the float32 parameter `parameter`, stays alive after the step
/// anyway (amp's persistent compute copies). Backward then keeps `copy` for its product instead of saving the
/// parameter and casting it again: the same values (the parameter's version is still checked), one cast less,
/// no memory more.
using KeptCopyHook = bool (*)(const Tensor& copy, const Tensor& parameter);

/// Installs the kept-copy query (amp does this, with the autocast hook); nullptr removes it.
void set_kept_copy_hook(KeptCopyHook hook);
/// The installed query's answer; false without one.
bool is_kept_copy(const Tensor& copy, const Tensor& parameter);

/// RAII: inside a composite op whose inputs were already cast at its boundary, the ops it is built from run
/// on those inputs as they are (no further casts).
class AutocastPause {
 public:
  AutocastPause();
  ~AutocastPause();
  AutocastPause(const AutocastPause&) = delete;
  AutocastPause& operator=(const AutocastPause&) = delete;
};

}  // namespace mixtape::autograd
