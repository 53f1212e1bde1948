# The CUDA emulation build (MIXTAPE_CUDA_EMU=ON), included from the root CMakeLists.txt: the CUDA backend built
# to run on the CPU. cuda/*.cpp compile unchanged against the toolkit's headers; cuda/*.cu and cuda/*.cuh are
# rewritten by cu2cpp (launches and __shared__ declarations only) and compiled as host C++ with the device shim
# (cuda/emu/include/cuda_runtime.h, force-included as nvcc includes cuda_runtime.h); everything links against the
# fake runtime and the cuBLASLt/cuDNN mocks of cuda/emu/ instead of libcudart, libcublasLt and libcudnn.
# Needs the toolkit's headers (not nvcc, not a GPU) and Boost.Context (Debian: libboost-context-dev).

# ---- headers of the toolkit and cuDNN ----
set(_emu_hints ${CUDAToolkit_ROOT} $ENV{CUDAToolkit_ROOT} $ENV{CUDA_PATH} /usr/local/cuda)
find_path(MIXTAPE_CUDA_INCLUDE_DIR cuda_runtime_api.h HINTS ${_emu_hints} PATH_SUFFIXES include)
find_path(MIXTAPE_CUBLASLT_INCLUDE_DIR cublasLt.h HINTS ${_emu_hints} PATH_SUFFIXES include)
find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${_emu_hints} PATH_SUFFIXES include)
mark_as_advanced(MIXTAPE_CUDA_INCLUDE_DIR MIXTAPE_CUBLASLT_INCLUDE_DIR CUDNN_INCLUDE_DIR)
foreach(_h MIXTAPE_CUDA_INCLUDE_DIR MIXTAPE_CUBLASLT_INCLUDE_DIR CUDNN_INCLUDE_DIR)
  if(NOT ${_h})
    message(FATAL_ERROR "MIXTAPE_CUDA_EMU=ON needs the CUDA toolkit's headers (cuda_runtime_api.h, cublasLt.h) and "
                        "cuDNN 9's cudnn.h, but ${_h} was not found: set CUDAToolkit_ROOT / CUDNN_ROOT (no GPU and "
                        "no nvcc are needed)")
  endif()
endforeach()
set(_emu_include_dirs ${MIXTAPE_CUDA_INCLUDE_DIR} ${MIXTAPE_CUBLASLT_INCLUDE_DIR} ${CUDNN_INCLUDE_DIR})
if(EXISTS "${MIXTAPE_CUDA_INCLUDE_DIR}/cccl")
  list(APPEND _emu_include_dirs "${MIXTAPE_CUDA_INCLUDE_DIR}/cccl")  # <cuda/std/...> of CUDA 13
