// A mock of cuDNN 9's legacy convolution API for the emulation build (MIXTAPE_CUDA_EMU): exactly the entry points
// the backend uses (cuda/cuda_conv.cpp, cuda/cuda_backend.cpp, cuda/cuda_runtime_info.cpp, tests/), with the C
// signatures of the cuDNN 9.19 headers it is compiled against.
//
// It validates every argument at call time and returns the status NVIDIA's cuDNN 9 API reference documents
// ("cudnn_ops library" and "cudnn_cnn library" chapters, legacy functions; cited as [ops] and [cnn] below), then
// queues the convolution on the handle's stream; the computation (cudnn_mock_compute.cpp) runs later, in stream
// order, when the host synchronises. Where the reference is silent the mock takes the stricter choice and says so
// ("stricter" below). Honesty note: this mock was written from the documentation (and, where the stored copy of
// the reference could not be searched, from the author's reading of it), not checked against the closed library,
// so it shares any misreading of that documentation; only a run on a real GPU (scripts/gpu-check) settles those.
//
// Scope (anything else returns CUDNN_STATUS_NOT_SUPPORTED): 4-D NCHW tensors with any non-negative strides,
// KCRS (CUDNN_TENSOR_NCHW) filters, group count 1, cross-correlation and convolution, the PSEUDO_HALF,
// PSEUDO_BFLOAT16, FLOAT and DOUBLE configurations. Algorithms are the mock's own (see kForwardAlgos & co.).
#include "cuda/emu/cudnn_mock.h"

#include <cudnn.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "cuda/emu/runtime.h"

namespace mixtape::emu::cudnn_mock {

namespace {

/// Every object the mock handed out and has not destroyed. Never freed: handles may be destroyed during static
/// destruction (the backends live until exit).
struct Registry {
  std::mutex mu;
  std::unordered_map<const void*, Kind> live;
};
Registry& registry() {
  static auto* r = new Registry();
  return *r;
}

thread_local std::string t_last_error;

bool is_live(const void* p, Kind k) {
  if (p == nullptr) return false;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.live.find(p);
  return it != r.live.end() && it->second == k;
}

template <class T>
void delete_as(const void* p) {
  delete static_cast<T*>(const_cast<void*>(p));
}

}  // namespace

// ---- objects and diagnostics ----

void* create_object(Kind k) {
  void* p = nullptr;
  switch (k) {
    case Kind::handle: p = new HandleObject(); break;
    case Kind::tensor: p = new TensorObject(); break;
    case Kind::filter: p = new FilterObject(); break;
    case Kind::conv: p = new ConvObject(); break;
  }
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.live[p] = k;
  return p;
}

cudnnStatus_t destroy_object(const void* p, Kind k, const char* fn) {
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.live.find(p);
    if (p == nullptr || it == r.live.end() || it->second != k)
      return fail(CUDNN_STATUS_BAD_PARAM, fn, "NULL, already destroyed or not an object of this kind");
    r.live.erase(it);
  }
  switch (k) {
    case Kind::handle: delete_as<HandleObject>(p); break;
    case Kind::tensor: delete_as<TensorObject>(p); break;
    case Kind::filter: delete_as<FilterObject>(p); break;
    case Kind::conv: delete_as<ConvObject>(p); break;
  }
  return CUDNN_STATUS_SUCCESS;
}

HandleObject* handle_object(const void* p) {
  return is_live(p, Kind::handle) ? static_cast<HandleObject*>(const_cast<void*>(p)) : nullptr;
}
TensorObject* tensor_object(const void* p) {
  return is_live(p, Kind::tensor) ? static_cast<TensorObject*>(const_cast<void*>(p)) : nullptr;
}
FilterObject* filter_object(const void* p) {
  return is_live(p, Kind::filter) ? static_cast<FilterObject*>(const_cast<void*>(p)) : nullptr;
}
ConvObject* conv_object(const void* p) {
  return is_live(p, Kind::conv) ? static_cast<ConvObject*>(const_cast<void*>(p)) : nullptr;
}

