// Kernel execution of the CUDA emulation (cuda/emu/device.h): launch validation, the grid and block loops, and the
// cooperative scheduling of emulated threads.
//
// One block runs at a time. Each emulated thread runs on its own stack (a Boost.Context fcontext: a user-space
// switch, no system call) straight through until it reaches a block barrier or a warp collective, or exits; then
// the next thread of the block runs, in the order of the schedule (forward, reverse or a seeded shuffle). When no
// thread can run, the scheduler completes what can complete: a warp collective whose lanes (those named in the
// mask) all wait at it, or a block barrier that every thread waits at. What cannot complete is an error, reported
// as a device fault with the state of every thread, never a hang:
//   * threads waiting at different __syncthreads (different call sites or flavours), or at a __syncthreads that
//     some threads of the block exited without reaching (the CUDA Programming Guide requires every thread);
//   * lanes of one warp waiting at different collectives, with different masks, or with a mask naming a lane
//     that exited, does not exist, or waits at a block barrier; a lane calling with a mask without itself;
//   * a shuffle reading a lane outside the mask.
// Blocks of a grid run in the schedule's order too, so one block depending on another's writes shows.
#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "cuda/emu/device.h"
#include "cuda/emu/emu.h"
#include "cuda/emu/lock.h"
#include "cuda/emu/memory.h"
#include "cuda/emu/runtime_state.h"

namespace bctx = boost::context::detail;

// Sanitizer builds: tell ASan and TSan about every stack switch, or they take one emulated thread's stack for
// another's (ASan: false stack-buffer reports; TSan: no happens-before between the fibers of one block).
#if defined(__SANITIZE_ADDRESS__)
#define MIXTAPE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MIXTAPE_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define MIXTAPE_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MIXTAPE_EMU_TSAN 1
#endif
#endif
#ifdef MIXTAPE_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef MIXTAPE_EMU_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mixtape::emu {

/// Thrown by a faulting emulated thread; caught where its fiber starts (fiber_entry).
struct KernelExit {};

thread_local const ThreadIds* g_ids = nullptr;

