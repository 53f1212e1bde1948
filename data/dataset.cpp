#include "data/dataset.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numbers>

#include "core/error.h"
#include "core/random.h"
#include "data/idx.h"

namespace mixtape::data {
namespace {

constexpr int64_t kFashionSide = 28;
constexpr int64_t kFashionClasses = 10;

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

std::string install_hint() {
  return "Install the data set with `sudo apt-get install dataset-fashion-mnist` (it goes to " +
         default_fashion_mnist_dir() +
         "), or pass --data DIR naming a directory that holds train-images-idx3-ubyte.gz, "
         "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.";
}

// The path of `base` in `dir`, gzip-compressed (base.gz) or not (base); throws when neither exists.
std::string find_fashion_file(const std::filesystem::path& dir, const std::string& base) {
  for (const std::string& name : {base + ".gz", base}) {
    const auto p = dir / name;
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  }
  throw Error("Fashion-MNIST: file '" + (dir / (base + ".gz")).string() + "' (or '" + base +
              "' uncompressed) is missing. " + install_hint());
}

void check_sizes(int64_t n, int classes, const char* what) {
  MIXTAPE_CHECK(n >= 1, what, ": n must be at least 1, got ", n);
  MIXTAPE_CHECK(classes >= 1, what, ": classes must be at least 1, got ", classes);
}

// Labels i % classes, as an (n) i64 tensor.
Tensor round_robin_labels(int64_t n, int classes) {
  Tensor labels = Tensor::empty(Shape{n}, DType::i64);
  int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) y[i] = i % classes;
  return labels;
}

}  // namespace

int64_t Dataset::size() const { return inputs.defined() ? inputs.size(0) : 0; }

std::string default_fashion_mnist_dir() { return "/usr/share/datasets/fashion-mnist"; }

Dataset load_fashion_mnist(const std::string& dir, bool train, int64_t limit) {
  MIXTAPE_CHECK(limit != 0, "load_fashion_mnist: limit 0 keeps no samples: pass a positive limit, or -1 for all");
  std::error_code ec;
  MIXTAPE_CHECK(std::filesystem::is_directory(dir, ec), "Fashion-MNIST: directory '", dir,
                "' does not exist (looking for ", train ? "train" : "t10k", "-images-idx3-ubyte.gz). ",
                install_hint());
  const std::string prefix = train ? "train" : "t10k";
  const std::string image_path = find_fashion_file(dir, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_fashion_file(dir, prefix + "-labels-idx1-ubyte");

  const IdxArray images = read_idx(image_path);
  MIXTAPE_CHECK(images.dims.size() == 3 && images.dims[1] == kFashionSide && images.dims[2] == kFashionSide,
                "Fashion-MNIST images file '", image_path, "': expected dimensions (N, 28, 28), found ",
                dims_string(images.dims));
  const IdxArray labels = read_idx(label_path);
  MIXTAPE_CHECK(labels.dims.size() == 1, "Fashion-MNIST labels file '", label_path,
                "': expected dimensions (N), found ", dims_string(labels.dims));
  MIXTAPE_CHECK(images.dims[0] == labels.dims[0], "Fashion-MNIST: '", image_path, "' holds ", images.dims[0],
                " images but '", label_path, "' holds ", labels.dims[0], " labels");
  for (size_t i = 0; i < labels.data.size(); ++i) {
    MIXTAPE_CHECK(labels.data[i] < kFashionClasses, "Fashion-MNIST labels file '", label_path, "': label ",
                  int{labels.data[i]}, " at index ", i, " is out of range (expected 0..9)");
  }

  // A limit beyond the data set is a mistake (a typo, the wrong split), not a request for all of it.
  MIXTAPE_CHECK(limit <= images.dims[0], "Fashion-MNIST: limit ", limit, " is more than the ", images.dims[0],
                " samples in '", image_path, "' (the ", train ? "training" : "test",
                " set): ask for at most ", images.dims[0], ", or for no limit to use them all");
  const int64_t n = limit > 0 ? limit : images.dims[0];
  const int64_t pixels = kFashionSide * kFashionSide;
  std::array<float, 256> normalised{};
  for (int v = 0; v < 256; ++v) {
    normalised[static_cast<size_t>(v)] = (static_cast<float>(v) / 255.0f - kFashionMnistMean) / kFashionMnistStd;
  }

  Dataset ds;
  ds.inputs = Tensor::empty(Shape{n, pixels}, DType::f32);
  float* x = ds.inputs.data<float>();
  for (int64_t i = 0; i < n * pixels; ++i) x[i] = normalised[images.data[static_cast<size_t>(i)]];
  ds.labels = Tensor::empty(Shape{n}, DType::i64);
  int64_t* y = ds.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) y[i] = labels.data[static_cast<size_t>(i)];
  ds.num_classes = kFashionClasses;
  ds.name = train ? "fashion-mnist/train" : "fashion-mnist/test";
  return ds;
}

