# CLI test of the CUDA emulation build: `mixtape train` on the (emulated) GPU reaches the CPU's result on the same
# slice of Fashion-MNIST with the same seed (fp32, TF32 off: the same run up to float rounding in another order).
#   cmake -DMIXTAPE=path/to/mixtape -DMODEL=mlp|cnn [-DLIMIT=2048] -P check_device_parity.cmake
if(NOT LIMIT)
  set(LIMIT 2048)
endif()
set(args train --model ${MODEL} --limit ${LIMIT} --test-limit 1000 --epochs 1 --seed 3 --no-progress --json)
foreach(device cpu cuda)
  execute_process(COMMAND "${MIXTAPE}" ${args} --device ${device} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "mixtape train --device ${device} exited with ${rc}:\n${out}")
  endif()
  string(STRIP "${out}" out)
  string(REGEX REPLACE "^.*\n" "" last "${out}")
  string(JSON dev GET "${last}" device)
  string(JSON acc_${device} GET "${last}" test_acc)
  string(JSON loss_${device} GET "${last}" final_loss)
  message(STATUS "${device}: trained on ${dev}, test accuracy ${acc_${device}}, final loss ${loss_${device}}")
endforeach()
if(NOT dev STREQUAL "cuda:0")
  message(FATAL_ERROR "--device cuda trained on '${dev}'")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/check_numbers.cmake)  # to_micro, micro_gap
to_micro(${loss_cpu} l_cpu)
micro_gap(${acc_cuda} ${acc_cpu} acc_gap)
micro_gap(${loss_cuda} ${loss_cpu} loss_gap)
math(EXPR loss_gap_x100 "${loss_gap} * 100")
# |accuracy difference| <= 0.01 (10 of 1000 test images) and |loss difference| <= 1% of the CPU's loss
if(acc_gap GREATER 10000 OR loss_gap_x100 GREATER l_cpu)
  message(FATAL_ERROR "the GPU run does not match the CPU run: accuracy ${acc_cuda} vs ${acc_cpu}, "
                      "final loss ${loss_cuda} vs ${loss_cpu}")
endif()
message(STATUS "parity: accuracy ${acc_cuda} vs ${acc_cpu}, final loss ${loss_cuda} vs ${loss_cpu}")