namespace {

constexpr size_t kStackBytes = size_t{256} << 10;  // per emulated thread (virtual; pages are touched on use)
constexpr size_t kStaticSharedLimit = 48 * 1024;     // static __shared__ per block (compile-time limit of nvcc)
constexpr size_t kDynamicSharedLimit = 48 * 1024;    // dynamic shared memory without a cudaFuncSetAttribute opt-in

// ---- counters ----

struct CounterState {
  uint64_t kernels = 0, blocks = 0, threads = 0, barriers = 0, warp_ops = 0;
};
CounterState& counter_state() {
  static CounterState c;
  return c;
}

// ---- stacks ----

struct Stack {
  char* lo = nullptr;  // mapping start (guard page)
  size_t bytes = 0;
  void* tsan_fiber = nullptr;  // TSan builds: the fiber this stack runs as
  /// The fiber on this stack waiting (in BlockRunner::finish) for its next emulated thread; nullptr: none yet.
  bctx::fcontext_t idle = nullptr;
  void* asan_fake = nullptr;  // ASan builds: the fake stack of the idle fiber
  void* top() const { return lo + bytes; }
  size_t usable() const { return bytes - static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }
  const void* bottom() const { return lo + (bytes - usable()); }
};

// ---- the stack switches, with the sanitizers' bookkeeping (no-ops in ordinary builds) ----

/// Before leaving the current stack for [bottom, bottom + size); `fake` keeps ASan's fake stack of the one left
/// (nullptr: the stack left is finished for good).
inline void before_switch([[maybe_unused]] void** fake, [[maybe_unused]] const void* bottom,
                          [[maybe_unused]] size_t size, [[maybe_unused]] void* tsan_to) {
#ifdef MIXTAPE_EMU_ASAN
  __sanitizer_start_switch_fiber(fake, bottom, size);
#endif
#ifdef MIXTAPE_EMU_TSAN
  __tsan_switch_to_fiber(tsan_to, 0);  // flags 0: the switch orders the fibers (happens-before)
#endif
}

/// After arriving on a stack; records the bounds of the stack switched from.
inline void after_switch([[maybe_unused]] void* fake, [[maybe_unused]] const void** from_bottom,
                         [[maybe_unused]] size_t* from_size) {
#ifdef MIXTAPE_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, from_bottom, from_size);
#endif
}

/// Stacks are mapped once and reused: a thread that exits without waiting returns its stack at once, so a
/// barrier-free kernel runs all its threads on one stack. The fiber on a stack is reused too: it runs one emulated
/// thread after another at the same depth, so nothing piles up in TSan's shadow call stack of the fiber. (A fresh
/// context per thread left two frames there each time, fiber_entry's and finish's, never exited; that stack holds
/// 64 Ki entries, one training step runs far more emulated threads, and `mixtape train --device cuda` hung in
/// TSan's runtime.)
class StackPool {
 public:
  Stack get() {
    if (!free_.empty()) {
      Stack s = free_.back();
      free_.pop_back();
#ifdef MIXTAPE_EMU_TSAN
      if (!s.tsan_fiber) s.tsan_fiber = __tsan_create_fiber(0);
#endif
      return s;
    }
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    void* m = ::mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "mixtape-emu: cannot map a stack for an emulated thread\n");
      std::abort();
    }
    ::mprotect(m, page, PROT_NONE);  // guard: an overflow faults (and the handler says so)
    memory::register_stack_guard(m, page);
    Stack s{static_cast<char*>(m), kStackBytes};
#ifdef MIXTAPE_EMU_TSAN
    s.tsan_fiber = __tsan_create_fiber(0);
#endif
    return s;
  }
  void put(Stack s) {
    if (s.lo) free_.push_back(s);
  }
  /// TSan builds, when a grid has run: the fibers end with it (every stack is back in the pool then). TSan counts
  /// each live fiber as a running thread, so a fork after device work would be a multithreaded fork, after which
  /// TSan ignores the forking thread's synchronisation and reports races between it and the fibers in the child.
  void end_fibers() {
#ifdef MIXTAPE_EMU_TSAN
    for (Stack& s : free_)
      if (s.tsan_fiber) {
        __tsan_destroy_fiber(s.tsan_fiber);
        s.tsan_fiber = nullptr;
        s.idle = nullptr;  // its shadow call stack went with the fiber: the next thread starts a new context
        s.asan_fake = nullptr;
      }
#endif
  }

 private:
  std::vector<Stack> free_;
};

// ---- threads and blocks ----

enum class St : uint8_t { fresh, running, barrier, warp, done };

struct EmuThread {
  ThreadIds ids{};
  bctx::fcontext_t fc = nullptr;
  Stack stack{};
  St st = St::fresh;
  BarrierKind bkind = BarrierKind::plain;
  int bpred = 0;
  int bresult = 0;
  const char* file = nullptr;  // where it waits
  int line = 0;
  WarpRequest* req = nullptr;
  void* asan_fake = nullptr;  // ASan builds: the fake stack of this thread while it is suspended
};

/// One kernel execution (a grid).
struct Grid {
  KernelSite site{};
  dim3 grid, block;
  size_t dynamic_bytes = 0;
  void* pack = nullptr;
  void (*run)(void*) = nullptr;
  std::vector<unsigned char> dynamic_shared;  // 16-byte aligned by the allocator's guarantee for new[]
  std::vector<std::pair<void*, uint64_t>> shared_vars;  // (address, block generation it was poisoned in)
  uint64_t block_generation = 0;
  size_t static_shared = 0;  // bytes registered by the current block
  bool failed = false;
  std::string failure;
  cudaError_t failure_code = cudaErrorLaunchFailure;
};

std::string site_text(const char* file, int line) {
  if (!file) return "?";
  const char* slash = std::strrchr(file, '/');
  return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

std::string dim_text(dim3 d) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "(%u, %u, %u)", d.x, d.y, d.z);
  return buf;
}

