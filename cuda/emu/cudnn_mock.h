#pragma once
// Internal to the cuDNN mock of the emulation build: cuda/emu/cudnn_mock.cpp defines the C entry points and the
// objects behind the opaque handles, cuda/emu/cudnn_mock_validate.cpp the convolution checks, algorithms and
// queueing, cuda/emu/cudnn_mock_compute.cpp the reference convolution. A ConvJob is one convolution as queued work sees
// it, captured by value at call time, so descriptors may be destroyed and host scalars reused once the call returns.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mixtape::emu::cudnn_mock {

/// The three convolution passes.
enum class Pass : uint8_t { forward, backward_data, backward_filter };

/// What the math type does to float inputs before they are multiplied (float data only).
enum class InputRounding : uint8_t {
  none,  ///< exact float (CUDNN_FMA_MATH), and every non-float data type
  tf32,  ///< TF32 tensor cores (CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH): 10-bit mantissa, round to nearest
  half,  ///< CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: inputs down-converted to float16
};

/// One 4-D operand: data type, dims (n, c, h, w) and element strides (a filter's are packed KCRS).
struct Operand {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::array<int64_t, 4> dims{};
  std::array<int64_t, 4> strides{};
};

/// A validated convolution call. x (n, c, h, w), w (k, c, r, s), y (n, k, oh, ow): forward reads x and w and
/// writes y; backward-data reads y (dy) and w and writes x (dx); backward-filter reads x and y (dy), writes w (dw).
struct ConvJob {
  Pass pass = Pass::forward;
  Operand x, w, y;
  std::array<int64_t, 2> pad{}, stride{}, dilation{};
  bool flip = false;  ///< CUDNN_CONVOLUTION: the filter is applied rotated by 180 degrees
  InputRounding rounding = InputRounding::none;
  bool reverse_order = false;      ///< a non-deterministic algorithm: partial sums added in another order
  const void* x_data = nullptr;    ///< x, or dx (written) for backward-data
  const void* w_data = nullptr;    ///< w, or dw (written) for backward-filter
  const void* y_data = nullptr;    ///< y (written) for forward, else dy
  double alpha = 1.0, beta = 0.0;  ///< read from the caller's float or double at call time
  void* workspace = nullptr;       ///< the first workspace_bytes are overwritten (as a real algorithm would)
  size_t workspace_bytes = 0;
};

/// Bytes of one element of a data type the mock computes with (float, double, half, bfloat16); 0 otherwise.
size_t element_size(cudnnDataType_t type);

/// Bytes from the first to one past the last element of `o` (non-negative strides).
size_t span_bytes(const Operand& o);

/// Computes `job` (device memory must be accessible): float accumulation for float/half/bfloat16 data, double for
/// double, then alpha/beta in that type and one rounding to the data type; beta == 0 never reads the output.
void run_conv(const ConvJob& job);

// ---- objects behind the opaque handles, diagnostics (cudnn_mock.cpp) ----

/// What an opaque pointer handed out by the mock is.
enum class Kind : uint8_t { handle, tensor, filter, conv };

/// A cudnnHandle_t: its device (current at cudnnCreate) and stream (cudnnSetStream; the legacy default stream).
struct HandleObject {
  int device = 0;
  cudaStream_t stream = nullptr;
};
/// A cudnnTensorDescriptor_t (4-D only).
struct TensorObject {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::array<int64_t, 4> dims{}, strides{};
};
/// A cudnnFilterDescriptor_t (4-D only): dims (k, c, h, w) whatever the format.
struct FilterObject {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  std::array<int64_t, 4> dims{};
};
/// A cudnnConvolutionDescriptor_t (2-D only).
struct ConvObject {
  bool set = false;
  std::array<int, 2> pad{0, 0}, stride{1, 1}, dilation{1, 1};
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  int groups = 1;
};

/// A new object of kind k, registered as live.
void* create_object(Kind k);
/// Unregisters and frees a live object of kind k; BAD_PARAM (nothing freed) for anything else.
cudnnStatus_t destroy_object(const void* p, Kind k, const char* fn);
/// The live object p, or nullptr when p is NULL, destroyed, of another kind or never handed out (never dereferenced
/// before the registry says it is live).
HandleObject* handle_object(const void* p);
TensorObject* tensor_object(const void* p);
FilterObject* filter_object(const void* p);
ConvObject* conv_object(const void* p);

