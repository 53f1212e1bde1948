// Host-side logic of the CUDA kernels, checked on the CPU: the broadcast index math (core/broadcast_index.h)
// against the CPU backend's broadcasting, the conversion rules the CUDA kernels store with (cuda/cast_rules.cuh)
// against CpuBackend::cast/fill/arange bit for bit, and the launch planning (cuda/launch_plan.h).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/backend.h"
#include "core/broadcast_index.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "cuda/cast_rules.cuh"
#include "cuda/launch_plan.h"

using namespace mixtape;
using namespace mixtape::kernels;

namespace {

/// Float64 tensor 0, 1, ..., numel-1 times `scale`, shaped `shape`.
Tensor iota(const Shape& shape, double scale) {
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) * scale;
  return from_vector(v, shape, DType::f64);
}

/// Checks BroadcastIndex<2> against the CPU's broadcasting add of two index-encoding tensors.
void check_pair(const Shape& a, const Shape& b) {
  INFO(a.to_string() << " with " << b.to_string());
  const Tensor out = binary(BinaryOp::add, iota(a, 65536.0), iota(b, 1.0));  // value = off_a * 65536 + off_b
  const std::vector<double> want = out.to_vector<double>();
  const BroadcastIndex<2> bi = make_broadcast_index<2>(out.shape(), {&a, &b});
  CHECK(bi.ndim <= out.shape().size());
  for (size_t i = 0; i < want.size(); ++i) {
    int64_t off[2];
    bi.offsets(static_cast<int64_t>(i), off);
    uint32_t off32[2];
    bi.offsets(static_cast<uint32_t>(i), off32);
    REQUIRE(static_cast<double>(off[0]) * 65536.0 + static_cast<double>(off[1]) == want[i]);
    REQUIRE(off32[0] == off[0]);
    REQUIRE(off32[1] == off[1]);
  }
}

/// Raw bytes of element i.
std::vector<unsigned char> element_bytes(const Tensor& t, int64_t i) {
  const size_t sz = dtype_size(t.dtype());
  const auto* p = static_cast<const unsigned char*>(t.raw_data()) + static_cast<size_t>(i) * sz;
  return {p, p + sz};
}

template <class F>
void for_each_storage(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f16: return f(type_tag<Half>{});
    case DType::bf16: return f(type_tag<BFloat16>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::i64: return f(type_tag<int64_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
  }
}

const DType kAll[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::u8};

/// Awkward values for conversions: NaN, inf, ties, integer and int32/int64 range edges, f16 overflow/subnormals.
std::vector<double> awkward_values() {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> v = {std::nan(""), inf, -inf, 0.0, -0.0, 0.5, 1.5, 2.5, -2.5, -0.7, 127.9, 255.5, 256.0, 300.0,
                           -1.0, -1.5, -129.0, 65504.0, 65519.0, 65520.0, 1e10, -1e10, 3e38, -3e38, 1e300,
                           2147483647.5, 2147483648.0, -2147483648.5, -2147483649.0, 4.2e9, 9.2e18,
                           9223372036854775808.0, -9223372036854775808.0, -9.3e18, 1e-8, 6e-8, 3e-5,
                           1.00000011920928955078125, 1.0000000596046448, 0.333333333333333333, 16777217.0,
                           9007199254740993.0, 1e-40, -1e-45};
  const size_t base = v.size();
  for (int rep = 0; rep < 40; ++rep)  // long enough for the CPU's vectorised loops
    for (size_t i = 0; i < base; ++i) v.push_back(v[i] * (rep % 2 ? 1.0 : -1.0));
  return v;
}

}  // namespace

TEST_CASE("broadcast_index: offsets match the CPU backend on every broadcast axis", "[cuda_host][broadcast]") {
  check_pair({2, 3, 4}, {2, 3, 4});
  check_pair({2, 3, 4}, {4});
  check_pair({2, 3, 4}, {3, 1});
  check_pair({2, 3, 4}, {2, 1, 1});
  check_pair({2, 1, 4}, {1, 3, 1});
  check_pair({1}, {5, 2});
  check_pair({5, 1, 3, 1, 2}, {1, 4, 1, 6, 1});
  check_pair({2, 2, 2, 2, 2, 2, 2, 3}, {2, 1, 2, 1, 2, 1, 2, 1});  // 8 dims
  check_pair({}, {3, 2});
  check_pair({7}, {});
  check_pair({1, 1}, {1});
}

TEST_CASE("broadcast_index: three operands match the CPU's where", "[cuda_host][broadcast]") {
  const Shape cs{3, 1}, as{1, 4}, bs{2, 3, 4};
  // cond alternates per element so both a and b are read
  std::vector<uint8_t> c = {1, 0, 1};
  const Tensor cond = from_vector(c, cs, DType::u8);
  const Tensor out = where(cond, iota(as, 1000.0), iota(bs, 1.0));
  const std::vector<double> want = out.to_vector<double>();
  const BroadcastIndex<3> bi = make_broadcast_index<3>(out.shape(), {&cs, &as, &bs});
  for (size_t i = 0; i < want.size(); ++i) {
    int64_t off[3];
    bi.offsets(static_cast<int64_t>(i), off);
    const double got = c[static_cast<size_t>(off[0])] ? static_cast<double>(off[1]) * 1000.0 : static_cast<double>(off[2]);
    REQUIRE(got == want[i]);
  }
}

