#include "apps/train_command.h"

#include "dist/dist.h"

#include <cstdio>
#include <iomanip>
#include <iostream>

#include "apps/models.h"
#include "data/dataset.h"

namespace mixtape::app {

void add_run_options(CLI::App* cmd, TrainConfig& c) {
  std::string models;
  for (const auto& m : model_names()) models += (models.empty() ? "" : ", ") + m;
  cmd->add_option("--model", c.model, "Model to train (" + models + ")")->capture_default_str();
  cmd->add_option("--device", c.device, "cpu, cuda, cuda:N or auto (under mpirun: cpu, or cuda / auto for one GPU per rank, the "
                  "one of its local rank)")
      ->capture_default_str();
  cmd->add_option("--loss-scale", c.loss_scale, "Dynamic loss scaling: auto (on for fp16 only), on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--epochs", c.epochs, "Total number of epochs")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--batch", c.batch, "Batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--lr", c.lr, "Learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--optimizer", c.optimizer, "sgd, adam or adamw")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  cmd->add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--weight-decay", c.weight_decay, "Weight decay (AdamW: decoupled; default 0, AdamW 0.01)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", c.seed, "Seed of the initial weights and of the shuffling")->capture_default_str();
  cmd->add_option("--data", c.data_dir, "mlp/cnn: directory holding the Fashion-MNIST IDX files; gpt: a UTF-8 text file "
                  "(default: the quotations of Debian's fortunes package)")
      ->check(CLI::ExistingPath);
  cmd->add_option("--limit", c.limit, "Use only the first N training samples (gpt: characters)")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--test-limit", c.test_limit, "Use only the first N test samples (gpt: validation characters)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_flag("!--no-progress", c.progress, "Do not report progress on stderr");
  cmd->add_option("--threads", c.threads,
                  "CPU threads for the CPU kernels (default: OMP_NUM_THREADS, else the CPUs this process may run on)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--grad-comm", c.grad_comm,
                  "Under mpirun: the dtype gradients are averaged in across the ranks; bf16 or fp16 halve the bytes "
                  "sent at the cost of rounding each gradient to 16 bits first")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  cmd->add_option("--steps", c.steps, "gpt: optimizer steps per epoch (each epoch ends with a validation pass)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--context", c.context, "gpt: characters per training window (the context length)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--width", c.width, "gpt: model width (embedding size)")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--depth", c.depth, "gpt: number of transformer blocks")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--heads", c.heads, "gpt: attention heads (a divisor of --width)")->capture_default_str()->check(CLI::Range(1, 1024));
  // the gpt's own defaults where the flags were not given: batch 32 windows, 4 epochs of 250 steps
  cmd->callback([cmd, &c] {
    if (!is_text_model(c.model)) return;
    if (cmd->count("--batch") == 0) c.batch = 32;
    if (cmd->count("--epochs") == 0) c.epochs = 4;
    if (cmd->count("--test-limit") == 0) c.test_limit = 32768;  // validation characters: 512 windows of 64
  });
  cmd->add_option("--cpu-kernels", c.cpu_kernels,
                  "CPU matrix products and convolutions on auto (oneDNN where it pays on this CPU), onednn or eigen "
                  "(default: MIXTAPE_CPU_KERNELS, else auto)")
      ->check(CLI::IsMember({"auto", "onednn", "eigen"}));
}