const char* warp_kind_name(WarpKind k) {
  switch (k) {
    case WarpKind::shfl_idx: return "__shfl_sync";
    case WarpKind::shfl_xor: return "__shfl_xor_sync";
    case WarpKind::shfl_up: return "__shfl_up_sync";
    case WarpKind::shfl_down: return "__shfl_down_sync";
    case WarpKind::ballot: return "__ballot_sync";
    case WarpKind::any: return "__any_sync";
    case WarpKind::all: return "__all_sync";
    case WarpKind::sync: return "__syncwarp";
  }
  return "a warp collective";
}

const char* barrier_kind_name(BarrierKind k) {
  switch (k) {
    case BarrierKind::plain: return "__syncthreads";
    case BarrierKind::op_or: return "__syncthreads_or";
    case BarrierKind::op_and: return "__syncthreads_and";
    case BarrierKind::op_count: return "__syncthreads_count";
  }
  return "__syncthreads";
}

class BlockRunner;
void fiber_entry(bctx::transfer_t t);

/// Runs the blocks of grids, one block at a time (one instance per host thread that executes device work).
class BlockRunner {
 public:
  /// Runs block `bid` of `g` with thread order `order`; false when the kernel failed (g.failed set).
  bool run_block(Grid& g, uint3 bid, const std::vector<unsigned>& order) {
    g_ = &g;
    const unsigned n = g.block.x * g.block.y * g.block.z;
    threads_.resize(n);
    for (unsigned t = 0; t < n; ++t) {
      EmuThread& e = threads_[t];
      e = EmuThread{};
      e.ids.tid = uint3{t % g.block.x, (t / g.block.x) % g.block.y, t / (g.block.x * g.block.y)};
      e.ids.bid = bid;
      e.ids.bdim = g.block;
      e.ids.gdim = g.grid;
      e.ids.linear = t;
    }
    ++g.block_generation;
    g.static_shared = 0;
    if (!g.dynamic_shared.empty()) std::memset(g.dynamic_shared.data(), 0xff, g.dynamic_shared.size());
    ++counter_state().blocks;
    counter_state().threads += n;
    for (;;) {
      for (unsigned t : order) {
        if (threads_[t].st == St::fresh || threads_[t].st == St::running) resume(t);
        if (g.failed) return abandon();
      }
      unsigned done = 0, at_barrier = 0;
      for (const EmuThread& e : threads_) {
        done += e.st == St::done;
        at_barrier += e.st == St::barrier;
      }
      if (done == n) return true;
      if (release_warps()) continue;
      if (g.failed) return abandon();
      if (at_barrier + done == n) {
        if (!release_barrier(done)) return abandon();
        continue;
      }
      fail_block("deadlock: no thread can continue");
      return abandon();
    }
  }

  /// The running thread waits at a block barrier.
  int barrier(BarrierKind kind, int pred, const char* file, int line) {
    EmuThread& e = threads_[cur_];
    e.st = St::barrier;
    e.bkind = kind;
    e.bpred = pred != 0;
    e.file = file;
    e.line = line;
    yield();
    return e.bresult;
  }

  /// The running thread joins a warp collective.
  void warp(WarpRequest& r) {
    EmuThread& e = threads_[cur_];
    const unsigned lane = e.ids.linear & 31u;
    if (!((r.mask >> lane) & 1u))
      fault(std::string(warp_kind_name(r.kind)) + " called by lane " + std::to_string(lane) +
                " with mask " + hex(r.mask) + ", which does not include the calling lane",
            r.file, r.line);
    const bool shuffle = r.kind == WarpKind::shfl_idx || r.kind == WarpKind::shfl_xor || r.kind == WarpKind::shfl_up ||
                         r.kind == WarpKind::shfl_down;
    if (shuffle && (r.width < 1 || r.width > 32 || (r.width & (r.width - 1)) != 0))
      fault(std::string(warp_kind_name(r.kind)) + " with width " + std::to_string(r.width) +
                " (must be a power of two from 1 to 32)",
            r.file, r.line);
    e.st = St::warp;
    e.req = &r;
    e.file = r.file;
    e.line = r.line;
    yield();
  }

