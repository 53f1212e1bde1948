#pragma once
// The fake CUDA runtime's state (internal to cuda/emu/): devices, the calling thread's current device and last
// error, streams and events, and the queue engine that runs device work in stream order at synchronisation
// points. The extern "C" entry points in fake_cudart.cpp are thin wrappers over these.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda/emu/emu.h"
#include "cuda/emu/runtime.h"

namespace mixtape::emu {

struct Stream;

/// One queued operation.
struct Op {
  uint64_t seq = 0;
  std::string what;
  std::function<void()> work;
  std::vector<std::pair<Stream*, uint64_t>> deps;  ///< (stream, seq) that must complete first
};

/// A stream: ops complete in order; `done` is the seq of the last completed one.
struct Stream {
  int device = 0;
  bool blocking = true;  ///< synchronises with the legacy default stream
  bool legacy = false;   ///< the device's legacy default stream
  bool alive = true;
  std::deque<Op> queue;
  uint64_t next = 1;
  uint64_t done = 0;
  uint64_t last() const { return next - 1; }
};

/// An event: the position in a stream it was last recorded at.
struct Event {
  int device = 0;
  bool timing = true;
  bool alive = true;
  Stream* stream = nullptr;  ///< null before the first record
  uint64_t seq = 0;
  std::chrono::steady_clock::time_point when{};
};

/// One emulated GPU.
struct DeviceState {
  int index = 0;
  Stream* legacy = nullptr;
  std::vector<Stream*> streams;  ///< created streams of this device (alive or not)
  cudaError_t sticky = cudaSuccess;
  std::string sticky_message;
};

/// The device `index` (created with its legacy stream on first use); index must be valid.
DeviceState& device_state(int index);
/// Whether `index` names an emulated device.
bool valid_device(int index);
/// The Stream of a handle (nullptr / cudaStreamLegacy / cudaStreamPerThread: the current device's legacy stream);
/// nullptr when the handle is unknown or destroyed.
Stream* resolve_stream(cudaStream_t s);
/// A new stream on the current device.
Stream* create_stream(bool blocking);
/// The Event of a handle, nullptr when unknown or destroyed.
Event* resolve_event(cudaEvent_t e);
Event* create_event(bool timing);

/// Queues `op` on `s` (adding the legacy-stream dependencies); returns its seq.
uint64_t push(Stream* s, std::string what, std::function<void()> work,
              std::vector<std::pair<Stream*, uint64_t>> deps = {});
/// Runs the queued ops of `s` up to and including `seq` (and what they wait for).
void drain(Stream* s, uint64_t seq);
/// Runs everything queued on every stream of `device`.
void drain_device(int device);
/// Runs everything queued on every device.
void drain_all();

/// Sets the calling thread's last error (and the message cudaGetErrorString adds); returns `err`.
cudaError_t set_error(cudaError_t err, const std::string& message = {});
/// The calling thread's last error, reset unless sticky.
cudaError_t take_error();
/// The calling thread's last error, not reset.
cudaError_t peek_error();
/// The message recorded with the most recent error of code `err`, "" when none.
std::string error_detail(cudaError_t err);

/// Makes `device` the calling thread's current device (valid index).
void set_current_device(int device);
/// Stores a new schedule in the settings (emu::set_schedule).
void set_schedule_settings(Schedule schedule, uint64_t seed);
/// Number of drains that executed work.
uint64_t drain_count();

}  // namespace mixtape::emu
