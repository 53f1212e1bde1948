#include "apps/bench_command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "apps/bench_machine.h"
#include "apps/models.h"
#include "apps/tasks.h"
#include "apps/trainer.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/backend.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "mixtape/build_info.h"
#include "optim/optimizer.h"

#ifdef MIXTAPE_WITH_CUDA
#include "cuda/cuda_runtime_info.h"
#endif

#ifndef MIXTAPE_TORCH_REFERENCE
#define MIXTAPE_TORCH_REFERENCE "bench/torch_reference.py"
#endif

namespace mixtape::app {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

/// The device to benchmark on, with a clear error when it is a GPU this build or machine does not have.
Device bench_device(const std::string& name) {
  const Device d = Device::parse(name);
  if (d.type == Device::Type::cuda && !device_available(d)) {
#ifdef MIXTAPE_WITH_CUDA
    const std::string why = cuda::device_count() == 0 ? cuda::no_device_reason()
                                                      : detail::cat(cuda::device_count(), " device(s) found");
    throw Error(detail::cat("bench --device ", name, ": no such CUDA device on this machine (", why,
                            "); run with --device cpu"));
#else
    throw Error(detail::cat("bench --device ", name,
                            ": this build has no CUDA backend (configure with -DMIXTAPE_CUDA=ON on a machine with the "
                            "CUDA toolkit); run with --device cpu"));
#endif
  }
  backend_for(d);  // any other unavailability, with the backend's own message
  return d;
}

/// CPU seconds this process has used, all threads together: on a loaded machine the wall-clock rate mostly
/// measures the load, the rate per CPU-second less so.
double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Waits for the device's queued work: reading one number back does (a no-op wait on the CPU).
void sync(const Tensor& t) { (void)kernels::reduce(ReduceOp::sum, t, {}, false).item(); }

/// Training-step throughput of one model x precision x batch on synthetic data of Fashion-MNIST's shape.
json bench_train(const std::string& model_name, const std::string& precision, int64_t batch, Device device,
                 const BenchOptions& o) {
  const DType lower = precision_dtype(precision);
  manual_seed(0);
  // The gpt at `mixtape train --model gpt`'s defaults, over the default corpus's 101 characters; a sample is a
  // window of 64 ids.
  const bool gpt = is_text_model(model_name);
  constexpr int64_t kGptVocab = 101;
  const TrainConfig gpt_config;
  std::shared_ptr<nn::Module> model = gpt ? make_gpt(gpt_config, kGptVocab) : make_model(model_name);
  model->to(device);
  model->train();
  optim::Adam opt(model->parameters(), optim::AdamOptions{.lr = 1e-3});
  amp::GradScaler scaler(opt, amp::GradScalerOptions{.enabled = lower == DType::f16, .max_consecutive_skips = 100});
  // A few batches of (N, 784) pixels in [0, 1) and labels 0..9, cycled (data loading is not what is measured).
  constexpr int kBatches = 4;
  Generator gen(1);
  std::mt19937_64 label_rng(2);
  std::vector<Tensor> xs, ys;
  for (int i = 0; i < kBatches; ++i) {
    if (gpt) {
      const int64_t t = gpt_config.context;
      std::vector<int64_t> ids(static_cast<size_t>(batch * t)), next(ids.size());
      for (auto& v : ids) v = static_cast<int64_t>(label_rng() % kGptVocab);
      for (auto& v : next) v = static_cast<int64_t>(label_rng() % kGptVocab);
      xs.push_back(from_vector(ids, Shape{batch, t}).to(device));
      ys.push_back(from_vector(next, Shape{batch * t}).to(device));
      continue;
    }
    xs.push_back(rand(Shape{batch, 784}, DType::f32, Device::cpu(), &gen).to(device));
    std::vector<int64_t> labels(static_cast<size_t>(batch));
    for (auto& l : labels) l = static_cast<int64_t>(label_rng() % 10);
    ys.push_back(from_vector(labels, Shape{batch}).to(device));
  }
  reset_peak_memory(device);
  int64_t activation_bytes = 0, step_index = 0;
  Tensor loss;
  auto step = [&] {
    const Tensor& x = xs[static_cast<size_t>(step_index % kBatches)];
    const Tensor& y = ys[static_cast<size_t>(step_index % kBatches)];
    ++step_index;
    const int64_t held_before = memory_stats(device).current_bytes;
    {
      std::optional<amp::Autocast> autocast;
      if (lower != DType::f32) autocast.emplace(device, lower);
      const Tensor out = model->forward(x);
      loss = cross_entropy(gpt ? reshape(out, Shape{y.size(0), out.size(-1)}) : out, y);
    }
    activation_bytes = std::max(activation_bytes, memory_stats(device).current_bytes - held_before);
    opt.zero_grad();
    backward(scaler.scale(loss));
    scaler.step();
    scaler.update();
  };
  for (int i = 0; i < o.warmup; ++i) step();
  if (o.warmup > 0) (void)loss.item();
  const int64_t allocs_before = memory_stats(device).allocations;
  const int64_t raw_before = memory_stats(device).raw_allocations;
  const int64_t flops_before = kernels::matmul_flops();
  std::vector<double> rates, cpu_rates;
  for (int r = 0; r < o.repeats; ++r) {
    const auto t0 = Clock::now();
    const double c0 = process_cpu_seconds();
    for (int s = 0; s < o.steps; ++s) step();
    (void)loss.item();  // on a GPU: waits for the queued steps
    rates.push_back(static_cast<double>(batch) * o.steps / seconds_since(t0));
    cpu_rates.push_back(static_cast<double>(batch) * o.steps / std::max(process_cpu_seconds() - c0, 1e-9));
  }
  const double sps = median(rates);
  const double step_gflop =
      1e-9 * static_cast<double>(kernels::matmul_flops() - flops_before) / std::max(1, o.repeats * o.steps);
  const double final_loss = loss.item();
  MIXTAPE_CHECK(std::isfinite(final_loss) || scaler.skipped_steps() > 0, "bench: ", model_name, " in ", precision,
                " at batch ", batch, " produced a non-finite loss (", final_loss, ")");
  return {{"model", model_name},
          {"precision", precision},
          {"batch", batch},
          {"supported", true},
          {"samples_per_s", sps},
          {"repeat_samples_per_s", rates},
          {"step_ms", 1e3 * static_cast<double>(batch) / sps},
          {"step_gflop", step_gflop},  // of its matrix products and convolutions
          {"gflops", step_gflop * sps / static_cast<double>(batch)},
          {"samples_per_cpu_s", median(cpu_rates)},
          {"peak_mem_bytes", memory_stats(device).peak_bytes},
          {"activation_bytes", activation_bytes},
          {"allocs_per_step", static_cast<double>(memory_stats(device).allocations - allocs_before) /
                                  std::max(1, o.repeats * o.steps)},
          // from the system (heap, cudaMalloc): 0 in a steady state served by a caching allocator
          {"raw_allocs_per_step", static_cast<double>(memory_stats(device).raw_allocations - raw_before) /
                                      std::max(1, o.repeats * o.steps)},
          {"final_loss", final_loss},
          {"skipped_steps", scaler.skipped_steps()}};
}

/// GFLOP/s of C = A B in one dtype: the median of `repeats` runs of at least `seconds` each.
json bench_gemm(const GemmShape& s, DType dtype, Device device, const BenchOptions& o) {
  const Tensor a = randn(Shape{s.m, s.k}, dtype, device), b = randn(Shape{s.k, s.n}, dtype, device);
  sync(kernels::matmul(a, b));  // warm-up: scratch buffers, threads, library handles
  const double flop = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
  std::vector<double> rates;
  for (int r = 0; r < std::max(o.repeats, 1); ++r) {
    int64_t iters = 0;
    const auto t0 = Clock::now();
    double sec = 0;
    Tensor c;
    do {
      c = kernels::matmul(a, b);
      ++iters;
      if (iters % 8 == 0 || seconds_since(t0) >= o.gemm_seconds) {
        sync(c);
        sec = seconds_since(t0);
      }
    } while (sec < o.gemm_seconds);
    rates.push_back(flop * static_cast<double>(iters) / sec * 1e-9);
  }
  json r = {{"m", s.m}, {"n", s.n}, {"k", s.k}, {"dtype", dtype_name(dtype)}, {"gflops", median(rates)},
            {"repeat_gflops", rates}};
  if (device.type == Device::Type::cpu) r["impl"] = last_cpu_gemm_impl();  // oneDNN's name for it, or eigen
  return r;
}

/// "a" with single quotes for sh.
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

/// Runs bench/torch_reference.py with the same sizes and thread count; its JSON, or {"error": why}.
json run_torch_reference(const BenchOptions& o, int threads) {
  const std::string python = !o.python.empty()               ? o.python
                             : ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3"
                                                                        : "python3";
  const std::string script = o.torch_script.empty() ? MIXTAPE_TORCH_REFERENCE : o.torch_script;
  if (::access(script.c_str(), R_OK) != 0)
    return {{"error", "the PyTorch runner " + script + " was not found (give its path with --torch-script)"}};
  std::vector<std::string> batches;
  for (int64_t b : o.batches) batches.push_back(std::to_string(b));
  // OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS down on this kind of machine: unset for PyTorch only.
  std::ostringstream cmd;
  cmd << "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " << shell_quote(python) << " " << shell_quote(script)
      << " --device " << shell_quote(o.device) << " --threads " << threads << " --models " << shell_quote(join(o.models))
      << " --precisions " << shell_quote(join(o.precisions)) << " --batches " << shell_quote(join(batches))
      << " --warmup " << o.warmup << " --steps " << o.steps << " --repeats " << o.repeats << " --gemm-shapes "
      << shell_quote(join(o.gemm_shapes)) << " --gemm-seconds " << o.gemm_seconds << (o.train ? "" : " --no-train")
      << (o.gemm ? "" : " --no-gemm");
  FILE* pipe = ::popen(cmd.str().c_str(), "r");
  if (!pipe) return {{"error", "could not start " + python}};
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  // The result is the last line that is a JSON object.
  std::istringstream lines(out);
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty() && line.front() == '{') last = line;
  if (!last.empty()) {
    try {
      return json::parse(last);
    } catch (const json::exception& e) {
      return {{"error", std::string("the PyTorch runner printed unreadable JSON: ") + e.what()}};
    }
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {{"error", detail::cat(python, " ", script, " printed no result (exit status ", code,
                                code == 127 ? ": the interpreter was not found" : "",
                                "); is PyTorch installed for that interpreter? (Debian: python3-torch)")}};
}

const json* find_run(const json& runs, const json& like) {
  for (const json& r : runs)
    if (r["model"] == like["model"] && r["precision"] == like["precision"] && r["batch"] == like["batch"]) return &r;
  return nullptr;
}

/// samples/s of a supported run, or null.
json rate_of(const json* r) {
  if (!r || !r->value("supported", false) || !(*r)["samples_per_s"].is_number()) return nullptr;
  return (*r)["samples_per_s"];
}

json ratio(const json& a, const json& b) {
  if (!a.is_number() || !b.is_number() || b.get<double>() <= 0) return nullptr;
  return a.get<double>() / b.get<double>();
}

std::string fmt(const json& v, int precision, const char* suffix = "") {
  if (!v.is_number()) return "-";
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision) << v.get<double>() << suffix;
  return os.str();
}

