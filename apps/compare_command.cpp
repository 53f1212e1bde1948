#include "apps/compare_command.h"

#include "dist/dist.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/report.h"
#include "apps/train_command.h"

namespace mixtape::app {

namespace {

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

/// The per-step CSV of one precision's run.
std::string csv_path(const CompareOptions& o, const std::string& precision) {
  return (std::filesystem::path(o.out_dir) / (o.base.model + "_" + precision + ".csv")).string();
}

/// Checks for gnuplot when a page or a plot is asked for, creates --out and checks every file compare writes into
/// it, then --report and --plot (which may lie in --out), before the first run trains.
void check_destinations(const CompareOptions& o) {
  MIXTAPE_CHECK(!o.out_dir.empty(), "--out: the path is empty: name a directory");
  if (!o.report_path.empty() || !o.plot_path.empty()) {  // found out now, not after the training
    const std::string problem = gnuplot_problem();
    MIXTAPE_CHECK(problem.empty(), o.report_path.empty() ? "--plot: " : "--report: ", problem);
  }
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  const std::error_code created = ec;  // the reason, before another call can replace it
  MIXTAPE_CHECK(!created && std::filesystem::is_directory(o.out_dir, ec), "--out: cannot create the directory '",
                o.out_dir, "': ", created ? created.message() : "a file of that name is in the way");
  for (const std::string& precision : o.precisions) check_output_path(csv_path(o, precision), "--out", OutputWrite::in_place);
  check_output_path((std::filesystem::path(o.out_dir) / kCompareRecordFile).string(), "--out", OutputWrite::replace_by_rename);
  if (!o.report_path.empty()) check_output_path(o.report_path, "--report", OutputWrite::replace_by_rename);
  if (!o.plot_path.empty()) check_output_path(o.plot_path, "--plot", OutputWrite::replace_by_rename);
}

}  // namespace

std::string compare_table(const std::vector<TrainResult>& runs) {
  std::ostringstream os;
  const bool text = !runs.empty() && runs.front().context > 0;  // gpt: validation bits/char and next-char accuracy
  os << std::left << std::setw(10) << "precision" << std::right << std::setw(12) << "samples/s" << std::setw(9) << "speedup"
     << std::setw(11) << "peak MiB" << std::setw(8) << "ratio" << std::setw(10) << "act MiB" << std::setw(8) << "ratio"
     << std::setw(12) << "final loss" << (text ? "   val bpc" : "") << std::setw(10) << (text ? "char acc" : "test acc")
     << std::setw(9) << "skipped" << std::setw(12) << "loss scale" << "\n";
  if (runs.empty()) return os.str();
  const TrainResult& base = runs.front();
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  for (const TrainResult& r : runs) {
    os << std::left << std::setw(10) << r.precision << std::right << std::fixed << std::setprecision(0) << std::setw(12)
       << r.samples_per_s << std::setprecision(2) << std::setw(8) << ratio(r.samples_per_s, base.samples_per_s) << "x"
       << std::setprecision(1) << std::setw(11) << mib(r.peak_mem_bytes) << std::setprecision(2) << std::setw(8)
       << ratio(static_cast<double>(r.peak_mem_bytes), static_cast<double>(base.peak_mem_bytes)) << std::setprecision(1)
       << std::setw(10) << mib(r.activation_bytes) << std::setprecision(2) << std::setw(8)
       << ratio(static_cast<double>(r.activation_bytes), static_cast<double>(base.activation_bytes)) << std::setprecision(4)
       << std::setw(12) << r.final_loss;
    if (text) os << std::setprecision(4) << std::setw(10) << r.val_bpc;
    os << std::setprecision(2) << std::setw(9) << 100.0 * r.test_acc << "%"
       << std::setw(9) << r.skipped_steps << std::setprecision(0) << std::setw(12) << r.loss_scale << "\n";
  }
  return os.str();
}

CLI::App* add_compare_command(CLI::App& app, CompareOptions& o) {
  CLI::App* cmd = app.add_subcommand("compare", "Train the same model in fp32, fp16 and bf16 and compare them side by side");
  cmd->footer(
      "Runs `mixtape train` once per precision with the same seed, initial weights and data order, then prints\n"
      "throughput (and speedup over the first precision), peak memory and activation bytes (and their ratios),\n"
      "final loss, test accuracy, skipped steps and the final loss scale. Per-step loss and loss-scale CSVs and\n"
      "compare.json (configuration, machine, results, per-epoch history, per-op autocast statistics) go to --out.\n"
      "--report FILE.html writes one self-contained page (inline SVG plots, no scripts or network): a computed\n"
      "verdict per precision, the table, smoothed training loss and its difference from the baseline, accuracy per\n"
      "epoch, the loss scale with skipped steps, throughput and memory bars, and what autocast did per op;\n"
      "`mixtape report DIR` rebuilds it later from --out. --plot FILE.png draws the loss, accuracy and loss-scale\n"
      "panels. Both need gnuplot (Debian: gnuplot-nox).\n"
      "Example: mixtape compare --model mlp --epochs 3 --report mlp.html\n"
      "         mixtape compare --model gpt   (the validation bits per character of each precision)\n");
  add_run_options(cmd, o.base);
  cmd->add_option("--precisions", o.precisions, "Comma-separated precisions; the first is the baseline")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  cmd->add_option("--out", o.out_dir, "Directory for the per-step CSVs and compare.json (what `mixtape report` reads)")
      ->capture_default_str();
  cmd->add_option("--report", o.report_path, "Write the comparison as one self-contained HTML page (needs gnuplot)");
  cmd->add_option("--plot", o.plot_path, "Draw the loss, accuracy and loss-scale panels into this PNG (needs gnuplot)");
  cmd->add_flag("--json", o.json, "Print one JSON object per run instead of the table");
  return cmd;
}

int run_compare_command(const CompareOptions& o) {
  MIXTAPE_CHECK(!o.precisions.empty(), "--precisions: give at least one of fp32, fp16, bf16");
  check_destinations(o);
  const bool main_rank = dist::is_main();  // under mpirun every rank trains; rank 0 reports
  std::ostream null_out(nullptr);
  std::ostream& out = main_rank ? std::cout : null_out;
  std::ostream& err = main_rank ? std::cerr : null_out;
  std::vector<TrainResult> runs;
  std::vector<std::string> csv_names;
  for (const std::string& precision : o.precisions) {
    TrainConfig c = o.base;
    c.precision = precision;
    c.log_path = csv_path(o, precision);
    c.amp_report = true;  // the per-op statistics go into compare.json (and the report)
    err << "== " << c.model << " in " << precision << " ==\n";
    runs.push_back(train(c, std::cerr));
    csv_names.push_back(std::filesystem::path(c.log_path).filename().string());
    if (o.json) out << to_json(runs.back()).dump() << std::endl;
  }
  if (!main_rank) return 0;
  if (!o.json) {
    std::cout << "\n" << o.base.model << " on " << runs.front().device << ", " << runs.front().epochs << " epoch(s), batch "
              << o.base.batch << ", " << o.base.optimizer << " lr " << o.base.lr << ", seed " << o.base.seed << "\n"
              << compare_table(runs) << "per-step CSVs and compare.json in " << o.out_dir << "/" << std::endl;
  }
  write_compare_record(o.out_dir, compare_record(o.base, runs, csv_names));
  if (!o.report_path.empty() || !o.plot_path.empty()) {
    // Built from what --out now holds, exactly as `mixtape report DIR` builds it later.
    const CompareRecord record = load_compare_record(o.out_dir);
    if (!o.report_path.empty()) {
      write_report(record, o.report_path);
      std::cerr << "report written to " << o.report_path << " (rebuild it with: mixtape report " << o.out_dir << ")\n";
    }
    if (!o.plot_path.empty()) {
      write_plot_png(record, o.plot_path);
      std::cerr << "loss, accuracy and loss-scale panels drawn in " << o.plot_path << "\n";
    }
  }
  return 0;
}

}  // namespace mixtape::app
