// A stand-in for NCCL in the emulation build (MIXTAPE_CUDA_EMU with MPI): exactly the entry points mixtape calls
// (dist/nccl.cpp), with the C signatures of the toolkit's nccl.h it is compiled against, carrying the data over MPI
// between the ranks' processes, each of which emulates its own GPUs.
//
// It validates its arguments as NCCL's API reference says ("Communicator Creation and Management Functions",
// "Collective Communication Functions"; where the reference is silent it is stricter and says so) and then:
//
// * ncclCommInitRank is collective, as NCCL's is; the stand-in spans MPI_COMM_WORLD in rank order (a duplicate of
//   it per communicator), so nranks must be MPI's world size and rank the MPI rank (ncclInvalidUsage otherwise).
//   Every rank must pass the same id (ncclInvalidUsage otherwise; NCCL would hang) and no two ranks of one
//   machine may use the same device ("Duplicate GPU detected": ncclInvalidUsage, as NCCL).
// * A collective is queued on the stream (after the stream's earlier work, and through events after other
//   streams' work) and then the stand-in synchronises that stream at once, so the data moves during the call:
//   every rank moves it at the same point of its host program, which is NCCL's rule anyway (the same collectives in
//   the same order on every rank), and a rank never waits in MPI for a peer whose collective is still queued
//   behind a host-side MPI call. The cost: a missing wait *after* a collective (another stream reading its result
//   without an event) is not caught here, while a missing wait *before* one (its input not ready) is.
// * Sums and maxima of float16/bfloat16 are computed in float32 and rounded to the type per pair (one rounding for
//   2 ranks, as NCCL's half-precision add).
//
// Only what mixtape calls is here: the datatypes f32, f16, bf16, f64, i64, u8 and the operations ncclSum and
// ncclMax; any other valid value stops the process with a message naming it (never a silent wrong answer).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cuda/emu/runtime.h"

/// The communicator behind ncclComm_t (nccl.h declares `struct ncclComm` and leaves it opaque).
struct ncclComm {
  int rank = 0, nranks = 1, device = 0;
  MPI_Comm mpi = MPI_COMM_NULL;
  std::string last_error;
};

namespace {

constexpr char kIdMagic[] = "mixtape-emu-nccl-id";

struct Registry {
  std::mutex mu;
  std::unordered_set<const ncclComm*> live;
};
Registry& registry() {
  static auto* r = new Registry();  // never freed: communicators live until the process ends
  return *r;
}
bool is_live(const ncclComm* c) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return c != nullptr && r.live.count(c) != 0;
}

thread_local std::string t_last_error;

ncclResult_t fail(ncclComm* comm, ncclResult_t rc, std::string message) {
  message = "NCCL (emulated): " + message;
  if (comm != nullptr && is_live(comm)) comm->last_error = message;
  t_last_error = std::move(message);
  return rc;
}

[[noreturn]] void not_emulated(const std::string& what) {
  std::fprintf(stderr, "NCCL (emulated): %s is valid NCCL but not emulated (cuda/emu/nccl_mock.cpp)\n", what.c_str());
  std::abort();
}

/// The MPI type of an NCCL datatype mixtape uses (float16/bfloat16 as 16-bit integers with the operators below).
MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclFloat16:
    case ncclBfloat16: return MPI_UINT16_T;
    default: not_emulated("datatype " + std::to_string(static_cast<int>(t)));
  }
}
size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 1;  // the 8-bit float types
  }
}

float widen(uint16_t bits, bool bf16) {
  if (bf16) {
    __nv_bfloat16_raw r;
    r.x = bits;
    return __bfloat162float(__nv_bfloat16(r));
  }
  __half_raw r;
  r.x = bits;
  return __half2float(__half(r));
}
uint16_t narrow(float v, bool bf16) {
  if (bf16) return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(v)).x;
  return static_cast<__half_raw>(__float2half_rn(v)).x;
}
template <bool BF16, bool MAX>
void op16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = widen(a[i], BF16), y = widen(b[i], BF16);
    if (MAX) {
      if (y != y) continue;  // NaN wins
      if (x != x || x > y) b[i] = a[i];
    } else {
      b[i] = narrow(x + y, BF16);
    }
  }
}
MPI_Op mpi_op(ncclRedOp_t op, ncclDataType_t t) {
  static MPI_Op ops[2][2];
  static std::once_flag once;
  std::call_once(once, [] {
    MPI_Op_create(&op16<false, false>, 1, &ops[0][0]);
    MPI_Op_create(&op16<false, true>, 1, &ops[0][1]);
    MPI_Op_create(&op16<true, false>, 1, &ops[1][0]);
    MPI_Op_create(&op16<true, true>, 1, &ops[1][1]);
  });
  if (op != ncclSum && op != ncclMax) not_emulated("reduction operation " + std::to_string(static_cast<int>(op)));
  if (t == ncclFloat16 || t == ncclBfloat16) return ops[t == ncclBfloat16 ? 1 : 0][op == ncclMax ? 1 : 0];
  return op == ncclMax ? MPI_MAX : MPI_SUM;
}

