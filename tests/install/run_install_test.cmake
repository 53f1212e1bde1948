# CTest test install.find_package (registered in tests/CMakeLists.txt), run with cmake -P:
#   1. installs the mixtape build MIXTAPE_BUILD_DIR into WORK_DIR/staging (cmake --install --prefix),
#   2. moves the prefix to WORK_DIR/prefix (the package must be relocatable) and checks that its CMake
#      files name neither the source nor the build tree,
#   3. configures, builds and runs this outside project (tests/install) with CMAKE_PREFIX_PATH=WORK_DIR/prefix,
#      with the compiler and generator of the mixtape build, and checks what it prints.
# Inputs (-D): MIXTAPE_BUILD_DIR MIXTAPE_SOURCE_DIR MIXTAPE_LIBRARY MIXTAPE_VERSION MIXTAPE_WITH_CUDA
#              PROJECT_DIR WORK_DIR CXX_COMPILER GENERATOR MAKE_PROGRAM CONFIG, optional CUDAToolkit_ROOT CUDNN_ROOT.
cmake_minimum_required(VERSION 3.25)

foreach(var MIXTAPE_BUILD_DIR MIXTAPE_SOURCE_DIR MIXTAPE_LIBRARY MIXTAPE_VERSION PROJECT_DIR WORK_DIR CXX_COMPILER
            GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_install_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT EXISTS "${MIXTAPE_LIBRARY}")
  message(FATAL_ERROR "the mixtape library ${MIXTAPE_LIBRARY} has not been built: build the project "
                      "(cmake --build ${MIXTAPE_BUILD_DIR}) before running the tests")
endif()

# Runs a command; on failure prints its output and fails the test with `what`.
function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (exit ${rc}):\n  ${ARGN}\n--- stdout\n${out}\n--- stderr\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

set(staging "${WORK_DIR}/staging")
set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()

# 1. Install.
run_step("cmake --install" "${CMAKE_COMMAND}" --install "${MIXTAPE_BUILD_DIR}" --prefix "${staging}" ${config_args})

# 2. Relocate, then look at what was installed.
file(RENAME "${staging}" "${prefix}")
file(GLOB_RECURSE config_files "${prefix}/*/mixtapeConfig.cmake")
list(LENGTH config_files n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one mixtapeConfig.cmake under ${prefix}, found ${n}: ${config_files}")
endif()
get_filename_component(package_dir "${config_files}" DIRECTORY)
foreach(f mixtapeConfigVersion.cmake mixtapeTargets.cmake)
  if(NOT EXISTS "${package_dir}/${f}")
    message(FATAL_ERROR "${f} is missing from ${package_dir}")
  endif()
endforeach()
foreach(h core/tensor.h autograd/ops.h nn/layers.h nn/module.h nn/transformer.h optim/optimizer.h data/loader.h data/text.h
          mixtape/build_info.h mixtape/mixtape.h)
  if(NOT EXISTS "${prefix}/include/mixtape/${h}")
    message(FATAL_ERROR "header ${h} was not installed as ${prefix}/include/mixtape/${h}")
  endif()
endforeach()
file(GLOB package_files "${package_dir}/*.cmake")
foreach(f IN LISTS package_files)
  file(READ "${f}" text)
  foreach(tree "${MIXTAPE_SOURCE_DIR}" "${MIXTAPE_BUILD_DIR}")
    string(FIND "${text}" "${tree}" pos)
    if(NOT pos EQUAL -1)
      message(FATAL_ERROR "${f} names ${tree}: the installed package must not point into the source or build tree")
    endif()
  endforeach()
endforeach()

# 3. The outside project.
set(configure_args -S "${PROJECT_DIR}" -B "${build}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CONFIG)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
foreach(var CUDAToolkit_ROOT CUDNN_ROOT)
  if(${var})
    list(APPEND configure_args "-D${var}=${${var}}")
  endif()
endforeach()
run_step("configuring the outside project (find_package(mixtape))" "${CMAKE_COMMAND}" ${configure_args})
file(STRINGS "${build}/CMakeCache.txt" found_dir REGEX "^mixtape_DIR:")
string(REGEX REPLACE "^[^=]*=" "" found_dir "${found_dir}")
file(REAL_PATH "${found_dir}" found_dir)
file(REAL_PATH "${package_dir}" package_dir)
if(NOT found_dir STREQUAL package_dir)
  message(FATAL_ERROR "find_package(mixtape) used ${found_dir}, not the package just installed in ${package_dir}")
endif()

run_step("building the outside project (linking mixtape::mixtape)" "${CMAKE_COMMAND}" --build "${build}" ${config_args})

file(READ "${build}/use_mixtape_path.txt" exe)
run_step("running the outside project" "${exe}")
set(expected
    "mixtape ${MIXTAPE_VERSION}\n"
    "y: -1.75 2.75\n"
    "loss: 1\n"
    "grad weight: 1 2 3 1 2 3\n"
    "grad bias: 1 1\n"
    "bias after step: -0.25 -0.75\n")
if(MIXTAPE_WITH_CUDA)
  list(APPEND expected "cudnn [0-9.]+ \\([0-9]+\\)\n" "cuda devices: [0-9]+\n")
endif()
string(JOIN "" expected ${expected})
if(NOT step_output MATCHES "^${expected}$")
  message(FATAL_ERROR "the outside project printed\n${step_output}\nexpected (regex)\n${expected}")
endif()
message(STATUS "install.find_package: installed, found, built and ran against ${prefix}:\n${step_output}")

# the GPT example (one include: <mixtape/mixtape.h>) learns its verse
file(READ "${build}/gpt_example_path.txt" gpt_exe)
run_step("running the GPT example built against the installed <mixtape/mixtape.h>" "${gpt_exe}" 1.0 bf16)
if(NOT step_output MATCHES "loss [0-9.]+ -> [0-9.]+ \\(bf16\\)\nsample: Twinkle")
  message(FATAL_ERROR "the GPT example printed\n${step_output}")
endif()
message(STATUS "install.find_package: the GPT example ran:\n${step_output}")
