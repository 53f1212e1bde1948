#pragma once
// Shared by the fuzz targets: the loaders take paths, so each input is written to a file in a directory of this
// process's own (under /dev/shm when it exists, so no disk is touched; else $TMPDIR or /tmp), removed at exit.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace mixtape::fuzz {

/// This process's scratch directory, created on first use and removed when the process exits normally.
inline const std::string& temp_dir() {
  static const std::string dir = [] {
    std::string base = "/dev/shm";
    if (!std::filesystem::is_directory(base)) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp && *tmp ? tmp : "/tmp";
    }
    std::string pattern = base + "/mixtape-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      std::perror("mixtape fuzz: mkdtemp");
      std::abort();
    }
    static std::string remove_at_exit;
    remove_at_exit = pattern;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(remove_at_exit, ec);
    });
    return pattern;
  }();
  return dir;
}

/// Writes the input to temp_dir()/name and returns the path.
inline std::string write_input(const uint8_t* data, size_t size, const char* name) {
  const std::string path = temp_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(("mixtape fuzz: writing " + path).c_str());
    std::abort();
  }
  return path;
}

/// Stops the fuzzer with a message: a property that must hold did not (libFuzzer reports a crash with the input).
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "mixtape fuzz: property violated: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace mixtape::fuzz
