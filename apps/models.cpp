#include "apps/models.h"

namespace mixtape::app {

std::vector<std::string> model_names() { return {"mlp"}; }

std::shared_ptr<nn::Module> make_model(const std::string& name) {
  if (name == "mlp") {
    auto net = std::make_shared<nn::Sequential>();
    net->add(std::make_shared<nn::Flatten>())
        .add(std::make_shared<nn::Linear>(784, 1024))
        .add(std::make_shared<nn::ReLU>())
        .add(std::make_shared<nn::Linear>(1024, 1024))
        .add(std::make_shared<nn::ReLU>())
        .add(std::make_shared<nn::Linear>(1024, 10));
    return net;
  }
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(detail::cat("unknown model '", name, "': expected one of ", known));
}

}  // namespace mixtape::app
