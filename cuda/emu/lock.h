#pragma once
// The one lock of the fake CUDA runtime (internal to cuda/emu/): device state, memory registry, streams and the
// execution of queued device work. Recursive: queued work may call back into the runtime (a mock's validation).
#include <mutex>

namespace mixtape::emu {

/// The runtime's lock.
std::recursive_mutex& runtime_mutex();

}  // namespace mixtape::emu
