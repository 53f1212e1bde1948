#pragma once
// The device side of the CUDA emulation build (MIXTAPE_CUDA_EMU): what a .cu file compiled as host C++ sees in
// place of nvcc's built-ins. Force-included (through cuda/emu/include/cuda_runtime.h) into every .cu file after
// cuda/emu/cu2cpp.cpp has rewritten its launches and __shared__ declarations; production code never names it.
//
//   threadIdx, blockIdx, blockDim, gridDim, warpSize   the running emulated thread's coordinates
//   __syncthreads(_or/_and/_count), __syncwarp          barriers: scheduling points of cuda/emu/scheduler.cpp
//   __shfl(_xor/_up/_down)_sync, __ballot/any/all_sync   warp collectives over the lanes named in the mask
//   __fadd_rn ... __double2float_rz, __float_as_int ...  IEEE operations with the stated rounding
//   atomicAdd/Min/Max/Exch/CAS/And/Or/Xor                atomic because one block runs at a time, cooperatively
//
// Every emulated thread runs on its own stack (its own registers and locals), from its start to its next barrier
// or warp collective, in the order the schedule gives (cuda/emu/README.md). The math library is the host's
// (glibc's expf is not CUDA's), and nothing is contracted into an FMA unless the source asks for one.
#include <cuda_runtime_api.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// crt/host_defines.h defines these as empty for a host compiler; __shared__ becomes function-local storage shared
// by the block (cu2cpp rewrites each declaration to also register it: poisoned per block, counted against the limit).
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __managed__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__
#define __managed__
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace mixtape::emu {

/// The coordinates of the running emulated thread.
struct ThreadIds {
  uint3 tid;
  uint3 bid;
  dim3 bdim;
  dim3 gdim;
  unsigned linear;  ///< tid.x + tid.y * bdim.x + tid.z * bdim.x * bdim.y
};

/// The running emulated thread (set by the scheduler before it resumes a thread).
extern thread_local const ThreadIds* g_ids;
inline const ThreadIds& ids() { return *g_ids; }

/// Block barrier flavours.
enum class BarrierKind : uint8_t { plain, op_or, op_and, op_count };
/// Waits until every thread of the block reaches this barrier; returns the reduction of `pred` for the flavours.
int block_barrier(BarrierKind kind, int pred, const char* file, int line);

/// Warp collective flavours (CUDA Programming Guide, "Warp Shuffle Functions" and "Warp Vote Functions").
enum class WarpKind : uint8_t { shfl_idx, shfl_xor, shfl_up, shfl_down, ballot, any, all, sync };
/// One lane's part in a warp collective: waits until every lane named in `mask` is at the same collective, then
/// returns in `out` what this lane receives (shuffles: the value of the source lane; votes: a 32-bit result).
struct WarpRequest {
  WarpKind kind;
  unsigned mask;
  int param;  ///< source lane, lane mask or delta
  int width;  ///< shuffle segment width (a power of two <= 32)
  unsigned size;
  alignas(8) unsigned char value[8];
  alignas(8) unsigned char out[8];
  const char* file;
  int line;
};
void warp_collective(WarpRequest& req);

/// A __shared__ variable of the running kernel: poisoned (0xff bytes: NaN for floats) the first time a block
/// touches it and counted against the 48 KiB of static shared memory per block. Called by cu2cpp's rewrite.
void shared_var(void* address, size_t bytes);
/// The block's dynamic shared memory (the launch's third configuration argument), 16-byte aligned.
void* dynamic_shared_memory();
template <class T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_memory());
}

/// A device-side fault (bad shuffle lane, __trap, ...): ends the kernel and fails the device with `message`.
[[noreturn]] void device_fault(const char* what, const char* file, int line);

