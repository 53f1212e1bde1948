// CUDA optimizer updates and AMP loss-scaling kernels.
//
// Fused SGD / Adam / AdamW: one pass per parameter updating the master, its state and (optionally) the f16/bf16
// compute copy, skipped on the device when the found-inf flag is set. They reproduce CpuBackend's arithmetic
// (core/cpu/cpu_optim.cpp, PyTorch 1.13's formulas) bit for bit: the same float coefficients formed in double on
// the host (cuda/multi_tensor.h), the same order of operations, every float operation written as an explicitly
// rounded intrinsic (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn) so that nvcc cannot contract a multiply and an
// add into an FMA (the CPU code is compiled without FMA contraction), and the shared f16/bf16 conversions of
// core/half.h.
//
// AMP: one multi-tensor launch unscales every gradient and records inf/NaN into a device flag (chunk tables
// planned on the host by plan_chunks); the loss-scale update is a single-thread kernel, so a training step
// needs no host round-trip beyond reading the flag for the skip decision.
#include <type_traits>

#include "core/error.h"
#include "core/half.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/multi_tensor.h"

namespace mixtape::cuda {

namespace {

constexpr int kThreads = 256;

/// Grid-stride start and stride of the calling thread.
__device__ __forceinline__ int64_t thread_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

/// Whether an optional found-inf flag says "skip" (read once per thread; the flag is not written meanwhile).
__device__ __forceinline__ bool skip_update(const float* found_inf) { return found_inf && *found_inf != 0.0f; }

/// SGD (CpuBackend::sgd_update): T is the master's storage type, C the compute copy's (void: none).
template <class T, class C>
__global__ void sgd_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, C* __restrict__ copy,
                           int64_t n, SgdCoefficients k, bool first_step, bool nesterov,
                           const float* __restrict__ found_inf) {
  if (skip_update(found_inf)) return;
  for (int64_t i = thread_start(); i < n; i += grid_stride()) {
    const float pv = static_cast<float>(p[i]);
    float d = static_cast<float>(g[i]);
    if (k.weight_decay != 0.0f) d = __fadd_rn(d, __fmul_rn(k.weight_decay, pv));
    if (buf) {
      const float b = first_step ? d
                                 : __fadd_rn(__fmul_rn(k.momentum, static_cast<float>(buf[i])),
                                             __fmul_rn(k.one_minus_dampening, d));
      buf[i] = T(b);
      d = nesterov ? __fadd_rn(d, __fmul_rn(k.momentum, b)) : b;
    }
    const T updated = T(__fsub_rn(pv, __fmul_rn(k.lr, d)));
    p[i] = updated;
    if constexpr (!std::is_void_v<C>) copy[i] = C(static_cast<float>(updated));
  }
}

/// Adam / AdamW (CpuBackend::adam_update).
template <class T, class C>
__global__ void adam_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            C* __restrict__ copy, int64_t n, AdamCoefficients k, bool decoupled,
                            const float* __restrict__ found_inf) {
  if (skip_update(found_inf)) return;
  for (int64_t i = thread_start(); i < n; i += grid_stride()) {
    float pv = static_cast<float>(p[i]);
    float gv = static_cast<float>(g[i]);
    if (decoupled) pv = __fmul_rn(pv, k.decay);
    else if (k.weight_decay != 0.0f) gv = __fadd_rn(gv, __fmul_rn(k.weight_decay, pv));
    const float mv = __fadd_rn(__fmul_rn(static_cast<float>(m[i]), k.beta1), __fmul_rn(k.one_minus_beta1, gv));
    const float vv =
        __fadd_rn(__fmul_rn(static_cast<float>(v[i]), k.beta2), __fmul_rn(__fmul_rn(k.one_minus_beta2, gv), gv));
    m[i] = T(mv);
    v[i] = T(vv);
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vv), k.bias_correction2_sqrt), k.eps);
    const T updated = T(__fsub_rn(pv, __fdiv_rn(__fmul_rn(k.step_size, mv), denom)));
    p[i] = updated;
    if constexpr (!std::is_void_v<C>) copy[i] = C(static_cast<float>(updated));
  }
}