/// Checks shared by the collectives; "" when they pass.
ncclResult_t check_call(ncclComm* comm, const char* call, ncclDataType_t datatype, cudaStream_t stream,
                        const void* sendbuff, void* recvbuff, size_t count) {
  if (!is_live(comm)) return fail(nullptr, ncclInvalidArgument, std::string(call) + ": comm is not a communicator");
  if (static_cast<int>(datatype) < 0 || datatype >= ncclNumTypes)
    return fail(comm, ncclInvalidArgument, std::string(call) + ": invalid datatype " + std::to_string(datatype));
  const int sd = mixtape::emu::stream_device(stream);
  if (sd != comm->device)  // stricter: NCCL's reference only says the stream is where the operation is enqueued
    return fail(comm, ncclInvalidUsage, std::string(call) + ": the stream belongs to device " + std::to_string(sd) +
                                            " but the communicator to device " + std::to_string(comm->device));
  const size_t bytes = count * type_size(datatype);
  // stricter: NCCL checks pointers only with NCCL_CHECK_POINTERS=1 (and otherwise faults on the GPU)
  for (const auto& [p, what] : {std::pair<const void*, const char*>{sendbuff, "sendbuff"}, {recvbuff, "recvbuff"}}) {
    if (count == 0 && p == nullptr) continue;
    const std::string bad = mixtape::emu::check_device_range(p, bytes, comm->device, what);
    if (!bad.empty()) return fail(comm, ncclInvalidArgument, std::string(call) + ": " + bad);
  }
  return ncclSuccess;
}

