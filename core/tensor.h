#pragma once
#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/shape.h"

namespace mixtape {

/// A buffer on one device, shared by a tensor and its reshaped views; freed through its allocator.
struct Storage {
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  /// Bumped by every in-place write (e.g. an optimizer step), so caches keyed on it can tell.
  std::atomic<uint64_t> version{0};
};

struct TensorImpl;

/// The autograd slot of a tensor: whether it wants a gradient, the accumulated gradient of a leaf,
/// and whether it was produced by a recorded op (non-leaf). Kept by the tape as the "grad slot".
struct AutogradMeta {
  bool requires_grad = false;
  bool is_leaf = true;
  std::shared_ptr<TensorImpl> grad;  ///< accumulated gradient (leaves only), same dtype and shape
  std::string name;                  ///< optional, used in diagnostics (e.g. parameter names)
};

/// Shape, dtype and storage of a tensor, plus its autograd slot (created on demand).
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset_bytes = 0;
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;
};

/// A handle with shared ownership of a contiguous row-major tensor. Copying a Tensor shares data.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  /// An uninitialised tensor (memory from the device's allocator).
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  /// Number of dimensions.
  int dim() const { return shape().size(); }
  /// Size of dimension d (negative counts from the end).
  int64_t size(int d) const;
  int64_t numel() const { return shape().numel(); }
  DType dtype() const;
  Device device() const;
  /// Bytes of the elements (numel * element size).
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  /// Start of the elements.
  void* raw_data() const;
  /// Typed start of the elements; throws when T does not match the dtype.
  template <class T>
  T* data() const {
    MIXTAPE_CHECK(dtype_of<T>() == dtype(), "Tensor::data<", dtype_name(dtype_of<T>()), ">() on a ", dtype_name(dtype()),
                  " tensor");
    return static_cast<T*>(raw_data());
  }

  // ---- autograd slot (the tape itself lives in autograd/) ----
  bool requires_grad() const;
  /// Marks a leaf as wanting a gradient; returns *this.
  Tensor& set_requires_grad(bool on = true);
  /// The accumulated gradient of a leaf (undefined if none yet).
  Tensor grad() const;
  /// Replaces (or, with an undefined tensor, clears) the accumulated gradient.
  void set_grad(const Tensor& g) const;
  /// True unless produced by a recorded op.
  bool is_leaf() const;
  /// The autograd slot, created on first use.
  const std::shared_ptr<AutogradMeta>& autograd_meta() const;
  /// Version of the underlying storage (bumped by in-place writes).
  uint64_t version() const;
  /// Marks the storage as written in place.
  void bump_version() const;

  // ---- differentiable conversions (recorded on the tape; defined in autograd/) ----
  /// Cast to another floating dtype (differentiable: the gradient is cast back).
  Tensor to(DType dtype) const;
  /// A view with another shape sharing storage (one dimension may be -1); differentiable.
  Tensor reshape(const Shape& shape) const;
  /// The transpose of a 2-D tensor (a copy; differentiable).
  Tensor t() const;

  // ---- data movement (not recorded) ----
  /// A copy on another device (same dtype); returns *this when already there.
  Tensor to(Device device) const;
  /// A tensor sharing data but cut from the tape (no grad, leaf).
  Tensor detach() const;
  /// A deep copy (not recorded).
  Tensor clone() const;
  /// Copies src's elements into this tensor (same shape and dtype; any devices); bumps the version.
  void copy_(const Tensor& src) const;
  /// The elements converted to T, copied to the host.
  template <class T = float>
  std::vector<T> to_vector() const;
  /// The value of a one-element tensor.
  double item() const;
  /// The value of a one-element tensor as T (float, double, int64_t, Half, BFloat16 or uint8_t), converted with
  /// the rules of a cast (an i64 stays exact, unlike item()'s double beyond 2^53).
  template <class T>
  T item() const {
    MIXTAPE_CHECK(defined() && numel() == 1, "Tensor::item: expected one element, got ",
                  defined() ? shape().to_string() : std::string("an undefined tensor"));
    return to_vector<T>().front();
  }
  /// Human-readable contents (elided beyond a few elements per dimension).
  std::string to_string() const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  /// True when both handles share one TensorImpl.
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  void check_defined(const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

extern template std::vector<float> Tensor::to_vector<float>() const;
extern template std::vector<double> Tensor::to_vector<double>() const;
extern template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
extern template std::vector<Half> Tensor::to_vector<Half>() const;
extern template std::vector<BFloat16> Tensor::to_vector<BFloat16>() const;
extern template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

// ---- factories ----
/// All zeros.
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
/// All ones.
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
/// All `value` (rounded once to the dtype).
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
/// A 0-d tensor holding `value`.
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device::cpu());
/// start, start+step, ... below end (1-d).
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::f32, Device device = Device::cpu());
/// 0, 1, ..., n-1.
Tensor arange(int64_t n, DType dtype = DType::f32, Device device = Device::cpu());
/// A tensor holding `values` (converted to dtype), shaped `shape` (default: 1-d).
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype = dtype_of<T>(), Device device = Device::cpu());
template <class T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())});
}
/// Uniform in [low, high), counter-based (same numbers on every backend for one seed).
Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(), Generator* gen = nullptr,
            double low = 0.0, double high = 1.0);
/// Normal(mean, std), counter-based.
Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(), Generator* gen = nullptr,
             double mean = 0.0, double std = 1.0);
/// Same shape, dtype and device as t.
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);

}  // namespace mixtape