/// The types __shfl*_sync accepts (CUDA Programming Guide: int, unsigned int, long, unsigned long, long long,
/// unsigned long long, float, double); anything else is a compile error there, so here too.
template <class T>
concept ShuffleType = std::is_same_v<T, int> || std::is_same_v<T, unsigned> || std::is_same_v<T, long> ||
                      std::is_same_v<T, unsigned long> || std::is_same_v<T, long long> ||
                      std::is_same_v<T, unsigned long long> || std::is_same_v<T, float> || std::is_same_v<T, double>;

template <ShuffleType T>
T shuffle(WarpKind kind, unsigned mask, T v, int param, int width, const char* file, int line) {
  WarpRequest r{kind, mask, param, width, static_cast<unsigned>(sizeof(T)), {}, {}, file, line};
  std::memcpy(r.value, &v, sizeof(T));
  warp_collective(r);
  T out;
  std::memcpy(&out, r.out, sizeof(T));
  return out;
}

inline unsigned vote(WarpKind kind, unsigned mask, int pred, const char* file, int line) {
  WarpRequest r{kind, mask, pred != 0, 32, 4u, {}, {}, file, line};
  warp_collective(r);
  unsigned out;
  std::memcpy(&out, r.out, 4);
  return out;
}

// ---- launches (cu2cpp rewrites `k<targs><<<g, b, s, st>>>(args)` into launch(make_cfg(g, b, s, st), ...)(args)) ----

/// A launch configuration as written between <<< and >>>.
struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
};
inline LaunchConfig make_cfg(dim3 grid, dim3 block, size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
  return {grid, block, shared_bytes, stream};
}

/// Where a launch is written.
struct KernelSite {
  const char* name;
  const char* file;
  int line;
};

/// A pointer argument of a kernel, checked against the device's memory when the kernel executes.
struct PointerArg {
  int index;
  const void* ptr;
};

/// Validates the configuration (an invalid one is reported by cudaGetLastError, as by the CUDA runtime) and
/// queues the grid on cfg.stream: every thread of every block calls run(pack).
void submit_launch(const LaunchConfig& cfg, const KernelSite& site, std::shared_ptr<void> pack, void (*run)(void*),
                   std::vector<PointerArg> pointers);

/// The kernel arguments, evaluated once at the launch and stored by value (as the CUDA runtime copies them);
/// every emulated thread calls the kernel with its own copies of them (by-value parameters).
template <class Call, class... A>
struct LaunchPack {
  Call call;
  std::tuple<A...> args;
  static void run(void* self) {
    auto* p = static_cast<LaunchPack*>(self);
    std::apply([p](A&... a) { p->call(a...); }, p->args);
  }
};

template <class T>
void collect_pointer(std::vector<PointerArg>& out, int index, const T& arg) {
  if constexpr (std::is_pointer_v<T>) {
    if (arg != nullptr) out.push_back({index, reinterpret_cast<const void*>(arg)});
  }
}

/// launch(cfg, site..., call)(args...): see LaunchPack.
template <class Call>
auto launch(const LaunchConfig& cfg, const char* name, const char* file, int line, Call call) {
  return [cfg, name, file, line, call](auto&&... a) {
    using Pack = LaunchPack<Call, std::decay_t<decltype(a)>...>;
    // nvcc rejects more than 32764 bytes of kernel parameters (sm_70 and newer, CUDA 12.1+).
    static_assert((size_t{0} + ... + sizeof(std::decay_t<decltype(a)>)) <= 32764,
                  "kernel parameters exceed the 32764 bytes CUDA allows");
    auto pack = std::make_shared<Pack>(Pack{call, std::tuple<std::decay_t<decltype(a)>...>(std::forward<decltype(a)>(a)...)});
    std::vector<PointerArg> pointers;
    std::apply([&pointers](const auto&... arg) {
      int i = 0;
      (collect_pointer(pointers, i++, arg), ...);
    }, pack->args);
    submit_launch(cfg, KernelSite{name, file, line}, std::move(pack), &Pack::run, std::move(pointers));
  };
}

