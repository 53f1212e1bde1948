#include "apps/report.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "apps/bench_machine.h"
#include "apps/checkpoint.h"
#include "core/atomic_file.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "core/error.h"
#include "dist/dist.h"
#include "mixtape/build_info.h"

#ifdef MIXTAPE_WITH_CUDA
#include "cuda/cuda_runtime_info.h"
#endif

namespace mixtape::app {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCsvHeader = "step,epoch,loss,lr,loss_scale,skipped";

/// printf into a std::string.
[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...) {
  va_list args, again;
  va_start(args, fmt);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  std::string out(static_cast<size_t>(std::max(n, 0)), '\0');
  std::vsnprintf(out.data(), out.size() + 1, fmt, again);
  va_end(again);
  return out;
}

/// A number of compare.json, NaN when it is null (JSON has no NaN: nlohmann writes it as null) or absent.
double num(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || !it->is_number() ? NAN : it->get<double>();
}

double mib(double bytes) { return bytes / (1 << 20); }

double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

/// "1.60×".
std::string times(double x) { return std::isfinite(x) ? format("%.2f\u00d7", x) : "n/a"; }

/// "+0.12" / "\u22120.12" (a real minus sign) with `digits` decimals; zero after rounding is "+0.00".
std::string signed_number(double x, int digits) {
  const std::string s = format("%+.*f", digits, x);
  if (s[0] == '-' && s.find_first_not_of("-0.") != std::string::npos) return "\u2212" + s.substr(1);
  return "+" + s.substr(1);
}

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

/// A gnuplot string in single quotes (a quote inside is doubled).
std::string gp_string(const std::string& s) {
  std::string out = "'";
  for (const char ch : s) out += ch == '\'' ? std::string("''") : std::string(1, ch);
  return out + "'";
}

/// A word for sh in single quotes.
std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (const char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

/// Writes `content` to `path` (core/atomic_file.h), naming it `what` in errors.
void write_text_atomically(const std::string& path, const std::string& content, const std::string& what) {
  write_file_atomically(
      path, [&](std::FILE* f) { return std::fwrite(content.data(), 1, content.size(), f) == content.size(); }, what);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The line colour of a precision (the same in every plot).
std::string colour(const std::string& precision) {
  if (precision == "fp32") return "#1f77b4";
  if (precision == "fp16") return "#d62728";
  if (precision == "bf16") return "#2ca02c";
  return "#7f7f7f";
}

bool is_text(const nlohmann::json& result) { return result.value("context", int64_t{0}) > 0; }

// ------------------------------------------------------------------------------------------------
// reading a saved comparison
// ------------------------------------------------------------------------------------------------

/// The value at `key` of `j`, which must have `type`; throws naming the file and the key otherwise.
const nlohmann::json& field(const nlohmann::json& j, const char* key, nlohmann::json::value_t type, const std::string& where,
                            const std::string& file) {
  const auto it = j.find(key);
  MIXTAPE_CHECK(it != j.end(), "'", file, "': ", where, " has no \"", key, "\"; the file was not written by mixtape compare "
                "or has been edited");
  const bool number_ok = type == nlohmann::json::value_t::number_float && (it->is_number() || it->is_null());
  const bool integer_ok = type == nlohmann::json::value_t::number_integer && it->is_number_integer();
  MIXTAPE_CHECK(number_ok || integer_ok || it->type() == type, "'", file, "': ", where, "'s \"", key, "\" is ",
                it->type_name(), ", not the ", nlohmann::json(type).type_name(), " mixtape compare writes");
  return *it;
}

/// Checks `key` of `j`, when present, like field().
void optional_field(const nlohmann::json& j, const char* key, nlohmann::json::value_t type, const std::string& where,
                    const std::string& file) {
  if (j.contains(key)) field(j, key, type, where, file);
}

std::vector<StepRow> read_steps_csv(const fs::path& path) {
  std::ifstream in(path);
  MIXTAPE_CHECK(in.good(), "cannot read the per-step CSV '", path.string(), "': ",
                fs::exists(path) ? "permission denied" : "no such file (compare --out writes one per precision)");
  std::string line;
  MIXTAPE_CHECK(std::getline(in, line) && line == kCsvHeader, "'", path.string(), "' is not a per-step CSV of mixtape: its ",
                "first line should be '", kCsvHeader, "'");
  std::vector<StepRow> rows;
  for (int64_t number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    auto bad = [&](const std::string& why) {
      return Error(detail::cat("'", path.string(), "' line ", number, ": ", why, " (the line is '", line.substr(0, 80), "')"));
    };
    if (cells.size() != 6) throw bad(detail::cat("expected 6 comma-separated fields (", kCsvHeader, "), found ", cells.size()));
    auto integer = [&](const std::string& s, const char* name) {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || end != s.data() + s.size()) throw bad(detail::cat(name, " '", s, "' is not an integer"));
      return v;
    };
    auto real = [&](const std::string& s, const char* name) {
      char* end = nullptr;
      const double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) throw bad(detail::cat(name, " '", s, "' is not a number"));
      return v;
    };
    StepRow r;
    r.step = integer(cells[0], "step");
    r.epoch = integer(cells[1], "epoch");
    r.loss = real(cells[2], "loss");
    r.lr = real(cells[3], "lr");
    r.loss_scale = real(cells[4], "loss_scale");
    const int64_t skipped = integer(cells[5], "skipped");
    if (skipped != 0 && skipped != 1) throw bad("skipped must be 0 or 1");
    r.skipped = skipped == 1;
    if (!rows.empty() && r.step <= rows.back().step) throw bad(detail::cat("step ", r.step, " does not follow step ", rows.back().step));
    if (!(r.loss_scale > 0)) throw bad("the loss scale must be positive");
    rows.push_back(r);
  }
  MIXTAPE_CHECK(!rows.empty(), "'", path.string(), "' holds no steps");
  return rows;
}

// ------------------------------------------------------------------------------------------------
// gnuplot
// ------------------------------------------------------------------------------------------------

/// A temporary directory where gnuplot reads its data and writes its pictures; removed afterwards.
class GnuplotJob {
 public:
  GnuplotJob() {
    std::string pattern = (fs::temp_directory_path() / "mixtape-report-XXXXXX").string();
    MIXTAPE_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a temporary directory for gnuplot under ",
                  fs::temp_directory_path().string(), ": ", std::strerror(errno));
    dir_ = pattern;
  }
  ~GnuplotJob() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  GnuplotJob(const GnuplotJob&) = delete;
  GnuplotJob& operator=(const GnuplotJob&) = delete;

