#pragma once
// Small helpers shared by the test files: a temporary directory, whole files read and written, the message of an
// expected mixtape::Error, and row-major index math for references written in the tests.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

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

/// The whole file at `path` ("" when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// Replaces the file at `path` with `text`.
inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

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

/// Row-major element strides of a shape.
inline std::vector<int64_t> strides_of(const std::vector<int64_t>& dims) {
  std::vector<int64_t> st(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i)
    st[static_cast<size_t>(i)] = st[static_cast<size_t>(i) + 1] * dims[static_cast<size_t>(i) + 1];
  return st;
}

/// The multi-index of flat element `lin` of a shape.
inline std::vector<int64_t> unravel(int64_t lin, const std::vector<int64_t>& dims) {
  std::vector<int64_t> idx(dims.size());
  for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) {
    idx[static_cast<size_t>(i)] = lin % dims[static_cast<size_t>(i)];
    lin /= dims[static_cast<size_t>(i)];
  }
  return idx;
}

}  // namespace mixtape::testing
