#pragma once
// `mixtape sample`: text from a GPT checkpoint written by `mixtape train --model gpt --save FILE`.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace mixtape::app {

struct SampleOptions {
  std::string checkpoint;
  std::string prompt;        ///< UTF-8; every character must be in the model's vocabulary
  int64_t tokens = 300;      ///< characters to generate after the prompt
  double temperature = 0.8;  ///< logits divided by it before sampling; 0: always the most likely character
  uint64_t seed = 0;
  std::string device = "cpu";
};

/// The text a GPT checkpoint writes after `prompt` (the prompt included). Throws mixtape::Error naming the file for
/// a checkpoint that is not a GPT's, and the character for a prompt outside the vocabulary.
std::string sample_text(const SampleOptions& options);

CLI::App* add_sample_command(CLI::App& app, SampleOptions& options);
/// Prints the text (prompt and generated characters) on stdout.
int run_sample_command(const SampleOptions& options);

}  // namespace mixtape::app
