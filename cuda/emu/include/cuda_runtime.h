#pragma once
// The emulation build's <cuda_runtime.h> (MIXTAPE_CUDA_EMU): nvcc includes cuda_runtime.h into every .cu file, and
// the emulation build force-includes this one into every .cu file it compiles as host C++ (found before the
// toolkit's through -I). Host API types and declarations come from the toolkit's cuda_runtime_api.h, unchanged;
// the device built-ins from cuda/emu/device.h.
#include <cuda_runtime_api.h>

#include "cuda/emu/device.h"
