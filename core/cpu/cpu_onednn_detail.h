#pragma once
// Shared by the CPU backend's oneDNN files (cpu_onednn.cpp: matrix products; cpu_onednn_conv.cpp: convolution).
// Only for builds with oneDNN (MIXTAPE_HAVE_ONEDNN).
#include <map>
#include <memory>
#include <mutex>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/tensor.h"

namespace mixtape::cpu::onednn_detail {

/// oneDNN's instruction set on this CPU.
dnnl::cpu_isa effective_isa();
/// At least AVX-512 (avx512_core).
bool has_avx512_core();
/// AVX-512 with the bfloat16 instructions (avx512_core_bf16 or AMX).
bool has_avx512_bf16();
/// The one CPU engine.
dnnl::engine& engine();
/// Sets the calling thread's OpenMP team size, the thread count of the oneDNN primitives it creates and runs
/// (Debian's oneDNN threads with OpenMP, libgomp). Call before creating and before running a primitive.
void use_threads(int threads);
/// A buffer for a primitive's scratchpad (oneDNN's user scratchpad mode) from the CPU allocator, kept alive by
/// `holder`; null when the primitive needs none.
void* scratchpad(const dnnl::memory::desc& md, Tensor& holder);

/// A process-wide cache of primitives (Entry) by Key, built once each by Build (Entry build(const Key&), returning
/// std::shared_ptr<const Entry>). Building runs outside the lock (creating a primitive can take milliseconds); when
/// two threads build the same key at once, the first one stored wins.
template <class Key, class Entry, auto Build>
std::shared_ptr<const Entry> cached_primitive(const Key& key) {
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<const Entry>> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  std::shared_ptr<const Entry> e = Build(key);
  std::lock_guard<std::mutex> lock(mu);
  return cache.emplace(key, std::move(e)).first->second;
}

}  // namespace mixtape::cpu::onednn_detail
