// libFuzzer target: core/safetensors.h load_safetensors on arbitrary bytes. Every tensor it returns is read in
// full (a buffer smaller than the tensor's shape says shows under AddressSanitizer), and what it accepts must
// survive save_safetensors + load_safetensors unchanged (names, dtypes, shapes, bytes, metadata).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mixtape;
  const std::string path = fuzz::write_input(data, size, "input.safetensors");
  SafetensorsFile file;
  try {
    file = load_safetensors(path);
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  // Touch every byte of every tensor (nbytes() comes from the shape; the storage behind raw_data() must hold it).
  volatile uint8_t sink = 0;
  for (const auto& [name, t] : file.tensors) {
    const auto* p = static_cast<const uint8_t*>(t.raw_data());
    uint8_t acc = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) acc ^= p[i];
    sink = sink ^ acc;
  }
  (void)sink;
  // Round trip.
  const std::string copy = fuzz::temp_dir() + "/copy.safetensors";
  try {
    save_safetensors(copy, file.tensors, file.metadata);
  } catch (const Error& e) {
    fuzz::fail(std::string("save_safetensors rejected what load_safetensors accepted: ") + e.what());
  }
  const SafetensorsFile again = load_safetensors(copy);  // throwing here is a crash: the writer's own file
  if (again.metadata != file.metadata) fuzz::fail("metadata changed in a save/load round trip");
  if (again.tensors.size() != file.tensors.size()) fuzz::fail("tensor count changed in a save/load round trip");
  for (const auto& [name, t] : file.tensors) {
    auto it = again.tensors.find(name);
    if (it == again.tensors.end()) fuzz::fail("tensor '" + name + "' lost in a save/load round trip");
    const Tensor& u = it->second;
    if (u.dtype() != t.dtype() || !(u.shape() == t.shape()) || u.nbytes() != t.nbytes() ||
        (t.nbytes() && std::memcmp(u.raw_data(), t.raw_data(), t.nbytes()) != 0))
      fuzz::fail("tensor '" + name + "' changed in a save/load round trip");
  }
  return 0;
}
