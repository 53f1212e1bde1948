// A small GPT (nn/transformer.h) on the GPU against the CPU: the loss and every parameter's gradient after one
// forward and backward (embedding, attention with its causal mask, layer norm, GELU, the layout copies), on the
// emulated GPU here and on a real one by scripts/gpu-check. Skips with a visible message without a GPU.
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/tensor.h"
#include "cuda_test_util.h"
#include "nn/transformer.h"

using namespace mixtape;
using namespace mixtape::testing;

TEST_CASE("cuda: a GPT's forward and backward on the GPU match the CPU", "[cuda][gpu][gpt]") {
  if (!gpu_or_skip("GPT parity")) return;
  Generator gen(44);
  nn::GPT cpu_model({.vocab = 11, .context = 6, .dim = 16, .depth = 2, .heads = 2}, &gen);
  nn::GPT gpu_model({.vocab = 11, .context = 6, .dim = 16, .depth = 2, .heads = 2});
  gpu_model.load_state_dict(cpu_model.state_dict());
  gpu_model.to(gpu());
  const Tensor ids = from_vector<int64_t>({1, 5, 2, 9, 9, 0, 3, 3, 10, 4, 7, 1}, Shape{2, 6});
  const Tensor labels = from_vector<int64_t>({5, 2, 9, 9, 0, 3, 3, 10, 4, 7, 1, 6}, Shape{12});
  clear_tape();
  const Tensor lc = cross_entropy(reshape(cpu_model.forward(ids), Shape{12, 11}), labels);
  backward(lc);
  const Tensor lg = cross_entropy(reshape(gpu_model.forward(ids.to(gpu())), Shape{12, 11}), labels.to(gpu()));
  backward(lg);
  CHECK(std::abs(lg.item() - lc.item()) <= 1e-5);
  const auto pc = cpu_model.named_parameters(), pg = gpu_model.named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) check_close(pg[i].second.grad(), pc[i].second.grad(), 1e-5, 1e-4, pc[i].first);
}
