// The fake CUDA runtime's state and queue engine (cuda/emu/runtime_state.h), and the interface the mocks and the
// launcher use (cuda/emu/runtime.h).
//
// Execution model: every operation (kernel, copy, memset, library call, event record, stream wait) is queued on
// its stream and runs at the first synchronisation that needs it, on the synchronising host thread, with device
// memory accessible (memory::AccessScope). Stream order is kept; an op on the legacy default stream first waits
// for the device's blocking streams, and an op on a blocking stream for the legacy stream (CUDA's "legacy default
// stream" rules); cudaStreamWaitEvent adds a dependency on the event's position at the time of the call.
#include "cuda/emu/runtime_state.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "cuda/emu/device.h"
#include "cuda/emu/emu.h"
#include "cuda/emu/lock.h"
#include "cuda/emu/memory.h"

namespace mixtape::emu {

std::recursive_mutex& runtime_mutex() {
  static auto* mu = new std::recursive_mutex();
  return *mu;
}

namespace {

/// "80GiB", "512MiB", "4096" -> bytes; 0 when malformed.
size_t parse_bytes(const char* text) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || v < 0) return 0;
  const std::string unit(end);
  double mul = 1;
  if (unit == "KiB" || unit == "K" || unit == "k") mul = 1024.0;
  else if (unit == "MiB" || unit == "M") mul = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") mul = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) return 0;
  return static_cast<size_t>(v * mul);
}

Settings read_settings() {
  Settings s;
  auto fail = [](const char* var, const char* value, const char* expected) {
    std::fprintf(stderr, "mixtape-emu: %s=%s is not valid (expected %s); using the default\n", var, value, expected);
  };
  if (const char* v = std::getenv("MIXTAPE_EMU_DEVICES")) {
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*v && !*end && n >= 0 && n <= 16) s.devices = static_cast<int>(n);
    else fail("MIXTAPE_EMU_DEVICES", v, "a count from 0 to 16");
  }
  if (const char* v = std::getenv("MIXTAPE_EMU_MEMORY")) {
    const size_t b = parse_bytes(v);
    if (b >= (size_t{1} << 20)) s.memory_bytes = b;
    else fail("MIXTAPE_EMU_MEMORY", v, "at least 1MiB, e.g. 80GiB or 512MiB");
  }
  if (const char* v = std::getenv("MIXTAPE_EMU_SCHEDULE")) {
    const std::string t(v);
    if (t == "forward") s.schedule = Schedule::forward;
    else if (t == "reverse") s.schedule = Schedule::reverse;
    else if (t.rfind("shuffle", 0) == 0 && (t.size() == 7 || t[7] == ':')) {
      s.schedule = Schedule::shuffle;
      s.seed = t.size() > 8 ? std::strtoull(t.c_str() + 8, nullptr, 10) : 1;
    } else {
      fail("MIXTAPE_EMU_SCHEDULE", v, "forward, reverse or shuffle[:SEED]");
    }
  }
  if (const char* v = std::getenv("MIXTAPE_EMU_PROTECT")) s.protect = std::string(v) != "0";
  return s;
}

Settings& mutable_settings() {
  static Settings s = read_settings();
  return s;
}

struct Registry {
  std::vector<std::unique_ptr<DeviceState>> devices;
  std::map<const void*, std::unique_ptr<Stream>> streams;  // every stream ever created (kept: ops refer to them)
  std::map<const void*, std::unique_ptr<Event>> events;
  std::map<int, std::string> details;  // latest message per error code
  uint64_t drains = 0;
  std::string last_fault;
};

Registry& reg() {
  static auto* r = new Registry();
  return *r;
}

thread_local int t_device = 0;
thread_local cudaError_t t_last = cudaSuccess;
thread_local int t_exec_device = -1;  // the device whose queued work this thread is executing

}  // namespace

const Settings& settings() { return mutable_settings(); }

