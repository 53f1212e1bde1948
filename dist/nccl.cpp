// NCCL collectives on CUDA tensors (dist/nccl.h).
#include "dist/nccl.h"

#include "core/error.h"

#if MIXTAPE_HAVE_NCCL
#include <mpi.h>
#include <nccl.h>

#include <map>
#include <mutex>

#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "dist/dist.h"
#endif

namespace mixtape::dist::nccl {

#if MIXTAPE_HAVE_NCCL
namespace {

/// One device's communicator over every rank, with the stream its collectives run on and the two events that order
/// that stream after the compute stream and the compute stream after it. Kept until the process ends (NCCL's
/// resources go with the process; destroying them from an exit handler would race the CUDA runtime's own teardown).
struct Comm {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
};

void check_nccl(ncclResult_t rc, const char* call, ncclComm_t comm) {
  if (rc == ncclSuccess) return;
  const char* detail = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  throw Error(::mixtape::detail::cat(call, " failed on rank ", rank(), " of ", world_size(), ": ", ncclGetErrorString(rc),
                                     detail != nullptr && *detail != '\0' ? std::string(" (") + detail + ")" : ""));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::f64: return ncclFloat64;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  throw Error(::mixtape::detail::cat("NCCL: unsupported dtype ", dtype_name(t)));
}

/// The communicator of CUDA device `device`, created on first use: every rank must reach its first collective on a
/// GPU in the same order (as for every collective), rank 0 makes the unique id and MPI carries it to the others.
Comm& comm_for(int device) {
  static std::mutex mu;
  static std::map<int, Comm> comms;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = comms.find(device); it != comms.end()) return it->second;
  ncclUniqueId id{};
  if (rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId", nullptr);
  const int rc = MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  MIXTAPE_CHECK(rc == MPI_SUCCESS, "MPI_Bcast of the NCCL unique id failed on rank ", rank());
  cuda::DeviceGuard guard(device);
  Comm c;
  check_nccl(ncclCommInitRank(&c.comm, world_size(), id, rank()), "ncclCommInitRank", nullptr);
  MIXTAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&c.ready, cudaEventDisableTiming));
  MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&c.done, cudaEventDisableTiming));
  return comms.emplace(device, c).first->second;
}

/// Runs `collective` on the communicator's stream of t's device, after the work queued on the compute stream so
/// far, and makes the compute stream wait for it.
template <class F>
void on_comm_stream(const Tensor& t, F&& collective) {
  cuda::CudaBackend& be = cuda::backend_of(t);
  Comm& c = comm_for(be.index());
  cuda::DeviceGuard guard(be.index());
  MIXTAPE_CUDA_CHECK(cudaEventRecord(c.ready, be.stream()));
  MIXTAPE_CUDA_CHECK(cudaStreamWaitEvent(c.stream, c.ready, 0));
  collective(c);
  MIXTAPE_CUDA_CHECK(cudaEventRecord(c.done, c.stream));
  MIXTAPE_CUDA_CHECK(cudaStreamWaitEvent(be.stream(), c.done, 0));
}

}  // namespace

bool built() { return true; }

std::string description() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "NCCL (version unknown)";
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch
  return ::mixtape::detail::cat("NCCL ", v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

void all_reduce(const Tensor& t, bool max) {
  on_comm_stream(t, [&](Comm& c) {
    check_nccl(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                             max ? ncclMax : ncclSum, c.comm, c.stream),
               "ncclAllReduce", c.comm);
  });
}

void broadcast(const Tensor& t, int root) {
  on_comm_stream(t, [&](Comm& c) {
    check_nccl(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root,
                             c.comm, c.stream),
               "ncclBroadcast", c.comm);
  });
}

#else

bool built() { return false; }
std::string description() {
  return "not built (needs the CUDA backend, MPI and NCCL: the CUDA toolkit's nccl.h and libnccl)";
}
void all_reduce(const Tensor&, bool) {
  throw Error("dist: this build has no NCCL, so CUDA tensors cannot travel between ranks (build with the CUDA toolkit's "
              "NCCL and MPI, or train on the CPU: --device cpu)");
}
void broadcast(const Tensor& t, int) { all_reduce(t, false); }

#endif

}  // namespace mixtape::dist::nccl
