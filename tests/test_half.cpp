// f16 / bf16 conversions against independent references computed in double from the bit fields.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/half.h"
#include "core/kernels.h"
#include "core/tensor.h"

using namespace mixtape;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---- independent references -------------------------------------------------------------------

/// Value of f16 bits, computed in double from the fields. For the rounding search, the pattern
/// 0x7c00 (inf) stands for 2^16, the value one ulp above the largest finite half (65504).
double half_value(uint16_t h) {
  const int s = (h >> 15) & 1;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  double v;
  if (e == 0) {
    v = std::ldexp(static_cast<double>(m), -24);
  } else if (e == 31) {
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(1.0 + m / 1024.0, e - 15);
  }
  return s ? -v : v;
}

/// Value of bf16 bits, computed in double from the fields (8-bit exponent, bias 127, 7-bit mantissa).
double bf16_value(uint16_t b) {
  const int s = (b >> 15) & 1;
  const int e = (b >> 7) & 0xff;
  const int m = b & 0x7f;
  double v;
  if (e == 0) {
    v = std::ldexp(static_cast<double>(m), -133);
  } else if (e == 255) {
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(1.0 + m / 128.0, e - 127);
  }
  return s ? -v : v;
}

/// Brute-force round-to-nearest-even of a finite non-negative double `a` onto the positive patterns
/// [0, top], where pattern `top` (the infinity pattern) is treated as the value one ulp past the
/// largest finite number. Values are monotone in the pattern, so binary search finds the pair of
/// neighbours; the midpoint comparison (2a vs lo+hi) is exact in double.
template <class ValueFn>
uint16_t round_nearest_even(double a, uint16_t top, double top_value, ValueFn value) {
  auto val = [&](uint32_t p) { return p == top ? top_value : value(static_cast<uint16_t>(p)); };
  if (a >= top_value) return top;
  // largest p with val(p) <= a
  uint32_t lo = 0, hi = top;  // val(lo) <= a < val(hi)
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    if (val(mid) <= a) lo = mid; else hi = mid;
  }
  const double twice = 2.0 * a;
  const double sum = val(lo) + val(hi);
  if (twice < sum) return static_cast<uint16_t>(lo);
  if (twice > sum) return static_cast<uint16_t>(hi);
  return static_cast<uint16_t>((lo & 1u) ? hi : lo);  // tie: the even mantissa
}

/// Reference float -> f16 bits (finite or infinite inputs; NaN handled by callers).
uint16_t ref_float_to_half(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isinf(f)) return sign | 0x7c00;
  const double a = std::fabs(static_cast<double>(f));
  return sign | round_nearest_even(a, 0x7c00, 65536.0, half_value);
}

/// Reference float -> bf16 bits.
uint16_t ref_float_to_bf16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isinf(f)) return sign | 0x7f80;
  const double a = std::fabs(static_cast<double>(f));
  return sign | round_nearest_even(a, 0x7f80, std::ldexp(1.0, 128), bf16_value);
}

bool half_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
bool bf16_is_nan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

}  // namespace

// ================================================================================================
// The references themselves, against hand-derived values (so a broken reference cannot hide a bug).
// ================================================================================================