cudnnStatus_t fail(cudnnStatus_t status, const char* fn, const std::string& why) {
  t_last_error = std::string(fn) + ": " + status_name(status) + ": " + why;
  if (std::getenv("MIXTAPE_EMU_CUDNN_LOG") != nullptr) std::fprintf(stderr, "[cudnn mock] %s\n", t_last_error.c_str());
  return status;
}

const std::string& last_error() { return t_last_error; }

const char* status_name(cudnnStatus_t status) {
  switch (static_cast<int>(status)) {
#define MIXTAPE_STATUS_NAME(x) \
  case x: return #x;
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_SUCCESS)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_INITIALIZED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_DEPRECATED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_LICENSE_ERROR)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INVALID_VALUE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_PADDING)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_INVALID_DYNAMIC_SHAPE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
    MIXTAPE_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CURAND)
#undef MIXTAPE_STATUS_NAME
    default: break;
  }
  return "CUDNN_STATUS_UNKNOWN";
}

bool is_host_memory(const void* p) {
  if (p == nullptr) return false;
  const MemKind k = lookup(p).kind;
  return k == MemKind::none || k == MemKind::pinned_host;
}

bool valid_data_type(cudnnDataType_t type) {
  return static_cast<int>(type) >= CUDNN_DATA_FLOAT && static_cast<int>(type) <= CUDNN_DATA_COMPLEX_FP64;
}

// [ops] cudnnSetTensor4dDescriptorEx: BAD_PARAM when n, c, h or w is negative or dataType is not a valid
// enumerant (zero dimensions too: stricter, as cudnnSetTensorNdDescriptor documents "negative or zero");
// NOT_SUPPORTED when the tensor exceeds 2 Giga-elements. Strides are not checked here: cudnnConvolution* documents
// NOT_SUPPORTED for negative strides, so such a descriptor can exist.
cudnnStatus_t set_tensor(const char* fn, cudnnTensorDescriptor_t desc, cudnnDataType_t type, std::array<int, 4> dims,
                         std::array<int, 4> strides) {
  TensorObject* t = tensor_object(desc);
  if (t == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid (NULL or destroyed) descriptor");
  if (!valid_data_type(type)) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid dataType");
  int64_t count = 1;
  for (int d : dims) {
    if (d <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "a dimension is not positive");
    count *= d;
  }
  if (count > INT_MAX) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "more than 2 Giga-elements");
  *t = TensorObject{true, type, {dims[0], dims[1], dims[2], dims[3]}, {strides[0], strides[1], strides[2], strides[3]}};
  return CUDNN_STATUS_SUCCESS;
}

std::array<int64_t, 2> output_hw(const TensorObject& x, const FilterObject& f, const ConvObject& c) {
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    const int64_t extent = (f.dims[2 + i] - 1) * c.dilation[i] + 1;
    const int64_t room = x.dims[2 + i] + 2 * int64_t{c.pad[i]} - extent;
    out[i] = room < 0 ? 0 : 1 + room / c.stride[i];
  }
  return out;
}

}  // namespace mixtape::emu::cudnn_mock

using namespace mixtape::emu::cudnn_mock;  // NOLINT: internal to the mock

// ---- library ----

extern "C" size_t cudnnGetVersion(void) { return CUDNN_VERSION; }
extern "C" size_t cudnnGetCudartVersion(void) { return CUDART_VERSION; }  // the runtime it was built with

extern "C" cudnnStatus_t cudnnGetProperty(libraryPropertyType type, int* value) {
  if (!is_host_memory(value)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetProperty", "value is not host memory");
  switch (type) {
    case MAJOR_VERSION: *value = CUDNN_MAJOR; return CUDNN_STATUS_SUCCESS;
    case MINOR_VERSION: *value = CUDNN_MINOR; return CUDNN_STATUS_SUCCESS;
    case PATCH_LEVEL: *value = CUDNN_PATCHLEVEL; return CUDNN_STATUS_SUCCESS;
  }
  return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetProperty", "unknown libraryPropertyType");
}

extern "C" const char* cudnnGetErrorString(cudnnStatus_t status) { return status_name(status); }

extern "C" void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (message == nullptr || max_size == 0) return;
  const std::string& s = last_error();
  const size_t n = std::min(s.size(), max_size - 1);
  std::memcpy(message, s.data(), n);
  message[n] = '\0';
}