void set_device_memory(size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  mutable_settings().memory_bytes = bytes;
  memory::set_capacity_bytes(bytes);
}

void set_schedule_settings(Schedule schedule, uint64_t seed) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  mutable_settings().schedule = schedule;
  mutable_settings().seed = seed;
}

bool valid_device(int index) { return index >= 0 && index < settings().devices; }

DeviceState& device_state(int index) {
  Registry& r = reg();
  if (r.devices.size() <= static_cast<size_t>(index)) r.devices.resize(static_cast<size_t>(index) + 1);
  auto& d = r.devices[static_cast<size_t>(index)];
  if (!d) {
    d = std::make_unique<DeviceState>();
    d->index = index;
    auto s = std::make_unique<Stream>();
    s->device = index;
    s->legacy = true;
    d->legacy = s.get();
    r.streams[s.get()] = std::move(s);
  }
  return *d;
}

Stream* resolve_stream(cudaStream_t h) {
  if (h == nullptr || h == cudaStreamLegacy || h == cudaStreamPerThread) {
    if (!valid_device(t_device)) return nullptr;
    return device_state(t_device).legacy;
  }
  auto it = reg().streams.find(h);
  if (it == reg().streams.end() || !it->second->alive || it->second->legacy) return nullptr;
  return it->second.get();
}

Stream* create_stream(bool blocking) {
  auto s = std::make_unique<Stream>();
  s->device = t_device;
  s->blocking = blocking;
  Stream* p = s.get();
  device_state(t_device).streams.push_back(p);
  reg().streams[p] = std::move(s);
  return p;
}

Event* resolve_event(cudaEvent_t h) {
  auto it = reg().events.find(h);
  if (it == reg().events.end() || !it->second->alive) return nullptr;
  return it->second.get();
}

Event* create_event(bool timing) {
  auto e = std::make_unique<Event>();
  e->device = t_device;
  e->timing = timing;
  Event* p = e.get();
  reg().events[p] = std::move(e);
  return p;
}

uint64_t push(Stream* s, std::string what, std::function<void()> work, std::vector<std::pair<Stream*, uint64_t>> deps) {
  DeviceState& d = device_state(s->device);
  if (s->legacy) {
    for (Stream* b : d.streams)
      if (b->blocking && b->last() > b->done) deps.emplace_back(b, b->last());
  } else if (s->blocking && d.legacy->last() > d.legacy->done) {
    deps.emplace_back(d.legacy, d.legacy->last());
  }
  Op op;
  op.seq = s->next++;
  op.what = std::move(what);
  op.work = std::move(work);
  op.deps = std::move(deps);
  s->queue.push_back(std::move(op));
  return s->next - 1;
}

void drain(Stream* s, uint64_t seq) {
  if (s->done >= seq || s->queue.empty()) return;
  memory::install_fault_handler();
  memory::AccessScope access;
  ++reg().drains;
  while (s->done < seq && !s->queue.empty()) {
    Op op = std::move(s->queue.front());
    s->queue.pop_front();
    for (const auto& [ds, dseq] : op.deps) drain(ds, dseq);
    DeviceState& d = device_state(s->device);
    if (d.sticky == cudaSuccess && op.work) {
      const int saved = t_exec_device;
      t_exec_device = s->device;
      memory::set_fault_context(op.what.c_str());
      op.work();
      memory::set_fault_context(nullptr);
      t_exec_device = saved;
    }
    s->done = op.seq;
  }
}

void drain_device(int device) {
  DeviceState& d = device_state(device);
  drain(d.legacy, d.legacy->last());
  for (Stream* s : d.streams) drain(s, s->last());
}

void drain_all() {
  for (int i = 0; i < settings().devices; ++i) drain_device(i);
}

cudaError_t set_error(cudaError_t err, const std::string& message) {
  if (err == cudaSuccess) return err;
  t_last = err;
  reg().details[static_cast<int>(err)] = message;
  return err;
}

