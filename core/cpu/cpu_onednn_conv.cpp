// oneDNN convolutions for the CPU backend: forward (bias fused), backward data and backward weights (bias gradient
// fused), f32 and bf16.
//
// Tensors stay NCHW (OIHW for weights) at the API. Each primitive is created with oneDNN's "any" layouts, so it
// picks its fastest one (blocked, e.g. nChw16c / OIhw16i16o); arguments whose layout differs are reordered into a
// buffer from the CPU allocator before the call (inputs) or out of it after (outputs). A reorder moves values and
// never rounds, so a bf16 output is still rounded once, by the convolution itself (float32 accumulation).
//
// Weights are reordered once per weight version, not once per call: the reordered copy is kept, keyed by the
// weight's storage (weakly: a freed weight's copy never matches a new one), offset, version and target layout, and
// reused while the version is unchanged (Storage::version is bumped by every in-place write; the optimizer bumps
// the masters and their compute copies). Evaluation over a test set reorders each weight once.
//
// Primitives and their reorders are created once per pass, dtype, geometry, bias and thread count and kept in a
// process-wide cache, like the matrix products'. Implementations that are oneDNN's reference code are refused.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "core/cpu/cpu_onednn.h"
#include "core/cpu_kernels.h"
#include "core/cpu_threads.h"

#if MIXTAPE_HAVE_ONEDNN
#include "core/cpu/cpu_onednn_detail.h"
#endif

