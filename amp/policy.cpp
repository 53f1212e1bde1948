#include "amp/policy.h"

#include <array>
#include <cstddef>

namespace mixtape::amp {

namespace {
// Follows PyTorch's CUDA autocast lists (aten/src/ATen/autocast_mode.cpp) for every op both have:
//   lower precision: matmul, linear (mm, bmm, addmm, conv*, ... in PyTorch)
//   float32: exp, log, pow, rsqrt, softmax, log_softmax, cross_entropy, sum, layer_norm, mse_loss
//   promote: PyTorch's own type promotion for add/sub/mul/div/maximum/minimum/where (not autocast ops
//            there, same effect: mixed inputs run in the widest dtype)
//   not listed in PyTorch -> pass-through: neg, sqrt, tanh, sigmoid, relu, gelu, abs, mean, max, reshape,
//            permute, narrow, embedding (cat: promote, as in PyTorch's list).
// DESIGN.md lists mean among the float32 ops; PyTorch runs mean in the input dtype, and mixtape's mean
// accumulates in float32 and rounds once anyway, so mean is pass-through here (documented in the README).
using P = CastPolicy;
constexpr std::array<P, static_cast<std::size_t>(OpKind::count_)> make_table() {
  std::array<P, static_cast<std::size_t>(OpKind::count_)> t{};
  for (auto& p : t) p = P::passthrough;
  auto set = [&](OpKind k, P p) { t[static_cast<std::size_t>(k)] = p; };
  set(OpKind::matmul, P::lower);
  set(OpKind::linear, P::lower);
  for (OpKind k : {OpKind::exp, OpKind::log, OpKind::pow, OpKind::rsqrt, OpKind::softmax, OpKind::log_softmax,
                   OpKind::cross_entropy, OpKind::sum, OpKind::layer_norm, OpKind::mse_loss})
    set(k, P::fp32);
  for (OpKind k : {OpKind::add, OpKind::sub, OpKind::mul, OpKind::div, OpKind::maximum, OpKind::minimum, OpKind::where})
    set(k, P::promote);
  // CNN ops: conv2d lower (PyTorch: conv*); batch_norm and pooling are in no PyTorch list, so pass-through
  // (batch_norm runs in the input dtype with float32 statistics and affine parameters inside its kernel).
  set(OpKind::conv2d, P::lower);
  // Transformer ops: cat is in PyTorch's promote list (mixed dtypes join in the widest); permute/transpose, narrow
  // (slicing) and embedding are in no list (they run in their input's dtype: an embedding of float32 master
  // weights gives float32 rows, as torch.nn.Embedding under autocast). Softmax (fp32, above) also covers attention
  // probabilities: scaled_dot_product_attention is a composite of matmul (lower), softmax (fp32) and matmul (lower).
  set(OpKind::cat, P::promote);
  return t;
}
constexpr auto kTable = make_table();
}  // namespace

CastPolicy policy_for(OpKind kind) {
  return kind < OpKind::count_ ? kTable[static_cast<std::size_t>(kind)] : CastPolicy::passthrough;
}

const char* policy_name(CastPolicy policy) {
  switch (policy) {
    case CastPolicy::lower: return "lower";
    case CastPolicy::fp32: return "fp32";
    case CastPolicy::promote: return "promote";
    case CastPolicy::passthrough: return "passthrough";
  }
  return "?";
}

}  // namespace mixtape::amp
