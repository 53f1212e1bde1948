// Device memory, transfers and timing of the CUDA backend: the caching allocator on a GPU (steady-state reuse,
// current/peak/reserved accounting, empty_cache, out-of-memory message), host<->device round trips for every
// dtype and size, asynchronous H2D copies from pinned memory and their block recycling, events and timers,
// Module::to and the DataLoader's pinned batches. Compiled only with MIXTAPE_WITH_CUDA; the GPU cases report
// "no CUDA device: skipping ..." and return on a machine without one, the others run everywhere.
#ifdef MIXTAPE_WITH_CUDA

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/backend.h"
#include "core/caching_allocator.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "cuda/cuda_backend.h"
#include "cuda/event.h"
#include "cuda/pinned.h"
#include "cuda/pinned_pool.h"
#include "cuda_test_util.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "nn/layers.h"

using Catch::Matchers::Contains;
using namespace mixtape;
using mixtape::testing::gpu;
using mixtape::testing::gpu_or_skip;

namespace {

constexpr size_t MiB = size_t{1} << 20;

/// A CPU tensor of `numel` elements whose bytes follow a pattern depending on `seed` (any dtype: raw bytes).
Tensor patterned(int64_t numel, DType dtype, uint32_t seed, bool pinned = false) {
  Tensor t = pinned ? cuda::empty_pinned(Shape{numel}, dtype) : Tensor::empty(Shape{numel}, dtype);
  auto* p = static_cast<unsigned char*>(t.raw_data());
  uint32_t x = seed * 2654435761u + 1u;
  for (size_t i = 0; i < t.nbytes(); ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = static_cast<unsigned char>(x >> 24);
  }
  return t;
}

/// Whether two tensors hold the same bytes (both on the host).
bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
}

}  // namespace

// ---- runs everywhere ----

TEST_CASE("cuda memory: --device cuda without a GPU fails at once naming the reason", "[cuda][cuda_memory]") {
  if (cuda_device_count() > 0) {
    WARN("a CUDA device is present: the no-GPU error path is not exercised here");
    return;
  }
  CHECK_THROWS_WITH(backend_for(Device::parse("cuda")),
                    Contains("cuda:0") && Contains("no CUDA device is available") && Contains("use the cpu device") &&
                        Contains(cuda::no_device_reason()));
  CHECK_THROWS_WITH(Tensor::empty(Shape{4}, DType::f32, Device::cuda(0)), Contains("no CUDA device is available"));
  CHECK_THROWS_WITH(ones(Shape{4}).to(Device::cuda(0)), Contains("no CUDA device is available"));
  CHECK_THROWS_WITH(memory_stats(Device::cuda(0)), Contains("no CUDA device is available"));
}

TEST_CASE("cuda memory: pinned memory is unavailable without a GPU and plain tensors are not pinned",
          "[cuda][cuda_memory]") {
  CHECK(cuda::pinned_memory_available() == (cuda_device_count() > 0));
  CHECK_FALSE(cuda::is_pinned(ones(Shape{16})));
  CHECK_FALSE(cuda::is_pinned(Tensor()));
  CHECK_FALSE(cuda::pinned::contains(nullptr, 4));
  if (cuda_device_count() == 0)
    CHECK_THROWS_WITH(cuda::empty_pinned(Shape{4}), Contains("pinned host memory") && Contains("no CUDA device"));
}

TEST_CASE("cuda memory: the pinned cache rounds sizes up to powers of two", "[cuda][cuda_memory]") {
  CHECK(cuda::pinned::round_size(1) == 512);
  CHECK(cuda::pinned::round_size(512) == 512);
  CHECK(cuda::pinned::round_size(513) == 1024);
  CHECK(cuda::pinned::round_size(1000003) == 1048576);
  CHECK(cuda::pinned::round_size(64 * MiB) == 64 * MiB);
  CHECK(cuda::pinned::round_size(64 * MiB + 1) == 128 * MiB);
}

TEST_CASE("cuda memory: pin_memory is a no-op without a GPU and batches keep their values", "[cuda][cuda_memory]") {
  data::Dataset ds = data::make_blobs(100, 3, 12, 7);
  data::DataLoader plain(ds, {.batch_size = 32, .shuffle = true, .seed = 3});
  data::DataLoader pinned(ds, {.batch_size = 32, .shuffle = true, .seed = 3, .pin_memory = true});
  auto a = plain.begin();
  auto b = pinned.begin();
  int batches = 0;
  for (; a != plain.end() && b != pinned.end(); ++a, ++b, ++batches) {
    CHECK(cuda::is_pinned(b->inputs) == (cuda_device_count() > 0));
    CHECK(cuda::is_pinned(b->labels) == (cuda_device_count() > 0));
    CHECK_FALSE(cuda::is_pinned(a->inputs));
    CHECK(b->inputs.device().is_cpu());
    CHECK(same_bytes(a->inputs, b->inputs));
    CHECK(same_bytes(a->labels, b->labels));
  }
  CHECK(batches == 4);
  CHECK(a == plain.end());
  CHECK(b == pinned.end());
}

