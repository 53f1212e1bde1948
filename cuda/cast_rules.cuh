#pragma once
// The CPU backend's conversion rules (core/cpu/cpu_backend.h store<T>, CpuBackend::cast) written once for host
// and device (MIXTAPE_HD), so the CUDA kernels store exactly what the CPU stores. Plain C++ apart from the
// __CUDA_ARCH__ branches: tests/test_broadcast_index.cpp checks it on the host against CpuBackend::cast.
//
//   float targets  round to nearest even; double -> f16/bf16 goes through a float rounded to odd (one rounding)
//   i64 targets    truncate toward zero; NaN and values outside [-2^63, 2^63) give INT64_MIN (x86 cvttsd2si)
//   u8 targets     truncate to int32 and keep the low byte; NaN and values outside the int32 range give 0
//                  (what g++ emits for static_cast<uint8_t>(floating) on x86-64: cvttsd2si to 32 bits)
//   integer and f16/bf16 sources widen exactly first (to double, resp. float), as the CPU does
#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "core/macros.h"

namespace mixtape::cast_rules {

/// A float from a double, rounded to odd (see cpu::double_to_float_round_odd).
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

/// double -> int64 as x86-64's cvttsd2si (the CPU backend's static_cast).
MIXTAPE_HD MIXTAPE_INLINE int64_t to_i64(double d) {
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return INT64_MIN;
  return static_cast<int64_t>(d);
}

/// double -> uint8 as g++ on x86-64: truncate to int32 (out of range or NaN: 0x80000000), keep the low byte.
MIXTAPE_HD MIXTAPE_INLINE uint8_t to_u8(double d) {
  if (!(d > -2147483649.0 && d < 2147483648.0)) return 0;
  return static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(d)) & 0xffu);
}

/// Stores an accumulate-type value (float or double) into storage type T, rounding once (cpu::store<T>).
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

/// CpuBackend::cast of one element from S to T.
template <class T, class S>
MIXTAPE_HD MIXTAPE_INLINE T convert(S v) {
  if constexpr (std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>) {
    return store<T>(static_cast<float>(v));  // widening is exact
  } else if constexpr (std::is_same_v<S, int64_t> || std::is_same_v<S, uint8_t>) {
    return store<T>(static_cast<double>(v));  // as the CPU: even i64 -> i64 goes through double
  } else {
    return store<T>(v);
  }
}

}  // namespace mixtape::cast_rules