TEST_CASE("broadcast_index: merges dims every operand walks contiguously", "[cuda_host][broadcast]") {
  const Shape s{4, 5, 6}, bias{6}, col{4, 1, 1};
  CHECK(make_broadcast_index<2>(s, {&s, &s}).ndim == 1);
  const BroadcastIndex<2> b = make_broadcast_index<2>(s, {&s, &bias});
  CHECK(b.ndim == 2);  // (20, 6): bias repeats over the merged leading dims
  CHECK(b.sizes[0] == 20);
  CHECK(b.strides[1][0] == 0);
  CHECK(make_broadcast_index<2>(s, {&s, &col}).ndim == 2);  // (4, 30)
  const Shape one{1, 1};
  CHECK(make_broadcast_index<1>(one, {&one}).ndim == 0);
}

TEST_CASE("cast_rules: every dtype pair matches CpuBackend::cast bit for bit", "[cuda_host][cast]") {
  const std::vector<double> values = awkward_values();
  const Tensor src64 = from_vector(values, Shape{static_cast<int64_t>(values.size())}, DType::f64);
  for (DType from : kAll) {
    // The source holds what the CPU makes of the awkward values in its own dtype.
    const Tensor src = from == DType::f64 ? src64 : cast(src64, from);
    for (DType to : kAll) {
      if (to == from) continue;
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      Tensor want = Tensor::empty(src.shape(), to);
      cpu_backend().cast(src, want);
      for_each_storage(from, [&](auto st) {
        using S = typename decltype(st)::type;
        for_each_storage(to, [&](auto tt) {
          using T = typename decltype(tt)::type;
          const S* ps = static_cast<const S*>(src.raw_data());
          int bad = 0;
          for (int64_t i = 0; i < src.numel(); ++i) {
            const T got = cast_rules::convert<T>(ps[i]);
            std::vector<unsigned char> gb(sizeof(T));
            std::memcpy(gb.data(), &got, sizeof(T));
            if (gb != element_bytes(want, i) && bad++ < 3)
              FAIL_CHECK("element " << i << " (source " << values[static_cast<size_t>(i)] << ") differs");
          }
          CHECK(bad == 0);
        });
      });
    }
  }
}

TEST_CASE("cast_rules: fill and arange values match the CPU backend bit for bit", "[cuda_host][cast]") {
  for (DType t : kAll) {
    INFO(dtype_name(t));
    for (double v : awkward_values()) {
      Tensor want = Tensor::empty(Shape{1}, t);
      cpu_backend().fill(want, v);
      for_each_storage(t, [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T got = cast_rules::store<T>(v);
        REQUIRE(std::memcmp(&got, want.raw_data(), sizeof(T)) == 0);
      });
    }
    Tensor want = Tensor::empty(Shape{1000}, t);
    const double start = -3.3, step = 0.7;
    cpu_backend().arange(want, start, step);
    for_each_storage(t, [&](auto tag) {
      using T = typename decltype(tag)::type;
      for (int64_t i = 0; i < 1000; ++i) {
        const T got = cast_rules::store<T>(start + static_cast<double>(i) * step);
        REQUIRE(std::memcmp(&got, element_bytes(want, i).data(), sizeof(T)) == 0);
      }
    });
  }
}

TEST_CASE("launch_plan: vector widths, grids and reduction plans", "[cuda_host]") {
  using namespace mixtape::cuda::plan;
  CHECK(vector_width(4) == 4);
  CHECK(vector_width(2) == 8);
  CHECK(vector_width(8) == 2);
  CHECK(vector_width(1) == 16);
  CHECK(vector_width(16) == 1);
  CHECK(grid_blocks(0) == 1);
  CHECK(grid_blocks(1) == 1);
  CHECK(grid_blocks(256) == 1);
  CHECK(grid_blocks(257) == 2);
  CHECK(grid_blocks(int64_t{1} << 40) == kMaxBlocks);
  // a grid-stride loop with uint32 indices never overflows: n + the whole grid stays below 2^32
  CHECK(fits_u32((int64_t{1} << 31) - 1));
  CHECK_FALSE(fits_u32(int64_t{1} << 31));
  CHECK((int64_t{1} << 31) + kMaxBlocks * kElementwiseThreads < (int64_t{1} << 32));
  alignas(16) static const char buf[32] = {};
  CHECK(aligned16(buf));
  CHECK_FALSE(aligned16(buf + 4));

  CHECK(plan_reduce(10, 100, 7).kind == ReducePlan::column);
  CHECK(plan_reduce(10, 1024, 1).kind == ReducePlan::row_warp);
  const ReducePlan many = plan_reduce(100000, 4096, 1);
  CHECK(many.kind == ReducePlan::row_block);
  CHECK(many.splits == 1);
  const ReducePlan one_long = plan_reduce(1, 100000000, 1);  // a full sum: split across blocks
  CHECK(one_long.kind == ReducePlan::row_block);
  CHECK(one_long.splits == kTargetBlocks);
  const ReducePlan short_split = plan_reduce(1, 2000, 1);  // too short to split usefully
  CHECK(short_split.splits == 1);
  CHECK(plan_reduce(3, 1000003, 1).splits <= 1000003 / (kRowBlockThreads * 16));
  CHECK(softmax_warp_per_row(10));
  CHECK(softmax_warp_per_row(1024));
  CHECK_FALSE(softmax_warp_per_row(1025));
}
