// Uses the installed mixtape: a forward/backward pass through nn::Linear with known weights, one SGD step,
// and the build information. run_install_test.cmake checks the printed values (worked out by hand below).
#include <iostream>
#include <vector>

#include "core/tensor.h"
#include "mixtape/build_info.h"
#include "nn/layers.h"
#include "optim/optimizer.h"
#ifdef MIXTAPE_WITH_CUDA
#include "cuda/check.h"  // brings cudnn.h and cublasLt.h: the CUDA include directories must come along
#include "cuda/cuda_runtime_info.h"
#include "cuda/functor_kernels.h"
#endif

using namespace mixtape;

static void print(const char* label, const Tensor& t) {
  std::cout << label << ":";
  for (float v : t.to_vector<float>()) std::cout << ' ' << v;
  std::cout << '\n';
}

int main() {
  std::cout << "mixtape " << MIXTAPE_VERSION_STRING << '\n';

  nn::Linear fc(3, 2);
  {
    NoGradGuard no_grad;
    fc.weight.copy_(from_vector<float>({1, 0, -1, 0.5f, 0.5f, 0.5f}, Shape{2, 3}));
    fc.bias.copy_(from_vector<float>({0.25f, -0.25f}, Shape{2}));
  }
  const Tensor x = from_vector<float>({1, 2, 3}, Shape{1, 3});  // (1, 3)
  const Tensor y = fc.forward(x);                                 // (1, 2): [1 - 3 + 0.25, 3 - 0.25]
  const Tensor loss = sum(y);                                     // -1.75 + 2.75
  print("y", y);
  std::cout << "loss: " << loss.item() << '\n';

  backward(loss);
  print("grad weight", fc.weight.grad());  // d loss / d W[o][i] = x[i] for each output o
  print("grad bias", fc.bias.grad());      // 1 per output

  optim::SGD sgd(fc.parameters(), {.lr = 0.5});
  sgd.step();
  print("bias after step", fc.bias);  // [0.25 - 0.5, -0.25 - 0.5]

#ifdef MIXTAPE_WITH_CUDA
  // The CUDA backend links: the kernels' object (its fat binary registers with cudart at start-up) is kept
  // through a volatile pointer; cuDNN is called directly and through mixtape (neither needs a GPU).
  decltype(&cuda::launch_unary) volatile launch = &cuda::launch_unary;
  (void)launch;
  std::cout << "cudnn " << cuda::cudnn_version_string() << " (" << cudnnGetVersion() << ")\n";
  std::cout << "cuda devices: " << cuda::device_count() << '\n';
#endif
  return 0;
}
