#pragma once
// `mixtape compare`: the same run in several precisions, side by side.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "apps/trainer.h"

namespace mixtape::app {

/// Options of `mixtape compare` beyond the shared training config.
struct CompareOptions {
  TrainConfig base;                                        ///< everything but the precision and the log path
  std::vector<std::string> precisions{"fp32", "fp16", "bf16"};
  std::string out_dir = "mixtape-compare";                 ///< per-step CSVs: <model>_<precision>.csv
  std::string report_path;                                 ///< the HTML report (apps/report.h)
  std::string plot_path;                                   ///< PNG of the loss, accuracy and loss-scale panels (gnuplot)
  bool json = false;
};

/// Adds the `compare` subcommand, its options bound to `options`.
CLI::App* add_compare_command(CLI::App& app, CompareOptions& options);

/// Runs every precision with the same seed and data order and prints the table (or JSON lines).
int run_compare_command(const CompareOptions& options);

/// The side-by-side table of finished runs (the first run is the baseline for ratios).
std::string compare_table(const std::vector<TrainResult>& runs);

}  // namespace mixtape::app