TEST_CASE("references agree with hand-computed values", "[half][reference]") {
  CHECK(half_value(0x3c00) == 1.0);
  CHECK(half_value(0x7bff) == 65504.0);
  CHECK(half_value(0x0001) == std::ldexp(1.0, -24));
  CHECK(half_value(0x0400) == std::ldexp(1.0, -14));
  CHECK(half_value(0xc000) == -2.0);
  CHECK(half_value(0x3555) == 0.333251953125);
  CHECK(bf16_value(0x3f80) == 1.0);
  CHECK(bf16_value(0x7f7f) == std::ldexp(255.0, 120));
  CHECK(bf16_value(0x0001) == std::ldexp(1.0, -133));
  CHECK(bf16_value(0x4049) == 3.140625);
  CHECK(ref_float_to_half(1.0f) == 0x3c00);
  CHECK(ref_float_to_half(65520.0f) == 0x7c00);
  CHECK(ref_float_to_half(65519.0f) == 0x7bff);
  CHECK(ref_float_to_half(std::ldexp(1.0f, -25)) == 0x0000);
  CHECK(ref_float_to_half(std::ldexp(3.0f, -25)) == 0x0002);
  CHECK(ref_float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(ref_float_to_half(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);
  CHECK(ref_float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  CHECK(ref_float_to_bf16(1.0f + std::ldexp(3.0f, -8)) == 0x3f82);
  CHECK(ref_float_to_bf16(3.14159265f) == 0x4049);
}

// ================================================================================================
// f16
// ================================================================================================

TEST_CASE("f16: all 65536 bit patterns decode exactly and round-trip through float", "[half][f16]") {
  int mismatched_value = 0, mismatched_roundtrip = 0;
  for (uint32_t p = 0; p < 65536; ++p) {
    const uint16_t h = static_cast<uint16_t>(p);
    const float f = half_bits_to_float(h);
    const uint16_t back = float_to_half_bits(f);
    if (half_is_nan(h)) {
      if (!std::isnan(f) || std::signbit(f) != static_cast<bool>(h & 0x8000)) ++mismatched_value;
      if (!half_is_nan(back) || (back & 0x8000) != (h & 0x8000)) ++mismatched_roundtrip;
      continue;
    }
    const double ref = half_value(h);
    if (static_cast<double>(f) != ref || std::signbit(f) != static_cast<bool>(h & 0x8000)) {
      ++mismatched_value;
      if (mismatched_value < 5) FAIL_CHECK("half_bits_to_float(0x" << std::hex << p << ") = " << f << ", expected " << ref);
    }
    if (back != h) {
      ++mismatched_roundtrip;
      if (mismatched_roundtrip < 5)
        FAIL_CHECK("float_to_half_bits(half_bits_to_float(0x" << std::hex << p << ")) = 0x" << back);
    }
  }
  CHECK(mismatched_value == 0);
  CHECK(mismatched_roundtrip == 0);
}

TEST_CASE("f16: the Half struct stores and converts like the scalar functions", "[half][f16]") {
  STATIC_REQUIRE(sizeof(Half) == 2);
  STATIC_REQUIRE(alignof(Half) == 2);
  STATIC_REQUIRE(sizeof(BFloat16) == 2);
  STATIC_REQUIRE(alignof(BFloat16) == 2);
  CHECK(Half(1.0f).bits == 0x3c00);
  CHECK(Half(-2.0f).bits == 0xc000);
  CHECK(static_cast<float>(Half::from_bits(0x3555)) == 0.333251953125f);
  CHECK(BFloat16(1.0f).bits == 0x3f80);
  CHECK(static_cast<float>(BFloat16::from_bits(0xc040)) == -3.0f);
}

TEST_CASE("f16: every tie between consecutive halves rounds to even, neighbours round to nearest", "[half][f16]") {
  int failures = 0;
  for (uint32_t p = 0; p < 0x7c00; ++p) {  // pairs (p, p+1); p+1 == 0x7c00 is the overflow boundary
    const double lo = half_value(static_cast<uint16_t>(p));
    const double hi = p + 1 == 0x7c00 ? 65536.0 : half_value(static_cast<uint16_t>(p + 1));
    const double mid_d = (lo + hi) / 2;
    const float mid = static_cast<float>(mid_d);
    REQUIRE(static_cast<double>(mid) == mid_d);  // midpoints need 12 significant bits: exact in float
    const uint16_t even = (p & 1u) ? static_cast<uint16_t>(p + 1) : static_cast<uint16_t>(p);
    const float above = std::nextafter(mid, std::numeric_limits<float>::infinity());
    const float below = std::nextafter(mid, 0.0f);
    struct Case { float x; uint16_t expected; };
    const Case cases[] = {{mid, even}, {above, static_cast<uint16_t>(p + 1)}, {below, static_cast<uint16_t>(p)}};
    for (const Case& c : cases) {
      for (int s = 0; s < 2; ++s) {
        const float x = s ? -c.x : c.x;
        const uint16_t expected = static_cast<uint16_t>(c.expected | (s ? 0x8000 : 0));
        const uint16_t ref = ref_float_to_half(x);
        const uint16_t got = float_to_half_bits(x);
        if (ref != expected || got != expected) {
          ++failures;
          if (failures < 8)
            FAIL_CHECK("x=" << x << " (bits 0x" << std::hex << bits_of(x) << "): expected 0x" << expected << ", reference 0x"
                            << ref << ", float_to_half_bits 0x" << got);
        }
      }
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("f16: random floats round like the brute-force reference", "[half][f16]") {
  std::mt19937 rng(20240601);
  int failures = 0;
  auto check_one = [&](float x) {
    if (std::isnan(x)) return;
    const uint16_t ref = ref_float_to_half(x);
    const uint16_t got = float_to_half_bits(x);
    if (ref != got) {
      ++failures;
      if (failures < 8)
        FAIL_CHECK("x=" << x << " (bits 0x" << std::hex << bits_of(x) << "): reference 0x" << ref << ", got 0x" << got);
    }
  };
  // Uniform over all bit patterns: the whole float range, incl. float subnormals and huge values.
  for (int i = 0; i < 200000; ++i) check_one(float_of(rng()));
  // Concentrated on the interesting range: exponents from 2^-27 (below the smallest half subnormal)
  // to 2^17 (past the overflow threshold), any mantissa, both signs.
  std::uniform_int_distribution<int> exp_dist(127 - 27, 127 + 17);
  for (int i = 0; i < 400000; ++i) {
    const uint32_t bits = (rng() & 0x807fffffu) | (static_cast<uint32_t>(exp_dist(rng)) << 23);
    check_one(float_of(bits));
  }
  // Floats with few mantissa bits hit ties and near-ties far more often than random ones.
  // (the 13 low float mantissa bits are the ones a normal half drops: 0x1000 is a tie)
  for (int i = 0; i < 100000; ++i) {
    const uint32_t base = (rng() & 0x807fe000u) | (static_cast<uint32_t>(exp_dist(rng)) << 23);
    for (uint32_t low : {0x0000u, 0x0fffu, 0x1000u, 0x1001u}) check_one(float_of(base | low));
  }
  CHECK(failures == 0);
}

TEST_CASE("f16: overflow, infinities and the largest finite value", "[half][f16]") {
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65519.99f) == 0x7bff);
  CHECK(float_to_half_bits(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);  // tie between 65504 (odd) and 2^16: rounds to inf
  CHECK(float_to_half_bits(65536.0f) == 0x7c00);
  CHECK(float_to_half_bits(1e10f) == 0x7c00);
  CHECK(float_to_half_bits(std::numeric_limits<float>::max()) == 0x7c00);
  CHECK(float_to_half_bits(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(float_to_half_bits(-std::numeric_limits<float>::infinity()) == 0xfc00);
  CHECK(float_to_half_bits(-65504.0f) == 0xfbff);
  CHECK(float_to_half_bits(-65520.0f) == 0xfc00);
  CHECK(float_to_half_bits(-1e10f) == 0xfc00);
  CHECK(std::isinf(half_bits_to_float(0x7c00)));
  CHECK(half_bits_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(half_bits_to_float(0x7bff) == 65504.0f);
}

TEST_CASE("f16: subnormals and the smallest normal", "[half][f16]") {
  const float sub = std::ldexp(1.0f, -24);  // smallest positive subnormal half
  CHECK(float_to_half_bits(sub) == 0x0001);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000);         // tie with 0: to even (0)
  CHECK(float_to_half_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(float_to_half_bits(std::nextafter(std::ldexp(1.0f, -25), 0.0f)) == 0x0000);
  CHECK(float_to_half_bits(1.5f * sub) == 0x0002);                    // tie 1|2: to even (2)
  CHECK(float_to_half_bits(2.5f * sub) == 0x0002);                    // tie 2|3: to even (2)
  CHECK(float_to_half_bits(3.5f * sub) == 0x0004);                    // tie 3|4: to even (4)
  CHECK(float_to_half_bits(1.25f * sub) == 0x0001);
  CHECK(float_to_half_bits(1.75f * sub) == 0x0002);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -30)) == 0x0000);
  CHECK(float_to_half_bits(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(float_to_half_bits(-std::numeric_limits<float>::denorm_min()) == 0x8000);  // sign survives underflow
  CHECK(float_to_half_bits(-std::ldexp(1.0f, -26)) == 0x8000);
  CHECK(float_to_half_bits(-sub) == 0x8001);
  CHECK(float_to_half_bits(1023.0f * sub) == 0x03ff);                 // largest subnormal
  CHECK(float_to_half_bits(1023.5f * sub) == 0x0400);                 // tie 0x3ff|0x400: to even (normal)
  CHECK(float_to_half_bits(std::nextafter(1023.5f * sub, 0.0f)) == 0x03ff);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -14)) == 0x0400);         // smallest normal
  CHECK(float_to_half_bits(std::nextafter(std::ldexp(1.0f, -14), 0.0f)) == 0x0400);
  CHECK(half_bits_to_float(0x0001) == sub);
  CHECK(half_bits_to_float(0x03ff) == 1023.0f * sub);
  CHECK(half_bits_to_float(0x8001) == -sub);
}

TEST_CASE("f16: signed zero and NaN", "[half][f16]") {
  CHECK(float_to_half_bits(0.0f) == 0x0000);
  CHECK(float_to_half_bits(-0.0f) == 0x8000);
  CHECK(bits_of(half_bits_to_float(0x8000)) == 0x80000000u);
  CHECK(bits_of(half_bits_to_float(0x0000)) == 0x00000000u);

  const float qnan = std::numeric_limits<float>::quiet_NaN();
  const uint16_t h = float_to_half_bits(qnan);
  CHECK(half_is_nan(h));
  CHECK((h & 0x0200) != 0);  // quiet
  CHECK((h & 0x8000) == 0);
  const uint16_t hn = float_to_half_bits(-qnan);
  CHECK(half_is_nan(hn));
  CHECK((hn & 0x8000) != 0);
  // A NaN whose payload sits only in the low mantissa bits (lost by truncation) must stay a NaN.
  for (uint32_t payload : {0x1u, 0x1fffu, 0x400000u, 0x2000u}) {
    const uint16_t r = float_to_half_bits(float_of(0x7f800000u | payload));
    CHECK(half_is_nan(r));
    CHECK((r & 0x0200) != 0);
  }
  CHECK(std::isnan(half_bits_to_float(0x7e00)));
  CHECK(std::isnan(half_bits_to_float(0x7c01)));
  CHECK(std::isnan(half_bits_to_float(0xfe00)));
}

// ================================================================================================
// bf16
// ================================================================================================

TEST_CASE("bf16: all 65536 bit patterns decode exactly and round-trip through float", "[half][bf16]") {
  int failures = 0;
  for (uint32_t p = 0; p < 65536; ++p) {
    const uint16_t b = static_cast<uint16_t>(p);
    const float f = bfloat16_bits_to_float(b);
    const uint16_t back = float_to_bfloat16_bits(f);
    bool ok;
    if (bf16_is_nan(b)) {
      ok = std::isnan(f) && bf16_is_nan(back) && (back & 0x8000) == (b & 0x8000);
    } else {
      ok = static_cast<double>(f) == bf16_value(b) && std::signbit(f) == static_cast<bool>(b & 0x8000) && back == b;
    }
    if (!ok) {
      ++failures;
      if (failures < 8) FAIL_CHECK("bf16 pattern 0x" << std::hex << p << ": float " << f << ", back 0x" << back);
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("bf16: every tie rounds to even, neighbours round to nearest", "[half][bf16]") {
  int failures = 0;
  for (uint32_t p = 0; p < 0x7f80; ++p) {
    const double lo = bf16_value(static_cast<uint16_t>(p));
    const double hi = p + 1 == 0x7f80 ? std::ldexp(1.0, 128) : bf16_value(static_cast<uint16_t>(p + 1));
    const double mid_d = (lo + hi) / 2;
    // (the last midpoint, 2^128 - 2^119, is below FLT_MAX = 2^128 - 2^104, so still a float)
    const float mid = static_cast<float>(mid_d);
    REQUIRE(static_cast<double>(mid) == mid_d);
    const uint16_t even = (p & 1u) ? static_cast<uint16_t>(p + 1) : static_cast<uint16_t>(p);
    const float above = std::nextafter(mid, std::numeric_limits<float>::infinity());
    const float below = std::nextafter(mid, 0.0f);
    struct Case { float x; uint16_t expected; };
    const Case cases[] = {{mid, even}, {above, static_cast<uint16_t>(p + 1)}, {below, static_cast<uint16_t>(p)}};
    for (const Case& c : cases) {
      for (int s = 0; s < 2; ++s) {
        const float x = s ? -c.x : c.x;
        const uint16_t expected = static_cast<uint16_t>(c.expected | (s ? 0x8000 : 0));
        const uint16_t ref = ref_float_to_bf16(x);
        const uint16_t got = float_to_bfloat16_bits(x);
        if (ref != expected || got != expected) {
          ++failures;
          if (failures < 8)
            FAIL_CHECK("x=" << x << " (bits 0x" << std::hex << bits_of(x) << "): expected 0x" << expected << ", reference 0x"
                            << ref << ", got 0x" << got);
        }
      }
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("bf16: random floats round like the brute-force reference", "[half][bf16]") {
  std::mt19937 rng(77);
  int failures = 0;
  for (int i = 0; i < 600000; ++i) {
    uint32_t bits = rng();
    if (i % 3 == 1) bits = (bits & ~0xffffu) | 0x8000u | (rng() & 1u ? 0 : (rng() & 3u));  // ties and near-ties
    const float x = float_of(bits);
    if (std::isnan(x)) continue;
    const uint16_t ref = ref_float_to_bf16(x);
    const uint16_t got = float_to_bfloat16_bits(x);
    if (ref != got) {
      ++failures;
      if (failures < 8)
        FAIL_CHECK("x=" << x << " (bits 0x" << std::hex << bits << "): reference 0x" << ref << ", got 0x" << got);
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("bf16: overflow, subnormals, signed zero and NaN", "[half][bf16]") {
  const float bf_max = static_cast<float>(std::ldexp(255.0, 120));  // 0x7f7f
  CHECK(float_to_bfloat16_bits(bf_max) == 0x7f7f);
  CHECK(float_to_bfloat16_bits(std::numeric_limits<float>::max()) == 0x7f80);  // above the 0x7f7f|inf midpoint
  CHECK(float_to_bfloat16_bits(-std::numeric_limits<float>::max()) == 0xff80);
  CHECK(float_to_bfloat16_bits(static_cast<float>(std::ldexp(511.0, 119))) == 0x7f80);  // exact tie: to even (inf)
  CHECK(float_to_bfloat16_bits(std::nextafter(static_cast<float>(std::ldexp(511.0, 119)), 0.0f)) == 0x7f7f);
  CHECK(float_to_bfloat16_bits(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(float_to_bfloat16_bits(-std::numeric_limits<float>::infinity()) == 0xff80);
  // subnormals: bf16 has float's exponent range, subnormal spacing 2^-133
  CHECK(float_to_bfloat16_bits(std::ldexp(1.0f, -133)) == 0x0001);
  CHECK(float_to_bfloat16_bits(std::ldexp(1.0f, -134)) == 0x0000);  // tie with 0
  CHECK(float_to_bfloat16_bits(std::ldexp(3.0f, -134)) == 0x0002);  // tie 1|2
  CHECK(float_to_bfloat16_bits(std::numeric_limits<float>::min()) == 0x0080);
  CHECK(float_to_bfloat16_bits(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(float_to_bfloat16_bits(-std::numeric_limits<float>::denorm_min()) == 0x8000);
  CHECK(float_to_bfloat16_bits(0.0f) == 0x0000);
  CHECK(float_to_bfloat16_bits(-0.0f) == 0x8000);
  CHECK(float_to_bfloat16_bits(1.0f) == 0x3f80);
  CHECK(float_to_bfloat16_bits(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);  // tie 1|1+2^-7: even
  CHECK(float_to_bfloat16_bits(1.0f + std::ldexp(3.0f, -8)) == 0x3f82);
  // NaN stays NaN (a naive +0x7fff rounding turns NaNs with a low payload into inf or flips them)
  for (uint32_t bits : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7f80ffffu, 0x7fffffffu, 0xff800001u, 0x7f808000u}) {
    const uint16_t r = float_to_bfloat16_bits(float_of(bits));
    CHECK(bf16_is_nan(r));
    CHECK((r & 0x8000) == ((bits >> 16) & 0x8000));
    CHECK((r & 0x0040) != 0);  // quiet
  }
}

// ================================================================================================
// Tensor casts use the same rounding as the scalar functions
// ================================================================================================

namespace {
std::vector<float> cast_probe_values() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, 1e10f, -1e10f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::ldexp(1.0f, -24), std::ldexp(1.0f, -25), 1.5f * std::ldexp(1.0f, -24),
                          std::ldexp(1.0f, -14), 1.0f + std::ldexp(1.0f, -11), 1.0f + std::ldexp(3.0f, -11),
                          1.0f + std::ldexp(1.0f, -8), 1.0f + std::ldexp(3.0f, -8), 3.14159265f,
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min()};
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> exp_dist(127 - 30, 127 + 18);
  for (int i = 0; i < 4000; ++i) v.push_back(float_of((rng() & 0x807fffffu) | (static_cast<uint32_t>(exp_dist(rng)) << 23)));
  for (int i = 0; i < 1000; ++i) {
    const float f = float_of(rng());
    if (!std::isnan(f)) v.push_back(f);
  }
  return v;
}
}  // namespace

TEST_CASE("kernels::cast f32 -> f16 -> f32 matches the scalar conversions bit for bit", "[half][cast]") {
  const std::vector<float> values = cast_probe_values();
  const Tensor x = from_vector(values, Shape{static_cast<int64_t>(values.size())});
  const Tensor h = kernels::cast(x, DType::f16);
  REQUIRE(h.dtype() == DType::f16);
  REQUIRE(h.shape() == x.shape());
  const Half* hp = h.data<Half>();
  int bad = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (hp[i].bits != float_to_half_bits(values[i]) && ++bad < 5)
      FAIL_CHECK("f32->f16 of " << values[i] << ": 0x" << std::hex << hp[i].bits << " vs 0x" << float_to_half_bits(values[i]));
  CHECK(bad == 0);

  const Tensor back = kernels::cast(h, DType::f32);
  REQUIRE(back.dtype() == DType::f32);
  const float* bp = back.data<float>();
  bad = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (bits_of(bp[i]) != bits_of(half_bits_to_float(hp[i].bits)) && ++bad < 5)
      FAIL_CHECK("f16->f32 of 0x" << std::hex << hp[i].bits << ": " << bp[i]);
  CHECK(bad == 0);

  // NaN survives the tensor cast as a NaN
  const Tensor n = kernels::cast(from_vector(std::vector<float>{std::numeric_limits<float>::quiet_NaN()}), DType::f16);
  CHECK(half_is_nan(n.data<Half>()[0].bits));
}

TEST_CASE("kernels::cast f32 -> bf16 -> f32 matches the scalar conversions bit for bit", "[half][cast]") {
  const std::vector<float> values = cast_probe_values();
  const Tensor x = from_vector(values, Shape{static_cast<int64_t>(values.size())});
  const Tensor b = kernels::cast(x, DType::bf16);
  REQUIRE(b.dtype() == DType::bf16);
  const BFloat16* bp = b.data<BFloat16>();
  int bad = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (bp[i].bits != float_to_bfloat16_bits(values[i]) && ++bad < 5)
      FAIL_CHECK("f32->bf16 of " << values[i] << ": 0x" << std::hex << bp[i].bits);
  CHECK(bad == 0);
  const Tensor back = kernels::cast(b, DType::f32);
  const float* fp = back.data<float>();
  bad = 0;
  for (size_t i = 0; i < values.size(); ++i)
    if (bits_of(fp[i]) != bits_of(bfloat16_bits_to_float(bp[i].bits)) && ++bad < 5) FAIL_CHECK("bf16->f32 mismatch at " << i);
  CHECK(bad == 0);
  const Tensor n = kernels::cast(from_vector(std::vector<float>{-std::numeric_limits<float>::quiet_NaN()}), DType::bf16);
  CHECK(bf16_is_nan(n.data<BFloat16>()[0].bits));
}

TEST_CASE("kernels::cast between f16, bf16 and f64 goes through exact values", "[half][cast]") {
  // every finite f16 value is exactly a double and a float
  std::vector<Half> all;
  for (uint32_t p = 0; p < 65536; ++p)
    if (!half_is_nan(static_cast<uint16_t>(p))) all.push_back(Half::from_bits(static_cast<uint16_t>(p)));
  const Tensor h = from_vector(all, Shape{static_cast<int64_t>(all.size())});
  const Tensor d = kernels::cast(h, DType::f64);
  REQUIRE(d.dtype() == DType::f64);
  const double* dp = d.data<double>();
  int bad = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (dp[i] != half_value(all[i].bits) && ++bad < 5) FAIL_CHECK("f16->f64 of 0x" << std::hex << all[i].bits << ": " << dp[i]);
  CHECK(bad == 0);
  const Tensor h2 = kernels::cast(d, DType::f16);
  const Half* hp = h2.data<Half>();
  bad = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (hp[i].bits != all[i].bits && ++bad < 5) FAIL_CHECK("f64->f16 round trip of 0x" << std::hex << all[i].bits);
  CHECK(bad == 0);
  // f16 -> bf16 rounds the (exact) float value once
  const Tensor b = kernels::cast(h, DType::bf16);
  const BFloat16* bp = b.data<BFloat16>();
  bad = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (bp[i].bits != ref_float_to_bf16(half_bits_to_float(all[i].bits)) && ++bad < 5)
      FAIL_CHECK("f16->bf16 of 0x" << std::hex << all[i].bits << ": 0x" << bp[i].bits);
  CHECK(bad == 0);
}

TEST_CASE("f64 -> f16/bf16 rounds the double once (no double rounding through float)", "[half][cast]") {
  // Just above a half/bf16 tie by less than a float ulp: going through float first lands exactly on the
  // tie and rounds to even (down); rounding the double directly rounds up.
  const double tiny = std::ldexp(1.0, -40);
  std::vector<double> values = {1.0 + std::ldexp(1.0, -11) + tiny, 1.0 + std::ldexp(1.0, -11) - tiny,
                                1.0 + std::ldexp(1.0, -8) + tiny, -(1.0 + std::ldexp(1.0, -8) + tiny),
                                65520.0 - std::ldexp(1.0, -20), std::ldexp(1.0, -25) + std::ldexp(1.0, -60)};
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int> e(-26, 16);
  // midpoint between the two representable neighbours of m whose spacing is 2^spacing_exp
  auto midpoint = [](double m, int spacing_exp) {
    return (std::floor(std::ldexp(m, -spacing_exp)) + 0.5) * std::ldexp(1.0, spacing_exp);
  };
  for (int i = 0; i < 20000; ++i) {
    const double m = std::ldexp(1.0 + static_cast<double>(rng() >> 11) * std::ldexp(1.0, -53), e(rng));
    const int ex = std::ilogb(m);
    const double mids[] = {midpoint(m, std::max(ex, -14) - 10),  // f16 tie (subnormal spacing 2^-24)
                           midpoint(m, ex - 7)};                 // bf16 tie
    for (double mid : mids) {
      // perturbed below float resolution: through float it would become an exact tie
      const double off = std::ldexp(mid, -40) * ((rng() & 1) ? 1 : -1);
      values.push_back((rng() & 1 ? 1 : -1) * (mid + off));
    }
    values.push_back(m);
  }
  const Tensor d = from_vector(values, Shape{static_cast<int64_t>(values.size())});
  REQUIRE(d.dtype() == DType::f64);
  const Tensor h = kernels::cast(d, DType::f16);
  const Tensor b = kernels::cast(d, DType::bf16);
  const Half* hp = h.data<Half>();
  const BFloat16* bp = b.data<BFloat16>();
  int bad = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double a = std::fabs(values[i]);
    const uint16_t sign = std::signbit(values[i]) ? 0x8000 : 0;
    const uint16_t rh = sign | round_nearest_even(a, 0x7c00, 65536.0, half_value);
    const uint16_t rb = sign | round_nearest_even(a, 0x7f80, std::ldexp(1.0, 128), bf16_value);
    if ((hp[i].bits != rh || bp[i].bits != rb) && ++bad < 5)
      FAIL_CHECK("f64 " << values[i] << ": f16 0x" << std::hex << hp[i].bits << " (ref 0x" << rh << "), bf16 0x" << bp[i].bits
                        << " (ref 0x" << rb << ")");
  }
  CHECK(bad == 0);
  CHECK(hp[0].bits == 0x3c01);
  CHECK(hp[1].bits == 0x3c00);
  CHECK(bp[2].bits == 0x3f81);
  CHECK(bp[3].bits == 0xbf81);
  CHECK(hp[4].bits == 0x7bff);
  CHECK(hp[5].bits == 0x0001);
  // full() takes a double and rounds it once too
  CHECK(full(Shape{1}, values[0], DType::f16).data<Half>()[0].bits == 0x3c01);
  CHECK(full(Shape{1}, values[2], DType::bf16).data<BFloat16>()[0].bits == 0x3f81);
}
