#include "core/device.h"

#include "core/error.h"

namespace mixtape {

std::string Device::to_string() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    const std::string idx = s.substr(5);
    if (idx.find_first_not_of("0123456789") == std::string::npos && idx.size() < 4) return cuda(std::stoi(idx));
  }
  throw Error(detail::cat("unknown device '", s, "': expected cpu, cuda or cuda:N"));
}

}  // namespace mixtape
