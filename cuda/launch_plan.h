#pragma once
// Host-side launch decisions of the CUDA elementwise, reduction and softmax kernels, as plain functions so
// they are unit-tested on a machine without a GPU (tests/test_broadcast_index.cpp).
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace mixtape::cuda::plan {

/// Threads per block of the elementwise kernels.
constexpr int kElementwiseThreads = 256;
/// Grid cap of the grid-stride loops (any n is covered; keeps uint32 index arithmetic from overflowing).
constexpr int64_t kMaxBlocks = 65535;

/// Elements per 16-byte vector of an element of `elem_size` bytes (1 for elements of 16 bytes or more).
constexpr int vector_width(size_t elem_size) { return elem_size >= 16 ? 1 : static_cast<int>(16 / elem_size); }

/// True when `p` is 16-byte aligned (a null pointer counts as aligned: it is never dereferenced).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

/// Blocks of `threads` for `work` items in a grid-stride loop: ceil(work / threads), at least 1, at most kMaxBlocks.
inline unsigned grid_blocks(int64_t work, int threads = kElementwiseThreads) {
  const int64_t b = (std::max<int64_t>(work, 1) + threads - 1) / threads;
  return static_cast<unsigned>(std::min(b, kMaxBlocks));
}

/// True when a broadcast kernel over `n` elements can index with uint32 (including the grid-stride overshoot).
inline bool fits_u32(int64_t n) { return n < (int64_t{1} << 31); }

/// How a reduction over the middle axis of (outer, n, inner) is launched.
struct ReducePlan {
  enum Kind { row_warp, row_block, column } kind;
  /// row kinds: blocks per row (1 = one pass; > 1 = partials in a workspace, then a second pass).
  int64_t splits = 1;
};

/// Threads of a row-reduce block and of a softmax block-per-row kernel.
constexpr int kRowBlockThreads = 512;
/// Rows up to this long are reduced by one warp (8 rows per 256-thread block).
constexpr int64_t kWarpRowMax = 1024;
/// Target number of resident blocks for splitting long rows (enough for any current GPU).
constexpr int64_t kTargetBlocks = 1024;

/// inner == 1: a warp per row for short rows, a block per row otherwise, and a row split across blocks when
/// there are too few rows to fill the GPU (each split covers at least 16 elements per thread). inner > 1: column.
inline ReducePlan plan_reduce(int64_t outer, int64_t n, int64_t inner) {
  if (inner > 1) return {ReducePlan::column, 1};
  if (n <= kWarpRowMax) return {ReducePlan::row_warp, 1};
  int64_t splits = 1;
  if (outer < kTargetBlocks) {
    const int64_t want = (kTargetBlocks + outer - 1) / outer;
    const int64_t max_useful = std::max<int64_t>(1, n / (kRowBlockThreads * 16));
    splits = std::min(want, max_useful);
  }
  return {ReducePlan::row_block, splits};
}

/// Softmax / cross-entropy rows up to this many columns take one warp per row; longer ones a block per row.
constexpr int64_t kSoftmaxWarpMax = 1024;
inline bool softmax_warp_per_row(int64_t cols) { return cols <= kSoftmaxWarpMax; }

}  // namespace mixtape::cuda::plan
