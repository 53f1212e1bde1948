// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  throw Error("conv2d: not implemented on the cuda backend yet");
}
void CudaBackend::conv2d_backward_data(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  throw Error("conv2d_backward_data: not implemented on the cuda backend yet");
}
void CudaBackend::conv2d_backward_filter(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  throw Error("conv2d_backward_filter: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