// ---- need a GPU ----

TEST_CASE("cuda memory: host-device round trips are exact for every dtype and size", "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("host-device round trips")) return;
  const int64_t big = static_cast<int64_t>(64 * MiB);  // bytes; numel below divides by the element size
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::u8}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{1000003}, big / static_cast<int64_t>(dtype_size(dt))}) {
      for (bool pinned : {false, true}) {
        INFO(dtype_name(dt) << " numel " << n << (pinned ? " pinned" : " pageable"));
        const Tensor host = patterned(n, dt, static_cast<uint32_t>(n) ^ 0x5a, pinned);
        const Tensor dev = host.to(gpu());
        CHECK(dev.device() == gpu());
        CHECK(dev.dtype() == dt);
        CHECK(dev.shape() == host.shape());
        const Tensor back = dev.to(Device::cpu());
        CHECK(same_bytes(back, host));
        // device -> device on the same GPU, then back
        Tensor dev2 = Tensor::empty(host.shape(), dt, gpu());
        dev2.copy_(dev);
        CHECK(same_bytes(dev2.to(Device::cpu()), host));
      }
    }
  }
}

TEST_CASE("cuda memory: a pageable source may be overwritten as soon as to(cuda) returns", "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("staged pageable copies")) return;
  std::vector<Tensor> hosts, devs, wants;
  for (uint32_t i = 0; i < 8; ++i) {
    hosts.push_back(patterned(static_cast<int64_t>(16 * MiB), DType::u8, i));
    wants.push_back(hosts.back().clone());
    devs.push_back(hosts.back().to(gpu()));  // asynchronous: staged through pinned memory
    std::memset(hosts.back().raw_data(), 0xEE, hosts.back().nbytes());  // the caller reuses its buffer at once
  }
  for (size_t i = 0; i < devs.size(); ++i) CHECK(same_bytes(devs[i].to(Device::cpu()), wants[i]));
}

TEST_CASE("cuda memory: several H2D copies in flight from pinned memory, blocks recycled only after completion",
          "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("pinned copies in flight")) return;
  const int64_t n = static_cast<int64_t>(32 * MiB);
  std::vector<Tensor> devs, wants;
  for (uint32_t i = 0; i < 6; ++i) {
    Tensor src = patterned(n, DType::u8, 100 + i, /*pinned=*/true);
    REQUIRE(cuda::is_pinned(src));
    wants.push_back(src.clone());  // a pageable copy of the expected bytes
    devs.push_back(src.to(gpu()));  // queued, not waited for
    src = Tensor();  // the pinned block goes back to the cache while its copy may still run ...
    Tensor scribble = cuda::empty_pinned(Shape{n}, DType::u8);  // ... so it must not be handed out again yet
    std::memset(scribble.raw_data(), 0xCD, scribble.nbytes());
  }
  for (size_t i = 0; i < devs.size(); ++i) {
    INFO("copy " << i);
    CHECK(same_bytes(devs[i].to(Device::cpu()), wants[i]));
  }
  const MemoryStats ps = cuda::pinned_memory_stats();
  CHECK(ps.reserved_bytes >= ps.current_bytes);
  cuda::backend(0).synchronize();
  cuda::empty_pinned_cache();
  CHECK(cuda::pinned_memory_stats().reserved_bytes <= ps.reserved_bytes);
}

TEST_CASE("cuda memory: a training-like alloc/free loop makes no raw allocation after the first step",
          "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("steady-state reuse")) return;
  // One MLP step's buffers in f32 and f16: batch 128, 784 -> 1024 -> 1024 -> 10, plus odd sizes.
  const std::vector<Shape> shapes = {{128, 784}, {1024, 784}, {1024}, {128, 1024}, {1024, 1024}, {128, 1024},
                                     {10, 1024}, {10},        {128, 10}, {128},      {1},          {1000003}};
  auto step = [&] {
    std::vector<Tensor> held;
    for (DType dt : {DType::f32, DType::f16})
      for (const Shape& s : shapes) held.push_back(Tensor::empty(s, dt, gpu()));
    // free in a different order than allocated, as a backward pass does
    for (size_t i = 0; i < held.size(); i += 2) held[i] = Tensor();
  };
  step();
  const MemoryStats after_first = memory_stats(gpu());
  for (int i = 0; i < 100; ++i) step();
  const MemoryStats after = memory_stats(gpu());
  CHECK(after.raw_allocations == after_first.raw_allocations);
  CHECK(after.allocations == after_first.allocations + 100 * 2 * static_cast<int64_t>(shapes.size()));
  CHECK(after.current_bytes == after_first.current_bytes);
  CHECK(after.reserved_bytes == after_first.reserved_bytes);
}

