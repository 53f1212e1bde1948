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
#include "apps/train_command.h"

namespace mixtape::app {

namespace {

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

/// Draws the loss curves with gnuplot; returns an error message or "".
std::string plot_losses(const std::string& png, const std::vector<std::pair<std::string, std::string>>& series,
                        const std::string& title) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "gnuplot is not installed (sudo apt-get install gnuplot-nox); the CSVs are written, no plot";
  const std::string script = png + ".gp";
  {
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1000,600\n"
       << "set output '" << png << "'\n"
       << "set title '" << title << "'\nset xlabel 'step'\nset ylabel 'training loss'\nset key top right\n"
       << "set datafile separator ','\nset logscale y\n"
       << "plot ";
    for (size_t i = 0; i < series.size(); ++i)
      gp << (i ? ", " : "") << "'" << series[i].second << "' using 1:3 every ::1 with lines title '" << series[i].first << "'";
    gp << "\n";
  }
  const int rc = std::system(("gnuplot '" + script + "' 2>&1").c_str());
  std::filesystem::remove(script);
  if (rc != 0) return "gnuplot failed to draw '" + png + "'";
  return "";
}

/// The per-step CSV of one precision's run.
std::string csv_path(const CompareOptions& o, const std::string& precision) {
  return (std::filesystem::path(o.out_dir) / (o.base.model + "_" + precision + ".csv")).string();
}

/// Creates --out and checks every CSV in it, then --plot (which may lie in --out), before the first run trains.
void check_destinations(const CompareOptions& o) {
  MIXTAPE_CHECK(!o.out_dir.empty(), "--out: the path is empty: name a directory");
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  const std::error_code created = ec;  // the reason, before another call can replace it
  MIXTAPE_CHECK(!created && std::filesystem::is_directory(o.out_dir, ec), "--out: cannot create the directory '",
                o.out_dir, "': ", created ? created.message() : "a file of that name is in the way");
  for (const std::string& precision : o.precisions) check_output_path(csv_path(o, precision), "--out", OutputWrite::in_place);
  if (!o.plot_path.empty()) {
    check_output_path(o.plot_path, "--plot", OutputWrite::in_place);
    check_output_path(o.plot_path + ".gp", "--plot", OutputWrite::in_place);  // gnuplot's script, next to it
  }
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
      "final loss, test accuracy, skipped steps and the final loss scale. Per-step loss and loss-scale CSVs go to\n"
      "--out; --plot FILE.png draws the loss curves with gnuplot (Debian: gnuplot-nox).\n"
      "Example: mixtape compare --model mlp --epochs 3 --plot loss.png\n"
      "         mixtape compare --model gpt   (the validation bits per character of each precision)\n");
  add_run_options(cmd, o.base);
  cmd->add_option("--precisions", o.precisions, "Comma-separated precisions; the first is the baseline")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  cmd->add_option("--out", o.out_dir, "Directory for the per-step CSVs")->capture_default_str();
  cmd->add_option("--plot", o.plot_path, "Draw the loss curves into this PNG (needs gnuplot)");
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
  std::vector<std::pair<std::string, std::string>> series;
  for (const std::string& precision : o.precisions) {
    TrainConfig c = o.base;
    c.precision = precision;
    c.log_path = csv_path(o, precision);
    err << "== " << c.model << " in " << precision << " ==\n";
    runs.push_back(train(c, std::cerr));
    series.emplace_back(precision, c.log_path);
    if (o.json) out << to_json(runs.back()).dump() << std::endl;
  }
  if (!main_rank) return 0;
  if (!o.json) {
    std::cout << "\n" << o.base.model << " on " << runs.front().device << ", " << runs.front().epochs << " epoch(s), batch "
              << o.base.batch << ", " << o.base.optimizer << " lr " << o.base.lr << ", seed " << o.base.seed << "\n"
              << compare_table(runs) << "per-step CSVs in " << o.out_dir << "/" << std::endl;
  }
  if (!o.plot_path.empty()) {
    const std::string err = plot_losses(o.plot_path, series, o.base.model + ": training loss by precision");
    if (!err.empty()) std::cerr << "mixtape: warning: " << err << "\n";
    else std::cerr << "loss curves drawn in " << o.plot_path << "\n";
  }
  return 0;
}

}  // namespace mixtape::app
