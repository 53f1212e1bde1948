// The CUDA emulation itself (MIXTAPE_CUDA_EMU builds only): launch checks with the runtime's error codes, thread
// and block coordinates, barriers and warp collectives under every schedule, faults reported instead of hangs,
// shared memory, atomics, and the fake runtime's memory protocol, streams and events. Kernels are in
// tests/cuda_emu/kernels.cu. Tests that provoke a fault clear it afterwards with emu::clear_fault().
#ifdef MIXTAPE_CUDA_EMU

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_runtime_info.h"
#include "cuda/emu/emu.h"
#include "cuda/emu/memory.h"
#include "tests/cuda_emu/kernels.h"

using namespace mixtape;
using namespace mixtape::testing::emu_kernels;
using Catch::Matchers::Contains;

namespace {

/// Device buffer of n T, freed on scope exit.
template <class T>
struct Buf {
  T* p = nullptr;
  size_t n = 0;
  explicit Buf(size_t count) : n(count) { REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)) == cudaSuccess); }
  ~Buf() { (void)cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  std::vector<T> read() const {
    std::vector<T> h(n);
    REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  void write(const std::vector<T>& h) {
    REQUIRE(h.size() == n);
    REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
};

/// Runs `f` under `schedule`, restoring the process's schedule afterwards.
void with_schedule(emu::Schedule schedule, uint64_t seed, const std::function<void()>& f) {
  const emu::Settings before = emu::settings();
  emu::set_schedule(schedule, seed);
  try {
    f();
  } catch (...) {
    emu::set_schedule(before.schedule, before.seed);
    throw;
  }
  emu::set_schedule(before.schedule, before.seed);
}

/// The three schedules, each named for INFO.
struct NamedSchedule {
  emu::Schedule s;
  uint64_t seed;
  const char* name;
};
const NamedSchedule kSchedules[] = {{emu::Schedule::forward, 0, "forward"},
                                    {emu::Schedule::reverse, 0, "reverse"},
                                    {emu::Schedule::shuffle, 7, "shuffle:7"}};

/// Synchronises, expects a device fault whose message contains `text`, and clears it.
void expect_fault(const std::string& text) {
  const cudaError_t e = cudaDeviceSynchronize();
  CHECK(e != cudaSuccess);
  CHECK(cudaGetLastError() == e);  // sticky: every call reports it
  CHECK_THAT(emu::last_fault(), Contains(text));
  CHECK_THAT(std::string(cudaGetErrorString(e)), Contains(text));
  emu::clear_fault();
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
}

/// Runs `f` in a child process and returns what it wrote to stderr and how it ended (death tests).
struct ChildResult {
  bool signalled = false;
  int signal = 0;
  int exit_code = 0;
  std::string err;
};
ChildResult in_child(const std::function<void()>& f) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);  // the test framework's own report of the signal is not wanted from the child
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    // Nor its fatal-signal handler, which the emulator's handler passes faults on to (it allocates, which
    // ThreadSanitizer reports as a signal-unsafe call instead of letting the process die of the signal).
    ::signal(SIGSEGV, SIG_DFL);
    ::signal(SIGBUS, SIG_DFL);
    emu::memory::install_fault_handler();
    f();
    ::_exit(0);
  }
  ::close(fds[1]);
  ChildResult r;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) r.err.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.signalled = WIFSIGNALED(status);
  r.signal = r.signalled ? WTERMSIG(status) : 0;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST_CASE("cuda emu: the emulated device says what it is", "[cuda_emu]") {
  REQUIRE(cuda::device_count() >= 1);
  const cuda::DeviceInfo d = cuda::device_info(0);
  CHECK_THAT(d.name, Contains("emulated"));
  CHECK(d.major == 9);
  CHECK(d.minor == 0);
  CHECK(d.sm_count == 132);
  CHECK(d.total_mem == emu::settings().memory_bytes);
  CHECK_THAT(emu::describe(), Contains("emulated on the CPU"));
}

