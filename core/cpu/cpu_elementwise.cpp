// CPU elementwise kernels: broadcasting loops over the shared functors, casts, fills, random draws.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include <string>

#include "core/broadcast_index.h"
#include "core/caching_allocator.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_simd.h"
#include "core/cpu_threads.h"
#include "core/functor_visit.h"

namespace mixtape::cpu {

// ---- allocator ----

void* CpuAllocator::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded ? rounded : 64);
  if (!p) throw Error(detail::cat("out of host memory allocating ", bytes, " bytes"));
  record_alloc(bytes);
  return p;
}

void CpuAllocator::deallocate(void* ptr, size_t bytes) {
  std::free(ptr);
  record_free(bytes);
}

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizer = true;
#else
constexpr bool kSanitizer = false;
#endif
#else
constexpr bool kSanitizer = false;
#endif

/// 64-byte aligned heap segments for the CPU's caching allocator.
class HostMemoryResource final : public RawMemoryResource {
 public:
  void* allocate(size_t bytes) override { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); }
  void deallocate(void* ptr, size_t) noexcept override { std::free(ptr); }
  std::string device_name() const override { return "cpu"; }
  size_t total_bytes() const override {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  }
};

}  // namespace

bool cpu_allocator_caches() {
  static const bool caches = [] {
    if (kSanitizer) return false;
    const char* env = std::getenv("MIXTAPE_CPU_CACHING");
    return !(env && std::string(env) == "0");
  }();
  return caches;
}

std::unique_ptr<Allocator> make_cpu_allocator() {
  if (cpu_allocator_caches()) return std::make_unique<CachingAllocator>(std::make_unique<HostMemoryResource>());
  return std::make_unique<CpuAllocator>();
}

namespace {

/// Calls body(out_index, in_offsets...) for every output element, in row-major order, with N inputs
/// broadcast to out's shape. Contiguous same-shape and scalar operands take flat loops.
template <int N, class Body>
void for_each_broadcast(const Shape& out, const std::array<const Shape*, N>& ins, Body body) {
  const int64_t total = out.numel();
  if (total == 0) return;
  bool flat = true;
  for (const Shape* s : ins) flat = flat && (*s == out || s->numel() == 1);
  if (flat) {
    std::array<int64_t, N> step;
    for (int k = 0; k < N; ++k) step[k] = *ins[k] == out ? 1 : 0;
    std::array<int64_t, N> off{};
    for (int64_t i = 0; i < total; ++i) {
      body(i, off);
      for (int k = 0; k < N; ++k) off[k] += step[k];
    }
    return;
  }
  const int nd = out.size();
  std::array<std::array<int64_t, Shape::kMaxDims>, N> strides;
  for (int k = 0; k < N; ++k) broadcast_strides(*ins[k], out, strides[k].data());
  const int64_t inner = out[nd - 1];
  std::array<int64_t, Shape::kMaxDims> idx{};
  std::array<int64_t, N> base{};
  for (int64_t o = 0; o < total; o += inner) {
    std::array<int64_t, N> off = base;
    for (int64_t i = 0; i < inner; ++i) {
      body(o + i, off);
      for (int k = 0; k < N; ++k) off[k] += strides[k][static_cast<size_t>(nd - 1)];
    }
    // advance the multi-index over the outer dimensions
    for (int d = nd - 2; d >= 0; --d) {
      ++idx[static_cast<size_t>(d)];
      for (int k = 0; k < N; ++k) base[k] += strides[k][static_cast<size_t>(d)];
      if (idx[static_cast<size_t>(d)] < out[d]) break;
      for (int k = 0; k < N; ++k) base[k] -= strides[k][static_cast<size_t>(d)] * out[d];
      idx[static_cast<size_t>(d)] = 0;
    }
  }
}

/// The flat path of unary/binary ops on float, f16 and bf16 when every input has out's shape or is a scalar:
/// f32 runs a plain loop over the buffers (no offset bookkeeping); f16/bf16 widen blocks into float with the
/// vectorised conversions, apply f, and round the block back (store<T> of a float is that same rounding), so
/// the bits are those of the generic loop. Returns false (nothing done) when the shapes need broadcasting.
template <class T, int N, class F>
bool flat_float_op(const Shape& out, const std::array<const Shape*, N>& ins, const std::array<const T*, N>& in,
                   T* po, F f) {
  constexpr bool is16 = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;
  if constexpr (!std::is_same_v<T, float> && !is16) {
    return false;
  } else {
    const int64_t total = out.numel();
    std::array<bool, N> same;
    for (int k = 0; k < N; ++k) {
      same[k] = *ins[k] == out;
      if (!same[k] && ins[k]->numel() != 1) return false;
    }
    // Element by element: large tensors split across threads (parallel_range), which changes nothing.
    if constexpr (std::is_same_v<T, float>) {
      if constexpr (N == 1) {
        if (!same[0]) return false;
        const float* px = in[0];
        parallel_range(total, 2, [&](int64_t lo, int64_t hi) {
          for (int64_t i = lo; i < hi; ++i) po[i] = f(px[i]);
        });
      } else {
        const float* pa = in[0];
        const float* pb = in[1];
        if (!same[0] && !same[1]) return false;
        parallel_range(total, 3, [&](int64_t lo, int64_t hi) {
          if (same[0] && same[1]) {
            for (int64_t i = lo; i < hi; ++i) po[i] = f(pa[i], pb[i]);
          } else if (same[0]) {
            const float vb = pb[0];
            for (int64_t i = lo; i < hi; ++i) po[i] = f(pa[i], vb);
          } else {
            const float va = pa[0];
            for (int64_t i = lo; i < hi; ++i) po[i] = f(va, pb[i]);
          }
        });
      }
      return true;
    } else {
      constexpr int64_t kBlock = 512;
      parallel_range((total + kBlock - 1) / kBlock, (N + 1) * kBlock, [&](int64_t b0, int64_t b1) {
        alignas(64) float buf[N][kBlock];
        alignas(64) float res[kBlock];
        for (int k = 0; k < N; ++k)
          if (!same[k]) std::fill(buf[k], buf[k] + kBlock, static_cast<float>(in[k][0]));
        for (int64_t i0 = b0 * kBlock; i0 < std::min(total, b1 * kBlock); i0 += kBlock) {
          const int64_t len = std::min(kBlock, total - i0);
          for (int k = 0; k < N; ++k)
            if (same[k]) widen(in[k] + i0, buf[k], len);
          if constexpr (N == 1) {
            for (int64_t j = 0; j < len; ++j) res[j] = f(buf[0][j]);
          } else {
            for (int64_t j = 0; j < len; ++j) res[j] = f(buf[0][j], buf[1][j]);
          }
          narrow(res, po + i0, len);
        }
      });
      return true;
    }
  }
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), op_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* px = static_cast<const T*>(x.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    visit_unary(op, [&](auto f) {
      if (flat_float_op<T, 1>(out.shape(), {&x.shape()}, {px}, po, f)) return;
      for_each_broadcast<1>(out.shape(), {&x.shape()}, [&](int64_t i, const std::array<int64_t, 1>& o) {
        po[i] = store<T>(f(static_cast<A>(px[o[0]])));
      });
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, uint8_t>) {
      throw Error(detail::cat(op_name(op), ": u8 operands are not supported"));
    } else {
      using A = acc_t<T>;
      const T* pa = static_cast<const T*>(a.raw_data());
      const T* pb = static_cast<const T*>(b.raw_data());
      visit_binary(op, [&](auto f) {
        auto run = [&](auto* po) {
          using O = std::remove_pointer_t<decltype(po)>;
          for_each_broadcast<2>(out.shape(), {&a.shape(), &b.shape()}, [&](int64_t i, const std::array<int64_t, 2>& o) {
            po[i] = store<O>(f(static_cast<A>(pa[o[0]]), static_cast<A>(pb[o[1]])));
          });
        };
        if (out.dtype() == DType::u8) run(static_cast<uint8_t*>(out.raw_data()));
        else if (!flat_float_op<T, 2>(out.shape(), {&a.shape(), &b.shape()}, {pa, pb}, static_cast<T*>(out.raw_data()), f))
          run(static_cast<T*>(out.raw_data()));
      });
    }
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const uint8_t* pc = static_cast<const uint8_t*>(cond.raw_data());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    for_each_broadcast<3>(out.shape(), {&cond.shape(), &a.shape(), &b.shape()},
                          [&](int64_t i, const std::array<int64_t, 3>& o) { po[i] = pc[o[0]] ? pa[o[1]] : pb[o[2]]; });
  });
}

