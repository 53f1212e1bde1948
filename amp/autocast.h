#pragma once
// Autocast: an RAII guard on a thread-local state. While a guard is active, every differentiable op casts its
// floating inputs at its boundary according to amp/policy.h; nothing else in the code base casts. Parameters
// (float32 leaves that require grad) are cast once per step: their compute copies are cached by parameter and
// version (an optimizer step bumps the version) and the cache is dropped when the outermost guard exits.
#include <cstdint>
#include <map>
#include <string>

#include "autograd/op_kind.h"
#include "core/tensor.h"

namespace mixtape::amp {

/// RAII autocast region for ops on `device`'s type, computing "lower" ops in `dtype` (f16 or bf16).
/// Nestable; `enabled = false` opens a float32 region (no casts) inside an enabled one.
class Autocast {
 public:
  Autocast(Device device, DType dtype, bool enabled = true);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool prev_enabled_;
  Device prev_device_;
  DType prev_dtype_;
};

/// Whether autocast is active on this thread.
bool is_enabled();
/// The lower-precision dtype of the innermost guard (f16 when none).
DType autocast_dtype();
/// The device of the innermost guard.
Device autocast_device();

/// What autocast did for one op kind since the last reset (this thread and every other, summed).
struct OpStats {
  int64_t calls = 0;                   ///< calls under an enabled autocast
  std::map<DType, int64_t> ran_in;     ///< calls by the dtype the op computed in
  int64_t casts = 0;                   ///< inputs cast (cache hits excluded)
  int64_t bytes_cast = 0;              ///< bytes written by those casts
  int64_t cache_hits = 0;              ///< parameter casts served from the cache
};

/// A snapshot of the per-op statistics.
std::map<OpKind, OpStats> stats();
/// Clears the statistics.
void reset_stats();
/// A table of the statistics: per op kind, its policy, the dtypes it ran in, casts, bytes cast (and per step
/// when `steps` > 0), cache hits.
std::string report(int64_t steps = 0);

/// Number of cached compute copies on this thread (for tests).
size_t cache_size();
/// Drops this thread's cached compute copies.
void clear_cache();

}  // namespace mixtape::amp
