// The cuDNN mock's convolution checks, algorithms and queueing (entry points and objects: cudnn_mock.cpp, which
// explains the sources: [ops] / [cnn] are the cudnn_ops / cudnn_cnn chapters of NVIDIA's cuDNN 9 API reference;
// "stricter" marks a choice the reference leaves open).
#include <atomic>
#include <cstdint>
#include <exception>

#include "cuda/emu/cudnn_mock.h"
#include "cuda/emu/runtime.h"

namespace mixtape::emu::cudnn_mock {

// ---- the problem of a convolution call ----

namespace {

/// Operand of a tensor descriptor.
Operand operand(const TensorObject& t) { return {t.type, t.dims, t.strides}; }

/// Operand of a filter: packed KCRS.
Operand operand(const FilterObject& f) {
  const auto& d = f.dims;
  return {f.type, d, {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1}};
}

/// Whether two elements of o share memory (sorted by stride, each dimension must step over the previous ones).
bool overlapping(const Operand& o) {
  std::array<int, 4> order{0, 1, 2, 3};
  std::sort(order.begin(), order.end(), [&](int a, int b) { return o.strides[a] < o.strides[b]; });
  int64_t covered = 1;  // elements spanned by the dimensions so far
  for (int i : order) {
    if (o.dims[i] == 1) continue;
    if (o.strides[i] < covered) return true;
    covered = o.strides[i] * o.dims[i];
  }
  return false;
}

/// [cnn] supported configurations of cudnnConvolutionForward / BackwardData / BackwardFilter: x, w and y share
/// the data type; PSEUDO_HALF (half, compute float), PSEUDO_BFLOAT16 (bfloat16, compute float; compute capability
/// 8.0+, which the emulated 9.0 device has), FLOAT, DOUBLE. TRUE_HALF_CONFIG (half, compute half) accumulates in
/// half, which the mock does not emulate: NOT_SUPPORTED rather than a result more accurate than a GPU's. INT8 and
/// the other integer configurations are outside the mock.
cudnnStatus_t config_status(const char* fn, cudnnDataType_t data, cudnnDataType_t compute) {
  const bool ok = (data == CUDNN_DATA_HALF && compute == CUDNN_DATA_FLOAT) ||
                  (data == CUDNN_DATA_BFLOAT16 && compute == CUDNN_DATA_FLOAT) ||
                  (data == CUDNN_DATA_FLOAT && compute == CUDNN_DATA_FLOAT) ||
                  (data == CUDNN_DATA_DOUBLE && compute == CUDNN_DATA_DOUBLE);
  if (ok) return CUDNN_STATUS_SUCCESS;
  if (data == CUDNN_DATA_HALF && compute == CUDNN_DATA_HALF)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "TRUE_HALF_CONFIG (half accumulation) is not emulated");
  return fail(CUDNN_STATUS_NOT_SUPPORTED, fn,
              "data type " + std::to_string(data) + " with compute type " + std::to_string(compute) +
                  " is none of the supported configurations (PSEUDO_HALF, PSEUDO_BFLOAT16, FLOAT, DOUBLE)");
}

/// [cnn] cudnnMathType_t: DEFAULT_MATH permits TF32 tensor cores on float data from the A100 on (the emulated
/// device is compute capability 9.0), TENSOR_OP_MATH permits them, TENSOR_OP_MATH_ALLOW_CONVERSION also down-
/// converts float inputs (to float16 here), FMA_MATH is restricted to FMA kernels: exact float.
InputRounding rounding_of(cudnnDataType_t data, cudnnMathType_t math) {
  if (data != CUDNN_DATA_FLOAT) return InputRounding::none;
  switch (math) {
    case CUDNN_DEFAULT_MATH:
    case CUDNN_TENSOR_OP_MATH: return InputRounding::tf32;
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return InputRounding::half;
    default: return InputRounding::none;
  }
}

/// Shapes: [cnn] BAD_PARAM when x, w and y have a non-matching data type, x and w a non-matching number of input
/// feature maps, or the filter is larger than the padded input in some spatial dimension. y's spatial size other
/// than cudnnGetConvolutionNdForwardOutputDim's: NOT_SUPPORTED for cudnnConvolutionForward, BAD_PARAM for
/// cudnnConvolutionBackwardData (as documented), BAD_PARAM for BackwardFilter (stricter: not documented there);
/// a y batch or channel count that does not match x and w: BAD_PARAM (stricter).
cudnnStatus_t shape_status(const char* fn, Pass pass, const TensorObject& x, const FilterObject& w, const ConvObject& c,
                           const TensorObject& y) {
  if (x.type != w.type || x.type != y.type)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "x, w and y have a non-matching data type");
  if (x.dims[1] != w.dims[1])
    return fail(CUDNN_STATUS_BAD_PARAM, fn,
                "x has " + std::to_string(x.dims[1]) + " channels, w " + std::to_string(w.dims[1]));
  const std::array<int64_t, 2> out = output_hw(x, w, c);
  if (out[0] <= 0 || out[1] <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "the filter is larger than the padded input");
  if (y.dims[0] != x.dims[0] || y.dims[1] != w.dims[0])
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "y's batch or channel count does not match x's batch and w's filters");
  if (y.dims[2] != out[0] || y.dims[3] != out[1]) {
    const std::string why = "y is " + std::to_string(y.dims[2]) + "x" + std::to_string(y.dims[3]) +
                            " but cudnnGetConvolution2dForwardOutputDim gives " + std::to_string(out[0]) + "x" +
                            std::to_string(out[1]);
    return fail(pass == Pass::forward ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM, fn, why);
  }
  return CUDNN_STATUS_SUCCESS;
}