void CpuBackend::cast(const Tensor& x, const Tensor& out) {
  const int64_t n = x.numel();
  dispatch_all(x.dtype(), [&](auto in_tag) {
    using S = typename decltype(in_tag)::type;
    const S* px = static_cast<const S*>(x.raw_data());
    dispatch_all(out.dtype(), [&](auto out_tag) {
      using T = typename decltype(out_tag)::type;
      T* po = static_cast<T*>(out.raw_data());
      // float <-> f16/bf16: the vectorised conversions (bit-identical to the scalar ones below), split across
      // threads when large (element by element: the split changes nothing).
      if constexpr (std::is_same_v<S, float> && (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)) {
        return parallel_range(n, 1, [&](int64_t lo, int64_t hi) { narrow(px + lo, po + lo, hi - lo); });
      } else if constexpr (std::is_same_v<T, float> && (std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>)) {
        return parallel_range(n, 1, [&](int64_t lo, int64_t hi) { widen(px + lo, po + lo, hi - lo); });
      }
      for (int64_t i = 0; i < n; ++i) po[i] = cast_rules::convert<T>(px[i]);  // core/cast_rules.h
    });
  });
}

void CpuBackend::fill(const Tensor& out, double value) {
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(out.raw_data());
    const T v = store<T>(value);
    for (int64_t i = 0, n = out.numel(); i < n; ++i) p[i] = v;
  });
}

void CpuBackend::arange(const Tensor& out, double start, double step) {
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(out.raw_data());
    for (int64_t i = 0, n = out.numel(); i < n; ++i) p[i] = store<T>(start + static_cast<double>(i) * step);
  });
}

void CpuBackend::random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  dispatch_floating(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = static_cast<T*>(out.raw_data());
    const float fa = static_cast<float>(a), fb = static_cast<float>(b);
    const int bits = std::is_same_v<T, Half> ? 11 : std::is_same_v<T, BFloat16> ? 8 : 24;
    for (int64_t i = 0, n = out.numel(); i < n; ++i) {
      const uint64_t idx = static_cast<uint64_t>(i);
      const float v = kind == RandomKind::uniform ? fa + (fb - fa) * random_uniform(seed, offset, idx, bits)
                                                  : fa + fb * random_normal(seed, offset, idx);
      p[i] = store<T>(v);
    }
  });
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  MIXTAPE_CHECK(src.nbytes() == dst.nbytes(), "copy: byte sizes differ");
  if (src.nbytes() && src.raw_data() != dst.raw_data()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
}

}  // namespace mixtape::cpu

namespace mixtape {
Backend& cpu_backend() {
  static auto* backend = new cpu::CpuBackend;  // never destroyed: tensors in static storage may outlive it
  return *backend;
}
}  // namespace mixtape
