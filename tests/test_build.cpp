// The build configuration seen by code: the generated build info agrees with the compile definitions.
#include <catch2/catch.hpp>

#include <regex>
#include <string>

#include "core/backend.h"
#include "mixtape/build_info.h"

TEST_CASE("build info: version, build type and compiler are filled in", "[build]") {
  CHECK(std::regex_match(std::string(MIXTAPE_VERSION_STRING), std::regex(R"(\d+\.\d+\.\d+)")));
  CHECK_FALSE(std::string(MIXTAPE_BUILD_TYPE).empty());
  CHECK_FALSE(std::string(MIXTAPE_CXX_COMPILER).empty());
}

TEST_CASE("build info: the CUDA flag matches MIXTAPE_WITH_CUDA", "[build]") {
#ifdef MIXTAPE_WITH_CUDA
  CHECK(MIXTAPE_BUILD_CUDA == 1);
  CHECK_FALSE(std::string(MIXTAPE_CUDA_ARCHITECTURES).empty());
  CHECK(std::string(MIXTAPE_CUDNN_BUILD_VERSION).rfind("9.", 0) == 0);
  CHECK(mixtape::cuda_device_count() >= 0);
#else
  CHECK(MIXTAPE_BUILD_CUDA == 0);
  CHECK(std::string(MIXTAPE_CUDA_ARCHITECTURES).empty());
  CHECK(mixtape::cuda_device_count() == 0);  // a CPU-only build never reports GPUs
  CHECK_FALSE(mixtape::device_available(mixtape::Device::cuda(0)));
#endif
  CHECK(mixtape::device_available(mixtape::Device::cpu()));
}
