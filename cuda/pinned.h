#pragma once
// Page-locked ("pinned") host memory for asynchronous host->device copies. Plain C++ (no CUDA headers), so
// data/ and apps/ can include it; compiled only in a build with MIXTAPE_WITH_CUDA.
//
// Pinned blocks come from a cache (cudaHostAlloc is slow): sizes are rounded up to a power of two (at least
// 512 bytes) and a freed block is reused only once every copy that read it has completed (each copy records a
// CUDA event on the block; the cache polls the events before handing the block out again). The same cache
// provides the staging buffers copy_across_devices uses for pageable host sources.
#include <cstddef>

#include "core/allocator.h"
#include "core/tensor.h"

namespace mixtape::cuda {

/// Whether pinned host memory can be allocated (a driver and a GPU are present). Never throws.
bool pinned_memory_available();

/// An uninitialised CPU tensor whose storage is page-locked memory from the pinned cache, so that `to(cuda)`
/// is an asynchronous copy. After `to(cuda)` returns, the copy may still be reading the tensor: do not write
/// to it until the device's stream has passed the copy (a fresh tensor per batch, as the DataLoader does, is
/// always safe: the block is recycled only after the copy completed). Throws when no GPU is available.
Tensor empty_pinned(const Shape& shape, DType dtype = DType::f32);

/// Whether `t` is a CPU tensor whose elements lie in pinned memory from the cache.
bool is_pinned(const Tensor& t);

/// Pinned bytes held by tensors and staging copies (current/peak) and reserved by the cache.
MemoryStats pinned_memory_stats();

/// Returns cached pinned blocks that no tensor holds and no copy still reads to the system.
void empty_pinned_cache();

}  // namespace mixtape::cuda
