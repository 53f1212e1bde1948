#pragma once
// The comparison report: `mixtape compare --report FILE.html` and `mixtape report DIR`.
//
// `compare --out DIR` writes one per-step CSV per precision and compare.json (the configuration, the machine and
// each precision's result with its per-epoch history and per-op autocast statistics). The report is built from
// those files only, so `mixtape report DIR` rebuilds exactly the page `compare --report` wrote. The page is one
// self-contained HTML file: no scripts, fonts or network; its plots are gnuplot's SVG, inline.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/trainer.h"

namespace mixtape::app {

/// The file `compare --out DIR` writes beside the per-step CSVs.
inline constexpr const char* kCompareRecordFile = "compare.json";

/// One row of a per-step CSV (step,epoch,loss,lr,loss_scale,skipped).
struct StepRow {
  int64_t step = 0, epoch = 0;
  double loss = 0, lr = 0, loss_scale = 1;
  bool skipped = false;
};

/// One precision of a saved comparison.
struct SavedRun {
  std::string precision;
  std::string csv;        ///< the CSV's file name inside the directory
  nlohmann::json result;  ///< to_json(TrainResult)
  std::vector<StepRow> steps;
};

/// A saved comparison: compare.json and the CSVs it names. The first run is the baseline.
struct CompareRecord {
  nlohmann::json info;  ///< compare.json
  std::vector<SavedRun> runs;
};

/// compare.json for finished runs: `csv_names[i]` is the CSV file name of `runs[i]` inside the --out directory.
nlohmann::json compare_record(const TrainConfig& base, const std::vector<TrainResult>& runs,
                              const std::vector<std::string>& csv_names);

/// Writes `record` to DIR/compare.json (a temporary file renamed onto it).
void write_compare_record(const std::string& dir, const nlohmann::json& record);

/// Reads DIR/compare.json and the CSVs it names; throws mixtape::Error naming the file and the problem (missing,
/// not JSON, a field missing or of the wrong type, a CSV row that does not parse, a CSV that disagrees with the
/// JSON's step count).
CompareRecord load_compare_record(const std::string& dir);

/// "" when gnuplot can be run; otherwise the reason, naming the Debian package that provides it.
std::string gnuplot_problem();

/// The verdict line of `run` against `baseline` (two results of compare.json), computed from their numbers:
/// "bf16 vs fp32: 1.60x faster, 0.69x activation memory, ...".
std::string verdict(const nlohmann::json& run, const nlohmann::json& baseline);

/// The centred moving mean of the finite values of `v` over `window` values (fewer at the ends); NaN where a
/// window holds no finite value.
std::vector<double> smooth(const std::vector<double>& v, int window);

/// The smoothing window of a run of `steps` steps: about 1/40 of them, odd, between 1 and 201.
int smoothing_window(int64_t steps);

/// The self-contained HTML page of a saved comparison (runs gnuplot; throws when it is missing or fails).
std::string report_html(const CompareRecord& record);

/// Writes report_html(record) to `path` (a temporary file renamed onto it: an existing page is never half
/// overwritten).
void write_report(const CompareRecord& record, const std::string& path);

/// Draws the smoothed training loss, the accuracy per epoch and (when a run scaled its loss) the loss scale into
/// a PNG at `path` (pngcairo).
void write_plot_png(const CompareRecord& record, const std::string& path);

/// Options of `mixtape report`.
struct ReportOptions {
  std::string dir;        ///< what `compare --out` wrote
  std::string output;     ///< the HTML page (default DIR/report.html)
  std::string plot_path;  ///< optional PNG
};

/// Adds the `report` subcommand.
CLI::App* add_report_command(CLI::App& app, ReportOptions& options);

/// Rebuilds the report (and the PNG when asked) from a saved comparison.
int run_report_command(const ReportOptions& options);

}  // namespace mixtape::app
