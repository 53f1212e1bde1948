#pragma once
// In-memory data sets: Fashion-MNIST from IDX files, and small synthetic sets for tests.
// Tensors live on the CPU in float32 (inputs) and int64 (labels); moving to a device is the trainer's job.
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace mixtape::data {

/// A labelled data set held in memory: N samples, inputs (N, D...) f32 and labels (N) i64, on the CPU.
struct Dataset {
  Tensor inputs;  ///< (N, D...) f32
  Tensor labels;  ///< (N) i64, each in [0, num_classes)
  /// Number of samples N (0 when empty).
  int64_t size() const;
  int64_t num_classes = 0;  ///< number of classes the labels range over
  std::string name;         ///< e.g. "fashion-mnist/train", "spirals"
};

/// Mean of Fashion-MNIST's training pixels scaled to [0, 1] (used for normalisation).
inline constexpr float kFashionMnistMean = 0.2860f;
/// Standard deviation of Fashion-MNIST's training pixels scaled to [0, 1] (used for normalisation).
inline constexpr float kFashionMnistStd = 0.3530f;

/// Where Debian's `dataset-fashion-mnist` package installs the data: "/usr/share/datasets/fashion-mnist".
std::string default_fashion_mnist_dir();

/// Loads Fashion-MNIST from `dir` (files train-/t10k-{images-idx3,labels-idx1}-ubyte, gzip-compressed or not):
/// inputs (N, 784) f32 normalised as (x/255 - kFashionMnistMean) / kFashionMnistStd, labels (N) i64 in 0..9.
/// `limit` >= 1 keeps the first `limit` samples (more than the file holds is an error naming both); a negative limit
/// keeps all. A missing directory or file throws
/// mixtape::Error saying how to install the data set (`sudo apt-get install dataset-fashion-mnist`) or `--data DIR`.
Dataset load_fashion_mnist(const std::string& dir, bool train, int64_t limit = -1);

/// `classes` interleaved 2-D spirals (arms 2*pi/classes apart, radius 0..1, Gaussian noise of std `noise` on each
/// coordinate); n samples, sample i in class i % classes; the same for the same arguments.
Dataset make_spirals(int64_t n, int classes, uint64_t seed, double noise = 0.1);

/// Gaussian blobs in `dims` dimensions: one center per class drawn uniformly in [-10, 10]^dims, samples drawn
/// around it with std `spread`; n samples, sample i in class i % classes; the same for the same arguments.
Dataset make_blobs(int64_t n, int classes, int dims, uint64_t seed, double spread = 1.0);

/// A copy of samples [begin, end) of `dataset` (0 <= begin <= end <= size).
Dataset subset(const Dataset& dataset, int64_t begin, int64_t end);

}  // namespace mixtape::data
