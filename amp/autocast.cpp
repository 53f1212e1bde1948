#include "amp/autocast.h"

#include <iomanip>
#include <mutex>
#include <sstream>
#include <vector>

#include "amp/policy.h"
#include "autograd/dispatch.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/backend.h"
#include "core/kernels.h"

namespace mixtape::amp {

namespace {

struct State {
  bool enabled = false;
  Device device = Device::cpu();
  DType dtype = DType::f16;
  int depth = 0;
};
thread_local State t_state;

/// A cached compute copy of a parameter: valid while the parameter keeps its version and the tape that
/// recorded the cast is still alive.
struct CacheEntry {
  std::weak_ptr<TensorImpl> source;  // keeps the key's TensorImpl* from being reused unnoticed
  uint64_t version = 0;
  uint64_t generation = 0;
  bool recorded = false;
  Tensor copy;
};
thread_local std::map<std::pair<const TensorImpl*, DType>, CacheEntry> t_cache;

/// One persistent compute copy: its buffer and the master version it holds (valid only if `valid`).
struct PersistentCopy {
  Tensor buffer;
  uint64_t version = 0;
  bool valid = false;
};
/// The persistent copies of one registered parameter.
struct PersistentEntry {
  std::weak_ptr<TensorImpl> source;  // the parameter (a dead one's entry is dropped)
  int registrations = 0;
  bool cast_seen = false;            // autocast cast it since registration
  DType last = DType::f16;           // the dtype cast last: the one the optimizer refreshes
  std::map<DType, PersistentCopy> copies;
};
std::mutex g_persistent_mutex;
bool g_persistent_on = true;
std::map<const TensorImpl*, PersistentEntry> g_persistent;

/// The live entry of `t`, or nullptr; g_persistent_mutex must be held.
PersistentEntry* persistent_entry(const Tensor& t) {
  auto it = g_persistent.find(t.impl());
  if (it == g_persistent.end()) return nullptr;
  if (it->second.source.lock() != t.impl_ptr()) {  // the address was reused by another tensor
    g_persistent.erase(it);
    return nullptr;
  }
  return &it->second;
}

/// The compute copy of parameter `t` in `to` through its persistent buffer: the cast kernel runs only when the
/// buffer does not hold t's current version. Returns an undefined tensor when `t` keeps no persistent copy in
/// `to` (yet): the caller casts as usual. A buffer is created by the optimizer's first update after the cast
/// (persistent_copy_to_refresh), outside the forward pass, so the first step's activation memory is what it
/// was without persistent copies. The result is a fresh tensor over the buffer, with a cast node recorded
/// when recording.
Tensor persistent_cast(const Tensor& t, DType to, OpStats& st) {
  Tensor view;
  {
    std::lock_guard<std::mutex> lock(g_persistent_mutex);
    if (!g_persistent_on) return Tensor();
    PersistentEntry* e = persistent_entry(t);
    if (!e) return Tensor();
    e->cast_seen = true;
    e->last = to;
    auto it = e->copies.find(to);
    if (it == e->copies.end()) return Tensor();
    PersistentCopy& c = it->second;
    if (!c.buffer.defined() || c.buffer.shape() != t.shape() || c.buffer.device() != t.device()) {
      e->copies.erase(it);  // the master changed shape or device: start over
      return Tensor();
    }
    if (c.valid && c.version == t.version()) {
      ++st.cache_hits;
      ++st.persistent_hits;
    } else {
      backend_for(t.device()).cast(t, c.buffer);
      c.buffer.bump_version();  // rewritten in place
      ++st.casts;
      st.bytes_cast += static_cast<int64_t>(c.buffer.nbytes());
      c.version = t.version();
      c.valid = true;
    }
    view = kernels::view(c.buffer, t.shape());  // a tensor of its own over the kept storage
  }
  if (!autograd::should_record({&t})) return view;
  // The cast's backward: the engine casts the gradient back to the master's dtype.
  return autograd::record(OpKind::cast, {&t}, view,
                          [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

std::mutex g_stats_mutex;
std::map<OpKind, OpStats> g_stats;

bool eligible(const Tensor& t) {
  if (!t.defined()) return false;
  const DType d = t.dtype();
  const bool on_device = t.device().type == t_state.device.type;
  return on_device && (d == DType::f32 || d == DType::f16 || d == DType::bf16);
}

/// Casts one input, through the cache for parameters (float32 leaves requiring grad).
Tensor cast_input(const Tensor& t, DType to, OpStats& st) {
  const bool parameter = t.dtype() == DType::f32 && t.is_leaf() && t.requires_grad();
  if (!parameter) {
    ++st.casts;
    st.bytes_cast += static_cast<int64_t>(t.numel() * dtype_size(to));
    return cast(t, to);
  }
  const bool recorded = grad_enabled();
  auto key = std::make_pair(static_cast<const TensorImpl*>(t.impl()), to);
  auto it = t_cache.find(key);
  if (it != t_cache.end()) {
    const CacheEntry& e = it->second;
    if (!e.source.expired() && e.source.lock() == t.impl_ptr() && e.version == t.version() &&
        e.generation == tape_generation() && e.recorded == recorded) {
      ++st.cache_hits;
      return e.copy;
    }
  }
  Tensor copy = persistent_cast(t, to, st);
  if (!copy.defined()) {
    copy = cast(t, to);
    ++st.casts;
    st.bytes_cast += static_cast<int64_t>(copy.nbytes());
  }
  t_cache[key] = CacheEntry{t.impl_ptr(), t.version(), tape_generation(), recorded, copy};
  return copy;
}

/// The hook autograd calls at every op boundary.
void autocast_hook(OpKind kind, std::span<Tensor> inputs) {
  if (!t_state.enabled) return;
  OpStats st;
  const CastPolicy policy = policy_for(kind);
  DType target = DType::f32;
  bool cast_needed = false;
  switch (policy) {
    case CastPolicy::lower: target = t_state.dtype; cast_needed = true; break;
    case CastPolicy::fp32: target = DType::f32; cast_needed = true; break;
    case CastPolicy::promote: {
      // widest floating dtype among the eligible inputs; f16 with bf16 promotes to f32 (as PyTorch)
      bool any = false;
      for (const Tensor& t : inputs) {
        if (!eligible(t)) continue;
        if (!any) target = t.dtype();
        else if (t.dtype() != target) target = DType::f32;
        any = true;
      }
      cast_needed = any;
      break;
    }
    case CastPolicy::passthrough: break;
  }
  DType ran = DType::f32;
  bool ran_set = false;
  for (Tensor& t : inputs) {
    if (!eligible(t)) continue;
    if (cast_needed && t.dtype() != target) t = cast_input(t, target, st);
    if (!ran_set) {
      ran = t.dtype();
      ran_set = true;
    }
  }
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  OpStats& g = g_stats[kind];
  ++g.calls;
  if (ran_set) ++g.ran_in[ran];
  g.casts += st.casts;
  g.bytes_cast += st.bytes_cast;
  g.cache_hits += st.cache_hits;
  g.persistent_hits += st.persistent_hits;
}

/// Whether `copy` is the storage of one of `parameter`'s persistent compute copies (autograd::KeptCopyHook).
bool is_persistent_copy(const Tensor& copy, const Tensor& parameter) {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  const PersistentEntry* e = persistent_entry(parameter);
  if (!e) return false;
  const auto it = e->copies.find(copy.dtype());
  return it != e->copies.end() && it->second.buffer.defined() && it->second.buffer.raw_data() == copy.raw_data() &&
         it->second.buffer.numel() == copy.numel();
}

/// Installs the hooks when the amp module is used (first Autocast).
void install_hook() {
  static const bool installed = [] {
    autograd::set_kept_copy_hook(&is_persistent_copy);
    autograd::set_autocast_hook(&autocast_hook);
    return true;
  }();
  (void)installed;
}

}  // namespace

Autocast::Autocast(Device device, DType dtype, bool enabled)
    : prev_enabled_(t_state.enabled), prev_device_(t_state.device), prev_dtype_(t_state.dtype) {
  MIXTAPE_CHECK(!enabled || dtype == DType::f16 || dtype == DType::bf16,
                "Autocast: the lower-precision dtype must be f16 or bf16, got ", dtype_name(dtype));
  install_hook();
  t_state.enabled = enabled;
  if (enabled) {
    t_state.device = device;
    t_state.dtype = dtype;
  }
  ++t_state.depth;
}

Autocast::~Autocast() {
  t_state.enabled = prev_enabled_;
  t_state.device = prev_device_;
  t_state.dtype = prev_dtype_;
  if (--t_state.depth == 0) t_cache.clear();  // like PyTorch: compute copies live for one forward pass
}

bool is_enabled() { return t_state.enabled; }
DType autocast_dtype() { return t_state.dtype; }
Device autocast_device() { return t_state.device; }

std::map<OpKind, OpStats> stats() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  return g_stats;
}

void reset_stats() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  g_stats.clear();
}

std::string report(int64_t steps) {
  const auto s = stats();
  std::ostringstream os;
  os << std::left << std::setw(14) << "op" << std::setw(12) << "policy" << std::setw(22) << "ran in (calls)" << std::right
     << std::setw(10) << "casts" << std::setw(14) << "bytes cast";
  if (steps > 0) os << std::setw(14) << "bytes/step";
  os << std::setw(12) << "cache hits" << "\n";
  for (const auto& [kind, st] : s) {
    std::string ran;
    for (const auto& [d, n] : st.ran_in) ran += (ran.empty() ? "" : " ") + std::string(dtype_name(d)) + "(" + std::to_string(n) + ")";
    os << std::left << std::setw(14) << op_kind_name(kind) << std::setw(12) << policy_name(policy_for(kind)) << std::setw(22)
       << ran << std::right << std::setw(10) << st.casts << std::setw(14) << st.bytes_cast;
    if (steps > 0) os << std::setw(14) << st.bytes_cast / steps;
    os << std::setw(12) << st.cache_hits << "\n";
  }
  return os.str();
}

size_t cache_size() { return t_cache.size(); }
void clear_cache() { t_cache.clear(); }

void set_persistent_compute_copies(bool on) {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  g_persistent_on = on;
  if (!on)
    for (auto& [impl, e] : g_persistent) e.copies.clear();
}

bool persistent_compute_copies() {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  return g_persistent_on;
}

void register_persistent_parameters(const std::vector<Tensor>& params) {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  for (const Tensor& p : params) {
    if (!p.defined() || p.dtype() != DType::f32) continue;  // only float32 masters have compute copies
    PersistentEntry* e = persistent_entry(p);
    if (!e) {
      e = &g_persistent[p.impl()];
      e->source = p.impl_ptr();
    }
    ++e->registrations;
  }
}

void unregister_persistent_parameters(const std::vector<Tensor>& params) {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  for (const Tensor& p : params) {
    if (!p.defined()) continue;
    auto it = g_persistent.find(p.impl());
    if (it == g_persistent.end()) continue;
    if (--it->second.registrations <= 0) g_persistent.erase(it);
  }
  // Entries of parameters that died while registered.
  std::erase_if(g_persistent, [](const auto& kv) { return kv.second.source.expired(); });
}

Tensor persistent_copy_to_refresh(const Tensor& param) {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  if (!g_persistent_on || !param.defined()) return Tensor();
  PersistentEntry* e = persistent_entry(param);
  if (!e || !e->cast_seen || param.dtype() != DType::f32) return Tensor();
  PersistentCopy& c = e->copies[e->last];
  if (!c.buffer.defined() || c.buffer.shape() != param.shape() || c.buffer.device() != param.device()) {
    c.buffer = Tensor::empty(param.shape(), e->last, param.device());  // created here, outside the forward pass
    c.valid = false;
  }
  return c.buffer;
}

void persistent_copy_refreshed(const Tensor& param, const Tensor& copy) {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  PersistentEntry* e = persistent_entry(param);
  if (!e) return;
  for (auto& [dtype, c] : e->copies) {
    if (c.buffer.defined() && c.buffer.impl() == copy.impl()) {
      c.version = param.version();
      c.valid = true;
    } else {
      c.valid = false;  // the master moved on; this one is recast on its next use
    }
  }
}

size_t persistent_copy_count() {
  std::lock_guard<std::mutex> lock(g_persistent_mutex);
  size_t n = 0;
  for (const auto& [impl, e] : g_persistent) n += e.copies.size();
  return n;
}

}  // namespace mixtape::amp