/// Unscales one chunk in place; returns whether this thread saw an inf/NaN (before scaling).
template <class T>
__device__ __forceinline__ bool unscale_chunk(T* data, int n, float inv) {
  bool bad = false;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = static_cast<float>(data[i]);
    bad |= !(__fsub_rn(v, v) == 0.0f);  // inf - inf and NaN - NaN are NaN
    data[i] = T(__fmul_rn(v, inv));
  }
  return bad;
}

/// One block per chunk of `table`. inv_scale = float32(1 / double(*scale)) when scale is given, else inv_direct.
__global__ void unscale_kernel(ChunkTable table, const float* __restrict__ scale, float inv_direct,
                               float* __restrict__ found_inf) {
  const ChunkEntry e = table.chunks[blockIdx.x];
  const float inv = scale ? __double2float_rn(__ddiv_rn(1.0, static_cast<double>(*scale))) : inv_direct;
  bool bad = false;
  switch (static_cast<DType>(e.dtype)) {
    case DType::f32: bad = unscale_chunk(static_cast<float*>(e.data), e.numel, inv); break;
    case DType::f16: bad = unscale_chunk(static_cast<Half*>(e.data), e.numel, inv); break;
    case DType::bf16: bad = unscale_chunk(static_cast<BFloat16*>(e.data), e.numel, inv); break;
    default: break;  // rejected on the host
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found_inf = 1.0f;  // any writer writes the same value
}

/// GradScaler::update()'s rule (CpuBackend::update_loss_scale), one thread.
__global__ void loss_scale_kernel(float* scale, int64_t* growth_tracker, int64_t* hysteresis_tracker,
                                  const float* found_inf, double growth_factor, double backoff_factor, float min_scale,
                                  float max_scale, int64_t growth_interval, int64_t hysteresis) {
  float s = *scale;
  int64_t growth = *growth_tracker;
  int64_t hyst = *hysteresis_tracker;
  if (*found_inf != 0.0f) {
    growth = 0;
    hyst = hyst - 1 > 0 ? hyst - 1 : 0;
    if (hyst == 0) {
      const float backed_off = __double2float_rn(__dmul_rn(static_cast<double>(s), backoff_factor));
      s = backed_off < min_scale ? min_scale : backed_off;  // std::max(backed_off, min_scale)
    }
  } else {
    const int64_t successful = growth + 1;
    if (successful >= growth_interval) {
      const float grown = __double2float_rn(__dmul_rn(static_cast<double>(s), growth_factor));
      if (isfinite(grown)) s = max_scale < grown ? max_scale : grown;  // std::min(grown, max_scale)
      growth = 0;
      hyst = hysteresis;
    } else {
      growth = successful;
    }
  }
  *scale = s;
  *growth_tracker = growth;
  *hysteresis_tracker = hyst;
}

/// Throws unless `t` is a CUDA tensor on device `index` (named `what` in the message of `op`).
void check_on(const Tensor& t, int index, const char* op, const char* what) {
  MIXTAPE_CHECK(t.device() == Device::cuda(index), op, ": ", what, " is on ", t.device().to_string(),
                ", expected cuda:", index);
}

/// Throws unless `t` is a one-element tensor of `dtype` on device `index`.
void check_scalar(const Tensor& t, DType dtype, int index, const char* op, const char* what) {
  MIXTAPE_CHECK(t.defined() && t.dtype() == dtype && t.numel() == 1, op, ": ", what, " must be a one-element ",
                dtype_name(dtype), " tensor, got ",
                t.defined() ? detail::cat(dtype_name(t.dtype()), " ", t.shape().to_string()) : std::string("none"));
  check_on(t, index, op, what);
}

/// Checks the tensors of an optimizer update (all like `param`, on device `index`) and its optional extras.
void check_update(const char* op, int index, const Tensor& param, std::initializer_list<const Tensor*> like_param,
                  const Tensor& compute_copy, const Tensor& found_inf) {
  MIXTAPE_CHECK(param.dtype() == DType::f32 || param.dtype() == DType::f16 || param.dtype() == DType::bf16, op,
                ": the cuda backend updates f32 (or f16/bf16) parameters, got ", dtype_name(param.dtype()),
                " (float64 is CPU-only)");
  check_on(param, index, op, "the parameter");
  for (const Tensor* t : like_param) {
    if (!t->defined()) continue;
    MIXTAPE_CHECK(t->dtype() == param.dtype() && t->numel() == param.numel(), op, ": a state/gradient tensor is ",
                  dtype_name(t->dtype()), " ", t->shape().to_string(), " but the parameter is ",
                  dtype_name(param.dtype()), " ", param.shape().to_string());
    check_on(*t, index, op, "a state/gradient tensor");
  }
  if (compute_copy.defined()) {
    MIXTAPE_CHECK(compute_copy.dtype() == DType::f16 || compute_copy.dtype() == DType::bf16, op,
                  ": compute_copy must be f16 or bf16, got ", dtype_name(compute_copy.dtype()));
    MIXTAPE_CHECK(compute_copy.shape() == param.shape(), op, ": compute_copy is ", compute_copy.shape().to_string(),
                  " but the parameter is ", param.shape().to_string());
    check_on(compute_copy, index, op, "compute_copy");
  }
  if (found_inf.defined()) check_scalar(found_inf, DType::f32, index, op, "found_inf");
}

/// Calls f(T{}, C{}) for the master's storage type T and the compute copy's C (void when there is none).
template <class F>
void dispatch_update(DType param, const Tensor& compute_copy, F&& f) {
  auto with_copy = [&](auto t_tag) {
    using T = typename decltype(t_tag)::type;
    if (!compute_copy.defined()) return f(type_tag<T>{}, type_tag<void>{});
    if (compute_copy.dtype() == DType::f16) return f(type_tag<T>{}, type_tag<Half>{});
    return f(type_tag<T>{}, type_tag<BFloat16>{});
  };
  switch (param) {
    case DType::f16: return with_copy(type_tag<Half>{});
    case DType::bf16: return with_copy(type_tag<BFloat16>{});
    default: return with_copy(type_tag<float>{});
  }
}

template <class C>
C* copy_ptr(const Tensor& compute_copy) {
  if constexpr (std::is_void_v<C>) return nullptr;
  else return static_cast<C*>(compute_copy.raw_data());
}

const float* flag_ptr(const Tensor& found_inf) {
  return found_inf.defined() ? static_cast<const float*>(found_inf.raw_data()) : nullptr;
}

}  // namespace

