#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace mixtape {

/// A tensor's dimensions, row-major. Fixed capacity (no heap allocation); a 0-d shape is a scalar.
class Shape {
 public:
  static constexpr int kMaxDims = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  /// Number of dimensions.
  int size() const { return ndim_; }
  /// Dimension i; negative i counts from the end.
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i < 0 ? i + ndim_ : i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i < 0 ? i + ndim_ : i)]; }
  /// Product of the dimensions (1 for a scalar).
  int64_t numel() const;
  /// Appends a dimension.
  void push_back(int64_t d);
  /// The dimensions as a vector.
  std::vector<int64_t> vec() const { return {dims_.begin(), dims_.begin() + ndim_}; }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + ndim_; }
  /// "(2, 3, 4)".
  std::string to_string() const;
  /// Normalises a possibly negative axis against this shape; throws naming `what` when out of range.
  int axis(int64_t a, const char* what) const;

  friend bool operator==(const Shape& a, const Shape& b);
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

/// NumPy broadcasting of two shapes; throws mixtape::Error naming `what` and both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what);

}  // namespace mixtape
