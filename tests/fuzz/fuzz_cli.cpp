// libFuzzer target: the command line of `mixtape train`, `compare`, `bench` and `report` (CLI11, apps/*_command.h,
// apps/report.h) parsed from an argv made of the input's NUL-separated tokens, without running anything. The App
// is set up as apps/mixtape.cpp main() sets it up for these commands; a parse error goes through app.exit() (the
// message or the --help text, into a string), and a parsed command gets the checks its run starts with (precision names,
// the device name, GEMM shapes). Exceptions other than CLI11's and mixtape::Error escape: main() would not catch
// them around parse() either, so they are findings.
#include <CLI/CLI.hpp>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "apps/bench_command.h"
#include "apps/compare_command.h"
#include "apps/report.h"
#include "apps/train_command.h"
#include "core/device.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mixtape;
  std::vector<std::string> tokens{"mixtape"};
  std::string current;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      tokens.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  if (!current.empty()) tokens.push_back(current);
  if (tokens.size() > 64) return 0;
  std::vector<char*> argv;
  for (std::string& t : tokens) argv.push_back(t.data());
  argv.push_back(nullptr);

  CLI::App app{"mixtape (fuzz)", "mixtape"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("mixtape fuzz"));
  app::TrainConfig train_config;
  bool train_json = false;
  CLI::App* train = app::add_train_command(app, train_config, train_json);
  app::CompareOptions compare_options;
  CLI::App* compare = app::add_compare_command(app, compare_options);
  app::BenchOptions bench_options;
  CLI::App* bench = app::add_bench_command(app, bench_options);
  app::ReportOptions report_options;  // parsed only: its run reads files
  app::add_report_command(app, report_options);

  try {
    app.parse(static_cast<int>(tokens.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    (void)app.exit(e, out, err);  // the message, or the help text for --help / --help-all
    return 0;
  }
  try {
    if (*train) {
      (void)app::precision_dtype(train_config.precision);
      if (train_config.device != "auto") (void)Device::parse(train_config.device);
    } else if (*compare) {
      for (const std::string& p : compare_options.precisions) (void)app::precision_dtype(p);
      if (compare_options.base.device != "auto") (void)Device::parse(compare_options.base.device);
    } else if (*bench) {
      for (const std::string& s : bench_options.gemm_shapes) (void)app::parse_gemm_shape(s);
      (void)Device::parse(bench_options.device);
    }
  } catch (const Error&) {
  }
  return 0;
}