// ---- handle ----

// [ops] cudnnCreate: the handle is tied to the current device; BAD_PARAM for a NULL pointer,
// NOT_INITIALIZED when the CUDA runtime cannot be initialised.
extern "C" cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!is_host_memory(handle)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreate", "handle is not host memory");
  if (mixtape::emu::device_count() <= 0) return fail(CUDNN_STATUS_NOT_INITIALIZED, "cudnnCreate", "no device");
  *handle = reinterpret_cast<cudnnHandle_t>(create_object(Kind::handle));
  handle_object(*handle)->device = mixtape::emu::current_device();
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  // [ops] BAD_PARAM for an invalid pointer; a destroyed or unknown handle is one (detected by the registry).
  return destroy_object(handle, Kind::handle, "cudnnDestroy");
}

// [ops] cudnnSetStream: BAD_PARAM for an invalid (NULL) handle; MAPPING_ERROR when the stream does not belong to
// the handle's device. An unknown (destroyed) stream is BAD_PARAM here (stricter).
extern "C" cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  HandleObject* h = handle_object(handle);
  if (h == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream", "invalid handle");
  const bool implicit = stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread;
  if (!implicit) {
    const int dev = mixtape::emu::stream_device(stream);
    if (dev < 0) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream", "unknown (destroyed?) stream");
    if (dev != h->device)
      return fail(CUDNN_STATUS_MAPPING_ERROR, "cudnnSetStream", "the stream belongs to another device");
  }
  h->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  HandleObject* h = handle_object(handle);
  if (h == nullptr || !is_host_memory(stream))
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetStream", "invalid handle or output pointer");
  *stream = h->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- tensor descriptors ----

extern "C" cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) {
  if (!is_host_memory(desc)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreateTensorDescriptor", "NULL pointer");
  *desc = reinterpret_cast<cudnnTensorDescriptor_t>(create_object(Kind::tensor));
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  return destroy_object(desc, Kind::tensor, "cudnnDestroyTensorDescriptor");
}

extern "C" cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t desc, cudnnDataType_t type, int n, int c,
                                                      int h, int w, int n_stride, int c_stride, int h_stride,
                                                      int w_stride) {
  return set_tensor("cudnnSetTensor4dDescriptorEx", desc, type, {n, c, h, w}, {n_stride, c_stride, h_stride, w_stride});
}

extern "C" cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                                    cudnnDataType_t type, int n, int c, int h, int w) {
  static const char* fn = "cudnnSetTensor4dDescriptor";
  // [ops] BAD_PARAM when format has an invalid enumerant value.
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW_VECT_C)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid format");
  if (format == CUDNN_TENSOR_NCHW_VECT_C)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "the mock does not implement CUDNN_TENSOR_NCHW_VECT_C");
  const int64_t hw = int64_t{h} * w;
  if (format == CUDNN_TENSOR_NHWC) {
    const int64_t s[4] = {hw * c, 1, int64_t{w} * c, c};
    if (s[0] > INT_MAX || s[2] > INT_MAX) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "more than 2^31 elements");
    return set_tensor(fn, desc, type, {n, c, h, w}, {int(s[0]), 1, int(s[2]), c});
  }
  if (hw * c > INT_MAX) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "more than 2^31 elements");
  return set_tensor(fn, desc, type, {n, c, h, w}, {int(hw * c), int(hw), w, 1});
}

