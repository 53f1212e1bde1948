// Exhaustive check (not a test, not part of the build) that the vectorised conversions of core/cpu/cpu_simd.cpp
// are bit-identical to the scalar ones of core/half.h: every f16/bf16 pattern widened, every float narrowed.
//   g++ -O2 -std=c++20 -I. apps/bench/simd_check.cpp core/cpu/cpu_simd.cpp -o /tmp/simd_check && /tmp/simd_check
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/cpu/cpu_simd.h"

using namespace mixtape;

int main() {
  std::printf("avx2+f16c: %d\n", cpu::simd_avx2_f16c() ? 1 : 0);
  long bad = 0;
  std::vector<Half> h(65536);
  std::vector<BFloat16> b(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i].bits = b[i].bits = static_cast<uint16_t>(i);
  std::vector<float> f(65536);
  cpu::widen(h.data(), f.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float r = half_bits_to_float(static_cast<uint16_t>(i));
    if (std::memcmp(&r, &f[i], 4)) ++bad;
  }
  cpu::widen(b.data(), f.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float r = bfloat16_bits_to_float(static_cast<uint16_t>(i));
    if (std::memcmp(&r, &f[i], 4)) ++bad;
  }
  std::printf("widen mismatches: %ld\n", bad);
  const size_t chunk = 1 << 20;
  std::vector<uint32_t> u(chunk);
  std::vector<Half> ho(chunk);
  std::vector<BFloat16> bo(chunk);
  long badh = 0, badb = 0;
  for (uint64_t base = 0; base < (1ull << 32); base += chunk) {
    for (size_t j = 0; j < chunk; ++j) u[j] = static_cast<uint32_t>(base + j);
    const float* src = reinterpret_cast<const float*>(u.data());
    cpu::narrow(src + 3, ho.data(), static_cast<int64_t>(chunk - 3));  // unaligned, with a scalar tail
    cpu::narrow(src + 3, bo.data(), static_cast<int64_t>(chunk - 3));
    for (size_t j = 0; j + 3 < chunk; ++j) {
      if (ho[j].bits != float_to_half_bits(src[j + 3])) ++badh;
      if (bo[j].bits != float_to_bfloat16_bits(src[j + 3])) ++badb;
    }
  }
  std::printf("narrow mismatches: f16 %ld, bf16 %ld\n", badh, badb);
  return bad || badh || badb;
}
