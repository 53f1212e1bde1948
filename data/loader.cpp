#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "core/error.h"
#ifdef MIXTAPE_WITH_CUDA
#include "cuda/pinned.h"
#endif

namespace mixtape::data {
namespace {

// Batches the prefetch thread may have ready ahead of the consumer.
constexpr size_t kQueueCapacity = 2;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, bound) by rejection (no modulo bias). std::uniform_int_distribution is avoided on purpose:
// its algorithm is implementation-defined, and the order must be the same on every platform.
uint64_t draw_below(std::mt19937_64& gen, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound: [threshold, 2^64) holds whole cycles
  for (;;) {
    const uint64_t r = gen();
    if (r >= threshold) return r % bound;
  }
}

// Whether batches can be pinned here (a CUDA build on a machine with a GPU).
bool can_pin() {
#ifdef MIXTAPE_WITH_CUDA
  return cuda::pinned_memory_available();
#else
  return false;
#endif
}

// An uninitialised CPU tensor, in pinned memory when asked and possible.
Tensor empty_host(const Shape& shape, DType dtype, bool pinned) {
#ifdef MIXTAPE_WITH_CUDA
  if (pinned) return cuda::empty_pinned(shape, dtype);
#else
  (void)pinned;
#endif
  return Tensor::empty(shape, dtype);
}

// Rows idx[0..count) of t (N, ...) gathered into a fresh contiguous (count, ...) tensor; any dtype.
Tensor gather_rows(const Tensor& t, const int64_t* idx, int64_t count, bool pinned) {
  Shape shape = t.shape();
  const int64_t n = shape[0];
  shape[0] = count;
  Tensor out = empty_host(shape, t.dtype(), pinned);
  const size_t row = t.nbytes() / static_cast<size_t>(n);
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(dst + static_cast<size_t>(i) * row, src + static_cast<size_t>(idx[i]) * row, row);
  }
  return out;
}

}  // namespace

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, int64_t epoch) {
  MIXTAPE_CHECK(n >= 0, "shuffled_indices: n must be >= 0, got ", n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 gen(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(epoch))));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(draw_below(gen, static_cast<uint64_t>(i) + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

// ---- DataLoader ----

DataLoader::DataLoader(const Dataset& dataset, LoaderOptions options)
    : dataset_(dataset), options_(std::move(options)) {
  const std::string what = "DataLoader over '" + dataset_.name + "'";
  MIXTAPE_CHECK(options_.batch_size >= 1, what, ": batch_size must be at least 1, got ", options_.batch_size);
  MIXTAPE_CHECK(dataset_.inputs.defined() && dataset_.inputs.dim() >= 1, what,
                ": inputs must be a tensor of shape (N, ...)");
  MIXTAPE_CHECK(dataset_.labels.defined() && dataset_.labels.dim() >= 1, what,
                ": labels must be a tensor of shape (N, ...)");
  MIXTAPE_CHECK(dataset_.labels.size(0) == dataset_.inputs.size(0), what, ": ", dataset_.inputs.size(0),
                " inputs but ", dataset_.labels.size(0), " labels");
  MIXTAPE_CHECK(dataset_.inputs.device().is_cpu() && dataset_.labels.device().is_cpu(), what,
                ": the data set must be on the CPU (batches are moved to a device by the trainer)");
  MIXTAPE_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size, what,
                ": rank ", options_.rank, " is not a rank of a world of ", options_.world_size);
}

void DataLoader::set_epoch(int64_t epoch) {
  MIXTAPE_CHECK(epoch >= 0, "DataLoader::set_epoch: epoch must be >= 0, got ", epoch);
  epoch_ = epoch;
}

int64_t DataLoader::num_samples() const {
  const int64_t n = dataset_.size(), w = options_.world_size;
  return w > 1 ? (n + w - 1) / w : n;
}

int64_t DataLoader::num_batches() const {
  const int64_t n = num_samples(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  std::vector<int64_t> all;
  if (options_.shuffle) {
    all = shuffled_indices(dataset_.size(), options_.seed, epoch);
  } else {
    all.resize(static_cast<size_t>(dataset_.size()));
    std::iota(all.begin(), all.end(), int64_t{0});
  }
  const int64_t w = options_.world_size;
  if (w <= 1 || all.empty()) return all;
  // pad to a multiple of the world size with the first samples, then take every w-th from this rank's position
  const int64_t per_rank = num_samples(), total = per_rank * w, n = static_cast<int64_t>(all.size());
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(per_rank));
  for (int64_t p = options_.rank; p < total; p += w) mine.push_back(all[static_cast<size_t>(p % n)]);
  return mine;
}

// ---- one epoch's iteration ----

struct DataLoader::Iterator::State {
  struct Item {
    Batch batch;
    std::exception_ptr error;
  };

  Dataset dataset;
  std::vector<int64_t> order;
  int64_t batch_size = 0;
  int64_t num_batches = 0;
  bool pinned = false;  // batches in pinned host memory
  std::function<void(Batch&)> transform;

  int64_t position = 0;  // index of `current`; num_batches when done
  Batch current;

  // Prefetching: the worker pushes batches in order into a queue of at most kQueueCapacity.
  std::thread worker;
  std::mutex mutex;
  std::condition_variable ready;  // an item was pushed
  std::condition_variable space;  // an item was taken, or stop was set
  std::deque<Item> queue;
  bool stop = false;

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  ~State() {
    if (worker.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
      }
      space.notify_all();
      worker.join();
    }
  }

  Batch make_batch(int64_t b) const {
    const int64_t begin = b * batch_size;
    const int64_t count = std::min(batch_size, static_cast<int64_t>(order.size()) - begin);
    Batch batch;
    batch.inputs = gather_rows(dataset.inputs, order.data() + begin, count, pinned);
    batch.labels = gather_rows(dataset.labels, order.data() + begin, count, pinned);
    batch.index = b;
    if (transform) transform(batch);
    return batch;
  }

  void run_worker() {
    for (int64_t b = 0; b < num_batches; ++b) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        space.wait(lock, [&] { return stop || queue.size() < kQueueCapacity; });
        if (stop) return;
      }
      Item item;
      try {
        item.batch = make_batch(b);
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool failed = item.error != nullptr;
      {
        std::lock_guard<std::mutex> lock(mutex);
        queue.push_back(std::move(item));
      }
      ready.notify_one();
      if (failed) return;
    }
  }

  // Makes batch `position` current: from the queue when prefetching, built here otherwise.
  void load_current() {
    if (!worker.joinable()) {
      current = make_batch(position);
      return;
    }
    Item item;
    {
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return !queue.empty(); });
      item = std::move(queue.front());
      queue.pop_front();
    }
    space.notify_one();
    if (item.error) std::rethrow_exception(item.error);
    current = std::move(item.batch);
  }

  // Sets the position, loading the batch there; on an exception the iteration is over and it propagates.
  void go_to(int64_t b) {
    current = Batch{};
    position = b;
    if (position >= num_batches) return;
    try {
      load_current();
    } catch (...) {
      position = num_batches;
      throw;
    }
  }
};

