#pragma once
// The CUDA emulation build's own controls (MIXTAPE_CUDA_EMU only): how emulated threads are scheduled, how much
// memory the emulated devices have, and counters and the last device fault for tests. Settings come from the
// environment on first use and may be changed by tests:
//   MIXTAPE_EMU_SCHEDULE  forward (default) | reverse | shuffle[:SEED]   order of threads in a block and of blocks
//   MIXTAPE_EMU_DEVICES   number of emulated GPUs (default 1; 0 behaves like a machine without a GPU)
//   MIXTAPE_EMU_MEMORY    memory per device, e.g. 80GiB (default), 512MiB, or a byte count
//   MIXTAPE_EMU_PROTECT   1 (default): device memory is inaccessible to host code outside device work; 0: off
//   MIXTAPE_EMU_CUBLASLT_LOG, MIXTAPE_EMU_CUDNN_LOG   set: the mocks print why they refuse a call
#include <cstddef>
#include <cstdint>
#include <string>

namespace mixtape::emu {

/// Order in which the threads of a block run between barriers, and the blocks of a grid.
enum class Schedule : uint8_t { forward, reverse, shuffle };

/// The emulator's settings.
struct Settings {
  int devices = 1;
  size_t memory_bytes = size_t{80} << 30;
  Schedule schedule = Schedule::forward;
  uint64_t seed = 0;  ///< shuffle seed
  bool protect = true;
};

/// The current settings (read from the environment on first use).
const Settings& settings();
/// Sets the schedule for later kernel executions.
void set_schedule(Schedule schedule, uint64_t seed = 0);
/// "forward", "reverse" or "shuffle:SEED".
std::string schedule_name();
/// Sets every emulated device's memory capacity (allocations beyond it fail with cudaErrorMemoryAllocation).
void set_device_memory(size_t bytes);

/// What the emulator has executed since the process started.
struct Counters {
  uint64_t kernels = 0;     ///< grids executed
  uint64_t blocks = 0;      ///< blocks executed
  uint64_t threads = 0;     ///< emulated threads started
  uint64_t barriers = 0;    ///< block barriers released
  uint64_t warp_ops = 0;    ///< warp collectives completed
  uint64_t drains = 0;      ///< synchronisations that executed queued work
};
Counters counters();

/// The message of the most recent device fault (a kernel that failed, an invalid argument found at execution),
/// "" when none.
std::string last_fault();
/// Clears every device's sticky error (tests that provoke faults on purpose; a real GPU needs a new process).
void clear_fault();

/// "emulated on the CPU: <schedule>, <devices> device(s), <memory> each" for `mixtape info`.
std::string describe();

}  // namespace mixtape::emu