namespace mixtape::cpu {

#if MIXTAPE_HAVE_ONEDNN

namespace {

using namespace onednn_detail;
using dims = dnnl::memory::dims;
using tag = dnnl::memory::format_tag;

enum class Pass { forward, backward_data, backward_weights };

struct ConvKey {
  Pass pass;
  DType dtype;
  std::array<int64_t, 9> d;   // n, c, h, w, oc, kh, kw, oh, ow
  std::array<int64_t, 6> p;   // stride h/w, pad h/w, dilation h/w
  bool bias;
  int threads;
  bool operator<(const ConvKey& o) const {
    return std::tie(pass, dtype, d, p, bias, threads) < std::tie(o.pass, o.dtype, o.d, o.p, o.bias, o.threads);
  }
};

/// One argument of a convolution: its NCHW/OIHW description, the primitive's, and the reorder between them.
struct Arg {
  int id = 0;                   // DNNL_ARG_...
  bool output = false;          // written by the primitive (reordered out after the call)
  bool weight = false;          // an input that keeps its value across calls: reorders are cached per version
  dnnl::memory::desc user, inner;
  bool same = true;             // user == inner: no reorder
  dnnl::reorder reorder;        // user -> inner for inputs, inner -> user for outputs
};

struct ConvEntry {
  bool usable = false;
  std::string impl;
  dnnl::primitive prim;
  std::vector<Arg> args;
  dnnl::memory::desc scratch_md;
};

dnnl::memory::data_type dt_of(DType t) {
  return t == DType::bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

/// The arguments' NCHW descriptions and oneDNN's geometry for a key.
struct Geometry {
  dnnl::memory::desc x, w, b, y, x_any, w_any, y_any;
  dims strides, dilates, pad_l, pad_r;
};

Geometry geometry(const ConvKey& k) {
  const auto dt = dt_of(k.dtype);
  const auto [n, c, h, w, oc, kh, kw, oh, ow] = k.d;
  const auto [sh, sw, ph, pw, dh, dw] = k.p;
  Geometry g;
  g.x = dnnl::memory::desc(dims{n, c, h, w}, dt, tag::nchw);
  g.w = dnnl::memory::desc(dims{oc, c, kh, kw}, dt, tag::oihw);
  g.y = dnnl::memory::desc(dims{n, oc, oh, ow}, dt, tag::nchw);
  g.b = dnnl::memory::desc(dims{oc}, dt, tag::x);
  g.x_any = dnnl::memory::desc(dims{n, c, h, w}, dt, tag::any);
  g.w_any = dnnl::memory::desc(dims{oc, c, kh, kw}, dt, tag::any);
  g.y_any = dnnl::memory::desc(dims{n, oc, oh, ow}, dt, tag::any);
  g.strides = {sh, sw};
  g.dilates = {dh - 1, dw - 1};  // oneDNN counts the gaps between taps
  g.pad_l = {ph, pw};
  // PyTorch's floor mode drops the rows a last window would not fill; oneDNN wants them as (negative) right
  // padding so that its output size comes out the same.
  g.pad_r = {(oh - 1) * sh + (kh - 1) * dh + 1 - h - ph, (ow - 1) * sw + (kw - 1) * dw + 1 - w - pw};
  return g;
}

Arg make_arg(int id, const dnnl::memory::desc& user, const dnnl::memory::desc& inner, bool output, bool weight) {
  Arg a;
  a.id = id;
  a.output = output;
  a.weight = weight;
  a.user = user;
  a.inner = inner;
  a.same = user == inner;
  if (!a.same)
    a.reorder = output ? dnnl::reorder(dnnl::reorder::primitive_desc(engine(), inner, engine(), user))
                       : dnnl::reorder(dnnl::reorder::primitive_desc(engine(), user, engine(), inner));
  return a;
}

dnnl::convolution_forward::primitive_desc forward_pd(const Geometry& g, bool bias, const dnnl::primitive_attr& attr) {
  const auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                           dnnl::algorithm::convolution_direct, g.x_any, g.w_any, g.b,
                                                           g.y_any, g.strides, g.dilates, g.pad_l, g.pad_r)
                         : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                           dnnl::algorithm::convolution_direct, g.x_any, g.w_any,
                                                           g.y_any, g.strides, g.dilates, g.pad_l, g.pad_r);
  return dnnl::convolution_forward::primitive_desc(desc, attr, engine());
}

std::shared_ptr<const ConvEntry> build(const ConvKey& k) {
  auto e = std::make_shared<ConvEntry>();
  try {
    const Geometry g = geometry(k);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    switch (k.pass) {
      case Pass::forward: {
        const auto pd = forward_pd(g, k.bias, attr);
        e->impl = pd.impl_info_str();
        if (e->impl.rfind("ref", 0) == 0) return e;
        e->args.push_back(make_arg(DNNL_ARG_SRC, g.x, pd.src_desc(), false, false));
        e->args.push_back(make_arg(DNNL_ARG_WEIGHTS, g.w, pd.weights_desc(), false, true));
        if (k.bias) e->args.push_back(make_arg(DNNL_ARG_BIAS, g.b, pd.bias_desc(), false, false));
        e->args.push_back(make_arg(DNNL_ARG_DST, g.y, pd.dst_desc(), true, false));
        e->scratch_md = pd.scratchpad_desc();
        e->prim = dnnl::convolution_forward(pd);
        break;
      }
      case Pass::backward_data: {
        const auto hint = forward_pd(g, false, dnnl::primitive_attr());
        const dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, g.x_any, g.w_any,
                                                         g.y_any, g.strides, g.dilates, g.pad_l, g.pad_r);
        const dnnl::convolution_backward_data::primitive_desc pd(desc, attr, engine(), hint);
        e->impl = pd.impl_info_str();
        if (e->impl.rfind("ref", 0) == 0) return e;
        e->args.push_back(make_arg(DNNL_ARG_DIFF_DST, g.y, pd.diff_dst_desc(), false, false));
        e->args.push_back(make_arg(DNNL_ARG_WEIGHTS, g.w, pd.weights_desc(), false, true));
        e->args.push_back(make_arg(DNNL_ARG_DIFF_SRC, g.x, pd.diff_src_desc(), true, false));
        e->scratch_md = pd.scratchpad_desc();
        e->prim = dnnl::convolution_backward_data(pd);
        break;
      }
      case Pass::backward_weights: {
        const auto hint = forward_pd(g, k.bias, dnnl::primitive_attr());
        const auto desc =
            k.bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, g.x_any, g.w_any,
                                                              g.b, g.y_any, g.strides, g.dilates, g.pad_l, g.pad_r)
                   : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, g.x_any, g.w_any,
                                                              g.y_any, g.strides, g.dilates, g.pad_l, g.pad_r);
        const dnnl::convolution_backward_weights::primitive_desc pd(desc, attr, engine(), hint);
        e->impl = pd.impl_info_str();
        if (e->impl.rfind("ref", 0) == 0) return e;
        e->args.push_back(make_arg(DNNL_ARG_SRC, g.x, pd.src_desc(), false, false));
        e->args.push_back(make_arg(DNNL_ARG_DIFF_DST, g.y, pd.diff_dst_desc(), false, false));
        e->args.push_back(make_arg(DNNL_ARG_DIFF_WEIGHTS, g.w, pd.diff_weights_desc(), true, false));
        if (k.bias) e->args.push_back(make_arg(DNNL_ARG_DIFF_BIAS, g.b, pd.diff_bias_desc(), true, false));
        e->scratch_md = pd.scratchpad_desc();
        e->prim = dnnl::convolution_backward_weights(pd);
        break;
      }
    }
    e->usable = true;
  } catch (const dnnl::error&) {
    e->usable = false;  // e.g. bf16 without AVX512_BF16, or geometry oneDNN does not take
  }
  return e;
}

