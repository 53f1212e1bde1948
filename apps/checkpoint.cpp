#include "apps/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>

#include "core/json_limits.h"
#include "core/safetensors.h"

namespace mixtape::app {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "mixtape-checkpoint-v1";

/// A file name to suggest when `flag` names a directory.
std::string example_file_name(const std::string& flag) {
  if (flag == "--save") return "checkpoint.safetensors";
  if (flag == "--plot") return "loss.png";
  return "steps.csv";
}

/// The directory a file path lives in ("." for a bare name).
fs::path directory_of(const fs::path& path) {
  const fs::path dir = path.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

/// The deepest existing ancestor of `dir` that is not a directory (a file in the way), or "" when none.
fs::path file_in_the_way(const fs::path& dir) {
  for (fs::path p = dir; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    std::error_code ec;
    const fs::file_status st = fs::status(p, ec);
    if (fs::exists(st) && !fs::is_directory(st)) return p;
  }
  return {};
}

/// Throws unless `dir` is an existing, searchable directory.
void check_directory(const fs::path& dir, const std::string& flag, const std::string& path) {
  const std::string head = detail::cat(flag, ": cannot write '", path, "': ");
  const fs::path blocker = file_in_the_way(dir);
  MIXTAPE_CHECK(blocker.empty(), head, "'", blocker.string(), "' is not a directory");
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  MIXTAPE_CHECK(st.type() != fs::file_type::not_found, head, "directory '", dir.string(), "' does not exist");
  MIXTAPE_CHECK(!ec, head, "cannot access directory '", dir.string(), "': ", ec.message());
  MIXTAPE_CHECK(fs::is_directory(st), head, "'", dir.string(), "' is not a directory");
}

/// Creates and removes a probe file in `dir`; returns 0 or the errno of the failed creation.
int probe_directory(const fs::path& dir, const std::string& name) {
  const fs::path probe = dir / ("." + name + ".probe." + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return errno;  // captured before any other call can change it
  ::close(fd);
  ::unlink(probe.c_str());
  return 0;
}

/// Opens the existing file `path` for writing without changing it; returns 0 or the errno of the failed open.
int probe_existing_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

/// The pid in the name `prefix`<digits>, or 0 when `name` is not of that form (or the number is no pid).
pid_t temporary_pid(const std::string& name, const std::string& prefix) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 10 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  const long long pid = std::stoll(digits);
  return pid > 0 && pid <= INT_MAX ? static_cast<pid_t>(pid) : 0;  // never 0 or negative: kill() would mean a group
}

/// Whether process `pid` has ended (kill(pid, 0) fails with ESRCH; EPERM means it runs under another user).
bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                     const std::map<std::string, Tensor>& scaler_state, const RunState& state) {
  std::error_code ec;
  MIXTAPE_CHECK(!fs::is_directory(path, ec), "cannot save a checkpoint to '", path,
                "': it is a directory; name a file in it, e.g. '", (fs::path(path) / "checkpoint.safetensors").string(), "'");
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, t] : model.state_dict()) tensors["model." + name] = t;
  for (const auto& [name, t] : optimizer.state_dict()) tensors["optim." + name] = t;
  for (const auto& [name, t] : scaler_state) tensors["scaler." + name] = t;
  const std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"epoch", std::to_string(state.epoch)},
      {"step", std::to_string(state.step)},
      {"rng_seed", std::to_string(state.rng_seed)},
      {"rng_offset", std::to_string(state.rng_offset)},
      {"config", state.config.dump()},
  };
  save_safetensors(path, tensors, metadata);
}

