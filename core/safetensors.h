#pragma once
// safetensors files (8-byte little-endian header length, JSON header, raw little-endian data), the format
// PyTorch users open with `safetensors.torch.load_file`. Writes are atomic (temporary file + rename) and
// reads validate everything, including CRC-32 checksums mixtape stores in the metadata.
#include <map>
#include <string>

#include "core/tensor.h"

namespace mixtape {

/// The contents of a safetensors file.
struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;           ///< on the CPU
  std::map<std::string, std::string> metadata;     ///< the header's "__metadata__" (string values)
};

/// Writes tensors (from any device) and string metadata to `path` atomically: a temporary file in the same
/// directory is written, flushed and renamed over `path`, so a crash never leaves a half-written file.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads and validates a safetensors file; throws mixtape::Error naming the file and the problem
/// (missing, truncated, corrupt header, bad dtype/shape/offsets, checksum mismatch).
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace mixtape