  /// The lanes of the running thread's warp that exist and have not exited.
  unsigned active_mask() const {
    const unsigned base = threads_[cur_].ids.linear & ~31u;
    unsigned m = 0;
    for (unsigned l = 0; l < 32 && base + l < threads_.size(); ++l)
      if (threads_[base + l].st != St::done) m |= 1u << l;
    return m;
  }

  /// Records a fault of the running thread (the first of the grid is the one reported).
  void record_fault(const std::string& what, const char* file, int line) {
    if (g_->failed) return;
    const EmuThread& e = threads_[cur_];
    g_->failed = true;
    g_->failure = what + " at " + site_text(file, line) + " (block " + dim_text(dim3(e.ids.bid.x, e.ids.bid.y, e.ids.bid.z)) +
                  ", thread " + dim_text(dim3(e.ids.tid.x, e.ids.tid.y, e.ids.tid.z)) + ")";
  }

  /// Ends the kernel from inside the running thread: records the fault and unwinds the thread's stack to
  /// fiber_entry (a jump straight to the scheduler would leave the caller's temporaries, such as the message,
  /// undestroyed: LeakSanitizer found them).
  [[noreturn]] void fault(const std::string& what, const char* file, int line) {
    record_fault(what, file, line);
    throw KernelExit{};
  }

  /// Called on the thread's own stack when its kernel function has returned: back to the scheduler, which keeps
  /// the stack and this fiber for a later thread; returns when that thread starts.
  void finish() {
    EmuThread& e = threads_[cur_];
    e.st = St::done;
    const bctx::fcontext_t to = sched_;
    before_switch(&e.stack.asan_fake, sched_bottom_, sched_size_, sched_tsan_);
    const bctx::transfer_t t = bctx::jump_fcontext(to, nullptr);
    after_switch(threads_[cur_].stack.asan_fake, &sched_bottom_, &sched_size_);  // threads_ may have moved
    sched_ = t.fctx;
  }

  /// On a thread's stack, right after the switch that started it: learns the scheduler's stack.
  void arrived_first_time() { after_switch(nullptr, &sched_bottom_, &sched_size_); }

  Grid& grid() { return *g_; }
  /// After the last block of a grid.
  void end_grid() { stacks_.end_fibers(); }
  bctx::fcontext_t sched_ = nullptr;
  const void* sched_bottom_ = nullptr;  // sanitizer builds: the scheduler's stack
  size_t sched_size_ = 0;
  void* sched_tsan_ = nullptr;

 private:
  static std::string hex(unsigned v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%08x", v);
    return b;
  }

  void resume(unsigned t) {
    EmuThread& e = threads_[t];
    cur_ = t;
    g_ids = &e.ids;
    bctx::transfer_t r;
#ifdef MIXTAPE_EMU_TSAN
    sched_tsan_ = __tsan_get_current_fiber();
#endif
    void* fake = nullptr;
    // Nothing of ours runs between before_switch and the jump: TSan counts it as the fiber's already.
    if (e.st == St::fresh) {
      e.stack = stacks_.get();
      e.st = St::running;
      const bctx::fcontext_t to =
          e.stack.idle ? e.stack.idle : bctx::make_fcontext(e.stack.top(), e.stack.usable(), &fiber_entry);
      before_switch(&fake, e.stack.bottom(), e.stack.usable(), e.stack.tsan_fiber);
      r = bctx::jump_fcontext(to, this);
    } else {
      e.st = St::running;
      const bctx::fcontext_t to = e.fc;
      before_switch(&fake, e.stack.bottom(), e.stack.usable(), e.stack.tsan_fiber);
      r = bctx::jump_fcontext(to, nullptr);
    }
    after_switch(fake, nullptr, nullptr);
    g_ids = nullptr;
    if (e.st == St::done) {
      e.stack.idle = r.fctx;  // the fiber waits in finish() for the stack's next thread
      stacks_.put(e.stack);
      e.stack = {};
      e.fc = nullptr;
    } else {
      e.fc = r.fctx;
    }
  }