/// Evaluates `f` with the floating-point rounding mode `mode` (FE_TONEAREST, FE_TOWARDZERO, FE_UPWARD, FE_DOWNWARD).
template <class F>
auto with_rounding(int mode, F f) {
  const int old = std::fegetround();
  std::fesetround(mode);
  const auto r = f();
  std::fesetround(old);
  return r;
}

}  // namespace mixtape::emu

#define threadIdx (::mixtape::emu::ids().tid)
#define blockIdx (::mixtape::emu::ids().bid)
#define blockDim (::mixtape::emu::ids().bdim)
#define gridDim (::mixtape::emu::ids().gdim)
inline constexpr int warpSize = 32;

// ---- barriers and warp collectives (the call site is recorded so divergent barriers can be named) ----

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::mixtape::emu::block_barrier(::mixtape::emu::BarrierKind::plain, 0, file, line);
}
inline int __syncthreads_or(int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::mixtape::emu::block_barrier(::mixtape::emu::BarrierKind::op_or, p, file, line);
}
inline int __syncthreads_and(int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::mixtape::emu::block_barrier(::mixtape::emu::BarrierKind::op_and, p, file, line);
}
inline int __syncthreads_count(int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::mixtape::emu::block_barrier(::mixtape::emu::BarrierKind::op_count, p, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  (void)::mixtape::emu::vote(::mixtape::emu::WarpKind::sync, mask, 0, file, line);
}
template <::mixtape::emu::ShuffleType T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::mixtape::emu::shuffle(::mixtape::emu::WarpKind::shfl_idx, mask, v, src, width, file, line);
}
template <::mixtape::emu::ShuffleType T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
  return ::mixtape::emu::shuffle(::mixtape::emu::WarpKind::shfl_xor, mask, v, lane_mask, width, file, line);
}
template <::mixtape::emu::ShuffleType T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
  return ::mixtape::emu::shuffle(::mixtape::emu::WarpKind::shfl_up, mask, v, static_cast<int>(delta), width, file, line);
}
template <::mixtape::emu::ShuffleType T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
  return ::mixtape::emu::shuffle(::mixtape::emu::WarpKind::shfl_down, mask, v, static_cast<int>(delta), width, file,
                                 line);
}
inline unsigned __ballot_sync(unsigned mask, int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::mixtape::emu::vote(::mixtape::emu::WarpKind::ballot, mask, p, file, line);
}
inline int __any_sync(unsigned mask, int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(::mixtape::emu::vote(::mixtape::emu::WarpKind::any, mask, p, file, line));
}
inline int __all_sync(unsigned mask, int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(::mixtape::emu::vote(::mixtape::emu::WarpKind::all, mask, p, file, line));
}
/// The lanes of the warp that have not exited (all of them run the same code here until they diverge at a
/// collective, so this is the warp's existing, unexited lanes).
unsigned __activemask();
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::mixtape::emu::device_fault("__trap()", file, line);
}
inline void __threadfence() {}
inline void __threadfence_block() {}
template <class T>
T __ldg(const T* p) {
  return *p;
}

// ---- IEEE arithmetic with a stated rounding (no contraction: the build compiles these with -ffp-contract=off) ----

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __fadd_rz(float a, float b) {
  return ::mixtape::emu::with_rounding(FE_TOWARDZERO, [&] { volatile float x = a; return x + b; });
}
inline float __fmul_rz(float a, float b) {
  return ::mixtape::emu::with_rounding(FE_TOWARDZERO, [&] { volatile float x = a; return x * b; });
}
inline float __double2float_rn(double d) { return static_cast<float>(d); }
inline float __double2float_rz(double d) {
  return ::mixtape::emu::with_rounding(FE_TOWARDZERO, [&] { volatile double x = d; return static_cast<float>(x); });
}
inline float __double2float_ru(double d) {
  return ::mixtape::emu::with_rounding(FE_UPWARD, [&] { volatile double x = d; return static_cast<float>(x); });
}
inline float __double2float_rd(double d) {
  return ::mixtape::emu::with_rounding(FE_DOWNWARD, [&] { volatile double x = d; return static_cast<float>(x); });
}
inline int __float2int_rz(float f) { return static_cast<int>(f); }
inline int __float2int_rn(float f) { return static_cast<int>(std::nearbyint(f)); }
inline float __int2float_rn(int i) { return static_cast<float>(i); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __uint_as_float(unsigned i) { return std::bit_cast<float>(i); }
inline long long __double_as_longlong(double d) { return std::bit_cast<long long>(d); }
inline double __longlong_as_double(long long i) { return std::bit_cast<double>(i); }
inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned>(x)) + 1; }
inline int __ffsll(long long x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(x)) + 1; }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}

