// libFuzzer target: data/idx.h read_idx on arbitrary bytes (plain or gzip: zlib detects which). A file it accepts
// must describe itself (the product of the dimensions is the number of bytes) and survive write_idx + read_idx.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "data/idx.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mixtape;
  const std::string path = fuzz::write_input(data, size, "input.idx");
  data::IdxArray array;
  try {
    array = data::read_idx(path);
  } catch (const Error&) {
    return 0;  // rejected with a message: what a hostile file should get
  }
  uint64_t n = 1;
  for (int64_t d : array.dims) {
    if (d <= 0) fuzz::fail("read_idx accepted a non-positive dimension");
    n *= static_cast<uint64_t>(d);
  }
  if (array.dims.empty() || n != array.data.size()) fuzz::fail("read_idx: dimensions do not match the data size");
  const std::string copy = fuzz::temp_dir() + "/copy.idx";
  data::write_idx(copy, array, false);  // throws (a crash here) if read_idx returned something write_idx rejects
  const data::IdxArray again = data::read_idx(copy);
  if (again.dims != array.dims || again.data != array.data) fuzz::fail("read_idx(write_idx(a)) != a");
  return 0;
}
