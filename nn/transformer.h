#pragma once
// The pieces of a small GPT: token embeddings, causal multi-head self-attention, a pre-norm transformer block, and
// the model itself. Written against the differentiable ops only (autograd/ops.h): no precision is named here; under
// amp::Autocast the matrix products run in the lower precision and softmax, layer norm and the loss in float32,
// as the policy table says.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/module.h"

namespace mixtape::nn {

/// A table of num_embeddings rows of `dim` values, initialised N(0, std^2) (PyTorch's default: std = 1); forward
/// takes i64 ids of any shape and returns (ids..., dim).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, double std = 1.0, Generator* gen = nullptr);
  Tensor forward(const Tensor& ids) override { return embedding(weight, ids); }
  std::string type_name() const override { return "Embedding"; }
  Tensor weight;
};

/// Multi-head self-attention over x (B, T, dim): one projection to queries, keys and values (qkv: dim -> 3 dim),
/// `heads` heads of dim / heads each through scaled_dot_product_attention (causal: position t sees 0..t), and an
/// output projection (proj: dim -> dim).
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t dim, int64_t heads, bool causal = false, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MultiheadAttention"; }
  int64_t heads() const { return heads_; }
  std::shared_ptr<Linear> qkv, proj;

 private:
  int64_t dim_, heads_;
  bool causal_;
};

/// Pre-norm transformer block (GPT-2's): x + attn(ln1(x)), then + mlp(ln2(x)) with mlp = fc2(gelu(fc1(.))), fc1 widening
/// to 4 dim.
class TransformerBlock : public Module {
 public:
  TransformerBlock(int64_t dim, int64_t heads, bool causal = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "TransformerBlock"; }
  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<MultiheadAttention> attn;
  std::shared_ptr<Linear> fc1, fc2;
};

/// A character- (or token-) level GPT: token and learned position embeddings (N(0, 0.02^2), as GPT-2), `depth`
/// causal blocks, a final layer norm and an untied head (dim -> vocab, no bias; untied keeps the embedding's and the
/// head's gradients apart and matches the PyTorch reference script in bench/). forward: ids (B, T) with
/// T <= context -> logits (B, T, vocab).
struct GPTConfig {
  int64_t vocab = 0, context = 128, dim = 128, depth = 4, heads = 4;
};
class GPT : public Module {
 public:
  explicit GPT(const GPTConfig& config, Generator* gen = nullptr);
  Tensor forward(const Tensor& ids) override;
  std::string type_name() const override { return "GPT"; }
  const GPTConfig& config() const { return config_; }
  std::shared_ptr<Embedding> tok, pos;
  std::vector<std::shared_ptr<TransformerBlock>> blocks;
  std::shared_ptr<LayerNorm> ln_f;
  std::shared_ptr<Linear> head;

 private:
  GPTConfig config_;
};

}  // namespace mixtape::nn