TEST_CASE("cuda memory: current, peak and reserved bytes on the device follow tensor lifetimes",
          "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("device memory accounting")) return;
  cuda::backend(0).synchronize();
  const int64_t base = memory_stats(gpu()).current_bytes;
  reset_peak_memory(gpu());
  CHECK(memory_stats(gpu()).peak_bytes == base);
  {
    Tensor a = Tensor::empty(Shape{1000}, DType::f32, gpu());  // 4000 bytes (a 4096-byte block)
    CHECK(memory_stats(gpu()).current_bytes == base + 4000);
    Tensor b = Tensor::empty(Shape{3, 5}, DType::f16, gpu());  // 30 bytes
    CHECK(memory_stats(gpu()).current_bytes == base + 4030);
    {
      Tensor c = Tensor::empty(Shape{static_cast<int64_t>(16 * MiB)}, DType::f32, gpu());  // 64 MiB
      CHECK(memory_stats(gpu()).current_bytes == base + 4030 + static_cast<int64_t>(64 * MiB));
    }
    const MemoryStats s = memory_stats(gpu());
    CHECK(s.current_bytes == base + 4030);
    CHECK(s.peak_bytes == base + 4030 + static_cast<int64_t>(64 * MiB));
    CHECK(s.reserved_bytes >= s.current_bytes + static_cast<int64_t>(64 * MiB));  // c's block stays cached
    CHECK(s.peak_reserved_bytes >= s.reserved_bytes);
  }
  CHECK(memory_stats(gpu()).current_bytes == base);
  const int64_t reserved_before = memory_stats(gpu()).reserved_bytes;
  empty_cache(gpu());
  CHECK(memory_stats(gpu()).reserved_bytes <= reserved_before - static_cast<int64_t>(64 * MiB));
  CHECK(memory_stats(gpu()).current_bytes == base);
}

TEST_CASE("cuda memory: an impossible allocation throws naming the size, the device and its total",
          "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("device out-of-memory")) return;
  const size_t total = cuda::device_info(0).total_mem;
  const int64_t numel = static_cast<int64_t>(total / 2);  // f32: twice the device's memory
  const int64_t before = memory_stats(gpu()).current_bytes;
  CHECK_THROWS_WITH(Tensor::empty(Shape{numel}, DType::f32, gpu()),
                    Contains("out of memory on cuda:0") && Contains("cannot allocate") &&
                        Contains(caching::format_bytes(total) + " in total"));
  CHECK(memory_stats(gpu()).current_bytes == before);
  Tensor ok = Tensor::empty(Shape{1024}, DType::f32, gpu());  // the allocator and the device still work
  CHECK(ok.to(Device::cpu()).numel() == 1024);
}

TEST_CASE("cuda memory: events time device work and order streams", "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("events and timers")) return;
  const Tensor host = patterned(static_cast<int64_t>(64 * MiB), DType::u8, 9, true);
  cuda::Timer timer(0);
  timer.start();
  const Tensor dev = host.to(gpu());
  const double ms = timer.stop_ms();
  INFO("64 MiB pinned H2D took " << ms << " ms");
  CHECK(ms > 0.0);
  CHECK(ms < 10000.0);
  cuda::Event done(0, /*timing=*/false);
  done.record();
  done.synchronize();
  CHECK(done.query());
  CHECK_THROWS_WITH(cuda::Event::elapsed_ms(done, done), Contains("cudaEventElapsedTime"));  // no timing flag
  cuda::Event unrecorded(0);
  CHECK_THROWS_WITH(unrecorded.synchronize(), Contains("before record()"));
}

TEST_CASE("cuda memory: Module::to moves parameters, buffers and gradients in place", "[cuda][cuda_memory][gpu]") {
  if (!gpu_or_skip("Module::to")) return;
  auto bn = std::make_shared<nn::BatchNorm1d>(8);
  auto lin = std::make_shared<nn::Linear>(8, 4);
  nn::Module m;
  m.register_module("lin", lin);
  m.register_module("bn", bn);
  const std::vector<Tensor> params = m.parameters();  // handles held outside the module
  std::vector<std::vector<float>> values;
  for (const Tensor& p : params) {
    values.push_back(p.to_vector<float>());
    p.set_grad(ones_like(p));
  }
  const uint64_t v0 = params[0].version();
  m.to(gpu());
  for (size_t i = 0; i < params.size(); ++i) {
    INFO("parameter " << i);
    CHECK(params[i].device() == gpu());
    CHECK(params[i].requires_grad());
    CHECK(params[i].to_vector<float>() == values[i]);
    REQUIRE(params[i].grad().defined());
    CHECK(params[i].grad().device() == gpu());
  }
  CHECK(params[0].version() > v0);
  for (const auto& [name, b] : m.named_buffers()) {
    INFO("buffer " << name);
    CHECK(b.device() == gpu());
  }
  m.to(Device::cpu());
  for (size_t i = 0; i < params.size(); ++i) CHECK(params[i].to_vector<float>() == values[i]);
}

#endif  // MIXTAPE_WITH_CUDA