  void yield() {
    EmuThread& e = threads_[cur_];
    const bctx::fcontext_t to = sched_;
    before_switch(&e.asan_fake, sched_bottom_, sched_size_, sched_tsan_);
    const bctx::transfer_t t = bctx::jump_fcontext(to, nullptr);
    after_switch(threads_[cur_].asan_fake, &sched_bottom_, &sched_size_);
    sched_ = t.fctx;
  }

  /// Gives back the stacks of threads left suspended by a failure.
  bool abandon() {
    for (EmuThread& e : threads_)
      if (e.stack.lo) {
        // Its fiber is in the middle of the kernel: the stack starts over with a new context (and, in TSan
        // builds, a new fiber: see end_grid).
        e.stack.idle = nullptr;
        e.stack.asan_fake = nullptr;
        stacks_.put(e.stack);
        e.stack = {};
      }
    return false;
  }

  void fail_block(const std::string& what) {
    if (g_->failed) return;
    g_->failed = true;
    g_->failure = what + " in block " + dim_text(dim3(threads_[0].ids.bid.x, threads_[0].ids.bid.y, threads_[0].ids.bid.z)) +
                  ": " + describe_threads();
  }

  /// "threads 0-31 wait at __syncthreads (x.cu:12); threads 32-63 exited; ..." (runs of equal state).
  std::string describe_threads() const {
    std::string out;
    auto state_of = [](const EmuThread& e) -> std::string {
      switch (e.st) {
        case St::done: return "exited";
        case St::barrier: return std::string("wait at ") + barrier_kind_name(e.bkind) + " (" + site_text(e.file, e.line) + ")";
        case St::warp:
          return std::string("wait at ") + warp_kind_name(e.req->kind) + " (" + site_text(e.file, e.line) + ", mask " +
                 hex(e.req->mask) + ")";
        default: return "running";
      }
    };
    for (size_t i = 0; i < threads_.size();) {
      const std::string s = state_of(threads_[i]);
      size_t j = i + 1;
      while (j < threads_.size() && state_of(threads_[j]) == s) ++j;
      if (!out.empty()) out += "; ";
      out += j - i == 1 ? "thread " + std::to_string(i) : "threads " + std::to_string(i) + "-" + std::to_string(j - 1);
      out += " " + s;
      i = j;
    }
    return out;
  }

  /// Completes every warp collective whose lanes have all arrived; false when none could.
  bool release_warps() {
    bool released = false;
    const unsigned n = static_cast<unsigned>(threads_.size());
    for (unsigned base = 0; base < n; base += 32) {
      const unsigned lanes = std::min(32u, n - base);
      for (unsigned l = 0; l < lanes; ++l) {
        EmuThread& e = threads_[base + l];
        if (e.st != St::warp) continue;
        const WarpRequest& r = *e.req;
        bool complete = true;
        for (unsigned k = 0; k < 32; ++k) {
          if (!((r.mask >> k) & 1u)) continue;
          if (k >= lanes) {
            fail_block(std::string(warp_kind_name(r.kind)) + " at " + site_text(r.file, r.line) + " with mask " +
                       hex(r.mask) + " names lane " + std::to_string(k) + ", which does not exist (the block has " +
                       std::to_string(n) + " threads)");
            return false;
          }
          const EmuThread& o = threads_[base + k];
          if (o.st == St::done) {
            fail_block(std::string(warp_kind_name(r.kind)) + " at " + site_text(r.file, r.line) + " with mask " +
                       hex(r.mask) + " names lane " + std::to_string(k) + ", which has exited");
            return false;
          }
          if (o.st != St::warp) {
            complete = false;  // still at a block barrier: resolved (or reported) below
            continue;
          }
          const WarpRequest& q = *o.req;
          if (q.file != r.file || q.line != r.line || q.kind != r.kind || q.mask != r.mask || q.width != r.width ||
              q.size != r.size) {
            fail_block("divergent warp collectives: lane " + std::to_string(l) + " waits at " + warp_kind_name(r.kind) +
                       " (" + site_text(r.file, r.line) + ", mask " + hex(r.mask) + ") and lane " + std::to_string(k) +
                       " at " + warp_kind_name(q.kind) + " (" + site_text(q.file, q.line) + ", mask " + hex(q.mask) + ")");
            return false;
          }
        }
        if (!complete) continue;
        if (!exchange(base, lanes, r.mask)) return false;
        released = true;
      }
    }
    return released;
  }

