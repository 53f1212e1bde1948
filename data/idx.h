#pragma once
// IDX files (the format of MNIST and Fashion-MNIST): a 4-byte magic (0, 0, type code, ndim), ndim
// big-endian uint32 dimensions, then the elements row-major. Only unsigned bytes (type 0x08) are supported.
#include <cstdint>
#include <string>
#include <vector>

namespace mixtape::data {

/// The contents of an IDX file: its dimensions (outermost first) and its unsigned-byte elements, row-major.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

/// Reads an unsigned-byte IDX file, gzip-compressed or plain; throws mixtape::Error naming the file and the problem.
IdxArray read_idx(const std::string& path);

/// Writes `array` as an IDX file (gzip-compressed when `gzip`); throws mixtape::Error when invalid or not writable.
void write_idx(const std::string& path, const IdxArray& array, bool gzip);

}  // namespace mixtape::data
