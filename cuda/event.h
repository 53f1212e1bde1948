#pragma once
// CUDA events for timing device work (benchmarks) and for ordering: RAII, on one device's stream.
//
//   cuda::Timer t(0);           // device 0
//   t.start();
//   ... launch work ...
//   double ms = t.stop_ms();    // device time between start() and stop(), waiting for the work to finish
#include <cuda_runtime_api.h>

namespace mixtape::cuda {

/// An owned cudaEvent_t of one device, destroyed with the object.
class Event {
 public:
  /// An event on device `device`; `timing` enables elapsed_ms (disable it for pure ordering: cheaper).
  explicit Event(int device, bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;

  /// Records the event on `stream` (default: the device's backend stream).
  void record(cudaStream_t stream);
  /// Records the event on the device's backend stream.
  void record();
  /// Blocks the host until the recorded work has completed.
  void synchronize() const;
  /// Whether the recorded work has completed (never blocks).
  bool query() const;
  /// Makes `stream` wait (on the device, not the host) for the recorded work.
  void wait_on(cudaStream_t stream) const;
  /// Milliseconds of device time from `start` to `end` (both recorded with timing on; waits for `end`).
  static double elapsed_ms(const Event& start, const Event& end);

  /// The device the event belongs to.
  int device() const { return device_; }
  /// The raw event.
  cudaEvent_t get() const { return event_; }

 private:
  int device_ = 0;
  cudaEvent_t event_ = nullptr;
  bool recorded_ = false;
};

/// Device-side elapsed time of the work queued on a device's backend stream between start() and stop().
class Timer {
 public:
  /// A timer on device `device`'s backend stream.
  explicit Timer(int device);
  /// Records the start event.
  void start();
  /// Records the stop event (asynchronous).
  void stop();
  /// Milliseconds between start() and stop(), waiting for the stop event.
  double elapsed_ms() const;
  /// stop() then elapsed_ms().
  double stop_ms();

 private:
  Event start_, stop_;
  bool started_ = false, stopped_ = false;
};

}  // namespace mixtape::cuda
