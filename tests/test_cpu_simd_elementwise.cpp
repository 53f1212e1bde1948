// The vectorised CPU paths (core/cpu/cpu_simd.cpp conversions, the block-widened flat elementwise loops of
// core/cpu/cpu_elementwise.cpp) against the scalar conversions of core/half.h and the generic broadcasting loop:
// bit for bit, on every f16/bf16 pattern, on special and boundary floats, at unaligned starts and odd lengths.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cpu/cpu_simd.h"
#include "core/functors.h"
#include "core/half.h"
#include "core/kernels.h"
#include "core/tensor.h"

using namespace mixtape;

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Floats whose rounding to f16/bf16 is delicate: zeros, infinities, NaNs (quiet, signalling, with payloads),
/// f16 subnormals and its overflow edge (65504, 65519.99, 65520), bf16/f16 halfway cases on both sides of even,
/// float subnormals, and a deterministic spread over the whole 32-bit pattern space.
std::vector<float> delicate_floats() {
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u,
                                0x7f800001u, 0xff800001u, 0x7fa00000u, 0x7fbfffffu, 0x7fffffffu, 0x00000001u,
                                0x807fffffu, 0x00800000u, 0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f807fffu,
                                0x3f808001u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u, 0x33800000u,
                                0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u, 0x7f7fffffu, 0xff7fffffu};
  for (uint64_t i = 0; i < (1u << 20); ++i) bits.push_back(static_cast<uint32_t>(i * 2654435761ull + 12345u));
  std::vector<float> out;
  for (uint32_t b : bits) out.push_back(bits_float(b));
  return out;
}

}  // namespace

TEST_CASE("vectorised widening of every f16 and bf16 pattern matches core/half.h bit for bit", "[cpu][simd]") {
  INFO("AVX2+F16C path in use: " << cpu::simd_avx2_f16c());
  std::vector<Half> h(65536 + 3);
  std::vector<BFloat16> b(65536 + 3);
  for (uint32_t i = 0; i < 65536; ++i) h[i + 3].bits = b[i + 3].bits = static_cast<uint16_t>(i);
  std::vector<float> f(65536 + 1);
  // start 3 elements in (unaligned for 16- and 32-byte loads); the length is 65536, then an odd one
  for (int64_t n : {int64_t{65536}, int64_t{65533}}) {
    cpu::widen(h.data() + 3, f.data() + 1, n);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += float_bits(f[i + 1]) != float_bits(half_bits_to_float(static_cast<uint16_t>(i)));
    CHECK(bad == 0);
    cpu::widen(b.data() + 3, f.data() + 1, n);
    bad = 0;
    for (int64_t i = 0; i < n; ++i)
      bad += float_bits(f[i + 1]) != float_bits(bfloat16_bits_to_float(static_cast<uint16_t>(i)));
    CHECK(bad == 0);
  }
  // lengths shorter than one vector take only the scalar tail
  for (int64_t n = 0; n < 17; ++n) {
    std::vector<float> g(17, -1.0f);
    cpu::widen(h.data() + 0x7c00 + 3 - 5, g.data(), n);  // around +inf and the first NaNs
    for (int64_t i = 0; i < n; ++i) CHECK(float_bits(g[i]) == float_bits(half_bits_to_float(static_cast<uint16_t>(0x7c00 - 5 + i))));
    for (int64_t i = n; i < 17; ++i) CHECK(g[i] == -1.0f);  // nothing written past n
  }
}

TEST_CASE("vectorised narrowing to f16 and bf16 matches core/half.h bit for bit", "[cpu][simd]") {
  INFO("AVX2+F16C path in use: " << cpu::simd_avx2_f16c());
  const std::vector<float> src = delicate_floats();
  for (int64_t start : {0, 1, 3}) {
    const int64_t n = static_cast<int64_t>(src.size()) - start - (start == 1 ? 5 : 0);  // odd tails too
    std::vector<Half> h(static_cast<size_t>(n) + 1, Half{});
    std::vector<BFloat16> b(static_cast<size_t>(n) + 1, BFloat16{});
    h[static_cast<size_t>(n)].bits = b[static_cast<size_t>(n)].bits = 0xabcd;
    cpu::narrow(src.data() + start, h.data(), n);
    cpu::narrow(src.data() + start, b.data(), n);
    int64_t bad_h = 0, bad_b = 0;
    for (int64_t i = 0; i < n; ++i) {
      bad_h += h[static_cast<size_t>(i)].bits != float_to_half_bits(src[static_cast<size_t>(start + i)]);
      bad_b += b[static_cast<size_t>(i)].bits != float_to_bfloat16_bits(src[static_cast<size_t>(start + i)]);
    }
    CHECK(bad_h == 0);
    CHECK(bad_b == 0);
    CHECK(h[static_cast<size_t>(n)].bits == 0xabcd);  // nothing written past n
    CHECK(b[static_cast<size_t>(n)].bits == 0xabcd);
  }
}

TEST_CASE("cast kernels between f32 and f16 or bf16 round like the scalar conversions", "[cpu][simd]") {
  std::vector<float> v = delicate_floats();
  v.resize(1000003);  // not a multiple of any vector width
  const Tensor x = from_vector(v, Shape{static_cast<int64_t>(v.size())});
  const std::vector<Half> h = kernels::cast(x, DType::f16).to_vector<Half>();
  const std::vector<BFloat16> b = kernels::cast(x, DType::bf16).to_vector<BFloat16>();
  int64_t bad_h = 0, bad_b = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    bad_h += h[i].bits != float_to_half_bits(v[i]);
    bad_b += b[i].bits != float_to_bfloat16_bits(v[i]);
  }
  CHECK(bad_h == 0);
  CHECK(bad_b == 0);
  // and back: widening is exact
  const std::vector<float> hf = kernels::cast(kernels::cast(x, DType::f16), DType::f32).to_vector<float>();
  int64_t bad = 0;
  for (size_t i = 0; i < v.size(); ++i) bad += float_bits(hf[i]) != float_bits(half_bits_to_float(h[i].bits));
  CHECK(bad == 0);
}