TEST_CASE("cuda emu: launch configurations beyond the device limits fail with the runtime's error codes", "[cuda_emu]") {
  CHECK(launch_empty(dim3(1), dim3(1024)) == cudaSuccess);
  CHECK(launch_empty(dim3(1), dim3(1025)) == cudaErrorInvalidConfiguration);
  CHECK(launch_empty(dim3(1), dim3(32, 32, 2)) == cudaErrorInvalidConfiguration);  // 2048 threads
  CHECK(launch_empty(dim3(1), dim3(1, 1, 65)) == cudaErrorInvalidConfiguration);
  CHECK(launch_empty(dim3(0), dim3(32)) == cudaErrorInvalidConfiguration);
  CHECK(launch_empty(dim3(1, 65536), dim3(32)) == cudaErrorInvalidConfiguration);
  CHECK(launch_empty(dim3(1), dim3(32), 48 * 1024) == cudaSuccess);
  CHECK(launch_empty(dim3(1), dim3(32), 48 * 1024 + 1) == cudaErrorInvalidValue);
  CHECK_THAT(std::string(cudaGetErrorString(cudaErrorInvalidValue)), Contains("dynamic shared memory"));
  CHECK(launch_empty(dim3(1), dim3(32), 0, reinterpret_cast<cudaStream_t>(0x1234)) == cudaErrorInvalidResourceHandle);
  // launch errors are not sticky: the next launch and synchronisation succeed
  CHECK(launch_empty(dim3(2), dim3(64)) == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("cuda emu: every thread of every block runs once with its own coordinates", "[cuda_emu]") {
  for (const NamedSchedule& sc : kSchedules) {
    INFO(sc.name);
    with_schedule(sc.s, sc.seed, [&] {
      for (auto [grid, block] : {std::pair{dim3(3, 2, 2), dim3(4, 3, 2)}, std::pair{dim3(5), dim3(96)},
                                 std::pair{dim3(1, 1, 3), dim3(1, 1, 64)}}) {
        const size_t blocks = size_t{grid.x} * grid.y * grid.z, threads = size_t{block.x} * block.y * block.z;
        Buf<uint32_t> out(blocks * threads);
        REQUIRE(launch_ids(grid, block, out.p) == cudaSuccess);
        const std::vector<uint32_t> got = out.read();
        size_t bad = 0;
        for (size_t b = 0; b < blocks; ++b)
          for (size_t t = 0; t < threads; ++t) bad += got[b * threads + t] != b * 1024 + t;
        CHECK(bad == 0);
      }
    });
  }
}

TEST_CASE("cuda emu: barriers order shared memory, and a missing barrier gives wrong results", "[cuda_emu]") {
  const int blocks = 7, threads = 256;
  std::vector<float> in(static_cast<size_t>(blocks * threads));
  std::iota(in.begin(), in.end(), 0.0f);
  Buf<float> din(in.size()), dout(blocks);
  din.write(in);
  std::vector<float> want(blocks);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) want[static_cast<size_t>(b)] += in[static_cast<size_t>(b * threads + t)];
  int wrong_schedules = 0;
  for (const NamedSchedule& sc : kSchedules) {
    INFO(sc.name);
    with_schedule(sc.s, sc.seed, [&] {
      REQUIRE(launch_block_sum(din.p, dout.p, blocks, threads, true) == cudaSuccess);
      CHECK(dout.read() == want);
      REQUIRE(launch_block_sum(din.p, dout.p, blocks, threads, false) == cudaSuccess);
      wrong_schedules += dout.read() != want;
    });
  }
  // Without the barrier, the first tree step reads slots later threads have not stored yet (forward order) or
  // has stored them (reverse): at least one schedule shows the race.
  CHECK(wrong_schedules >= 1);

  Buf<int> n(128);
  for (const NamedSchedule& sc : kSchedules) {
    INFO(sc.name);
    with_schedule(sc.s, sc.seed, [&] {
      REQUIRE(launch_neighbour(n.p, 128, true) == cudaSuccess);
      const std::vector<int> got = n.read();
      for (int t = 0; t < 128; ++t) CHECK(got[static_cast<size_t>(t)] == (t + 1) % 128);
    });
  }
  int racy_forward = 0, racy_reverse = 0;
  with_schedule(emu::Schedule::forward, 0, [&] {
    REQUIRE(launch_neighbour(n.p, 128, false) == cudaSuccess);
    const std::vector<int> got = n.read();
    for (int t = 0; t < 128; ++t) racy_forward += got[static_cast<size_t>(t)] != (t + 1) % 128;
  });
  with_schedule(emu::Schedule::reverse, 0, [&] {
    REQUIRE(launch_neighbour(n.p, 128, false) == cudaSuccess);
    const std::vector<int> got = n.read();
    for (int t = 0; t < 128; ++t) racy_reverse += got[static_cast<size_t>(t)] != (t + 1) % 128;
  });
  CHECK(racy_forward == 127);  // thread t reads slot t + 1 before thread t + 1 wrote it (poisoned: -1)
  CHECK(racy_reverse == 1);    // only the wrap-around read of slot 0 comes too early
}

TEST_CASE("cuda emu: divergent barriers and broken warp collectives are faults, not hangs", "[cuda_emu]") {
  Buf<int> out(128);
  const std::pair<int, const char*> cases[] = {
      {0, "threads 0-15 wait at __syncthreads (kernels.cu:42); threads 16-63 exited"},
      {1, "divergent __syncthreads: threads wait at different barriers"},
      {2, "divergent __syncthreads: some threads exited"},
      {3, "does not include the calling lane"},
      {4, "names lane 31, which has exited"},
      {5, "reads lane 20, which is not in the mask"},
      {6, "divergent warp collectives"},
  };
  for (const auto& [kind, text] : cases) {
    INFO("kind " << kind);
    REQUIRE(launch_broken(kind, out.p) == cudaSuccess);  // the launch itself is fine
    expect_fault(text);
  }
  // After a fault is cleared the device works again.
  Buf<int> ops(64 * 10);
  REQUIRE(launch_warp_ops(ops.p) == cudaSuccess);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("cuda emu: shuffles, votes and block reductions give CUDA's results", "[cuda_emu]") {
  Buf<int> out(64 * 10);
  for (const NamedSchedule& sc : kSchedules) {
    INFO(sc.name);
    with_schedule(sc.s, sc.seed, [&] {
      REQUIRE(launch_warp_ops(out.p) == cudaSuccess);
      const std::vector<int> got = out.read();
      for (int t = 0; t < 64; ++t) {
        INFO("thread " << t);
        const int lane = t & 31, warp = t >> 5;
        const int* o = got.data() + t * 10;
        CHECK(o[0] == (warp * 32) * 32 + 496);                          // sum of the warp's thread ids
        CHECK(o[1] == (lane % 8 == 0 ? t : t - 1));                      // up 1 within groups of 8
        CHECK(o[2] == (lane % 16 + 3 < 16 ? t + 3 : t));                 // down 3 within groups of 16
        CHECK(o[3] == (warp * 32 + 5) * 10);                             // lane 5
        unsigned ballot = 0;
        for (int k = 0; k < 32; k += 3) ballot |= 1u << k;
        CHECK(static_cast<unsigned>(o[4]) == ballot);
        CHECK(o[5] == (warp == 1 ? 1 : 0));
        CHECK(o[6] == 1);
        CHECK(o[7] == (lane < 8 ? t + 8 : lane < 16 ? t : -1));
        CHECK(o[8] == 100);  // or: thread 40 said yes; and: thread 63 said no
        CHECK(o[9] == 16);   // count: every fourth of 64
      }
    });
  }
}

TEST_CASE("cuda emu: shared memory starts poisoned in every block, dynamic shared memory works", "[cuda_emu]") {
  Buf<float> out(64);
  REQUIRE(launch_shared_poison(out.p) == cudaSuccess);
  const std::vector<float> got = out.read();
  for (int t = 0; t < 32; ++t) {
    CHECK(std::isnan(got[static_cast<size_t>(t)]));  // 0xffffffff: a read before any write is visible
    CHECK(got[static_cast<size_t>(32 + t)] == static_cast<float>(31 - t));
  }
  std::vector<float> in(200);
  std::iota(in.begin(), in.end(), 1.0f);
  Buf<float> din(200), dout(200);
  din.write(in);
  REQUIRE(launch_dynamic_shared(din.p, dout.p, 200) == cudaSuccess);
  const std::vector<float> rev = dout.read();
  for (int i = 0; i < 200; ++i) CHECK(rev[static_cast<size_t>(i)] == in[static_cast<size_t>(199 - i)]);
}

TEST_CASE("cuda emu: atomics count every thread of every block", "[cuda_emu]") {
  Buf<unsigned> c(1);
  c.write({0});
  REQUIRE(launch_atomic_count(c.p, 13, 96) == cudaSuccess);
  CHECK(c.read()[0] == 13u * 96u);
}

TEST_CASE("cuda emu: a grid of a quarter million threads runs each once, on reused stacks and fibers", "[cuda_emu]") {
  // Each stack and its fiber run thread after thread: without a barrier one stack runs them all, with barriers
  // 256 stacks run 1024 blocks. (Under ThreadSanitizer, fibers that kept a frame per thread they had run
  // overflowed TSan's shadow call stack of 64 Ki entries long before the end.)
  const int blocks = 1024, threads = 256;
  Buf<unsigned> c(1);
  c.write({0});
  REQUIRE(launch_atomic_count(c.p, blocks, threads) == cudaSuccess);
  CHECK(c.read()[0] == unsigned{blocks} * threads);

  std::vector<float> in(static_cast<size_t>(blocks) * threads);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 251);  // sums stay exact in float
  Buf<float> din(in.size()), dout(blocks);
  din.write(in);
  std::vector<float> want(blocks, 0.0f);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) want[static_cast<size_t>(b)] += in[static_cast<size_t>(b) * threads + t];
  REQUIRE(launch_block_sum(din.p, dout.p, blocks, threads, true) == cudaSuccess);
  CHECK(dout.read() == want);
}

