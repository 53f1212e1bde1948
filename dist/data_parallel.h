#pragma once
// Data-parallel training of any nn::Module (PyTorch's DistributedDataParallel, without the overlap): every rank holds
// a full copy of the model and trains on its own share of each batch; after backward, sync_gradients() replaces each
// parameter's gradient by its average over the ranks, so every rank applies the same update and the copies stay
// identical.
//
//   dist::init();
//   auto model = make_model();
//   dist::DataParallel dp(model);                 // rank 0's parameters and buffers everywhere
//   optim::Adam opt(model->parameters(), ...);
//   amp::GradScaler scaler(opt, ...);
//   dp.attach(scaler);                            // one skip decision and one scale on every rank
//   for (auto [x, y] : loader) {                  // LoaderOptions{.rank = dist::rank(), .world_size = ...}
//     loss = cross_entropy(dp.forward(x), y);
//     opt.zero_grad();
//     backward(scaler.scale(loss));
//     dp.sync_gradients();
//     scaler.step();
//     scaler.update();
//   }
//
// Gradients travel in buckets of consecutive parameters (registration order, about bucket_bytes each): the layout
// depends only on the model, so results are the same bits run to run. With 2 ranks an averaged gradient is
// (g0 + g1) / 2 rounded once in float32, bit for bit what one process computes from both shards' gradients. A
// parameter without a gradient on some rank (unused there) counts as zero there; one without a gradient on every
// rank keeps none. The reduction runs after backward, not overlapped with it (on a CPU the cores the overlap would
// use are busy with backward; on a GPU the buckets are queued on NCCL's stream as soon as backward has been queued,
// so they run while the host goes on). The model lives on the CPU (gradients travel over MPI) or on one GPU per
// rank (NCCL); every rank must use the same kind of device.
#include <cstdint>
#include <memory>

#include "amp/grad_scaler.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace mixtape::dist {

struct DataParallelOptions {
  int64_t bucket_bytes = int64_t{25} << 20;  ///< gradient bytes per all-reduce (at least one parameter per bucket)
  /// Broadcast rank 0's buffers (BatchNorm running statistics) before every forward, as DDP's broadcast_buffers:
  /// all ranks then evaluate with the same statistics. Off: each rank keeps its own running statistics.
  bool broadcast_buffers = true;
  /// The dtype gradients travel in: f32 (as they are), or bf16 / f16 to halve the bytes sent, like DDP's
  /// compression hooks. A compressed gradient is rounded to 16 bits before the sum (bf16 keeps 8 significant bits:
  /// a relative error up to 2^-9 per element, and the sum of 2 ranks is rounded once more; f16 also flushes
  /// gradients under 6e-8, and overflows above 65504 unless the loss scale keeps them in range), then widened back
  /// into the float32 gradient.
  DType gradient_dtype = DType::f32;
};

class DataParallel {
 public:
  /// Wraps `module` and copies rank 0's parameters and buffers to every rank (a collective: every rank constructs
  /// its DataParallel at the same point).
  explicit DataParallel(std::shared_ptr<nn::Module> module, DataParallelOptions options = {});

  /// The module's forward (after broadcasting buffers when broadcast_buffers).
  Tensor forward(const Tensor& x);
  /// Averages every parameter's gradient over the ranks, in place (nothing in a world of one, or inside no_sync).
  void sync_gradients();
  /// Makes `scaler` MAX-reduce its found-inf flag over the ranks: an overflow on any rank (also in a parameter
  /// outside this module) skips the step on every rank, and every rank keeps the same scale.
  void attach(amp::GradScaler& scaler) const;

  /// While an instance lives, sync_gradients() does nothing (gradient accumulation over several backward passes:
  /// sync on the last one).
  class NoSync {
   public:
    explicit NoSync(DataParallel& dp) : dp_(dp) { ++dp_.no_sync_depth_; }
    ~NoSync() { --dp_.no_sync_depth_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DataParallel& dp_;
  };
  NoSync no_sync() { return NoSync(*this); }

  const std::shared_ptr<nn::Module>& module() const { return module_; }
  /// Gradient buckets (for tests and the report): how many, and the bytes one sync sends (payload).
  int64_t num_buckets() const;
  int64_t bytes_per_sync() const;

 private:
  std::shared_ptr<nn::Module> module_;
  DataParallelOptions options_;
  Device device_ = Device::cpu();  ///< where the parameters (and their gradients) live
  int no_sync_depth_ = 0;
};

}  // namespace mixtape::dist
