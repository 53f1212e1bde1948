#pragma once
// `mixtape bench`: training-step throughput per model, precision and batch size on synthetic data, GEMM GFLOP/s
// beside the machine's measured float32 FMA peak, peak and activation memory; with --vs-pytorch the same
// measurements by PyTorch (bench/torch_reference.py) in the same run, and the ratios.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mixtape::app {

/// One GEMM shape of the micro-benchmark: C (m x n) = A (m x k) B (k x n).
struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
};

/// Options of `mixtape bench` (the CLI flags).
struct BenchOptions {
  std::string device = "cpu";                                  ///< cpu, cuda or cuda:N
  int threads = 0;                                             ///< CPUs used (0: all this process may use)
  std::vector<std::string> models{"mlp", "cnn"};
  std::vector<std::string> precisions{"fp32", "fp16", "bf16"};
  std::vector<int64_t> batches{32, 128, 512};
  int warmup = 5;    ///< untimed steps before the timed ones (PyTorch needs a few to reach its pace)
  int steps = 10;    ///< timed steps per repeat
  int repeats = 3;   ///< timed repeats; the median is reported
  std::vector<std::string> gemm_shapes{"128x1024x1024", "1024x1024x1024", "2048x2048x2048"};  ///< MxNxK
  double gemm_seconds = 0.3;  ///< minimum time of one GEMM repeat
  bool train = true;          ///< run the training benchmarks
  bool gemm = true;           ///< run the GEMM micro-benchmarks
  bool quick = false;         ///< tiny sizes for a smoke test (seconds)
  bool json = false;          ///< one JSON object instead of the tables
  bool vs_pytorch = false;    ///< also run bench/torch_reference.py and print ratios
  std::string python;         ///< interpreter for --vs-pytorch (empty: /usr/bin/python3 when present, else python3)
  std::string torch_script;   ///< path of torch_reference.py (empty: the one in the source tree)
  std::string cpu_kernels;    ///< auto, onednn or eigen (core/cpu_kernels.h); empty: MIXTAPE_CPU_KERNELS, else auto
};

/// Parses "MxNxK" (e.g. "128x1024x1024"); throws mixtape::Error naming the text otherwise.
GemmShape parse_gemm_shape(const std::string& text);

/// Adds the `bench` subcommand, its options bound to `options` (--quick shrinks what was not given explicitly).
CLI::App* add_bench_command(CLI::App& app, BenchOptions& options);

/// Runs a parsed `bench`: tables on stdout (or one JSON object as the last stdout line); progress on stderr.
int run_bench_command(const BenchOptions& options);

/// Runs mixtape's side of the benchmark and returns its results (the fields bench/torch_reference.py prints).
nlohmann::json run_bench(const BenchOptions& options, std::ostream& log);

/// The human-readable tables of one framework's results.
std::string bench_table(const nlohmann::json& result);

/// Per model x precision x batch: mixtape/PyTorch samples/s and each framework's speedup over its own fp32;
/// per GEMM shape x dtype: the GFLOP/s ratio. Entries PyTorch could not run carry "pytorch": null.
nlohmann::json bench_ratios(const nlohmann::json& mixtape, const nlohmann::json& pytorch);

/// The ratio table of bench_ratios().
std::string ratio_table(const nlohmann::json& ratios, const nlohmann::json& pytorch);

}  // namespace mixtape::app
