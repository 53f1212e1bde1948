#pragma once
// Training checkpoints: one safetensors file holding the model's state ("model.*"), the optimizer's state
// ("optim.*"), and in the metadata the run's config, progress (epoch, step) and RNG state.
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/module.h"
#include "optim/optimizer.h"

namespace mixtape::app {

/// Where a run stands, saved with the weights.
struct RunState {
  int64_t epoch = 0;         ///< epochs completed
  int64_t step = 0;          ///< optimizer steps taken
  uint64_t rng_seed = 0;     ///< default generator state
  uint64_t rng_offset = 0;
  nlohmann::json config;     ///< the run's TrainConfig
};

/// Writes model, optimizer, GradScaler ("scaler.*") and run state to `path` atomically.
void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                     const std::map<std::string, Tensor>& scaler_state, const RunState& state);

/// A checkpoint read from disk and validated, not yet applied.
struct Checkpoint {
  std::string path;
  RunState state;
  std::map<std::string, Tensor> model_state, optim_state, scaler_state;
};

/// Reads and validates `path`; throws mixtape::Error naming the file and the problem (missing, truncated, altered,
/// not a checkpoint, corrupt metadata).
Checkpoint read_checkpoint(const std::string& path);

/// Loads a checkpoint's weights and optimizer state; throws (naming the file) when they do not fit the model or
/// optimizer (missing or mis-shaped entries, another optimizer).
void apply_checkpoint(const Checkpoint& checkpoint, nn::Module& model, optim::Optimizer& optimizer);

/// How a file at an output path gets written: replaced by renaming a temporary onto it (--save), or opened and
/// written where it is (--log, --plot, the CSVs of --out).
enum class OutputWrite { replace_by_rename, in_place };

/// Throws mixtape::Error naming `flag`, `path` and the reason when a file cannot be written at `path` as `how` says
/// (directory missing or not a directory, target a directory, no permission, read-only file system). Checks by
/// creating and removing a probe file; changes no existing file.
void check_output_path(const std::string& path, const std::string& flag, OutputWrite how);

/// Removes the `path`.tmp.<pid> files that saves to `path` left when interrupted (their process no longer runs),
/// saying so on `log`; a live process's temporary is kept. Returns how many files were removed.
int remove_stale_temporaries(const std::string& path, std::ostream& log);

}  // namespace mixtape::app