/// Layouts: [cnn] NOT_SUPPORTED when x or y has a negative stride; stricter: a zero stride over a dimension
/// longer than 1, or a written tensor whose elements overlap, is NOT_SUPPORTED too. Filters other than
/// CUDNN_TENSOR_NCHW (KCRS) are outside the mock.
cudnnStatus_t layout_status(const char* fn, const ConvJob& job, const FilterObject& w) {
  for (const Operand* o : {&job.x, &job.y})
    for (int i = 0; i < 4; ++i) {
      if (o->strides[i] < 0) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "negative tensor stride");
      if (o->strides[i] == 0 && o->dims[i] > 1) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "zero tensor stride");
    }
  const Operand& written = job.pass == Pass::forward ? job.y : job.x;
  if (job.pass != Pass::backward_filter && overlapping(written))
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "the output tensor's strides make elements overlap");
  if (w.format != CUDNN_TENSOR_NCHW)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "the mock implements CUDNN_TENSOR_NCHW (KCRS) filters only");
  return CUDNN_STATUS_SUCCESS;
}

/// The descriptors of a call checked and turned into a job (pointers and scalars not filled in).
cudnnStatus_t check_problem(const char* fn, const ConvDescriptors& d, ConvJob* job, cudnnMathType_t* math) {
  const TensorObject* x = tensor_object(d.x);
  const FilterObject* w = filter_object(d.w);
  const ConvObject* c = conv_object(d.conv);
  const TensorObject* y = tensor_object(d.y);
  // [cnn] BAD_PARAM when a descriptor is NULL; a destroyed or never-set one likewise (stricter).
  if (x == nullptr || w == nullptr || c == nullptr || y == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "a descriptor is NULL, destroyed or of the wrong kind");
  if (!x->set || !w->set || !c->set || !y->set) return fail(CUDNN_STATUS_BAD_PARAM, fn, "a descriptor was never set");
  if (cudnnStatus_t st = shape_status(fn, d.pass, *x, *w, *c, *y); st != CUDNN_STATUS_SUCCESS) return st;
  job->pass = d.pass;
  job->x = operand(*x);
  job->w = operand(*w);
  job->y = operand(*y);
  if (cudnnStatus_t st = layout_status(fn, *job, *w); st != CUDNN_STATUS_SUCCESS) return st;
  if (cudnnStatus_t st = config_status(fn, x->type, c->compute); st != CUDNN_STATUS_SUCCESS) return st;
  job->pad = {c->pad[0], c->pad[1]};
  job->stride = {c->stride[0], c->stride[1]};
  job->dilation = {c->dilation[0], c->dilation[1]};
  job->flip = c->mode == CUDNN_CONVOLUTION;
  job->rounding = rounding_of(x->type, c->math);
  *math = c->math;
  return CUDNN_STATUS_SUCCESS;
}

// ---- the mock's algorithms ----
//
// Each pass lists every enumerant of its algorithm type in a fixed heuristic order. What runs computes the same
// convolution (cudnn_mock_compute.cpp); the non-deterministic ones add their partial sums in another order on
// every other call, so their bits may change from run to run. Workspace sizes are the mock's own, shaped like
// what such an algorithm needs; they exist so the workspace protocol is exercised.

