// oneDNN matrix products for the CPU backend, and the choice between oneDNN and Eigen (core/cpu_kernels.h).
//
// A product C (m, n) = op(A) op(B) (+ beta C) is one oneDNN matmul on the tensors' own row-major buffers: a
// transposed operand is the same buffer described with swapped strides, bf16 operands accumulate in float32 and
// the output (f32 or bf16) is rounded once, after the bias and activation (post-ops). alpha != 1 is oneDNN's output
// scale; it is used only without a bias, because oneDNN 2.x scales before or after the bias depending on the
// primitive. Each distinct product (dtype, m, n, k, transposes, epilogue, alpha, beta, thread count) gets its
// primitive once, kept in a process-wide cache; its scratchpad comes from the CPU allocator (oneDNN's user
// scratchpad mode), so the memory counters see it. A primitive whose implementation is oneDNN's reference code
// ("ref:...") is refused: Eigen is much faster than that. oneDNN runs on cpu_threads() OpenMP threads.
#include "core/cpu/cpu_onednn.h"
#include "core/cpu/cpu_onednn_detail.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "core/cpu/cpu_simd.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"
#include "core/error.h"
#include "core/tensor.h"

#if MIXTAPE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

// Debian's oneDNN runs its threads on OpenMP (libgomp, linked with it): the calling thread's team size is the
// thread count of the oneDNN primitives it creates and runs. Declared here rather than through <omp.h> so that no
// OpenMP compiler flag is needed (clang would pick its own runtime, a second one in the process).
extern "C" void omp_set_num_threads(int n);
#endif

namespace mixtape {

namespace {

thread_local std::string t_last_impl;

std::atomic<int> g_kernels{-1};  // -1: not read from the environment yet

}  // namespace

CpuKernels parse_cpu_kernels(const std::string& s) {
  if (s == "auto") return CpuKernels::automatic;
  if (s == "onednn") return CpuKernels::onednn;
  if (s == "eigen") return CpuKernels::eigen;
  throw Error("CPU kernels '" + s + "': expected auto, onednn or eigen");
}

const char* cpu_kernels_name(CpuKernels k) {
  switch (k) {
    case CpuKernels::automatic: return "auto";
    case CpuKernels::onednn: return "onednn";
    case CpuKernels::eigen: return "eigen";
  }
  return "auto";
}

CpuKernels cpu_kernels() {
  int v = g_kernels.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv("MIXTAPE_CPU_KERNELS");
    CpuKernels k = CpuKernels::automatic;
    if (env && *env) {
      try {
        k = parse_cpu_kernels(env);
      } catch (const Error& e) {
        throw Error(std::string("MIXTAPE_CPU_KERNELS: ") + e.what());
      }
    }
    int expected = -1;
    g_kernels.compare_exchange_strong(expected, static_cast<int>(k));
    v = g_kernels.load(std::memory_order_relaxed);
  }
  return static_cast<CpuKernels>(v);
}

void set_cpu_kernels(CpuKernels k) { g_kernels.store(static_cast<int>(k), std::memory_order_relaxed); }

std::string last_cpu_gemm_impl() { return t_last_impl; }

namespace {
std::mutex g_count_mu;
std::map<std::string, int64_t> g_counts;  // implementation -> products run
}  // namespace

void cpu::count_impl(const std::string& impl) {
  std::lock_guard<std::mutex> lock(g_count_mu);
  ++g_counts[impl];
}

void cpu::set_last_gemm_impl(const char* impl) {
  if (t_last_impl != impl) t_last_impl = impl;
  count_impl(t_last_impl);
}

std::string cpu_gemm_impl_counts() {
  std::lock_guard<std::mutex> lock(g_count_mu);
  std::string s;
  for (const auto& [impl, n] : g_counts) s += (s.empty() ? "" : ", ") + impl + " x " + std::to_string(n);
  return s;
}

void reset_cpu_gemm_impl_counts() {
  std::lock_guard<std::mutex> lock(g_count_mu);
  g_counts.clear();
}

#if MIXTAPE_HAVE_ONEDNN

namespace {

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    default: return "isa_all";
  }
}

}  // namespace

/// oneDNN's instruction set on this CPU, ordered so that comparisons mean "at least".
dnnl::cpu_isa cpu::onednn_detail::effective_isa() {
  static const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa;
}

bool cpu::onednn_detail::has_avx512_core() {
  const auto isa = effective_isa();
  return isa == dnnl::cpu_isa::avx512_core || isa == dnnl::cpu_isa::avx512_core_vnni ||
         isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}
