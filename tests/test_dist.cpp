// The distributed layer in one process (dist/dist.h): the launcher's environment is read right, bad values are
// named, and without a launcher the world is this process alone, its collectives leaving tensors as they are.
// (2-rank collectives: tests/dist/, run by CTest through mpiexec.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "data/loader.h"
#include "dist/dist.h"

using namespace mixtape;

namespace {
/// A fake environment.
auto env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}
}  // namespace

TEST_CASE("dist: the launcher's environment gives rank, world size and local rank", "[dist]") {
  const dist::LaunchInfo none = dist::launch_info(env({}));
  CHECK_FALSE(none.launched);
  CHECK(none.world_size == 1);
  CHECK(none.rank == 0);
  const dist::LaunchInfo ompi = dist::launch_info(
      env({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}));
  CHECK(ompi.launched);
  CHECK(ompi.launcher == "Open MPI");
  CHECK(ompi.world_size == 4);
  CHECK(ompi.rank == 3);
  CHECK(ompi.local_rank == 1);
  const dist::LaunchInfo pmi = dist::launch_info(env({{"PMI_SIZE", "2"}, {"PMI_RANK", "0"}, {"MPI_LOCALRANKID", "0"}}));
  CHECK(pmi.launched);
  CHECK(pmi.launcher == "PMI");
  CHECK(pmi.world_size == 2);
  CHECK_THROWS_WITH(dist::launch_info(env({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "2"}})),
                    Catch::Contains("OMPI_COMM_WORLD_RANK='2'") && Catch::Contains("from 0 to 1"));
  CHECK_THROWS_WITH(dist::launch_info(env({{"PMI_SIZE", "two"}, {"PMI_RANK", "0"}})), Catch::Contains("PMI_SIZE='two'"));
  CHECK_THROWS_WITH(dist::launch_info(env({{"OMPI_COMM_WORLD_SIZE", "0"}, {"OMPI_COMM_WORLD_RANK", "0"}})),
                    Catch::Contains("OMPI_COMM_WORLD_SIZE='0'"));
}

TEST_CASE("dist: without a launcher the world is one process and collectives change nothing", "[dist]") {
  dist::init();
  dist::init();  // idempotent
  REQUIRE(dist::initialized());
  CHECK(dist::world_size() == 1);
  CHECK(dist::rank() == 0);
  CHECK(dist::is_main());
  const Tensor t = from_vector<float>({1.5f, -2.0f}, Shape{2});
  for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::avg, dist::ReduceOp::max}) {
    dist::all_reduce(t, op);
    CHECK(t.to_vector<float>() == std::vector<float>{1.5f, -2.0f});
  }
  dist::broadcast(t, 0);
  dist::barrier();
  CHECK(t.to_vector<float>() == std::vector<float>{1.5f, -2.0f});
  CHECK_THROWS_WITH(dist::broadcast(t, 1), Catch::Contains("root 1 is not a rank of a world of 1"));
  CHECK_THROWS_WITH(dist::all_reduce(Tensor(), dist::ReduceOp::sum), Catch::Contains("undefined"));
}

TEST_CASE("dist: a sharded DataLoader gives every rank its own share of the same shuffle, equal in size", "[dist][loader]") {
  const int64_t n = 10;
  std::vector<float> xs(static_cast<size_t>(n));
  std::vector<int64_t> ys(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    xs[static_cast<size_t>(i)] = static_cast<float>(i);
    ys[static_cast<size_t>(i)] = i;
  }
  data::Dataset ds;
  ds.inputs = from_vector<float>(xs, Shape{n, 1});
  ds.labels = from_vector<int64_t>(ys, Shape{n});
  ds.num_classes = n;
  ds.name = "ten";
  for (int world : {1, 2, 3, 4}) {
    INFO("world of " << world);
    std::vector<int64_t> seen;
    int64_t batches = -1;
    const std::vector<int64_t> full = data::shuffled_indices(n, 7, 2);
    for (int r = 0; r < world; ++r) {
      data::DataLoader loader(ds, {.batch_size = 3, .seed = 7, .prefetch = false, .rank = r, .world_size = world});
      CHECK(loader.num_samples() == (n + world - 1) / world);
      if (batches >= 0) CHECK(loader.num_batches() == batches);  // the same number of batches on every rank
      batches = loader.num_batches();
      const std::vector<int64_t> mine = loader.order(2);
      for (size_t k = 0; k < mine.size(); ++k)  // positions rank, rank + world, ... of the padded shuffle
        CHECK(mine[k] == full[static_cast<size_t>((r + static_cast<int64_t>(k) * world) % n)]);
      loader.set_epoch(2);
      int64_t count = 0;
      for (auto [x, y] : loader) {
        for (int64_t v : y.to_vector<int64_t>()) seen.push_back(v);
        count += y.numel();
      }
      CHECK(count == loader.num_samples());
    }
    std::sort(seen.begin(), seen.end());
    const auto last = std::unique(seen.begin(), seen.end());
    CHECK(last - seen.begin() == n);  // every sample at least once
    CHECK(static_cast<int64_t>(seen.size()) == (n + world - 1) / world * world);
  }
  CHECK_THROWS_WITH(data::DataLoader(ds, {.rank = 2, .world_size = 2}), Catch::Contains("rank 2 is not a rank of a world of 2"));
}
