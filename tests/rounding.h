#pragma once
// Rounding bounds the precision tests share.
#include <cmath>

#include "core/dtype.h"

namespace mixtape::testing {

/// Unit roundoff of one round-to-nearest into `dt`: 2^-24 (f32), 2^-11 (f16), 2^-8 (bf16), 2^-53 (f64).
inline double unit_roundoff(DType dt) {
  switch (dt) {
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::bf16: return std::ldexp(1.0, -8);
    case DType::f64: return std::ldexp(1.0, -53);
    default: return std::ldexp(1.0, -24);
  }
}

/// Unit roundoff of the accumulate type of `dt`: float for f32/f16/bf16, double for f64.
inline double acc_unit_roundoff(DType dt) { return unit_roundoff(dt == DType::f64 ? DType::f64 : DType::f32); }

}  // namespace mixtape::testing
