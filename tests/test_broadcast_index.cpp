// Host-side logic of the CUDA kernels, checked on the CPU: the broadcast index math (core/broadcast_index.h)
// against the CPU backend's broadcasting, and the launch planning (cuda/launch_plan.h). The conversion rules are
// one code for both backends now (core/cast_rules.h), checked against hand-written values in tests/test_casts.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/backend.h"
#include "core/broadcast_index.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "core/cast_rules.h"
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
