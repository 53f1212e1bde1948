#include "apps/checkpoint.h"

#include <map>

#include "core/safetensors.h"

namespace mixtape::app {

namespace {
constexpr const char* kFormat = "mixtape-checkpoint-v1";
}

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                     const std::map<std::string, Tensor>& scaler_state, const RunState& state) {
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, t] : model.state_dict()) tensors["model." + name] = t;
  for (const auto& [name, t] : optimizer.state_dict()) tensors["optim." + name] = t;
  for (const auto& [name, t] : scaler_state) tensors["scaler." + name] = t;
  const std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"epoch", std::to_string(state.epoch)},
      {"step", std::to_string(state.step)},
      {"rng_seed", std::to_string(state.rng_seed)},
      {"rng_offset", std::to_string(state.rng_offset)},
      {"config", state.config.dump()},
  };
  save_safetensors(path, tensors, metadata);
}

Checkpoint read_checkpoint(const std::string& path) {
  const SafetensorsFile file = load_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = file.metadata.find(key);
    MIXTAPE_CHECK(it != file.metadata.end(), "'", path, "' is not a mixtape checkpoint (no '", key, "' in its metadata)");
    return it->second;
  };
  MIXTAPE_CHECK(meta("format") == kFormat, "'", path, "' has checkpoint format '", meta("format"), "', expected ", kFormat);
  Checkpoint ck;
  ck.path = path;
  try {
    ck.state.epoch = std::stoll(meta("epoch"));
    ck.state.step = std::stoll(meta("step"));
    ck.state.rng_seed = std::stoull(meta("rng_seed"));
    ck.state.rng_offset = std::stoull(meta("rng_offset"));
    ck.state.config = nlohmann::json::parse(meta("config"));
  } catch (const std::exception& e) {
    throw Error(detail::cat("'", path, "' has corrupt run metadata (", e.what(), ")"));
  }
  MIXTAPE_CHECK(ck.state.config.is_object(), "'", path, "' has corrupt run metadata (config is not an object)");
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind("model.", 0) == 0) ck.model_state[name.substr(6)] = t;
    else if (name.rfind("optim.", 0) == 0) ck.optim_state[name.substr(6)] = t;
    else if (name.rfind("scaler.", 0) == 0) ck.scaler_state[name.substr(7)] = t;
    else throw Error(detail::cat("'", path, "' holds an unexpected tensor '", name, "'"));
  }
  return ck;
}

void apply_checkpoint(const Checkpoint& ck, nn::Module& model, optim::Optimizer& optimizer) {
  try {
    model.load_state_dict(ck.model_state);
    optimizer.load_state_dict(ck.optim_state);
  } catch (const Error& e) {
    throw Error(detail::cat("'", ck.path, "' does not match this run: ", e.what()));
  }
}

}  // namespace mixtape::app