/// Bytes in MiB, or null when not measured (PyTorch on the CPU).
json mib(const json& v) { return v.is_number() ? json(v.get<double>() / (1 << 20)) : json(); }

}  // namespace

GemmShape parse_gemm_shape(const std::string& text) {
  GemmShape s;
  char x1 = 0, x2 = 0;
  std::istringstream in(text);
  long long m = 0, n = 0, k = 0;
  in >> m >> x1 >> n >> x2 >> k;
  MIXTAPE_CHECK(in && in.peek() == EOF && x1 == 'x' && x2 == 'x' && m > 0 && n > 0 && k > 0,
                "--gemm-shapes: expected MxNxK with positive sizes (e.g. 128x1024x1024), got '", text, "'");
  s.m = m;
  s.n = n;
  s.k = k;
  return s;
}

json run_bench(const BenchOptions& o, std::ostream& log) {
  MIXTAPE_CHECK(o.steps >= 1 && o.repeats >= 1 && o.warmup >= 0, "bench: --steps and --repeats must be at least 1 and "
                "--warmup at least 0, got ", o.steps, ", ", o.repeats, ", ", o.warmup);
  for (const auto& s : o.gemm_shapes) parse_gemm_shape(s);  // fail before measuring anything
  for (const auto& p : o.precisions) precision_dtype(p);
  for (const auto& m : o.models)
    if (!is_text_model(m)) make_model(m);
  if (!o.cpu_kernels.empty()) set_cpu_kernels(parse_cpu_kernels(o.cpu_kernels));
  const Device device = bench_device(o.device);
  const int threads = restrict_to_cpus(o.threads);
  set_cpu_threads(threads);  // the CPU GEMM splits its work into this many blocks
  const CpuFeatures f = cpu_features();

  json machine = {{"cpu", f.model},         {"avx2", f.avx2},       {"fma", f.fma},
                  {"f16c", f.f16c},         {"avx512f", f.avx512f}, {"avx512_bf16", f.avx512_bf16},
                  {"hardware_threads", std::thread::hardware_concurrency()},
                  {"cpu_kernels", cpu_kernels_name(cpu_kernels())}, {"onednn", onednn_description()}};
  if (device.type == Device::Type::cpu) {
    log << "bench: measuring the FMA peak on " << threads << " thread(s)\n" << std::flush;
    const PeakRates p = measure_peak(threads, o.quick ? 0.05 : 0.5);
    machine["f32_peak_gflops"] = p.f32_gflops;
    machine["peak_vector_bits"] = p.vector_bits;
    if (f.avx512_bf16) {
      machine["bf16_peak_gflops"] = p.bf16_gflops;
      machine["bf16_peak_note"] = "measured with vdpbf16ps (AVX512-BF16)";
    } else {
      machine["bf16_peak_gflops"] = nullptr;
      machine["bf16_peak_note"] = detail::cat(
          "no AVX512-BF16 on this CPU: bf16 GEMMs widen to float32, so their peak is the float32 peak (with AVX512-BF16 "
          "vdpbf16ps would give about 2x the AVX-512 float32 rate)");
    }
  }

  json result = {{"framework", "mixtape"},
                 {"version", MIXTAPE_VERSION_STRING},
                 {"device", device.to_string()},
                 {"threads", threads},
                 {"machine", machine},
                 {"config",
                  {{"warmup", o.warmup}, {"steps", o.steps}, {"repeats", o.repeats}, {"optimizer", "adam"}, {"lr", 1e-3},
                   {"data", "synthetic: (N, 784) uniform [0, 1) pixels, labels 0..9; gpt: windows of 64 ids of 101"}}},
                 {"train", json::array()},
                 {"gemm", json::array()}};
  if (o.train) {
    for (const auto& m : o.models)
      for (const auto& p : o.precisions)
        for (int64_t b : o.batches) {
          json r = bench_train(m, p, b, device, o);
          log << "bench: " << m << " " << p << " batch " << b << ": " << fmt(r["samples_per_s"], 0) << " samples/s\n"
              << std::flush;
          result["train"].push_back(std::move(r));
        }
  }
  if (o.gemm) {
    for (const auto& text : o.gemm_shapes) {
      const GemmShape s = parse_gemm_shape(text);
      for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
        json g = bench_gemm(s, dt, device, o);
        if (machine.contains("f32_peak_gflops")) g["f32_peak_fraction"] = g["gflops"].get<double>() / machine["f32_peak_gflops"].get<double>();
        log << "bench: gemm " << text << " " << dtype_name(dt) << ": " << fmt(g["gflops"], 1) << " GFLOP/s\n" << std::flush;
        result["gemm"].push_back(std::move(g));
      }
    }
    // Each step's floor: its matrix-product and convolution FLOPs at the best GEMM rate measured for its
    // precision's dtype (what the step would take if all it did were those products, as fast as a plain GEMM).
    for (json& t : result["train"]) {
      if (!t.value("supported", false) || !t.contains("step_gflop")) continue;
      const std::string dt = dtype_name(precision_dtype(t["precision"].get<std::string>()));
      double best = 0;
      for (const json& g : result["gemm"])
        if (g.value("dtype", std::string()) == dt && g.value("supported", true)) best = std::max(best, g["gflops"].get<double>());
      if (best <= 0) continue;
      t["gemm_peak_gflops"] = best;
      t["floor_ms"] = 1e3 * t["step_gflop"].get<double>() / best;
      t["vs_floor"] = t["step_ms"].get<double>() / t["floor_ms"].get<double>();
    }
  }
  return result;
}

