#include "apps/models.h"

namespace mixtape::app {

namespace {
/// (N, 784) or (N, 1, 28, 28) -> (N, 1, 28, 28): the cnn's input adapter.
class ToImage : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override { return reshape(x, Shape{x.size(0), 1, 28, 28}); }
  std::string type_name() const override { return "ToImage"; }
};

/// conv(1->32, 3x3, pad 1)-BN-ReLU-maxpool 2 -> conv(32->64, 3x3, pad 1)-BN-ReLU-maxpool 2 -> flatten
/// -> Linear(3136->128)-ReLU -> Linear(128->10).
std::shared_ptr<nn::Module> make_cnn() {
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<ToImage>())
      .add(std::make_shared<nn::Conv2d>(1, 32, 3, 1, 1))
      .add(std::make_shared<nn::BatchNorm2d>(32))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::MaxPool2d>(2))
      .add(std::make_shared<nn::Conv2d>(32, 64, 3, 1, 1))
      .add(std::make_shared<nn::BatchNorm2d>(64))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::MaxPool2d>(2))
      .add(std::make_shared<nn::Flatten>())
      .add(std::make_shared<nn::Linear>(3136, 128))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::Linear>(128, 10));
  return net;
}
/// Flatten -> 784 -> hidden -> hidden -> 10 with ReLU.
std::shared_ptr<nn::Module> make_mlp(int64_t hidden) {
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Flatten>())
      .add(std::make_shared<nn::Linear>(784, hidden))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::Linear>(hidden, hidden))
      .add(std::make_shared<nn::ReLU>())
      .add(std::make_shared<nn::Linear>(hidden, 10));
  return net;
}
}  // namespace

std::vector<std::string> model_names() { return {"mlp", "cnn", "wide", "gpt"}; }

std::shared_ptr<nn::Module> make_model(const std::string& name) {
  if (name == "mlp") return make_mlp(1024);
  if (name == "wide") return make_mlp(8192);
  if (name == "cnn") return make_cnn();
  MIXTAPE_CHECK(name != "gpt", "the gpt's size depends on its text's vocabulary: it is built by mixtape train (apps/tasks.h)");
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(detail::cat("unknown model '", name, "': expected one of ", known));
}

}  // namespace mixtape::app
