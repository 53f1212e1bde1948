// Bad input raises mixtape::Error with a message that names the problem (op, shapes, dtypes, device).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/backend.h"
#include "core/kernels.h"
#include "core/tensor.h"

using namespace mixtape;
using Catch::Matchers::Contains;

namespace {
std::string shp(std::initializer_list<int64_t> d) { return Shape(d).to_string(); }
}  // namespace

TEST_CASE("errors: shape mismatch in elementwise ops names the op and both shapes", "[errors][shape]") {
  const Tensor a = zeros(Shape{2, 3}), b = zeros(Shape{4, 5});
  REQUIRE_THROWS_AS(add(a, b), Error);
  REQUIRE_THROWS_WITH(add(a, b), Contains("add") && Contains(shp({2, 3})) && Contains(shp({4, 5})));
  REQUIRE_THROWS_WITH(kernels::binary(BinaryOp::mul, a, b), Contains("mul") && Contains(shp({2, 3})) && Contains(shp({4, 5})));
  REQUIRE_THROWS_WITH(a - b, Contains("sub") && Contains(shp({2, 3})) && Contains(shp({4, 5})));
  REQUIRE_THROWS_WITH(broadcast_shapes(Shape{2, 3}, Shape{3, 2}, "maximum"),
                      Contains("maximum") && Contains(shp({2, 3})) && Contains(shp({3, 2})));
  // (2,3) and (2,) do not broadcast (trailing 3 vs 2)
  REQUIRE_THROWS_AS(add(a, zeros(Shape{2})), Error);
  REQUIRE_THROWS_AS(kernels::where(from_vector(std::vector<uint8_t>{1, 0, 1}, Shape{3}), zeros(Shape{2, 3}), zeros(Shape{4, 1})),
                    Error);
}

TEST_CASE("errors: matmul inner-dimension mismatch names matmul and both shapes", "[errors][shape]") {
  const Tensor a = zeros(Shape{2, 3}), b = zeros(Shape{4, 5});
  REQUIRE_THROWS_WITH(matmul(a, b), Contains("matmul") && Contains(shp({2, 3})) && Contains(shp({4, 5})));
  REQUIRE_THROWS_WITH(kernels::matmul(a, b), Contains("matmul") && Contains(shp({2, 3})) && Contains(shp({4, 5})));
  // transposes change which dims must agree: (3,2)^T @ (3,5) is fine, (2,3)^T @ (4,5) is not
  CHECK(kernels::matmul(zeros(Shape{3, 2}), zeros(Shape{3, 5}), true, false).shape() == Shape{2, 5});
  REQUIRE_THROWS_AS(kernels::matmul(a, b, true, false), Error);
  REQUIRE_THROWS_AS(kernels::matmul(a, zeros(Shape{5, 4}), false, true), Error);  // (5,4)^T has k = 4
  // batched: leading dims must match when both are batched
  REQUIRE_THROWS_AS(kernels::matmul(zeros(Shape{2, 3, 4}), zeros(Shape{3, 4, 5})), Error);
}

TEST_CASE("errors: dtype mismatch outside autocast names the op and both dtypes", "[errors][dtype]") {
  const Tensor a = zeros(Shape{2, 2}, DType::f32), h = zeros(Shape{2, 2}, DType::f16);
  REQUIRE_THROWS_WITH(add(a, h), Contains("add") && Contains("f32") && Contains("f16"));
  REQUIRE_THROWS_WITH(kernels::binary(BinaryOp::add, a, h), Contains("add") && Contains("f32") && Contains("f16"));
  REQUIRE_THROWS_WITH(matmul(a, zeros(Shape{2, 2}, DType::bf16)), Contains("matmul") && Contains("f32") && Contains("bf16"));
  REQUIRE_THROWS_WITH(mul(zeros(Shape{2}, DType::f64), zeros(Shape{2}, DType::f32)), Contains("mul") && Contains("f64") && Contains("f32"));
  REQUIRE_THROWS_WITH(kernels::check_same_dtype(a, h, "myop"), Contains("myop") && Contains("f32") && Contains("f16"));
  // floating-point ops on integer tensors
  REQUIRE_THROWS_WITH(kernels::unary(UnaryOp::exp, zeros(Shape{2}, DType::i64)), Contains("exp") && Contains("i64"));
  REQUIRE_THROWS_WITH(kernels::softmax(zeros(Shape{2, 2}, DType::i64), false), Contains("i64"));
  // cross_entropy wants i64 labels
  REQUIRE_THROWS_WITH(kernels::cross_entropy(zeros(Shape{2, 3}), zeros(Shape{2}, DType::f32), 0.0),
                      Contains("label") && Contains("i64") && Contains("f32"));
}

