#pragma once
// Writing a file so that it is never seen half written: checkpoints (core/safetensors.h), the comparison record and
// report (apps/report.h).
#include <cstdio>
#include <functional>
#include <string>

namespace mixtape {

/// Writes `path` through `path`.tmp.<pid> in the same directory: `write` fills the open temporary (returning false
/// when a write failed), which is flushed to disk and renamed over `path`, so a crash or a failed write leaves the
/// previous file as it was (apps/checkpoint.h removes temporaries a dead process left). Throws mixtape::Error naming
/// the file, `what` ("report" gives "the report '...'"; empty: the path alone) and the reason, removing the
/// temporary.
void write_file_atomically(const std::string& path, const std::function<bool(std::FILE*)>& write,
                           const std::string& what = "");

}  // namespace mixtape