cudaError_t take_error() {
  if (valid_device(t_device) && device_state(t_device).sticky != cudaSuccess) return device_state(t_device).sticky;
  const cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}

cudaError_t peek_error() {
  if (valid_device(t_device) && device_state(t_device).sticky != cudaSuccess) return device_state(t_device).sticky;
  return t_last;
}

std::string error_detail(cudaError_t err) {
  auto it = reg().details.find(static_cast<int>(err));
  return it == reg().details.end() ? std::string() : it->second;
}

// ---- runtime.h ----

int current_device() { return t_device; }
void set_current_device(int device) { t_device = device; }
int device_count() { return settings().devices; }

int stream_device(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  const Stream* st = resolve_stream(s);
  return st ? st->device : -1;
}

cudaError_t enqueue(cudaStream_t stream, std::string what, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  Stream* s = resolve_stream(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  if (const cudaError_t sticky = device_state(s->device).sticky; sticky != cudaSuccess) return sticky;
  push(s, std::move(what), std::move(work));
  return cudaSuccess;
}

void fail_device(cudaError_t err, const std::string& message) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  const int dev = t_exec_device >= 0 ? t_exec_device : t_device;
  DeviceState& d = device_state(valid_device(dev) ? dev : 0);
  if (d.sticky != cudaSuccess) return;  // the first fault is the one that matters
  d.sticky = err;
  d.sticky_message = message;
  reg().last_fault = message;
  reg().details[static_cast<int>(err)] = message;
  std::fprintf(stderr, "mixtape-emu: cuda:%d failed (%s): %s\n", d.index, cudaGetErrorName(err), message.c_str());
}

cudaError_t sticky_error() {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  return valid_device(t_device) ? device_state(t_device).sticky : cudaSuccess;
}

std::string check_device_range(const void* p, size_t bytes, int device, const char* what, bool allow_pinned) {
  if (p == nullptr) return bytes == 0 ? "" : std::string(what) + " is a null pointer";
  const MemInfo m = lookup(p);
  auto where = [&] {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%p", p);
    return std::string(what) + " (" + buf + ")";
  };
  switch (m.kind) {
    case MemKind::none: return where() + " is not device memory (a host pointer used as a device pointer?)";
    case MemKind::freed: return where() + " points into device memory that has been freed (use after free)";
    case MemKind::pinned_host:
      if (!allow_pinned) return where() + " is pinned host memory, not device memory";
      break;
    case MemKind::device:
      if (m.device != device)
        return where() + " is memory of cuda:" + std::to_string(m.device) + ", used on cuda:" + std::to_string(device);
      break;
  }
  const size_t offset = static_cast<size_t>(static_cast<const char*>(p) - m.base);
  if (bytes > m.size - offset)
    return where() + " covers " + std::to_string(bytes) + " bytes from offset " + std::to_string(offset) +
           " of an allocation of " + std::to_string(m.size) + " bytes (" + std::to_string(offset + bytes - m.size) +
           " bytes out of bounds)";
  return "";
}

// ---- emu.h ----

std::string last_fault() {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  return reg().last_fault;
}

void clear_fault() {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  for (auto& d : reg().devices)
    if (d) {
      d->sticky = cudaSuccess;
      d->sticky_message.clear();
    }
  reg().last_fault.clear();
  t_last = cudaSuccess;
}

uint64_t drain_count() {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  return reg().drains;
}

std::string describe() {
  const Settings& s = settings();
  char mem[32];
  std::snprintf(mem, sizeof mem, "%.1f GiB", static_cast<double>(memory::capacity_bytes(0)) / (1024.0 * 1024 * 1024));
  return "emulated on the CPU (MIXTAPE_CUDA_EMU): " + std::to_string(s.devices) + " device(s) of " + mem +
         ", schedule " + schedule_name() + (s.protect ? "" : ", device memory unprotected");
}

}  // namespace mixtape::emu
