// libFuzzer target: resuming from a checkpoint as `mixtape train --resume` does (apps/trainer.cpp): read_checkpoint,
// the run-config checks, apply_checkpoint into a model and its optimizer, GradScaler::load_state_dict, the RNG
// state; then, as a resumed run continues, one training step (autocast and loss scaling as the checkpoint's config
// says) and a save_checkpoint that read_checkpoint must accept again.
//
// The MLP of apps/models.h (784-1024-1024-10) has 1.9 million parameters, so a checkpoint that fits it is 22 MB:
// far beyond what a fuzzer mutates. Every input is applied to it (with Adam) to exercise the mismatch checks, and
// to a miniature of the same architecture (the same module names and layer order, 4-3-3-2 units) with the
// optimizer the checkpoint's config names, which small inputs can fit completely.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "apps/checkpoint.h"
#include "apps/models.h"
#include "apps/trainer.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/error.h"
#include "core/random.h"
#include "optim/optimizer.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/mini_mlp.h"

using namespace mixtape;

namespace {

/// The run's config as the CLI would have given it: the defaults, with the checkpoint's values where they are of
/// the right type and within the CLI's ranges (so the resume checks pass and the run goes on).
app::TrainConfig config_from(const nlohmann::json& saved) {
  app::TrainConfig c;
  auto str = [&](const char* key, std::string& out, std::initializer_list<const char*> allowed) {
    if (!saved.contains(key) || !saved[key].is_string()) return;
    for (const char* a : allowed)
      if (saved[key].get<std::string>() == a) out = a;
  };
  auto num = [&](const char* key, double& out, double lo, double hi) {
    if (saved.contains(key) && saved[key].is_number()) {
      const double v = saved[key].get<double>();
      if (v >= lo && v <= hi) out = v;
    }
  };
  auto integer = [&](const char* key, int64_t& out, int64_t lo, int64_t hi) {
    if (saved.contains(key) && saved[key].is_number_integer()) {
      const int64_t v = saved[key].get<int64_t>();
      if (v >= lo && v <= hi) out = v;
    }
  };
  str("optimizer", c.optimizer, {"sgd", "adam", "adamw"});
  str("precision", c.precision, {"fp32", "fp16", "bf16"});
  str("loss_scale", c.loss_scale, {"auto", "on", "off"});
  num("lr", c.lr, 1e-12, 1e3);
  num("momentum", c.momentum, 0.0, 1.0);
  num("weight_decay", c.weight_decay, 0.0, 1.0);
  integer("batch", c.batch, 1, 1 << 20);
  integer("limit", c.limit, 1, int64_t{1} << 40);
  if (saved.contains("seed") && saved["seed"].is_number_unsigned()) c.seed = saved["seed"].get<uint64_t>();
  return c;
}

void resume(const app::Checkpoint& ck) {
  static const std::shared_ptr<nn::Module> mlp = [] {
    manual_seed(0);
    return app::make_model("mlp");
  }();
  static optim::Adam mlp_optimizer(mlp->parameters());
  try {
    app::apply_checkpoint(ck, *mlp, mlp_optimizer);
  } catch (const Error&) {
  }

  app::TrainConfig c = config_from(ck.state.config);
  c.epochs = 100000;  // the most --epochs allows
  try {
    app::check_resumable(ck, c);  // the trainer's checks, with the trainer's messages
  } catch (const Error&) {
    return;
  }
  const nlohmann::json run_config = app::to_json(c);

  manual_seed(c.seed);
  const std::shared_ptr<nn::Module> model = fuzz::mini_mlp();
  std::unique_ptr<optim::Optimizer> opt;
  try {
    opt = app::make_optimizer(c, model->parameters());
  } catch (const Error&) {
    return;
  }
  const DType lower = app::precision_dtype(c.precision);
  const bool scaling = c.loss_scale == "on" || (c.loss_scale == "auto" && lower == DType::f16);
  amp::GradScaler scaler(*opt, amp::GradScalerOptions{.enabled = scaling, .max_consecutive_skips = 100});
  try {
    app::apply_checkpoint(ck, *model, *opt);
    if (!ck.scaler_state.empty()) scaler.load_state_dict(ck.scaler_state);
  } catch (const Error&) {
    return;
  }
  default_generator().set_state(ck.state.rng_seed, ck.state.rng_offset);

  // One step of the resumed run (a non-finite loss is the trainer's clean error, not a crash).
  const Tensor loss = fuzz::mini_mlp_loss(*model, lower);
  opt->zero_grad();
  backward(scaler.scale(loss));
  try {
    scaler.step();  // may throw after too many skips in a row (the trainer's clean error)
  } catch (const Error&) {
    return;
  }
  scaler.update();
  (void)loss.item();

  // What a resumed run saves, the next resume must read.
  app::RunState state = ck.state;
  state.step += 1;
  state.config = run_config;
  const std::string path = fuzz::temp_dir() + "/resaved.safetensors";
  app::save_checkpoint(path, *model, *opt, scaler.state_dict(), state);
  const app::Checkpoint again = app::read_checkpoint(path);
  if (again.model_state.size() != ck.model_state.size())
    fuzz::fail("a resumed run's checkpoint does not hold the model entries of the one it resumed from");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input(data, size, "input.safetensors");
  app::Checkpoint ck;
  try {
    ck = app::read_checkpoint(path);
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  resume(ck);
  return 0;
}