  /// Writes a data file (a name inside the job) and returns its name for the script.
  std::string data(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return name;
  }
  fs::path path(const std::string& name) const { return dir_ / name; }

  /// Runs `script` in the job's directory; throws with gnuplot's own message when it fails.
  void run(const std::string& script) {
    const std::string problem = gnuplot_problem();
    MIXTAPE_CHECK(problem.empty(), problem);
    std::ofstream(dir_ / "script.gp") << script;
    const std::string cmd = "cd " + sh_quote(dir_.string()) + " && gnuplot script.gp > gnuplot.log 2>&1";
    const int rc = std::system(cmd.c_str());
    if (rc != 0) {
      std::string log = read_file(dir_ / "gnuplot.log");
      if (log.size() > 2000) log = "..." + log.substr(log.size() - 2000);
      throw Error(detail::cat("gnuplot failed to draw the report's plots (exit status ", rc, "):\n", log));
    }
  }

 private:
  fs::path dir_;
};

/// The data behind every panel, computed once from the record.
struct PanelData {
  const CompareRecord& rec;
  bool text = false;          // gpt: validation bits/char instead of test accuracy
  int window = 1;             // smoothing window (steps)
  std::vector<std::vector<double>> smoothed;  // per run, per CSV row

  explicit PanelData(const CompareRecord& r) : rec(r) {
    text = is_text(r.runs.front().result);
    size_t longest = 0;
    for (const SavedRun& run : r.runs) longest = std::max(longest, run.steps.size());
    window = smoothing_window(static_cast<int64_t>(longest));
    for (const SavedRun& run : r.runs) {
      std::vector<double> loss;
      for (const StepRow& s : run.steps) loss.push_back(s.loss);
      smoothed.push_back(smooth(loss, window));
    }
  }
  bool any_scaler() const {
    return std::any_of(rec.runs.begin(), rec.runs.end(), [](const SavedRun& r) { return r.result.value("loss_scaling", false); });
  }
  const std::string& baseline() const { return rec.runs.front().precision; }
};

/// Gnuplot settings every panel starts from.
std::string panel_start(const std::string& title, const std::string& xlabel, const std::string& ylabel) {
  return "set encoding utf8\nset title " + gp_string(title) + "\nset xlabel " + gp_string(xlabel) + "\nset ylabel " +
         gp_string(ylabel) + "\nset grid lc rgb '#dddddd'\nset key outside right top\nset border 3\nset tics nomirror\n"
         // the same plot area in every panel, so their step axes line up on the page
         "set lmargin at screen 0.09\nset rmargin at screen 0.80\n";
}

/// Smoothed training loss per precision (raw steps faint behind).
std::string loss_panel(GnuplotJob& job, const PanelData& d, bool with_raw) {
  // a log axis where the loss falls by more than a factor of 4 (the usual first epoch), a linear one otherwise
  double lo = INFINITY, hi = 0;
  for (const SavedRun& run : d.rec.runs)
    for (const StepRow& r : run.steps)
      if (std::isfinite(r.loss) && r.loss > 0) {
        lo = std::min(lo, r.loss);
        hi = std::max(hi, r.loss);
      }
  const bool log_axis = hi > 4 * lo;
  std::string s = panel_start(d.window > 1 ? "Training loss (smoothed: centred mean over " + std::to_string(d.window) + " steps)"
                                           : std::string("Training loss (too few steps to smooth)"),
                              "step", log_axis ? "training loss (log scale)" : "training loss");
  s += "set autoscale xfix\n";  // the axis ends at the last step
  if (log_axis) {  // tight, with 1-2-5 tics: decades alone would leave one labelled tic on most runs
    s += format("set logscale y\nset yrange [%.9g:%.9g]\nset ytics (", lo / 1.05, hi * 1.05);
    std::string tics;
    for (double decade = std::pow(10.0, std::floor(std::log10(lo))); decade <= hi * 10; decade *= 10)
      for (const double m : {1.0, 2.0, 5.0})
        if (m * decade >= lo / 1.05 && m * decade <= hi * 1.05) tics += (tics.empty() ? "" : ", ") + format("%g", m * decade);
    s += tics + ")\n";
  }
  std::vector<std::string> raw, smooth;
  for (size_t i = 0; i < d.rec.runs.size(); ++i) {
    const SavedRun& run = d.rec.runs[i];
    std::string rows;
    for (size_t k = 0; k < run.steps.size(); ++k)
      if (std::isfinite(run.steps[k].loss) && (run.steps[k].loss > 0 || !log_axis) && std::isfinite(d.smoothed[i][k]))
        rows += format("%lld %.9g %.9g\n", static_cast<long long>(run.steps[k].step), run.steps[k].loss, d.smoothed[i][k]);
    const std::string file = job.data("loss_" + std::to_string(i) + ".dat", rows);
    const std::string c = colour(run.precision);
    raw.push_back(gp_string(file) + " using 1:2 with lines lw 0.6 lc rgb '#C8" + c.substr(1) + "' notitle");
    smooth.push_back(gp_string(file) + " using 1:3 with lines lw 2 lc rgb '" + c + "' title " + gp_string(run.precision));
  }
  std::string plot;
  if (with_raw)
    for (const std::string& p : raw) plot += (plot.empty() ? "" : ", ") + p;
  for (const std::string& p : smooth) plot += (plot.empty() ? "" : ", ") + p;
  return s + "plot " + plot + "\n";
}

