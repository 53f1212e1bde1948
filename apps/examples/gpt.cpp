// A character-level GPT written as a user would, against the one public include <mixtape/mixtape.h>: its own
// attention layer from the ops (narrow, permute, scaled_dot_product_attention), its own block and model, trained
// with autocast (and a GradScaler for fp16) on a short public-domain verse, then sampled greedily.
//   gpt [max_final_loss] [fp32|bf16|fp16]
// Exits 1 when the final training loss is above max_final_loss (default 1.0): the model must have learned the text.
#include <mixtape/mixtape.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace mixtape;

namespace {

// Causal self-attention over x (B, T, dim): one projection to q, k and v, `heads` heads, an output projection.
class SelfAttention : public nn::Module {
 public:
  SelfAttention(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {
    qkv_ = register_module("qkv", std::make_shared<nn::Linear>(dim, 3 * dim));
    out_ = register_module("out", std::make_shared<nn::Linear>(dim, dim));
  }
  Tensor forward(const Tensor& x) override {
    const int64_t b = x.size(0), t = x.size(1), hd = dim_ / heads_;
    const Tensor qkv = qkv_->forward(x);  // (B, T, 3 dim)
    auto head_view = [&](int64_t i) {     // (B, heads, T, hd)
      return permute(reshape(narrow(qkv, 2, i * dim_, dim_), Shape{b, t, heads_, hd}), {0, 2, 1, 3});
    };
    const Tensor y = scaled_dot_product_attention(head_view(0), head_view(1), head_view(2), /*causal=*/true);
    return out_->forward(reshape(transpose(y, 1, 2), Shape{b, t, dim_}));
  }

 private:
  int64_t dim_, heads_;
  std::shared_ptr<nn::Linear> qkv_, out_;
};

class Block : public nn::Module {
 public:
  Block(int64_t dim, int64_t heads) {
    ln1_ = register_module("ln1", std::make_shared<nn::LayerNorm>(dim));
    attn_ = register_module("attn", std::make_shared<SelfAttention>(dim, heads));
    ln2_ = register_module("ln2", std::make_shared<nn::LayerNorm>(dim));
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(dim, 4 * dim));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(4 * dim, dim));
  }
  Tensor forward(const Tensor& x) override {
    const Tensor h = x + attn_->forward(ln1_->forward(x));
    return h + fc2_->forward(gelu(fc1_->forward(ln2_->forward(h))));
  }

 private:
  std::shared_ptr<nn::LayerNorm> ln1_, ln2_;
  std::shared_ptr<SelfAttention> attn_;
  std::shared_ptr<nn::Linear> fc1_, fc2_;
};

class TinyGPT : public nn::Module {
 public:
  TinyGPT(int64_t vocab, int64_t context, int64_t dim, int64_t depth, int64_t heads) {
    tok_ = register_module("tok", std::make_shared<nn::Embedding>(vocab, dim, 0.02));
    pos_ = register_module("pos", std::make_shared<nn::Embedding>(context, dim, 0.02));
    for (int64_t i = 0; i < depth; ++i)
      blocks_.push_back(register_module("block" + std::to_string(i), std::make_shared<Block>(dim, heads)));
    ln_ = register_module("ln", std::make_shared<nn::LayerNorm>(dim));
    head_ = register_module("head", std::make_shared<nn::Linear>(dim, vocab, false));
  }
  Tensor forward(const Tensor& ids) override {  // (B, T) -> logits (B, T, vocab)
    Tensor h = tok_->forward(ids) + pos_->forward(arange(ids.size(1), DType::i64));
    for (const auto& blk : blocks_) h = blk->forward(h);
    return head_->forward(ln_->forward(h));
  }

 private:
  std::shared_ptr<nn::Embedding> tok_, pos_;
  std::vector<std::shared_ptr<Block>> blocks_;
  std::shared_ptr<nn::LayerNorm> ln_;
  std::shared_ptr<nn::Linear> head_;
};

const char* kVerse =
    "Twinkle, twinkle, little star,\nHow I wonder what you are!\nUp above the world so high,\n"
    "Like a diamond in the sky.\nWhen the blazing sun is gone,\nWhen he nothing shines upon,\n"
    "Then you show your little light,\nTwinkle, twinkle, all the night.\n";

}  // namespace

int main(int argc, char** argv) {
  const double max_final_loss = argc > 1 ? std::atof(argv[1]) : 1.0;
  const std::string precision = argc > 2 ? argv[2] : "bf16";
  const DType lower = precision == "fp16" ? DType::f16 : precision == "bf16" ? DType::bf16 : DType::f32;
  try {
    const std::string text = kVerse;
    const data::CharVocab vocab = data::CharVocab::from_text(data::decode_utf8(text, "the verse"));
    const std::vector<int64_t> ids = vocab.encode(text);
    const Tensor all = from_vector<int64_t>(ids, Shape{static_cast<int64_t>(ids.size())});
    constexpr int64_t kContext = 32;

    manual_seed(1);
    TinyGPT model(vocab.size(), kContext, 64, 2, 4);
    optim::AdamW opt(model.parameters(), {.lr = 3e-3});
    amp::GradScaler scaler(opt, {.enabled = lower == DType::f16});
    Generator gen(2);
    double first = 0, last = 0;
    for (int step = 0; step < 200; ++step) {
      const auto [x, y] = data::sample_windows(all, 16, kContext, gen);
      Tensor loss;
      {
        std::optional<amp::Autocast> ac;
        if (lower != DType::f32) ac.emplace(Device::cpu(), lower);
        loss = cross_entropy(reshape(model.forward(x), Shape{-1, vocab.size()}), reshape(y, Shape{-1}));
      }
      opt.zero_grad();
      backward(scaler.scale(loss));
      scaler.step();
      scaler.update();
      (step == 0 ? first : last) = loss.item<float>();
      if (step % 100 == 0) std::cout << "step " << step << " loss " << loss.item<float>() << "\n";
    }
    std::cout << "loss " << first << " -> " << last << " (" << precision << ")\n";

    // greedy continuation of "Twinkle"
    NoGradGuard no_grad;
    model.eval();
    std::vector<int64_t> out = vocab.encode("Twinkle");
    for (int i = 0; i < 60; ++i) {
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(out.size()), kContext);
      const Tensor window = from_vector<int64_t>(std::vector<int64_t>(out.end() - n, out.end()), Shape{1, n});
      const Tensor last_logits = narrow(reshape(model.forward(window), Shape{n, vocab.size()}), 0, n - 1, 1);
      out.push_back(argmax(last_logits, -1).item<int64_t>());
    }
    std::cout << "sample: " << vocab.decode(out) << "\n";
    if (!(last <= max_final_loss)) {
      std::cerr << "gpt example: final loss " << last << " is above " << max_final_loss << "\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "gpt example: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
