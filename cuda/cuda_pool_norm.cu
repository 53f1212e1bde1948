// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::max_pool2d(const Tensor&, const Tensor&, const Tensor&, const Pool2dParams&) {
  throw Error("max_pool2d: not implemented on the cuda backend yet");
}
void CudaBackend::max_pool2d_backward(const Tensor&, const Tensor&, const Tensor&) {
  throw Error("max_pool2d_backward: not implemented on the cuda backend yet");
}
void CudaBackend::avg_pool2d(const Tensor&, const Tensor&, const Pool2dParams&) {
  throw Error("avg_pool2d: not implemented on the cuda backend yet");
}
void CudaBackend::avg_pool2d_backward(const Tensor&, const Tensor&, const Pool2dParams&) {
  throw Error("avg_pool2d_backward: not implemented on the cuda backend yet");
}
void CudaBackend::batch_norm(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const BatchNormParams&) {
  throw Error("batch_norm: not implemented on the cuda backend yet");
}
void CudaBackend::batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const BatchNormParams&) {
  throw Error("batch_norm_backward: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
