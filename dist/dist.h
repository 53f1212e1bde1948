#pragma once
// Several processes training one model (data parallelism): who this process is among them, and collectives on
// tensors. Built on MPI (Open MPI) when the build has it (MIXTAPE_DIST); otherwise, and whenever the process was not
// started by an MPI launcher (mpirun / mpiexec), the world is this one process and nothing starts MPI, so a plain
// `mixtape train` pays no start-up cost.
//
//   dist::init();                        // once, early (the CLI does it); reads the launcher's environment
//   dist::all_reduce(grad, ReduceOp::avg);
//   if (dist::is_main()) save(...);
//
// Collectives are in place, and every rank must call them in the same order with tensors of the same shape, dtype
// and device type. CPU tensors travel over MPI and the call returns when the result is there; CUDA tensors travel
// over NCCL (when built: nccl_built()) on a stream of its own, ordered after the work already queued on the device
// and before the work queued after the call, so the call returns without waiting for the GPU (as every kernel
// launch does) and a rank uses the GPU of its local rank (one GPU per rank, as NCCL requires). Every dtype travels as it is (f16 and bf16 in 2 bytes: each pairwise sum is
// computed in float32 and rounded to the type, so a sum over 2 ranks is rounded once, over N ranks up to N - 1
// times); an average is the sum divided by the world size in float32 (float64 for f64), rounded once more. A sum
// over 2 ranks is the same bits on both ranks and run to run; from 3 ranks up the bits depend on MPI's algorithm
// (the same on every rank of one run).
#include <functional>
#include <string>

#include "core/tensor.h"

namespace mixtape::dist {

/// What the launcher's environment says about this process.
struct LaunchInfo {
  bool launched = false;  ///< started by an MPI launcher (world size from its environment)
  int rank = 0, world_size = 1, local_rank = 0;
  std::string launcher;  ///< "Open MPI", "PMIx", "PMI" or "" when not launched
};
/// Reads the launcher's variables (Open MPI's OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK, PMIx's PMIX_RANK with
/// OMPI_COMM_WORLD_SIZE, MPICH/Hydra's PMI_RANK/PMI_SIZE) through `get` (std::getenv in production); throws
/// mixtape::Error naming a variable whose value is not a number in range.
LaunchInfo launch_info(const std::function<const char*(const char*)>& get);

/// Starts the distributed layer once (later calls do nothing): MPI when the process was launched by an MPI launcher
/// and the build has MPI; a world of one process otherwise. Throws mixtape::Error when launched with several ranks
/// but the build has no MPI.
void init();
/// Whether init() has run.
bool initialized();
/// Ends MPI if init() started it (also at exit). Collectives after it throw.
void finalize();
/// This process's rank (0-based), the number of ranks, the rank within this machine; init() first (0, 1, 0 before).
int rank();
int world_size();
int local_rank();
/// Rank 0: the one that prints, logs and saves.
inline bool is_main() { return rank() == 0; }
/// Ends every rank at once with `code` (MPI_Abort: the launcher stops the others and names this rank), for a rank
/// that cannot go on (the others would otherwise wait in their next collective forever); std::exit(code) in a world
/// of one.
[[noreturn]] void abort_all(int code);
/// Whether this build can run several ranks (MPI found at build time).
bool mpi_built();
/// "Open MPI 4.1.4" (the library's own version string, first line) or why there is none.
std::string description();
/// Whether CUDA tensors can travel between ranks (the build has NCCL).
bool nccl_built();
/// "NCCL 2.28.9" (the library's version) or why there is none.
std::string nccl_description();

enum class ReduceOp { sum, avg, max };
/// In place: every rank's t becomes the sum / average / maximum over the ranks, element by element.
void all_reduce(const Tensor& t, ReduceOp op);
/// In place: every rank's t becomes root's.
void broadcast(const Tensor& t, int root = 0);
/// Returns when every rank has called it.
void barrier();
/// Bytes this process has sent through all_reduce and broadcast since it started (its tensors' bytes per call: the
/// payload, not what MPI's or NCCL's algorithm moves on the wire).
int64_t bytes_communicated();

}  // namespace mixtape::dist
