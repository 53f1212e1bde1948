#pragma once
// The training run behind `mixtape train`: data, model, optimizer, loop, evaluation, logs and checkpoints.
#include <cmath>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"

namespace mixtape {
class Tensor;
namespace optim {
class Optimizer;
}
}  // namespace mixtape

namespace mixtape::app {

struct Checkpoint;

/// Everything that defines a run (the CLI flags).
struct TrainConfig {
  std::string model = "mlp";
  std::string device = "cpu";   ///< cpu, cuda, cuda:N or auto
  std::string precision = "fp32";  ///< fp32, fp16 or bf16 (autocast with float32 masters)
  std::string loss_scale = "auto";  ///< auto (on for fp16, off for bf16/fp32), on or off
  bool amp_report = false;          ///< print amp::report() after training
  bool tf32 = false;                ///< let float32 GEMMs/convolutions use TF32 tensor cores (CUDA; set_allow_tf32)
  int64_t epochs = 1;           ///< total epochs (a resumed run continues up to this many)
  int64_t batch = 128;
  double lr = 1e-3;
  std::string optimizer = "adam";  ///< sgd, adam, adamw
  double momentum = 0.9;           ///< sgd only
  double weight_decay = -1.0;      ///< negative: the optimizer's default (0; AdamW 0.01)
  uint64_t seed = 0;
  std::string data_dir;           ///< empty: the Debian dataset-fashion-mnist location
  int64_t limit = -1;             ///< training samples used (-1: all)
  int64_t test_limit = -1;        ///< test samples used (-1: all)
  std::string log_path;           ///< per-step CSV: step,epoch,loss,lr,loss_scale,skipped
  std::string save_path;          ///< checkpoint written after every epoch
  std::string resume_path;        ///< checkpoint to continue from
  bool progress = true;           ///< progress on stderr
  int threads = 0;                ///< CPU threads for the CPU kernels (0: the default, see core/cpu_threads.h)
  std::string cpu_kernels;        ///< auto, onednn or eigen (core/cpu_kernels.h); empty: MIXTAPE_CPU_KERNELS/auto
  std::string grad_comm = "fp32";  ///< under mpirun: the dtype gradients travel in (fp32, bf16, fp16; dist/data_parallel.h)
  // gpt only (character-level language model on text: data_dir is then a UTF-8 file, empty for the default corpus)
  int64_t steps = 250;   ///< optimizer steps per epoch (an epoch ends with a validation pass)
  int64_t context = 64;  ///< characters per training window (the model's context length)
  int64_t width = 128, depth = 4, heads = 4;  ///< the GPT's width, number of blocks and attention heads
};

/// The models that learn from text rather than images.
inline bool is_text_model(const std::string& model) { return model == "gpt"; }

/// One epoch of a run, measured at its end.
struct EpochResult {
  int64_t epoch = 0;        ///< 1-based
  double mean_loss = 0;     ///< mean training loss of the epoch's steps
  double test_acc = 0;      ///< test accuracy (gpt: validation next-character accuracy)
  double val_loss = NAN, val_bpc = NAN;  ///< gpt only
  double seconds = 0;       ///< training time of the epoch (evaluation excluded)
  double samples_per_s = 0;  ///< over all ranks
};

/// What a run measured (the --json fields).
struct TrainResult {
  std::string model, precision = "fp32", device;
  int64_t epochs = 0, batch = 0, steps = 0, samples = 0;  ///< batch: per rank; samples: over all ranks
  int world_size = 1;            ///< processes training together (dist/); the global batch is batch * world_size
  double comm_bytes_per_step = 0;  ///< bytes this rank sent per step through the collectives (payload; 0 alone)
  double samples_per_s = 0, train_seconds = 0, final_loss = 0, test_acc = 0;  ///< samples/s over all ranks
  int64_t peak_mem_bytes = 0;       ///< peak bytes held by tensors on the training device (its allocator)
  int64_t peak_reserved_bytes = 0;  ///< peak bytes the device allocator reserved (its cache included)
  int64_t skipped_steps = 0;     ///< optimizer steps the GradScaler skipped (inf/NaN gradients)
  double loss_scale = 1.0;       ///< final loss scale (1 without a scaler)
  int64_t activation_bytes = 0;  ///< bytes a forward pass keeps alive for backward (max over steps)
  std::string amp_report;        ///< amp::report() text when asked for
  /// gpt: validation loss (nats per character) and bits per character after the last epoch; test_acc is then the
  /// validation next-character accuracy. NaN for the image models.
  double val_loss = NAN, val_bpc = NAN;
  int64_t context = 0;  ///< gpt: characters per window (a sample is one window); 0 for the image models
  std::string data;     ///< what the run trained and was measured on (Task::describe_data)
  bool loss_scaling = false;  ///< whether a GradScaler scaled the loss (fp16 by default)
  std::vector<EpochResult> history;  ///< the epochs this process ran, in order (a resumed run: from the resume on)
  /// With amp_report: per op kind what autocast did (op, policy, ran_in {dtype: calls}, calls, casts, bytes_cast,
  /// cache_hits), and on the CPU the matrix products and convolutions per implementation (cpu_gemm_impl_counts).
  nlohmann::json amp_ops = nlohmann::json::array();
  std::string cpu_kernel_counts;
};

/// The autocast dtype of a precision name (f32 for "fp32"); throws for unknown names.
DType precision_dtype(const std::string& precision);

/// Losses are read on the host every kDeviceLossReadInterval steps on a GPU (every step on the CPU), and at
/// the end of each epoch: a host read waits for the device, so reading every step would stall the GPU. Until
/// read, each step's loss stays a one-element device tensor; the per-step CSV rows, the progress line and the
/// non-finite-loss check (it names the step) happen at the read, so a run that diverges stops up to that many
/// steps later than on the CPU. (With fp16, GradScaler::step() still reads its inf/NaN flag every step: the
/// skip decision needs it.)
inline constexpr int64_t kDeviceLossReadInterval = 50;

/// The optimizer a run's --optimizer, --lr, --momentum and --weight-decay name, over `params`; throws for an
/// unknown name.
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& params);

/// The checks `--resume` makes before applying a checkpoint to the run `config` describes: the same model,
/// optimizer, batch, seed, limit and precision, and epochs left to run. Throws an Error naming the checkpoint's
/// path otherwise.
void check_resumable(const Checkpoint& checkpoint, const TrainConfig& config);

/// Runs training as configured; progress and per-epoch lines go to `log` (stderr in the CLI).
TrainResult train(const TrainConfig& config, std::ostream& log);

/// The result as one JSON object.
nlohmann::json to_json(const TrainResult& result);

/// The config as JSON (stored in checkpoints).
nlohmann::json to_json(const TrainConfig& config);

}  // namespace mixtape::app
