// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::sgd_update(const Tensor&, const Tensor&, const Tensor&, const SgdUpdate&) {
  throw Error("sgd_update: not implemented on the cuda backend yet");
}
void CudaBackend::adam_update(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamUpdate&) {
  throw Error("adam_update: not implemented on the cuda backend yet");
}
bool CudaBackend::unscale_and_check(const std::vector<Tensor>&, double) {
  throw Error("unscale_and_check: not implemented on the cuda backend yet");
}
void CudaBackend::unscale_and_check_into(const std::vector<Tensor>&, const Tensor&, const Tensor&) {
  throw Error("unscale_and_check_into: not implemented on the cuda backend yet");
}
void CudaBackend::update_loss_scale(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const LossScaleUpdate&) {
  throw Error("update_loss_scale: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
