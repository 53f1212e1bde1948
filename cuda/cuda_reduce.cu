// STUB (placeholder until implemented): every method throws.
#include "cuda/cuda_backend.h"

#include "core/error.h"

namespace mixtape::cuda {

void CudaBackend::reduce(ReduceOp, const Tensor&, int64_t, int64_t, int64_t, const Tensor&) {
  throw Error("reduce: not implemented on the cuda backend yet");
}

}  // namespace mixtape::cuda