struct AlgoSpec {
  int algo;
  bool deterministic;
};
constexpr AlgoSpec kForwardAlgos[] = {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_FFT, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true},
                                      {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, true}};
constexpr AlgoSpec kBackwardDataAlgos[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true},        {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, true},      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, true},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, true}, {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true}};
constexpr AlgoSpec kBackwardFilterAlgos[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true},          {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, false},         {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, true}, {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, true},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, true}};

/// The algorithms of a pass in heuristic order, and how many there are (the enumerants of its *_ALGO_COUNT).
std::pair<const AlgoSpec*, int> algorithms(Pass pass) {
  switch (pass) {
    case Pass::forward: return {kForwardAlgos, CUDNN_CONVOLUTION_FWD_ALGO_COUNT};
    case Pass::backward_data: return {kBackwardDataAlgos, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT};
    case Pass::backward_filter: return {kBackwardFilterAlgos, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};
  }
  return {nullptr, 0};
}

/// Whether an algorithm of a pass is deterministic ([cnn] the algorithm enumerations: backward ALGO_0 and
/// backward-filter ALGO_3 are not; every forward algorithm is).
bool deterministic(Pass pass, int algo) {
  const auto [specs, count] = algorithms(pass);
  for (int i = 0; i < count; ++i)
    if (specs[i].algo == algo) return specs[i].deterministic;
  return true;
}

/// What one algorithm offers on a problem.
struct AlgoChoice {
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
  size_t workspace = 0;
  std::string why;  ///< when not supported
};

int64_t taps(const ConvJob& j) { return j.w.dims[1] * j.w.dims[2] * j.w.dims[3]; }
int64_t positions(const ConvJob& j) { return j.y.dims[2] * j.y.dims[3]; }
int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p *= 2;
  return p;
}

/// [cnn] the FFT algorithms' documented limits: filter stride 1, input + 2 * padding <= 256 in each spatial
/// dimension, filter larger than the padding; dilation 1 and float or (pseudo-)half data (stricter for bfloat16).
std::string fft_problem(const ConvJob& j) {
  if (j.stride[0] != 1 || j.stride[1] != 1) return "FFT needs filter stride 1";
  if (j.dilation[0] != 1 || j.dilation[1] != 1) return "FFT needs dilation 1";
  if (j.x.type != CUDNN_DATA_FLOAT && j.x.type != CUDNN_DATA_HALF) return "FFT takes float or half data";
  for (int i = 0; i < 2; ++i) {
    if (j.x.dims[2 + i] + 2 * j.pad[i] > 256) return "FFT needs input + 2 * padding <= 256";
    if (j.w.dims[2 + i] <= j.pad[i]) return "FFT needs a filter larger than the padding";
  }
  return "";
}

/// Complex float spectra of the padded inputs, filters and outputs.
size_t fft_workspace(const ConvJob& j) {
  const int64_t fh = next_pow2(j.x.dims[2] + 2 * j.pad[0]), fw = next_pow2(j.x.dims[3] + 2 * j.pad[1]);
  const int64_t n = j.x.dims[0], c = j.x.dims[1], k = j.w.dims[0];
  return static_cast<size_t>(8 * (n * c + k * c + n * k) * fh * (fw / 2 + 1));
}

AlgoChoice unsupported(const std::string& why) { return {CUDNN_STATUS_NOT_SUPPORTED, 0, why}; }

AlgoChoice forward_choice(int algo, const ConvJob& j) {
  switch (algo) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return {};
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:  // precomputed tap and position offsets
      return {CUDNN_STATUS_SUCCESS, sizeof(int32_t) * static_cast<size_t>(taps(j) + positions(j)), ""};
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:  // one image's explicit column matrix
      return {CUDNN_STATUS_SUCCESS, element_size(j.x.type) * static_cast<size_t>(taps(j) * positions(j)), ""};
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: {
      const std::string why = fft_problem(j);
      return why.empty() ? AlgoChoice{CUDNN_STATUS_SUCCESS, fft_workspace(j), ""} : unsupported(why);
    }
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return unsupported("cuDNN implements no DIRECT algorithm");
    default: return unsupported("the mock does not offer this algorithm");
  }
}

AlgoChoice backward_data_choice(int algo, const ConvJob& j) {
  const size_t acc = j.x.type == CUDNN_DATA_DOUBLE ? 8 : 4;
  switch (algo) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return {};
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1:  // one image's column matrix in the accumulation type
      return {CUDNN_STATUS_SUCCESS, acc * static_cast<size_t>(taps(j) * positions(j)), ""};
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: {
      const std::string why = fft_problem(j);
      return why.empty() ? AlgoChoice{CUDNN_STATUS_SUCCESS, fft_workspace(j), ""} : unsupported(why);
    }
    default: return unsupported("the mock does not offer this algorithm");
  }
}

