#pragma once
// Autocast: an RAII guard on a thread-local state. While a guard is active, every differentiable op casts its
// floating inputs at its boundary according to amp/policy.h; nothing else in the code base casts. Parameters
// (float32 leaves that require grad) are cast once per step: their compute copies are cached by parameter and
// version (an optimizer step bumps the version) and the cache is dropped when the outermost guard exits.
//
// Persistent compute copies (DESIGN §5): for the parameters an optimizer updates (registered by the Optimizer
// constructor), the f16/bf16 copy buffer is kept across steps and guard exits, keyed by (parameter, dtype) and
// valid while the master's version equals the version it holds. The buffer is created by the optimizer's first
// update after the parameter was cast (the dtype cast last), outside the forward pass: the first step casts
// as usual and its activation memory is unchanged. Each step (tape generation) still records a
// fresh cast node on it, so gradients flow back to the master, but the cast kernel is skipped while the copy
// is valid. The optimizer writes the copy in its fused update pass (Backend::*_update's compute_copy) and
// marks it valid for the master's new version, so a training step casts no parameter at all.
// Cost: 2 bytes per parameter element per autocast dtype, held between steps (for the lifetime of the
// optimizer; set_persistent_compute_copies(false) turns the feature off and frees them). On by default.
// Writes into a registered master must bump its version (Tensor::copy_ and the optimizers do); a write through
// raw data() pointers without bump_version() would leave a stale copy in use.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

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
  int64_t cache_hits = 0;              ///< parameter casts served from the cache (no cast kernel run)
  int64_t persistent_hits = 0;         ///< of cache_hits: served by a persistent compute copy in a new step
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
/// Drops this thread's cached compute copies (the per-step cache; persistent copies stay valid).
void clear_cache();

/// Turns persistent compute copies on (the default) or off; off frees every persistent copy.
void set_persistent_compute_copies(bool on);
/// Whether persistent compute copies are on.
bool persistent_compute_copies();
/// Marks `params` as updated by an optimizer: their compute copies persist across steps (counted: each
/// registration needs one unregistration).
void register_persistent_parameters(const std::vector<Tensor>& params);
/// Undoes one register_persistent_parameters(params); a parameter's copies are freed with its last registration.
void unregister_persistent_parameters(const std::vector<Tensor>& params);
/// The persistent copy an optimizer should write in the fused update of `param` (in the dtype autocast used
/// last; created on first request), or an undefined tensor when `param` is not registered or was never cast.
Tensor persistent_copy_to_refresh(const Tensor& param);
/// Records that `copy` (from persistent_copy_to_refresh) now holds `param` rounded, at its current version.
void persistent_copy_refreshed(const Tensor& param, const Tensor& copy);
/// Number of persistent copy buffers held (all threads).
size_t persistent_copy_count();

}  // namespace mixtape::amp