std::string bench_table(const json& r) {
  std::ostringstream os;
  os << r.value("framework", "?") << " " << r.value("version", "") << " on " << r.value("device", "?") << ", "
     << r.value("threads", 0) << " thread(s)";
  if (r.contains("machine")) {
    const json& m = r["machine"];
    auto yn = [&](const char* k) { return m.value(k, false) ? "yes" : "no"; };
    if (m.contains("cpu")) {
      os << "\ncpu: " << m.value("cpu", std::string("?")) << " (" << m.value("hardware_threads", 0)
         << " hardware threads; AVX2 " << yn("avx2") << ", FMA " << yn("fma") << ", F16C " << yn("f16c") << ", AVX-512F "
         << yn("avx512f") << ", AVX512-BF16 " << yn("avx512_bf16") << ")";
    }
    if (m.contains("cpu_kernels"))
      os << "\ncpu kernels: " << m.value("cpu_kernels", std::string("?")) << " (" << m.value("onednn", std::string()) << ")";
    if (m.contains("f32_peak_gflops")) {
      os << "\npeak: float32 FMA " << fmt(m["f32_peak_gflops"], 1) << " GFLOP/s measured (" << m.value("peak_vector_bits", 0)
         << "-bit, " << r.value("threads", 0) << " thread(s)); bf16: ";
      if (m["bf16_peak_gflops"].is_number()) os << fmt(m["bf16_peak_gflops"], 1) << " GFLOP/s, ";
      os << m.value("bf16_peak_note", std::string());
    }
  }
  os << "\n";
  if (r.contains("train") && !r["train"].empty()) {
    const json& c = r.value("config", json::object());
    os << "\ntraining step (Adam lr 1e-3, synthetic 28x28 data; median of " << c.value("repeats", 0) << " x "
       << c.value("steps", 0) << " timed steps after " << c.value("warmup", 0) << " warm-up)\n";
    os << std::left << std::setw(6) << "model" << std::setw(10) << "precision" << std::right << std::setw(6) << "batch"
       << std::setw(11) << "samples/s" << std::setw(9) << "vs fp32" << std::setw(11) << "per CPU-s" << std::setw(10) << "step ms" << std::setw(10)
       << "peak MiB" << std::setw(9) << "act MiB" << std::setw(12) << "allocs/step" << std::setw(10) << "heap/step" << std::setw(11) << "GFLOP/step"
       << std::setw(9) << "GFLOP/s" << std::setw(10) << "floor ms" << std::setw(9) << "x floor" << "\n";
    for (const json& t : r["train"]) {
      json base = nullptr;
      for (const json& u : r["train"])
        if (u["model"] == t["model"] && u["batch"] == t["batch"] && u["precision"] == "fp32") base = rate_of(&u);
      os << std::left << std::setw(6) << t.value("model", std::string()) << std::setw(10)
         << t.value("precision", std::string()) << std::right << std::setw(6) << t.value("batch", 0);
      if (!t.value("supported", false)) {
        os << "  unsupported: " << t.value("reason", std::string()) << "\n";
        continue;
      }
      os << std::setw(11) << fmt(t["samples_per_s"], 0) << std::setw(9) << fmt(ratio(t["samples_per_s"], base), 2, "x")
         << std::setw(11) << fmt(t.value("samples_per_cpu_s", json()), 0) << std::setw(10) << fmt(t["step_ms"], 1) << std::setw(10) << fmt(mib(t["peak_mem_bytes"]), 1)
         << std::setw(9) << fmt(mib(t["activation_bytes"]), 1) << std::setw(12) << fmt(t["allocs_per_step"], 0)
         << std::setw(10) << fmt(t.value("raw_allocs_per_step", json()), 1) << std::setw(11) << fmt(t.value("step_gflop", json()), 3) << std::setw(9) << fmt(t.value("gflops", json()), 0)
         << std::setw(10) << fmt(t.value("floor_ms", json()), 1) << std::setw(9) << fmt(t.value("vs_floor", json()), 2, "x")
         << "\n";
    }
  }
  if (r.contains("gemm") && !r["gemm"].empty()) {
    os << "\nGEMM C = A B (row-major), median GFLOP/s\n"
       << std::setw(6) << "m" << std::setw(6) << "n" << std::setw(6) << "k" << "  " << std::left << std::setw(6) << "dtype"
       << std::right << std::setw(10) << "GFLOP/s" << std::setw(12) << "of f32 peak" << "  implementation\n";
    for (const json& g : r["gemm"]) {
      os << std::setw(6) << g.value("m", 0) << std::setw(6) << g.value("n", 0) << std::setw(6) << g.value("k", 0) << "  "
         << std::left << std::setw(6) << g.value("dtype", std::string()) << std::right;
      if (!g.value("supported", true)) {
        os << "  unsupported: " << g.value("reason", std::string()) << "\n";
        continue;
      }
      const json frac = g.contains("f32_peak_fraction") ? json(100.0 * g["f32_peak_fraction"].get<double>()) : json();
      os << std::setw(10) << fmt(g["gflops"], 1) << std::setw(12) << fmt(frac, 0, "%") << "  "
         << g.value("impl", std::string()) << "\n";
    }
  }
  return os.str();
}

