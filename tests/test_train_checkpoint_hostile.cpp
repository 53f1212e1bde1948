// Checkpoints are files from outside: their run metadata is parsed as hostile input (issue 18). A deeply nested
// config, or negative progress counters, give a clear error naming the file instead of a crash or a nonsense run.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "apps/checkpoint.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "core/tensor.h"

using namespace mixtape;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

/// A checkpoint-looking file with this metadata (the format tag and counters filled in unless given).
std::string write_checkpoint(const fs::path& dir, const std::string& name, std::map<std::string, std::string> meta) {
  meta.emplace("format", "mixtape-checkpoint-v1");
  meta.emplace("epoch", "1");
  meta.emplace("step", "10");
  meta.emplace("rng_seed", "1");
  meta.emplace("rng_offset", "0");
  meta.emplace("config", "{}");
  const std::string path = (dir / name).string();
  save_safetensors(path, {{"model.w", zeros(Shape{2})}}, meta);
  return path;
}

std::string read_error(const std::string& path) {
  try {
    (void)app::read_checkpoint(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(read without an error)";
}

}  // namespace

TEST_CASE("checkpoint: hostile run metadata is refused with the file named", "[train][checkpoint]") {
  const fs::path dir = fs::temp_directory_path() / ("mixtape_ck_hostile_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string deep = std::string(1 << 20, '[') + std::string(1 << 20, ']');
  const std::string p1 = write_checkpoint(dir, "deep.safetensors", {{"config", deep}});
  CHECK_THAT(read_error(p1), Contains("deep.safetensors") && Contains("nested more than 1 levels"));
  const std::string p2 = write_checkpoint(dir, "nested.safetensors", {{"config", R"({"model":{"x":1}})"}});
  CHECK_THAT(read_error(p2), Contains("nested more than 1 levels"));
  const std::string p3 = write_checkpoint(dir, "list.safetensors", {{"config", "[1,2]"}});
  CHECK_THAT(read_error(p3), Contains("config is [1,2], not an object"));
  const std::string p4 = write_checkpoint(dir, "negative.safetensors", {{"epoch", "-3"}});
  CHECK_THAT(read_error(p4), Contains("negative.safetensors") && Contains("epoch \"-3\" is not a whole number"));
  const std::string p5 = write_checkpoint(dir, "words.safetensors", {{"step", "ten"}});
  CHECK_THAT(read_error(p5), Contains("corrupt run metadata (step \"ten\" is not a whole number)"));
  // Partly numeric counters were once read up to the first non-digit ("12abc" as 12).
  for (const char* text : {"12abc", "+3", " 4", "", "0x10", "1e3"}) {
    INFO(text);
    const std::string p = write_checkpoint(dir, "partial.safetensors", {{"step", text}});
    CHECK_THAT(read_error(p), Contains("step") && Contains("is not a whole number"));
  }
  // Counters a run would overflow by counting on (step INT64_MAX + 1 was undefined behaviour) are refused, 2^53
  // (the optimizer's limit too) is accepted; the generator's state takes any 64-bit value.
  for (const char* text : {"9223372036854775807", "9007199254740993", "18446744073709551616"}) {
    INFO(text);
    const std::string p = write_checkpoint(dir, "huge.safetensors", {{"epoch", text}});
    CHECK_THAT(read_error(p), Contains("huge.safetensors") && Contains("(epoch \"") && Contains("is too large)"));
  }
  const std::string edge = write_checkpoint(dir, "edge.safetensors", {{"step", "9007199254740992"},
                                                                     {"rng_seed", "18446744073709551615"}});
  const app::Checkpoint at_limit = app::read_checkpoint(edge);
  CHECK(at_limit.state.step == int64_t{1} << 53);
  CHECK(at_limit.state.rng_seed == UINT64_MAX);
  const std::string ok = write_checkpoint(dir, "ok.safetensors", {{"config", R"({"model":"mlp","batch":128})"}});
  const app::Checkpoint ck = app::read_checkpoint(ok);
  CHECK(ck.state.epoch == 1);
  CHECK(ck.state.config["batch"] == 128);
  fs::remove_all(dir);
}
