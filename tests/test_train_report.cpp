// The comparison report (apps/report.h) on records written here, so every number is known: the smoothing against
// sums done by hand, the verdict line's figures, the loss-scale plot's skipped-step markers, and the errors of a
// damaged record. (cli.report runs the whole path: compare --report, mixtape report DIR, the HTML5 check.)
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "apps/compare_command.h"
#include "apps/report.h"
#include "apps/trainer.h"
#include "core/error.h"
#include "test_util.h"

using namespace mixtape;
using Catch::Matchers::Contains;
using mixtape::testing::error_of;
using mixtape::testing::read_text;
using mixtape::testing::TempDir;
using mixtape::testing::write_text;
namespace fs = std::filesystem;

namespace {

/// A result with the given figures (the rest as a run of `steps` steps over 2 epochs would have them).
app::TrainResult result(const std::string& precision, double samples_per_s, int64_t peak, int64_t act, double acc,
                        int64_t steps, int64_t skipped) {
  app::TrainResult r;
  r.model = "mlp";
  r.precision = precision;
  r.device = "cpu";
  r.epochs = 2;
  r.batch = 64;
  r.steps = steps;
  r.samples = steps * 64;
  r.samples_per_s = samples_per_s;
  r.train_seconds = static_cast<double>(r.samples) / samples_per_s;
  r.final_loss = 0.5;
  r.test_acc = acc;
  r.peak_mem_bytes = peak;
  r.activation_bytes = act;
  r.skipped_steps = skipped;
  r.loss_scaling = precision == "fp16";
  r.loss_scale = r.loss_scaling ? 8192 : 1;
  r.data = "test data";
  r.history = {{.epoch = 1, .mean_loss = 1.0, .test_acc = acc - 0.01}, {.epoch = 2, .mean_loss = 0.6, .test_acc = acc}};
  return r;
}

/// A saved comparison of fp32 and fp16 (40 steps each; fp16 skips steps 5, 6 and 30, halving its scale each time)
/// in `dir`, as compare --out writes it.
void write_record(const TempDir& dir) {
  const std::vector<app::TrainResult> runs = {result("fp32", 1000, 100 << 20, 10 << 20, 0.842, 40, 0),
                                              result("fp16", 1600, 90 << 20, 6900 << 10, 0.841, 40, 3)};
  for (const app::TrainResult& r : runs) {
    std::string csv = "step,epoch,loss,lr,loss_scale,skipped\n";
    double scale = 65536;
    for (int step = 1; step <= 40; ++step) {
      const bool skipped = r.precision == "fp16" && (step == 5 || step == 6 || step == 30);
      csv += std::to_string(step) + "," + std::to_string(step <= 20 ? 1 : 2) + "," + std::to_string(2.0 / step + 0.3) +
             ",0.001," + std::to_string(r.loss_scaling ? scale : 1.0) + "," + (skipped ? "1" : "0") + "\n";
      if (skipped) scale /= 2;
    }
    write_text(dir.file("mlp_" + r.precision + ".csv"), csv);
  }
  app::write_compare_record(dir.path.string(),
                            app::compare_record(app::TrainConfig{}, runs, {"mlp_fp32.csv", "mlp_fp16.csv"}));
}

}  // namespace

TEST_CASE("report: the smoothing is a centred mean of the finite values, narrower at the ends", "[train][report]") {
  const std::vector<double> v = {1, 2, NAN, 4, 8};
  const std::vector<double> s = app::smooth(v, 3);
  // by hand: (1+2)/2, (1+2)/2 (the NaN skipped), (2+4)/2, (4+8)/2, (4+8)/2
  const std::vector<double> expected = {1.5, 1.5, 3, 6, 6};
  REQUIRE(s.size() == expected.size());
  for (size_t i = 0; i < s.size(); ++i) CHECK(s[i] == expected[i]);
  CHECK(app::smooth(v, 1)[1] == 2);
  CHECK(std::isnan(app::smooth(v, 1)[2]));  // a window of only the NaN has no mean
  const std::vector<double> wide = app::smooth({3, 5, 7, 9}, 101);  // wider than the data: the mean of all of it
  for (const double x : wide) CHECK(x == 6);
  CHECK(app::smoothing_window(10) == 1);
  CHECK(app::smoothing_window(469) == 13);     // 469 / 40 = 11.7 -> 12 -> odd 13
  CHECK(app::smoothing_window(1407) == 35);
  CHECK(app::smoothing_window(1000000) == 201);
  for (int64_t n : {1, 39, 80, 5000}) CHECK(app::smoothing_window(n) % 2 == 1);
}