/// Smoothed loss minus the baseline's at the same step, per lower precision.
std::string difference_panel(GnuplotJob& job, const PanelData& d) {
  std::string s = panel_start("Training loss minus " + d.baseline() + "'s (both smoothed)", "step",
                              "loss \u2212 " + d.baseline() + " loss");
  std::map<int64_t, double> base;
  for (size_t k = 0; k < d.rec.runs[0].steps.size(); ++k) base[d.rec.runs[0].steps[k].step] = d.smoothed[0][k];
  s += "set autoscale xfix\n";
  std::string plot = "0 with lines lc rgb '#888888' dt 2 notitle";
  for (size_t i = 1; i < d.rec.runs.size(); ++i) {
    const SavedRun& run = d.rec.runs[i];
    std::string rows;
    for (size_t k = 0; k < run.steps.size(); ++k) {
      const auto it = base.find(run.steps[k].step);
      if (it != base.end() && std::isfinite(it->second) && std::isfinite(d.smoothed[i][k]))
        rows += format("%lld %.9g\n", static_cast<long long>(run.steps[k].step), d.smoothed[i][k] - it->second);
    }
    const std::string file = job.data("diff_" + std::to_string(i) + ".dat", rows);
    plot += ", " + gp_string(file) + " using 1:2 with lines lw 2 lc rgb '" + colour(run.precision) + "' title " +
            gp_string(run.precision + " \u2212 " + d.baseline());
  }
  return s + "plot " + plot + "\n";
}

/// Test accuracy (gpt: validation bits per character) after each epoch.
std::string accuracy_panel(GnuplotJob& job, const PanelData& d) {
  std::string s = d.text ? panel_start("Validation bits per character after each epoch (lower is better)", "epoch", "bits/char")
                         : panel_start("Test accuracy after each epoch", "epoch", "test accuracy (%)");
  int64_t epochs = 1;
  std::string plot;
  for (size_t i = 0; i < d.rec.runs.size(); ++i) {
    const SavedRun& run = d.rec.runs[i];
    std::string rows;
    for (const nlohmann::json& e : run.result["history"]) {
      const double v = d.text ? num(e, "val_bpc") : 100.0 * num(e, "test_acc");
      if (!std::isfinite(v)) continue;
      epochs = std::max(epochs, e["epoch"].get<int64_t>());
      rows += format("%lld %.9g\n", static_cast<long long>(e["epoch"].get<int64_t>()), v);
    }
    const std::string file = job.data("acc_" + std::to_string(i) + ".dat", rows);
    plot += (plot.empty() ? "" : ", ") + gp_string(file) + " using 1:2 with linespoints lw 2 pt 7 ps 0.9 lc rgb '" +
            colour(run.precision) + "' title " + gp_string(run.precision);
  }
  s += format("set xrange [0.5:%lld.5]\nset xtics 1\n", static_cast<long long>(epochs));
  return s + "plot " + plot + "\n";
}

/// The loss scale over the steps (log2 axis) of each run that scaled its loss, its skipped steps marked.
std::string scale_panel(GnuplotJob& job, const PanelData& d) {
  std::string s = panel_start("Loss scale per step (skipped steps marked)", "step", "loss scale");
  // padded above and below: a scale that never changes would lie on the axis
  s += "set logscale y 2\nset format y '2^{%L}'\nset autoscale xfix\nset offsets 0, 0, graph 0.1, graph 0.1\n";
  std::string plot;
  for (size_t i = 0; i < d.rec.runs.size(); ++i) {
    const SavedRun& run = d.rec.runs[i];
    if (!run.result.value("loss_scaling", false)) continue;
    std::string rows, skips;
    int64_t n = 0;
    for (const StepRow& r : run.steps) {
      rows += format("%lld %.9g\n", static_cast<long long>(r.step), r.loss_scale);
      if (r.skipped) {
        skips += format("%lld %.9g\n", static_cast<long long>(r.step), r.loss_scale);
        ++n;
      }
    }
    const std::string c = colour(run.precision);
    plot += (plot.empty() ? "" : ", ") + gp_string(job.data("scale_" + std::to_string(i) + ".dat", rows)) +
            " using 1:2 with steps lw 2 lc rgb '" + c + "' title " + gp_string(run.precision);
    if (n > 0)
      plot += ", " + gp_string(job.data("skips_" + std::to_string(i) + ".dat", skips)) +
              " using 1:2 with points pt 7 ps 0.8 lc rgb '#000000' title " +
              gp_string(run.precision + " skipped steps (" + std::to_string(n) + ")");
  }
  return s + "plot " + plot + "\n";
}

/// One number of every precision's result (`key`, divided by `unit`) as bars, each labelled with its ratio to the
/// baseline: throughput (the speedup), peak and activation memory (a plot each: activations can be a hundredth of
/// the peak).
std::string bar_panel(GnuplotJob& job, const PanelData& d, const char* key, double unit, const std::string& title,
                      const std::string& ylabel, const std::string& series) {
  const double base = num(d.rec.runs[0].result, key);
  std::string rows;
  for (size_t i = 0; i < d.rec.runs.size(); ++i) {
    const double v = num(d.rec.runs[i].result, key);
    rows += format("%zu %s %.9g \"%s\" %ld\n", i, d.rec.runs[i].precision.c_str(), v / unit, times(ratio(v, base)).c_str(),
                   std::strtol(colour(d.rec.runs[i].precision).c_str() + 1, nullptr, 16));
  }
  const std::string file = gp_string(job.data(std::string(key) + ".dat", rows));
  std::string s = panel_start(title + " (label: ratio to " + d.baseline() + ")", "precision", ylabel);
  s += format("set style fill solid 0.85 border -1\nset boxwidth 0.6\nset xrange [-0.6:%zu.6]\nset yrange [0:*]\n"
              "set offsets 0, 0, graph 0.12, 0\nunset key\nset grid noxtics\n",
              d.rec.runs.size() - 1);
  return s + "plot " + file + " using 1:3:5:xtic(2) with boxes lc rgb variable title " + gp_string(series) + ", " + file +
         " using 1:3:4 with labels offset 0,0.8 notitle\n";
}

