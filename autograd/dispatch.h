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