TEST_CASE("report: the verdict line is computed from the two results", "[train][report]") {
  const nlohmann::json base = app::to_json(result("fp32", 1000, 100 << 20, 10 << 20, 0.842, 1200, 0));
  const nlohmann::json bf16 = app::to_json(result("bf16", 1600, 85 << 20, 6900 << 10, 0.841, 1200, 0));
  CHECK(app::verdict(bf16, base) ==
        "bf16 vs fp32: 1.60\u00d7 faster, 0.67\u00d7 activation memory, 0.85\u00d7 peak memory, accuracy \u22120.10 pt "
        "(84.10% vs 84.20%), no skipped steps");
  const nlohmann::json fp16 = app::to_json(result("fp16", 400, 100 << 20, 5 << 20, 0.8425, 1200, 12));
  CHECK(app::verdict(fp16, base) ==
        "fp16 vs fp32: 0.40\u00d7 the speed (slower), 0.50\u00d7 activation memory, 1.00\u00d7 peak memory, accuracy "
        "+0.05 pt (84.25% vs 84.20%), 12 skipped steps (1.0%)");
  nlohmann::json text = bf16, text_base = base;
  text["context"] = text_base["context"] = 64;
  text["val_bpc"] = 2.6277;
  text_base["val_bpc"] = 2.6314;
  CHECK_THAT(app::verdict(text, text_base), Contains("validation \u22120.004 bits/char (2.628 vs 2.631)"));
}

TEST_CASE("report: a saved comparison with skipped steps marks each of them on the loss-scale plot", "[train][report]") {
  if (!app::gnuplot_problem().empty()) {
    WARN("skipping: " << app::gnuplot_problem());
    return;
  }
  TempDir dir;
  write_record(dir);
  const app::CompareRecord rec = app::load_compare_record(dir.path.string());
  REQUIRE(rec.runs.size() == 2);
  CHECK(rec.runs[1].steps[4].skipped);
  CHECK(rec.runs[1].steps[6].loss_scale == 16384);  // after two halvings
  const std::string html = app::report_html(rec);
  // the loss-scale plot: fp16's scale, then its skipped steps, one point marker each
  const size_t section = html.find("<section id=\"loss-scale\">");
  REQUIRE(section != std::string::npos);
  const std::string plot = html.substr(section, html.find("</section>", section) - section);
  const size_t skips = plot.find("<title>fp16 skipped steps (3)</title>");
  REQUIRE(skips != std::string::npos);
  const std::string group = plot.substr(skips, plot.find("<g id=\"loss-scale-gnuplot_plot_", skips) - skips);
  size_t markers = 0;
  for (size_t p = 0; (p = group.find("<use ", p)) != std::string::npos; ++p) ++markers;
  CHECK(markers == 3 + 1);  // the three steps and the key's sample
  CHECK_THAT(plot, Contains("fp16: 3 skipped step(s) of 40, final scale 8192"));
  CHECK_THAT(html, Contains("fp16 vs fp32: 1.60\u00d7 faster"));
  CHECK_THAT(html, !Contains("<script") && !Contains("href=\"http"));
  // the same record gives the same page, byte for byte
  CHECK(app::report_html(app::load_compare_record(dir.path.string())) == html);
}

