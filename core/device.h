#pragma once
#include <string>

namespace mixtape {

/// Where a tensor lives: the CPU, or CUDA GPU number `index`.
struct Device {
  enum class Type : unsigned char { cpu, cuda };
  Type type = Type::cpu;
  int index = 0;

  /// The host.
  static constexpr Device cpu() { return {Type::cpu, 0}; }
  /// CUDA GPU number i.
  static constexpr Device cuda(int i = 0) { return {Type::cuda, i}; }
  bool is_cpu() const { return type == Type::cpu; }
  bool is_cuda() const { return type == Type::cuda; }
  /// "cpu" or "cuda:N".
  std::string to_string() const;
  /// Parses "cpu", "cuda" or "cuda:N"; throws mixtape::Error otherwise.
  static Device parse(const std::string& s);
  friend bool operator==(const Device& a, const Device& b) { return a.type == b.type && a.index == b.index; }
};

}  // namespace mixtape
