// Host-side planning of the CUDA multi-tensor launches (cuda/multi_tensor.h), tested on the CPU: chunking of
// tensor lists into kernel-argument tables, and the fused optimizers' host-side coefficients.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/error.h"
#include "cuda/multi_tensor.h"

using namespace mixtape;
using namespace mixtape::cuda;

namespace {

/// Checks that `tables` cover every element of every tensor exactly once, in order, chunk by chunk, with
/// chunks of `chunk` elements except each tensor's last, and tables of at most `max_per` (none empty).
void check_plan(const std::vector<TensorRef>& refs, const std::vector<ChunkTable>& tables, int64_t chunk, int max_per) {
  std::vector<ChunkEntry> flat;
  for (size_t t = 0; t < tables.size(); ++t) {
    INFO("table " << t);
    REQUIRE(tables[t].count >= 1);
    REQUIRE(tables[t].count <= max_per);
    // Only the last table may be partly filled.
    if (t + 1 < tables.size()) CHECK(tables[t].count == max_per);
    for (int c = 0; c < tables[t].count; ++c) flat.push_back(tables[t].chunks[c]);
  }
  size_t k = 0;
  int64_t expected_chunks = 0;
  for (size_t t = 0; t < refs.size(); ++t) {
    INFO("tensor " << t << " of " << refs[t].numel << " elements");
    const size_t elem = dtype_size(refs[t].dtype);
    expected_chunks += (refs[t].numel + chunk - 1) / chunk;
    for (int64_t begin = 0; begin < refs[t].numel; begin += chunk, ++k) {
      REQUIRE(k < flat.size());
      const ChunkEntry& e = flat[k];
      CHECK(e.data == static_cast<char*>(refs[t].data) + begin * static_cast<int64_t>(elem));
      CHECK(e.numel == std::min(chunk, refs[t].numel - begin));
      CHECK(e.dtype == static_cast<uint8_t>(refs[t].dtype));
    }
  }
  CHECK(static_cast<int64_t>(flat.size()) == expected_chunks);
}

}  // namespace

TEST_CASE("plan_chunks covers mixed sizes and dtypes exactly once, in order", "[multi_tensor]") {
  // Fake device pointers: only arithmetic is done on them.
  std::vector<char> arena(1 << 20);
  auto at = [&](size_t offset) { return static_cast<void*>(arena.data() + offset); };
  const std::vector<TensorRef> refs = {
      {at(0), 0, DType::f32},       // empty: no chunk
      {at(64), 1, DType::f16},      // one element
      {at(128), 7, DType::bf16},    // exactly one chunk (chunk = 7)
      {at(256), 8, DType::f32},     // one past a chunk
      {at(512), 23, DType::f16},    // odd, several chunks
      {nullptr, 0, DType::bf16},    // empty with no storage
      {at(1024), 50, DType::f32},   // many chunks
  };
  for (const int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{7}, int64_t{64}}) {
    for (const int max_per : {1, 2, 5, kMaxChunksPerLaunch}) {
      INFO("chunk " << chunk << ", max_per " << max_per);
      check_plan(refs, plan_chunks(refs, chunk, max_per), chunk, max_per);
    }
  }
}

TEST_CASE("plan_chunks with the default sizes", "[multi_tensor]") {
  std::vector<char> arena(16);
  void* base = arena.data();
  // Tensors past one chunk and past one table (kMaxChunksPerLaunch chunks) of the default sizes.
  const std::vector<TensorRef> refs = {{base, kChunkElems + 1, DType::f32},
                                       {base, 3, DType::f16},
                                       {base, kChunkElems * (kMaxChunksPerLaunch + 2), DType::bf16}};
  const auto tables = plan_chunks(refs);
  check_plan(refs, tables, kChunkElems, kMaxChunksPerLaunch);
  CHECK(tables.size() == 2);  // 2 + 1 + 242 chunks
  CHECK(tables[1].count == 245 - kMaxChunksPerLaunch);
  CHECK(plan_chunks({}).empty());
  CHECK(plan_chunks({{nullptr, 0, DType::f32}}).empty());
}

TEST_CASE("plan_chunks rejects bad arguments", "[multi_tensor]") {
  std::vector<char> arena(16);
  CHECK_THROWS_AS(plan_chunks({{arena.data(), 4, DType::f32}}, 0, 4), Error);
  CHECK_THROWS_AS(plan_chunks({{arena.data(), 4, DType::f32}}, kChunkElems + 1, 4), Error);
  CHECK_THROWS_AS(plan_chunks({{arena.data(), 4, DType::f32}}, 4, 0), Error);
  CHECK_THROWS_AS(plan_chunks({{arena.data(), 4, DType::f32}}, 4, kMaxChunksPerLaunch + 1), Error);
  CHECK_THROWS_AS(plan_chunks({{nullptr, 4, DType::f32}}), Error);
  CHECK_THROWS_AS(plan_chunks({{arena.data(), -1, DType::f32}}), Error);
}

TEST_CASE("a chunk table fits the kernel parameter space", "[multi_tensor]") {
  CHECK(sizeof(ChunkTable) <= 4096 - 64);
  CHECK(kChunkElems % 8 == 0);  // whole 16-byte vectors of every dtype per chunk
}

TEST_CASE("adam_coefficients are formed in double and rounded once", "[multi_tensor][optim]") {
  AdamUpdate u;
  u.lr = 1e-3;
  u.beta1 = 0.9;
  u.beta2 = 0.999;
  u.eps = 1e-8;
  u.weight_decay = 0.01;
  for (const int64_t step : {int64_t{1}, int64_t{2}, int64_t{10}, int64_t{1000}}) {
    u.step = step;
    const AdamCoefficients c = adam_coefficients(u);
    const double t = static_cast<double>(step);
    CHECK(c.one_minus_beta2 == static_cast<float>(1.0 - 0.999));  // not 1 - float(0.999)
    CHECK(c.one_minus_beta2 != 1.0f - static_cast<float>(0.999));
    CHECK(c.one_minus_beta1 == static_cast<float>(1.0 - 0.9));
    CHECK(c.step_size == static_cast<float>(1e-3 / (1.0 - std::pow(0.9, t))));
    CHECK(c.bias_correction2_sqrt == static_cast<float>(std::sqrt(1.0 - std::pow(0.999, t))));
    CHECK(c.decay == static_cast<float>(1.0 - 1e-3 * 0.01));
    CHECK(c.eps == 1e-8f);
  }
  SgdUpdate s;
  s.lr = 0.1;
  s.momentum = 0.9;
  s.dampening = 0.3;
  s.weight_decay = 1e-4;
  const SgdCoefficients k = sgd_coefficients(s);
  CHECK(k.lr == 0.1f);
  CHECK(k.momentum == 0.9f);
  CHECK(k.one_minus_dampening == static_cast<float>(0.7));
  CHECK(k.weight_decay == 1e-4f);
}

TEST_CASE("elementwise_blocks covers n and is capped", "[multi_tensor]") {
  CHECK(elementwise_blocks(0) == 1);
  CHECK(elementwise_blocks(1) == 1);
  CHECK(elementwise_blocks(256) == 1);
  CHECK(elementwise_blocks(257) == 2);
  CHECK(elementwise_blocks(1000003, 256) == 3907);
  CHECK(elementwise_blocks(int64_t{1} << 40) == 65535);
}