/// gnuplot's SVG made fit for inlining: no XML prolog, ids prefixed with the panel's name (several SVGs share a
/// page, ids must be unique), a title for screen readers.
std::string inline_svg(const std::string& svg, const std::string& name, const std::string& label) {
  const size_t start = svg.find("<svg");
  MIXTAPE_CHECK(start != std::string::npos, "gnuplot wrote no SVG for the ", name, " plot");
  std::string s = svg.substr(start);
  auto replace_all = [&s](const std::string& from, const std::string& to) {
    for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  };
  for (const char* q : {"\"", "'"}) {
    replace_all(std::string("id=") + q, std::string("id=") + q + name + "-");
    replace_all(std::string("href=") + q + "#", std::string("href=") + q + "#" + name + "-");
  }
  replace_all("url(#", "url(#" + name + "-");
  replace_all("<title>Gnuplot</title>", "<title>" + html_escape(label) + "</title>");
  replace_all("<svg ", "<svg role=\"img\" aria-label=\"" + html_escape(label) + "\" ");
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// ------------------------------------------------------------------------------------------------
// the page
// ------------------------------------------------------------------------------------------------

/// A table cell holding a number of compare.json: the exact value in data-value, shown as `shown`.
std::string number_cell(const char* key, const nlohmann::json& result, const std::string& shown) {
  const auto it = result.find(key);
  const std::string exact = it == result.end() ? "null" : it->dump();
  return "<td data-key=\"" + std::string(key) + "\" data-value=\"" + html_escape(exact) + "\">" + html_escape(shown) + "</td>";
}

std::string summary_table(const CompareRecord& rec, bool text) {
  const nlohmann::json& b = rec.runs.front().result;
  std::ostringstream os;
  os << "<table class=\"numbers\">\n<thead><tr><th>precision</th><th>samples/s</th><th>speedup</th><th>peak MiB</th>"
        "<th>ratio</th><th>activation MiB</th><th>ratio</th><th>final loss</th>"
     << (text ? "<th>val bits/char</th><th>next-char acc</th>" : "<th>test acc</th>")
     << "<th>skipped steps</th><th>final loss scale</th></tr></thead>\n<tbody>\n";
  for (const SavedRun& run : rec.runs) {
    const nlohmann::json& r = run.result;
    os << "<tr data-precision=\"" << html_escape(run.precision) << "\"><th>" << html_escape(run.precision) << "</th>"
       << number_cell("samples_per_s", r, format("%.0f", num(r, "samples_per_s")))
       << "<td>" << times(ratio(num(r, "samples_per_s"), num(b, "samples_per_s"))) << "</td>"
       << number_cell("peak_mem_bytes", r, format("%.1f", mib(num(r, "peak_mem_bytes"))))
       << "<td>" << times(ratio(num(r, "peak_mem_bytes"), num(b, "peak_mem_bytes"))) << "</td>"
       << number_cell("activation_bytes", r, format("%.1f", mib(num(r, "activation_bytes"))))
       << "<td>" << times(ratio(num(r, "activation_bytes"), num(b, "activation_bytes"))) << "</td>"
       << number_cell("final_loss", r, format("%.4f", num(r, "final_loss")));
    if (text) os << number_cell("val_bpc", r, format("%.4f", num(r, "val_bpc")));
    os << number_cell("test_acc", r, format("%.2f%%", 100.0 * num(r, "test_acc")))
       << number_cell("skipped_steps", r, format("%lld", static_cast<long long>(r.value("skipped_steps", int64_t{0}))))
       << number_cell("loss_scale", r, r.value("loss_scaling", false) ? format("%g", num(r, "loss_scale")) : "none")
       << "</tr>\n";
  }
  os << "</tbody>\n</table>\n";
  return os.str();
}

/// The run's configuration as a two-column table.
std::string config_table(const CompareRecord& rec) {
  const nlohmann::json& info = rec.info;
  const nlohmann::json& c = info["config"];
  const nlohmann::json& m = info["machine"];
  const nlohmann::json& r0 = rec.runs.front().result;
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(12);
  auto str = [](const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::string("?");
    return it->is_string() ? it->get<std::string>() : it->dump();
  };
  std::string model = str(c, "model");
  if (is_text(r0))
    model += format(" (context %s, width %s, depth %s, heads %s)", str(c, "context").c_str(), str(c, "width").c_str(),
                    str(c, "depth").c_str(), str(c, "heads").c_str());
  rows.emplace_back("model", model);
  rows.emplace_back("data", str(r0, "data"));
  const int64_t world = r0.value("world_size", int64_t{1});
  rows.emplace_back("batch", world > 1 ? format("%s per rank \u00d7 %lld ranks", str(c, "batch").c_str(), static_cast<long long>(world))
                                       : str(c, "batch"));
  std::string opt = str(c, "optimizer") + ", learning rate " + str(c, "lr");
  if (str(c, "optimizer") == "sgd") opt += ", momentum " + str(c, "momentum");
  const double wd = num(c, "weight_decay");
  opt += wd >= 0 ? ", weight decay " + str(c, "weight_decay") : std::string(", weight decay: the optimizer's default");
  rows.emplace_back("optimizer", opt);
  rows.emplace_back("training", format("%s epoch(s), %s steps", str(r0, "epochs").c_str(), str(r0, "steps").c_str()));
  rows.emplace_back("seed", str(c, "seed") + " (every precision starts from the same weights and sees the same batches)");
  rows.emplace_back("loss scaling", str(c, "loss_scale") + " (auto: fp16 only)");
  rows.emplace_back("device", str(m, "device") + (m.contains("gpu") ? " (" + str(m, "gpu") + ")" : std::string()));
  rows.emplace_back("CPU", str(m, "cpu") + " (" + str(m, "cpu_features") + ")");
  rows.emplace_back("CPU threads", str(m, "threads") + ", CPU kernels " + str(m, "cpu_kernels") + "; oneDNN: " + str(m, "onednn"));
  rows.emplace_back("mixtape", str(info, "mixtape_version") + ", run finished " + str(info, "created"));
  std::string out = "<table class=\"config\">\n";
  for (const auto& [k, v] : rows) out += "<tr><th>" + html_escape(k) + "</th><td>" + html_escape(v) + "</td></tr>\n";
  return out + "</table>\n";
}

/// One lower precision's per-op autocast table.
std::string amp_table(const SavedRun& run) {
  const nlohmann::json& r = run.result;
  std::ostringstream os;
  os << "<h3>" << html_escape(run.precision) << "</h3>\n";
  const auto ops = r.find("amp_ops");
  if (ops == r.end() || ops->empty()) {
    os << "<p>No op ran under autocast.</p>\n";
  } else {
    const int64_t steps = std::max<int64_t>(r.value("steps", int64_t{1}), 1);
    os << "<table class=\"numbers amp\" data-precision=\"" << html_escape(run.precision) << "\">\n<thead><tr><th>op</th>"
       << "<th>policy</th><th>ran in (calls)</th><th>casts</th><th>bytes cast</th><th>bytes cast per step</th>"
       << "<th>cache hits</th></tr></thead>\n<tbody>\n";
    for (const nlohmann::json& op : *ops) {
      std::string ran;
      for (const auto& [dtype, n] : op["ran_in"].items()) ran += (ran.empty() ? "" : ", ") + dtype + " (" + n.dump() + ")";
      const int64_t bytes = op.value("bytes_cast", int64_t{0});
      os << "<tr><th>" << html_escape(op.value("op", "?")) << "</th><td>" << html_escape(op.value("policy", "?")) << "</td><td>"
         << html_escape(ran) << "</td>" << number_cell("casts", op, op["casts"].dump())
         << number_cell("bytes_cast", op, op["bytes_cast"].dump()) << "<td>" << bytes / steps << "</td>"
         << number_cell("cache_hits", op, op["cache_hits"].dump()) << "</tr>\n";
    }
    os << "</tbody>\n</table>\n";
  }
  if (r.contains("cpu_kernel_counts"))
    os << "<p class=\"note\">CPU matrix products and convolutions by implementation ("
       << html_escape(r["cpu_kernel_counts"].get<std::string>()) << ")</p>\n";
  return os.str();
}

constexpr const char* kStyle = R"(body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1b1b1b; max-width: 1000px; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.15em; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
p.lead { color: #555; margin-top: 0; }
ul.verdict { padding-left: 1.2em; font-size: 1.05em; }
ul.verdict li { margin: 0.2em 0; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
table.numbers td { text-align: right; font-variant-numeric: tabular-nums; }
table.numbers thead th { text-align: right; }
table.numbers thead th:first-child { text-align: left; }
table.amp td:nth-child(2), table.amp td:nth-child(3), table.amp thead th:nth-child(2), table.amp thead th:nth-child(3) { text-align: left; }
table.config th { color: #555; font-weight: normal; white-space: nowrap; }
figure { margin: 0.5em 0; }
figure svg { width: 100%; height: auto; display: block; }
p.note, figcaption { color: #555; font-size: 0.92em; }
section { break-inside: avoid; page-break-inside: avoid; }
@media print { body { max-width: none; margin: 0; font-size: 11pt; } h2 { margin-top: 1em; } }
)";

}  // namespace

// ------------------------------------------------------------------------------------------------
// public
// ------------------------------------------------------------------------------------------------

std::vector<double> smooth(const std::vector<double>& v, int window) {
  const int64_t n = static_cast<int64_t>(v.size()), half = std::max(window, 1) / 2;
  std::vector<double> out(v.size(), NAN);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t k = std::max<int64_t>(0, i - half); k <= std::min(n - 1, i + half); ++k)
      if (std::isfinite(v[static_cast<size_t>(k)])) {
        sum += v[static_cast<size_t>(k)];
        ++count;
      }
    if (count > 0) out[static_cast<size_t>(i)] = sum / static_cast<double>(count);
  }
  return out;
}

int smoothing_window(int64_t steps) {
  int64_t w = std::clamp<int64_t>((steps + 20) / 40, 1, 201);
  return static_cast<int>(w % 2 == 0 ? w + 1 : w);
}

std::string gnuplot_problem() {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "the plots need gnuplot, which is not installed (Debian package gnuplot-nox: sudo apt-get install "
           "gnuplot-nox, or run scripts/setup)";
  return "";
}

nlohmann::json compare_record(const TrainConfig& base, const std::vector<TrainResult>& runs,
                              const std::vector<std::string>& csv_names) {
  MIXTAPE_CHECK(!runs.empty() && runs.size() == csv_names.size(), "compare_record: one CSV name per run");
  const CpuFeatures f = cpu_features();
  std::string features;
  for (const auto& [name, has] : {std::pair<const char*, bool>{"AVX2", f.avx2}, {"FMA", f.fma}, {"F16C", f.f16c},
                                  {"AVX-512F", f.avx512f}, {"AVX512-BF16", f.avx512_bf16}})
    if (has) features += (features.empty() ? "" : ", ") + std::string(name);
  nlohmann::json machine = {{"device", runs.front().device},
                            {"cpu", f.model.empty() ? std::string("unknown CPU") : f.model},
                            {"cpu_features", features.empty() ? std::string("none of AVX2/AVX-512") : features},
                            {"threads", base.threads > 0 ? base.threads : cpu_threads()},
                            {"cpu_kernels", base.cpu_kernels.empty() ? std::string(cpu_kernels_name(cpu_kernels())) : base.cpu_kernels},
                            {"onednn", onednn_description()},
                            {"world_size", runs.front().world_size}};
#ifdef MIXTAPE_WITH_CUDA
  const Device device = Device::parse(runs.front().device);
  if (device.is_cuda()) {
    try {
      machine["gpu"] = cuda::device_info(device.index).name;
    } catch (const std::exception& e) {
      machine["gpu"] = std::string("unknown (") + e.what() + ")";
    }
  }
#endif
  char created[32] = "unknown";
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  if (gmtime_r(&now, &utc) != nullptr) std::strftime(created, sizeof created, "%Y-%m-%d %H:%M UTC", &utc);
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < runs.size(); ++i)
    list.push_back({{"precision", runs[i].precision}, {"csv", csv_names[i]}, {"result", to_json(runs[i])}});
  return {{"format", "mixtape compare"}, {"format_version", 1}, {"mixtape_version", MIXTAPE_VERSION_STRING},
          {"created", created},          {"config", to_json(base)}, {"machine", machine},
          {"runs", list}};
}