  /// Computes every lane's result of a complete collective and makes the lanes runnable.
  bool exchange(unsigned base, unsigned lanes, unsigned mask) {
    const WarpRequest& r0 = *threads_[base + static_cast<unsigned>(std::countr_zero(mask))].req;
    unsigned ballot = 0;
    for (unsigned k = 0; k < lanes; ++k)
      if ((mask >> k) & 1u && threads_[base + k].req->param) ballot |= 1u << k;
    for (unsigned k = 0; k < lanes; ++k) {
      if (!((mask >> k) & 1u)) continue;
      WarpRequest& r = *threads_[base + k].req;
      unsigned out = 0;
      switch (r.kind) {
        case WarpKind::ballot: out = ballot; break;
        case WarpKind::any: out = ballot != 0; break;
        case WarpKind::all: out = ballot == mask; break;
        case WarpKind::sync: break;
        default: {
          const int w = r.width;
          const int lane = static_cast<int>(k), seg = lane / w * w;
          int src = lane;
          switch (r.kind) {
            case WarpKind::shfl_idx: src = seg + ((r.param % w) + w) % w; break;
            case WarpKind::shfl_xor: src = lane ^ r.param; if (src >= seg + w) src = lane; break;
            case WarpKind::shfl_up: src = lane - r.param; if (src < seg) src = lane; break;
            case WarpKind::shfl_down: src = lane + r.param; if (src >= seg + w) src = lane; break;
            default: break;
          }
          if (src < 0 || src >= 32 || !((mask >> src) & 1u)) {
            fail_block(std::string(warp_kind_name(r.kind)) + " at " + site_text(r.file, r.line) + ": lane " +
                       std::to_string(lane) + " reads lane " + std::to_string(src) + ", which is not in the mask " +
                       hex(mask) + " (undefined in CUDA)");
            return false;
          }
          std::memcpy(r.out, threads_[base + static_cast<unsigned>(src)].req->value, r.size);
          continue;
        }
      }
      std::memcpy(r.out, &out, sizeof out);
    }
    for (unsigned k = 0; k < lanes; ++k)
      if ((mask >> k) & 1u) threads_[base + k].st = St::running;
    (void)r0;
    ++counter_state().warp_ops;
    return true;
  }

  /// Every thread that has not exited waits at a block barrier: release it if it is one and the same barrier.
  bool release_barrier(unsigned done) {
    if (done > 0) {
      fail_block("divergent __syncthreads: some threads exited while others wait (every thread of the block must "
                 "reach each __syncthreads)");
      return false;
    }
    const EmuThread& first = threads_[0];
    int any = 0, all = 1, count = 0;
    for (const EmuThread& e : threads_) {
      if (e.file != first.file || e.line != first.line || e.bkind != first.bkind) {
        fail_block("divergent __syncthreads: threads wait at different barriers");
        return false;
      }
      any |= e.bpred;
      all &= e.bpred;
      count += e.bpred;
    }
    const int result = first.bkind == BarrierKind::op_or    ? any
                       : first.bkind == BarrierKind::op_and ? all
                       : first.bkind == BarrierKind::op_count ? count
                                                              : 0;
    for (EmuThread& e : threads_) {
      e.bresult = result;
      e.st = St::running;
    }
    ++counter_state().barriers;
    return true;
  }

  Grid* g_ = nullptr;
  std::vector<EmuThread> threads_;
  unsigned cur_ = 0;
  StackPool stacks_;
};

thread_local BlockRunner* t_runner = nullptr;

BlockRunner& runner() {
  if (!t_runner) t_runner = new BlockRunner();  // per host thread, kept (its stacks are reused)
  return *t_runner;
}