endif()
list(REMOVE_DUPLICATES _emu_include_dirs)
file(STRINGS "${CUDNN_INCLUDE_DIR}/cudnn_version.h" _cudnn_version_lines REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
foreach(_part MAJOR MINOR PATCHLEVEL)
  string(REGEX MATCH "CUDNN_${_part} +([0-9]+)" _ "${_cudnn_version_lines}")
  set(_cudnn_${_part} "${CMAKE_MATCH_1}")
endforeach()
set(MIXTAPE_CUDNN_VERSION "${_cudnn_MAJOR}.${_cudnn_MINOR}.${_cudnn_PATCHLEVEL}")

find_package(Boost 1.74 REQUIRED COMPONENTS context)

# ---- cudaGetErrorName's table, from the toolkit's enum cudaError ----
file(STRINGS "${MIXTAPE_CUDA_INCLUDE_DIR}/driver_types.h" _error_lines REGEX "^ +cudaError[A-Za-z0-9]* += +[0-9]+")
set(_names "")
foreach(_line IN LISTS _error_lines)
  string(REGEX MATCH "(cudaError[A-Za-z0-9]*) += +([0-9]+)" _ "${_line}")
  string(APPEND _names "{${CMAKE_MATCH_1}, \"${CMAKE_MATCH_1}\"},\n")
endforeach()
set(_emu_generated "${CMAKE_CURRENT_BINARY_DIR}/cuda_emu")
file(CONFIGURE OUTPUT "${_emu_generated}/cuda_error_names.inc" CONTENT "{cudaSuccess, \"cudaSuccess\"},\n${_names}")

# ---- the fake runtime, the scheduler and the library mocks ----
add_executable(mixtape_cu2cpp "${PROJECT_SOURCE_DIR}/cuda/emu/cu2cpp.cpp")
file(GLOB _emu_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/cuda/emu/*.cpp")
list(REMOVE_ITEM _emu_sources "${PROJECT_SOURCE_DIR}/cuda/emu/cu2cpp.cpp")
if(NOT MIXTAPE_WITH_NCCL)  # the NCCL stand-in carries data over MPI (and needs nccl.h)
  list(REMOVE_ITEM _emu_sources "${PROJECT_SOURCE_DIR}/cuda/emu/nccl_mock.cpp")
endif()
add_library(mixtape_cuda_emu STATIC ${_emu_sources})
if(MIXTAPE_WITH_NCCL)
  target_link_libraries(mixtape_cuda_emu PRIVATE MPI::MPI_CXX)
  target_compile_definitions(mixtape_cuda_emu PRIVATE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
  target_include_directories(mixtape_cuda_emu SYSTEM PRIVATE ${NCCL_INCLUDE_DIR})
endif()
target_include_directories(mixtape_cuda_emu PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> PRIVATE "${_emu_generated}")
# SYSTEM (-isystem): the shim's -I cuda/emu/include is searched first, so <cuda_runtime.h> is the emulation's.
target_include_directories(mixtape_cuda_emu SYSTEM PUBLIC ${_emu_include_dirs})
target_link_libraries(mixtape_cuda_emu PUBLIC Threads::Threads PRIVATE Boost::context)
target_compile_options(mixtape_cuda_emu PRIVATE -Wall -Wextra -ffp-contract=off)

# ---- .cu/.cuh files rewritten by cu2cpp and compiled as host C++ ----
set(MIXTAPE_EMU_GENERATED_DIR "${_emu_generated}" CACHE INTERNAL "rewritten CUDA sources of the emulation build")
set(MIXTAPE_EMU_CU_OPTIONS
    "-iquote;${_emu_generated};-I${PROJECT_SOURCE_DIR}/cuda/emu/include;-include;${PROJECT_SOURCE_DIR}/cuda/emu/include/cuda_runtime.h;-ffp-contract=off;-Wno-sign-compare;-Wno-unknown-pragmas;$<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>"
    CACHE INTERNAL "compile options of rewritten CUDA sources")

# Adds CUDA sources (paths relative to the project root) to `target`, rewritten into the build tree: a .cu
# becomes a compiled .cu.cpp; a .cuh is rewritten where -iquote finds it first (so "cuda/x.cuh" is the rewrite).
function(mixtape_emu_cuda_sources target)
  set(_rewritten "")
  foreach(_rel IN LISTS ARGN)
    set(_src "${PROJECT_SOURCE_DIR}/${_rel}")
    if(_rel MATCHES "\\.cu$")
      set(_out "${MIXTAPE_EMU_GENERATED_DIR}/${_rel}.cpp")
      target_sources(${target} PRIVATE "${_out}")
      set_source_files_properties("${_out}" PROPERTIES GENERATED TRUE COMPILE_OPTIONS "${MIXTAPE_EMU_CU_OPTIONS}")
    else()
      set(_out "${MIXTAPE_EMU_GENERATED_DIR}/${_rel}")
    endif()
    get_filename_component(_dir "${_out}" DIRECTORY)
    file(MAKE_DIRECTORY "${_dir}")
    get_filename_component(_name "${_rel}" NAME)
    add_custom_command(OUTPUT "${_out}" COMMAND mixtape_cu2cpp "${_src}" "${_out}" "${_src}"
                       DEPENDS mixtape_cu2cpp "${_src}" COMMENT "cu2cpp ${_name} (CUDA emulation)" VERBATIM)
    list(APPEND _rewritten "${_out}")
  endforeach()
  add_custom_target(${target}_rewrite_cuda DEPENDS ${_rewritten})
  add_dependencies(${target} ${target}_rewrite_cuda)
endfunction()

file(GLOB _cu_files CONFIGURE_DEPENDS RELATIVE "${PROJECT_SOURCE_DIR}" "${PROJECT_SOURCE_DIR}/cuda/*.cu"
     "${PROJECT_SOURCE_DIR}/cuda/*.cuh")
mixtape_emu_cuda_sources(mixtape ${_cu_files})
file(GLOB _cuda_cpp CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/cuda/*.cpp")
target_sources(mixtape PRIVATE ${_cuda_cpp})
target_compile_definitions(mixtape PUBLIC MIXTAPE_WITH_CUDA=1 MIXTAPE_CUDA_EMU=1)
target_link_libraries(mixtape PUBLIC mixtape_cuda_emu)
