// load_safetensors against hostile files (issue 18): every length, count and offset in a file is checked before it
// is used, deep nesting is refused while parsing, and messages never print an unbounded value. Files are built
// byte by byte here, as an attacker would, not with save_safetensors.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/safetensors.h"
#include "core/shape.h"
#include "core/tensor.h"

using namespace mixtape;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

/// A directory for this test run, removed at the end.
struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("mixtape_safetensors_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

/// Writes a safetensors file with this header text (padded to 8 bytes) and `data_bytes` zero bytes of data.
std::string write_file(const TempDir& t, const std::string& name, const std::string& header, size_t data_bytes) {
  const std::string path = (t.dir / name).string();
  std::ofstream out(path, std::ios::binary);
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << h << std::string(data_bytes, '\0');
  return path;
}

std::string load_error(const std::string& path) {
  try {
    (void)load_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without an error)";
}

}  // namespace

TEST_CASE("safetensors: a well-formed hand-made file loads", "[safetensors]") {
  TempDir t;
  const std::string path =
      write_file(t, "ok.safetensors", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"k":"v"}})", 24);
  const SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.count("w") == 1);
  CHECK(f.tensors.at("w").shape() == (Shape{2, 3}));
  CHECK(f.metadata.at("k") == "v");
}

TEST_CASE("safetensors: element and byte counts that overflow are refused before anything is allocated",
          "[safetensors]") {
  TempDir t;
  // 2^61 + 1 doubles are 2^64 + 8 bytes: wrapped around, that is 8, which the offsets below "match".
  const std::string wrap = write_file(
      t, "wrap.safetensors", R"({"t":{"dtype":"F64","shape":[2305843009213693953],"data_offsets":[0,8]}})", 8);
  CHECK_THAT(load_error(wrap), Contains("wrap.safetensors") && Contains("tensor 't'") && Contains("more bytes than can exist"));
  // 2^32 x 2^32 elements overflow int64.
  const std::string elems = write_file(
      t, "elems.safetensors", R"({"t":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0);
  CHECK_THAT(load_error(elems), Contains("more elements than can exist"));
  const std::string huge_dim = write_file(
      t, "dim.safetensors", R"({"t":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})", 0);
  CHECK_THAT(load_error(huge_dim), Contains("more elements than can exist"));
  const std::string nine = write_file(
      t, "nine.safetensors", R"({"t":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", 1);
  CHECK_THAT(load_error(nine), Contains("at most 8"));
}

TEST_CASE("safetensors: deeply nested JSON is refused while parsing, without recursion", "[safetensors]") {
  TempDir t;
  const size_t depth = 1 << 20;  // 2 MiB of brackets: enough to overflow a recursive printer's stack
  const std::string deep_shape = std::string(R"({"t":{"dtype":"F32","shape":)") + std::string(depth, '[') +
                                 std::string(depth, ']') + R"(,"data_offsets":[0,0]}})";
  const std::string p1 = write_file(t, "deep_shape.safetensors", deep_shape, 0);
  CHECK_THAT(load_error(p1), Contains("deep_shape.safetensors") && Contains("nested more than"));
  const std::string p2 = write_file(t, "deep_root.safetensors", std::string(depth, '[') + std::string(depth, ']'), 0);
  CHECK_THAT(load_error(p2), Contains("nested more than"));
  const std::string p3 = write_file(t, "deep_meta.safetensors", R"({"__metadata__":{"k":[[[1]]]}})", 0);
  CHECK_THAT(load_error(p3), Contains("nested more than"));
}

TEST_CASE("safetensors: malformed entries are named without printing them whole", "[safetensors]") {
  TempDir t;
  const std::pair<const char*, const char*> cases[] = {
      {R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", "non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "non-negative integers"},
      {R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", "bad shape \"2\""},
      {R"({"t":{"dtype":"F32","shape":{"a":1},"data_offsets":[0,4]}})", "bad shape an object of 1 keys"},
      {R"({"t":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "unsupported dtype 7"},
      {R"({"t":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}})", "unsupported dtype \"F128\""},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "needs 4 bytes"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "bad data_offsets [0]"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", "bad data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "unexpected key 'x'"},
      {R"({"t":[1,2]})", "must be an object, got [1,2]"},
      {R"({"t":{"dtype":"F32","shape":[1]}})", "lacks dtype, shape or data_offsets"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "is truncated"},
      {R"({"__metadata__":{"k":5}})", "metadata 'k' is not a string but 5"},
      {R"([1,2,3])", "expected a JSON object, got [1,2,3]"},
      {R"({"t":{)", "not valid JSON"},
  };
  int i = 0;
  for (const auto& [header, want] : cases) {
    INFO(header);
    const std::string path = write_file(t, "bad" + std::to_string(i++) + ".safetensors", header, 4);
    const std::string err = load_error(path);
    CHECK_THAT(err, Contains(want) && Contains(path));
    CHECK(err.size() < 600);  // a description, not a dump
  }
  // A long shape list is summarised, not printed.
  std::string long_shape = R"({"t":{"dtype":"F32","shape":[)";
  for (int k = 0; k < 100000; ++k) long_shape += "-1,";
  long_shape += R"(-1],"data_offsets":[0,0]}})";
  const std::string err = load_error(write_file(t, "long.safetensors", long_shape, 0));
  CHECK_THAT(err, Contains("a list of 100001 values"));
  CHECK(err.size() < 600);
}

TEST_CASE("safetensors: a header length beyond the file or the 100 MiB limit is refused before reading it",
          "[safetensors]") {
  TempDir t;
  const std::string path = (t.dir / "claims.safetensors").string();
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = uint64_t{1} << 40;
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
    out << "{}";
  }
  CHECK_THAT(load_error(path), Contains("header claims 1099511627776 bytes"));
}

TEST_CASE("shapes whose element or byte count overflows are errors, not undefined behaviour", "[safetensors][tensor]") {
  const Shape big{int64_t{1} << 32, int64_t{1} << 32};
  CHECK_THROWS_WITH(big.numel(), Contains("more elements than an int64 can count"));
  CHECK_THROWS_WITH(Tensor::empty(Shape{int64_t{1} << 61}, DType::f64), Contains("size in bytes overflows"));
}