TEST_CASE("cuda emu: copies in the wrong direction, host pointers, use after free and overruns are errors",
          "[cuda_emu][cuda_emu_memory]") {
  std::vector<float> host(64, 1.0f);
  void* d = nullptr;
  REQUIRE(cudaMalloc(&d, 64 * sizeof(float)) == cudaSuccess);
  // direction
  CHECK(cudaMemcpy(host.data(), d, 256, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK_THAT(std::string(cudaGetErrorString(cudaErrorInvalidValue)), Contains("wrong direction"));
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d, host.data(), 256, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), host.data() + 32, 64, cudaMemcpyDeviceToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d, host.data(), 256, cudaMemcpyDefault) == cudaSuccess);  // inferred from the pointers
  // bounds
  CHECK(cudaMemcpy(d, host.data(), 260, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK_THAT(std::string(cudaGetErrorString(cudaErrorInvalidValue)), Contains("out of bounds"));
  CHECK(cudaMemset(static_cast<char*>(d) + 200, 0, 57) == cudaErrorInvalidValue);
  CHECK(cudaMemset(host.data(), 0, 16) == cudaErrorInvalidValue);  // a host pointer used as a device pointer
  CHECK_THAT(std::string(cudaGetErrorString(cudaErrorInvalidValue)), Contains("not device memory"));
  // frees
  CHECK(cudaFree(static_cast<char*>(d) + 4) == cudaErrorInvalidValue);
  CHECK(cudaFree(host.data()) == cudaErrorInvalidValue);
  CHECK(cudaFree(d) == cudaSuccess);
  CHECK(cudaFree(d) == cudaErrorInvalidValue);
  CHECK_THAT(std::string(cudaGetErrorString(cudaErrorInvalidValue)), Contains("double free"));
  CHECK(cudaMemcpy(host.data(), d, 16, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK_THAT(std::string(cudaGetErrorString(cudaErrorInvalidValue)), Contains("use after free"));
  (void)cudaGetLastError();
  // a kernel given a host pointer or freed memory faults when it runs (an illegal address on a GPU)
  REQUIRE(launch_fill(host.data(), 64, 2.0f) == cudaSuccess);
  expect_fault("not device memory");
  CHECK(host[0] == 1.0f);  // the kernel did not run
  REQUIRE(launch_fill(static_cast<float*>(d), 64, 2.0f) == cudaSuccess);
  expect_fault("freed");
  // a write into the bytes between the end and the next 256-byte boundary is caught after the work
  float* small = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&small), 10 * sizeof(float)) == cudaSuccess);
  REQUIRE(launch_write_at(small, 12, 1.0f) == cudaSuccess);
  expect_fault("past the end");
  CHECK(cudaFree(small) == cudaSuccess);
}

