// The training tasks (apps/tasks.h).
#include "apps/tasks.h"

#include <algorithm>
#include <cmath>

#include "apps/models.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/kernels.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "dist/dist.h"
#include "nn/transformer.h"

namespace mixtape::app {

std::shared_ptr<nn::Module> make_gpt(const TrainConfig& c, int64_t vocab) {
  MIXTAPE_CHECK(c.context >= 1 && c.width >= 1 && c.depth >= 1 && c.heads >= 1, "--context, --width, --depth and "
                "--heads must be positive, got ", c.context, ", ", c.width, ", ", c.depth, ", ", c.heads);
  MIXTAPE_CHECK(c.width % c.heads == 0, "--width ", c.width, " must be a multiple of --heads ", c.heads);
  return std::make_shared<nn::GPT>(nn::GPTConfig{.vocab = vocab, .context = c.context, .dim = c.width, .depth = c.depth,
                                                 .heads = c.heads});
}

namespace {

/// Fashion-MNIST classification: the loader's batches, cross-entropy, test accuracy.
class ImageTask final : public Task {
 public:
  ImageTask(const TrainConfig& c, Device device)
      : c_(c),
        train_(data::load_fashion_mnist(dir(c), true, c.limit)),
        test_(data::load_fashion_mnist(dir(c), false, c.test_limit)),
        // On a GPU the batches are built in pinned memory, so their copies to the device are asynchronous.
        // Several ranks: the same shuffle, each rank its own share (data/loader.h); --batch is per rank.
        loader_(train_, {.batch_size = c.batch, .shuffle = true, .drop_last = false, .seed = c.seed,
                         .pin_memory = device.is_cuda(), .rank = dist::rank(), .world_size = dist::world_size()}) {}

  std::shared_ptr<nn::Module> make_model() const override { return app::make_model(c_.model); }
  int64_t steps_per_epoch() const override { return loader_.num_batches(); }
  void begin_epoch(int64_t epoch) override {
    loader_.set_epoch(epoch);
    it_ = loader_.begin();
  }
  bool next(Tensor& x, Tensor& y) override {
    if (it_ == loader_.end()) return false;
    x = (*it_).inputs;
    y = (*it_).labels;
    ++it_;
    return true;
  }
  Tensor loss(const Tensor& out, const Tensor& y) const override { return cross_entropy(out, y); }
  std::string describe_data() const override {
    return detail::cat("Fashion-MNIST (", dir(c_), "): ", train_.size(), " training images, ", test_.size(), " test images");
  }

  /// Fraction of correctly classified samples, in batches, without recording. The count stays on the device
  /// (float32 sums of whole numbers, exact below 2^24 samples) and is read once at the end. Several ranks share the
  /// batches (rank r takes batches r, r + N, ...) and add up their counts.
  void evaluate(nn::Module& model, Device device, TrainResult& r) const override {
    NoGradGuard no_grad;
    model.eval();
    data::DataLoader loader(test_, {.batch_size = 1000, .shuffle = false, .prefetch = false, .pin_memory = device.is_cuda()});
    const int world = dist::world_size(), me = dist::rank();
    Tensor correct = scalar_tensor(0.0, DType::f32, device);
    for (const data::Batch& batch : loader) {
      if (batch.index % world != me) continue;
      const Tensor yd = batch.labels.to(device);
      const Tensor pred = kernels::argmax(model.forward(batch.inputs.to(device)), -1, false);
      const Tensor hits = kernels::cast(kernels::binary(BinaryOp::eq, pred, yd), DType::f32);
      correct = kernels::binary(BinaryOp::add, correct, kernels::reduce(ReduceOp::sum, hits, {}, false));
    }
    if (world > 1) dist::all_reduce(correct, dist::ReduceOp::sum);
    model.train();
    r.test_acc = test_.size() ? correct.item() / static_cast<double>(test_.size()) : 0.0;
  }

 private:
  static std::string dir(const TrainConfig& c) { return c.data_dir.empty() ? data::default_fashion_mnist_dir() : c.data_dir; }
  const TrainConfig& c_;
  data::Dataset train_, test_;
  data::DataLoader loader_;
  data::DataLoader::Iterator it_;
};

/// Next-character prediction: random windows of the training text (drawn from the default generator, whose state
/// checkpoints keep, so a resumed run draws what the straight run would), cross-entropy per character, and the
/// validation text's loss, bits per character and next-character accuracy over consecutive windows.
class TextTask final : public Task {
 public:
  TextTask(const TrainConfig& c, const nlohmann::json* saved) : c_(c) {
    MIXTAPE_CHECK(c.steps >= 1, "--steps must be at least 1, got ", c.steps);
    std::optional<data::CharVocab> vocab;
    if (saved != nullptr && saved->contains("vocab")) vocab = data::CharVocab::from_chars((*saved)["vocab"].get<std::string>());
    const data::CharVocab* v = vocab ? &*vocab : nullptr;
    corpus_ = c.data_dir.empty() ? data::load_default_text(0.1, v, c.context + 1)
                                 : data::load_text(c.data_dir, 0.1, v, c.context + 1);
    if (c.limit > 0 && c.limit < corpus_.train.numel()) {  // --limit: the first characters of the training part
      MIXTAPE_CHECK(c.limit > c.context, "--limit ", c.limit, " keeps no training window of --context ", c.context);
      corpus_.train = kernels::narrow(corpus_.train, 0, 0, c.limit);
    }
    if (c.test_limit > 0 && c.test_limit < corpus_.validation.numel()) {
      MIXTAPE_CHECK(c.test_limit > c.context, "--test-limit ", c.test_limit, " keeps no validation window of --context ",
                    c.context);
      corpus_.validation = kernels::narrow(corpus_.validation, 0, 0, c.test_limit);
    }
  }

