// Output destinations and data limits of `mixtape train` / `compare`: an unwritable --save, --log, --out or --plot
// fails before any training with the path and the real reason; temporaries that an interrupted save left are
// cleaned up (never a live process's); a --limit beyond the data set is an error, not a silent cap.
#include <catch2/catch.hpp>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "apps/checkpoint.h"
#include "apps/compare_command.h"
#include "apps/models.h"
#include "apps/trainer.h"
#include "core/error.h"
#include "data/idx.h"
#include "test_util.h"

using namespace mixtape;
using Catch::Matchers::Contains;
using mixtape::testing::error_of;
using mixtape::testing::read_text;
using mixtape::testing::TempDir;
using mixtape::testing::write_text;
namespace fs = std::filesystem;

namespace {

// A Fashion-MNIST directory with `n_train` training and `n_test` test images (28x28, labels i % 10).
void write_fake_fashion(const fs::path& dir, int64_t n_train, int64_t n_test) {
  fs::create_directories(dir);
  for (const auto& [prefix, n] : {std::pair<std::string, int64_t>{"train", n_train}, {"t10k", n_test}}) {
    data::IdxArray images{{n, 28, 28}, std::vector<uint8_t>(static_cast<size_t>(n * 784))};
    for (size_t k = 0; k < images.data.size(); ++k) images.data[k] = static_cast<uint8_t>((k * 7) % 256);
    data::IdxArray labels{{n}, std::vector<uint8_t>(static_cast<size_t>(n))};
    for (size_t i = 0; i < labels.data.size(); ++i) labels.data[i] = static_cast<uint8_t>(i % 10);
    data::write_idx((dir / (prefix + "-images-idx3-ubyte.gz")).string(), images, true);
    data::write_idx((dir / (prefix + "-labels-idx1-ubyte.gz")).string(), labels, true);
  }
}

// A one-epoch MLP run over a fake data set of 64 training and 32 test images in `dir`/data.
app::TrainConfig tiny_config(const TempDir& dir) {
  write_fake_fashion(dir.path / "data", 64, 32);
  app::TrainConfig c;
  c.data_dir = (dir.path / "data").string();
  c.batch = 16;
  c.epochs = 1;
  c.progress = false;
  return c;
}

// The id of a process that has exited and been reaped (kill(pid, 0) fails with ESRCH).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(::kill(pid, 0) == -1);
  REQUIRE(errno == ESRCH);
  return pid;
}

// Names in `dir` that contain `part`.
int count_names_with(const fs::path& dir, const std::string& part) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().find(part) != std::string::npos;
  return n;
}

}  // namespace

TEST_CASE("train: an unwritable --save fails before training, naming the path and the reason", "[train][paths]") {
  TempDir dir;
  app::TrainConfig c = tiny_config(dir);
  std::ostringstream log;
  std::string msg;
  SECTION("the directory does not exist") {
    c.save_path = dir.file("no/such/ckpt.safetensors");
    msg = error_of([&] { app::train(c, log); });
    CHECK_THAT(msg, Contains("--save") && Contains(c.save_path) && Contains("does not exist") &&
                        Contains(dir.file("no/such")));
  }
  SECTION("a file is in the way of the directory") {
    write_text(dir.file("afile"), "x");
    c.save_path = dir.file("afile/ckpt.safetensors");
    msg = error_of([&] { app::train(c, log); });
    CHECK_THAT(msg, Contains("--save") && Contains(c.save_path) && Contains("'" + dir.file("afile") + "'") &&
                        Contains("not a directory"));
    CHECK(read_text(dir.file("afile")) == "x");
  }
  SECTION("the target is a directory") {
    fs::create_directories(dir.file("adir"));
    c.save_path = dir.file("adir");
    msg = error_of([&] { app::train(c, log); });
    CHECK_THAT(msg, Contains("--save") && Contains(c.save_path) && Contains("is a directory"));
    CHECK(fs::is_empty(dir.file("adir")));
  }
  CHECK_THAT(msg, !Contains("Success"));
  CHECK(log.str().find("epoch") == std::string::npos);  // nothing trained
  CHECK(count_names_with(dir.path, "probe") == 0);
}

TEST_CASE("train: --save where even root cannot create files (sysfs) fails before training", "[train][paths]") {
  if (!fs::is_directory("/sys/kernel")) {
    WARN("no /sys/kernel here: the sysfs case is not exercised");
    return;
  }
  TempDir dir;
  app::TrainConfig c = tiny_config(dir);
  c.save_path = "/sys/kernel/mixtape_ckpt_" + std::to_string(::getpid()) + ".safetensors";
  std::ostringstream log;
  const std::string msg = error_of([&] { app::train(c, log); });
  CHECK_THAT(msg, Contains("--save") && Contains(c.save_path) && Contains("cannot create files in '/sys/kernel'"));
  CHECK_THAT(msg, Contains("Permission denied") || Contains("Read-only file system") ||
                      Contains("Operation not permitted"));
  CHECK(log.str().find("epoch") == std::string::npos);
}