// ---- weights reordered once per version ----

struct WeightCopy {
  std::weak_ptr<Storage> storage;
  size_t offset = 0;
  uint64_t version = 0;
  dnnl::memory::desc layout;
  Tensor buffer;  // the weight in `layout`
};

std::mutex g_weights_mu;
std::vector<WeightCopy> g_weights;  // a handful per convolution layer
std::atomic<int64_t> g_weight_reorders{0};

/// The weight `t` in the layout of `a` (a.inner): a kept copy when one holds t's current version, else a fresh
/// reorder, which is kept.
Tensor weight_in_layout(const Tensor& t, const Arg& a, dnnl::stream& stream) {
  const std::shared_ptr<Storage>& st = t.impl()->storage;
  const size_t offset = t.impl()->offset_bytes;
  const uint64_t version = t.version();
  std::lock_guard<std::mutex> lock(g_weights_mu);
  WeightCopy* slot = nullptr;
  for (auto it = g_weights.begin(); it != g_weights.end();) {
    if (it->storage.expired()) {  // its weight is gone
      it = g_weights.erase(it);
      continue;
    }
    if (!slot && it->storage.lock() == st && it->offset == offset && it->layout == a.inner) slot = &*it;
    ++it;
  }
  if (slot && slot->version == version) return slot->buffer;
  if (!slot) {
    g_weights.push_back(WeightCopy{st, offset, version, a.inner,
                                   Tensor::empty(Shape{static_cast<int64_t>(a.inner.get_size())}, DType::u8)});
    slot = &g_weights.back();
  }
  dnnl::memory src(a.user, engine(), t.raw_data()), dst(a.inner, engine(), slot->buffer.raw_data());
  a.reorder.execute(stream, src, dst);
  slot->version = version;
  g_weight_reorders.fetch_add(1, std::memory_order_relaxed);
  return slot->buffer;
}

bool accepts(DType dt) {
  const CpuKernels choice = cpu_kernels();
  if (choice == CpuKernels::eigen) return false;
  if (dt != DType::f32 && dt != DType::bf16) return false;
  if (choice == CpuKernels::onednn) return true;
  // auto: f32 wherever oneDNN has a JIT kernel (its AVX2 convolution is faster than im2col + Eigen too);
  // bf16 only with the AVX512_BF16 instructions.
  return dt == DType::f32 || has_avx512_bf16();
}

