#pragma once
// The GPU transport of the distributed layer (internal to dist/): collectives on CUDA tensors through NCCL, one
// communicator per device spanning every rank (its unique id broadcast from rank 0 over MPI), on its own stream
// ordered after the device's compute stream by events, so a collective is queued without waiting for the GPU and
// later kernels on the compute stream see its result. Built when the build has CUDA, MPI and NCCL
// (MIXTAPE_HAVE_NCCL); the CUDA emulation build links an MPI-backed stand-in (cuda/emu/nccl_mock.cpp).
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace mixtape::dist::nccl {

/// Whether this build carries CUDA tensors (NCCL found at build time).
bool built();
/// "NCCL 2.28.9" (the library's version) or why there is none.
std::string description();
/// In place on a CUDA tensor: every rank's t becomes the element-wise sum (max = false) or maximum (max = true)
/// over the ranks. Queued on the communicator's stream; returns without waiting for the GPU.
void all_reduce(const Tensor& t, bool max);
/// In place on a CUDA tensor: every rank's t becomes root's.
void broadcast(const Tensor& t, int root);

}  // namespace mixtape::dist::nccl