// Device math functions that CUDA declares in the global namespace for host and device.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

// ---- atomics: one block runs at a time and its threads switch only at barriers, so a plain read-modify-write
// is atomic; each returns the old value as CUDA's do ----

template <class T, class F>
T emu_atomic_update(T* p, F f) {
  const T old = *p;
  *p = f(old);
  return old;
}
#define MIXTAPE_EMU_ATOMIC(name, op, T) \
  inline T name(T* p, T v) { return emu_atomic_update(p, [v](T o) -> T { (void)o; return op; }); }
MIXTAPE_EMU_ATOMIC(atomicAdd, o + v, int)
MIXTAPE_EMU_ATOMIC(atomicAdd, o + v, unsigned)
MIXTAPE_EMU_ATOMIC(atomicAdd, o + v, unsigned long long)
MIXTAPE_EMU_ATOMIC(atomicAdd, o + v, float)
MIXTAPE_EMU_ATOMIC(atomicAdd, o + v, double)
MIXTAPE_EMU_ATOMIC(atomicSub, o - v, int)
MIXTAPE_EMU_ATOMIC(atomicSub, o - v, unsigned)
MIXTAPE_EMU_ATOMIC(atomicMin, v < o ? v : o, int)
MIXTAPE_EMU_ATOMIC(atomicMin, v < o ? v : o, unsigned)
MIXTAPE_EMU_ATOMIC(atomicMin, v < o ? v : o, long long)
MIXTAPE_EMU_ATOMIC(atomicMin, v < o ? v : o, unsigned long long)
MIXTAPE_EMU_ATOMIC(atomicMax, v > o ? v : o, int)
MIXTAPE_EMU_ATOMIC(atomicMax, v > o ? v : o, unsigned)
MIXTAPE_EMU_ATOMIC(atomicMax, v > o ? v : o, long long)
MIXTAPE_EMU_ATOMIC(atomicMax, v > o ? v : o, unsigned long long)
MIXTAPE_EMU_ATOMIC(atomicExch, v, int)
MIXTAPE_EMU_ATOMIC(atomicExch, v, unsigned)
MIXTAPE_EMU_ATOMIC(atomicExch, v, unsigned long long)
MIXTAPE_EMU_ATOMIC(atomicExch, v, float)
MIXTAPE_EMU_ATOMIC(atomicAnd, o & v, int)
MIXTAPE_EMU_ATOMIC(atomicAnd, o & v, unsigned)
MIXTAPE_EMU_ATOMIC(atomicAnd, o & v, unsigned long long)
MIXTAPE_EMU_ATOMIC(atomicOr, o | v, int)
MIXTAPE_EMU_ATOMIC(atomicOr, o | v, unsigned)
MIXTAPE_EMU_ATOMIC(atomicOr, o | v, unsigned long long)
MIXTAPE_EMU_ATOMIC(atomicXor, o ^ v, int)
MIXTAPE_EMU_ATOMIC(atomicXor, o ^ v, unsigned)
MIXTAPE_EMU_ATOMIC(atomicXor, o ^ v, unsigned long long)
#undef MIXTAPE_EMU_ATOMIC
template <class T>
T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}