AlgoChoice backward_filter_choice(int algo, const ConvJob& j) {
  const size_t acc = j.x.type == CUDNN_DATA_DOUBLE ? 8 : 4;
  switch (algo) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return {};
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:
      return {CUDNN_STATUS_SUCCESS, acc * static_cast<size_t>(taps(j) * positions(j)), ""};
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3:  // precomputed tap offsets
      return {CUDNN_STATUS_SUCCESS, sizeof(int32_t) * static_cast<size_t>(taps(j)), ""};
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: {
      const std::string why = fft_problem(j);
      return why.empty() ? AlgoChoice{CUDNN_STATUS_SUCCESS, fft_workspace(j), ""} : unsupported(why);
    }
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return unsupported("not implemented in cuDNN (cudnn_ops.h)");
    default: return unsupported("the mock does not offer this algorithm");
  }
}

AlgoChoice choice(Pass pass, int algo, const ConvJob& j) {
  switch (pass) {
    case Pass::forward: return forward_choice(algo, j);
    case Pass::backward_data: return backward_data_choice(algo, j);
    case Pass::backward_filter: return backward_filter_choice(algo, j);
  }
  return unsupported("unknown pass");
}

/// The handle, live and (stricter) used on the device it was created on: [ops] a handle is tied to its device.
cudnnStatus_t handle_status(const char* fn, cudnnHandle_t handle, HandleObject** out) {
  HandleObject* h = handle_object(handle);
  if (h == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "the handle is NULL or destroyed");
  if (h->device != current_device())
    return fail(CUDNN_STATUS_BAD_PARAM, fn,
                "the handle belongs to device " + std::to_string(h->device) + ", the current device is " +
                    std::to_string(current_device()));
  *out = h;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

// ---- heuristics and workspace sizes ----

cudnnStatus_t max_count(const char* fn, cudnnHandle_t handle, Pass pass, int* count) {
  if (handle_object(handle) == nullptr || !is_host_memory(count))
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid handle or count pointer");
  *count = algorithms(pass).second;
  return CUDNN_STATUS_SUCCESS;
}

// [cnn] cudnnGetConvolution*Algorithm_v7: BAD_PARAM when handle, a descriptor, perfResults or returnedAlgoCount is
// NULL, the descriptors disagree (dimensions, data types, feature maps) or requestedAlgoCount <= 0. A problem no
// algorithm supports is a successful answer whose entries are all NOT_SUPPORTED.
cudnnStatus_t rank_algorithms(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, int requested,
                              const void* returned, const void* perf, std::vector<AlgoReport>* out) {
  HandleObject* h = nullptr;
  if (cudnnStatus_t st = handle_status(fn, handle, &h); st != CUDNN_STATUS_SUCCESS) return st;
  if (!is_host_memory(returned) || !is_host_memory(perf))
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "perfResults or returnedAlgoCount is not host memory");
  if (requested <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "requestedAlgoCount <= 0");
  ConvJob job;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  const cudnnStatus_t problem = check_problem(fn, d, &job, &math);
  if (problem == CUDNN_STATUS_BAD_PARAM) return problem;
  const auto [specs, count] = algorithms(d.pass);
  std::vector<AlgoReport> supported, refused;
  for (int i = 0; i < count; ++i) {
    const AlgoChoice c = problem == CUDNN_STATUS_SUCCESS ? choice(d.pass, specs[i].algo, job) : unsupported("");
    AlgoReport r{specs[i].algo, c.status, c.status == CUDNN_STATUS_SUCCESS ? c.workspace : 0, specs[i].deterministic,
                 math};
    (c.status == CUDNN_STATUS_SUCCESS ? supported : refused).push_back(r);
  }
  out->assign(supported.begin(), supported.end());
  out->insert(out->end(), refused.begin(), refused.end());
  return CUDNN_STATUS_SUCCESS;
}

