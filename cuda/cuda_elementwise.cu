// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::unary(UnaryOp, const Tensor&, const Tensor&) {
  throw Error("unary: not implemented on the cuda backend yet");
}
void CudaBackend::binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) {
  throw Error("binary: not implemented on the cuda backend yet");
}
void CudaBackend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw Error("where: not implemented on the cuda backend yet");
}
void CudaBackend::cast(const Tensor&, const Tensor&) {
  throw Error("cast: not implemented on the cuda backend yet");
}
void CudaBackend::fill(const Tensor&, double) {
  throw Error("fill: not implemented on the cuda backend yet");
}
void CudaBackend::arange(const Tensor&, double, double) {
  throw Error("arange: not implemented on the cuda backend yet");
}
void CudaBackend::random(const Tensor&, RandomKind, uint64_t, uint64_t, double, double) {
  throw Error("random: not implemented on the cuda backend yet");
}
void CudaBackend::copy(const Tensor&, const Tensor&) {
  throw Error("copy: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