TEST_CASE("errors: a CUDA tensor in a run without CUDA, or mixing devices", "[errors][device]") {
  if (!device_available(Device::cuda())) {
    CHECK(cuda_device_count() == 0);
    REQUIRE_THROWS_WITH(Tensor::empty(Shape{2}, DType::f32, Device::cuda()), Contains("cuda"));
    REQUIRE_THROWS_WITH(zeros(Shape{2, 2}, DType::f16, Device::cuda(0)), Contains("cuda"));
    REQUIRE_THROWS_WITH(randn(Shape{2}, DType::f32, Device::cuda()), Contains("cuda"));
    REQUIRE_THROWS_WITH(ones(Shape{3}).to(Device::cuda()), Contains("cuda"));
    REQUIRE_THROWS_WITH(memory_stats(Device::cuda()), Contains("cuda"));
    REQUIRE_THROWS_WITH(backend_for(Device::cuda()), Contains("cuda"));
  } else {
    // with a GPU, mixing devices in one op must be refused, naming both devices
    const Tensor g = ones(Shape{2}, DType::f32, Device::cuda()), c = ones(Shape{2});
    REQUIRE_THROWS_WITH(add(g, c), Contains("add") && Contains("cuda") && Contains("cpu"));
    REQUIRE_THROWS_WITH(kernels::check_same_device(g, c, "myop"), Contains("myop") && Contains("cuda") && Contains("cpu"));
  }
  // a device index that does not exist is refused in every build
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{2}, DType::f32, Device::cuda(99)), Contains("cuda"));
  CHECK_FALSE(device_available(Device::cuda(99)));
  CHECK(device_available(Device::cpu()));
}

TEST_CASE("errors: backward of a non-scalar without a seed", "[errors][autograd]") {
  Tensor x = ones(Shape{2, 3});
  x.set_requires_grad(true);
  const Tensor y = mul(x, x);
  REQUIRE_THROWS_WITH(backward(y), Contains("backward") && (Contains(shp({2, 3})) || Contains("6")));
  clear_tape();
  // with a seed of the right shape it works; with a wrong-shaped seed it is refused
  const Tensor y2 = mul(x, x);
  REQUIRE_THROWS_WITH(backward(y2, ones(Shape{3, 2})), Contains(shp({2, 3})) && Contains(shp({3, 2})));
  clear_tape();
  x.set_grad(Tensor());
  const Tensor y3 = mul(x, x);
  backward(y3, ones(Shape{2, 3}));
  REQUIRE(x.grad().defined());
  for (float g : x.grad().to_vector<float>()) CHECK(g == 2.0f);
  clear_tape();
}

TEST_CASE("errors: backward of a tensor that does not require grad", "[errors][autograd]") {
  const Tensor x = ones(Shape{1});
  const Tensor y = mul(x, x);
  REQUIRE_FALSE(y.requires_grad());
  REQUIRE_THROWS_WITH(backward(y), Contains("require"));
  REQUIRE_THROWS_WITH(backward(sum(ones(Shape{3}))), Contains("require"));
  // ... nor under no_grad, where nothing is recorded
  Tensor w = ones(Shape{2});
  w.set_requires_grad(true);
  Tensor z;
  {
    NoGradGuard ng;
    z = sum(mul(w, w));
  }
  REQUIRE_FALSE(z.requires_grad());
  REQUIRE_THROWS_WITH(backward(z), Contains("require"));
  clear_tape();
}

TEST_CASE("errors: out-of-range labels in cross_entropy name the label and the class count", "[errors][labels]") {
  const Tensor logits = zeros(Shape{2, 10});
  const Tensor bad_high = from_vector(std::vector<int64_t>{3, 10}, Shape{2});
  const Tensor bad_neg = from_vector(std::vector<int64_t>{-1, 2}, Shape{2});
  REQUIRE_THROWS_WITH(kernels::cross_entropy(logits, bad_high, 0.0), Contains("label") && Contains("10"));
  REQUIRE_THROWS_WITH(kernels::cross_entropy(logits, bad_neg, 0.0), Contains("label") && Contains("-1"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, bad_high), Contains("label") && Contains("10"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, bad_neg, Reduction::sum, 0.1), Contains("label") && Contains("-1"));
  REQUIRE_THROWS_AS(kernels::cross_entropy_backward(logits, bad_high, ones(Shape{2}), 0.0), Error);
  // the boundary labels are fine
  const Tensor ok = from_vector(std::vector<int64_t>{0, 9}, Shape{2});
  CHECK(kernels::cross_entropy(logits, ok, 0.0).shape() == Shape{2});
  // label count must match the batch
  REQUIRE_THROWS_AS(kernels::cross_entropy(logits, from_vector(std::vector<int64_t>{0, 1, 2}, Shape{3}), 0.0), Error);
  // logits must be 2-D
  REQUIRE_THROWS_AS(kernels::cross_entropy(zeros(Shape{10}), from_vector(std::vector<int64_t>{1}, Shape{1}), 0.0), Error);
}

