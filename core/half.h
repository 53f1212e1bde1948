#pragma once
// 16-bit floating-point storage types, bit-compatible with CUDA's __half and __nv_bfloat16.
// Conversions from float round to nearest even and handle subnormals, ±inf and NaN exactly;
// arithmetic happens in float (the accumulate type), so these types only store.
#include <cstdint>
#include <cstring>

#include "core/macros.h"

namespace mixtape {

namespace detail {
/// The bits of a float.
MIXTAPE_HD MIXTAPE_INLINE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
/// The float with these bits.
MIXTAPE_HD MIXTAPE_INLINE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
}  // namespace detail

/// IEEE binary16 bits from a float, round to nearest even (overflow to ±inf, subnormals kept).
MIXTAPE_HD MIXTAPE_INLINE uint16_t float_to_half_bits(float f) {
  uint32_t x = detail::float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf or NaN: keep the top payload bits, force a quiet NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u));
  }
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax >= 0x38800000u) {                                              // normal half (>= 2^-14)
    const uint32_t odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + odd;  // rebias exponent by -112 and round to nearest even
    return static_cast<uint16_t>(sign | (ax >> 13));
  }
  // Subnormal half or zero: adding 0.5f aligns the value so the FPU's own rounding (to nearest even)
  // produces the 10-bit subnormal mantissa in the low bits.
  const float v = detail::bits_float(ax) + 0.5f;
  return static_cast<uint16_t>(sign | (detail::float_bits(v) - 0x3f000000u));
}

/// The float value of IEEE binary16 bits (exact).
MIXTAPE_HD MIXTAPE_INLINE float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  uint32_t bits;
  if (e == 0x1fu) {
    bits = sign | 0x7f800000u | (m << 13);
  } else if (e == 0) {
    if (m == 0) {
      bits = sign;
    } else {  // subnormal: normalise the mantissa
      e = 113;
      while (!(m & 0x400u)) {
        m <<= 1;
        --e;
      }
      bits = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((e + 112u) << 23) | (m << 13);
  }
  return detail::bits_float(bits);
}

/// bfloat16 bits from a float, round to nearest even (NaN stays a quiet NaN).
MIXTAPE_HD MIXTAPE_INLINE uint16_t float_to_bfloat16_bits(float f) {
  uint32_t x = detail::float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

/// The float value of bfloat16 bits (exact).
MIXTAPE_HD MIXTAPE_INLINE float bfloat16_bits_to_float(uint16_t b) {
  return detail::bits_float(static_cast<uint32_t>(b) << 16);
}

/// IEEE binary16 storage type (DType::f16).
struct alignas(2) Half {
  uint16_t bits = 0;
  Half() = default;
  MIXTAPE_HD Half(float f) : bits(float_to_half_bits(f)) {}  // NOLINT: implicit like CUDA's __half
  MIXTAPE_HD operator float() const { return half_bits_to_float(bits); }
  /// A Half with exactly these bits.
  MIXTAPE_HD static Half from_bits(uint16_t b) {
    Half h;
    h.bits = b;
    return h;
  }
};

/// bfloat16 storage type (DType::bf16).
struct alignas(2) BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  MIXTAPE_HD BFloat16(float f) : bits(float_to_bfloat16_bits(f)) {}  // NOLINT
  MIXTAPE_HD operator float() const { return bfloat16_bits_to_float(bits); }
  /// A BFloat16 with exactly these bits.
  MIXTAPE_HD static BFloat16 from_bits(uint16_t b) {
    BFloat16 h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "16-bit types must be 2 bytes");

}  // namespace mixtape
