#include "autograd/dispatch.h"

#include <atomic>

namespace mixtape::autograd {

namespace {
std::atomic<AutocastHook> g_hook{nullptr};
std::atomic<KeptCopyHook> g_kept_hook{nullptr};
thread_local int t_paused = 0;
}  // namespace

void set_autocast_hook(AutocastHook hook) { g_hook.store(hook); }

void autocast_inputs(OpKind kind, std::span<Tensor> inputs) {
  if (t_paused) return;
  if (AutocastHook hook = g_hook.load(std::memory_order_relaxed)) hook(kind, inputs);
}

void set_kept_copy_hook(KeptCopyHook hook) { g_kept_hook.store(hook); }

bool is_kept_copy(const Tensor& copy, const Tensor& parameter) {
  const KeptCopyHook hook = g_kept_hook.load(std::memory_order_relaxed);
  return hook != nullptr && hook(copy, parameter);
}

AutocastPause::AutocastPause() { ++t_paused; }
AutocastPause::~AutocastPause() { --t_paused; }


}  // namespace mixtape::autograd

namespace mixtape {

const char* op_kind_name(OpKind kind) {
  static const char* names[] = {"add",     "sub",  "mul",  "div",     "neg",     "exp",     "log",
                                "sqrt",    "rsqrt", "pow", "tanh",    "sigmoid", "relu",    "gelu",
                                "abs",     "maximum", "minimum", "where", "sum", "mean", "max",
                                "matmul",  "linear", "softmax", "log_softmax", "cross_entropy", "layer_norm", "mse_loss", "cast", "reshape",
                                "conv2d", "max_pool2d", "avg_pool2d", "batch_norm",
                                "permute", "narrow", "cat", "embedding"};
  static_assert(sizeof(names) / sizeof(names[0]) == static_cast<size_t>(OpKind::count_), "op_kind_name table");
  return kind < OpKind::count_ ? names[static_cast<int>(kind)] : "?";
}

}  // namespace mixtape