Dataset make_spirals(int64_t n, int classes, uint64_t seed, double noise) {
  check_sizes(n, classes, "make_spirals");
  MIXTAPE_CHECK(noise >= 0, "make_spirals: noise must be >= 0, got ", noise);
  Dataset ds;
  ds.inputs = Tensor::empty(Shape{n, 2}, DType::f32);
  float* x = ds.inputs.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % classes, j = i / classes;
    const int64_t count = (n - c + classes - 1) / classes;  // samples of class c
    const double r = (static_cast<double>(j) + 0.5) / static_cast<double>(count);
    const double t = 2.0 * std::numbers::pi * static_cast<double>(c) / classes + 4.0 * r;
    const auto u = static_cast<uint64_t>(i);
    x[2 * i] = static_cast<float>(r * std::sin(t) + noise * random_normal(seed, 0, 2 * u));
    x[2 * i + 1] = static_cast<float>(r * std::cos(t) + noise * random_normal(seed, 0, 2 * u + 1));
  }
  ds.labels = round_robin_labels(n, classes);
  ds.num_classes = classes;
  ds.name = "spirals";
  return ds;
}

Dataset make_blobs(int64_t n, int classes, int dims, uint64_t seed, double spread) {
  check_sizes(n, classes, "make_blobs");
  MIXTAPE_CHECK(dims >= 1, "make_blobs: dims must be at least 1, got ", dims);
  MIXTAPE_CHECK(spread >= 0, "make_blobs: spread must be >= 0, got ", spread);
  std::vector<double> centers(static_cast<size_t>(classes) * static_cast<size_t>(dims));
  for (size_t k = 0; k < centers.size(); ++k) centers[k] = 20.0 * random_uniform(seed, 0, k) - 10.0;
  Dataset ds;
  ds.inputs = Tensor::empty(Shape{n, dims}, DType::f32);
  float* x = ds.inputs.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % classes;
    for (int d = 0; d < dims; ++d) {
      const auto k = static_cast<uint64_t>(i * dims + d);
      x[k] = static_cast<float>(centers[static_cast<size_t>(c * dims + d)] + spread * random_normal(seed, 1, k));
    }
  }
  ds.labels = round_robin_labels(n, classes);
  ds.num_classes = classes;
  ds.name = "blobs";
  return ds;
}

Dataset subset(const Dataset& dataset, int64_t begin, int64_t end) {
  const int64_t n = dataset.size();
  MIXTAPE_CHECK(0 <= begin && begin <= end && end <= n, "subset of '", dataset.name, "': range [", begin, ", ", end,
                ") is not within [0, ", n, ")");
  MIXTAPE_CHECK(dataset.labels.defined() && dataset.labels.dim() >= 1 && dataset.labels.size(0) == n, "subset of '",
                dataset.name, "': labels do not have one entry per sample");
  auto slice = [&](const Tensor& t) {
    MIXTAPE_CHECK(t.device().is_cpu(), "subset of '", dataset.name, "': expects CPU tensors, found one on ",
                  t.device().to_string());
    Shape shape = t.shape();
    shape[0] = end - begin;
    Tensor out = Tensor::empty(shape, t.dtype());
    const size_t row = n > 0 ? t.nbytes() / static_cast<size_t>(n) : 0;
    if (out.nbytes() > 0) {
      std::memcpy(out.raw_data(), static_cast<const char*>(t.raw_data()) + static_cast<size_t>(begin) * row,
                  out.nbytes());
    }
    return out;
  };
  Dataset out;
  out.inputs = slice(dataset.inputs);
  out.labels = slice(dataset.labels);
  out.num_classes = dataset.num_classes;
  out.name = dataset.name;
  return out;
}

}  // namespace mixtape::data
