#include "apps/trainer.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "apps/checkpoint.h"
#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/policy.h"
#include "apps/models.h"
#include "apps/tasks.h"
#include "autograd/ops.h"
#include "core/backend.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "core/gemm_settings.h"
#include "core/json_limits.h"
#include "core/kernels.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "dist/data_parallel.h"
#include "dist/dist.h"
#include "optim/optimizer.h"

namespace mixtape::app {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// The device of this rank: `name` ("auto", "cpu", "cuda", "cuda:N"). Several ranks (mpirun) use one GPU each,
/// the one of their local rank (rank 0 of a machine GPU 0, ...), as NCCL requires; "auto" picks the GPUs when the
/// machine has any (every rank of one machine sees the same devices, so they agree).
Device resolve_device(const std::string& name) {
  const int world = dist::world_size();
  Device d = name == "auto" ? (device_available(Device::cuda(0)) ? Device::cuda(0) : Device::cpu()) : Device::parse(name);
  if (world > 1 && d.is_cuda()) {
    MIXTAPE_CHECK(name == "auto" || name == "cuda", "--device ", name, ": with ", world, " ranks each rank trains on "
                  "the GPU of its local rank; pass --device cuda (or auto)");
    const int local = dist::local_rank(), gpus = cuda_device_count();
    MIXTAPE_CHECK(local < gpus, "rank ", dist::rank(), " is rank ", local, " on its machine, which has ", gpus,
                  " GPU(s): start at most ", gpus, " rank(s) per machine (one GPU each), or train on the CPU with "
                  "--device cpu");
    d = Device::cuda(local);
  }
  backend_for(d);  // throws a clear error when the device is unavailable
  return d;
}

/// One training step whose loss has not been read on the host yet (see kDeviceLossReadInterval).
struct PendingStep {
  int64_t step = 0, epoch = 0;
  Tensor loss;  ///< (), on the training device
  double lr = 0, scale = 1;
  bool applied = true;
};

/// Progress on stderr: a live bar on a terminal, a line every few seconds otherwise.
class Progress {
 public:
  Progress(std::ostream& out, bool enabled, int64_t total_steps)
      : out_(out), enabled_(enabled), tty_(enabled && ::isatty(2)), total_(total_steps), t0_(Clock::now()) {}

  void update(int64_t epoch, int64_t epochs, int64_t step, double loss, double samples_per_s) {
    if (!enabled_) return;
    const double elapsed = seconds_since(t0_);
    if (!tty_ && elapsed - last_ < 5.0 && step != total_) return;
    if (tty_ && elapsed - last_ < 0.1 && step != total_) return;
    last_ = elapsed;
    const double frac = total_ ? static_cast<double>(step) / static_cast<double>(total_) : 1.0;
    const double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
    std::ostringstream line;
    line << std::fixed << "epoch " << epoch + 1 << "/" << epochs << " step " << step << "/" << total_
         << std::setprecision(4) << " loss " << loss << std::setprecision(0) << " " << samples_per_s << " samples/s ETA "
         << static_cast<int64_t>(eta) << "s";
    if (tty_) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(frac * kWidth);
      out_ << "\r[" << std::string(static_cast<size_t>(filled), '#') << std::string(static_cast<size_t>(kWidth - filled), '.')
           << "] " << line.str() << "\033[K" << std::flush;
    } else {
      out_ << line.str() << "\n" << std::flush;
    }
  }

  /// Ends the live line before other output.
  void finish_line() {
    if (tty_) out_ << "\r\033[K" << std::flush;
  }

 private:
  std::ostream& out_;
  bool enabled_, tty_;
  int64_t total_;
  Clock::time_point t0_;
  double last_ = -1e9;
};

}  // namespace

DType precision_dtype(const std::string& precision) {
  if (precision == "fp32") return DType::f32;
  if (precision == "fp16") return DType::f16;
  if (precision == "bf16") return DType::bf16;
  throw Error(detail::cat("unknown precision '", precision, "': expected fp32, fp16 or bf16"));
}

nlohmann::json to_json(const TrainConfig& c) {
  return {{"model", c.model},   {"device", c.device}, {"precision", c.precision}, {"loss_scale", c.loss_scale},         {"epochs", c.epochs}, {"batch", c.batch},
          {"lr", c.lr},         {"optimizer", c.optimizer},   {"momentum", c.momentum},
          {"weight_decay", c.weight_decay}, {"seed", c.seed}, {"limit", c.limit},   {"test_limit", c.test_limit},
          {"tf32", c.tf32}, {"steps", c.steps}, {"context", c.context}, {"width", c.width},
          {"depth", c.depth}, {"heads", c.heads}};
}