void CudaBackend::sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdUpdate& u) {
  check_update("sgd_update", index_, param, {&grad, &momentum_buf}, u.compute_copy, u.found_inf);
  const int64_t n = param.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const SgdCoefficients k = sgd_coefficients(u);
  dispatch_update(param.dtype(), u.compute_copy, [&](auto t_tag, auto c_tag) {
    using T = typename decltype(t_tag)::type;
    using C = typename decltype(c_tag)::type;
    T* buf = momentum_buf.defined() ? static_cast<T*>(momentum_buf.raw_data()) : nullptr;
    sgd_kernel<T, C><<<elementwise_blocks(n, kThreads), kThreads, 0, stream_>>>(
        static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()), buf, copy_ptr<C>(u.compute_copy),
        n, k, u.first_step, u.nesterov, flag_ptr(u.found_inf));
  });
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

void CudaBackend::adam_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                              const AdamUpdate& u) {
  check_update("adam_update", index_, param, {&grad, &exp_avg, &exp_avg_sq}, u.compute_copy, u.found_inf);
  MIXTAPE_CHECK(u.step >= 1, "adam_update: step must be >= 1 (1-based), got ", u.step);
  const int64_t n = param.numel();
  if (n == 0) return;
  DeviceGuard guard(index_);
  const AdamCoefficients k = adam_coefficients(u);
  dispatch_update(param.dtype(), u.compute_copy, [&](auto t_tag, auto c_tag) {
    using T = typename decltype(t_tag)::type;
    using C = typename decltype(c_tag)::type;
    adam_kernel<T, C><<<elementwise_blocks(n, kThreads), kThreads, 0, stream_>>>(
        static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()),
        static_cast<T*>(exp_avg.raw_data()), static_cast<T*>(exp_avg_sq.raw_data()), copy_ptr<C>(u.compute_copy), n,
        k, u.decoupled_weight_decay, flag_ptr(u.found_inf));
  });
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