extern "C" cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t desc, cudnnDataType_t* type, int* n,
                                                    int* c, int* h, int* w, int* n_stride, int* c_stride, int* h_stride,
                                                    int* w_stride) {
  static const char* fn = "cudnnGetTensor4dDescriptor";
  const TensorObject* t = tensor_object(desc);
  if (t == nullptr || !t->set) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid or never-set descriptor");
  int* outs[8] = {n, c, h, w, n_stride, c_stride, h_stride, w_stride};
  for (int* p : outs)  // stricter: every output is required
    if (!is_host_memory(p)) return fail(CUDNN_STATUS_BAD_PARAM, fn, "an output pointer is not host memory");
  if (!is_host_memory(type)) return fail(CUDNN_STATUS_BAD_PARAM, fn, "dataType is not host memory");
  *type = t->type;
  for (int i = 0; i < 4; ++i) {
    *outs[i] = static_cast<int>(t->dims[i]);
    *outs[4 + i] = static_cast<int>(t->strides[i]);
  }
  return CUDNN_STATUS_SUCCESS;
}

// ---- filter descriptors ----

extern "C" cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) {
  if (!is_host_memory(desc)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreateFilterDescriptor", "NULL pointer");
  *desc = reinterpret_cast<cudnnFilterDescriptor_t>(create_object(Kind::filter));
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  return destroy_object(desc, Kind::filter, "cudnnDestroyFilterDescriptor");
}

// [ops] cudnnSetFilter4dDescriptor: BAD_PARAM when k, c, h or w is negative (zero too: stricter, as
// cudnnSetFilterNdDescriptor documents) or dataType / format has an invalid enumerant value.
extern "C" cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type,
                                                    cudnnTensorFormat_t format, int k, int c, int h, int w) {
  static const char* fn = "cudnnSetFilter4dDescriptor";
  FilterObject* f = filter_object(desc);
  if (f == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid (NULL or destroyed) descriptor");
  if (!valid_data_type(type)) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid dataType");
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC && format != CUDNN_TENSOR_NCHW_VECT_C)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid format");
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "a dimension is not positive");
  if (int64_t{k} * c * h * w > INT_MAX) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "more than 2^31 elements");
  *f = FilterObject{true, type, format, {k, c, h, w}};
  return CUDNN_STATUS_SUCCESS;
}

// ---- convolution descriptors ----

extern "C" cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) {
  if (!is_host_memory(desc)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreateConvolutionDescriptor", "NULL pointer");
  *desc = reinterpret_cast<cudnnConvolutionDescriptor_t>(create_object(Kind::conv));
  return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  return destroy_object(desc, Kind::conv, "cudnnDestroyConvolutionDescriptor");
}

// [cnn] cudnnSetConvolution2dDescriptor: BAD_PARAM when the descriptor is nil, pad_h or pad_w is strictly
// negative, u or v is negative or zero, dilation_h or dilation_w is negative or zero, or mode is not a valid
// enumerant. computeType is checked against the data types at use (the "supported configurations" tables); here
// only a type no configuration uses as its compute type is BAD_PARAM (stricter).
extern "C" cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w, int u,
                                                         int v, int dilation_h, int dilation_w,
                                                         cudnnConvolutionMode_t mode, cudnnDataType_t compute_type) {
  static const char* fn = "cudnnSetConvolution2dDescriptor";
  ConvObject* c = conv_object(desc);
  if (c == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid (NULL or destroyed) descriptor");
  if (pad_h < 0 || pad_w < 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "negative padding");
  if (u <= 0 || v <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "a filter stride is not positive");
  if (dilation_h <= 0 || dilation_w <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "a dilation is not positive");
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid mode");
  if (compute_type != CUDNN_DATA_FLOAT && compute_type != CUDNN_DATA_DOUBLE && compute_type != CUDNN_DATA_HALF &&
      compute_type != CUDNN_DATA_INT32)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "computeType is no configuration's compute type");
  // The math type is reset to the default (stricter: the reference does not say whether this setter keeps an
  // earlier cudnnSetConvolutionMathType, so code that relies on either order shows up); the group count is kept.
  const int groups = c->groups;
  *c = ConvObject{true,         {pad_h, pad_w},     {u, v}, {dilation_h, dilation_w}, mode,
                  compute_type, CUDNN_DEFAULT_MATH, groups};
  return CUDNN_STATUS_SUCCESS;
}

