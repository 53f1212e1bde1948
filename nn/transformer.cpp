// nn/transformer.h: Embedding, MultiheadAttention, TransformerBlock, GPT.
#include "nn/transformer.h"

#include "autograd/ops.h"
#include "core/error.h"

namespace mixtape::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, double std, Generator* gen) {
  MIXTAPE_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ", dim);
  MIXTAPE_CHECK(std > 0, "Embedding: std must be positive, got ", std);
  weight = register_parameter("weight", randn(Shape{num_embeddings, dim}, DType::f32, Device::cpu(), gen, 0.0, std));
}

MultiheadAttention::MultiheadAttention(int64_t dim, int64_t heads, bool causal, Generator* gen)
    : dim_(dim), heads_(heads), causal_(causal) {
  MIXTAPE_CHECK(dim > 0 && heads > 0 && dim % heads == 0, "MultiheadAttention: the width ", dim,
                " must be a positive multiple of the number of heads ", heads);
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, true, gen));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim, true, gen));
}

Tensor MultiheadAttention::forward(const Tensor& x) {
  MIXTAPE_CHECK(x.defined() && x.dim() == 3 && x.size(2) == dim_, "MultiheadAttention: expected input (B, T, ", dim_,
                "), got ", x.defined() ? x.shape().to_string() : std::string("an undefined tensor"));
  const int64_t b = x.size(0), t = x.size(1), hd = dim_ / heads_;
  // (B, T, 3 dim) -> (3, B, heads, T, hd): one copy, then q, k, v as three slices of it
  const Tensor parts = permute(reshape(qkv->forward(x), Shape{b, t, 3, heads_, hd}), {2, 0, 3, 1, 4});
  auto part = [&](int64_t i) { return reshape(narrow(parts, 0, i, 1), Shape{b, heads_, t, hd}); };
  const Tensor y = scaled_dot_product_attention(part(0), part(1), part(2), causal_);  // (B, heads, T, hd)
  return proj->forward(reshape(permute(y, {0, 2, 1, 3}), Shape{b, t, dim_}));
}

TransformerBlock::TransformerBlock(int64_t dim, int64_t heads, bool causal, Generator* gen) {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(dim));
  attn = register_module("attn", std::make_shared<MultiheadAttention>(dim, heads, causal, gen));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(dim));
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, 4 * dim, true, gen));
  fc2 = register_module("fc2", std::make_shared<Linear>(4 * dim, dim, true, gen));
}

Tensor TransformerBlock::forward(const Tensor& x) {
  const Tensor h = x + attn->forward(ln1->forward(x));
  return h + fc2->forward(gelu(fc1->forward(ln2->forward(h))));
}

GPT::GPT(const GPTConfig& c, Generator* gen) : config_(c) {
  MIXTAPE_CHECK(c.vocab > 0 && c.context > 0 && c.dim > 0 && c.depth > 0 && c.heads > 0,
                "GPT: vocab, context, dim, depth and heads must be positive, got ", c.vocab, ", ", c.context, ", ",
                c.dim, ", ", c.depth, ", ", c.heads);
  tok = register_module("tok", std::make_shared<Embedding>(c.vocab, c.dim, 0.02, gen));
  pos = register_module("pos", std::make_shared<Embedding>(c.context, c.dim, 0.02, gen));
  for (int64_t i = 0; i < c.depth; ++i)
    blocks.push_back(register_module("block" + std::to_string(i), std::make_shared<TransformerBlock>(c.dim, c.heads, true, gen)));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(c.dim));
  head = register_module("head", std::make_shared<Linear>(c.dim, c.vocab, false, gen));
}

Tensor GPT::forward(const Tensor& ids) {
  MIXTAPE_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::i64, "GPT: expected i64 ids (B, T), got ",
                ids.defined() ? ids.shape().to_string() + " " + dtype_name(ids.dtype()) : std::string("undefined"));
  const int64_t t = ids.size(1);
  MIXTAPE_CHECK(t >= 1 && t <= config_.context, "GPT: a sequence of ", t, " tokens does not fit the context of ",
                config_.context);
  Tensor h = tok->forward(ids) + pos->forward(arange(t, DType::i64, ids.device()));  // (B, T, dim) + (T, dim)
  for (const auto& blk : blocks) h = blk->forward(h);
  return head->forward(ln_f->forward(h));
}

}  // namespace mixtape::nn