namespace {

/// Launches the multi-tensor unscale over `grads` (checked: f32/f16/bf16 on device `index`).
void launch_unscale(const std::vector<Tensor>& grads, int index, cudaStream_t stream, const float* scale,
                    float inv_direct, float* found_inf, const char* op) {
  std::vector<TensorRef> refs;
  refs.reserve(grads.size());
  for (const Tensor& g : grads) {
    MIXTAPE_CHECK(g.defined(), op, ": a gradient is an undefined tensor");
    MIXTAPE_CHECK(g.dtype() == DType::f32 || g.dtype() == DType::f16 || g.dtype() == DType::bf16, op,
                  ": gradients must be f32, f16 or bf16 on the cuda backend, got ", dtype_name(g.dtype()));
    check_on(g, index, op, "a gradient");
    refs.push_back({g.raw_data(), g.numel(), g.dtype()});
  }
  for (const ChunkTable& table : plan_chunks(refs)) {
    unscale_kernel<<<table.count, kThreads, 0, stream>>>(table, scale, inv_direct, found_inf);
    MIXTAPE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

bool CudaBackend::unscale_and_check(const std::vector<Tensor>& grads, double inv_scale) {
  DeviceGuard guard(index_);
  const Tensor flag = Tensor::empty(Shape{}, DType::f32, Device::cuda(index_));
  MIXTAPE_CUDA_CHECK(cudaMemsetAsync(flag.raw_data(), 0, sizeof(float), stream_));
  // The CPU backend multiplies f16/bf16/f32 gradients by float(inv_scale): the same rounding here.
  launch_unscale(grads, index_, stream_, nullptr, static_cast<float>(inv_scale), static_cast<float*>(flag.raw_data()),
                 "unscale_and_check");
  float found = 0.0f;
  MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(&found, flag.raw_data(), sizeof(float), cudaMemcpyDeviceToHost, stream_));
  MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the one sync: the flag is read
  return found != 0.0f;
}

void CudaBackend::unscale_and_check_into(const std::vector<Tensor>& grads, const Tensor& scale,
                                         const Tensor& found_inf) {
  check_scalar(scale, DType::f32, index_, "unscale_and_check_into", "scale");
  check_scalar(found_inf, DType::f32, index_, "unscale_and_check_into", "found_inf");
  DeviceGuard guard(index_);
  launch_unscale(grads, index_, stream_, static_cast<const float*>(scale.raw_data()), 1.0f,
                 static_cast<float*>(found_inf.raw_data()), "unscale_and_check_into");
}

void CudaBackend::update_loss_scale(const Tensor& scale, const Tensor& growth_tracker, const Tensor& hysteresis_tracker,
                                    const Tensor& found_inf, const LossScaleUpdate& u) {
  const char* op = "update_loss_scale";
  check_scalar(scale, DType::f32, index_, op, "scale");
  check_scalar(growth_tracker, DType::i64, index_, op, "growth_tracker");
  check_scalar(hysteresis_tracker, DType::i64, index_, op, "hysteresis_tracker");
  check_scalar(found_inf, DType::f32, index_, op, "found_inf");
  DeviceGuard guard(index_);
  loss_scale_kernel<<<1, 1, 0, stream_>>>(
      static_cast<float*>(scale.raw_data()), static_cast<int64_t*>(growth_tracker.raw_data()),
      static_cast<int64_t*>(hysteresis_tracker.raw_data()), static_cast<const float*>(found_inf.raw_data()),
      u.growth_factor, u.backoff_factor, static_cast<float>(u.min_scale), static_cast<float>(u.max_scale),
      u.growth_interval, u.hysteresis);
  MIXTAPE_CUDA_CHECK_LAUNCH();
}

}  // namespace mixtape::cuda
