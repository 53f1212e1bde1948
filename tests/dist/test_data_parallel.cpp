// DataParallel on 2 ranks: averaged gradients bit for bit equal to one process's average of both shards'
// gradients, identical parameters on every rank after each step and run to run, one skip decision and one loss
// scale when only one rank overflows, and no_sync.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/half.h"
#include "core/random.h"
#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "nn/layers.h"
#include "optim/optimizer.h"

using namespace mixtape;

namespace {

std::shared_ptr<nn::Sequential> make_net() {
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Linear>(8, 16)).add(std::make_shared<nn::ReLU>()).add(std::make_shared<nn::Linear>(16, 3));
  return net;
}

/// Shard r of step s: 4 samples of 8 features and their labels, the same on every rank.
std::pair<Tensor, Tensor> shard(int r, int s) {
  Generator gen(static_cast<uint64_t>(100 + 10 * s + r));
  const Tensor x = randn(Shape{4, 8}, DType::f32, Device::cpu(), &gen);
  std::vector<int64_t> y = {(r + s) % 3, (r + s + 1) % 3, (r + 2 * s) % 3, 1};
  return {x, from_vector<int64_t>(y, Shape{4})};
}

/// FNV-1a over the bytes of every parameter.
int64_t params_hash(nn::Module& m) {
  uint64_t h = 1469598103934665603ull;
  for (const Tensor& p : m.parameters()) {
    const auto* b = static_cast<const unsigned char*>(p.raw_data());
    for (size_t i = 0; i < p.nbytes(); ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  return static_cast<int64_t>(h >> 1);
}

/// Whether every rank holds the same value.
bool same_on_all_ranks(int64_t v) {
  const Tensor hi = from_vector<int64_t>({v}, Shape{1}), lo = from_vector<int64_t>({-v}, Shape{1});
  dist::all_reduce(hi, dist::ReduceOp::max);
  dist::all_reduce(lo, dist::ReduceOp::max);
  return hi.data<int64_t>()[0] == -lo.data<int64_t>()[0];
}

std::vector<float> grad_of(const Tensor& p) { return p.grad().to_vector<float>(); }

}  // namespace

TEST_CASE("data parallel: averaged gradients equal one process's average of both shards, bit for bit", "[dist]") {
  REQUIRE(dist::world_size() == 2);
  clear_tape();
  manual_seed(static_cast<uint64_t>(7 + dist::rank()));  // different initial weights: the broadcast must fix them
  auto net = make_net();
  dist::DataParallel dp(net);
  CHECK(same_on_all_ranks(params_hash(*net)));
  CHECK(dp.bytes_per_sync() == (8 * 16 + 16 + 16 * 3 + 3) * 4);

  // the reference on every rank: a copy of the (broadcast) model, one backward per shard, averaged in float32
  auto ref = make_net();
  ref->load_state_dict(net->state_dict());
  std::vector<std::vector<float>> g0, g1;
  for (int r : {0, 1}) {
    zero_grad(ref->parameters());
    const auto [x, y] = shard(r, 0);
    backward(cross_entropy(ref->forward(x), y));
    for (const Tensor& p : ref->parameters()) (r == 0 ? g0 : g1).push_back(grad_of(p));
  }
  const auto [x, y] = shard(dist::rank(), 0);
  backward(cross_entropy(dp.forward(x), y));
  dp.sync_gradients();
  const std::vector<Tensor> params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    INFO("parameter " << i);
    const std::vector<float> got = grad_of(params[i]);
    size_t bad = 0;
    for (size_t k = 0; k < got.size(); ++k) {
      const float want = (g0[i][k] + g1[i][k]) / 2.0f;
      if (std::memcmp(&got[k], &want, sizeof(float)) != 0) ++bad;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("data parallel: parameters stay identical on every rank, and two runs give the same bits", "[dist]") {
  std::vector<int64_t> runs;
  for (int run = 0; run < 2; ++run) {
    clear_tape();
    manual_seed(11);
    auto net = make_net();
    dist::DataParallel dp(net, {.bucket_bytes = 200});  // several buckets
    CHECK(dp.num_buckets() > 1);
    optim::Adam opt(net->parameters(), optim::AdamOptions{.lr = 1e-2});
    for (int s = 0; s < 4; ++s) {
      const auto [x, y] = shard(dist::rank(), s);
      opt.zero_grad();
      backward(cross_entropy(dp.forward(x), y));
      dp.sync_gradients();
      opt.step();
      CHECK(same_on_all_ranks(params_hash(*net)));
    }
    runs.push_back(params_hash(*net));
  }
  CHECK(runs[0] == runs[1]);
}

TEST_CASE("data parallel: an inf on rank 1 only makes both ranks skip, back off alike and stay identical", "[dist][amp]") {
  clear_tape();
  manual_seed(13);
  auto net = make_net();
  dist::DataParallel dp(net);
  optim::Adam opt(net->parameters());
  amp::GradScaler scaler(opt, amp::GradScalerOptions{.init_scale = 1024.0});
  dp.attach(scaler);
  const int64_t before = params_hash(*net);
  const auto [x, y] = shard(dist::rank(), 0);
  opt.zero_grad();
  backward(scaler.scale(cross_entropy(dp.forward(x), y)));
  // no sync_gradients: as for a parameter outside DataParallel, only the found-inf reduction can tell rank 0
  if (dist::rank() == 1) net->parameters()[0].grad().data<float>()[3] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(scaler.step());  // skipped on both ranks
  scaler.update();
  CHECK(scaler.get_scale() == 512.0);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(params_hash(*net) == before);
  CHECK(same_on_all_ranks(params_hash(*net)));
  // the next, clean step is applied on both
  opt.zero_grad();
  backward(scaler.scale(cross_entropy(dp.forward(x), y)));
  dp.sync_gradients();
  CHECK(scaler.step());
  scaler.update();
  CHECK(same_on_all_ranks(params_hash(*net)));
}

TEST_CASE("data parallel: inside no_sync the gradients stay this rank's own", "[dist]") {
  clear_tape();
  manual_seed(17);
  auto net = make_net();
  dist::DataParallel dp(net);
  const auto [x, y] = shard(dist::rank(), 0);
  backward(cross_entropy(dp.forward(x), y));
  const std::vector<float> local = grad_of(net->parameters()[0]);
  {
    auto guard = dp.no_sync();
    dp.sync_gradients();
  }
  CHECK(grad_of(net->parameters()[0]) == local);
  CHECK_FALSE(same_on_all_ranks(params_hash(*net) ^ static_cast<int64_t>(local[0] * 1e6)));  // the ranks differ
  dp.sync_gradients();
  CHECK(grad_of(net->parameters()[0]) != local);
}

TEST_CASE("data parallel: bf16 gradients halve the bytes and equal the rounded average, bit for bit", "[dist]") {
  clear_tape();
  manual_seed(19);
  auto net = make_net();
  dist::DataParallel dp(net, {.gradient_dtype = DType::bf16});
  CHECK(dp.bytes_per_sync() == (8 * 16 + 16 + 16 * 3 + 3) * 2);
  auto ref = make_net();
  ref->load_state_dict(net->state_dict());
  std::vector<std::vector<float>> g[2];
  for (int r : {0, 1}) {
    zero_grad(ref->parameters());
    const auto [x, y] = shard(r, 1);
    backward(cross_entropy(ref->forward(x), y));
    for (const Tensor& p : ref->parameters()) g[r].push_back(grad_of(p));
  }
  const auto [x, y] = shard(dist::rank(), 1);
  const int64_t before = dist::bytes_communicated();
  backward(cross_entropy(dp.forward(x), y));
  dp.sync_gradients();
  CHECK(dist::bytes_communicated() - before >= dp.bytes_per_sync());
  const std::vector<Tensor> params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<float> got = grad_of(params[i]);
    size_t bad = 0;
    for (size_t k = 0; k < got.size(); ++k) {
      // each rank's gradient rounded to bf16, their sum rounded to bf16, halved (exact), widened
      const float a = static_cast<float>(BFloat16(g[0][i][k])), b = static_cast<float>(BFloat16(g[1][i][k]));
      const float want = static_cast<float>(BFloat16(a + b)) / 2.0f;
      if (std::memcmp(&got[k], &want, sizeof(float)) != 0) ++bad;
    }
    CHECK(bad == 0);
  }
}