void write_compare_record(const std::string& dir, const nlohmann::json& record) {
  write_text_atomically((fs::path(dir) / kCompareRecordFile).string(), record.dump(1) + "\n", "comparison record");
}

CompareRecord load_compare_record(const std::string& dir) {
  std::error_code ec;
  MIXTAPE_CHECK(fs::is_directory(dir, ec), "'", dir, "' is not a directory: give the --out directory of a mixtape compare run");
  const fs::path path = fs::path(dir) / kCompareRecordFile;
  const std::string file = path.string();
  MIXTAPE_CHECK(fs::exists(path, ec), "'", dir, "' holds no ", kCompareRecordFile,
                ": it is not the --out directory of a finished mixtape compare run");
  std::ifstream in(path);
  MIXTAPE_CHECK(in.good(), "cannot read '", file, "': permission denied");
  CompareRecord rec;
  try {
    rec.info = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(detail::cat("'", file, "' is not valid JSON (", e.what(), "); it may be truncated or edited"));
  }
  using T = nlohmann::json::value_t;
  MIXTAPE_CHECK(rec.info.is_object() && rec.info.contains("format") && rec.info["format"] == "mixtape compare", "'", file,
                "' is not a record of mixtape compare (its \"format\" is not \"mixtape compare\")");
  const int64_t version = field(rec.info, "format_version", T::number_integer, "the record", file).get<int64_t>();
  MIXTAPE_CHECK(version == 1, "'", file, "' has format version ", version, "; this mixtape reads version 1");
  for (const char* key : {"created", "mixtape_version"}) optional_field(rec.info, key, T::string, "the record", file);
  optional_field(field(rec.info, "config", T::object, "the record", file), "model", T::string, "the config", file);
  optional_field(field(rec.info, "machine", T::object, "the record", file), "device", T::string, "the machine", file);
  const nlohmann::json& runs = field(rec.info, "runs", T::array, "the record", file);
  MIXTAPE_CHECK(!runs.empty(), "'", file, "' lists no runs");
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string where = "run " + std::to_string(i + 1);
    MIXTAPE_CHECK(runs[i].is_object(), "'", file, "': ", where, " is not an object");
    SavedRun run;
    run.precision = field(runs[i], "precision", T::string, where, file).get<std::string>();
    run.csv = field(runs[i], "csv", T::string, where, file).get<std::string>();
    MIXTAPE_CHECK(!run.csv.empty() && run.csv.find('/') == std::string::npos && run.csv != "." && run.csv != "..", "'",
                  file, "': ", where, "'s csv '", run.csv, "' is not a file name inside the directory");
    run.result = field(runs[i], "result", T::object, where, file);
    const std::string rw = where + "'s result";
    for (const char* key : {"samples_per_s", "test_acc", "loss_scale", "train_seconds"})
      MIXTAPE_CHECK(field(run.result, key, T::number_float, rw, file).is_number(), "'", file, "': ", rw, "'s \"", key,
                    "\" is null, not a number");
    field(run.result, "final_loss", T::number_float, rw, file);  // null: the last step's loss overflowed (JSON has no inf)
    for (const char* key : {"steps", "epochs", "peak_mem_bytes", "activation_bytes", "skipped_steps"})
      field(run.result, key, T::number_integer, rw, file);
    for (const char* key : {"context", "world_size"}) optional_field(run.result, key, T::number_integer, rw, file);
    for (const char* key : {"precision", "data", "cpu_kernel_counts"}) optional_field(run.result, key, T::string, rw, file);
    optional_field(run.result, "loss_scaling", T::boolean, rw, file);
    optional_field(run.result, "val_bpc", T::number_float, rw, file);
    const nlohmann::json& history = field(run.result, "history", T::array, rw, file);
    MIXTAPE_CHECK(!history.empty(), "'", file, "': ", rw, "'s history lists no epoch");
    for (const nlohmann::json& e : history) {
      MIXTAPE_CHECK(e.is_object(), "'", file, "': ", rw, "'s history holds a non-object");
      field(e, "epoch", T::number_integer, rw + "'s history", file);
      field(e, "test_acc", T::number_float, rw + "'s history", file);
      optional_field(e, "val_bpc", T::number_float, rw + "'s history", file);
    }
    if (const auto ops = run.result.find("amp_ops"); ops != run.result.end()) {
      MIXTAPE_CHECK(ops->is_array(), "'", file, "': ", rw, "'s amp_ops is not an array");
      for (const nlohmann::json& op : *ops) {
        MIXTAPE_CHECK(op.is_object(), "'", file, "': ", rw, "'s amp_ops holds a non-object");
        for (const char* key : {"casts", "bytes_cast", "cache_hits"}) field(op, key, T::number_integer, rw + "'s amp_ops", file);
        for (const char* key : {"op", "policy"}) optional_field(op, key, T::string, rw + "'s amp_ops", file);
        for (const auto& [dtype, calls] : field(op, "ran_in", T::object, rw + "'s amp_ops", file).items())
          MIXTAPE_CHECK(calls.is_number_integer(), "'", file, "': ", rw, "'s amp_ops ran_in[\"", dtype, "\"] is not a count");
      }
    }
    run.steps = read_steps_csv(fs::path(dir) / run.csv);
    const int64_t steps = run.result["steps"].get<int64_t>();
    MIXTAPE_CHECK(static_cast<int64_t>(run.steps.size()) == steps, "'", (fs::path(dir) / run.csv).string(), "' has ",
                  run.steps.size(), " steps but ", file, " says the ", run.precision, " run took ", steps,
                  "; the files are not from the same compare run");
    rec.runs.push_back(std::move(run));
  }
  return rec;
}