json bench_ratios(const json& mixtape, const json& pytorch) {
  json out = {{"train", json::array()}, {"gemm", json::array()}};
  const json empty = json::array();
  const json& mt = mixtape.contains("train") ? mixtape["train"] : empty;
  const json& pt = pytorch.contains("train") ? pytorch["train"] : empty;
  for (const json& t : mt) {
    const json* p = find_run(pt, t);
    json mbase = nullptr, pbase = nullptr;
    json fp32 = t;
    fp32["precision"] = "fp32";
    mbase = rate_of(find_run(mt, fp32));
    pbase = rate_of(find_run(pt, fp32));
    const json m_rate = rate_of(&t), p_rate = rate_of(p);
    out["train"].push_back({{"model", t["model"]},
                            {"precision", t["precision"]},
                            {"batch", t["batch"]},
                            {"mixtape", m_rate},
                            {"pytorch", p_rate},
                            {"ratio", ratio(m_rate, p_rate)},
                            {"ratio_per_cpu_s", p ? ratio(t.value("samples_per_cpu_s", json()),
                                                          p->value("samples_per_cpu_s", json()))
                                                  : json()},
                            {"mixtape_amp_speedup", ratio(m_rate, mbase)},
                            {"pytorch_amp_speedup", ratio(p_rate, pbase)}});
  }
  const json& mg = mixtape.contains("gemm") ? mixtape["gemm"] : empty;
  const json& pg = pytorch.contains("gemm") ? pytorch["gemm"] : empty;
  for (const json& g : mg) {
    json p_rate = nullptr;
    for (const json& h : pg)
      if (h["m"] == g["m"] && h["n"] == g["n"] && h["k"] == g["k"] && h["dtype"] == g["dtype"] &&
          h.value("supported", true))
        p_rate = h["gflops"];
    out["gemm"].push_back({{"m", g["m"]}, {"n", g["n"]}, {"k", g["k"]}, {"dtype", g["dtype"]}, {"mixtape", g["gflops"]},
                           {"pytorch", p_rate}, {"ratio", ratio(g["gflops"], p_rate)}});
  }
  return out;
}

