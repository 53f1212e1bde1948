#pragma once
// Tests that train on real Fashion-MNIST skip (with a visible WARN) where Debian's dataset-fashion-mnist is absent.
#include <filesystem>

#include "data/dataset.h"

namespace mixtape::testing {

/// Whether the Fashion-MNIST training images are installed in their default directory.
inline bool have_fashion_mnist() {
  const std::filesystem::path dir(data::default_fashion_mnist_dir());
  return std::filesystem::exists(dir / "train-images-idx3-ubyte.gz") ||
         std::filesystem::exists(dir / "train-images-idx3-ubyte");
}

}  // namespace mixtape::testing
