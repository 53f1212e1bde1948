// The distributed layer (dist/dist.h): the launcher's environment, MPI start and end, and collectives: CPU tensors
// through MPI's C API (blocking), CUDA tensors through NCCL (dist/nccl.cpp, stream-ordered).
#include "dist/dist.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "core/half.h"

#include "core/backend.h"
#include "core/error.h"
#include "core/kernels.h"
#include "dist/nccl.h"

#if MIXTAPE_HAVE_MPI
#include <mpi.h>
#endif

namespace mixtape::dist {

namespace {

struct State {
  bool initialized = false;
  bool mpi_started = false;  // MPI_Init_thread ran here (and MPI_Finalize has not)
  LaunchInfo info;
};
State g_state;
std::mutex g_mu;
std::atomic<int64_t> g_bytes{0};

/// A whole number in [lo, hi] from the variable `name`'s text; throws naming the variable otherwise.
int parse_int(const char* name, const char* text, int lo, int hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  MIXTAPE_CHECK(end != text && *end == '\0' && errno == 0 && v >= lo && v <= hi, "the launcher's environment: ", name,
                "='", text, "' is not a whole number from ", lo, " to ", hi);
  return static_cast<int>(v);
}

#if MIXTAPE_HAVE_MPI
/// Throws mixtape::Error naming the MPI call and MPI's own message when rc is not MPI_SUCCESS.
void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(detail::cat(call, " failed on rank ", g_state.info.rank, " of ", g_state.info.world_size, ": ",
                          std::string(text, static_cast<size_t>(len))));
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    default: return MPI_DATATYPE_NULL;  // f16/bf16 travel as float32
  }
}
#endif

/// Whether collectives must talk to other processes (several ranks and MPI running).
bool several() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_state.mpi_started && g_state.info.world_size > 1;
}

void check_tensor(const Tensor& t, const char* op) {
  MIXTAPE_CHECK(t.defined(), "dist::", op, ": the tensor is undefined");
  MIXTAPE_CHECK(t.device().is_cpu() || nccl::built(), "dist::", op, ": a tensor on ", t.device().to_string(),
                " needs NCCL, which this build lacks (", nccl::description(), "); train on the CPU (--device cpu)");
}

/// t /= world size, in place: in float32 for 16-bit and float32 tensors, float64 for the others, rounded once.
void divide_by_world(const Tensor& t) {
  const DType acc = is_floating(t.dtype()) && t.dtype() != DType::f64 ? DType::f32 : DType::f64;
  const Tensor wide = t.dtype() == acc ? t : kernels::cast(t, acc);
  const Tensor n = scalar_tensor(static_cast<double>(world_size()), acc, t.device());
  backend_for(wide.device()).binary(BinaryOp::div, wide, n, wide);
  if (!wide.is_same(t)) backend_for(t.device()).cast(wide, t);
}

}  // namespace

LaunchInfo launch_info(const std::function<const char*(const char*)>& get) {
  LaunchInfo info;
  auto has = [&](const char* name) { return get(name) != nullptr && *get(name) != '\0'; };
  constexpr int kMaxRanks = 1 << 20;
  if (has("OMPI_COMM_WORLD_SIZE") && has("OMPI_COMM_WORLD_RANK")) {
    info.launcher = "Open MPI";
    info.world_size = parse_int("OMPI_COMM_WORLD_SIZE", get("OMPI_COMM_WORLD_SIZE"), 1, kMaxRanks);
    info.rank = parse_int("OMPI_COMM_WORLD_RANK", get("OMPI_COMM_WORLD_RANK"), 0, info.world_size - 1);
    if (has("OMPI_COMM_WORLD_LOCAL_RANK"))
      info.local_rank = parse_int("OMPI_COMM_WORLD_LOCAL_RANK", get("OMPI_COMM_WORLD_LOCAL_RANK"), 0, kMaxRanks);
  } else if (has("PMI_SIZE") && has("PMI_RANK")) {  // MPICH's Hydra (and Intel MPI)
    info.launcher = "PMI";
    info.world_size = parse_int("PMI_SIZE", get("PMI_SIZE"), 1, kMaxRanks);
    info.rank = parse_int("PMI_RANK", get("PMI_RANK"), 0, info.world_size - 1);
    if (has("MPI_LOCALRANKID")) info.local_rank = parse_int("MPI_LOCALRANKID", get("MPI_LOCALRANKID"), 0, kMaxRanks);
  } else {
    return info;  // not launched: a world of one
  }
  info.launched = true;
  return info;
}

bool mpi_built() { return MIXTAPE_HAVE_MPI != 0; }

void init() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_state.initialized) return;
  const LaunchInfo info = launch_info([](const char* name) { return std::getenv(name); });
  if (info.launched && info.world_size > 1) {
#if MIXTAPE_HAVE_MPI
    int provided = 0;
    // Only the main thread calls MPI (the data loader's thread never does).
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) throw Error(detail::cat("MPI_Init_thread failed (rank ", info.rank, " of ", info.world_size, ")"));
    g_state.mpi_started = true;
    g_state.info = info;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);  // errors come back as codes: check_mpi throws
    int r = 0, n = 0;
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &r), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &n), "MPI_Comm_size");
    MIXTAPE_CHECK(r == info.rank && n == info.world_size, "MPI says rank ", r, " of ", n, " but the ", info.launcher,
                  " launcher's environment says rank ", info.rank, " of ", info.world_size);
    std::atexit([] { finalize(); });
