// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::gemm(const GemmArgs&) {
  throw Error("gemm: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
