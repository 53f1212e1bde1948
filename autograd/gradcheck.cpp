#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/ops.h"
#include "core/kernels.h"

namespace mixtape {

namespace {
/// sum(f(inputs) * w) as a double, without recording.
double projected(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                 const Tensor& w) {
  NoGradGuard no_grad;
  const Tensor y = f(inputs);
  return kernels::reduce(ReduceOp::sum, kernels::binary(BinaryOp::mul, kernels::cast(y, DType::f64), w), {}, false).item();
}
}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    MIXTAPE_CHECK(!x.requires_grad() || (x.dtype() == DType::f64 && x.device().is_cpu() && x.is_leaf()),
                  "gradcheck: input ", i, " requires grad but is not a float64 CPU leaf (", dtype_name(x.dtype()), ")");
  }
  // Analytic gradients of sum(f(x) * w).
  zero_grad(inputs);
  const Tensor y = f(inputs);
  MIXTAPE_CHECK(y.requires_grad(), "gradcheck: the function's output does not require grad");
  Generator gen(options.seed);
  const Tensor w = randn(y.shape(), DType::f64, Device::cpu(), &gen);
  backward(sum(mul(cast(y, DType::f64), w)));

  GradcheckResult result;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.requires_grad()) continue;
    const Tensor g = x.grad();
    const std::vector<double> analytic = g.defined() ? g.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
    double* px = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double saved = px[j];
      px[j] = saved + options.eps;
      const double plus = projected(f, inputs, w);
      px[j] = saved - options.eps;
      const double minus = projected(f, inputs, w);
      px[j] = saved;
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double err = std::fabs(analytic[static_cast<size_t>(j)] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, std::isnan(err) ? INFINITY : err);
      if (!(err <= options.atol + options.rtol * std::fabs(numeric)) && result.ok) {
        result.ok = false;
        result.message = detail::cat("gradcheck: input ", i, " ", x.shape().to_string(), " element ", j,
                                     ": analytic ", analytic[static_cast<size_t>(j)], " vs numeric ", numeric);
      }
    }
  }
  zero_grad(inputs);
  return result;
}

}  // namespace mixtape