void fiber_entry(bctx::transfer_t t) {
  auto* r = static_cast<BlockRunner*>(t.data);
  r->arrived_first_time();
  r->sched_ = t.fctx;
  for (;;) {  // one emulated thread after another (see StackPool)
    Grid& g = r->grid();
    try {
      g.run(g.pack);
    } catch (const KernelExit&) {
      // a fault, recorded
    } catch (...) {
      r->record_fault("a C++ exception escaped the kernel", g.site.file, g.site.line);
    }
    r->finish();  // outside the handlers: every exception is destroyed before the stack is left
  }
}

/// The permutation of [0, n) the schedule gives (seeded by the launch number for shuffles).
std::vector<unsigned> order_of(unsigned n, Schedule s, std::mt19937_64& rng) {
  std::vector<unsigned> o(n);
  for (unsigned i = 0; i < n; ++i) o[i] = s == Schedule::reverse ? n - 1 - i : i;
  if (s == Schedule::shuffle) std::shuffle(o.begin(), o.end(), rng);
  return o;
}

/// Runs every block of a grid (device memory is accessible: called from queued work).
void execute(Grid& g) {
  ++counter_state().kernels;
  const Schedule sched = settings().schedule;
  std::mt19937_64 rng(settings().seed * 0x9e3779b97f4a7c15ull + counter_state().kernels);
  const uint64_t blocks = uint64_t{g.grid.x} * g.grid.y * g.grid.z;
  const unsigned threads = g.block.x * g.block.y * g.block.z;
  if (g.dynamic_bytes) g.dynamic_shared.assign(g.dynamic_bytes, 0xff);
  BlockRunner& r = runner();
  std::vector<unsigned> thread_order = order_of(threads, sched, rng);
  std::vector<uint64_t> block_order;
  if (sched == Schedule::shuffle) {
    block_order.resize(blocks);
    for (uint64_t i = 0; i < blocks; ++i) block_order[i] = i;
    std::shuffle(block_order.begin(), block_order.end(), rng);
  }
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t b = sched == Schedule::shuffle ? block_order[i] : sched == Schedule::reverse ? blocks - 1 - i : i;
    const uint3 bid{static_cast<unsigned>(b % g.grid.x), static_cast<unsigned>(b / g.grid.x % g.grid.y),
                    static_cast<unsigned>(b / (uint64_t{g.grid.x} * g.grid.y))};
    if (sched == Schedule::shuffle && (i & 7) == 0) thread_order = order_of(threads, sched, rng);
    if (!r.run_block(g, bid, thread_order)) break;
  }
  r.end_grid();
  if (g.failed)
    fail_device(g.failure_code, "kernel " + std::string(g.site.name) + " launched at " + site_text(g.site.file, g.site.line) +
                                    ": " + g.failure);
}

std::string config_error(const LaunchConfig& c) {
  const uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (c.block.x == 0 || c.block.y == 0 || c.block.z == 0) return "a block dimension is 0";
  if (c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64)
    return "block " + dim_text(c.block) + " exceeds the maximum block dimensions (1024, 1024, 64)";
  if (threads > 1024) return "block " + dim_text(c.block) + " has " + std::to_string(threads) + " threads (at most 1024)";
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0) return "a grid dimension is 0";
  if (c.grid.x > 2147483647u || c.grid.y > 65535 || c.grid.z > 65535)
    return "grid " + dim_text(c.grid) + " exceeds the maximum grid dimensions (2147483647, 65535, 65535)";
  return "";
}

}  // namespace

// ---- device.h ----

int block_barrier(BarrierKind kind, int pred, const char* file, int line) {
  return runner().barrier(kind, pred, file, line);
}

void warp_collective(WarpRequest& req) { runner().warp(req); }