CLI::App* add_train_command(CLI::App& app, TrainConfig& c, bool& json) {
  CLI::App* cmd = app.add_subcommand("train", "Train a model on Fashion-MNIST (mlp, cnn) or on text (gpt) in fp32, fp16 or bf16");
  cmd->footer(
      "mlp and cnn train on Fashion-MNIST's 60,000 training images and report the accuracy on its 10,000 test images\n"
      "after every epoch. Data come from Debian's dataset-fashion-mnist package (" +
      data::default_fashion_mnist_dir() +
      ") unless --data DIR is given.\n"
      "gpt is a character-level transformer: it trains on random windows of a UTF-8 text (--data FILE; by default\n"
      "the quotations of Debian's fortunes package), 90% for training and the last 10% for validation, and reports\n"
      "the validation loss in bits per character after every epoch of --steps steps (defaults: batch 32, 4 epochs, 32,768 validation characters).\n"
      "mixtape sample --checkpoint FILE then writes text with the saved model.\n"
      "Progress goes to stderr (a live bar on a terminal). --save writes a checkpoint (safetensors: weights,\n"
      "optimizer state, step, RNG state, config) after every epoch, atomically; --resume continues a saved run\n"
      "exactly, up to --epochs in total.\n"
      "--precision fp16|bf16 trains with automatic mixed precision: float32 master weights, matmuls in the\n"
      "lower precision, softmax/losses/reductions in float32 (amp/policy), and for fp16 a GradScaler that scales\n"
      "the loss, skips steps whose gradients overflowed and adapts the scale.\n"
      "Example: mixtape train --model mlp --epochs 3 --optimizer adam --lr 1e-3 --batch 128 --precision bf16\n");
  add_run_options(cmd, c);
  cmd->add_option("--precision", c.precision, "fp32, fp16 or bf16 (autocast with float32 masters)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  cmd->add_flag("--tf32", c.tf32,
                "Let float32 matrix products and convolutions on a GPU use TF32 tensor cores (10-bit mantissa inputs, "
                "float32 accumulation); off by default, so fp32 runs are exact float32");
  cmd->add_flag("--amp-report", c.amp_report,
                "After training, print per op type the dtype it ran in, casts inserted, bytes cast and cache hits");
  cmd->add_option("--log", c.log_path, "Write a per-step CSV (step,epoch,loss,lr,loss_scale,skipped) to FILE");
  cmd->add_option("--save", c.save_path, "Write a checkpoint to FILE after every epoch");
  cmd->add_option("--resume", c.resume_path, "Continue from a checkpoint written by --save")->check(CLI::ExistingFile);
  cmd->add_flag("--json", json, "Print the results as one JSON object (the last line of stdout)");
  return cmd;
}

int run_train_command(const TrainConfig& config, bool json) {
  const TrainResult r = train(config, std::cerr);
  if (!dist::is_main()) return 0;  // under mpirun: rank 0 reports
  if (!r.amp_report.empty()) (json ? std::cerr : std::cout) << "autocast report (" << r.steps << " steps):\n" << r.amp_report;
  if (json) {
    std::cout << to_json(r).dump() << std::endl;
  } else {
    std::cout << std::fixed << "model " << r.model << " (" << r.precision << ") on " << r.device << ": " << r.epochs
              << " epoch(s), " << r.steps << " steps, batch " << r.batch
              << (r.world_size > 1 ? " per rank x " + std::to_string(r.world_size) + " ranks" : std::string()) << "\n"
              << std::setprecision(0) << "  throughput  " << r.samples_per_s << " samples/s (" << std::setprecision(1)
              << r.train_seconds << " s training)\n"
              << std::setprecision(4) << "  final loss  " << r.final_loss << "\n"
              << std::setprecision(2) << "  test acc    " << 100.0 * r.test_acc << "%\n"
              << std::setprecision(1) << "  peak memory " << static_cast<double>(r.peak_mem_bytes) / (1 << 20) << " MiB"
              << (r.device == "cpu" ? std::string()
                                    : " (" + std::to_string(r.peak_reserved_bytes >> 20) + " MiB reserved by the allocator)")
              << "\n"
              << "  activations " << static_cast<double>(r.activation_bytes) / (1 << 20) << " MiB per forward pass\n"
              << std::setprecision(0) << "  loss scale  " << r.loss_scale << " (" << r.skipped_steps << " skipped steps)" << std::endl;
  }
  return 0;
}

}  // namespace mixtape::app
