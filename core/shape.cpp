#include "core/shape.h"

#include "core/error.h"

namespace mixtape {

Shape::Shape(std::initializer_list<int64_t> dims) {
  MIXTAPE_CHECK(dims.size() <= kMaxDims, "a shape has at most ", kMaxDims, " dimensions, got ", dims.size());
  for (int64_t d : dims) push_back(d);
}

Shape::Shape(const std::vector<int64_t>& dims) {
  MIXTAPE_CHECK(dims.size() <= kMaxDims, "a shape has at most ", kMaxDims, " dimensions, got ", dims.size());
  for (int64_t d : dims) push_back(d);
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i)
    if (__builtin_mul_overflow(n, dims_[static_cast<size_t>(i)], &n))
      throw Error(detail::cat("shape ", to_string(), " has more elements than an int64 can count"));
  return n;
}

void Shape::push_back(int64_t d) {
  MIXTAPE_CHECK(ndim_ < kMaxDims, "a shape has at most ", kMaxDims, " dimensions");
  MIXTAPE_CHECK(d >= -1, "invalid dimension ", d, " (dimensions are >= 0)");
  dims_[static_cast<size_t>(ndim_++)] = d;
}

std::string Shape::to_string() const {
  std::string s = "(";
  for (int i = 0; i < ndim_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  if (ndim_ == 1) s += ",";
  return s + ")";
}

int Shape::axis(int64_t a, const char* what) const {
  const int64_t n = ndim_;
  MIXTAPE_CHECK(a >= -n && a < n && n > 0, what, ": axis ", a, " is out of range for a tensor of shape ", to_string());
  return static_cast<int>(a < 0 ? a + n : a);
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.ndim_ != b.ndim_) return false;
  for (int i = 0; i < a.ndim_; ++i)
    if (a.dims_[static_cast<size_t>(i)] != b.dims_[static_cast<size_t>(i)]) return false;
  return true;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  const int n = std::max(a.size(), b.size());
  Shape out;
  for (int i = 0; i < n; ++i) {
    const int ia = i - (n - a.size()), ib = i - (n - b.size());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MIXTAPE_CHECK(da == db || da == 1 || db == 1, what, ": shapes ", a.to_string(), " and ", b.to_string(),
                  " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

}  // namespace mixtape
