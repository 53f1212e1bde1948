#include "cuda/event.h"

#include <utility>

#include "cuda/check.h"
#include "cuda/cuda_backend.h"

namespace mixtape::cuda {

Event::Event(int device, bool timing) : device_(device) {
  DeviceGuard g(device_);
  MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

Event::~Event() {
  if (event_) (void)cudaEventDestroy(event_);
}

Event::Event(Event&& other) noexcept
    : device_(other.device_), event_(std::exchange(other.event_, nullptr)), recorded_(other.recorded_) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_) (void)cudaEventDestroy(event_);
    device_ = other.device_;
    event_ = std::exchange(other.event_, nullptr);
    recorded_ = other.recorded_;
  }
  return *this;
}

void Event::record(cudaStream_t stream) {
  MIXTAPE_CHECK(event_ != nullptr, "cuda::Event::record on a moved-from event");
  DeviceGuard g(device_);
  MIXTAPE_CUDA_CHECK(cudaEventRecord(event_, stream));
  recorded_ = true;
}

void Event::record() { record(backend(device_).stream()); }

void Event::synchronize() const {
  MIXTAPE_CHECK(recorded_, "cuda::Event::synchronize before record()");
  MIXTAPE_CUDA_CHECK(cudaEventSynchronize(event_));
}

bool Event::query() const {
  MIXTAPE_CHECK(recorded_, "cuda::Event::query before record()");
  const cudaError_t err = cudaEventQuery(event_);
  if (err == cudaErrorNotReady) return false;
  MIXTAPE_CUDA_CHECK(err);
  return true;
}

void Event::wait_on(cudaStream_t stream) const {
  MIXTAPE_CHECK(recorded_, "cuda::Event::wait_on before record()");
  MIXTAPE_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
}

double Event::elapsed_ms(const Event& start, const Event& end) {
  MIXTAPE_CHECK(start.recorded_ && end.recorded_, "cuda::Event::elapsed_ms: both events must be recorded first");
  MIXTAPE_CHECK(start.device_ == end.device_, "cuda::Event::elapsed_ms: events of devices ", start.device_, " and ",
                end.device_);
  MIXTAPE_CUDA_CHECK(cudaEventSynchronize(end.event_));
  float ms = 0.0f;
  MIXTAPE_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, end.event_));
  return static_cast<double>(ms);
}

Timer::Timer(int device) : start_(device), stop_(device) {}

void Timer::start() {
  start_.record();
  started_ = true;
  stopped_ = false;
}

void Timer::stop() {
  MIXTAPE_CHECK(started_, "cuda::Timer::stop before start()");
  stop_.record();
  stopped_ = true;
}

double Timer::elapsed_ms() const {
  MIXTAPE_CHECK(stopped_, "cuda::Timer::elapsed_ms before stop()");
  return Event::elapsed_ms(start_, stop_);
}

double Timer::stop_ms() {
  stop();
  return elapsed_ms();
}

}  // namespace mixtape::cuda
