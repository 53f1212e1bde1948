// The GPU path of the distributed layer on 2 ranks, one GPU each (the GPU of the local rank): collectives on CUDA
// tensors over NCCL equal, bit for bit, MPI's on the same data; they are ordered after the kernels that produce their
// input and before the kernels that read their result, without a host wait; DataParallel on GPUs averages gradients
// as on the CPU and keeps the ranks identical; one rank's overflow skips the step everywhere. Runs on real GPUs and in
// the CUDA emulation build (there NCCL is the MPI-backed stand-in of cuda/emu/nccl_mock.cpp and each rank emulates
// its own GPUs: CTest sets MIXTAPE_EMU_DEVICES=2); skips, saying so, where there is no GPU or no NCCL.
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/backend.h"
#include "core/kernels.h"
#include "core/random.h"
#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "nn/layers.h"
#include "optim/optimizer.h"

using namespace mixtape;

namespace {

/// This rank's GPU, or false (with a visible warning) when the build or the machine cannot run these tests. The ranks
/// agree first (over MPI): on a machine with one GPU rank 0 has one and rank 1 does not, and a rank that ran the
/// collectives alone would wait for the other forever.
bool gpu_or_skip(Device& device) {
  std::string why;
  if (!dist::nccl_built()) {
    why = dist::nccl_description();
  } else if (cuda_device_count() <= dist::local_rank()) {
    why = "local rank " + std::to_string(dist::local_rank()) + " needs a GPU of its own, and there are " +
          std::to_string(cuda_device_count());
  }
  const Tensor cannot = from_vector<int64_t>({why.empty() ? 0 : 1}, Shape{1});
  dist::all_reduce(cannot, dist::ReduceOp::max);
  if (cannot.data<int64_t>()[0] != 0) {
    WARN("skipping: " << (why.empty() ? std::string("another rank has no GPU of its own") : why));
    return false;
  }
  device = Device::cuda(dist::local_rank());
  return true;
}

/// The bytes of a tensor's elements, on the host.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  const auto* p = static_cast<const unsigned char*>(h.raw_data());
  return {p, p + h.nbytes()};
}

/// Whether every rank holds the same bytes.
bool same_on_all_ranks(const std::vector<unsigned char>& b) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : b) h = (h ^ c) * 1099511628211ull;
  const auto v = static_cast<int64_t>(h >> 1);
  const Tensor hi = from_vector<int64_t>({v}, Shape{1}), lo = from_vector<int64_t>({-v}, Shape{1});
  dist::all_reduce(hi, dist::ReduceOp::max);
  dist::all_reduce(lo, dist::ReduceOp::max);
  return hi.data<int64_t>()[0] == -lo.data<int64_t>()[0];
}

std::vector<unsigned char> params_bytes(nn::Module& m) {
  std::vector<unsigned char> out;
  for (const Tensor& p : m.parameters()) {
    const std::vector<unsigned char> b = bytes_of(p);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

std::shared_ptr<nn::Sequential> make_net() {
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Linear>(8, 16)).add(std::make_shared<nn::ReLU>()).add(std::make_shared<nn::Linear>(16, 3));
  return net;
}

std::pair<Tensor, Tensor> shard(int r, int s, Device device) {
  Generator gen(static_cast<uint64_t>(300 + 10 * s + r));
  const Tensor x = randn(Shape{4, 8}, DType::f32, Device::cpu(), &gen);
  const std::vector<int64_t> y = {(r + s) % 3, (r + s + 1) % 3, (r + 2 * s) % 3, 1};
  return {x.to(device), from_vector<int64_t>(y, Shape{4}).to(device)};
}

}  // namespace

TEST_CASE("nccl: all_reduce and broadcast of GPU tensors equal MPI's on the same data, bit for bit", "[dist][nccl]") {
  Device gpu;
  if (!gpu_or_skip(gpu)) return;
  REQUIRE(dist::world_size() == 2);
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::i64}) {
    for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::avg, dist::ReduceOp::max}) {
      INFO(dtype_name(dt) << " op " << static_cast<int>(op));
      Generator gen(static_cast<uint64_t>(41 + dist::rank()));  // each rank its own values
      Tensor host = randn(Shape{3, 1000}, DType::f32, Device::cpu(), &gen);
      if (dt == DType::i64) host = kernels::binary(BinaryOp::mul, host, scalar_tensor(1000.0));
      host = kernels::cast(host, dt);
      if (dt == DType::i64 && op == dist::ReduceOp::avg) continue;  // an integer average is not defined here
      const Tensor dev = host.to(gpu);
      dist::all_reduce(host, op);
      dist::all_reduce(dev, op);
      CHECK(bytes_of(dev) == bytes_of(host));
      CHECK(same_on_all_ranks(bytes_of(dev)));
    }
  }
  Generator gen(static_cast<uint64_t>(51 + dist::rank()));
  const Tensor b = randn(Shape{777}, DType::bf16, Device::cpu(), &gen);
  const Tensor want = b.clone();
  dist::broadcast(want, 1);
  const Tensor dev = b.to(gpu);
  dist::broadcast(dev, 1);
  CHECK(bytes_of(dev) == bytes_of(want));
}