TEST_CASE("cuda emu: touching device memory from host code or past its guard page stops the process with a message",
          "[cuda_emu][cuda_emu_memory]") {
  float* d = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&d), 1024 * sizeof(float)) == cudaSuccess);
  const ChildResult host_read = in_child([&] {
    volatile float x = d[3];  // a device pointer used as a host pointer
    (void)x;
  });
  CHECK(host_read.signalled);
  CHECK_THAT(host_read.err, Contains("host code dereferenced device memory"));
  const ChildResult past_end = in_child([&] {
    (void)launch_write_at(d, 1024 + 100, 1.0f);  // 400 bytes past the end: in the guard page
    (void)cudaDeviceSynchronize();
  });
  CHECK(past_end.signalled);
  CHECK_THAT(past_end.err, Contains("400 bytes past the end of a device allocation of 4096 bytes"));
  CHECK_THAT(past_end.err, Contains("write_at_kernel"));
  CHECK(cudaFree(d) == cudaSuccess);
  const ChildResult after_free = in_child([&] {
    (void)launch_write_at(d, 0, 1.0f);
    (void)cudaDeviceSynchronize();
  });
  CHECK_FALSE(after_free.signalled);  // the argument check stops the kernel before any access: a sticky error
  CHECK_THAT(after_free.err, Contains("freed"));
}