/// Queues `move` (the MPI transfer, with device memory accessible) on the stream and runs it now (see the top).
ncclResult_t run_on_stream(ncclComm* comm, const char* call, cudaStream_t stream, std::function<int()> move) {
  const cudaError_t q = mixtape::emu::enqueue(stream, call, [comm, call, move = std::move(move)] {
    const int rc = move();
    if (rc != MPI_SUCCESS) {
      char text[MPI_MAX_ERROR_STRING] = {};
      int len = 0;
      MPI_Error_string(rc, text, &len);
      mixtape::emu::fail_device(cudaErrorUnknown, std::string("NCCL (emulated) ") + call + " on rank " +
                                                      std::to_string(comm->rank) + ": MPI failed: " + text);
    }
  });
  if (q != cudaSuccess)
    return fail(comm, ncclUnhandledCudaError, std::string(call) + ": " + cudaGetErrorString(q));
  const cudaError_t s = cudaStreamSynchronize(stream);
  if (s != cudaSuccess) return fail(comm, ncclUnhandledCudaError, std::string(call) + ": " + cudaGetErrorString(s));
  return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return fail(nullptr, ncclInvalidArgument, "ncclGetVersion: version is null");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t comm) {
  if (comm != nullptr && is_live(comm)) return comm->last_error.c_str();
  return t_last_error.c_str();
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return fail(nullptr, ncclInvalidArgument, "ncclGetUniqueId: uniqueId is null");
  static std::atomic<uint64_t> counter{0};
  std::memset(id->internal, 0, sizeof(id->internal));
  std::memcpy(id->internal, kIdMagic, sizeof(kIdMagic));
  const uint64_t parts[3] = {static_cast<uint64_t>(::getpid()), counter.fetch_add(1), std::random_device{}()};
  std::memcpy(id->internal + 32, parts, sizeof(parts));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  if (comm == nullptr) return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: comm is null");
  *comm = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: rank " + std::to_string(rank) + " of " +
                                                  std::to_string(nranks) + " ranks");
  if (std::memcmp(commId.internal, kIdMagic, sizeof(kIdMagic)) != 0)
    return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: commId did not come from ncclGetUniqueId");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized)
    return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: the stand-in carries data over MPI, which is not started");
  int mpi_rank = 0, mpi_size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
  if (nranks != mpi_size || rank != mpi_rank)
    return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: the stand-in spans MPI_COMM_WORLD in rank order (MPI rank " +
                                               std::to_string(mpi_rank) + " of " + std::to_string(mpi_size) +
                                               "), not rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess)
    return fail(nullptr, ncclUnhandledCudaError, "ncclCommInitRank: no current device");
  auto c = std::make_unique<ncclComm>();
  c->rank = rank;
  c->nranks = nranks;
  c->device = device;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi) != MPI_SUCCESS)
    return fail(nullptr, ncclSystemError, "ncclCommInitRank: MPI_Comm_dup failed");
  MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN);
  // Every rank's id and (machine, device): one id for all, no device twice on a machine.
  struct Entry {
    char id[NCCL_UNIQUE_ID_BYTES];
    char host[MPI_MAX_PROCESSOR_NAME];
    int device;
  } mine{};
  std::memcpy(mine.id, commId.internal, sizeof(mine.id));
  int len = 0;
  MPI_Get_processor_name(mine.host, &len);
  mine.device = device;
  std::vector<Entry> all(static_cast<size_t>(nranks));
  MPI_Allgather(&mine, sizeof(Entry), MPI_BYTE, all.data(), sizeof(Entry), MPI_BYTE, c->mpi);
  for (int r = 0; r < nranks; ++r) {
    const Entry& e = all[static_cast<size_t>(r)];
    if (std::memcmp(e.id, mine.id, sizeof(mine.id)) != 0) {
      MPI_Comm_free(&c->mpi);
      return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: rank " + std::to_string(r) + " passed another unique id");
    }
    if (r != rank && e.device == device && std::strcmp(e.host, mine.host) == 0) {
      MPI_Comm_free(&c->mpi);
      return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: Duplicate GPU detected: rank " + std::to_string(rank) +
                                                 " and rank " + std::to_string(r) + " both use device " +
                                                 std::to_string(device) + " of " + mine.host);
    }
  }
  ncclComm* raw = c.release();
  {
    Registry& reg = registry();
    std::lock_guard<std::mutex> lock(reg.mu);
    reg.live.insert(raw);
  }
  *comm = raw;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  if (const ncclResult_t rc = check_call(comm, "ncclAllReduce", datatype, stream, sendbuff, recvbuff, count);
      rc != ncclSuccess)
    return rc;
  if (static_cast<int>(op) < 0 || op >= ncclNumOps)  // custom (ncclRedOpCreate*) operations are not emulated
    return fail(comm, ncclInvalidArgument, "ncclAllReduce: invalid reduction operation " + std::to_string(op));
  if (count == 0) return ncclSuccess;
  const MPI_Datatype type = mpi_type(datatype);
  const MPI_Op mop = mpi_op(op, datatype);
  const size_t esize = type_size(datatype);
  return run_on_stream(comm, "ncclAllReduce", stream, [=] {
    if (sendbuff != recvbuff) std::memcpy(recvbuff, sendbuff, count * esize);
    for (size_t done = 0; done < count;) {  // MPI counts are int
      const size_t n = std::min<size_t>(count - done, INT_MAX);
      const int rc = MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(recvbuff) + done * esize, static_cast<int>(n), type,
                                   mop, comm->mpi);
      if (rc != MPI_SUCCESS) return rc;
      done += n;
    }
    return MPI_SUCCESS;
  });
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  // sendbuff matters on the root only
  const void* send = is_live(comm) && root == comm->rank ? sendbuff : recvbuff;
  if (const ncclResult_t rc = check_call(comm, "ncclBroadcast", datatype, stream, send, recvbuff, count);
      rc != ncclSuccess)
    return rc;
  if (root < 0 || root >= comm->nranks)
    return fail(comm, ncclInvalidArgument, "ncclBroadcast: root " + std::to_string(root) + " of " +
                                               std::to_string(comm->nranks) + " ranks");
  if (count == 0) return ncclSuccess;
  const size_t bytes = count * type_size(datatype);
  const bool is_root = root == comm->rank;
  return run_on_stream(comm, "ncclBroadcast", stream, [=] {
    if (is_root && send != recvbuff) std::memcpy(recvbuff, send, bytes);
    for (size_t done = 0; done < bytes;) {
      const size_t n = std::min<size_t>(bytes - done, INT_MAX);
      const int rc = MPI_Bcast(static_cast<char*>(recvbuff) + done, static_cast<int>(n), MPI_BYTE, root, comm->mpi);
      if (rc != MPI_SUCCESS) return rc;
      done += n;
    }
    return MPI_SUCCESS;
  });
}

}  // extern "C"