nlohmann::json to_json(const TrainResult& r) {
  nlohmann::json j = {{"model", r.model},
          {"precision", r.precision},
          {"device", r.device},
          {"epochs", r.epochs},
          {"batch", r.batch},
          {"world_size", r.world_size},
          {"global_batch", r.batch * r.world_size},
          {"comm_bytes_per_step", r.comm_bytes_per_step},
          {"steps", r.steps},
          {"samples", r.samples},
          {"samples_per_s", r.samples_per_s},
          {"train_seconds", r.train_seconds},
          {"final_loss", r.final_loss},
          {"test_acc", r.test_acc},
          {"peak_mem_bytes", r.peak_mem_bytes},
          {"skipped_steps", r.skipped_steps},
          {"loss_scale", r.loss_scale},
          {"activation_bytes", r.activation_bytes},
          {"peak_reserved_bytes", r.peak_reserved_bytes}};
  j["data"] = r.data;
  j["loss_scaling"] = r.loss_scaling;
  nlohmann::json history = nlohmann::json::array();
  for (const EpochResult& e : r.history) {
    nlohmann::json h = {{"epoch", e.epoch}, {"mean_loss", e.mean_loss}, {"test_acc", e.test_acc},
                        {"seconds", e.seconds}, {"samples_per_s", e.samples_per_s}};
    if (r.context > 0) {
      h["val_loss"] = e.val_loss;
      h["val_bpc"] = e.val_bpc;
    }
    history.push_back(h);
  }
  j["history"] = history;
  if (!r.amp_ops.empty()) j["amp_ops"] = r.amp_ops;
  if (!r.cpu_kernel_counts.empty()) j["cpu_kernel_counts"] = r.cpu_kernel_counts;
  if (r.context > 0) {  // a text model: a sample is a window of `context` characters
    j["context"] = r.context;
    j["val_loss"] = r.val_loss;
    j["val_bpc"] = r.val_bpc;
    j["chars_per_s"] = r.samples_per_s * static_cast<double>(r.context);
  }
  return j;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, const std::vector<Tensor>& params) {
  if (c.optimizer == "sgd")
    return std::make_unique<optim::SGD>(params, optim::SGDOptions{.lr = c.lr, .momentum = c.momentum,
                                                                  .weight_decay = std::max(c.weight_decay, 0.0)});
  if (c.optimizer == "adam")
    return std::make_unique<optim::Adam>(params, optim::AdamOptions{.lr = c.lr, .weight_decay = std::max(c.weight_decay, 0.0)});
  if (c.optimizer == "adamw")
    return std::make_unique<optim::AdamW>(
        params, optim::AdamWOptions{.lr = c.lr, .weight_decay = c.weight_decay < 0 ? 1e-2 : c.weight_decay});
  throw Error(detail::cat("unknown optimizer '", c.optimizer, "': expected sgd, adam or adamw"));
}

void check_resumable(const Checkpoint& ck, const TrainConfig& c) {
  const RunState& saved = ck.state;
  const std::string& path = ck.path;
  const nlohmann::json run = to_json(c);
  std::vector<const char*> keys = {"model", "optimizer", "batch", "seed", "limit", "precision"};
  if (is_text_model(c.model)) keys.insert(keys.end(), {"steps", "context", "width", "depth", "heads"});
  for (const char* key : keys)
    MIXTAPE_CHECK(!saved.config.contains(key) || saved.config[key] == run[key], "--resume ", path,
                  ": the checkpoint was made with ", key, "=", json_limits::brief(saved.config[key]), " but this run has ",
                  key, "=", run[key].dump(), "; resuming exactly needs the same value");
  const int64_t saved_world = saved.config.value("world_size", int64_t{1});
  MIXTAPE_CHECK(saved_world == dist::world_size(), "--resume ", path, ": the checkpoint was made on ", saved_world,
                " rank(s) but this run has ", dist::world_size(), "; resuming exactly needs the same number of ranks (each "
                "rank's share of the data depends on it)");
  MIXTAPE_CHECK(saved.epoch < c.epochs, "--resume ", path, ": the checkpoint has already completed ", saved.epoch,
                " epoch(s); ask for more with --epochs N (N > ", saved.epoch, ")");
}