std::string verdict(const nlohmann::json& r, const nlohmann::json& b) {
  const std::string name = r.value("precision", "?"), base = b.value("precision", "?");
  std::vector<std::string> parts;
  const double speed = ratio(num(r, "samples_per_s"), num(b, "samples_per_s"));
  if (!std::isfinite(speed)) parts.push_back("speed not measured");
  else if (speed >= 1) parts.push_back(times(speed) + " faster");
  else parts.push_back(times(speed) + " the speed (slower)");
  parts.push_back(times(ratio(num(r, "activation_bytes"), num(b, "activation_bytes"))) + " activation memory");
  parts.push_back(times(ratio(num(r, "peak_mem_bytes"), num(b, "peak_mem_bytes"))) + " peak memory");
  if (is_text(r))
    parts.push_back("validation " + signed_number(num(r, "val_bpc") - num(b, "val_bpc"), 3) + " bits/char (" +
                    format("%.3f vs %.3f", num(r, "val_bpc"), num(b, "val_bpc")) + ")");
  else
    parts.push_back("accuracy " + signed_number(100.0 * (num(r, "test_acc") - num(b, "test_acc")), 2) + " pt (" +
                    format("%.2f%% vs %.2f%%", 100.0 * num(r, "test_acc"), 100.0 * num(b, "test_acc")) + ")");
  const int64_t skipped = r.value("skipped_steps", int64_t{0}), steps = std::max<int64_t>(r.value("steps", int64_t{1}), 1);
  if (skipped == 0) parts.push_back("no skipped steps");
  else parts.push_back(format("%lld skipped step%s (%.1f%%)", static_cast<long long>(skipped), skipped == 1 ? "" : "s",
                              100.0 * static_cast<double>(skipped) / static_cast<double>(steps)));
  std::string line = name + " vs " + base + ": ";
  for (size_t i = 0; i < parts.size(); ++i) line += (i ? ", " : "") + parts[i];
  return line;
}

