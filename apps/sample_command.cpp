// `mixtape sample` (apps/sample_command.h).
#include "apps/sample_command.h"

#include <cmath>
#include <iostream>

#include "apps/checkpoint.h"
#include "apps/tasks.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/kernels.h"
#include "data/text.h"

namespace mixtape::app {

std::string sample_text(const SampleOptions& o) {
  MIXTAPE_CHECK(o.tokens >= 0, "--tokens must not be negative, got ", o.tokens);
  MIXTAPE_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, "--temperature must be a number >= 0, got ",
                o.temperature);
  const Checkpoint ck = read_checkpoint(o.checkpoint);
  const nlohmann::json& cfg = ck.state.config;
  MIXTAPE_CHECK(cfg.value("model", std::string()) == "gpt" && cfg.contains("vocab"), "--checkpoint ", o.checkpoint,
                ": not a gpt checkpoint (it holds a ", cfg.value("model", std::string("?")),
                " model); write one with mixtape train --model gpt --save FILE");
  const data::CharVocab vocab = data::CharVocab::from_chars(cfg["vocab"].get<std::string>());
  TrainConfig c;
  c.model = "gpt";
  c.context = cfg.value("context", c.context);
  c.width = cfg.value("width", c.width);
  c.depth = cfg.value("depth", c.depth);
  c.heads = cfg.value("heads", c.heads);
  const Device device = Device::parse(o.device);
  std::shared_ptr<nn::Module> model = make_gpt(c, vocab.size());
  try {
    model->load_state_dict(ck.model_state);
  } catch (const Error& e) {
    throw Error(detail::cat("--checkpoint ", o.checkpoint, ": its weights do not fit the gpt its config describes (",
                            e.what(), ")"));
  }
  model->to(device);
  model->eval();
  std::vector<int64_t> ids = vocab.encode(o.prompt, "--prompt");
  if (ids.empty()) {  // no prompt: start as a new line would
    ids = vocab.chars_utf8().find('\n') != std::string::npos ? vocab.encode("\n") : std::vector<int64_t>{0};
  }
  const size_t start = o.prompt.empty() ? ids.size() : 0;
  Generator gen(o.seed);
  NoGradGuard no_grad;
  for (int64_t i = 0; i < o.tokens; ++i) {
    const size_t n = std::min<size_t>(ids.size(), static_cast<size_t>(c.context));
    const std::vector<int64_t> window(ids.end() - static_cast<std::ptrdiff_t>(n), ids.end());
    const Tensor x = from_vector<int64_t>(window, Shape{1, static_cast<int64_t>(n)}).to(device);
    const Tensor logits = kernels::narrow(reshape(model->forward(x), Shape{static_cast<int64_t>(n), vocab.size()}), 0,
                                          static_cast<int64_t>(n) - 1, 1);
    const std::vector<double> l = logits.to_vector<double>();
    int64_t next = 0;
    if (o.temperature == 0) {
      for (size_t k = 1; k < l.size(); ++k)
        if (l[k] > l[static_cast<size_t>(next)]) next = static_cast<int64_t>(k);
    } else {
      // softmax(l / T) in float64, then the first index whose cumulative probability passes a uniform draw
      double m = -INFINITY, total = 0;
      for (double v : l) m = std::max(m, v / o.temperature);
      std::vector<double> p(l.size());
      for (size_t k = 0; k < l.size(); ++k) total += (p[k] = std::exp(l[k] / o.temperature - m));
      const double u = rand(Shape{1}, DType::f64, Device::cpu(), &gen, 0.0, 1.0).to_vector<double>()[0] * total;
      double acc = 0;
      next = static_cast<int64_t>(l.size()) - 1;
      for (size_t k = 0; k < p.size(); ++k)
        if ((acc += p[k]) > u) {
          next = static_cast<int64_t>(k);
          break;
        }
    }
    ids.push_back(next);
  }
  return vocab.decode(std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.end()));
}

CLI::App* add_sample_command(CLI::App& app, SampleOptions& o) {
  CLI::App* cmd = app.add_subcommand("sample", "Write text with a GPT trained by mixtape train --model gpt --save FILE");
  cmd->footer("Example: mixtape sample --checkpoint gpt.ckpt --prompt \"The \" --tokens 400 --temperature 0.8\n");
  cmd->add_option("--checkpoint", o.checkpoint, "A checkpoint written by mixtape train --model gpt --save FILE")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--prompt", o.prompt, "Text the model continues (its characters must occur in the training text)");
  cmd->add_option("--tokens", o.tokens, "Characters to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temperature", o.temperature, "Sampling temperature (0: always the most likely character)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--seed", o.seed, "Seed of the sampling")->capture_default_str();
  cmd->add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  return cmd;
}

int run_sample_command(const SampleOptions& o) {
  std::cout << sample_text(o) << std::endl;
  return 0;
}

}  // namespace mixtape::app
