// dist::DataParallel (dist/data_parallel.h): parameter and buffer broadcast, bucketed gradient averaging, the
// scaler's shared skip decision.
#include "dist/data_parallel.h"

#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/kernels.h"
#include "dist/dist.h"

namespace mixtape::dist {

namespace {

/// Consecutive parameter indices [begin, end) of one dtype and about `bytes` bytes (at least one parameter).
struct Bucket {
  size_t begin, end;
  DType dtype;
  int64_t elements;
};

std::vector<Bucket> make_buckets(const std::vector<Tensor>& params, int64_t bucket_bytes) {
  std::vector<Bucket> out;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const int64_t bytes = static_cast<int64_t>(p.nbytes());
    if (out.empty() || out.back().dtype != p.dtype() ||
        (out.back().elements * static_cast<int64_t>(dtype_size(p.dtype())) + bytes > bucket_bytes &&
         out.back().end > out.back().begin)) {
      out.push_back({i, i, p.dtype(), 0});
    }
    out.back().end = i + 1;
    out.back().elements += p.numel();
  }
  return out;
}

void check_device(const Tensor& t, Device device, const std::string& what) {
  MIXTAPE_CHECK(t.device() == device, "DataParallel: ", what, " is on ", t.device().to_string(),
                " but the model's first parameter is on ", device.to_string(), " (one device per rank)");
}

/// `shape` elements of `flat` from element `offset` on: a view sharing flat's storage.
Tensor segment(const Tensor& flat, int64_t offset, const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = flat.impl()->storage;
  impl->offset_bytes = flat.impl()->offset_bytes + static_cast<size_t>(offset) * dtype_size(flat.dtype());
  impl->shape = shape;
  impl->dtype = flat.dtype();
  return Tensor(std::move(impl));
}

}  // namespace

DataParallel::DataParallel(std::shared_ptr<nn::Module> module, DataParallelOptions options)
    : module_(std::move(module)), options_(options) {
  MIXTAPE_CHECK(module_ != nullptr, "DataParallel: the module is null");
  MIXTAPE_CHECK(options_.bucket_bytes >= 1, "DataParallel: bucket_bytes must be positive, got ", options_.bucket_bytes);
  MIXTAPE_CHECK(initialized(), "DataParallel: call dist::init() first");
  MIXTAPE_CHECK(options_.gradient_dtype == DType::f32 || options_.gradient_dtype == DType::bf16 ||
                    options_.gradient_dtype == DType::f16,
                "DataParallel: gradient_dtype must be f32, bf16 or f16, got ", dtype_name(options_.gradient_dtype));
  const std::vector<Tensor> params = module_->parameters();
  if (!params.empty()) device_ = params.front().device();
  for (const auto& [name, p] : module_->named_parameters()) check_device(p, device_, "parameter " + name);
  for (const auto& [name, b] : module_->named_buffers()) check_device(b, device_, "buffer " + name);
  if (world_size() == 1) return;
  // Every rank must hold the same architecture on the same kind of device: compare the parameter count, the total
  // elements and the device type first (over MPI, on the host), so that a mismatch is an error here rather than a
  // hang or garbage in a later collective.
  constexpr int kSig = 3;
  const int64_t sig[kSig] = {static_cast<int64_t>(params.size()), module_->num_parameters(), device_.is_cuda() ? 1 : 0};
  const Tensor lo = Tensor::empty(Shape{kSig}, DType::i64), hi = Tensor::empty(Shape{kSig}, DType::i64);
  for (int k = 0; k < kSig; ++k) {
    lo.data<int64_t>()[k] = -sig[k];  // max of the negation: min
    hi.data<int64_t>()[k] = sig[k];
  }
  all_reduce(lo, ReduceOp::max);
  all_reduce(hi, ReduceOp::max);
  for (int k = 0; k < kSig; ++k)
    MIXTAPE_CHECK(-lo.data<int64_t>()[k] == hi.data<int64_t>()[k], "DataParallel: the ranks hold different models (",
                  sig[0], " parameters, ", sig[1], " elements, on ", device_.is_cuda() ? "a GPU" : "the CPU", " on rank ",
                  rank(), ")");
  for (const Tensor& p : module_->parameters()) broadcast(p, 0);
  for (const auto& [name, b] : module_->named_buffers()) broadcast(b, 0);
}

Tensor DataParallel::forward(const Tensor& x) {
  if (options_.broadcast_buffers && world_size() > 1)
    for (const auto& [name, b] : module_->named_buffers()) broadcast(b, 0);
  return module_->forward(x);
}

void DataParallel::sync_gradients() {
  if (no_sync_depth_ > 0 || world_size() == 1) return;
  const std::vector<Tensor> params = module_->parameters();
  // Which parameters have a gradient on some rank: those are reduced everywhere (zeros where absent).
  const Tensor present = Tensor::empty(Shape{static_cast<int64_t>(params.size())}, DType::i64);
  for (size_t i = 0; i < params.size(); ++i) present.data<int64_t>()[i] = params[i].grad().defined() ? 1 : 0;
  all_reduce(present, ReduceOp::max);
  for (const Bucket& b : make_buckets(params, options_.bucket_bytes)) {
    // the bucket in the gradients' own dtype, then (compression) in the wire dtype
    const Tensor flat = Tensor::empty(Shape{b.elements}, b.dtype, device_);
    Backend& be = backend_for(device_);
    bool any = false;
    int64_t offset = 0;
    for (size_t i = b.begin; i < b.end; ++i) {
      const Tensor part = segment(flat, offset, params[i].shape());
      const Tensor g = params[i].grad();
      if (g.defined()) {
        check_device(g, device_, "a gradient");
        be.copy(g, part);
      } else {
        be.fill(part, 0.0);
      }
      any = any || present.data<int64_t>()[i] != 0;
      offset += params[i].numel();
    }
    if (!any) continue;  // no rank has a gradient for this bucket (every rank agrees: `present` is shared)
    const bool compress = options_.gradient_dtype != b.dtype && is_floating(b.dtype);
    const Tensor wire = compress ? kernels::cast(flat, options_.gradient_dtype) : flat;
    all_reduce(wire, ReduceOp::avg);
    if (compress) be.cast(wire, flat);
    offset = 0;
    for (size_t i = b.begin; i < b.end; ++i) {
      if (present.data<int64_t>()[i] != 0) {
        Tensor g = params[i].grad();
        if (!g.defined()) {
          g = Tensor::empty(params[i].shape(), params[i].dtype(), device_);
          params[i].set_grad(g);
        }
        be.copy(segment(flat, offset, params[i].shape()), g);
        g.bump_version();
      }
      offset += params[i].numel();
    }
  }
}

void DataParallel::attach(amp::GradScaler& scaler) const {
  if (world_size() == 1) return;
  scaler.set_reduce_found_inf([](const Tensor& found_inf) {
    all_reduce(found_inf, ReduceOp::max);
  });
}

int64_t DataParallel::num_buckets() const {
  return static_cast<int64_t>(make_buckets(module_->parameters(), options_.bucket_bytes).size());
}

int64_t DataParallel::bytes_per_sync() const {
  int64_t bytes = 0;
  for (const Tensor& p : module_->parameters()) {
    const bool compress = options_.gradient_dtype != p.dtype() && is_floating(p.dtype());
    bytes += p.numel() * static_cast<int64_t>(dtype_size(compress ? options_.gradient_dtype : p.dtype()));
  }
  return bytes;
}

}  // namespace mixtape::dist