namespace {
/// Runs `build`, turning a JSON type error (a field load_compare_record does not check, edited to another type)
/// into an Error that says so.
template <class F>
auto json_errors_named(F&& build) {
  try {
    return build();
  } catch (const nlohmann::json::exception& e) {
    throw Error(detail::cat("the comparison record (", kCompareRecordFile, ") has a field of an unexpected type: ", e.what()));
  }
}

std::string build_report_html(const CompareRecord& rec) {
  MIXTAPE_CHECK(!rec.runs.empty(), "the comparison holds no runs");
  const PanelData d(rec);
  const bool several = rec.runs.size() > 1, scaler = d.any_scaler();
  GnuplotJob job;
  // Each panel's script, drawn in one gnuplot run into its own SVG.
  std::vector<std::pair<std::string, std::string>> panels = {{"loss", loss_panel(job, d, true)}};
  if (several) panels.emplace_back("loss-difference", difference_panel(job, d));
  panels.emplace_back("accuracy", accuracy_panel(job, d));
  if (scaler) panels.emplace_back("loss-scale", scale_panel(job, d));
  panels.emplace_back("throughput", bar_panel(job, d, "samples_per_s", 1, "Training throughput",
                                               d.text ? "windows per second" : "samples per second", "samples/s"));
  panels.emplace_back("peak-memory", bar_panel(job, d, "peak_mem_bytes", 1 << 20, "Peak memory", "MiB", "peak memory"));
  panels.emplace_back("activation-memory",
                      bar_panel(job, d, "activation_bytes", 1 << 20, "Activation memory", "MiB", "activation memory"));
  std::string script;
  for (const auto& [name, body] : panels)
    script += "reset\nset terminal svg size 900,380 dynamic enhanced font 'Helvetica,12' background '#ffffff'\nset output " +
              gp_string(name + ".svg") + "\n" + body + "unset output\n";
  job.run(script);
  std::map<std::string, std::string> svg;
  for (const auto& [name, body] : panels) svg[name] = read_file(job.path(name + ".svg"));
  auto figure = [&](const std::string& name, const std::string& label, const std::string& caption) {
    return "<figure>\n" + inline_svg(svg.at(name), name, label) + "\n<figcaption>" + html_escape(caption) +
           "</figcaption>\n</figure>\n";
  };

  const nlohmann::json& base = rec.runs.front().result;
  const std::string model = rec.info["config"].value("model", "?");
  std::string precisions;
  for (const SavedRun& r : rec.runs) precisions += (precisions.empty() ? "" : ", ") + r.precision;
  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
     << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
     << "<meta name=\"generator\" content=\"mixtape " << html_escape(rec.info.value("mixtape_version", "?")) << "\">\n"
     << "<title>mixtape compare: " << html_escape(model) << " in " << html_escape(precisions) << "</title>\n"
     << "<style>\n" << kStyle << "</style>\n</head>\n<body>\n";
  os << "<header>\n<h1>mixtape compare: " << html_escape(model) << " in " << html_escape(precisions) << "</h1>\n"
     << "<p class=\"lead\">" << html_escape(rec.info["machine"].value("device", "?")) << ", "
     << html_escape(std::to_string(base.value("epochs", int64_t{0}))) << " epoch(s), baseline "
     << html_escape(rec.runs.front().precision) << "; " << html_escape(rec.info.value("created", "")) << "</p>\n</header>\n";

  os << "<section id=\"verdict\">\n<h2>Verdict</h2>\n";
  if (several) {
    os << "<ul class=\"verdict\">\n";
    for (size_t i = 1; i < rec.runs.size(); ++i)
      os << "<li data-precision=\"" << html_escape(rec.runs[i].precision) << "\">"
         << html_escape(verdict(rec.runs[i].result, base)) << "</li>\n";
    os << "</ul>\n<p class=\"note\">Computed from the numbers below: speed is training "
       << (d.text ? "windows" : "samples") << " per second, memory the device allocator's peak and the bytes a forward "
          "pass keeps for backward, "
       << (d.text ? "bits/char the validation loss after the last epoch (lower is better)"
                  : "accuracy the test accuracy after the last epoch, in percentage points")
       << ".</p>\n";
  } else {
    os << "<p>One precision only (" << html_escape(rec.runs.front().precision) << "): nothing to compare it with.</p>\n";
  }
  os << "</section>\n";

  os << "<section id=\"config\">\n<h2>Run</h2>\n" << config_table(rec) << "</section>\n";
  os << "<section id=\"summary\">\n<h2>Summary</h2>\n" << summary_table(rec, d.text)
     << "<p class=\"note\">Ratios are to " << html_escape(rec.runs.front().precision)
     << ". Peak memory: the most bytes tensors held on the device at once; activation memory: the bytes one forward "
        "pass keeps alive for backward (largest over the steps).</p>\n</section>\n";

  os << "<section id=\"loss\">\n<h2>Training loss</h2>\n"
     << figure("loss", "training loss per step by precision",
               (d.window > 1 ? "Per-step training loss, smoothed by a centred moving mean over " + std::to_string(d.window) +
                                   " steps (fewer at the ends); the raw per-step values faint behind."
                             : std::string("Per-step training loss (too few steps to smooth).")) +
                   " Same seed, weights and batches in every precision, so the curves differ by arithmetic only.")
     << "</section>\n";
  if (several)
    os << "<section id=\"loss-difference\">\n<h2>Difference from " << html_escape(d.baseline()) << "</h2>\n"
       << figure("loss-difference", "smoothed training loss minus the baseline's",
                 "Smoothed loss of each precision minus the smoothed " + d.baseline() +
                     " loss at the same step: above zero the lower precision trains worse.")
       << "</section>\n";
  os << "<section id=\"accuracy\">\n<h2>" << (d.text ? "Validation after each epoch" : "Accuracy after each epoch") << "</h2>\n"
     << figure("accuracy", d.text ? "validation bits per character per epoch" : "test accuracy per epoch",
               d.text ? "Validation loss in bits per character after each epoch (lower is better)."
                      : "Accuracy on the test images after each epoch.")
     << "</section>\n";
  os << "<section id=\"loss-scale\">\n<h2>Loss scale</h2>\n";
  if (scaler) {
    std::string counts;
    for (const SavedRun& r : rec.runs)
      if (r.result.value("loss_scaling", false))
        counts += (counts.empty() ? "" : "; ") + r.precision + ": " + std::to_string(r.result.value("skipped_steps", int64_t{0})) +
                  " skipped step(s) of " + std::to_string(r.result.value("steps", int64_t{0})) + ", final scale " +
                  format("%g", num(r.result, "loss_scale"));
    os << figure("loss-scale", "loss scale per step with skipped steps",
                 "The loss scale each step used (log2 axis); a marked step had inf/NaN gradients and was skipped, "
                 "halving the scale. " + counts + ".");
  } else {
    os << "<p>No run scaled its loss (by default only fp16 does; bf16 has float32's range).</p>\n";
  }
  os << "</section>\n";
  os << "<section id=\"throughput\">\n<h2>Throughput</h2>\n"
     << figure("throughput", "training throughput by precision",
               std::string("Training ") + (d.text ? "windows of " + std::to_string(base.value("context", int64_t{0})) + " characters" : "samples") +
                   " per second over all epochs (evaluation excluded); the label is the speedup over " + d.baseline() + ".")
     << "</section>\n";
  os << "<section id=\"peak-memory\">\n<h2>Peak memory</h2>\n"
     << figure("peak-memory", "peak memory by precision",
               "The most bytes tensors held on the device at once (weights, their compute copies, optimizer state, "
               "activations, gradients); the labels are the ratios to " + d.baseline() + ".")
     << "</section>\n";
  os << "<section id=\"activation-memory\">\n<h2>Activation memory</h2>\n"
     << figure("activation-memory", "activation memory by precision",
               "The bytes one forward pass keeps alive for backward (the largest over the steps): what a lower "
               "precision halves; the labels are the ratios to " + d.baseline() + ".")
     << "</section>\n";
  os << "<section id=\"amp\">\n<h2>What autocast did</h2>\n<p class=\"note\">Per op kind over the whole run: the policy "
        "(lower: computed in the lower precision; fp32: kept in float32; promote: the widest input dtype), the dtypes "
        "the calls ran in, the casts autocast inserted and the bytes they wrote, and the parameter casts served from "
        "the cast cache.</p>\n";
  bool any_lower = false;
  for (const SavedRun& r : rec.runs)
    if (r.precision != "fp32") {
      os << amp_table(r);
      any_lower = true;
    }
  if (!any_lower) os << "<p>Every run was fp32: autocast did not run.</p>\n";
  os << "</section>\n";
  os << "<footer>\n<p class=\"note\">Written by mixtape " << html_escape(rec.info.value("mixtape_version", "?"))
     << " from " << kCompareRecordFile;
  for (const SavedRun& r : rec.runs) os << ", " << html_escape(r.csv);
  os << "; plots by gnuplot. <code>mixtape report DIR</code> rebuilds this page from those files.</p>\n</footer>\n"
     << "</body>\n</html>\n";
  return os.str();
}

int draw_png(const CompareRecord& rec, const std::string& path) {
  const PanelData d(rec);
  GnuplotJob job;
  std::vector<std::string> panels = {loss_panel(job, d, true), accuracy_panel(job, d)};
  if (d.any_scaler()) panels.push_back(scale_panel(job, d));
  std::string script = format("set terminal pngcairo size 1000,%zu font 'sans,10' background '#ffffff'\nset output 'plot.png'\n"
                              "set multiplot layout %zu,1\n",
                              360 * panels.size(), panels.size());
  for (const std::string& p : panels) script += "reset\n" + p;
  script += "unset multiplot\nunset output\n";
  job.run(script);
  write_text_atomically(path, read_file(job.path("plot.png")), "plot");
  return 0;
}
}  // namespace