TEST_CASE("train: --save into a directory without write permission fails before training", "[train][paths]") {
  if (::geteuid() == 0) {
    WARN("running as root, which ignores permission bits: the read-only directory case is not exercised");
    return;
  }
  TempDir dir;
  app::TrainConfig c = tiny_config(dir);
  fs::create_directories(dir.file("ro"));
  fs::permissions(dir.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
  c.save_path = dir.file("ro/ckpt.safetensors");
  std::ostringstream log;
  const std::string msg = error_of([&] { app::train(c, log); });
  fs::permissions(dir.file("ro"), fs::perms::owner_all);
  CHECK_THAT(msg, Contains("--save") && Contains(c.save_path) && Contains("Permission denied"));
  CHECK(log.str().find("epoch") == std::string::npos);
}

TEST_CASE("train: an unwritable --log fails before training, and checking it changes no file", "[train][paths]") {
  TempDir dir;
  app::TrainConfig c = tiny_config(dir);
  std::ostringstream log;
  SECTION("problems are named") {
    c.log_path = dir.file("no/such/steps.csv");
    CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("--log") && Contains(c.log_path) && Contains("does not exist"));
    fs::create_directories(dir.file("adir"));
    c.log_path = dir.file("adir");
    CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("--log") && Contains(c.log_path) && Contains("is a directory"));
    CHECK(log.str().find("epoch") == std::string::npos);
  }
  SECTION("the check neither truncates an existing log nor leaves a new one behind") {
    write_text(dir.file("old.csv"), "step,epoch\n1,1\n");
    c.log_path = dir.file("old.csv");
    c.save_path = dir.file("no/such/ckpt.safetensors");  // fails after --log was checked
    CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("--save"));
    CHECK(read_text(dir.file("old.csv")) == "step,epoch\n1,1\n");
    c.log_path = dir.file("new.csv");
    CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("--save"));
    CHECK_FALSE(fs::exists(dir.file("new.csv")));
  }
}

TEST_CASE("compare: an unwritable --out or --plot fails before the first run", "[train][paths]") {
  TempDir dir;
  app::CompareOptions o;
  o.base.data_dir = dir.file("no-data-here");  // a run that started would fail on the missing data instead
  o.base.progress = false;
  o.precisions = {"fp32"};
  SECTION("--out is a file") {
    write_text(dir.file("afile"), "x");
    o.out_dir = dir.file("afile");
    const std::string msg = error_of([&] { app::run_compare_command(o); });
    CHECK_THAT(msg, Contains("--out") && Contains(o.out_dir));
    CHECK_THAT(msg, !Contains("Success") && !Contains("Fashion-MNIST"));
  }
  SECTION("--plot in a missing directory") {
    o.out_dir = dir.file("csv");
    o.plot_path = dir.file("no/such/loss.png");
    const std::string msg = error_of([&] { app::run_compare_command(o); });
    CHECK_THAT(msg, Contains("--plot") && Contains(o.plot_path) && Contains("does not exist"));
    CHECK_THAT(msg, !Contains("Fashion-MNIST"));
  }
  SECTION("--plot inside the --out that compare creates is fine") {
    o.out_dir = dir.file("csv");
    o.plot_path = dir.file("csv/loss.png");
    CHECK_THAT(error_of([&] { app::run_compare_command(o); }), Contains("Fashion-MNIST"));  // got as far as the data
    CHECK(fs::is_directory(o.out_dir));
  }
  SECTION("--plot is a directory") {
    o.out_dir = dir.file("csv");
    fs::create_directories(dir.file("adir"));
    o.plot_path = dir.file("adir");
    const std::string msg = error_of([&] { app::run_compare_command(o); });
    CHECK_THAT(msg, Contains("--plot") && Contains(o.plot_path) && Contains("is a directory"));
  }
}