Checkpoint read_checkpoint(const std::string& path) {
  const SafetensorsFile file = load_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = file.metadata.find(key);
    MIXTAPE_CHECK(it != file.metadata.end(), "'", path, "' is not a mixtape checkpoint (no '", key, "' in its metadata)");
    return it->second;
  };
  MIXTAPE_CHECK(meta("format") == kFormat, "'", path, "' has checkpoint format '", meta("format"), "', expected ", kFormat);
  Checkpoint ck;
  ck.path = path;
  // Whole decimal numbers only ("12abc", "+3", " 4" and "-3" are corrupt). Epoch and step count up from here by
  // one: at most 2^53, as the optimizer's and scaler's counts, so no run can overflow them.
  auto counter = [&](const char* key, uint64_t max) {
    const std::string& text = meta(key);
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    const bool digits = !text.empty() && end == text.data() + text.size();
    const bool fits = ec == std::errc() && v <= max;
    MIXTAPE_CHECK(digits && fits, "'", path, "' has corrupt run metadata (", key, " ",
                  json_limits::brief(nlohmann::json(text)), digits ? " is too large" : " is not a whole number", ")");
    return v;
  };
  constexpr uint64_t kMaxCount = uint64_t{1} << 53;
  ck.state.epoch = static_cast<int64_t>(counter("epoch", kMaxCount));
  ck.state.step = static_cast<int64_t>(counter("step", kMaxCount));
  ck.state.rng_seed = counter("rng_seed", UINT64_MAX);
  ck.state.rng_offset = counter("rng_offset", UINT64_MAX);
  // The run's config is a flat object of scalars (trainer.cpp's to_json): nothing deeper is accepted.
  ck.state.config = json_limits::parse(meta("config"), 1, detail::cat("'", path, "' has corrupt run metadata (config)"));
  MIXTAPE_CHECK(ck.state.config.is_object(), "'", path, "' has corrupt run metadata (config is ",
                json_limits::brief(ck.state.config), ", not an object)");
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind("model.", 0) == 0) ck.model_state[name.substr(6)] = t;
    else if (name.rfind("optim.", 0) == 0) ck.optim_state[name.substr(6)] = t;
    else if (name.rfind("scaler.", 0) == 0) ck.scaler_state[name.substr(7)] = t;
    else throw Error(detail::cat("'", path, "' holds an unexpected tensor '", name, "'"));
  }
  return ck;
}

void apply_checkpoint(const Checkpoint& ck, nn::Module& model, optim::Optimizer& optimizer) {
  try {
    model.load_state_dict(ck.model_state);
    optimizer.load_state_dict(ck.optim_state);
  } catch (const Error& e) {
    throw Error(detail::cat("'", ck.path, "' does not match this run: ", e.what()));
  }
}

void check_output_path(const std::string& path, const std::string& flag, OutputWrite how) {
  MIXTAPE_CHECK(!path.empty(), flag, ": the path is empty: name a file");
  const fs::path target(path);
  check_directory(directory_of(target), flag, path);
  std::error_code ec;
  const fs::file_status st = fs::status(target, ec);
  MIXTAPE_CHECK(!fs::is_directory(st), flag, ": '", path, "' is a directory; name a file in it, e.g. '",
                (target / example_file_name(flag)).string(), "'");
  const bool exists = fs::exists(st);
  if (how == OutputWrite::replace_by_rename) {
    MIXTAPE_CHECK(!exists || fs::is_regular_file(st), flag, ": '", path,
                  "' exists and is not a regular file; it would be replaced by renaming a file onto it");
  } else if (exists) {  // written in place: only the file itself matters (a device such as /dev/null is fine)
    if (!fs::is_regular_file(st)) return;
    const int err = probe_existing_file(target);
    MIXTAPE_CHECK(err == 0, flag, ": cannot write '", path, "': ", std::strerror(err));
    return;
  }
  const int err = probe_directory(directory_of(target), target.filename().string());
  MIXTAPE_CHECK(err == 0, flag, ": cannot write '", path, "': cannot create files in '", directory_of(target).string(),
                "': ", std::strerror(err));
}

int remove_stale_temporaries(const std::string& path, std::ostream& log) {
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  fs::directory_iterator it(directory_of(target), ec);
  if (ec || target.filename().empty()) return 0;  // the destination check reports a missing directory
  int removed = 0;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const pid_t pid = temporary_pid(it->path().filename().string(), prefix);
    if (pid == 0 || pid == ::getpid() || !it->is_regular_file(ec) || it->is_symlink(ec)) continue;
    if (!process_gone(pid)) continue;  // a live process is saving right now: never touch its file
    const std::string shown = (target.parent_path() / it->path().filename()).string();  // as the user named it
    const uintmax_t bytes = it->file_size(ec);
    std::error_code rm;
    if (fs::remove(it->path(), rm)) {
      ++removed;
      std::ostringstream size;  // formatted apart, so the log stream's own format is left as it was
      size << std::fixed << std::setprecision(1) << static_cast<double>(ec ? 0 : bytes) / 1e6;
      log << "removed a stale temporary file '" << shown << "' (" << size.str()
          << " MB) left by an interrupted save (process " << pid << " no longer runs)\n";
    } else {
      log << "mixtape: warning: cannot remove the stale temporary file '" << shown << "': "
          << rm.message() << "\n";
    }
  }
  return removed;
}

}  // namespace mixtape::app
