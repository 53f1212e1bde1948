#include "core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace mixtape {

void write_file_atomically(const std::string& path, const std::function<bool(std::FILE*)>& write,
                           const std::string& what) {
  namespace fs = std::filesystem;
  const std::string noun = what.empty() ? std::string() : "the " + what + " ";
  const fs::path target(path);
  const fs::path tmp = target.parent_path() / (target.filename().string() + ".tmp." + std::to_string(::getpid()));
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    const int open_errno = errno;  // before anything else can change it
    MIXTAPE_CHECK(f != nullptr, "cannot write ", noun, "'", tmp.string(), "': ", std::strerror(open_errno));
    bool ok = write(f);
    ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    int saved = ok ? 0 : errno;  // the first failure's reason, before fclose or remove can change errno
    if (std::fclose(f) != 0 && ok) {
      ok = false;
      saved = errno;
    }
    if (!ok) {
      const std::string err = std::strerror(saved);
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error(detail::cat("writing ", noun, "'", path, "' failed (", err, "); the previous file, if any, is unchanged"));
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;  // the rename's error is the one to report, not the cleanup's
    fs::remove(tmp, ignored);
    throw Error(detail::cat("cannot rename the temporary file onto ", noun, "'", path, "': ", ec.message(),
                            "; the previous file, if any, is unchanged"));
  }
}

}  // namespace mixtape
