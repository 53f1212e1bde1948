// The test runner of the multi-process tests (CTest starts it on 2 ranks through mpiexec): the distributed layer is
// started before Catch2 runs, and each rank runs every test; a failure on any rank fails the run.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "dist/dist.h"

int main(int argc, char* argv[]) {
  mixtape::dist::init();
  const int failed = Catch::Session().run(argc, argv);
  mixtape::dist::barrier();  // every rank finishes its tests before any leaves
  return failed == 0 ? 0 : 1;
}
