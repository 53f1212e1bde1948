#pragma once
// Gradient clipping by the total norm of all gradients (PyTorch's torch.nn.utils.clip_grad_norm_).
#include <vector>

#include "core/tensor.h"

namespace mixtape::optim {

/// Scales the gradients of `params` in place so that their total norm is at most `max_norm`, and returns
/// the total norm before clipping (PyTorch 1.13's clip_grad_norm_ semantics):
///   total = (sum over grads of ||g||_p^p)^(1/p)     (p = norm_type; for p = inf, the largest |g_i|)
///   coef  = max_norm / (total + 1e-6); every gradient is multiplied by coef when coef < 1.
/// Parameters without a gradient are ignored; with no gradient at all the result is 0.
/// Precision: on the CPU the norms are accumulated in double (no overflow for float32 gradients); on
/// another device each gradient's partial sum (|g|^p, f16/bf16 widened to float32 first) is reduced and
/// added there in float32, with one host read per device. coef is rounded to each gradient's dtype before
/// multiplying.
/// Non-finite norms are returned as they are and the gradients are scaled as PyTorch does: a NaN total
/// (some gradient holds NaN) gives coef NaN, so every gradient becomes NaN; an infinite total (some
/// gradient holds inf and none NaN) gives coef 0, so finite entries become 0 (keeping their sign) and
/// infinite ones NaN. Check the result (or use a GradScaler) before stepping.
/// max_norm must be >= 0 (inf allowed: nothing is clipped); norm_type must be > 0 (finite) or +inf.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

/// The norm_type-norm (> 0 or +inf) of all elements of `t` (any float dtype, any device); 0 when empty.
/// On the CPU accumulated in double; elsewhere reduced on the device (see clip_grad_norm).
double tensor_norm(const Tensor& t, double norm_type = 2.0);

namespace detail {
/// tensor_norm computed with the device's kernels (the non-CPU path), callable on any device for tests.
double tensor_norm_kernels(const Tensor& t, double norm_type);
}  // namespace detail

}  // namespace mixtape::optim