std::string report_html(const CompareRecord& rec) {
  return json_errors_named([&] { return build_report_html(rec); });
}

void write_report(const CompareRecord& record, const std::string& path) {
  write_text_atomically(path, report_html(record), "report");
}

void write_plot_png(const CompareRecord& rec, const std::string& path) {
  MIXTAPE_CHECK(!rec.runs.empty(), "the comparison holds no runs");
  json_errors_named([&] { return draw_png(rec, path); });
}


CLI::App* add_report_command(CLI::App& app, ReportOptions& o) {
  CLI::App* cmd = app.add_subcommand("report", "Rebuild the HTML comparison report from a saved `mixtape compare --out DIR`");
  cmd->footer(
      "Reads DIR/compare.json and the per-step CSVs that `mixtape compare --out DIR` wrote and writes the same\n"
      "self-contained HTML page `compare --report` writes (inline SVG plots by gnuplot, no scripts or network):\n"
      "the run's configuration, a computed verdict per precision, the summary table, training loss (smoothed, and\n"
      "its difference from the baseline), accuracy per epoch, the loss scale with skipped steps, throughput, memory\n"
      "and what autocast did per op. Needs gnuplot (Debian: gnuplot-nox).\n"
      "Example: mixtape compare --model mlp --epochs 3 --out runs/mlp\n"
      "         mixtape report runs/mlp --output mlp.html --plot mlp.png\n");
  cmd->add_option("DIR", o.dir, "The --out directory of a mixtape compare run")->required();
  cmd->add_option("--output,-o", o.output, "Where to write the page (default: DIR/report.html)");
  cmd->add_option("--plot", o.plot_path, "Also draw the loss, accuracy and loss-scale panels into this PNG");
  return cmd;
}

int run_report_command(const ReportOptions& o) {
  const CompareRecord rec = load_compare_record(o.dir);
  const std::string output = o.output.empty() ? (fs::path(o.dir) / "report.html").string() : o.output;
  check_output_path(output, "--output", OutputWrite::replace_by_rename);
  if (!o.plot_path.empty()) check_output_path(o.plot_path, "--plot", OutputWrite::replace_by_rename);
  write_report(rec, output);  // gnuplot is looked for before anything is written (GnuplotJob::run)
  std::cerr << "report written to " << output << " (" << fs::file_size(output) / 1024 << " KiB)\n";
  if (!o.plot_path.empty()) {
    write_plot_png(rec, o.plot_path);
    std::cerr << "plot drawn in " << o.plot_path << "\n";
  }
  return 0;
}

}  // namespace mixtape::app