// [cnn] cudnnSetConvolutionMathType: BAD_PARAM when the math type was not set (an invalid enumerant).
extern "C" cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
  ConvObject* c = conv_object(desc);
  if (c == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionMathType", "invalid descriptor");
  if (math != CUDNN_DEFAULT_MATH && math != CUDNN_TENSOR_OP_MATH && math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
      math != CUDNN_FMA_MATH)
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionMathType", "invalid math type");
  c->math = math;
  return CUDNN_STATUS_SUCCESS;
}

// [cnn] cudnnSetConvolutionGroupCount: BAD_PARAM for an invalid descriptor (and, stricter, a count below 1).
// Grouped convolutions are outside the mock: a count above 1 is NOT_SUPPORTED.
extern "C" cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int group_count) {
  static const char* fn = "cudnnSetConvolutionGroupCount";
  ConvObject* c = conv_object(desc);
  if (c == nullptr || group_count < 1) return fail(CUDNN_STATUS_BAD_PARAM, fn, "invalid descriptor or count");
  if (group_count != 1) return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "the mock implements group count 1 only");
  c->groups = 1;
  return CUDNN_STATUS_SUCCESS;
}

// [cnn] cudnnGetConvolution2dForwardOutputDim: outputDim = 1 + (inputDim + 2*pad - ((filterDim-1)*dilation + 1))
// / convolutionStride; BAD_PARAM when a descriptor was not created correctly or the feature maps of the input and
// the filter differ. Stricter: a filter larger than the padded input (no output) and NULL outputs are BAD_PARAM.
extern "C" cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t conv_desc,
                                                               const cudnnTensorDescriptor_t input_desc,
                                                               const cudnnFilterDescriptor_t filter_desc, int* n,
                                                               int* c, int* h, int* w) {
  static const char* fn = "cudnnGetConvolution2dForwardOutputDim";
  const ConvObject* cv = conv_object(conv_desc);
  const TensorObject* x = tensor_object(input_desc);
  const FilterObject* f = filter_object(filter_desc);
  if (cv == nullptr || !cv->set || x == nullptr || !x->set || f == nullptr || !f->set)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "a descriptor is invalid, destroyed or never set");
  if (!is_host_memory(n) || !is_host_memory(c) || !is_host_memory(h) || !is_host_memory(w))
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "an output pointer is not host memory");
  if (x->dims[1] != f->dims[1]) return fail(CUDNN_STATUS_BAD_PARAM, fn, "input and filter channels differ");
  const std::array<int64_t, 2> out = output_hw(*x, *f, *cv);
  if (out[0] <= 0 || out[1] <= 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "the dilated filter is larger than the padded input");
  *n = static_cast<int>(x->dims[0]);
  *c = static_cast<int>(f->dims[0]);
  *h = static_cast<int>(out[0]);
  *w = static_cast<int>(out[1]);
  return CUDNN_STATUS_SUCCESS;
}

// ---- algorithm heuristics and workspace sizes ----

extern "C" cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return max_count("cudnnGetConvolutionForwardAlgorithmMaxCount", handle, Pass::forward, count);
}
extern "C" cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return max_count("cudnnGetConvolutionBackwardDataAlgorithmMaxCount", handle, Pass::backward_data, count);
}
extern "C" cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return max_count("cudnnGetConvolutionBackwardFilterAlgorithmMaxCount", handle, Pass::backward_filter, count);
}