/// Records "fn: why" as the thread's last error (cudnnGetLastErrorString; printed when MIXTAPE_EMU_CUDNN_LOG is
/// set) and returns status.
cudnnStatus_t fail(cudnnStatus_t status, const char* fn, const std::string& why);
/// The thread's last error message.
const std::string& last_error();
/// "CUDNN_STATUS_BAD_PARAM", ... ("CUDNN_STATUS_UNKNOWN" for a value cuDNN 9.19 does not define).
const char* status_name(cudnnStatus_t status);
/// Whether p is non-null host memory the mock may write through (not device or freed device memory).
bool is_host_memory(const void* p);
/// Whether type is an enumerant of cudnnDataType_t.
bool valid_data_type(cudnnDataType_t type);

/// The checks and store of cudnnSetTensor4dDescriptor(Ex).
cudnnStatus_t set_tensor(const char* fn, cudnnTensorDescriptor_t desc, cudnnDataType_t type, std::array<int, 4> dims,
                         std::array<int, 4> strides);
/// (oh, ow) of x convolved with f under c: 1 + (in + 2*pad - ((filter - 1)*dilation + 1)) / stride; <= 0 when the
/// dilated filter does not fit the padded input.
std::array<int64_t, 2> output_hw(const TensorObject& x, const FilterObject& f, const ConvObject& c);

// ---- convolution calls (cudnn_mock_validate.cpp) ----

/// The descriptors of a call in the forward pass's roles: x (dx for backward-data), w (dw for backward-filter),
/// y (dy for the backward passes).
struct ConvDescriptors {
  Pass pass;
  cudnnTensorDescriptor_t x;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnTensorDescriptor_t y;
};
/// The other arguments of an execution call, in the same roles.
struct ConvData {
  const void* x;
  const void* w;
  const void* y;
  const void* alpha;
  const void* beta;
  void* workspace;
  size_t workspace_bytes;
  int algo;
};
/// One entry of the heuristics' answer (the members the three cudnnConvolution*AlgoPerf_t share).
struct AlgoReport {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  bool deterministic;
  cudnnMathType_t math;
};

/// cudnnGetConvolution*AlgorithmMaxCount.
cudnnStatus_t max_count(const char* fn, cudnnHandle_t handle, Pass pass, int* count);
/// The checks of cudnnGetConvolution*Algorithm_v7 and the mock's algorithms in their fixed order, supported
/// ones first.
cudnnStatus_t rank_algorithms(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, int requested,
                              const void* returned, const void* perf, std::vector<AlgoReport>* out);
/// cudnnGetConvolution*WorkspaceSize.
cudnnStatus_t workspace_size(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, int algo, size_t* bytes);
/// cudnnConvolutionForward / BackwardData / BackwardFilter: checks at call time, then queues run_conv.
cudnnStatus_t execute(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, const ConvData& data);

/// cudnnGetConvolution*Algorithm_v7: rank_algorithms written into cuDNN's perf structs.
template <class Perf>
cudnnStatus_t heuristics(const char* fn, cudnnHandle_t handle, const ConvDescriptors& d, int requested, int* returned,
                         Perf* perf) {
  std::vector<AlgoReport> list;
  const cudnnStatus_t st = rank_algorithms(fn, handle, d, requested, returned, perf, &list);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  const int n = std::min(requested, static_cast<int>(list.size()));
  for (int i = 0; i < n; ++i) {
    Perf p{};
    p.algo = static_cast<decltype(p.algo)>(list[static_cast<size_t>(i)].algo);
    p.status = list[static_cast<size_t>(i)].status;
    p.time = -1.0f;  // a heuristic, not a measurement
    p.memory = list[static_cast<size_t>(i)].memory;
    p.determinism = list[static_cast<size_t>(i)].deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    p.mathType = list[static_cast<size_t>(i)].math;
    perf[i] = p;
  }
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace mixtape::emu::cudnn_mock
