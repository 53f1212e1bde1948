#pragma once
// Host-side planning of the CUDA multi-tensor launches (cuda/cuda_optim.cu): a list of tensors is cut into
// chunks of at most kChunkElems elements, one thread block per chunk, and the chunks are packed into tables
// small enough to travel as a kernel argument (kMaxChunksPerLaunch entries, under the 4 KiB parameter limit
// every architecture accepts), so one launch covers up to kMaxChunksPerLaunch * kChunkElems elements of any
// number of tensors (about 15.7 M elements; a larger list takes one launch per table). Also the host-side
// coefficients of the fused optimizer kernels, formed in double exactly like the CPU backend forms them.
//
// Plain C++ (header-only, no CUDA headers): used by the .cu file and unit-tested on the CPU in
// tests/test_multi_tensor.cpp, in builds with and without CUDA.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/dtype.h"
#include "core/error.h"

namespace mixtape::cuda {

/// Elements one thread block processes in a multi-tensor launch (a multiple of every vector width).
inline constexpr int64_t kChunkElems = 65536;
/// Chunks in one kernel-argument table.
inline constexpr int kMaxChunksPerLaunch = 240;

/// One tensor of a multi-tensor list: its device pointer, element count and dtype.
struct TensorRef {
  void* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::f32;
};

/// One chunk: a contiguous run of `numel` (1..kChunkElems) elements of `dtype` starting at `data`.
struct ChunkEntry {
  void* data;
  int32_t numel;
  uint8_t dtype;  ///< static_cast<uint8_t>(DType)
};

/// The table one launch receives by value (one block per entry).
struct ChunkTable {
  int count = 0;
  ChunkEntry chunks[kMaxChunksPerLaunch];
};
static_assert(sizeof(ChunkTable) + 64 <= 4096, "a ChunkTable (plus a few scalars) must fit the 4 KiB kernel parameters");

/// Cuts `tensors` into chunks of at most `chunk_elems` elements (empty tensors contribute none), in order,
/// and packs them into tables of at most `max_per_table` chunks; no table is empty. Throws mixtape::Error
/// for a non-positive size or limit, or a non-empty tensor with a null pointer.
inline std::vector<ChunkTable> plan_chunks(const std::vector<TensorRef>& tensors, int64_t chunk_elems = kChunkElems,
                                           int max_per_table = kMaxChunksPerLaunch) {
  MIXTAPE_CHECK(chunk_elems > 0 && chunk_elems <= kChunkElems, "plan_chunks: chunk_elems must be in [1, ",
                kChunkElems, "], got ", chunk_elems);
  MIXTAPE_CHECK(max_per_table > 0 && max_per_table <= kMaxChunksPerLaunch, "plan_chunks: max_per_table must be in [1, ",
                kMaxChunksPerLaunch, "], got ", max_per_table);
  std::vector<ChunkTable> tables;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorRef& ref = tensors[t];
    MIXTAPE_CHECK(ref.numel >= 0, "plan_chunks: tensor ", t, " has a negative element count ", ref.numel);
    if (ref.numel == 0) continue;
    MIXTAPE_CHECK(ref.data != nullptr, "plan_chunks: tensor ", t, " has ", ref.numel, " elements but no data");
    const size_t elem = dtype_size(ref.dtype);
    for (int64_t begin = 0; begin < ref.numel; begin += chunk_elems) {
      if (tables.empty() || tables.back().count == max_per_table) tables.emplace_back();
      ChunkTable& table = tables.back();
      const int64_t n = std::min(chunk_elems, ref.numel - begin);
      table.chunks[table.count++] = ChunkEntry{static_cast<char*>(ref.data) + static_cast<size_t>(begin) * elem,
                                               static_cast<int32_t>(n), static_cast<uint8_t>(ref.dtype)};
    }
  }
  return tables;
}

/// The float coefficients of one fused Adam/AdamW update, each formed in double and rounded once to float,
/// exactly as CpuBackend::adam_update forms them (PyTorch 1.13 computes them in Python floats).
struct AdamCoefficients {
  float beta1, beta2, eps, weight_decay, one_minus_beta1, one_minus_beta2, bias_correction2_sqrt, step_size, decay;
};

/// AdamCoefficients of `u` (u.step >= 1).
inline AdamCoefficients adam_coefficients(const AdamUpdate& u) {
  AdamCoefficients c{};
  c.beta1 = static_cast<float>(u.beta1);
  c.beta2 = static_cast<float>(u.beta2);
  c.eps = static_cast<float>(u.eps);
  c.weight_decay = static_cast<float>(u.weight_decay);
  c.one_minus_beta1 = static_cast<float>(1.0 - u.beta1);
  c.one_minus_beta2 = static_cast<float>(1.0 - u.beta2);
  const double bc1 = 1.0 - std::pow(u.beta1, static_cast<double>(u.step));
  c.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(u.beta2, static_cast<double>(u.step))));
  c.step_size = static_cast<float>(u.lr / bc1);
  c.decay = static_cast<float>(1.0 - u.lr * u.weight_decay);
  return c;
}

/// The float coefficients of one fused SGD update (as CpuBackend::sgd_update forms them).
struct SgdCoefficients {
  float lr, momentum, weight_decay, one_minus_dampening;
};

/// SgdCoefficients of `u`.
inline SgdCoefficients sgd_coefficients(const SgdUpdate& u) {
  return {static_cast<float>(u.lr), static_cast<float>(u.momentum), static_cast<float>(u.weight_decay),
          static_cast<float>(1.0 - u.dampening)};
}

/// Blocks of `threads` threads for an elementwise pass over n elements, capped at `max_blocks` (the kernel
/// strides over the rest); at least 1.
inline unsigned elementwise_blocks(int64_t n, int threads = 256, int64_t max_blocks = 65535) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, max_blocks)));
}

}  // namespace mixtape::cuda