/// Runs the convolution `key` on the tensors (in the order of the entry's arguments); false when not usable.
bool run(const ConvKey& key, const std::vector<const Tensor*>& tensors) {
  use_threads(key.threads);
  const std::shared_ptr<const ConvEntry> e = cached_primitive<ConvKey, ConvEntry, build>(key);
  if (!e->usable) return false;
  dnnl::stream stream(engine());
  std::unordered_map<int, dnnl::memory> args;
  std::vector<Tensor> buffers;  // reordered arguments, alive until the stream is done
  std::vector<std::pair<size_t, dnnl::memory>> outputs;  // (argument index, its memory in the primitive's layout)
  for (size_t i = 0; i < e->args.size(); ++i) {
    const Arg& a = e->args[i];
    const Tensor& t = *tensors[i];
    if (a.same) {
      args.emplace(a.id, dnnl::memory(a.inner, engine(), t.raw_data()));
      continue;
    }
    if (a.weight) {
      buffers.push_back(weight_in_layout(t, a, stream));
    } else {
      buffers.push_back(Tensor::empty(Shape{static_cast<int64_t>(a.inner.get_size())}, DType::u8));
      if (!a.output) {
        dnnl::memory src(a.user, engine(), t.raw_data()), dst(a.inner, engine(), buffers.back().raw_data());
        a.reorder.execute(stream, src, dst);
      }
    }
    dnnl::memory m(a.inner, engine(), buffers.back().raw_data());
    args.emplace(a.id, m);
    if (a.output) outputs.emplace_back(i, m);
  }
  Tensor scratch;
  if (void* sp = scratchpad(e->scratch_md, scratch)) args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(e->scratch_md, engine(), sp));
  e->prim.execute(stream, args);
  for (auto& [i, m] : outputs) {  // outputs in another layout than NCHW/OIHW, reordered back
    const Arg& a = e->args[i];
    dnnl::memory user(a.user, engine(), tensors[i]->raw_data());
    a.reorder.execute(stream, m, user);
  }
  stream.wait();
  static const char* const kPass[] = {"conv2d ", "conv2d backward data ", "conv2d backward weights "};
  count_impl(kPass[static_cast<int>(key.pass)] + e->impl);
  return true;
}

ConvKey key_of(Pass pass, const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p, bool bias) {
  return ConvKey{pass,
                 x.dtype(),
                 {x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), y.size(2), y.size(3)},
                 {p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w},
                 bias,
                 cpu_threads()};
}

bool nonempty(const Tensor& x, const Tensor& w, const Tensor& y) { return x.numel() > 0 && w.numel() > 0 && y.numel() > 0; }

}  // namespace

bool onednn_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out, const Conv2dParams& p) {
  if (!accepts(x.dtype()) || !nonempty(x, w, out)) return false;
  const ConvKey key = key_of(Pass::forward, x, w, out, p, b.defined());
  return b.defined() ? run(key, {&x, &w, &b, &out}) : run(key, {&x, &w, &out});
}

bool onednn_conv2d_backward_data(const Tensor& gy, const Tensor& w, const Tensor& gx, const Conv2dParams& p) {
  if (!accepts(gy.dtype()) || !nonempty(gx, w, gy)) return false;
  return run(key_of(Pass::backward_data, gx, w, gy, p, false), {&gy, &w, &gx});
}

bool onednn_conv2d_backward_filter(const Tensor& gy, const Tensor& x, const Tensor& gw, const Tensor& gb,
                                   const Conv2dParams& p) {
  if (!gw.defined() || !accepts(gy.dtype()) || !nonempty(x, gw, gy)) return false;
  const ConvKey key = key_of(Pass::backward_weights, x, gw, gy, p, gb.defined());
  return gb.defined() ? run(key, {&x, &gy, &gw, &gb}) : run(key, {&x, &gy, &gw});
}

int64_t onednn_weight_reorders() { return g_weight_reorders.load(std::memory_order_relaxed); }

#else  // built without oneDNN

bool onednn_conv2d(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) { return false; }
bool onednn_conv2d_backward_data(const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) { return false; }
bool onednn_conv2d_backward_filter(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dParams&) {
  return false;
}
int64_t onednn_weight_reorders() { return 0; }

#endif

}  // namespace mixtape::cpu