std::string ratio_table(const json& ratios, const json& pytorch) {
  std::ostringstream os;
  os << "\nmixtape vs PyTorch " << pytorch.value("version", std::string("?")) << " (same run, same threads, models, "
     << "batches, Adam and data shape)\n";
  if (!ratios["train"].empty()) {
    os << std::left << std::setw(6) << "model" << std::setw(10) << "precision" << std::right << std::setw(6) << "batch"
       << std::setw(10) << "mixtape" << std::setw(10) << "pytorch" << std::setw(8) << "ratio" << std::setw(11)
       << "per CPU-s" << std::setw(13) << "AMP mixtape" << std::setw(13) << "AMP pytorch" << "\n";
    for (const json& t : ratios["train"])
      os << std::left << std::setw(6) << t["model"].get<std::string>() << std::setw(10)
         << t["precision"].get<std::string>() << std::right << std::setw(6) << t["batch"].get<int64_t>() << std::setw(10)
         << fmt(t["mixtape"], 0) << std::setw(10) << fmt(t["pytorch"], 0) << std::setw(8) << fmt(t["ratio"], 2, "x")
         << std::setw(11) << fmt(t["ratio_per_cpu_s"], 2, "x") << std::setw(13) << fmt(t["mixtape_amp_speedup"], 2, "x") << std::setw(13)
         << fmt(t["pytorch_amp_speedup"], 2, "x") << "\n";
    os << "(samples/s; ratio = mixtape / PyTorch, by wall clock and per CPU-second of the process; AMP = speedup\n"
          " over the same framework's fp32)\n";
  }
  if (!ratios["gemm"].empty()) {
    os << "\n" << std::setw(6) << "m" << std::setw(6) << "n" << std::setw(6) << "k" << "  " << std::left << std::setw(6)
       << "dtype" << std::right << std::setw(10) << "mixtape" << std::setw(10) << "pytorch" << std::setw(8) << "ratio"
       << "\n";
    for (const json& g : ratios["gemm"])
      os << std::setw(6) << g["m"].get<int64_t>() << std::setw(6) << g["n"].get<int64_t>() << std::setw(6)
         << g["k"].get<int64_t>() << "  " << std::left << std::setw(6) << g["dtype"].get<std::string>() << std::right
         << std::setw(10) << fmt(g["mixtape"], 1) << std::setw(10) << fmt(g["pytorch"], 1) << std::setw(8)
         << fmt(g["ratio"], 2, "x") << "\n";
    os << "(GEMM GFLOP/s)\n";
  }
  return os.str();
}

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand("bench", "Measure training throughput, GEMM GFLOP/s and memory (optionally vs PyTorch)");
  cmd->footer(
      "Times training steps (forward, cross-entropy, backward, Adam lr 1e-3; fp16 with a GradScaler, bf16 and fp16\n"
      "under autocast) of each model at each batch size and precision on synthetic data of Fashion-MNIST's shape\n"
      "(no data set needed): --warmup untimed steps, then --repeats runs of --steps timed steps; the median is\n"
      "reported, with peak memory, activation bytes per forward pass, tensor allocations per step and heap (raw)\n"
      "allocations per step (allocator counters; 0 heap allocations once the caching allocator is warm).\n"
      "GEMM micro-benchmarks report GFLOP/s per dtype beside the float32 FMA peak measured on the threads used,\n"
      "and each training step is shown beside its floor: the FLOPs of its matrix products and convolutions at the\n"
      "best GEMM rate measured for its dtype (\"x floor\" = step time / floor; needs the GEMM benchmarks).\n"
      "--threads N restricts the process to N CPUs and the CPU GEMM to N threads.\n"
      "On a GPU the timed loop ends by reading the loss (.item()), which waits for the queued work.\n"
      "--vs-pytorch then runs bench/torch_reference.py (PyTorch, with the same options and thread count, and\n"
      "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for it) and prints mixtape/PyTorch ratios and each framework's\n"
      "AMP speedup; without PyTorch it says so and prints mixtape's side. scripts/bench does this from a fresh clone.\n"
      "Example: mixtape bench --models mlp --batches 128 --vs-pytorch\n");
  cmd->add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPUs to run on (0: all)")->capture_default_str()->check(CLI::Range(0, 4096));
  cmd->add_option("--cpu-kernels", o.cpu_kernels,
                  "CPU matrix products and convolutions on auto (oneDNN where it pays on this CPU), onednn or eigen "
                  "(default: MIXTAPE_CPU_KERNELS, else auto)")
      ->check(CLI::IsMember({"auto", "onednn", "eigen"}));
  std::string models;
  for (const auto& m : model_names()) models += (models.empty() ? "" : ", ") + m;
  cmd->add_option("--models", o.models, "Comma-separated models (" + models + ")")->delimiter(',')->capture_default_str();
  cmd->add_option("--precisions", o.precisions, "Comma-separated precisions")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  cmd->add_option("--batches", o.batches, "Comma-separated batch sizes")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--warmup", o.warmup, "Untimed steps first")->capture_default_str()->check(CLI::Range(0, 100000));
  cmd->add_option("--steps", o.steps, "Timed steps per repeat")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--repeats", o.repeats, "Timed repeats (the median is reported)")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--gemm-shapes", o.gemm_shapes, "Comma-separated GEMM shapes MxNxK")->delimiter(',')->capture_default_str();
  cmd->add_option("--gemm-seconds", o.gemm_seconds, "Minimum seconds of one GEMM repeat")
      ->capture_default_str()
      ->check(CLI::Range(1e-4, 60.0));
  cmd->add_flag("!--no-train", o.train, "Skip the training benchmarks");
  cmd->add_flag("!--no-gemm", o.gemm, "Skip the GEMM micro-benchmarks");
  cmd->add_flag("--quick", o.quick, "Smoke test in seconds: batch 8, 1 warm-up + 2 steps, tiny GEMMs (unless given)");
  cmd->add_flag("--json", o.json, "Print one JSON object (the last line of stdout) instead of tables");
  cmd->add_flag("--vs-pytorch", o.vs_pytorch, "Also run PyTorch on the same benchmarks and print the ratios");
  cmd->add_option("--python", o.python, "Python for --vs-pytorch (default /usr/bin/python3, else python3)");
  cmd->add_option("--torch-script", o.torch_script, "Path of bench/torch_reference.py")->capture_default_str();
  cmd->parse_complete_callback([cmd, &o] {
    if (!o.quick) return;
    if (!cmd->count("--batches")) o.batches = {8};
    if (!cmd->count("--warmup")) o.warmup = 1;
    if (!cmd->count("--steps")) o.steps = 2;
    if (!cmd->count("--repeats")) o.repeats = 1;
    if (!cmd->count("--gemm-shapes")) o.gemm_shapes = {"64x64x64"};
    if (!cmd->count("--gemm-seconds")) o.gemm_seconds = 0.01;
  });
  return cmd;
}

int run_bench_command(const BenchOptions& o) {
  const json mixtape = run_bench(o, std::cerr);
  if (!o.vs_pytorch) {
    if (o.json) std::cout << mixtape.dump() << std::endl;
    else std::cout << bench_table(mixtape) << std::flush;
    return 0;
  }
  std::cerr << "bench: running PyTorch on the same benchmarks\n" << std::flush;
  const json pytorch = run_torch_reference(o, mixtape["threads"].get<int>());
  const bool have_torch = !pytorch.contains("error");
  const json ratios = have_torch ? bench_ratios(mixtape, pytorch) : json(nullptr);
  if (o.json) {
    std::cout << json{{"mixtape", mixtape}, {"pytorch", pytorch}, {"ratios", ratios}}.dump() << std::endl;
    return 0;
  }
  std::cout << bench_table(mixtape);
  if (!have_torch) {
    std::cout << "\nPyTorch side skipped: " << pytorch["error"].get<std::string>() << std::endl;
    return 0;
  }
  std::cout << "\n" << bench_table(pytorch) << ratio_table(ratios, pytorch) << std::flush;
  return 0;
}

}  // namespace mixtape::app
