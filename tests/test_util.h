#pragma once
// Small helpers shared by the test files: a temporary directory and the message of an expected mixtape::Error.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "core/error.h"

namespace mixtape::testing {

/// A fresh directory under the system's temporary directory, removed with its contents (permissions restored
/// first, for tests that take them away) at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("mixtape_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

/// The message of the mixtape::Error thrown by f; when none is thrown, a failed check and "".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL_CHECK("expected a mixtape::Error");
  return "";
}

}  // namespace mixtape::testing
