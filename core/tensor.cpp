#include "core/tensor.h"

#include "core/cast_rules.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/backend.h"
#include "core/cast_rules.h"
#include "core/kernels.h"

namespace mixtape {

// ---- Storage ----

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) { data = allocator_for(dev).allocate(n); }

Storage::~Storage() {
  if (data) allocator_for(device).deallocate(data, nbytes);
}

// ---- Tensor basics ----

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) MIXTAPE_CHECK(d >= 0, "cannot create a tensor of shape ", shape.to_string(), ": negative dimension");
  size_t bytes = 0;
  MIXTAPE_CHECK(!__builtin_mul_overflow(static_cast<size_t>(shape.numel()), dtype_size(dtype), &bytes),
                "cannot create a tensor of shape ", shape.to_string(), " and dtype ", dtype_name(dtype),
                ": its size in bytes overflows");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(bytes, device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

void Tensor::check_defined(const char* what) const {
  MIXTAPE_CHECK(impl_ != nullptr, what, " on an undefined tensor");
}

const Shape& Tensor::shape() const {
  check_defined("shape()");
  return impl_->shape;
}

int64_t Tensor::size(int d) const { return shape()[shape().axis(d, "size()")]; }

DType Tensor::dtype() const {
  check_defined("dtype()");
  return impl_->dtype;
}

Device Tensor::device() const {
  check_defined("device()");
  return impl_->storage->device;
}

void* Tensor::raw_data() const {
  check_defined("data()");
  return static_cast<char*>(impl_->storage->data) + impl_->offset_bytes;
}

// ---- autograd slot ----

bool Tensor::requires_grad() const { return impl_ && impl_->autograd && impl_->autograd->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  check_defined("set_requires_grad()");
  MIXTAPE_CHECK(!on || is_floating(dtype()), "set_requires_grad: only floating-point tensors can require gradients, got ",
                dtype_name(dtype()));
  MIXTAPE_CHECK(is_leaf() || on, "set_requires_grad(false) on a non-leaf tensor: use detach()");
  autograd_meta()->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  if (!impl_ || !impl_->autograd || !impl_->autograd->grad) return Tensor();
  return Tensor(impl_->autograd->grad);
}

void Tensor::set_grad(const Tensor& g) const {
  check_defined("set_grad()");
  if (g.defined())
    MIXTAPE_CHECK(g.shape() == shape() && g.dtype() == dtype(), "set_grad: gradient ", g.shape().to_string(), " ",
                  dtype_name(g.dtype()), " does not match tensor ", shape().to_string(), " ", dtype_name(dtype()));
  autograd_meta()->grad = g.impl_ptr();
}

bool Tensor::is_leaf() const { return !impl_ || !impl_->autograd || impl_->autograd->is_leaf; }

const std::shared_ptr<AutogradMeta>& Tensor::autograd_meta() const {
  check_defined("autograd_meta()");
  if (!impl_->autograd) impl_->autograd = std::make_shared<AutogradMeta>();
  return impl_->autograd;
}

uint64_t Tensor::version() const {
  check_defined("version()");
  return impl_->storage->version.load();
}

void Tensor::bump_version() const {
  check_defined("bump_version()");
  impl_->storage->version.fetch_add(1);
}

// ---- data movement ----

Tensor Tensor::to(Device device) const {
  check_defined("to(device)");
  if (device == this->device()) return *this;
  Tensor out = empty(shape(), dtype(), device);
  copy_between_devices(*this, out);
  return out;
}

Tensor Tensor::detach() const {
  check_defined("detach()");
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->autograd.reset();
  return Tensor(std::move(impl));
}

Tensor Tensor::clone() const {
  check_defined("clone()");
  Tensor out = empty(shape(), dtype(), device());
  backend_for(device()).copy(*this, out);
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  check_defined("copy_()");
  MIXTAPE_CHECK(src.shape() == shape(), "copy_: source shape ", src.shape().to_string(), " differs from destination shape ",
                shape().to_string());
  Tensor s = src.dtype() == dtype() ? src : kernels::cast(src, dtype());  // raw cast on src's device
  if (s.device() == device())
    backend_for(device()).copy(s, *this);
  else
    copy_between_devices(s, *this);
  bump_version();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_defined("to_vector()");
  Tensor host = to(Device::cpu());
  std::vector<T> out(static_cast<size_t>(numel()));
  dispatch_all(dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* p = static_cast<const S*>(host.raw_data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = cast_rules::convert<T>(p[i]);  // the rules of kernels::cast
  });
  return out;
}

template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<Half> Tensor::to_vector<Half>() const;
template std::vector<BFloat16> Tensor::to_vector<BFloat16>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::item() const {
  check_defined("item()");
  MIXTAPE_CHECK(numel() == 1, "item(): expected a one-element tensor, got shape ", shape().to_string());
  return to_vector<double>()[0];
}

std::string Tensor::to_string() const {
  if (!impl_) return "Tensor(undefined)";
  const std::vector<double> v = to_vector<double>();
  std::ostringstream os;
  os << std::setprecision(6);
  const Shape& s = shape();
  constexpr int64_t kEdge = 3;  // elements shown at each end of a long dimension
  // Recursively print nested brackets, eliding the middle of long dimensions.
  auto print = [&](auto&& self, int d, int64_t base, int indent) -> void {
    if (d == s.size()) {
      os << v[static_cast<size_t>(base)];
      return;
    }
    int64_t stride = 1;
    for (int j = d + 1; j < s.size(); ++j) stride *= s[j];
    os << "[";
    for (int64_t i = 0; i < s[d]; ++i) {
      if (s[d] > 2 * kEdge && i == kEdge) {
        os << (d + 1 == s.size() ? "..., " : "...,\n" + std::string(static_cast<size_t>(indent + 1), ' '));
        i = s[d] - kEdge - 1;
        continue;
      }
      self(self, d + 1, base + i * stride, indent + 1);
      if (i + 1 < s[d]) os << (d + 1 == s.size() ? ", " : ",\n" + std::string(static_cast<size_t>(indent + 1), ' '));
    }
    os << "]";
  };
  os << "tensor(";
  print(print, 0, 0, 7);
  os << ", shape=" << s.to_string() << ", dtype=" << dtype_name(dtype()) << ", device=" << device().to_string();
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

// ---- factories ----

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full(Shape{}, value, dtype, device); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  MIXTAPE_CHECK(step != 0.0 && std::isfinite(step), "arange: step must be finite and non-zero, got ", step);
  const double count = std::ceil((end - start) / step);
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor t = Tensor::empty(Shape{n}, dtype, device);
  backend_for(device).arange(t, start, step);
  return t;
}

Tensor arange(int64_t n, DType dtype, Device device) { return arange(0.0, static_cast<double>(n), 1.0, dtype, device); }

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype, Device device) {
  MIXTAPE_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ", values.size(),
                " values do not fill shape ", shape.to_string(), " (", shape.numel(), " elements)");
  Tensor host = Tensor::empty(shape, dtype_of<T>(), Device::cpu());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  if (dtype != dtype_of<T>()) host = kernels::cast(host, dtype);
  return host.to(device);
}

template Tensor from_vector<float>(const std::vector<float>&, const Shape&, DType, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, DType, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, DType, Device);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, DType, Device);
template Tensor from_vector<Half>(const std::vector<Half>&, const Shape&, DType, Device);
template Tensor from_vector<BFloat16>(const std::vector<BFloat16>&, const Shape&, DType, Device);

namespace {
/// A counter-based draw of `kind` from `gen` (the default generator when null).
Tensor random_tensor(const char* what, RandomKind kind, const Shape& shape, DType dtype, Device device, Generator* gen,
                     double a, double b) {
  MIXTAPE_CHECK(is_floating(dtype), what, ": expected a floating dtype, got ", dtype_name(dtype));
  Generator& g = gen ? *gen : default_generator();
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).random(t, kind, g.seed(), g.next_offset(), a, b);
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, DType dtype, Device device, Generator* gen, double low, double high) {
  return random_tensor("rand", RandomKind::uniform, shape, dtype, device, gen, low, high);
}

Tensor randn(const Shape& shape, DType dtype, Device device, Generator* gen, double mean, double std) {
  return random_tensor("randn", RandomKind::normal, shape, dtype, device, gen, mean, std);
}

Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace mixtape
