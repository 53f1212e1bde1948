// Collectives on 2 ranks (MPI): every rank checks what it received against values computed locally from the
// other rank's known contribution.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "dist/dist.h"

using namespace mixtape;

namespace {
/// The value rank r contributes at element i: distinct per rank and element, exact in bf16 (small integers / 4).
double contribution(int r, int64_t i) { return static_cast<double>((r + 1) * 3 + (i % 7) - 2) / 4.0; }
}  // namespace

TEST_CASE("dist: two ranks, each knows its rank", "[dist]") {
  REQUIRE(dist::world_size() == 2);
  CHECK((dist::rank() == 0 || dist::rank() == 1));
  CHECK(dist::is_main() == (dist::rank() == 0));
  CHECK_FALSE(dist::description().empty());
}

TEST_CASE("dist: all_reduce sums, averages and takes the maximum over the ranks, every dtype", "[dist]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    INFO(dtype_name(dt));
    const int64_t n = 1001;
    for (dist::ReduceOp op : {dist::ReduceOp::sum, dist::ReduceOp::avg, dist::ReduceOp::max}) {
      std::vector<double> mine(static_cast<size_t>(n)), want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const double a = contribution(0, i), b = contribution(1, i);
        mine[static_cast<size_t>(i)] = contribution(dist::rank(), i);
        want[static_cast<size_t>(i)] = op == dist::ReduceOp::sum ? a + b : op == dist::ReduceOp::avg ? (a + b) / 2 : std::max(a, b);
      }
      const Tensor t = from_vector<double>(mine, Shape{n}).to(dt);
      const uint64_t v0 = t.version();
      dist::all_reduce(t, op);
      CHECK(t.version() > v0);
      CHECK(t.to_vector<double>() == want);  // all exact in every dtype here
    }
  }
  const Tensor counts = from_vector<int64_t>({dist::rank() + 1, 10}, Shape{2});
  dist::all_reduce(counts, dist::ReduceOp::sum);
  CHECK(counts.to_vector<int64_t>() == std::vector<int64_t>{3, 20});
}

TEST_CASE("dist: broadcast copies the root's tensor to every rank, and counts the bytes", "[dist]") {
  for (int root : {0, 1}) {
    const Tensor t = from_vector<float>({float(dist::rank()), 2.5f, -1.0f}, Shape{3});
    const int64_t before = dist::bytes_communicated();
    dist::broadcast(t, root);
    CHECK(t.to_vector<float>() == std::vector<float>{float(root), 2.5f, -1.0f});
    CHECK(dist::bytes_communicated() - before == 12);
  }
  CHECK_THROWS_WITH(dist::broadcast(zeros(Shape{1}), 2), Catch::Contains("root 2 is not a rank of a world of 2"));
  dist::barrier();
}
