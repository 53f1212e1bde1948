#pragma once
// Reading the committed PyTorch reference data (tests/data/*.json, written by the scripts in tests/reference/).
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace mixtape::testing {

/// Parses tests/data/<file>; throws naming the path when it cannot be opened.
inline nlohmann::json load_reference(const std::string& file) {
  const std::filesystem::path path = std::filesystem::path(__FILE__).parent_path() / "data" / file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open the PyTorch reference " + path.string());
  return nlohmann::json::parse(in);
}

/// A number of the reference: finite values are JSON numbers, the others the strings "nan", "inf", "-inf".
inline double number(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (s == "inf") return std::numeric_limits<double>::infinity();
  if (s == "-inf") return -std::numeric_limits<double>::infinity();
  throw std::runtime_error("bad number in the reference: " + s);
}

/// A list of reference numbers.
inline std::vector<double> numbers(const nlohmann::json& v) {
  std::vector<double> out;
  for (const nlohmann::json& x : v) out.push_back(number(x));
  return out;
}

/// "float64"/"float32" as a DType.
inline DType dtype_of_name(const std::string& s) {
  if (s == "float64") return DType::f64;
  if (s == "float32") return DType::f32;
  throw std::runtime_error("bad dtype in the reference: " + s);
}

}  // namespace mixtape::testing
