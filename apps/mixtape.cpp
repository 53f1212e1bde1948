// The mixtape command-line tool.
//   mixtape info   what this build contains and what this machine offers
//   mixtape demo   trains a small MLP on synthetic 2-D spirals with the functional API
//   mixtape bench  training throughput, GEMM GFLOP/s and memory, optionally side by side with PyTorch
//   mixtape train, compare, report, sample: apps/train_command.h, compare_command.h, report.h, sample_command.h
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <numbers>
#include <string>
#include <thread>
#include <vector>

#include "apps/bench_command.h"
#include "apps/compare_command.h"
#include "apps/report.h"
#include "apps/sample_command.h"
#include "apps/train_command.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "dist/dist.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_simd.h"
#include "core/error.h"
#include "core/random.h"
#include "core/tensor.h"
#include "mixtape/build_info.h"

#ifdef MIXTAPE_WITH_CUDA
#include "cuda/cuda_runtime_info.h"
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MIXTAPE_X86 1
#endif

namespace {

using namespace mixtape;

// ------------------------------------------------------------------------------------------------
// mixtape info
// ------------------------------------------------------------------------------------------------

/// "yes"/"no".
const char* yes_no(bool b) { return b ? "yes" : "no"; }

/// "79.6 GiB".
[[maybe_unused]] std::string format_bytes(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

/// The processor's brand string (cpuid leaves 0x80000002..4), or "" when unknown.
std::string cpu_brand() {
#ifdef MIXTAPE_X86
  unsigned regs[12] = {};
  unsigned max_leaf = __get_cpuid_max(0x80000000u, nullptr);
  if (max_leaf < 0x80000004u) return "";
  for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  std::string s(reinterpret_cast<const char*>(regs), sizeof regs);
  s = s.c_str();  // stop at the first NUL
  const auto b = s.find_first_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b);
#else
  return "";
#endif
}

void print_cpu_info() {
  const std::string brand = cpu_brand();
  std::cout << "cpu:\n";
  if (!brand.empty()) std::cout << "  model         " << brand << "\n";
#ifdef MIXTAPE_X86
  __builtin_cpu_init();
  std::cout << "  features      AVX2 " << yes_no(__builtin_cpu_supports("avx2")) << ", AVX-512F "
            << yes_no(__builtin_cpu_supports("avx512f")) << ", AVX512-BF16 " << yes_no(__builtin_cpu_supports("avx512bf16"))
            << ", F16C " << yes_no(cpu::cpu_has_f16c()) << ", FMA " << yes_no(__builtin_cpu_supports("fma"))
            << "\n";
#else
  std::cout << "  features      (not an x86 CPU: AVX/F16C detection not applicable)\n";
#endif
  std::cout << "  threads       " << std::thread::hardware_concurrency() << " hardware threads; CPU kernels use "
            << cpu_threads() << " (OMP_NUM_THREADS, else the CPUs this process may run on; --threads), on "
            << parallel_runtime() << "\n";
  std::cout << "  oneDNN        " << onednn_description() << "\n";
  std::cout << "  MPI           " << mixtape::dist::description()
            << (mixtape::dist::mpi_built() ? " (mpirun -np N mixtape train ...: data-parallel training)" : "") << "\n";
  std::cout << "  NCCL          " << mixtape::dist::nccl_description() << "\n";
  std::cout << "  memory        "
            << (cpu::cpu_allocator_caches() ? "caching allocator: freed tensor memory is reused (MIXTAPE_CPU_CACHING=0: "
                                              "every tensor from the heap)"
                                            : "every tensor from the heap (MIXTAPE_CPU_CACHING=0 or a sanitizer build)")
            << "\n";
  std::cout << "  cpu kernels   " << cpu_kernels_name(cpu_kernels())
            << " (MIXTAPE_CPU_KERNELS=auto|onednn|eigen; auto: oneDNN matmul for f32 on AVX-512 and bf16 with"
               " AVX512-BF16, oneDNN convolution for f32 wherever it has a JIT kernel and for bf16 with AVX512-BF16)\n";
}

void print_cuda_info() {
  std::cout << "cuda:\n";
#ifdef MIXTAPE_WITH_CUDA
  std::string archs = MIXTAPE_CUDA_ARCHITECTURES;  // "80;90" -> "sm_80, sm_90"
  for (size_t p = 0; (p = archs.find(';', p)) != std::string::npos; p += 5) archs.replace(p, 1, ", sm_");
  std::cout << "  compiled for  sm_" << archs << " (" << MIXTAPE_CUDA_COMPILER << ")\n";
  // Library versions need no GPU; report a failure in place instead of aborting the whole report.
  auto version = [](auto&& get) -> std::string {
    try {
      return get();
    } catch (const std::exception& e) {
      return std::string("unavailable (") + e.what() + ")";
    }
  };
  std::cout << "  runtime       " << version(cuda::cuda_runtime_version_string) << "\n";
  std::cout << "  driver        " << version(cuda::cuda_driver_version_string) << "\n";
  std::cout << "  cuBLASLt      " << version(cuda::cublaslt_version_string) << "\n";
  std::cout << "  cuDNN         " << version(cuda::cudnn_version_string) << " (built against "
            << MIXTAPE_CUDNN_BUILD_VERSION << ")\n";
  const int n = cuda::device_count();
  if (n == 0) {
    std::cout << "  devices       none (" << cuda::no_device_reason() << ")\n";
    return;
  }
  std::cout << "  devices       " << n << "\n";
  for (int i = 0; i < n; ++i) {
    try {
      const cuda::DeviceInfo d = cuda::device_info(i);
      std::cout << "  cuda:" << i << "        " << d.name << ", compute capability " << d.major << "." << d.minor << ", "
                << d.sm_count << " SMs, " << format_bytes(d.total_mem) << "\n";
    } catch (const std::exception& e) {
      std::cout << "  cuda:" << i << "        unavailable (" << e.what() << ")\n";
    }
  }
#else
  std::cout << "  not compiled in (configure with -DMIXTAPE_CUDA=ON or AUTO on a machine with the CUDA toolkit)\n";
  std::cout << "  devices       none\n";
#endif
}

int run_info() {
  std::cout << "mixtape " << MIXTAPE_VERSION_STRING << "\n";
  std::cout << "build:\n";
  std::cout << "  type          " << MIXTAPE_BUILD_TYPE << "\n";
  std::cout << "  compiler      " << MIXTAPE_CXX_COMPILER << " (C++" << (__cplusplus / 100 % 100) << ")\n";
  std::cout << "  system        " << MIXTAPE_SYSTEM << "\n";
  std::cout << "  backends      cpu" << (MIXTAPE_BUILD_CUDA ? ", cuda" : "") << "\n";
  print_cuda_info();
  print_cpu_info();
  return 0;
}

// ------------------------------------------------------------------------------------------------
// mixtape demo
// ------------------------------------------------------------------------------------------------

struct DemoOptions {
  int steps = 500;
  double lr = 0.5;
  double momentum = 0.9;
  int hidden = 64;
  uint64_t seed = 0;
  int points = 100;  // per class
  int classes = 3;
  int log_every = 50;
  double min_accuracy = 0.0;
};

/// `classes` interleaved noisy spiral arms in the plane (x: (N, 2) f32, y: (N) i64), N = points * classes.
void make_spirals(const DemoOptions& o, Generator& gen, Tensor& x, Tensor& y) {
  const int64_t n = static_cast<int64_t>(o.points) * o.classes;
  const std::vector<float> noise = randn(Shape{n}, DType::f32, Device::cpu(), &gen, 0.0, 0.2).to_vector<float>();
  std::vector<float> xs(static_cast<size_t>(2 * n));
  std::vector<int64_t> ys(static_cast<size_t>(n));
  const double turn = 2.0 * std::numbers::pi / o.classes;
  for (int c = 0; c < o.classes; ++c) {
    for (int i = 0; i < o.points; ++i) {
      const size_t k = static_cast<size_t>(c) * o.points + i;
      const double r = static_cast<double>(i) / (o.points - 1);     // radius 0..1
      const double t = c * turn + 4.0 * r + noise[k];              // angle: one and a bit turns
      xs[2 * k] = static_cast<float>(r * std::sin(t));
      xs[2 * k + 1] = static_cast<float>(r * std::cos(t));
      ys[k] = c;
    }
  }
  x = from_vector(xs, Shape{n, 2});
  y = from_vector(ys, Shape{n});
}

/// Fraction of rows of logits (N, C) whose argmax is the label.
double accuracy(const Tensor& logits, const Tensor& labels) {
  const std::vector<int64_t> pred = argmax(logits, -1).to_vector<int64_t>();
  const std::vector<int64_t> truth = labels.to_vector<int64_t>();
  int64_t hits = 0;
  for (size_t i = 0; i < pred.size(); ++i) hits += pred[i] == truth[i];
  return pred.empty() ? 0.0 : static_cast<double>(hits) / static_cast<double>(pred.size());
}

int run_demo(const DemoOptions& o) {
  MIXTAPE_CHECK(o.steps >= 1, "demo: --steps must be at least 1, got ", o.steps);
  MIXTAPE_CHECK(o.hidden >= 1, "demo: --hidden must be at least 1, got ", o.hidden);
  MIXTAPE_CHECK(o.points >= 2, "demo: --points must be at least 2, got ", o.points);
  MIXTAPE_CHECK(o.classes >= 2, "demo: --classes must be at least 2, got ", o.classes);
  MIXTAPE_CHECK(o.lr > 0 && std::isfinite(o.lr), "demo: --lr must be a positive number, got ", o.lr);
  MIXTAPE_CHECK(o.momentum >= 0 && o.momentum < 1, "demo: --momentum must be in [0, 1), got ", o.momentum);

  Generator gen(o.seed);
  Tensor x, y;
  make_spirals(o, gen, x, y);

  // A 2-layer MLP: 2 -> hidden (ReLU) -> classes, He-initialised, float32.
  const int64_t h = o.hidden, c = o.classes;
  Tensor w1 = randn(Shape{2, h}, DType::f32, Device::cpu(), &gen, 0.0, std::sqrt(2.0 / 2.0));
  Tensor b1 = zeros(Shape{h});
  Tensor w2 = randn(Shape{h, c}, DType::f32, Device::cpu(), &gen, 0.0, std::sqrt(2.0 / static_cast<double>(h)));
  Tensor b2 = zeros(Shape{c});
  std::vector<Tensor> params = {w1, b1, w2, b2};
  std::vector<Tensor> velocity;
  for (Tensor& p : params) {
    p.set_requires_grad(true);
    velocity.push_back(zeros_like(p));
  }
  auto forward = [&](const Tensor& input) { return add(matmul(relu(add(matmul(input, w1), b1)), w2), b2); };

  std::cout << "demo: " << o.classes << "-class spirals, " << x.size(0) << " points, MLP 2-" << h << "-" << c
            << ", SGD lr " << o.lr << " momentum " << o.momentum << ", " << o.steps << " full-batch steps, seed "
            << o.seed << "\n";
  const auto t0 = std::chrono::steady_clock::now();
  double last_loss = 0.0;
  for (int step = 1; step <= o.steps; ++step) {
    Tensor logits = forward(x);
    Tensor loss = cross_entropy(logits, y);
    backward(loss);
    last_loss = loss.item();
    MIXTAPE_CHECK(std::isfinite(last_loss), "demo: the loss became ", last_loss, " at step ", step,
                  " (the learning rate ", o.lr, " is too large; try a smaller --lr)");
    {
      NoGradGuard no_grad;  // the update is not part of the model
      for (size_t i = 0; i < params.size(); ++i) {
        velocity[i].copy_(velocity[i] * o.momentum + params[i].grad());  // v = m v + g
        params[i].copy_(params[i] - velocity[i] * o.lr);                 // p = p - lr v
      }
    }
    zero_grad(params);
    if (step == 1 || step % std::max(1, o.log_every) == 0 || step == o.steps) {
      std::printf("step %5d  loss %.4f\n", step, last_loss);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  double acc = 0.0;
  {
    NoGradGuard no_grad;
    acc = accuracy(forward(x), y);
  }
  std::printf("final loss %.4f, training accuracy %.1f%% (%d steps in %.2f s)\n", last_loss, 100.0 * acc, o.steps,
              seconds);
  if (acc < o.min_accuracy) {
    std::fprintf(stderr, "mixtape demo: training accuracy %.1f%% is below --min-accuracy %.1f%%\n", 100.0 * acc,
                 100.0 * o.min_accuracy);
    return 1;
  }
  return 0;
}

}  // namespace

namespace {
/// Reports an error ("mixtape: error on rank R of N: ..." when several ranks train together) in one write, so that
/// an MPI launcher forwards the whole line, then ends every rank at once when there are several (the others would
/// wait for this one in their next collective). Returns `code` in a world of one.
int fail(const char* kind, const char* what, int code) {
  const int world = mixtape::dist::world_size();
  const std::string where =
      world > 1 ? " on rank " + std::to_string(mixtape::dist::rank()) + " of " + std::to_string(world) : "";
  const std::string line = std::string("mixtape: ") + kind + where + ": " + what + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  if (world > 1) mixtape::dist::abort_all(code);
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mixtape " MIXTAPE_VERSION_STRING
               ": a C++20 training framework for automatic mixed precision (float16/bfloat16 where safe, "
               "float32 where not).",
               "mixtape"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("mixtape ") + MIXTAPE_VERSION_STRING);
  app.footer("Run 'mixtape <command> --help' for the options of a command.\n");

  app.add_subcommand("info", "Show the build (version, compiler, backends) and this machine (GPUs, CPU features)")
      ->footer(
          "Prints the version, build type, compiler and the backends compiled in; for CUDA the architectures\n"
          "compiled for, the runtime, driver, cuBLASLt and cuDNN versions and each GPU (name, compute capability,\n"
          "SMs, memory) or 'none' with the reason; for the CPU its model, the features the kernels care about\n"
          "(AVX2, AVX-512F, AVX512-BF16, F16C, FMA) and the number of hardware threads.\n");

  const CLI::Validator positive(
      [](std::string& s) -> std::string {
        try {
          size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && v > 0 && std::isfinite(v)) return "";
        } catch (const std::exception&) {
        }
        return "expected a positive number, got '" + s + "'";
      },
      "POSITIVE");
  DemoOptions demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "Train a small MLP on synthetic 2-D spirals (about a second on a CPU)");
  demo_cmd->footer(
      "Trains a 2-layer MLP (2 -> hidden -> classes, ReLU, float32) on noisy interleaved spiral arms with\n"
      "full-batch SGD with momentum, written with the differentiable functional API (matmul, add, relu,\n"
      "cross_entropy, backward) and a hand-written update under NoGradGuard. Prints the loss every --log-every\n"
      "steps and the final training accuracy (about 99% with the defaults).\n");
  demo_cmd->add_option("--steps", demo.steps, "Number of training steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  demo_cmd->add_option("--lr", demo.lr, "SGD learning rate")->capture_default_str()->check(positive);
  demo_cmd->add_option("--momentum", demo.momentum, "SGD momentum, in [0, 1)")->capture_default_str()->check(CLI::Range(0.0, 0.999999));
  demo_cmd->add_option("--hidden", demo.hidden, "Width of the hidden layer")->capture_default_str()->check(CLI::Range(1, 65536));
  demo_cmd->add_option("--seed", demo.seed, "Seed of the data set and of the initial weights")->capture_default_str();
  demo_cmd->add_option("--points", demo.points, "Points per class")->capture_default_str()->check(CLI::Range(2, 1000000));
  demo_cmd->add_option("--classes", demo.classes, "Number of spiral arms (classes)")->capture_default_str()->check(CLI::Range(2, 100));
  demo_cmd->add_option("--log-every", demo.log_every, "Print the loss every N steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  demo_cmd->add_option("--min-accuracy", demo.min_accuracy,
                       "Exit with status 1 when the final training accuracy is below this fraction (for scripts)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));

  mixtape::app::TrainConfig train_config;
  bool train_json = false;
  mixtape::app::add_train_command(app, train_config, train_json);
  mixtape::app::CompareOptions compare_options;
  mixtape::app::add_compare_command(app, compare_options);
  mixtape::app::BenchOptions bench_options;
  mixtape::app::add_bench_command(app, bench_options);
  mixtape::app::SampleOptions sample_options;
  mixtape::app::add_sample_command(app, sample_options);
  mixtape::app::ReportOptions report_options;
  mixtape::app::add_report_command(app, report_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // prints the message (or the help) and returns its exit code (0 for --help)
  }

  try {
    // Under an MPI launcher (mpirun -np N mixtape train ...) the ranks find each other here; otherwise a world of
    // one process, with nothing started.
    if (app.got_subcommand("train") || app.got_subcommand("compare")) mixtape::dist::init();
    if (app.got_subcommand("info")) return run_info();
    if (app.got_subcommand("demo")) return run_demo(demo);
    if (app.got_subcommand("train")) return mixtape::app::run_train_command(train_config, train_json);
    if (app.got_subcommand("compare")) return mixtape::app::run_compare_command(compare_options);
    if (app.got_subcommand("bench")) return mixtape::app::run_bench_command(bench_options);
    if (app.got_subcommand("sample")) return mixtape::app::run_sample_command(sample_options);
    if (app.got_subcommand("report")) return mixtape::app::run_report_command(report_options);
  } catch (const mixtape::Error& e) {
    return fail("error", e.what(), 1);
  } catch (const std::exception& e) {
    return fail("internal error", e.what(), 2);
  }
  return 0;
}