TEMPLATE_TEST_CASE("flat f16 and bf16 elementwise ops equal the generic broadcasting loop bit for bit", "[cpu][simd]",
                   Half, BFloat16) {
  const DType dt = dtype_of<TestType>();
  // (r, c) op (r, c) takes the flat, block-widened path; (r, c) op (1, c) the generic loop. With every row of b
  // equal, both compute the same elements: their bits must agree, including infinities, NaNs and overflow.
  const int64_t r = 37, c = 1029;  // 38073 elements: several 512-element blocks and a ragged tail
  std::vector<float> va(static_cast<size_t>(r * c)), vb(static_cast<size_t>(c));
  const std::vector<float> special = delicate_floats();
  for (size_t i = 0; i < va.size(); ++i) va[i] = special[(i * 7) % special.size()] * 1e-30f;  // small-ish values
  for (size_t i = 0; i < va.size(); i += 5) va[i] = static_cast<float>(static_cast<int64_t>(i % 200) - 100) * 655.3f;
  for (size_t j = 0; j < vb.size(); ++j) vb[j] = static_cast<float>(static_cast<int64_t>(j % 97) - 48) * 1371.7f;
  vb[3] = std::numeric_limits<float>::infinity();
  vb[4] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> vb_full;
  for (int64_t i = 0; i < r; ++i) vb_full.insert(vb_full.end(), vb.begin(), vb.end());
  const Tensor a = kernels::cast(from_vector(va, Shape{r, c}), dt);
  const Tensor b_row = kernels::cast(from_vector(vb, Shape{1, c}), dt);
  const Tensor b_full = kernels::cast(from_vector(vb_full, Shape{r, c}), dt);
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::maximum,
                      BinaryOp::relu_backward}) {
    const std::vector<TestType> flat = kernels::binary(op, a, b_full).template to_vector<TestType>();
    const std::vector<TestType> generic = kernels::binary(op, a, b_row).template to_vector<TestType>();
    int64_t bad = 0;
    for (size_t i = 0; i < flat.size(); ++i) bad += flat[i].bits != generic[i].bits;
    INFO("binary op " << static_cast<int>(op));
    CHECK(bad == 0);
  }
  // unary ops against the shared functor applied in float and rounded once (what the scalar loop does)
  const std::vector<TestType> ha = a.template to_vector<TestType>();
  auto check_unary = [&](UnaryOp op, auto f) {
    const std::vector<TestType> got = kernels::unary(op, a).template to_vector<TestType>();
    int64_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got[i].bits != TestType(f(static_cast<float>(ha[i]))).bits;
    INFO("unary op " << static_cast<int>(op));
    CHECK(bad == 0);
  };
  check_unary(UnaryOp::relu, fn::Relu{});
  check_unary(UnaryOp::neg, fn::Neg{});
  check_unary(UnaryOp::abs, fn::Abs{});
  check_unary(UnaryOp::exp, fn::Exp{});
  check_unary(UnaryOp::tanh, fn::Tanh{});
}

TEST_CASE("the vectorised float32 Adam loop equals adam_one element by element, bit for bit", "[cpu][simd][optim]") {
  if (!cpu::simd_avx2_f16c()) WARN("not exercised here: no AVX2 on this CPU; the scalar loop ran on both sides");
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> d(-2.0f, 2.0f);
  for (int variant = 0; variant < 3; ++variant)
    for (int64_t n : {1, 7, 8, 9, 64, 1001}) {
      INFO("variant " << variant << ", " << n << " elements");
      const int64_t step = 1 + variant * 5;
      cpu::AdamConsts<float> c{0.9f, 0.999f, static_cast<float>(1.0 - 0.9), static_cast<float>(1.0 - 0.999), 1e-8f,
                               variant == 0 ? 0.0f : 0.01f,
                               static_cast<float>(1e-3 / (1.0 - std::pow(0.9, step))),
                               static_cast<float>(std::sqrt(1.0 - std::pow(0.999, step))),
                               static_cast<float>(1.0 - 1e-3 * 0.01), variant == 2};
      std::vector<float> p(static_cast<size_t>(n)), g(p.size()), m(p.size()), v(p.size());
      for (size_t i = 0; i < p.size(); ++i) {
        p[i] = d(rng);
        g[i] = d(rng) * (i % 5 == 0 ? 1e-4f : 1.0f);
        m[i] = 0.1f * d(rng);
        v[i] = std::fabs(0.01f * d(rng)) * (i % 7 == 0 ? 0.0f : 1.0f);
      }
      std::vector<float> p2 = p, m2 = m, v2 = v;
      cpu::adam_f32(p.data(), g.data(), m.data(), v.data(), n, c);
      size_t bad = 0;
      for (size_t i = 0; i < p.size(); ++i) {
        p2[i] = cpu::adam_one(p2[i], g[i], m2[i], v2[i], c);
        if (float_bits(p[i]) != float_bits(p2[i]) || float_bits(m[i]) != float_bits(m2[i]) ||
            float_bits(v[i]) != float_bits(v2[i]))
          ++bad;
      }
      CHECK(bad == 0);
    }
}
