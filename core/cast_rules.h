#pragma once
// How a value is stored into a dtype: written once for the CPU backend and the CUDA kernels (MIXTAPE_HD), so both
// store exactly the same bits (DESIGN §3). Plain C++ apart from MIXTAPE_HD.
//
//   floating targets   round to nearest even, once: a double goes to f16/bf16 through a float rounded to odd, and
//                      an i64 to f32/f16/bf16 through a double rounded to odd, so there is never a double rounding
//   floating -> i64    truncate toward zero and saturate: NaN -> 0, >= 2^63 -> INT64_MAX, < -2^63 -> INT64_MIN
//   floating -> u8     truncate toward zero and saturate: NaN -> 0, <= 0 -> 0, >= 255 -> 255
//   i64 -> u8          the low 8 bits (modulo 256, as C++ and PyTorch convert integers); i64 -> i64 and u8 -> any
//                      integer are exact
//   f16/bf16 sources   widen to float exactly first
// C++ leaves float-to-integer conversion of NaN and out-of-range values undefined, and PyTorch inherits that;
// mixtape defines it (the saturating rule of Rust's `as` and Java) and tests it on both backends.
#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "core/macros.h"

namespace mixtape::cast_rules {

/// A float from a double, rounded to odd: rounding that float to f16/bf16 (to nearest even) then gives the same
/// result as rounding the double directly, since float has at least two more bits.
MIXTAPE_HD MIXTAPE_INLINE float double_to_float_round_odd(double d) {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) == d || d != d || !(f - f == 0.0f)) return f;  // exact, NaN or overflow
  uint32_t bits = detail::float_bits(f);
  const double af = static_cast<double>(f) < 0 ? -static_cast<double>(f) : static_cast<double>(f);
  const double ad = d < 0 ? -d : d;
  if (af > ad) --bits;  // truncate toward zero
  bits |= 1u;           // sticky: odd
  return detail::bits_float(bits);
}

/// An int64 as a double rounded to odd (exact below 2^53): a later rounding to fewer bits is then a single one.
MIXTAPE_HD MIXTAPE_INLINE double i64_to_double_round_odd(int64_t v) {
  const bool neg = v < 0;
  uint64_t a = neg ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  int shift = 0;
  while ((a >> shift) >= (uint64_t{1} << 53)) ++shift;  // bits beyond double's 53
  if (shift > 0) {
    const uint64_t lost = a & ((uint64_t{1} << shift) - 1);
    a = (a >> shift) | (lost != 0 ? 1u : 0u);  // truncate, keep a sticky odd bit
  }
  double d = static_cast<double>(a);  // exact: a < 2^53
  for (int i = 0; i < shift; ++i) d *= 2.0;
  return neg ? -d : d;
}

/// floating -> int64: truncation toward zero, saturating; NaN -> 0.
MIXTAPE_HD MIXTAPE_INLINE int64_t to_i64(double d) {
  if (d != d) return 0;
  if (d >= 9223372036854775808.0) return INT64_MAX;
  if (d < -9223372036854775808.0) return INT64_MIN;
  return static_cast<int64_t>(d);
}

/// floating -> uint8: truncation toward zero, saturating at 0 and 255; NaN -> 0.
MIXTAPE_HD MIXTAPE_INLINE uint8_t to_u8(double d) {
  if (!(d > 0.0)) return 0;  // NaN, negatives (down to -1 they truncate to 0 anyway)
  if (d >= 255.0) return 255;
  return static_cast<uint8_t>(d);
}

/// Stores an accumulate-type value (float or double) into storage type T, rounding once.
template <class T, class A>
MIXTAPE_HD MIXTAPE_INLINE T store(A v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    if constexpr (std::is_same_v<A, double>) return T(double_to_float_round_odd(v));
    else return T(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return to_i64(static_cast<double>(v));
  } else if constexpr (std::is_same_v<T, uint8_t>) {
    return to_u8(static_cast<double>(v));
  } else {
    return static_cast<T>(v);
  }
}

/// One element of a cast from S to T (CpuBackend::cast and the CUDA cast kernel).
template <class T, class S>
MIXTAPE_HD MIXTAPE_INLINE T convert(S v) {
  if constexpr (std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>) {
    return store<T>(static_cast<float>(v));  // widening is exact
  } else if constexpr (std::is_same_v<S, int64_t>) {
    if constexpr (std::is_same_v<T, int64_t>) return v;
    else if constexpr (std::is_same_v<T, uint8_t>) return static_cast<uint8_t>(static_cast<uint64_t>(v) & 0xffu);
    else if constexpr (std::is_same_v<T, double>) return static_cast<double>(v);
    else if constexpr (std::is_same_v<T, float>) return static_cast<float>(i64_to_double_round_odd(v));
    else return T(double_to_float_round_odd(i64_to_double_round_odd(v)));
  } else if constexpr (std::is_same_v<S, uint8_t>) {
    if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, uint8_t>) return static_cast<T>(v);
    else return store<T>(static_cast<float>(v));  // exact in every floating type
  } else {
    return store<T>(v);
  }
}

}  // namespace mixtape::cast_rules
