#include "autograd/tape.h"

#include <unordered_map>

#include "core/kernels.h"

namespace mixtape {

namespace {

/// One recorded op: the grad slots of its inputs (with the shape and dtype their gradients must have),
/// the slot of its output, and the closure computing input gradients.
struct Node {
  OpKind kind;
  std::vector<std::shared_ptr<AutogradMeta>> inputs;  // null for inputs that do not require grad
  std::vector<Shape> input_shapes;
  std::vector<DType> input_dtypes;
  std::shared_ptr<AutogradMeta> output;
  autograd::BackwardFn backward;
};

struct Tape {
  std::vector<Node> nodes;
};

thread_local bool t_grad_enabled = true;
thread_local Tape t_tape;
thread_local uint64_t t_generation = 0;

/// Adds g into an accumulated gradient (fresh tensor, so callers' tensors are never aliased).
Tensor accumulate(const Tensor& acc, const Tensor& g) {
  if (!acc.defined()) return g;
  return kernels::binary(BinaryOp::add, acc, g);
}

/// Clears the tape on scope exit, also when backward throws.
struct TapeClearer {
  ~TapeClearer() { clear_tape(); }
};

}  // namespace

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }
void clear_tape() {
  t_tape.nodes.clear();
  ++t_generation;
}
uint64_t tape_generation() { return t_generation; }
size_t tape_size() { return t_tape.nodes.size(); }

void zero_grad(std::span<const Tensor> tensors) {
  for (const Tensor& t : tensors)
    if (t.defined() && t.impl()->autograd) t.impl()->autograd->grad.reset();
}

void backward(const Tensor& loss) {
  MIXTAPE_CHECK(loss.defined(), "backward: the loss is an undefined tensor");
  MIXTAPE_CHECK(loss.numel() == 1, "backward: expected a one-element loss, got shape ", loss.shape().to_string(),
                "; for a non-scalar output pass a seed gradient: backward(y, seed)");
  backward(loss, ones_like(loss));
}

void backward(const Tensor& y, const Tensor& seed) {
  TapeClearer clear_on_exit;
  MIXTAPE_CHECK(y.defined() && seed.defined(), "backward: undefined tensor");
  MIXTAPE_CHECK(y.requires_grad(), "backward: the tensor does not require grad (no input of the computation called "
                                   "set_requires_grad(true), or it was computed under NoGradGuard)");
  MIXTAPE_CHECK(seed.shape() == y.shape(), "backward: seed shape ", seed.shape().to_string(),
                " differs from output shape ", y.shape().to_string());
  kernels::check_same_device(y, seed, "backward");
  const Tensor seed_cast = kernels::cast(seed, y.dtype());
  NoGradGuard no_grad;  // gradients themselves are not recorded

  AutogradMeta* root = y.autograd_meta().get();
  if (root->is_leaf) {
    root->grad = accumulate(Tensor(root->grad), seed_cast).impl_ptr();
    return;
  }
  std::unordered_map<AutogradMeta*, Tensor> grads;
  grads[root] = seed_cast;
  auto& nodes = t_tape.nodes;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    Node& node = *it;
    auto found = grads.find(node.output.get());
    if (found == grads.end()) continue;
    const Tensor grad_out = std::move(found->second);
    grads.erase(found);  // consumed: free it as soon as possible
    std::vector<bool> needs(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) needs[i] = node.inputs[i] != nullptr;
    std::vector<Tensor> in_grads = node.backward(grad_out, needs);
    MIXTAPE_CHECK(in_grads.size() == node.inputs.size(), "backward of ", op_kind_name(node.kind), " returned ",
                  in_grads.size(), " gradients for ", node.inputs.size(), " inputs");
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (!node.inputs[i] || !in_grads[i].defined()) continue;
      // Un-broadcast and cast back in one place, so every op's backward may return the natural result.
      Tensor g = kernels::sum_to(in_grads[i], node.input_shapes[i]);
      g = kernels::cast(g, node.input_dtypes[i]);
      AutogradMeta* slot = node.inputs[i].get();
      if (slot->is_leaf) {
        slot->grad = accumulate(Tensor(slot->grad), g).impl_ptr();
      } else {
        Tensor& acc = grads[slot];
        acc = accumulate(acc, g);
      }
    }
  }
}

namespace autograd {

bool should_record(std::span<const Tensor* const> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

Tensor record(OpKind kind, std::span<const Tensor* const> inputs, Tensor out, BackwardFn backward) {
  Node node;
  node.kind = kind;
  for (const Tensor* t : inputs) {
    const bool wants = t->defined() && t->requires_grad();
    node.inputs.push_back(wants ? t->autograd_meta() : nullptr);
    node.input_shapes.push_back(t->defined() ? t->shape() : Shape{});
    node.input_dtypes.push_back(t->defined() ? t->dtype() : DType::f32);
  }
  // The output gets a fresh slot; an op that returned one of its inputs gets a new handle first, so the
  // input's own slot is never overwritten.
  for (const Tensor* t : inputs)
    if (t->is_same(out)) out = kernels::view(out, out.shape());
  auto meta = std::make_shared<AutogradMeta>();
  meta->requires_grad = true;
  meta->is_leaf = false;
  out.impl()->autograd = meta;
  node.output = std::move(meta);
  node.backward = std::move(backward);
  t_tape.nodes.push_back(std::move(node));
  return out;
}

}  // namespace autograd
}  // namespace mixtape
