#include "core/backend.h"

#include <cstring>

#ifdef MIXTAPE_WITH_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/cuda_runtime_info.h"
#endif

namespace mixtape {

int cuda_device_count() {
#ifdef MIXTAPE_WITH_CUDA
  return mixtape::cuda::device_count();
#else
  return 0;
#endif
}

bool device_available(Device device) {
  if (device.is_cpu()) return true;
  return device.index >= 0 && device.index < cuda_device_count();
}

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
#ifdef MIXTAPE_WITH_CUDA
  const int n = cuda_device_count();
  if (n == 0)
    throw Error(detail::cat("device ", device.to_string(), " requested but no CUDA device is available (",
                            cuda::no_device_reason(), "); use the cpu device"));
  if (device.index < 0 || device.index >= n)
    throw Error(detail::cat("device ", device.to_string(), " requested but this machine has ", n,
                            " CUDA device(s) (cuda:0", n > 1 ? detail::cat("..cuda:", n - 1) : std::string(), ")"));
  return cuda::backend(device.index);
#else
  throw Error(detail::cat("device ", device.to_string(),
                          " requested but mixtape was built without CUDA (configure with -DMIXTAPE_CUDA=ON)"));
#endif
}

void copy_between_devices(const Tensor& src, const Tensor& dst) {
  MIXTAPE_CHECK(src.nbytes() == dst.nbytes() && src.dtype() == dst.dtype(), "copy: source ", src.shape().to_string(), " ",
                dtype_name(src.dtype()), " and destination ", dst.shape().to_string(), " ", dtype_name(dst.dtype()),
                " differ");
  if (src.device().is_cpu() && dst.device().is_cpu()) {
    if (src.nbytes()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  // Every CUDA endpoint needs its backend; backend_for explains why one is unavailable (always, without CUDA).
  for (const Device d : {src.device(), dst.device()})
    if (!d.is_cpu()) backend_for(d);
#ifdef MIXTAPE_WITH_CUDA
  cuda::copy_across_devices(src, dst);
#endif
}

const char* op_name(UnaryOp op) {
  static const char* names[] = {"identity", "neg", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "abs"};
  return names[static_cast<int>(op)];
}

const char* op_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
                                "relu_backward", "gelu_backward", "tanh_backward", "sigmoid_backward", "sqrt_backward",
                                "rsqrt_backward", "abs_backward", "max_share", "min_share"};
  return names[static_cast<int>(op)];
}

const char* op_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "max", "min", "argmax"};
  return names[static_cast<int>(op)];
}

}  // namespace mixtape
