#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mixtape {

/// The one exception type of mixtape: the message says what was expected, what was found, and where.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
/// Concatenates any streamable values into one string.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace mixtape

/// Throws mixtape::Error with the concatenated message when `cond` is false.
#define MIXTAPE_CHECK(cond, ...)                                         \
  do {                                                                   \
    if (!(cond)) throw ::mixtape::Error(::mixtape::detail::cat(__VA_ARGS__)); \
  } while (0)
