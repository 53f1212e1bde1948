#pragma once
// What a training run learns from and how it is measured (apps/trainer.cpp runs the loop): Fashion-MNIST
// classification for the image models, next-character prediction on text for the GPT.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "apps/trainer.h"
#include "core/device.h"
#include "core/tensor.h"
#include "data/text.h"
#include "nn/module.h"

namespace mixtape::app {

class Task {
 public:
  virtual ~Task() = default;
  /// The model the run trains (made from the default generator, seeded by the caller).
  virtual std::shared_ptr<nn::Module> make_model() const = 0;
  /// Batches per epoch on this rank.
  virtual int64_t steps_per_epoch() const = 0;
  /// Starts epoch `epoch` (its shuffle).
  virtual void begin_epoch(int64_t epoch) = 0;
  /// The next batch of the epoch (host tensors: inputs, targets); false when the epoch is over.
  virtual bool next(Tensor& x, Tensor& y) = 0;
  /// The training loss of the model's output for targets y.
  virtual Tensor loss(const Tensor& out, const Tensor& y) const = 0;
  /// Measures the model after an epoch on the held-out data (shared between ranks), into r (test_acc, val_*).
  virtual void evaluate(nn::Module& model, Device device, TrainResult& r) const = 0;
  /// What the run learns from and is measured on, in a line ("Fashion-MNIST (DIR): 60000 training, 10000 test images").
  virtual std::string describe_data() const = 0;
  /// What the checkpoint's config gains (a text model's vocabulary).
  virtual void describe(nlohmann::json& config) const { (void)config; }
};

/// The task of config.model. Text: the vocabulary comes from `saved_config` (a checkpoint being resumed) when given.
std::unique_ptr<Task> make_task(const TrainConfig& config, Device device, const nlohmann::json* saved_config);

/// The GPT of a run's config (flags --context, --width, --depth, --heads) for a vocabulary of `vocab` characters.
std::shared_ptr<nn::Module> make_gpt(const TrainConfig& config, int64_t vocab);

}  // namespace mixtape::app
