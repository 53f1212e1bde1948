// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::softmax(const Tensor&, const Tensor&, bool) {
  throw Error("softmax: not implemented on the cuda backend yet");
}
void CudaBackend::softmax_backward(const Tensor&, const Tensor&, const Tensor&, bool) {
  throw Error("softmax_backward: not implemented on the cuda backend yet");
}
void CudaBackend::cross_entropy(const Tensor&, const Tensor&, const Tensor&, double) {
  throw Error("cross_entropy: not implemented on the cuda backend yet");
}
void CudaBackend::cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  throw Error("cross_entropy_backward: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
