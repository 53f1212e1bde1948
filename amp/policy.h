#pragma once
// The one AMP policy table: which precision each op runs in under autocast.
#include "autograd/op_kind.h"

namespace mixtape::amp {

/// How autocast treats an op's floating-point inputs.
enum class CastPolicy : unsigned char {
  lower,        ///< cast to the autocast dtype (f16/bf16): tensor-core ops (matmul, linear)
  fp32,         ///< cast to float32: range- or accuracy-sensitive ops (exp, log, softmax, losses, sum, norms)
  promote,      ///< cast every input to the widest input dtype (mixed f16/f32 -> f32)
  passthrough,  ///< run in whatever dtype the inputs have (cheap or exact ops: relu, max, reshape)
};

/// The policy of an op.
CastPolicy policy_for(OpKind kind);
/// "lower", "fp32", "promote", "passthrough".
const char* policy_name(CastPolicy policy);

}  // namespace mixtape::amp
