#pragma once
// The math of every elementwise op, written once. Each functor computes in the accumulate type A
// (float for f32/f16/bf16, double for f64); the backend loads, converts, calls and rounds the result
// once into the output dtype. The CPU backend loops over these; the CUDA backend launches them.
#include <cmath>

#include "core/macros.h"

namespace mixtape::fn {

// ---- unary: y = f(x) ----
struct Identity { template <class A> MIXTAPE_HD A operator()(A x) const { return x; } };
struct Neg { template <class A> MIXTAPE_HD A operator()(A x) const { return -x; } };
struct Exp { template <class A> MIXTAPE_HD A operator()(A x) const { return std::exp(x); } };
struct Log { template <class A> MIXTAPE_HD A operator()(A x) const { return std::log(x); } };
struct Sqrt { template <class A> MIXTAPE_HD A operator()(A x) const { return std::sqrt(x); } };
struct Rsqrt { template <class A> MIXTAPE_HD A operator()(A x) const { return A(1) / std::sqrt(x); } };
struct Tanh { template <class A> MIXTAPE_HD A operator()(A x) const { return std::tanh(x); } };
struct Sigmoid {
  // Written so that neither branch overflows: exp of a non-positive number only.
  template <class A> MIXTAPE_HD A operator()(A x) const {
    if (x >= A(0)) return A(1) / (A(1) + std::exp(-x));
    const A e = std::exp(x);
    return e / (A(1) + e);
  }
};
struct Relu { template <class A> MIXTAPE_HD A operator()(A x) const { return x > A(0) ? x : A(0); } };
/// Exact GELU (PyTorch's default): x * Phi(x).
struct Gelu {
  template <class A> MIXTAPE_HD A operator()(A x) const { return A(0.5) * x * (A(1) + std::erf(x * A(0.70710678118654752440))); }
};
struct Abs { template <class A> MIXTAPE_HD A operator()(A x) const { return x < A(0) ? -x : x; } };

// ---- binary: y = f(a, b) ----
struct Add { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a + b; } };
struct Sub { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a - b; } };
struct Mul { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a * b; } };
struct Div { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a / b; } };
struct Pow { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return std::pow(a, b); } };
/// NaN-propagating like torch.maximum.
struct Maximum {
  template <class A> MIXTAPE_HD A operator()(A a, A b) const { return (a != a) ? a : ((b != b) ? b : (a > b ? a : b)); }
};
struct Minimum {
  template <class A> MIXTAPE_HD A operator()(A a, A b) const { return (a != a) ? a : ((b != b) ? b : (a < b ? a : b)); }
};
struct Eq { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a == b ? A(1) : A(0); } };
struct Ne { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a != b ? A(1) : A(0); } };
struct Lt { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a < b ? A(1) : A(0); } };
struct Le { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a <= b ? A(1) : A(0); } };
struct Gt { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a > b ? A(1) : A(0); } };
struct Ge { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a >= b ? A(1) : A(0); } };

// ---- fused backward helpers: grad_in = f(grad_out, saved) ----
/// g * (x > 0).
struct ReluBackward { template <class A> MIXTAPE_HD A operator()(A g, A x) const { return x > A(0) ? g : A(0); } };
/// g * d/dx[x Phi(x)] = g * (Phi(x) + x phi(x)).
struct GeluBackward {
  template <class A> MIXTAPE_HD A operator()(A g, A x) const {
    const A cdf = A(0.5) * (A(1) + std::erf(x * A(0.70710678118654752440)));
    const A pdf = A(0.39894228040143267794) * std::exp(A(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};
/// g * (1 - y^2), y = tanh(x).
struct TanhBackward { template <class A> MIXTAPE_HD A operator()(A g, A y) const { return g * (A(1) - y * y); } };
/// g * y (1 - y), y = sigmoid(x).
struct SigmoidBackward { template <class A> MIXTAPE_HD A operator()(A g, A y) const { return g * y * (A(1) - y); } };
/// g / (2 y), y = sqrt(x).
struct SqrtBackward { template <class A> MIXTAPE_HD A operator()(A g, A y) const { return g / (A(2) * y); } };
/// g * (-y^3 / 2), y = rsqrt(x).
struct RsqrtBackward { template <class A> MIXTAPE_HD A operator()(A g, A y) const { return A(-0.5) * g * y * y * y; } };
/// g * sign(x).
struct AbsBackward {
  template <class A> MIXTAPE_HD A operator()(A g, A x) const { return x > A(0) ? g : (x < A(0) ? -g : A(0)); }
};
/// Share of the gradient a receives from maximum(a, b): 1 if a wins, 1/2 on a tie (as PyTorch), else 0.
struct MaxShare { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a > b ? A(1) : (a == b ? A(0.5) : A(0)); } };
/// Share of the gradient a receives from minimum(a, b).
struct MinShare { template <class A> MIXTAPE_HD A operator()(A a, A b) const { return a < b ? A(1) : (a == b ? A(0.5) : A(0)); } };

}  // namespace mixtape::fn