extern "C" cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc, const cudnnFilterDescriptor_t w_desc,
    const cudnnConvolutionDescriptor_t conv_desc, const cudnnTensorDescriptor_t y_desc, const int requested,
    int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
  return heuristics("cudnnGetConvolutionForwardAlgorithm_v7", handle,
                    {Pass::forward, x_desc, w_desc, conv_desc, y_desc}, requested, returned, perf);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w_desc, const cudnnTensorDescriptor_t dy_desc,
    const cudnnConvolutionDescriptor_t conv_desc, const cudnnTensorDescriptor_t dx_desc, const int requested,
    int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  return heuristics("cudnnGetConvolutionBackwardDataAlgorithm_v7", handle,
                    {Pass::backward_data, dx_desc, w_desc, conv_desc, dy_desc}, requested, returned, perf);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc, const cudnnTensorDescriptor_t dy_desc,
    const cudnnConvolutionDescriptor_t conv_desc, const cudnnFilterDescriptor_t dw_desc, const int requested,
    int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  return heuristics("cudnnGetConvolutionBackwardFilterAlgorithm_v7", handle,
                    {Pass::backward_filter, x_desc, dw_desc, conv_desc, dy_desc}, requested, returned, perf);
}

extern "C" cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle,
                                                                 const cudnnTensorDescriptor_t x_desc,
                                                                 const cudnnFilterDescriptor_t w_desc,
                                                                 const cudnnConvolutionDescriptor_t conv_desc,
                                                                 const cudnnTensorDescriptor_t y_desc,
                                                                 cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
  return workspace_size("cudnnGetConvolutionForwardWorkspaceSize", handle,
                        {Pass::forward, x_desc, w_desc, conv_desc, y_desc}, static_cast<int>(algo), bytes);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w_desc, const cudnnTensorDescriptor_t dy_desc,
    const cudnnConvolutionDescriptor_t conv_desc, const cudnnTensorDescriptor_t dx_desc,
    cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  return workspace_size("cudnnGetConvolutionBackwardDataWorkspaceSize", handle,
                        {Pass::backward_data, dx_desc, w_desc, conv_desc, dy_desc}, static_cast<int>(algo), bytes);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc, const cudnnTensorDescriptor_t dy_desc,
    const cudnnConvolutionDescriptor_t conv_desc, const cudnnFilterDescriptor_t dw_desc,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  return workspace_size("cudnnGetConvolutionBackwardFilterWorkspaceSize", handle,
                        {Pass::backward_filter, x_desc, dw_desc, conv_desc, dy_desc}, static_cast<int>(algo), bytes);
}

// ---- execution ----

extern "C" cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha,
                                                 const cudnnTensorDescriptor_t x_desc, const void* x,
                                                 const cudnnFilterDescriptor_t w_desc, const void* w,
                                                 const cudnnConvolutionDescriptor_t conv_desc,
                                                 cudnnConvolutionFwdAlgo_t algo, void* workspace,
                                                 size_t workspace_bytes, const void* beta,
                                                 const cudnnTensorDescriptor_t y_desc, void* y) {
  return execute("cudnnConvolutionForward", handle, {Pass::forward, x_desc, w_desc, conv_desc, y_desc},
                 {x, w, y, alpha, beta, workspace, workspace_bytes, static_cast<int>(algo)});
}

extern "C" cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                                      const cudnnFilterDescriptor_t w_desc, const void* w,
                                                      const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                                      const cudnnConvolutionDescriptor_t conv_desc,
                                                      cudnnConvolutionBwdDataAlgo_t algo, void* workspace,
                                                      size_t workspace_bytes, const void* beta,
                                                      const cudnnTensorDescriptor_t dx_desc, void* dx) {
  return execute("cudnnConvolutionBackwardData", handle, {Pass::backward_data, dx_desc, w_desc, conv_desc, dy_desc},
                 {dx, w, dy, alpha, beta, workspace, workspace_bytes, static_cast<int>(algo)});
}

extern "C" cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                                        const cudnnTensorDescriptor_t x_desc, const void* x,
                                                        const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                                        const cudnnConvolutionDescriptor_t conv_desc,
                                                        cudnnConvolutionBwdFilterAlgo_t algo, void* workspace,
                                                        size_t workspace_bytes, const void* beta,
                                                        const cudnnFilterDescriptor_t dw_desc, void* dw) {
  return execute("cudnnConvolutionBackwardFilter", handle, {Pass::backward_filter, x_desc, dw_desc, conv_desc, dy_desc},
                 {x, dw, dy, alpha, beta, workspace, workspace_bytes, static_cast<int>(algo)});
}