TEST_CASE("cuda emu: work runs in stream order when the host synchronises, and copies keep the runtime's rules",
          "[cuda_emu][cuda_emu_streams]") {
  constexpr size_t n = 1000;
  float* pinned = nullptr;
  REQUIRE(cudaHostAlloc(reinterpret_cast<void**>(&pinned), n * sizeof(float), cudaHostAllocPortable) == cudaSuccess);
  Buf<float> d(n);
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  // An asynchronous copy from pinned memory reads it when it runs: a write before the copy completes is seen.
  for (size_t i = 0; i < n; ++i) pinned[i] = 1.0f;
  REQUIRE(cudaMemcpyAsync(d.p, pinned, n * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  pinned[0] = 5.0f;  // a bug in real code (the copy may not have run yet); here it has not
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(d.read()[0] == 5.0f);
  // A pageable source is staged at the call: later writes are not seen.
  std::vector<float> pageable(n, 2.0f);
  REQUIRE(cudaMemcpyAsync(d.p, pageable.data(), n * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  pageable[0] = 9.0f;
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(d.read()[0] == 2.0f);
  // A device-to-pinned copy completes only when the host synchronises: reading early sees the old values.
  REQUIRE(launch_fill(d.p, n, 3.0f, s) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(pinned, d.p, n * sizeof(float), cudaMemcpyDeviceToHost, s) == cudaSuccess);
  CHECK(pinned[10] == 1.0f);  // not yet
  cudaEvent_t ev = nullptr;
  REQUIRE(cudaEventCreate(&ev) == cudaSuccess);
  REQUIRE(cudaEventRecord(ev, s) == cudaSuccess);
  CHECK(cudaEventQuery(ev) == cudaErrorNotReady);  // the first query finds it pending ...
  CHECK(cudaEventQuery(ev) == cudaSuccess);        // ... and the device makes progress
  CHECK(pinned[10] == 3.0f);
  // Two streams ordered by an event: the increment on s2 waits for the fill on s.
  cudaStream_t s2 = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(launch_fill(d.p, n, 10.0f, s) == cudaSuccess);
  REQUIRE(cudaEventRecord(ev, s) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(s2, ev, 0) == cudaSuccess);
  REQUIRE(launch_increment(d.p, n, s2) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(s2) == cudaSuccess);  // runs the fill first
  CHECK(d.read()[n - 1] == 11.0f);
  // Without the wait, s2's work runs without s's: synchronising s2 alone does not run the fill on s.
  REQUIRE(launch_fill(d.p, n, 20.0f, s) == cudaSuccess);
  REQUIRE(launch_increment(d.p, n, s2) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(s2) == cudaSuccess);
  std::vector<float> now(n);
  REQUIRE(cudaMemcpyAsync(now.data(), d.p, n * sizeof(float), cudaMemcpyDeviceToHost, s2) == cudaSuccess);
  CHECK(now[0] == 12.0f);  // 11 + 1: the fill of 20 on s has not run
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(d.read()[0] == 20.0f);
  // Elapsed time between two timed events around some work.
  cudaEvent_t a = nullptr, b = nullptr;
  REQUIRE(cudaEventCreate(&a) == cudaSuccess);
  REQUIRE(cudaEventCreate(&b) == cudaSuccess);
  REQUIRE(cudaEventRecord(a, s) == cudaSuccess);
  REQUIRE(launch_fill(d.p, n, 1.0f, s) == cudaSuccess);
  REQUIRE(cudaEventRecord(b, s) == cudaSuccess);
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, a, b) == cudaErrorNotReady);
  REQUIRE(cudaEventSynchronize(b) == cudaSuccess);
  REQUIRE(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
  CHECK(ms >= 0.0f);
  cudaEvent_t untimed = nullptr;
  REQUIRE(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming) == cudaSuccess);
  REQUIRE(cudaEventRecord(untimed, s) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(untimed) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, a, untimed) == cudaErrorInvalidResourceHandle);
  for (cudaEvent_t e : {ev, a, b, untimed}) CHECK(cudaEventDestroy(e) == cudaSuccess);
  CHECK(cudaEventDestroy(ev) == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamDestroy(s2) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s2) == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  (void)cudaGetLastError();
}

TEST_CASE("cuda emu: the legacy default stream waits for blocking streams, not for non-blocking ones",
          "[cuda_emu][cuda_emu_streams]") {
  constexpr size_t n = 256;
  Buf<float> d(n);
  cudaStream_t blocking = nullptr, nonblocking = nullptr;
  REQUIRE(cudaStreamCreate(&blocking) == cudaSuccess);
  REQUIRE(cudaStreamCreateWithFlags(&nonblocking, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(launch_fill(d.p, n, 4.0f, blocking) == cudaSuccess);
  REQUIRE(launch_increment(d.p, n, nullptr) == cudaSuccess);  // legacy stream: after the fill
  REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess);
  std::vector<float> h(n);
  REQUIRE(cudaMemcpyAsync(h.data(), d.p, n * sizeof(float), cudaMemcpyDeviceToHost, nonblocking) == cudaSuccess);
  CHECK(h[0] == 5.0f);
  REQUIRE(launch_fill(d.p, n, 7.0f, nonblocking) == cudaSuccess);
  REQUIRE(launch_increment(d.p, n, nullptr) == cudaSuccess);  // does not wait for the non-blocking stream
  REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(h.data(), d.p, n * sizeof(float), cudaMemcpyDeviceToHost, blocking) == cudaSuccess);
  CHECK(h[0] == 6.0f);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(d.read()[0] == 7.0f);
  CHECK(cudaStreamDestroy(blocking) == cudaSuccess);
  CHECK(cudaStreamDestroy(nonblocking) == cudaSuccess);
}

TEST_CASE("cuda emu: out of device memory goes through the caching allocator's release-and-retry, then a clear error",
          "[cuda_emu][cuda_emu_memory]") {
  const size_t before = emu::settings().memory_bytes;
  Allocator& alloc = allocator_for(Device::cuda(0));
  alloc.empty_cache();
  emu::set_device_memory(size_t{64} << 20);
  try {
    void* raw = nullptr;
    CHECK(cudaMalloc(&raw, size_t{65} << 20) == cudaErrorMemoryAllocation);
    CHECK_THAT(std::string(cudaGetErrorString(cudaErrorMemoryAllocation)), Contains("68157440 bytes"));
    (void)cudaGetLastError();
    {
      Tensor a = Tensor::empty(Shape{10 << 20}, DType::f32, Device::cuda(0));  // 40 MiB: a 40 MiB segment
      CHECK(alloc.stats().reserved_bytes >= (int64_t{40} << 20));
    }
    // a is cached: 48 MiB more does not fit next to it, so the cache is released and the allocation retried
    Tensor b = Tensor::empty(Shape{12 << 20}, DType::f32, Device::cuda(0));
    CHECK(b.numel() == (12 << 20));
    CHECK(alloc.stats().reserved_bytes < (int64_t{64} << 20));
    CHECK_THROWS_WITH(Tensor::empty(Shape{8 << 20}, DType::f32, Device::cuda(0)),
                      Contains("out of memory on cuda:0") && Contains("cannot allocate 32.00 MiB") &&
                          Contains("after releasing its cache"));
  } catch (...) {
    emu::set_device_memory(before);
    throw;
  }
  alloc.empty_cache();
  emu::set_device_memory(before);
  (void)cudaGetLastError();
}

TEST_CASE("cuda emu: the fault handler and argument checks name the kernel of a bad launch", "[cuda_emu]") {
  std::vector<float> host(4);
  REQUIRE(launch_fill(host.data(), 4, 1.0f) == cudaSuccess);
  expect_fault("fill_kernel");
}

TEST_CASE("cuda emu: counters move with the work executed", "[cuda_emu]") {
  const emu::Counters c0 = emu::counters();
  Buf<int> out(640);
  REQUIRE(launch_warp_ops(out.p) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const emu::Counters c1 = emu::counters();
  CHECK(c1.kernels == c0.kernels + 1);
  CHECK(c1.blocks == c0.blocks + 1);
  CHECK(c1.threads == c0.threads + 64);
  CHECK(c1.barriers == c0.barriers + 3);
  CHECK(c1.warp_ops >= c0.warp_ops + 2 * 10);
  CHECK(c1.drains > c0.drains);
}

TEST_CASE("cuda emu: two devices: tensors move between them on both streams and keep their values",
          "[cuda_emu][cuda_emu_multi]") {
  if (cuda::device_count() < 2) {
    WARN("not exercised here: this test needs two emulated devices (MIXTAPE_EMU_DEVICES=2)");
    return;
  }
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 1000) * 0.01f - 5.0f;
  const Tensor host = from_vector(v, Shape{static_cast<int64_t>(v.size())});
  const Tensor on0 = host.to(Device::cuda(0));
  const Tensor on1 = on0.to(Device::cuda(1));  // GPU to GPU: ordered by events on both streams
  CHECK(on1.device() == Device::cuda(1));
  const Tensor y1 = kernels::unary(UnaryOp::exp, on1);  // runs on cuda:1's backend and stream
  const Tensor back = y1.to(Device::cuda(0)).to(Device::cpu());
  const Tensor want = kernels::unary(UnaryOp::exp, host);
  CHECK(std::memcmp(back.raw_data(), want.raw_data(), want.nbytes()) == 0);
  // Memory belongs to the device that was current at cudaMalloc, and kernels may not use another device's.
  int before = -1;
  REQUIRE(cudaGetDevice(&before) == cudaSuccess);
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  float* p1 = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p1), 4096) == cudaSuccess);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  cudaPointerAttributes attr{};
  REQUIRE(cudaPointerGetAttributes(&attr, p1) == cudaSuccess);
  CHECK(attr.device == 1);
  REQUIRE(launch_fill(p1, 1024, 1.0f) == cudaSuccess);  // a kernel on cuda:0 given cuda:1's memory
  expect_fault("memory of cuda:1, used on cuda:0");
  CHECK(cudaFree(p1) == cudaSuccess);
  REQUIRE(cudaSetDevice(before) == cudaSuccess);
  CHECK(cudaSetDevice(2) == cudaErrorInvalidDevice);
  (void)cudaGetLastError();
}

#endif  // MIXTAPE_CUDA_EMU
