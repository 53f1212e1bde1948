#pragma once
// `mixtape train`: the CLI front of apps/trainer.
#include <CLI/CLI.hpp>

#include "apps/trainer.h"

namespace mixtape::app {

/// Adds the options `train` and `compare` share (model, device, optimizer, data, ...) to `cmd`, bound to `config`.
void add_run_options(CLI::App* cmd, TrainConfig& config);

/// Adds the `train` subcommand, its options bound to `config` and `json`.
CLI::App* add_train_command(CLI::App& app, TrainConfig& config, bool& json);

/// Runs a parsed `train`: human summary on stdout, or with --json one JSON object as the last stdout line.
int run_train_command(const TrainConfig& config, bool json);

}  // namespace mixtape::app
