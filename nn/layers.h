#pragma once
// Standard layers, initialised like PyTorch's defaults.
#include <memory>
#include <string>
#include <vector>

#include "nn/functional.h"
#include "nn/module.h"

namespace mixtape::nn {

/// y = x W^T + b; W (out, in) and b (out) ~ U(-1/sqrt(in), 1/sqrt(in)) (PyTorch's kaiming_uniform(a=sqrt(5)) default).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  Tensor weight, bias;
};

/// max(x, 0).
class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

/// Exact GELU.
class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return gelu(x); }
  std::string type_name() const override { return "GELU"; }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string type_name() const override { return "Tanh"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string type_name() const override { return "Sigmoid"; }
};

/// Dropout with probability p in training mode; masks drawn from the default generator (seeded runs repeat).
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override { return dropout(x, p_, is_training()); }
  std::string type_name() const override { return "Dropout"; }

 private:
  double p_;
};

/// Layer normalisation over the last dimension, weight = 1 and bias = 0 initially.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t features, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override { return layer_norm(x, weight, bias, eps_); }
  std::string type_name() const override { return "LayerNorm"; }
  Tensor weight, bias;

 private:
  double eps_;
};

/// (N, ...) -> (N, prod(...)).
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return flatten(x); }
  std::string type_name() const override { return "Flatten"; }
};

/// 2-D convolution over (N, C, H, W) (groups = 1); weight (out, in, k, k) and bias (out) ~ U(-1/sqrt(fan_in),
/// 1/sqrt(fan_in)), fan_in = in * k * k (PyTorch's kaiming_uniform(a=sqrt(5)) default).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
         int64_t dilation = 1, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override { return conv2d(x, weight, bias, stride_, padding_, dilation_); }
  std::string type_name() const override { return "Conv2d"; }
  Tensor weight, bias;

 private:
  int64_t stride_, padding_, dilation_;
};

/// Max pooling; stride 0 means stride = kernel (PyTorch's default).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0)
      : kernel_(kernel), stride_(stride), padding_(padding) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_, stride_, padding_); }
  std::string type_name() const override { return "MaxPool2d"; }

 private:
  int64_t kernel_, stride_, padding_;
};

/// Average pooling (padding counted in the divisor); stride 0 means stride = kernel.
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0)
      : kernel_(kernel), stride_(stride), padding_(padding) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel_, stride_, padding_); }
  std::string type_name() const override { return "AvgPool2d"; }

 private:
  int64_t kernel_, stride_, padding_;
};

/// Batch normalisation per channel (dim 1): batch statistics while training (updating the running_mean/running_var
/// buffers), running statistics in eval. weight = 1, bias = 0, running_mean = 0, running_var = 1; all float32.
class BatchNorm : public Module {
 public:
  BatchNorm(int64_t features, double eps, double momentum, bool affine, int expected_dim, const char* name);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return name_; }
  Tensor weight, bias, running_mean, running_var;

 private:
  double eps_, momentum_;
  int expected_dim_;
  const char* name_;
};

/// BatchNorm over (N, C, H, W).
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t features, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(features, eps, momentum, affine, 4, "BatchNorm2d") {}
};

/// BatchNorm over (N, C) or (N, C, L).
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t features, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(features, eps, momentum, affine, 2, "BatchNorm1d") {}
};

/// Runs its modules in order; they are named "0", "1", ...
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  /// Appends a module; returns *this for chaining.
  Sequential& add(std::shared_ptr<Module> module);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return children().size(); }
};

/// Cross-entropy of logits (N, C) against i64 labels (N).
class CrossEntropyLoss {
 public:
  explicit CrossEntropyLoss(Reduction reduction = Reduction::mean, double label_smoothing = 0.0)
      : reduction_(reduction), label_smoothing_(label_smoothing) {}
  Tensor operator()(const Tensor& logits, const Tensor& labels) const {
    return cross_entropy(logits, labels, reduction_, label_smoothing_);
  }

 private:
  Reduction reduction_;
  double label_smoothing_;
};

/// Mean squared error.
class MSELoss {
 public:
  explicit MSELoss(Reduction reduction = Reduction::mean) : reduction_(reduction) {}
  Tensor operator()(const Tensor& a, const Tensor& b) const { return mse_loss(a, b, reduction_); }

 private:
  Reduction reduction_;
};

}  // namespace mixtape::nn