DataLoader::Iterator DataLoader::begin() {
  auto state = std::make_shared<Iterator::State>();
  state->dataset = dataset_;
  state->order = order(epoch_);
  state->batch_size = options_.batch_size;
  state->num_batches = num_batches();
  state->transform = options_.transform;
  state->pinned = options_.pin_memory && can_pin();
  ++epoch_;
  if (options_.prefetch && state->num_batches > 0) {
    Iterator::State* raw = state.get();  // the State joins the worker before it goes away
    state->worker = std::thread([raw] { raw->run_worker(); });
  }
  state->go_to(0);
  return Iterator(std::move(state));
}

DataLoader::Iterator DataLoader::end() { return Iterator(); }

bool DataLoader::Iterator::at_end() const { return !state_ || state_->position >= state_->num_batches; }

DataLoader::Iterator::reference DataLoader::Iterator::operator*() const {
  MIXTAPE_CHECK(!at_end(), "DataLoader: dereferencing an iterator past the last batch");
  return state_->current;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  MIXTAPE_CHECK(!at_end(), "DataLoader: advancing an iterator past the last batch");
  state_->go_to(state_->position + 1);
  return *this;
}

bool operator==(const DataLoader::Iterator& a, const DataLoader::Iterator& b) {
  const bool a_end = a.at_end(), b_end = b.at_end();
  if (a_end || b_end) return a_end == b_end;
  return a.state_ == b.state_;
}

}  // namespace mixtape::data
