#pragma once
// A data loader: seeded per-epoch shuffling, batching into fresh contiguous CPU tensors, and a background
// thread that prepares the next batches while the current one is used.
//
//   DataLoader loader(train_set, {.batch_size = 128, .seed = 42});
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.set_epoch(epoch);                  // optional: each loop advances the epoch by itself
//     for (auto [x, y] : loader) { ... }        // x (B, D...) f32, y (B) i64
//   }
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"

namespace mixtape::data {

/// One batch: rows of the data set gathered into fresh contiguous tensors; `auto [x, y] = batch` works.
struct Batch {
  Tensor inputs;      ///< (B, D...) rows of Dataset::inputs
  Tensor labels;      ///< (B) rows of Dataset::labels
  int64_t index = 0;  ///< position of the batch in its epoch, 0-based
};

/// How a DataLoader batches and orders a data set.
struct LoaderOptions {
  int64_t batch_size = 128;  ///< samples per batch (the last one may be smaller unless drop_last)
  bool shuffle = true;       ///< a seeded permutation per epoch; otherwise the data set's order
  bool drop_last = false;    ///< drop the last batch when it is smaller than batch_size
  uint64_t seed = 0;         ///< with the epoch, fully determines the order
  bool prefetch = true;      ///< prepare the next batches on a background thread (results are identical)
  /// Build batches in page-locked host memory (cuda/pinned.h) so that `to(cuda)` is an asynchronous copy; set it
  /// when training on a GPU. A no-op in a build without CUDA or on a machine without a GPU (plain CPU tensors).
  bool pin_memory = false;
  /// Sharding for data-parallel training (dist/): with world_size > 1, every rank draws the same permutation of the
  /// epoch, pads it to a multiple of world_size by repeating its first samples (as PyTorch's DistributedSampler
  /// does without drop_last), and iterates its own share: positions rank, rank + world_size, ... So every rank has
  /// ceil(N / world_size) samples and the same number of batches (a rank with one batch fewer would leave the others
  /// waiting in a collective), and a few samples are seen twice per epoch when N is not a multiple of world_size.
  int rank = 0;
  int world_size = 1;
  /// Optional hook applied to each batch as it is built (e.g. augmentation); runs on the prefetch thread when
  /// prefetch is on, and its exceptions reach the loop that consumes the batches.
  std::function<void(Batch&)> transform = nullptr;
};

/// The order of epoch `epoch` over n samples: a Fisher-Yates permutation drawn from std::mt19937_64 seeded
/// from (seed, epoch), the same on every platform.
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, int64_t epoch);

/// Iterates a Dataset in batches. The order depends only on (seed, epoch), so runs are reproducible and resumable.
class DataLoader {
 public:
  class Iterator;

  /// Shares the data set's tensors (which must be CPU tensors with one label row per sample).
  explicit DataLoader(const Dataset& dataset, LoaderOptions options = {});

  /// Chooses the epoch the next loop iterates (its shuffle). Each begin() advances the epoch by one afterwards.
  void set_epoch(int64_t epoch);
  /// The epoch the next loop will iterate.
  int64_t epoch() const { return epoch_; }
  /// Samples this rank iterates per epoch: N, or ceil(N / world_size) when sharded.
  int64_t num_samples() const;
  /// Batches per epoch: ceil(num_samples / batch_size), or floor with drop_last.
  int64_t num_batches() const;
  /// The sample order of `epoch` for this rank (the identity when not shuffling; this rank's share when sharded).
  std::vector<int64_t> order(int64_t epoch) const;
  /// The data set iterated.
  const Dataset& dataset() const { return dataset_; }
  /// The options given at construction.
  const LoaderOptions& options() const { return options_; }

  /// Starts iterating epoch epoch() (then advances epoch() by one); breaking out early stops the prefetch thread.
  Iterator begin();
  /// The end of any iteration.
  Iterator end();

 private:
  Dataset dataset_;
  LoaderOptions options_;
  int64_t epoch_ = 0;
};

/// An input iterator over the batches of one epoch; copies share the position and the prefetch thread.
class DataLoader::Iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Batch;
  using difference_type = std::ptrdiff_t;
  using pointer = const Batch*;
  using reference = const Batch&;

  /// The end iterator.
  Iterator() = default;
  /// The current batch.
  reference operator*() const;
  /// Members of the current batch.
  pointer operator->() const { return &**this; }
  /// Moves to the next batch (waiting for the prefetch thread); rethrows an exception raised while building it.
  Iterator& operator++();
  /// Moves to the next batch.
  void operator++(int) { ++*this; }
  /// Equal when both are at the end, or when they share one iteration.
  friend bool operator==(const Iterator& a, const Iterator& b);

 private:
  friend class DataLoader;
  struct State;
  explicit Iterator(std::shared_ptr<State> state) : state_(std::move(state)) {}
  bool at_end() const;
  std::shared_ptr<State> state_;
};

/// Element I of a Batch as a pair (inputs, labels), for structured bindings.
template <std::size_t I>
Tensor& get(Batch& b) {
  static_assert(I < 2, "a Batch binds as (inputs, labels)");
  if constexpr (I == 0) return b.inputs; else return b.labels;
}
/// Element I of a const Batch as a pair (inputs, labels).
template <std::size_t I>
const Tensor& get(const Batch& b) {
  static_assert(I < 2, "a Batch binds as (inputs, labels)");
  if constexpr (I == 0) return b.inputs; else return b.labels;
}
/// Element I of an expiring Batch as a pair (inputs, labels).
template <std::size_t I>
Tensor&& get(Batch&& b) {
  return std::move(get<I>(b));
}

}  // namespace mixtape::data

/// A Batch destructures as (inputs, labels).
template <>
struct std::tuple_size<mixtape::data::Batch> : std::integral_constant<std::size_t, 2> {};
/// Both elements of a destructured Batch are tensors.
template <std::size_t I>
struct std::tuple_element<I, mixtape::data::Batch> {
  using type = mixtape::Tensor;
};