// [cnn] cudnnGetConvolution*WorkspaceSize: BAD_PARAM when handle or a descriptor is NULL or the descriptors
// disagree; NOT_SUPPORTED when the combination is not supported by the algorithm. Stricter: an algorithm id
// outside the enumeration and a NULL sizeInBytes are BAD_PARAM.
cudnnStatus_t workspace_size(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, int algo, size_t* bytes) {
  HandleObject* h = nullptr;
  if (cudnnStatus_t st = handle_status(fn, handle, &h); st != CUDNN_STATUS_SUCCESS) return st;
  if (!is_host_memory(bytes)) return fail(CUDNN_STATUS_BAD_PARAM, fn, "sizeInBytes is not host memory");
  ConvJob job;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  if (cudnnStatus_t st = check_problem(fn, d, &job, &math); st != CUDNN_STATUS_SUCCESS) return st;
  if (algo < 0 || algo >= algorithms(d.pass).second)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "algorithm " + std::to_string(algo) + " is out of range");
  const AlgoChoice c = choice(d.pass, algo, job);
  if (c.status != CUDNN_STATUS_SUCCESS) return fail(c.status, fn, c.why);
  *bytes = c.workspace;
  return CUDNN_STATUS_SUCCESS;
}

// ---- execution ----

namespace {

/// A device range an execution call reads or writes.
struct Range {
  const void* p;
  size_t bytes;
  const char* what;
};

bool overlap(const Range& a, const Range& b) {
  const char* pa = static_cast<const char*>(a.p);
  const char* pb = static_cast<const char*>(b.p);
  return a.bytes > 0 && b.bytes > 0 && pa < pb + b.bytes && pb < pa + a.bytes;
}

/// Data pointers: [cnn] BAD_PARAM when one is NULL. Stricter: memory that is not a live allocation of the handle's
/// device covering the descriptor's whole span (host, pinned or freed memory, another device, too short) and a
/// pointer not aligned to its element size are BAD_PARAM too (never read at call time).
cudnnStatus_t data_status(const char* fn, int device, const std::array<Range, 3>& ranges, size_t element) {
  for (const Range& r : ranges) {
    if (r.p == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, std::string(r.what) + " is NULL");
    const std::string why = check_device_range(r.p, r.bytes, device, r.what);
    if (!why.empty()) return fail(CUDNN_STATUS_BAD_PARAM, fn, why);
    if (reinterpret_cast<uintptr_t>(r.p) % element != 0)
      return fail(CUDNN_STATUS_BAD_PARAM, fn, std::string(r.what) + " is not aligned to its element size");
  }
  return CUDNN_STATUS_SUCCESS;
}

/// [cnn] alpha and beta: host pointers to the scaling factors, float for float/half/bfloat16 data and double for
/// double data; BAD_PARAM when NULL. Stricter: device memory there is BAD_PARAM (it is never read).
cudnnStatus_t read_scalars(const char* fn, const ConvData& data, ConvJob* job) {
  if (!is_host_memory(data.alpha) || !is_host_memory(data.beta))
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "alpha or beta is NULL or not host memory");
  if (job->x.type == CUDNN_DATA_DOUBLE) {
    job->alpha = *static_cast<const double*>(data.alpha);
    job->beta = *static_cast<const double*>(data.beta);
  } else {
    job->alpha = *static_cast<const float*>(data.alpha);
    job->beta = *static_cast<const float*>(data.beta);
  }
  return CUDNN_STATUS_SUCCESS;
}

/// Workspace: BAD_PARAM when workSpaceSizeInBytes is smaller than cudnnGetConvolution*WorkspaceSize gives for the
/// algorithm (the reference lists no status for this; real cuDNN has answered BAD_PARAM: chainer/chainer#3922),
/// or when workSpace is not device memory of the handle's device of that size (NULL is fine with size 0).
cudnnStatus_t workspace_status(const char* fn, int device, const ConvData& data, size_t required) {
  if (data.workspace_bytes < required)
    return fail(CUDNN_STATUS_BAD_PARAM, fn,
                "the algorithm needs " + std::to_string(required) + " bytes of workspace, " +
                    std::to_string(data.workspace_bytes) + " were given");
  if (data.workspace == nullptr && data.workspace_bytes > 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "workSpace is NULL but workSpaceSizeInBytes is not 0");
  const std::string why = check_device_range(data.workspace, data.workspace_bytes, device, "workSpace");
  if (!why.empty()) return fail(CUDNN_STATUS_BAD_PARAM, fn, why);
  return CUDNN_STATUS_SUCCESS;
}