TEST_CASE("report: a damaged record is refused with the file and the problem", "[train][report]") {
  TempDir dir;
  write_record(dir);
  const std::string record_path = dir.file("compare.json");
  const std::string original = read_text(record_path);
  SECTION("a CSV with fewer steps than the record") {
    const std::string csv = read_text(dir.file("mlp_fp16.csv"));
    write_text(dir.file("mlp_fp16.csv"), csv.substr(0, csv.rfind('\n', csv.size() - 2) + 1));
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }),
               Contains("mlp_fp16.csv' has 39 steps but") && Contains("took 40"));
  }
  SECTION("steps out of order") {
    std::string csv = read_text(dir.file("mlp_fp32.csv"));
    csv.replace(csv.find("\n3,"), 3, "\n1,");
    write_text(dir.file("mlp_fp32.csv"), csv);
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }),
               Contains("mlp_fp32.csv' line 4: step 1 does not follow step 2"));
  }
  SECTION("a CSV name that leaves the directory") {
    nlohmann::json j = nlohmann::json::parse(original);
    j["runs"][1]["csv"] = "../elsewhere.csv";
    write_text(record_path, j.dump());
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }),
               Contains("run 2's csv '../elsewhere.csv' is not a file name inside the directory"));
  }
  SECTION("a field of the wrong type") {
    nlohmann::json j = nlohmann::json::parse(original);
    j["runs"][0]["result"]["samples_per_s"] = "fast";
    write_text(record_path, j.dump());
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }),
               Contains("compare.json': run 1's result's \"samples_per_s\" is string"));
  }
  SECTION("a run without epochs") {
    nlohmann::json j = nlohmann::json::parse(original);
    j["runs"][0]["result"]["history"] = nlohmann::json::array();
    write_text(record_path, j.dump());
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }), Contains("run 1's result's history lists no epoch"));
  }
  SECTION("a newer format") {
    nlohmann::json j = nlohmann::json::parse(original);
    j["format_version"] = 2;
    write_text(record_path, j.dump());
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }), Contains("format version 2"));
  }
  SECTION("not a record of compare") {
    write_text(record_path, "{\"model\": \"mlp\"}");
    CHECK_THAT(error_of([&] { app::load_compare_record(dir.path.string()); }), Contains("is not a record of mixtape compare"));
  }
}

TEST_CASE("compare: an unwritable --report fails before the first run", "[train][report][paths]") {
  TempDir dir;
  app::CompareOptions o;
  o.base.data_dir = dir.file("no-data-here");  // a run that started would fail on the missing data instead
  o.base.progress = false;
  o.precisions = {"fp32"};
  o.out_dir = dir.file("out");
  o.report_path = dir.file("no/such/report.html");
  if (!app::gnuplot_problem().empty()) {
    CHECK_THAT(error_of([&] { app::run_compare_command(o); }), Contains("--report") && Contains("gnuplot-nox"));
    return;
  }
  const std::string msg = error_of([&] { app::run_compare_command(o); });
  CHECK_THAT(msg, Contains("--report") && Contains(o.report_path) && Contains("does not exist"));
  CHECK_THAT(msg, !Contains("Fashion-MNIST"));
}

TEST_CASE("report: any field of the record changed to a string or null is refused or reported, never a crash",
          "[train][report]") {
  TempDir dir;
  write_record(dir);
  const std::string record_path = dir.file("compare.json");
  const nlohmann::json flat = nlohmann::json::parse(read_text(record_path)).flatten();
  const bool draw = app::gnuplot_problem().empty();
  int refused = 0, drawn = 0;
  for (const auto& [pointer, value] : flat.items()) {
    for (const nlohmann::json& replacement : {nlohmann::json("x"), nlohmann::json(nullptr)}) {
      if (value == replacement) continue;
      nlohmann::json changed = flat;
      changed[pointer] = replacement;
      write_text(record_path, changed.unflatten().dump());
      INFO(pointer << " = " << replacement.dump());
      try {
        const app::CompareRecord rec = app::load_compare_record(dir.path.string());
        if (draw) {
          const std::string html = app::report_html(rec);
          CHECK_THAT(html, Contains("</html>"));
          ++drawn;
        }
      } catch (const Error& e) {
        CHECK_THAT(std::string(e.what()), Contains("compare.json") || Contains("per-step CSV"));  // names the file
        ++refused;
      }
    }
  }
  CHECK(refused > 20);  // the fields the report needs
  WARN(refused << " changed records refused, " << drawn << " reported");
}
