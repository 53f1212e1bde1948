// The GPT trained with mixed precision (apps/trainer.h, model gpt): on a text whose next character is uncertain
// (a Markov chain, about 1.2 bits per character at best), fp16 with the loss scaler and bf16 reach float32's
// validation loss within 2% after the same steps, and fp16 without loss scaling is reported beside them; the
// attention's dtypes appear in the autocast report.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "apps/trainer.h"
#include "test_util.h"

using namespace mixtape;

namespace {

/// 20,000 characters of a Markov chain over 12 letters: each letter is followed by one of three (probabilities
/// 0.6, 0.3, 0.1), so the best model reaches H = -(0.6 log2 0.6 + 0.3 log2 0.3 + 0.1 log2 0.1) = 1.30 bits/char.
std::string markov_text() {
  const std::string letters = "abcdefghijkl";
  std::mt19937 gen(11);
  std::string s = "a";
  for (int i = 1; i < 20000; ++i) {
    const int c = static_cast<int>(letters.find(s.back()));
    const double u = std::uniform_real_distribution<double>(0, 1)(gen);
    const int step = u < 0.6 ? 1 : u < 0.9 ? 5 : 7;
    s.push_back(letters[static_cast<size_t>((c * 3 + step) % 12)]);
  }
  return s;
}

app::TrainResult run(const std::string& path, const std::string& precision, const std::string& loss_scale = "auto",
                     bool report = false) {
  app::TrainConfig c;
  c.model = "gpt";
  c.data_dir = path;
  c.context = 32;
  c.width = 64;
  c.depth = 2;
  c.heads = 2;
  c.batch = 16;
  c.steps = 150;
  c.epochs = 1;
  c.seed = 4;
  c.threads = 1;
  c.progress = false;
  c.precision = precision;
  c.loss_scale = loss_scale;
  c.amp_report = report;
  std::ostringstream log;
  return app::train(c, log);
}

}  // namespace

TEST_CASE("gpt: fp16 with loss scaling and bf16 reach float32's validation loss within 2% after the same steps",
          "[amp][train][gpt]") {
  const testing::TempDir dir;
  const std::string path = dir.file("markov.txt");
  std::ofstream(path) << markov_text();
  const app::TrainResult f32 = run(path, "fp32"), f16 = run(path, "fp16", "auto", true),
                         bf16 = run(path, "bf16"), f16_unscaled = run(path, "fp16", "off");
  INFO("validation bits/char: fp32 " << f32.val_bpc << ", fp16 " << f16.val_bpc << " (scale " << f16.loss_scale << ", "
                                     << f16.skipped_steps << " skipped), bf16 " << bf16.val_bpc
                                     << ", fp16 without loss scaling " << f16_unscaled.val_bpc);
  WARN("gpt on a 1.30-bit Markov text, 150 steps: fp32 " << f32.val_bpc << " bits/char, fp16 " << f16.val_bpc
                                                         << ", bf16 " << bf16.val_bpc << ", fp16 unscaled "
                                                         << f16_unscaled.val_bpc);
  CHECK(f32.val_bpc < 2.0);  // it learned (a uniform guess over 12 letters is 3.58 bits)
  CHECK(std::fabs(f16.val_loss - f32.val_loss) <= 0.02 * f32.val_loss);
  CHECK(std::fabs(bf16.val_loss - f32.val_loss) <= 0.02 * f32.val_loss);
  CHECK(f16.loss_scale >= 1024.0);
  // the autocast report names where the attention ran: its matrix products in fp16, its softmax in float32
  CHECK_THAT(f16.amp_report, Catch::Contains("matmul") && Catch::Contains("softmax") && Catch::Contains("embedding"));
}
