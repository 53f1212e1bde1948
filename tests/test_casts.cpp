// Conversions into integer dtypes are defined for every input (core/cast_rules.h): floating values truncate toward
// zero and saturate at the target's range, NaN becomes 0; i64 -> u8 keeps the low 8 bits; i64 -> i64 is exact and
// i64 -> f32/f16/bf16 rounds once. The expected values are written out here by hand, independent of the code;
// the CUDA backend is checked bit for bit against the CPU in tests/test_cuda_kernels.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/half.h"
#include "core/kernels.h"
#include "core/tensor.h"

using namespace mixtape;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

/// The values of `x` (any dtype) cast to `to`, read back as int64.
std::vector<int64_t> cast_to_ints(const Tensor& x, DType to) {
  const Tensor y = kernels::cast(x, to);
  std::vector<int64_t> out;
  if (to == DType::u8) {
    for (int64_t i = 0; i < y.numel(); ++i) out.push_back(y.data<uint8_t>()[i]);
  } else {
    for (int64_t i = 0; i < y.numel(); ++i) out.push_back(y.data<int64_t>()[i]);
  }
  return out;
}

}  // namespace

TEST_CASE("casts of NaN, infinities and out-of-range floats to integers saturate, NaN gives 0", "[cast]") {
  const std::vector<double> in = {kNaN,  kInf,  -kInf, 0.0,  -0.0,   0.9,   -0.9,  1.5,     -1.5,  254.99,
                                  255.0, 255.5, 256.0, 300.0, -300.0, 1e10, -1e10, 9.3e18, -9.3e18, 1e300};
  const std::vector<int64_t> want_i64 = {0,   INT64_MAX, INT64_MIN, 0,           0,          0,  0,        1,
                                         -1,  254,       255,       255,         256,        300, -300,    10000000000,
                                         -10000000000, INT64_MAX, INT64_MIN, INT64_MAX};
  const std::vector<int64_t> want_u8 = {0, 255, 0, 0, 0, 0, 0, 1, 0, 254, 255, 255, 255, 255, 0, 255, 0, 255, 0, 255};
  const Tensor x64 = from_vector(in, Shape{static_cast<int64_t>(in.size())}, DType::f64);
  CHECK(cast_to_ints(x64, DType::i64) == want_i64);
  CHECK(cast_to_ints(x64, DType::u8) == want_u8);
  // f32 holds every value above but 254.99 exactly enough for the same answers; f16/bf16 overflow to inf first.
  const Tensor x32 = kernels::cast(x64, DType::f32);
  CHECK(cast_to_ints(x32, DType::i64) == want_i64);
  CHECK(cast_to_ints(x32, DType::u8) == want_u8);
  for (DType half : {DType::f16, DType::bf16}) {
    INFO(dtype_name(half));
    const Tensor h = kernels::cast(from_vector(std::vector<double>{kNaN, kInf, -kInf, 70000.0, -70000.0, 255.5, -0.5},
                                               Shape{7}, DType::f64),
                                   half);
    const std::vector<int64_t> i64 = cast_to_ints(h, DType::i64), u8 = cast_to_ints(h, DType::u8);
    CHECK(i64[0] == 0);
    CHECK(i64[1] == INT64_MAX);
    CHECK(i64[2] == INT64_MIN);
    CHECK(u8[0] == 0);
    CHECK(u8[1] == 255);
    CHECK(u8[2] == 0);
    CHECK(u8[5] == 255);  // 255.5 or 256 once rounded: both saturate
    CHECK(u8[6] == 0);
  }
}

TEST_CASE("fill and arange into integer dtypes follow the same rule", "[cast]") {
  CHECK(full(Shape{3}, kNaN, DType::i64).data<int64_t>()[0] == 0);
  CHECK(full(Shape{3}, kInf, DType::i64).data<int64_t>()[2] == INT64_MAX);
  CHECK(full(Shape{3}, -1e30, DType::i64).data<int64_t>()[1] == INT64_MIN);
  CHECK(full(Shape{2}, -5.0, DType::u8).data<uint8_t>()[0] == 0);
  CHECK(full(Shape{2}, 1000.0, DType::u8).data<uint8_t>()[1] == 255);
  CHECK(full(Shape{2}, kNaN, DType::u8).data<uint8_t>()[1] == 0);
}

TEST_CASE("integer casts: i64 to u8 keeps the low byte, i64 to i64 is exact, i64 to floats rounds once", "[cast]") {
  const std::vector<int64_t> v = {300, -1, 256, 255, -256, INT64_MAX, INT64_MIN, 9007199254740993};
  const Tensor x = from_vector(v, Shape{static_cast<int64_t>(v.size())}, DType::i64);
  CHECK(cast_to_ints(x, DType::u8) == std::vector<int64_t>{44, 255, 0, 255, 0, 255, 0, 1});
  CHECK(cast_to_ints(x, DType::i64) == v);  // 2^53 + 1 survives (a route through double would lose it)
  // 2^60 + 2^52 + 1 is just above the midpoint between two bf16 neighbours (2^60 and 2^60 + 2^53): one rounding
  // goes up; rounding to a double first would land on the midpoint and round to even (down).
  const int64_t above_tie = (int64_t{1} << 60) + (int64_t{1} << 52) + 1;
  const Tensor b = kernels::cast(from_vector(std::vector<int64_t>{above_tie}, Shape{1}, DType::i64), DType::bf16);
  CHECK(static_cast<double>(static_cast<float>(b.data<BFloat16>()[0])) == std::ldexp(1.0, 60) + std::ldexp(1.0, 53));
  // 2^24 + 1 to f32: the midpoint rounds to even (2^24); 2^24 + 3 rounds up to 2^24 + 4.
  const Tensor f = kernels::cast(from_vector(std::vector<int64_t>{16777217, 16777219, -16777219}, Shape{3}, DType::i64),
                                 DType::f32);
  CHECK(f.data<float>()[0] == 16777216.0f);
  CHECK(f.data<float>()[1] == 16777220.0f);
  CHECK(f.data<float>()[2] == -16777220.0f);
  const Tensor u = from_vector(std::vector<int64_t>{0, 7, 200, 255}, Shape{4}, DType::i64);
  CHECK(cast_to_ints(kernels::cast(u, DType::u8), DType::i64) == std::vector<int64_t>{0, 7, 200, 255});
}