TrainResult train(const TrainConfig& c, std::ostream& all_log) {
  // Several ranks (mpirun): rank 0 prints, logs and saves; the others stay quiet.
  std::ostream null_log(nullptr);
  std::ostream& log = dist::is_main() ? all_log : null_log;
  const int world = dist::world_size();
  MIXTAPE_CHECK(c.epochs >= 1, "--epochs must be at least 1, got ", c.epochs);
  MIXTAPE_CHECK(c.batch >= 1, "--batch must be at least 1, got ", c.batch);
  MIXTAPE_CHECK(std::isfinite(c.lr) && c.lr > 0, "--lr must be a positive number, got ", c.lr);
  MIXTAPE_CHECK(c.limit == -1 || c.limit >= 1, "--limit must be at least 1, got ", c.limit);
  MIXTAPE_CHECK(c.test_limit == -1 || c.test_limit >= 1, "--test-limit must be at least 1, got ", c.test_limit);
  // Where the run writes is checked before anything trains, so a bad path costs seconds, not an epoch.
  if (!c.save_path.empty()) check_output_path(c.save_path, "--save", OutputWrite::replace_by_rename);
  if (!c.log_path.empty()) check_output_path(c.log_path, "--log", OutputWrite::in_place);
  if (!c.save_path.empty() && dist::is_main()) remove_stale_temporaries(c.save_path, log);
  const Device device = resolve_device(c.device);
  MIXTAPE_CHECK(world == 1 || device.is_cpu() || dist::nccl_built(), "training on ", world, " ranks on GPUs needs NCCL, "
                "which this build lacks (", dist::nccl_description(), "): use --device cpu");
  set_allow_tf32(c.tf32);  // process-wide, like torch.backends.cuda.matmul.allow_tf32; off unless asked for
  // The CPU kernels' thread count and implementation are process-wide: set for this run, restored after it.
  struct CpuSettingsGuard {
    int threads = cpu_threads();
    CpuKernels kernels = cpu_kernels();
    bool set_threads = false;
    ~CpuSettingsGuard() {
      set_cpu_kernels(kernels);
      if (set_threads) set_cpu_threads(threads);
    }
  } cpu_settings;
  if (c.threads > 0) {
    set_cpu_threads(c.threads);
    cpu_settings.set_threads = true;
  }
  if (!c.cpu_kernels.empty()) set_cpu_kernels(parse_cpu_kernels(c.cpu_kernels));
  const DType lower = precision_dtype(c.precision);
  const bool use_amp = lower != DType::f32;
  MIXTAPE_CHECK(c.loss_scale == "auto" || c.loss_scale == "on" || c.loss_scale == "off",
                "--loss-scale must be auto, on or off, got '", c.loss_scale, "'");
  const bool scaling = c.loss_scale == "on" || (c.loss_scale == "auto" && lower == DType::f16);

  // A checkpoint to resume is read first: a text model's vocabulary comes from it.
  std::optional<Checkpoint> resume;
  if (!c.resume_path.empty()) {
    resume.emplace(read_checkpoint(c.resume_path));
    check_resumable(*resume, c);
  }
  // The data, then the model (a text model's size depends on its vocabulary) and the optimizer.
  std::unique_ptr<Task> task = make_task(c, device, resume ? &resume->state.config : nullptr);
  manual_seed(c.seed);
  std::shared_ptr<nn::Module> model = task->make_model();
  model->to(device);
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(c, model->parameters());
  // fp16 needs loss scaling (its gradients underflow); bf16 has float32's range and does not by default.
  amp::GradScaler scaler(*opt, amp::GradScalerOptions{.enabled = scaling, .max_consecutive_skips = 100});
  // Several ranks: rank 0's weights everywhere, gradients averaged after backward, one skip decision.
  std::optional<dist::DataParallel> dp;
  if (world > 1) {
    dp.emplace(model, dist::DataParallelOptions{.gradient_dtype = c.grad_comm == "fp32" ? DType::f32
                                                                  : precision_dtype(c.grad_comm)});
    dp->attach(scaler);
  }

  RunState state;
  state.config = to_json(c);
  state.config["world_size"] = world;
  task->describe(state.config);
  if (resume) {
    const RunState& saved = resume->state;
    apply_checkpoint(*resume, *model, *opt);
    if (!resume->scaler_state.empty()) scaler.load_state_dict(resume->scaler_state);
    state.epoch = saved.epoch;
    state.step = saved.step;
    default_generator().set_state(saved.rng_seed, saved.rng_offset);
    log << "resumed from " << c.resume_path << " at epoch " << saved.epoch << ", step " << saved.step << "\n";
    resume.reset();  // its tensors are no longer needed
  }

  std::ofstream csv;
  if (!c.log_path.empty() && dist::is_main()) {
    errno = 0;
    csv.open(c.log_path, c.resume_path.empty() ? std::ios::trunc : std::ios::app);
    const int err = errno;  // the failed open's reason, read before anything else can change it
    MIXTAPE_CHECK(csv.good(), "--log: cannot write '", c.log_path, "'", err ? std::string(": ") + std::strerror(err) : "");
    if (c.resume_path.empty()) csv << "step,epoch,loss,lr,loss_scale,skipped\n";
  }

  const int64_t steps_per_epoch = task->steps_per_epoch();
  Progress progress(log, c.progress, steps_per_epoch * (c.epochs - state.epoch));

  TrainResult r;
  r.model = c.model;
  r.device = device.to_string();
  r.batch = c.batch;
  r.world_size = world;
  r.data = task->describe_data();
  r.loss_scaling = scaler.enabled();
  empty_cache(device);  // blocks cached by an earlier run in this process (compare) do not count as this run's
  reset_peak_memory(device);
  if (c.amp_report) {
    amp::reset_stats();
    reset_cpu_gemm_impl_counts();
  }
  double train_seconds = 0;
  int64_t run_steps = 0, run_samples = 0;
  const int64_t comm_before = dist::bytes_communicated();
  double loss_value = NAN;
  // Reading a loss on the host waits for the device; on a GPU the losses are read in groups (see trainer.h).
  const size_t read_interval = device.is_cpu() ? 1 : static_cast<size_t>(kDeviceLossReadInterval);
  std::vector<PendingStep> pending;
  double epoch_loss = 0;
  Clock::time_point t0 = Clock::now();
  // Reads the pending losses (the first read waits for the device, the others find their values ready), checks
  // them, writes their CSV rows and reports progress.
  auto flush = [&] {
    if (pending.empty()) return;
    for (const PendingStep& p : pending) {
      loss_value = p.loss.item();
      // A non-finite loss is fatal unless the scaler skipped the step it produced (fp16 overflow).
      MIXTAPE_CHECK(std::isfinite(loss_value) || (scaler.enabled() && !p.applied), "the loss became ", loss_value,
                    " at step ", p.step, " (epoch ", p.epoch, "); the learning rate (", c.lr, ") may be too high",
                    use_amp ? " or the precision too narrow" : "");
      epoch_loss += loss_value;
      if (csv.is_open())
        csv << p.step << "," << p.epoch << "," << loss_value << "," << p.lr << "," << p.scale << ","
            << (p.applied ? 0 : 1) << "\n";
    }
    pending.clear();
    progress.update(state.epoch, c.epochs, run_steps, loss_value,
                    static_cast<double>(run_samples) / (train_seconds + seconds_since(t0)));
  };
  for (int64_t epoch = state.epoch; epoch < c.epochs; ++epoch) {
    task->begin_epoch(epoch);
    model->train();
    t0 = Clock::now();
    epoch_loss = 0;
    int64_t epoch_steps = 0, epoch_samples = 0;
    for (Tensor x, y; task->next(x, y);) {
      const Tensor xd = x.to(device), yd = y.to(device);
      // This thread's bytes only: the loader's prefetch thread allocates the next batch meanwhile.
      const int64_t held_before = thread_net_bytes(device);
      Tensor loss;
      {
        std::optional<amp::Autocast> autocast;
        if (use_amp) autocast.emplace(device, lower);
        loss = task->loss(dp ? dp->forward(xd) : model->forward(xd), yd);
      }
      r.activation_bytes = std::max(r.activation_bytes, thread_net_bytes(device) - held_before);
      opt->zero_grad();
      backward(scaler.scale(loss));
      if (dp) dp->sync_gradients();
      const bool applied = scaler.step();
      // The scale this step used (update() changes it); read only for the CSV (a host read when scaling).
      const double scale_used = csv.is_open() ? scaler.get_scale() : 1.0;
      const double lr_used = opt->lr();
      scaler.update();
      ++state.step;
      ++run_steps;
      ++epoch_steps;
      run_samples += x.size(0) * world;  // every rank trains a batch of this size
      epoch_samples += x.size(0) * world;
      Tensor reported = loss.detach();
      if (dp) {  // the mean over the ranks' batches: what one process would report for the global batch
        reported = reported.clone();
        dist::all_reduce(reported, dist::ReduceOp::avg);
      }
      pending.push_back({state.step, epoch + 1, reported, lr_used, scale_used, applied});
      if (pending.size() >= read_interval) flush();
    }
    flush();
    const double epoch_seconds = seconds_since(t0);
    train_seconds += epoch_seconds;
    state.epoch = epoch + 1;
    task->evaluate(*model, device, r);
    r.history.push_back({.epoch = epoch + 1,
                         .mean_loss = epoch_loss / static_cast<double>(std::max<int64_t>(epoch_steps, 1)),
                         .test_acc = r.test_acc,
                         .val_loss = r.val_loss,
                         .val_bpc = r.val_bpc,
                         .seconds = epoch_seconds,
                         .samples_per_s = epoch_seconds > 0 ? static_cast<double>(epoch_samples) / epoch_seconds : 0});
    progress.finish_line();
    log << std::fixed << std::setprecision(4) << "epoch " << epoch + 1 << "/" << c.epochs << ": mean loss "
        << epoch_loss / static_cast<double>(std::max<int64_t>(epoch_steps, 1));
    if (is_text_model(c.model))
      log << ", validation loss " << r.val_loss << " (" << std::setprecision(3) << r.val_bpc
          << " bits/char), next-char accuracy " << std::setprecision(2) << 100.0 * r.test_acc << "%, "
          << std::setprecision(0) << static_cast<double>(run_samples * c.context) / train_seconds << " chars/s\n";
    else
      log << ", test accuracy " << std::setprecision(2) << 100.0 * r.test_acc << "%, " << std::setprecision(0)
          << static_cast<double>(run_samples) / train_seconds << " samples/s\n";
    log << std::flush;
    if (!c.save_path.empty()) {
      state.rng_seed = default_generator().seed();
      state.rng_offset = default_generator().offset();
      // Rank 0 writes (every rank holds the same state); the others wait, so none runs ahead of a file it may
      // be asked to resume from.
      if (dist::is_main()) save_checkpoint(c.save_path, *model, *opt, scaler.state_dict(), state);
      dist::barrier();
    }
  }
  if (csv.is_open()) csv.flush();
  r.epochs = state.epoch;
  r.steps = state.step;
  r.samples = run_samples;
  r.train_seconds = train_seconds;
  r.comm_bytes_per_step =
      run_steps > 0 ? static_cast<double>(dist::bytes_communicated() - comm_before) / static_cast<double>(run_steps) : 0;
  r.samples_per_s = train_seconds > 0 ? static_cast<double>(run_samples) / train_seconds : 0;
  r.final_loss = loss_value;
  const MemoryStats mem = memory_stats(device);  // the device allocator's counters (tensors only)
  r.peak_mem_bytes = mem.peak_bytes;
  r.peak_reserved_bytes = mem.peak_reserved_bytes;
  r.skipped_steps = scaler.skipped_steps();
  r.loss_scale = scaler.get_scale();
  r.precision = c.precision;
  if (c.amp_report) {
    r.amp_report = amp::report(run_steps);
    for (const auto& [kind, st] : amp::stats()) {
      nlohmann::json ran = nlohmann::json::object();
      for (const auto& [dtype, n] : st.ran_in) ran[dtype_name(dtype)] = n;
      r.amp_ops.push_back({{"op", op_kind_name(kind)}, {"policy", amp::policy_name(amp::policy_for(kind))},
                           {"calls", st.calls}, {"ran_in", ran}, {"casts", st.casts}, {"bytes_cast", st.bytes_cast},
                           {"cache_hits", st.cache_hits}});
    }
    if (device.type == Device::Type::cpu) {
      const std::string setting = cpu_kernels_name(cpu_kernels()), counts = cpu_gemm_impl_counts();
      r.cpu_kernel_counts = setting + ": " + counts;
      r.amp_report += "CPU matrix products and convolutions by implementation (" + setting + "): " + counts + "\n";
    }
  }
  return r;
}

}  // namespace mixtape::app