/// Stricter: the written tensor may not share memory with an input or the workspace (cuDNN documents no in-place
/// convolution; a GPU would read partly overwritten inputs).
cudnnStatus_t overlap_status(const char* fn, const std::array<Range, 3>& ranges, Pass pass, const Range& ws) {
  const int out = pass == Pass::forward ? 2 : pass == Pass::backward_data ? 0 : 1;
  for (int i = 0; i < 3; ++i)
    if (i != out && overlap(ranges[static_cast<size_t>(i)], ranges[static_cast<size_t>(out)]))
      return fail(CUDNN_STATUS_BAD_PARAM, fn, "the output overlaps an input");
  for (const Range& r : ranges)
    if (overlap(r, ws)) return fail(CUDNN_STATUS_BAD_PARAM, fn, std::string(r.what) + " overlaps the workspace");
  return CUDNN_STATUS_SUCCESS;
}

/// Queues the job: at run time the ranges are checked again (memory freed in between is a fault of the device, as
/// an illegal address is on a GPU), then computed.
cudnnStatus_t queue(const char* fn, const HandleObject& h, const ConvJob& job, const std::array<Range, 4>& ranges) {
  const int device = h.device;
  const std::string name = fn;
  const cudaError_t err = enqueue(h.stream, name, [job, ranges, device, name] {
    for (const Range& r : ranges) {
      const std::string why = check_device_range(r.p, r.bytes, device, r.what);
      if (!why.empty()) {
        fail_device(cudaErrorIllegalAddress, name + ": " + why);
        return;
      }
    }
    try {
      run_conv(job);
    } catch (const std::exception& e) {  // host memory for the reference ran out: a failed kernel, not a crash
      fail_device(cudaErrorMemoryAllocation, name + ": the reference convolution failed: " + e.what());
    }
  });
  if (err != cudaSuccess)
    return fail(CUDNN_STATUS_EXECUTION_FAILED, fn,
                std::string("the work could not be queued: ") + cudaGetErrorName(err));
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

// [cnn] cudnnConvolutionForward / BackwardData / BackwardFilter: BAD_PARAM and NOT_SUPPORTED as listed with each
// check; EXECUTION_FAILED when the work cannot be launched.
cudnnStatus_t execute(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, const ConvData& data) {
  HandleObject* h = nullptr;
  if (cudnnStatus_t st = handle_status(fn, handle, &h); st != CUDNN_STATUS_SUCCESS) return st;
  ConvJob job;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  if (cudnnStatus_t st = check_problem(fn, d, &job, &math); st != CUDNN_STATUS_SUCCESS) return st;
  const std::array<Range, 3> ranges{Range{data.x, span_bytes(job.x), d.pass == Pass::backward_data ? "dx" : "x"},
                                    Range{data.w, span_bytes(job.w), d.pass == Pass::backward_filter ? "dw" : "w"},
                                    Range{data.y, span_bytes(job.y), d.pass == Pass::forward ? "y" : "dy"}};
  if (cudnnStatus_t st = data_status(fn, h->device, ranges, element_size(job.x.type)); st != CUDNN_STATUS_SUCCESS)
    return st;
  if (cudnnStatus_t st = read_scalars(fn, data, &job); st != CUDNN_STATUS_SUCCESS) return st;
  // Stricter: an id outside the algorithm enumeration is BAD_PARAM; [cnn] an algorithm that does not support the
  // parameters is NOT_SUPPORTED.
  if (data.algo < 0 || data.algo >= algorithms(d.pass).second)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "algorithm " + std::to_string(data.algo) + " is out of range");
  const AlgoChoice c = choice(d.pass, data.algo, job);
  if (c.status != CUDNN_STATUS_SUCCESS) return fail(c.status, fn, c.why);
  if (cudnnStatus_t st = workspace_status(fn, h->device, data, c.workspace); st != CUDNN_STATUS_SUCCESS) return st;
  const Range ws{data.workspace, data.workspace_bytes, "workSpace"};
  if (cudnnStatus_t st = overlap_status(fn, ranges, d.pass, ws); st != CUDNN_STATUS_SUCCESS) return st;
  static std::atomic<uint64_t> calls{0};  // non-deterministic algorithms change their order every other call
  job.reverse_order = !deterministic(d.pass, data.algo) && (calls.fetch_add(1) % 2 == 1);
  job.x_data = data.x;
  job.w_data = data.w;
  job.y_data = data.y;
  job.workspace = data.workspace;
  job.workspace_bytes = c.workspace;
  return queue(fn, *h, job, {ranges[0], ranges[1], ranges[2], Range{data.workspace, c.workspace, "workSpace"}});
}

}  // namespace mixtape::emu::cudnn_mock
