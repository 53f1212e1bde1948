#pragma once
// Maps the op enums of core/backend.h to the functors of core/functors.h, so every backend turns an op
// into the same math: visit_unary(op, [&](auto f) { ... f(x) ... }).
#include "core/backend.h"
#include "core/functors.h"

namespace mixtape {

/// Calls g(functor) with the functor of a unary op.
template <class G>
decltype(auto) visit_unary(UnaryOp op, G&& g) {
  switch (op) {
    case UnaryOp::identity: return g(fn::Identity{});
    case UnaryOp::neg: return g(fn::Neg{});
    case UnaryOp::exp: return g(fn::Exp{});
    case UnaryOp::log: return g(fn::Log{});
    case UnaryOp::sqrt: return g(fn::Sqrt{});
    case UnaryOp::rsqrt: return g(fn::Rsqrt{});
    case UnaryOp::tanh: return g(fn::Tanh{});
    case UnaryOp::sigmoid: return g(fn::Sigmoid{});
    case UnaryOp::relu: return g(fn::Relu{});
    case UnaryOp::gelu: return g(fn::Gelu{});
    case UnaryOp::abs: return g(fn::Abs{});
  }
  throw Error("invalid unary op");
}

/// Calls g(functor) with the functor of a binary op.
template <class G>
decltype(auto) visit_binary(BinaryOp op, G&& g) {
  switch (op) {
    case BinaryOp::add: return g(fn::Add{});
    case BinaryOp::sub: return g(fn::Sub{});
    case BinaryOp::mul: return g(fn::Mul{});
    case BinaryOp::div: return g(fn::Div{});
    case BinaryOp::pow: return g(fn::Pow{});
    case BinaryOp::maximum: return g(fn::Maximum{});
    case BinaryOp::minimum: return g(fn::Minimum{});
    case BinaryOp::eq: return g(fn::Eq{});
    case BinaryOp::ne: return g(fn::Ne{});
    case BinaryOp::lt: return g(fn::Lt{});
    case BinaryOp::le: return g(fn::Le{});
    case BinaryOp::gt: return g(fn::Gt{});
    case BinaryOp::ge: return g(fn::Ge{});
    case BinaryOp::relu_backward: return g(fn::ReluBackward{});
    case BinaryOp::gelu_backward: return g(fn::GeluBackward{});
    case BinaryOp::tanh_backward: return g(fn::TanhBackward{});
    case BinaryOp::sigmoid_backward: return g(fn::SigmoidBackward{});
    case BinaryOp::sqrt_backward: return g(fn::SqrtBackward{});
    case BinaryOp::rsqrt_backward: return g(fn::RsqrtBackward{});
    case BinaryOp::abs_backward: return g(fn::AbsBackward{});
    case BinaryOp::max_share: return g(fn::MaxShare{});
    case BinaryOp::min_share: return g(fn::MinShare{});
  }
  throw Error("invalid binary op");
}

}  // namespace mixtape
