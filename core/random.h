#pragma once
// Counter-based random numbers (Philox-4x32-10): element i of a draw depends only on (seed, offset, i),
// so the CPU and CUDA backends produce the same numbers for the same seed.
#include <cmath>
#include <cstdint>

#include "core/macros.h"

namespace mixtape {

/// Four 32-bit random words for counter (ctr_lo, ctr_hi) under key `seed`, draw `offset`.
struct Philox4 {
  uint32_t v[4];
};

MIXTAPE_HD MIXTAPE_INLINE Philox4 philox4x32(uint64_t seed, uint64_t offset, uint64_t index) {
  uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32);
  uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

/// Uniform float in [0, 1) from 24 random bits.
MIXTAPE_HD MIXTAPE_INLINE float uniform_from_bits(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

/// Element i of a uniform [0,1) draw with `bits` random bits (24 for f32, 11 for f16, 8 for bf16, so the
/// value is exactly representable in the target dtype and never rounds up to 1).
MIXTAPE_HD MIXTAPE_INLINE float random_uniform(uint64_t seed, uint64_t offset, uint64_t i, int bits = 24) {
  const uint32_t x = philox4x32(seed, offset, i).v[0] >> (32 - bits);
  return static_cast<float>(x) * (1.0f / static_cast<float>(1u << bits));
}

/// Element i of a standard normal draw (Box-Muller on two words of the same counter).
MIXTAPE_HD MIXTAPE_INLINE float random_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32(seed, offset, i);
  const float u1 = (static_cast<float>(r.v[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
  const float u2 = uniform_from_bits(r.v[1]);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

/// A seeded source of draws: each draw takes the next offset, so draws never repeat for one seed.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  /// Restarts the sequence from `seed`.
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  /// Restores a saved (seed, offset) state.
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  /// Reserves one draw; returns its offset.
  uint64_t next_offset() { return offset_++; }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

/// The process-wide default generator (used when a factory gets none).
Generator& default_generator();
/// Seeds the default generator.
void manual_seed(uint64_t seed);

}  // namespace mixtape