void shared_var(void* address, size_t bytes) {
  if (!g_ids) return;  // not inside a kernel
  Grid& g = runner().grid();
  for (auto& [addr, gen] : g.shared_vars)
    if (addr == address) {
      if (gen != g.block_generation) {
        gen = g.block_generation;
        std::memset(address, 0xff, bytes);
        g.static_shared += bytes;
      }
      return;
    }
  g.shared_vars.emplace_back(address, g.block_generation);
  std::memset(address, 0xff, bytes);
  g.static_shared += bytes;
  if (g.static_shared + g.dynamic_bytes > kStaticSharedLimit + kDynamicSharedLimit || g.static_shared > kStaticSharedLimit)
    runner().fault("the block uses " + std::to_string(g.static_shared) + " bytes of static __shared__ memory (at most " +
                       std::to_string(kStaticSharedLimit) + ")",
                   g.site.file, g.site.line);
}

void* dynamic_shared_memory() {
  Grid& g = runner().grid();
  return g.dynamic_shared.empty() ? nullptr : g.dynamic_shared.data();
}

void device_fault(const char* what, const char* file, int line) { runner().fault(what, file, line); }

void submit_launch(const LaunchConfig& cfg, const KernelSite& site, std::shared_ptr<void> pack, void (*run)(void*),
                   std::vector<PointerArg> pointers) {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  const std::string where = std::string(site.name) + " at " + site_text(site.file, site.line);
  if (settings().devices == 0) {
    set_error(cudaErrorNoDevice, "launch of " + where + ": no emulated device");
    return;
  }
  Stream* s = resolve_stream(cfg.stream);
  if (!s) {
    set_error(cudaErrorInvalidResourceHandle, "launch of " + where + ": unknown or destroyed stream");
    return;
  }
  if (const cudaError_t e = device_state(s->device).sticky) {
    set_error(e, device_state(s->device).sticky_message);
    return;
  }
  if (const std::string bad = config_error(cfg); !bad.empty()) {
    set_error(cudaErrorInvalidConfiguration, "launch of " + where + ": " + bad);
    return;
  }
  if (cfg.shared_bytes > kDynamicSharedLimit) {
    set_error(cudaErrorInvalidValue, "launch of " + where + ": " + std::to_string(cfg.shared_bytes) +
                                         " bytes of dynamic shared memory (at most 48 KiB without cudaFuncSetAttribute)");
    return;
  }
  auto g = std::make_shared<Grid>();
  g->site = site;
  g->grid = cfg.grid;
  g->block = cfg.block;
  g->dynamic_bytes = cfg.shared_bytes;
  g->run = run;
  const int device = s->device;
  push(s, "kernel " + where, [g, pack = std::move(pack), pointers = std::move(pointers), device, where] {
    // A pointer argument must be memory the kernel's device can access when the kernel runs.
    for (const PointerArg& p : pointers) {
      const MemInfo m = lookup(p.ptr);
      const bool ok = (m.kind == MemKind::device && m.device == device) || m.kind == MemKind::pinned_host ||
                      [&] {  // one past the end of an allocation (an end pointer) is fine
                        const MemInfo before = lookup(static_cast<const char*>(p.ptr) - 1);
                        return before.kind == MemKind::device && before.device == device &&
                               before.base + before.size == p.ptr;
                      }();
      if (!ok) {
        fail_device(cudaErrorIllegalAddress, "kernel " + where + ": argument " + std::to_string(p.index) + ": " +
                                                 check_device_range(p.ptr, 1, device, "the pointer"));
        return;
      }
    }
    g->pack = pack.get();
    execute(*g);
  });
}

// ---- emu.h ----

void set_schedule(Schedule schedule, uint64_t seed) { set_schedule_settings(schedule, seed); }

std::string schedule_name() {
  const Settings& s = settings();
  switch (s.schedule) {
    case Schedule::forward: return "forward";
    case Schedule::reverse: return "reverse";
    case Schedule::shuffle: return "shuffle:" + std::to_string(s.seed);
  }
  return "?";
}

Counters counters() {
  std::lock_guard<std::recursive_mutex> lock(runtime_mutex());
  const CounterState& c = counter_state();
  return {c.kernels, c.blocks, c.threads, c.barriers, c.warp_ops, drain_count()};
}

}  // namespace mixtape::emu

unsigned __activemask() { return mixtape::emu::runner().active_mask(); }