  std::shared_ptr<nn::Module> make_model() const override { return make_gpt(c_, corpus_.vocab.size()); }
  int64_t steps_per_epoch() const override { return c_.steps; }
  void begin_epoch(int64_t) override { done_ = 0; }
  bool next(Tensor& x, Tensor& y) override {
    if (done_ == c_.steps) return false;
    ++done_;
    // every rank draws the global batch (the same windows) and takes its own share
    const int world = dist::world_size();
    auto [gx, gy] = data::sample_windows(corpus_.train, c_.batch * world, c_.context, default_generator());
    x = world == 1 ? gx : kernels::narrow(gx, 0, dist::rank() * c_.batch, c_.batch);
    y = world == 1 ? gy : kernels::narrow(gy, 0, dist::rank() * c_.batch, c_.batch);
    return true;
  }
  Tensor loss(const Tensor& out, const Tensor& y) const override {
    const int64_t vocab = out.size(-1);
    return cross_entropy(reshape(out, Shape{-1, vocab}), reshape(y, Shape{-1}));
  }

  void evaluate(nn::Module& model, Device device, TrainResult& r) const override {
    NoGradGuard no_grad;
    model.eval();
    const int world = dist::world_size(), me = dist::rank();
    const int64_t t = c_.context, n = corpus_.validation.numel();
    const int64_t windows = (n - 1) / t;  // consecutive windows, each with its next characters
    constexpr int64_t kRows = 64;
    Tensor loss_sum = scalar_tensor(0.0, DType::f32, device), hits = scalar_tensor(0.0, DType::f32, device);
    const int64_t* ids = corpus_.validation.data<int64_t>();
    for (int64_t first = 0, batch_index = 0; first < windows; first += kRows, ++batch_index) {
      if (batch_index % world != me) continue;
      const int64_t rows = std::min(kRows, windows - first);
      Tensor x = Tensor::empty(Shape{rows, t}, DType::i64), y = Tensor::empty(Shape{rows * t}, DType::i64);
      for (int64_t i = 0; i < rows * t; ++i) {
        x.data<int64_t>()[i] = ids[first * t + i];
        y.data<int64_t>()[i] = ids[first * t + i + 1];
      }
      const Tensor yd = y.to(device);
      const Tensor logits = reshape(model.forward(x.to(device)), Shape{rows * t, -1});
      loss_sum = kernels::binary(BinaryOp::add, loss_sum,
                                 kernels::cast(cross_entropy(logits, yd, Reduction::sum), DType::f32));
      const Tensor pred = kernels::argmax(logits, -1, false);
      hits = kernels::binary(BinaryOp::add, hits,
                             kernels::reduce(ReduceOp::sum, kernels::cast(kernels::binary(BinaryOp::eq, pred, yd), DType::f32), {}, false));
    }
    if (world > 1) {
      dist::all_reduce(loss_sum, dist::ReduceOp::sum);
      dist::all_reduce(hits, dist::ReduceOp::sum);
    }
    model.train();
    const double count = static_cast<double>(windows * t);
    r.val_loss = count > 0 ? loss_sum.item() / count : NAN;
    r.val_bpc = r.val_loss / std::log(2.0);
    r.test_acc = count > 0 ? hits.item() / count : 0.0;
    r.context = t;
  }

  void describe(nlohmann::json& config) const override { config["vocab"] = corpus_.vocab.chars_utf8(); }
  std::string describe_data() const override {
    return detail::cat(corpus_.source, ": ", corpus_.characters, " characters (", corpus_.vocab.size(), " distinct); ",
                       corpus_.train.numel(), " for training, ", corpus_.validation.numel(), " for validation");
  }

 private:
  const TrainConfig& c_;
  data::TextCorpus corpus_;
  int64_t done_ = 0;
};

}  // namespace

std::unique_ptr<Task> make_task(const TrainConfig& c, Device device, const nlohmann::json* saved_config) {
  // an unknown --model is named before any data is read
  const std::vector<std::string> names = model_names();
  if (std::find(names.begin(), names.end(), c.model) == names.end()) make_model(c.model);  // throws, listing them
  if (is_text_model(c.model)) return std::make_unique<TextTask>(c, saved_config);
  return std::make_unique<ImageTask>(c, device);
}

}  // namespace mixtape::app