TEST_CASE("errors: reshape to an incompatible size names both shapes", "[errors][shape]") {
  const Tensor t = zeros(Shape{2, 3});
  REQUIRE_THROWS_WITH(t.reshape(Shape{4, 2}), Contains("reshape") && Contains(shp({2, 3})) && Contains(shp({4, 2})));
  REQUIRE_THROWS_WITH(reshape(t, Shape{7}), Contains("reshape") && Contains(shp({2, 3})));
  REQUIRE_THROWS_AS(t.reshape(Shape{4, -1}), Error);   // 6 is not a multiple of 4
  REQUIRE_THROWS_AS(t.reshape(Shape{-1, -1}), Error);  // at most one -1
  REQUIRE_THROWS_AS(t.reshape(Shape{-2, -3}), Error);
  REQUIRE_THROWS_AS(kernels::view(t, Shape{5}), Error);
}

TEST_CASE("errors: reductions over an out-of-range axis", "[errors][reduce]") {
  const Tensor t = zeros(Shape{2, 3});
  REQUIRE_THROWS_WITH(sum(t, {2}), Contains("sum") && Contains("axis"));
  REQUIRE_THROWS_WITH(mean(t, {-3}), Contains("mean") && Contains("axis"));
  REQUIRE_THROWS_WITH(kernels::reduce(ReduceOp::max, t, {5}, false), Contains("max") && Contains("axis"));
  REQUIRE_THROWS_WITH(argmax(t, 2), Contains("argmax") && Contains("axis"));
  REQUIRE_THROWS_AS(kernels::argmax(t, -3, true), Error);
  // in-range negative axes are fine
  CHECK(sum(t, {-1}).shape() == Shape{2});
  CHECK(sum(t, {-2}, true).shape() == Shape{1, 3});
}

TEST_CASE("errors: Tensor::data<T> with the wrong T names both dtypes", "[errors][dtype]") {
  const Tensor t = zeros(Shape{2}, DType::f32);
  REQUIRE_THROWS_WITH(t.data<double>(), Contains("f64") && Contains("f32"));
  REQUIRE_THROWS_WITH(t.data<Half>(), Contains("f16") && Contains("f32"));
  REQUIRE_THROWS_WITH(zeros(Shape{2}, DType::bf16).data<Half>(), Contains("f16") && Contains("bf16"));
  REQUIRE_THROWS_AS(zeros(Shape{2}, DType::i64).data<float>(), Error);
  REQUIRE_NOTHROW(t.data<float>());
}

TEST_CASE("errors: other bad input", "[errors]") {
  // item of a multi-element tensor
  REQUIRE_THROWS_WITH(zeros(Shape{2, 2}).item(), Contains("item"));
  // from_vector with the wrong number of values
  REQUIRE_THROWS_AS(from_vector(std::vector<float>{1, 2, 3}, Shape{2, 2}), Error);
  // parsing
  REQUIRE_THROWS_WITH(parse_dtype("f8"), Contains("f8"));
  REQUIRE_THROWS_WITH(Device::parse("tpu"), Contains("tpu"));
  // broadcast_to a shape that does not contain x's
  REQUIRE_THROWS_AS(kernels::broadcast_to(zeros(Shape{3, 2}), Shape{3, 3}), Error);
  // copy_ between different shapes
  REQUIRE_THROWS_AS(zeros(Shape{2, 2}).copy_(zeros(Shape{3})), Error);
  // where needs a u8 condition
  REQUIRE_THROWS_AS(kernels::where(zeros(Shape{2}), zeros(Shape{2}), zeros(Shape{2})), Error);
  // operations on an undefined tensor
  REQUIRE_THROWS_AS(Tensor().shape(), Error);
  REQUIRE_THROWS_AS(add(Tensor(), zeros(Shape{1})), Error);
  // a negative dimension
  REQUIRE_THROWS_AS(Tensor::empty(Shape{-2, 3}), Error);
}
