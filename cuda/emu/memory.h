#pragma once
// Device and pinned memory of the emulated GPUs (internal to cuda/emu/). Each device allocation is its own
// mapping that ends at a guard page and is inaccessible (PROT_NONE) outside device work; freed device memory stays
// reserved and inaccessible (a quarantine), so a late access faults instead of reading reused memory. A SIGSEGV
// handler names what was hit: past the end of an allocation, freed memory, device memory touched by host code,
// or an emulated thread's stack guard.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/emu/runtime.h"

namespace mixtape::emu::memory {

/// A device allocation of `bytes` (> 0) on `device`, 256-byte aligned, or nullptr when it would exceed the
/// device's capacity (capacity_bytes). Caller holds the runtime lock.
void* allocate_device(int device, size_t bytes);
/// Frees a live device allocation (exact base pointer). Returns "" or why it cannot (unknown, freed already,
/// pinned, not its base).
std::string free_device(void* ptr);
/// Page-locked host memory of `bytes` (> 0), or nullptr when the system has none.
void* allocate_pinned(size_t bytes);
/// Frees pinned memory (exact base pointer); "" or why not.
std::string free_pinned(void* ptr);

/// Bytes allocated on `device` (sizes rounded to 256) and its capacity.
size_t used_bytes(int device);
size_t capacity_bytes(int device);
/// Changes every device's capacity (tests of out-of-memory paths).
void set_capacity_bytes(size_t bytes);
/// Number of live device allocations on `device`.
size_t live_allocations(int device);

/// Makes device memory accessible for the duration of device work (nested scopes allowed; the outermost one
/// restores the protection and checks the bytes around every allocation for overruns).
class AccessScope {
 public:
  AccessScope();
  ~AccessScope();
  AccessScope(const AccessScope&) = delete;
  AccessScope& operator=(const AccessScope&) = delete;
};

/// Registers an emulated thread's stack guard page for the fault handler's messages.
void register_stack_guard(const void* lo, size_t bytes);

/// What the fault handler reports after its own message (the kernel and thread being run), kept up to date by
/// the scheduler; empty outside device work.
void set_fault_context(const char* text);

/// Installs the SIGSEGV/SIGBUS handler (idempotent) and an alternate signal stack for the calling thread.
void install_fault_handler();

}  // namespace mixtape::emu::memory