TEST_CASE("check_output_path: names the flag, the path and the reason, and accepts what can be written", "[train][paths]") {
  TempDir dir;
  using app::OutputWrite;
  CHECK_NOTHROW(app::check_output_path(dir.file("new.safetensors"), "--save", OutputWrite::replace_by_rename));
  CHECK_NOTHROW(app::check_output_path(dir.file("new.csv"), "--log", OutputWrite::in_place));
  write_text(dir.file("old.csv"), "keep");
  CHECK_NOTHROW(app::check_output_path(dir.file("old.csv"), "--log", OutputWrite::in_place));
  CHECK(read_text(dir.file("old.csv")) == "keep");
  CHECK_NOTHROW(app::check_output_path("/dev/null", "--log", OutputWrite::in_place));  // a device is written in place
  CHECK_THAT(error_of([] { app::check_output_path("/dev/null", "--save", OutputWrite::replace_by_rename); }),
             Contains("--save") && Contains("/dev/null") && Contains("not a regular file"));
  CHECK_THAT(error_of([] { app::check_output_path("", "--save", OutputWrite::replace_by_rename); }),
             Contains("--save") && Contains("empty"));
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.path);  // a bare file name is in the current directory
  CHECK_NOTHROW(app::check_output_path("bare.safetensors", "--save", OutputWrite::replace_by_rename));
  fs::current_path(cwd);
  CHECK(count_names_with(dir.path, "probe") == 0);
  CHECK_FALSE(fs::exists(dir.file("new.csv")));
}

TEST_CASE("save_checkpoint onto a directory names the directory, not 'Success'", "[train][paths]") {
  TempDir dir;
  fs::create_directories(dir.file("adir"));
  const auto model = app::make_model("mlp");
  optim::SGD opt(model->parameters(), optim::SGDOptions{.lr = 0.1});
  const std::string msg = error_of([&] { app::save_checkpoint(dir.file("adir"), *model, opt, {}, app::RunState{}); });
  CHECK_THAT(msg, Contains(dir.file("adir")) && Contains("is a directory") && !Contains("Success"));
  CHECK(fs::is_empty(dir.file("adir")));
}

TEST_CASE("stale temporaries of interrupted saves are removed, a live process's are kept", "[train][paths]") {
  TempDir dir;
  const std::string target = dir.file("ckpt.safetensors");
  const pid_t dead = dead_pid();
  const std::string stale = target + ".tmp." + std::to_string(dead);
  const std::string live = target + ".tmp." + std::to_string(::getppid());  // our parent runs while we do
  const std::string mine = target + ".tmp." + std::to_string(::getpid());
  const std::string other = dir.file("other.safetensors.tmp." + std::to_string(dead));  // another target's
  const std::string not_pid = target + ".tmp.12ab";
  const std::string zero = target + ".tmp.0";  // kill(0, 0) would ask about our own process group
  for (const std::string& p : {stale, live, mine, other, not_pid, zero}) write_text(p, std::string(1000, 'x'));
  write_text(target, "the previous checkpoint");
  std::ostringstream log;
  CHECK(app::remove_stale_temporaries(target, log) == 1);
  CHECK_FALSE(fs::exists(stale));
  for (const std::string& p : {live, mine, other, not_pid, zero}) CHECK(fs::exists(p));
  CHECK(read_text(target) == "the previous checkpoint");
  CHECK_THAT(log.str(), Contains("removed a stale temporary file '" + stale + "'") &&
                            Contains("left by an interrupted save") && Contains(std::to_string(dead)));
  // A missing directory or target is no error (the destination check reports those).
  std::ostringstream quiet;
  CHECK(app::remove_stale_temporaries(dir.file("no/such/x"), quiet) == 0);
  CHECK(quiet.str().empty());
}

TEST_CASE("train --save removes its target's stale temporary at the start of the run", "[train][paths]") {
  TempDir dir;
  app::TrainConfig c = tiny_config(dir);
  c.save_path = dir.file("ckpt.safetensors");
  const std::string stale = c.save_path + ".tmp." + std::to_string(dead_pid());
  const std::string live = c.save_path + ".tmp." + std::to_string(::getppid());
  write_text(stale, std::string(4096, 's'));
  write_text(live, std::string(4096, 'l'));
  std::ostringstream log;
  app::train(c, log);
  CHECK_FALSE(fs::exists(stale));
  CHECK(read_text(live) == std::string(4096, 'l'));
  const std::string text = log.str();
  CHECK_THAT(text, Contains("removed a stale temporary file '" + stale + "'"));
  CHECK(text.find("removed a stale") < text.find("epoch 1/1"));  // at the start, before training
  CHECK(app::read_checkpoint(c.save_path).state.epoch == 1);
}

TEST_CASE("train: --limit or --test-limit beyond the data set is an error, equal to its size is fine", "[train][paths]") {
  TempDir dir;
  app::TrainConfig c = tiny_config(dir);  // 64 training and 32 test images
  std::ostringstream log;
  c.limit = 65;
  CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("limit 65") && Contains("64 samples"));
  c.limit = 64;
  c.test_limit = 33;
  CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("limit 33") && Contains("32 samples") && Contains("t10k"));
  c.test_limit = 0;
  CHECK_THAT(error_of([&] { app::train(c, log); }), Contains("--test-limit"));
  c.test_limit = 32;
  const app::TrainResult r = app::train(c, log);
  CHECK(r.samples == 64);
  CHECK(r.steps == 4);
}
