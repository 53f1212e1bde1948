// dist::DataParallel (dist/data_parallel.h): parameter and buffer broadcast, bucketed gradient averaging, the
// scaler's shared skip decision.
#include "dist/data_parallel.h"

#include <cstring>
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

void check_cpu(const Tensor& t, const std::string& what) {
  MIXTAPE_CHECK(t.device().type == Device::Type::cpu, "DataParallel: ", what, " is on ", t.device().to_string(),
                "; multi-process training runs on CPU tensors over MPI (the NCCL path for GPUs is not built yet)");
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
  for (const auto& [name, p] : module_->named_parameters()) check_cpu(p, "parameter " + name);
  for (const auto& [name, b] : module_->named_buffers()) check_cpu(b, "buffer " + name);
  if (world_size() == 1) return;
  // Every rank must hold the same architecture: compare the parameter count and total elements first, so that a
  // mismatch is an error here rather than a hang or garbage in a later collective.
  const Tensor shape_sig = Tensor::empty(Shape{2}, DType::i64);
  shape_sig.data<int64_t>()[0] = static_cast<int64_t>(module_->parameters().size());
  shape_sig.data<int64_t>()[1] = module_->num_parameters();
  const Tensor lo = Tensor::empty(Shape{2}, DType::i64), hi = shape_sig.clone();
  for (int k = 0; k < 2; ++k) lo.data<int64_t>()[k] = -shape_sig.data<int64_t>()[k];  // max of the negation: min
  all_reduce(lo, ReduceOp::max);
  all_reduce(hi, ReduceOp::max);
  MIXTAPE_CHECK(-lo.data<int64_t>()[0] == hi.data<int64_t>()[0] && -lo.data<int64_t>()[1] == hi.data<int64_t>()[1],
                "DataParallel: the ranks hold different models (", shape_sig.data<int64_t>()[0], " parameters, ",
                shape_sig.data<int64_t>()[1], " elements on rank ", rank(), ")");
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
    const size_t esize = dtype_size(b.dtype);
    // the bucket in the gradients' own dtype, then (compression) in the wire dtype
    const Tensor flat = Tensor::empty(Shape{b.elements}, b.dtype);
    char* dst = static_cast<char*>(flat.raw_data());
    bool any = false;
    for (size_t i = b.begin; i < b.end; ++i) {
      const size_t bytes = params[i].nbytes();
      const Tensor g = params[i].grad();
      if (g.defined()) {
        check_cpu(g, "a gradient");
        std::memcpy(dst, g.raw_data(), bytes);
      } else {
        std::memset(dst, 0, bytes);
      }
      any = any || present.data<int64_t>()[i] != 0;
      dst += bytes;
    }
    if (!any) continue;  // no rank has a gradient for this bucket (every rank agrees: `present` is shared)
    const bool compress = options_.gradient_dtype != b.dtype && is_floating(b.dtype);
    const Tensor wire = compress ? kernels::cast(flat, options_.gradient_dtype) : flat;
    all_reduce(wire, ReduceOp::avg);
    if (compress) backend_for(flat.device()).cast(wire, flat);
    const char* src = static_cast<const char*>(flat.raw_data());
    for (size_t i = b.begin; i < b.end; ++i) {
      const size_t bytes = static_cast<size_t>(params[i].numel()) * esize;
      if (present.data<int64_t>()[i] != 0) {
        Tensor g = params[i].grad();
        if (!g.defined()) {
          g = Tensor::empty(params[i].shape(), params[i].dtype());
          params[i].set_grad(g);
        }
        std::memcpy(g.raw_data(), src, bytes);
        g.bump_version();
      }
      src += bytes;
    }
  }
}

void DataParallel::attach(amp::GradScaler& scaler) const {
  if (world_size() == 1) return;
  scaler.set_reduce_found_inf([](const Tensor& found_inf) {
    check_cpu(found_inf, "the GradScaler's state");
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
