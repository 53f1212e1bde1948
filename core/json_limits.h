#pragma once
// Parsing JSON that comes from a file (safetensors headers, checkpoint metadata) as hostile input: nesting is
// capped while parsing (nlohmann's parser is iterative, but copying, comparing and printing a value recurse into
// it, so a deeply nested value would overflow the stack later), and values are described in messages without
// printing them whole. Internal to mixtape's own .cpp files (needs nlohmann_json).
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace mixtape::json_limits {

/// Parses `text`; throws mixtape::Error "<what>: ..." when it is not JSON or nests deeper than `max_depth`
/// (the root value is depth 0; "[[1]]" has depth 1 inside the root).
inline nlohmann::json parse(const std::string& text, int max_depth, const std::string& what) {
  try {
    return nlohmann::json::parse(text, [max_depth, &what](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > max_depth)
        throw Error(detail::cat(what, ": JSON nested more than ", max_depth, " levels deep"));
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    throw Error(detail::cat(what, ": not valid JSON (", e.what(), ")"));
  }
}

/// A short description of `v` for an error message: small flat values as they are, anything else by kind and size.
inline std::string brief(const nlohmann::json& v) {
  auto flat_small = [&] {
    if (!v.is_array() || v.size() > 8) return false;
    for (const auto& e : v)
      if (e.is_structured()) return false;
    return true;
  };
  if (v.is_primitive() && !(v.is_string() && v.get_ref<const std::string&>().size() > 40)) return v.dump();
  if (flat_small()) return v.dump();
  if (v.is_string()) return detail::cat("a string of ", v.get_ref<const std::string&>().size(), " characters");
  if (v.is_array()) return detail::cat("a list of ", v.size(), " values");
  return detail::cat("an object of ", v.size(), " keys");
}

}  // namespace mixtape::json_limits