TEST_CASE("nccl: a collective reads what earlier kernels wrote and later kernels read its result, without a host wait",
          "[dist][nccl]") {
  Device gpu;
  if (!gpu_or_skip(gpu)) return;
  const int64_t n = 4096;
  const Tensor ones = full(Shape{n}, 1.0, DType::f32, gpu);
  for (int round = 0; round < 3; ++round) {
    // queued on the device's compute stream, not waited for: the all-reduce must run after it
    const Tensor x = kernels::binary(BinaryOp::mul, ones, scalar_tensor(static_cast<double>(dist::rank() + 1 + round), DType::f32, gpu));
    dist::all_reduce(x, dist::ReduceOp::sum);
    // queued after the all-reduce on the compute stream: must see its result
    const Tensor y = kernels::binary(BinaryOp::add, x, scalar_tensor(0.5, DType::f32, gpu));
    const std::vector<float> got = y.to_vector<float>();
    const float want = static_cast<float>((1 + round) + (2 + round)) + 0.5f;
    size_t bad = 0;
    for (float v : got) bad += v != want;
    CHECK(bad == 0);
  }
}

TEST_CASE("nccl: DataParallel on one GPU per rank averages gradients as MPI does and keeps the ranks identical",
          "[dist][nccl]") {
  Device gpu;
  if (!gpu_or_skip(gpu)) return;
  clear_tape();
  manual_seed(static_cast<uint64_t>(23 + dist::rank()));  // different initial weights: the broadcast must fix them
  auto net = make_net();
  net->to(gpu);
  dist::DataParallel dp(net, {.bucket_bytes = 256});  // several buckets
  CHECK(dp.num_buckets() > 1);
  CHECK(same_on_all_ranks(params_bytes(*net)));
  optim::Adam opt(net->parameters(), optim::AdamOptions{.lr = 1e-2});
  for (int s = 0; s < 3; ++s) {
    INFO("step " << s);
    const auto [x, y] = shard(dist::rank(), s, gpu);
    opt.zero_grad();
    backward(cross_entropy(dp.forward(x), y));
    // the expected average: this rank's gradients on the host, averaged over MPI
    std::vector<Tensor> want;
    for (const Tensor& p : net->parameters()) {
      want.push_back(p.grad().to(Device::cpu()));
      dist::all_reduce(want.back(), dist::ReduceOp::avg);
    }
    dp.sync_gradients();
    const std::vector<Tensor> params = net->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      INFO("parameter " << i);
      CHECK(params[i].grad().device() == gpu);
      CHECK(bytes_of(params[i].grad()) == bytes_of(want[i]));
    }
    opt.step();
    CHECK(same_on_all_ranks(params_bytes(*net)));
  }
}

TEST_CASE("nccl: an inf on rank 1's GPU only makes both ranks skip and back off alike", "[dist][nccl][amp]") {
  Device gpu;
  if (!gpu_or_skip(gpu)) return;
  clear_tape();
  manual_seed(29);
  auto net = make_net();
  net->to(gpu);
  dist::DataParallel dp(net);
  optim::Adam opt(net->parameters());
  amp::GradScaler scaler(opt, amp::GradScalerOptions{.init_scale = 1024.0});
  dp.attach(scaler);
  const std::vector<unsigned char> before = params_bytes(*net);
  const auto [x, y] = shard(dist::rank(), 0, gpu);
  opt.zero_grad();
  backward(scaler.scale(cross_entropy(dp.forward(x), y)));
  // no sync_gradients: as for a parameter outside DataParallel, only the found-inf reduction can tell rank 0
  if (dist::rank() == 1) {
    const Tensor g = net->parameters()[0].grad();
    const Tensor inf = full(g.shape(), std::numeric_limits<double>::infinity(), DType::f32, gpu);
    g.copy_(inf);
  }
  CHECK_FALSE(scaler.step());
  scaler.update();
  CHECK(scaler.get_scale() == 512.0);
  CHECK(params_bytes(*net) == before);
  CHECK(same_on_all_ranks(params_bytes(*net)));
  opt.zero_grad();
  backward(scaler.scale(cross_entropy(dp.forward(x), y)));
  dp.sync_gradients();
  CHECK(scaler.step());
  scaler.update();
  CHECK(same_on_all_ranks(params_bytes(*net)));
}