bool cpu::onednn_detail::has_avx512_bf16() {
  const auto isa = effective_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

dnnl::engine& cpu::onednn_detail::engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

void cpu::onednn_detail::use_threads(int threads) { omp_set_num_threads(threads); }

void* cpu::onednn_detail::scratchpad(const dnnl::memory::desc& md, Tensor& holder) {
  const size_t bytes = md.get_size();
  if (bytes == 0) return nullptr;
  holder = Tensor::empty(Shape{static_cast<int64_t>(bytes)}, DType::u8);
  return holder.raw_data();
}

namespace {

using namespace cpu::onednn_detail;

struct Key {
  DType dtype;
  int64_t m, n, k;
  bool trans_a, trans_b;
  GemmEpilogue epilogue;
  bool accumulate;  // beta != 0
  float alpha, beta;
  int threads;  // a primitive is created for a thread count and runs with it
  bool operator<(const Key& o) const {
    return std::tie(dtype, m, n, k, trans_a, trans_b, epilogue, accumulate, alpha, beta, threads) <
           std::tie(o.dtype, o.m, o.n, o.k, o.trans_a, o.trans_b, o.epilogue, o.accumulate, o.alpha, o.beta, o.threads);
  }
};

struct Entry {
  bool usable = false;  // false: oneDNN refused or offered only its reference code
  dnnl::matmul prim;
  dnnl::memory::desc a_md, b_md, c_md, bias_md, scratch_md;
  std::string impl;
};

dnnl::memory::data_type dt_of(DType t) {
  return t == DType::bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

std::shared_ptr<const Entry> build(const Key& key) {
  auto e = std::make_shared<Entry>();
  using dims = dnnl::memory::dims;
  const auto dt = dt_of(key.dtype);
  const int64_t m = key.m, n = key.n, k = key.k;
  // op(A) (m, k): A is (m, k) row-major, or (k, m) row-major when transposed; likewise op(B) (k, n).
  e->a_md = dnnl::memory::desc(dims{m, k}, dt, key.trans_a ? dims{1, m} : dims{k, 1});
  e->b_md = dnnl::memory::desc(dims{k, n}, dt, key.trans_b ? dims{1, k} : dims{n, 1});
  e->c_md = dnnl::memory::desc(dims{m, n}, dt, dims{n, 1});
  const bool bias = key.epilogue != GemmEpilogue::none;
  if (bias) e->bias_md = dnnl::memory::desc(dims{1, n}, dt, dims{n, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (key.alpha != 1.0f) attr.set_output_scales(0, {key.alpha});
  dnnl::post_ops ops;
  if (key.accumulate) ops.append_sum(key.beta);
  if (key.epilogue == GemmEpilogue::bias_relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  if (key.epilogue == GemmEpilogue::bias_gelu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
  attr.set_post_ops(ops);
  try {
    const auto desc = bias ? dnnl::matmul::desc(e->a_md, e->b_md, e->bias_md, e->c_md)
                           : dnnl::matmul::desc(e->a_md, e->b_md, e->c_md);
    const dnnl::matmul::primitive_desc pd(desc, attr, engine());
    e->impl = pd.impl_info_str();
    if (e->impl.rfind("ref", 0) == 0) return e;  // reference code: Eigen is faster
    e->scratch_md = pd.scratchpad_desc();
    e->prim = dnnl::matmul(pd);
    e->usable = true;
  } catch (const dnnl::error&) {
    e->usable = false;  // e.g. bf16 on a CPU without AVX-512: "could not create a primitive descriptor"
  }
  return e;
}

}  // namespace

bool onednn_built() { return true; }

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) + ", " +
         isa_name(effective_isa());
}

bool cpu::onednn_gemm(const GemmArgs& g) {
  const CpuKernels choice = cpu_kernels();
  if (choice == CpuKernels::eigen) return false;
  const DType dt = g.a.dtype();
  if (dt != DType::f32 && dt != DType::bf16) return false;
  if (choice == CpuKernels::automatic && !(dt == DType::f32 ? has_avx512_core() : has_avx512_bf16())) return false;
  const bool bias = g.epilogue != GemmEpilogue::none;
  if (bias && g.alpha != 1.0) return false;
  if (g.m <= 0 || g.n <= 0 || g.k <= 0) return false;  // nothing to multiply: Eigen's path handles the edge cases
  const int threads = cpu_threads();
  use_threads(threads);  // before the primitive is created (and run)
  const Key key{dt, g.m, g.n, g.k, g.trans_a, g.trans_b, g.epilogue, g.beta != 0.0,
                static_cast<float>(g.alpha), static_cast<float>(g.beta), threads};
  const std::shared_ptr<const Entry> e = cached_primitive<Key, Entry, build>(key);
  if (!e->usable) return false;
  Tensor scratch;
  void* scratch_ptr = scratchpad(e->scratch_md, scratch);
  dnnl::stream stream(engine());
  const size_t esize = dtype_size(dt);
  char* pa = static_cast<char*>(g.a.raw_data());
  char* pb = static_cast<char*>(g.b.raw_data());
  char* pc = static_cast<char*>(g.out.raw_data());
  dnnl::memory a(e->a_md, engine(), pa), b(e->b_md, engine(), pb), c(e->c_md, engine(), pc);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
  if (scratch_ptr) args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(e->scratch_md, engine(), scratch_ptr));
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias_md, engine(), g.bias.raw_data()));
  for (int64_t i = 0; i < g.batch; ++i) {
    a.set_data_handle(pa + static_cast<size_t>(i * g.stride_a) * esize);
    b.set_data_handle(pb + static_cast<size_t>(i * g.stride_b) * esize);
    c.set_data_handle(pc + static_cast<size_t>(i * g.stride_out) * esize);
    e->prim.execute(stream, args);
  }
  stream.wait();
  set_last_gemm_impl(e->impl.c_str());
  return true;
}

#else  // built without oneDNN: every product runs on Eigen

bool onednn_built() { return false; }

std::string onednn_description() { return "not built (MIXTAPE_ONEDNN=OFF, or libdnnl-dev was not found)"; }

bool cpu::onednn_gemm(const GemmArgs&) { return false; }

#endif

}  // namespace mixtape