#else
    throw Error(detail::cat("launched as rank ", info.rank, " of ", info.world_size, " by ", info.launcher,
                            ", but this build has no MPI (configure with MPI found: scripts/setup installs "
                            "libopenmpi-dev and openmpi-bin; MIXTAPE_DIST)"));
#endif
  } else {
    g_state.info = info;  // a world of one (also `mpirun -np 1`): nothing to start
  }
  g_state.initialized = true;
}

void abort_all(int code) {
#if MIXTAPE_HAVE_MPI
  if (several()) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

bool initialized() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_state.initialized;
}

void finalize() {
  std::lock_guard<std::mutex> lock(g_mu);
#if MIXTAPE_HAVE_MPI
  if (g_state.mpi_started) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    g_state.mpi_started = false;
  }
#endif
}

int rank() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_state.info.rank;
}
int world_size() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_state.info.world_size;
}
int local_rank() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_state.info.local_rank;
}

std::string description() {
#if MIXTAPE_HAVE_MPI
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, static_cast<size_t>(len));
  if (const size_t nl = s.find_first_of("\n,"); nl != std::string::npos) s.resize(nl);
  return s;
#else
  return "not built (MIXTAPE_DIST=OFF, or MPI was not found: scripts/setup installs libopenmpi-dev)";
#endif
}

#if MIXTAPE_HAVE_MPI
namespace {
/// MPI reduction operators on 16-bit floats (as MPI_UINT16_T): each pairwise sum or maximum is computed in float32
/// and the sum rounded to the type (to nearest even); a NaN wins a maximum.
template <class H>
void sum16(void* in, void* inout, int* len, MPI_Datatype*) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = H(static_cast<float>(a[i]) + static_cast<float>(b[i]));
}
template <class H>
void max16(void* in, void* inout, int* len, MPI_Datatype*) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    if (y != y) continue;
    if (x != x || x > y) b[i] = a[i];
  }
}
/// The operator for a 16-bit dtype and reduction (created once, after MPI_Init).
MPI_Op op16(DType dt, bool max) {
  static MPI_Op ops[2][2] = {{MPI_OP_NULL, MPI_OP_NULL}, {MPI_OP_NULL, MPI_OP_NULL}};
  static std::once_flag once;
  std::call_once(once, [] {
    MPI_Op_create(&sum16<Half>, 1, &ops[0][0]);
    MPI_Op_create(&max16<Half>, 1, &ops[0][1]);
    MPI_Op_create(&sum16<BFloat16>, 1, &ops[1][0]);
    MPI_Op_create(&max16<BFloat16>, 1, &ops[1][1]);
  });
  return ops[dt == DType::bf16 ? 1 : 0][max ? 1 : 0];
}
}  // namespace
#endif

void all_reduce(const Tensor& t, ReduceOp op) {
  check_tensor(t, "all_reduce");
  if (!several()) return;  // one rank: the sum, the average and the maximum are t itself
  if (t.device().is_cuda()) {
    nccl::all_reduce(t, op == ReduceOp::max);
  } else {
#if MIXTAPE_HAVE_MPI
    MIXTAPE_CHECK(t.numel() <= INT32_MAX, "dist::all_reduce: ", t.numel(), " elements is more than one MPI call takes");
    const bool half = t.dtype() == DType::f16 || t.dtype() == DType::bf16;
    const MPI_Datatype type = half ? MPI_UINT16_T : mpi_type(t.dtype());
    MIXTAPE_CHECK(type != MPI_DATATYPE_NULL, "dist::all_reduce: unsupported dtype ", dtype_name(t.dtype()));
    const MPI_Op mpi_op = half ? op16(t.dtype(), op == ReduceOp::max) : op == ReduceOp::max ? MPI_MAX : MPI_SUM;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()), type, mpi_op, MPI_COMM_WORLD),
              "MPI_Allreduce");
#endif
  }
  g_bytes.fetch_add(static_cast<int64_t>(t.nbytes()), std::memory_order_relaxed);
  if (op == ReduceOp::avg) divide_by_world(t);  // the sum divided by the world size, rounded once
  t.bump_version();
}

void broadcast(const Tensor& t, int root) {
  check_tensor(t, "broadcast");
  MIXTAPE_CHECK(root >= 0 && root < world_size(), "dist::broadcast: root ", root, " is not a rank of a world of ",
                world_size());
  if (!several()) return;
  if (t.device().is_cuda()) {
    nccl::broadcast(t, root);
  } else {
#if MIXTAPE_HAVE_MPI
    MIXTAPE_CHECK(t.nbytes() <= static_cast<size_t>(INT32_MAX), "dist::broadcast: ", t.nbytes(),
                  " bytes is more than one MPI call takes");
    check_mpi(MPI_Bcast(t.raw_data(), static_cast<int>(t.nbytes()), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
#endif
  }
  g_bytes.fetch_add(static_cast<int64_t>(t.nbytes()), std::memory_order_relaxed);
  t.bump_version();
}

void barrier() {
  if (!several()) return;
#if MIXTAPE_HAVE_MPI
  check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

bool nccl_built() { return nccl::built(); }
std::string nccl_description() { return nccl::description(); }

int64_t bytes_communicated() { return g_bytes.load(std::memory_order_relaxed); }

}  // namespace mixtape::dist
