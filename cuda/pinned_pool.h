#pragma once
// The pinned host block cache behind cuda/pinned.h, for the CUDA backend's own use (copy_across_devices):
// acquire a block, record that a copy on a stream reads it, release it. See cuda/pinned.h for the policy.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace mixtape::cuda::pinned {

/// A pinned block of at least `bytes` (> 0); throws mixtape::Error when pinned memory cannot be had.
void* acquire(size_t bytes);
/// Marks the block containing `ptr` as read by work queued on `stream` (of device `device`): the block is not
/// reused before that work completes. A no-op when `ptr` is not in a pinned block.
void record_use(const void* ptr, int device, cudaStream_t stream);
/// Returns a block from acquire() to the cache (reused once its recorded copies completed).
void release(void* ptr);
/// Whether [ptr, ptr + bytes) lies inside one pinned block of the cache.
bool contains(const void* ptr, size_t bytes);
/// The cache's rounding: `bytes` up to a power of two, at least 512.
size_t round_size(size_t bytes);

}  // namespace mixtape::cuda::pinned
