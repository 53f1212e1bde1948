# CLI test of data-parallel training: `mpiexec -n 2 mixtape train` (batch B per rank) prints one result, from rank 0,
# that matches one process trained at batch 2B on the same data (the same samples per step: the ranks' shares
# interleave the global batch; only the order of float sums differs), resumes exactly on 2 ranks, and refuses to
# resume on another number of ranks. DEVICE=cuda trains on one GPU per rank (NCCL; in the emulation build the
# MPI-backed stand-in, with MIXTAPE_EMU_DEVICES=2 GPUs per process) and checks the GPU-per-rank rules too.
#   cmake -DMIXTAPE=path/to/mixtape -DMPIEXEC=mpiexec -DWORK=dir [-DDEVICE=cpu|cuda] -P check_dist_train.cmake
include(${CMAKE_CURRENT_LIST_DIR}/check_numbers.cmake)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
if(NOT DEVICE)
  set(DEVICE cpu)
endif()
set(base train --model mlp --limit 2048 --test-limit 500 --seed 5 --threads 1 --no-progress --json)
set(common ${base} --device ${DEVICE})

run(two ${MPIEXEC} -n 2 "${MIXTAPE}" ${common} --epochs 2 --batch 64 --log "${WORK}/two.csv")
string(REGEX MATCHALL "\"world_size\"" results "${two}")
list(LENGTH results n_results)
if(NOT n_results EQUAL 1)
  message(FATAL_ERROR "expected one JSON result (rank 0's), got ${n_results}:\n${two}")
endif()
string(JSON world GET "${two}" world_size)
string(JSON global GET "${two}" global_batch)
string(JSON loss2 GET "${two}" final_loss)
string(JSON acc2 GET "${two}" test_acc)
string(JSON device GET "${two}" device)
if(NOT world EQUAL 2 OR NOT global EQUAL 128 OR NOT device MATCHES "^${DEVICE}")
  message(FATAL_ERROR "world_size ${world}, global_batch ${global}, device ${device}: expected 2, 128 and ${DEVICE}")
endif()

run(one "${MIXTAPE}" ${common} --epochs 2 --batch 128 --log "${WORK}/one.csv")
string(JSON loss1 GET "${one}" final_loss)
string(JSON acc1 GET "${one}" test_acc)
micro_gap(${loss2} ${loss1} dl)
micro_gap(${acc2} ${acc1} da)
# 32 Adam steps apart only in the order of float32 sums: |loss difference| <= 0.001, accuracy within 2 of 500 images
if(dl GREATER 1000 OR da GREATER 4000)
  message(FATAL_ERROR "2 ranks x batch 64 (loss ${loss2}, accuracy ${acc2}) differ from 1 process x batch 128 "
                      "(loss ${loss1}, accuracy ${acc1})")
endif()
message(STATUS "2 ranks x 64: loss ${loss2}, accuracy ${acc2}; 1 process x 128: loss ${loss1}, accuracy ${acc1}")
# the whole loss curve (the CSV of rank 0: each step's loss averaged over the ranks) step by step, same bound
file(STRINGS "${WORK}/two.csv" rows2)
file(STRINGS "${WORK}/one.csv" rows1)
list(LENGTH rows2 n2)
list(LENGTH rows1 n1)
if(NOT n2 EQUAL n1 OR n1 LESS 33)
  message(FATAL_ERROR "loss logs of ${n2} and ${n1} lines: expected the same 32 steps (and a header)")
endif()
set(worst 0)
math(EXPR last "${n1} - 1")
foreach(i RANGE 1 ${last})
  list(GET rows2 ${i} r2)
  list(GET rows1 ${i} r1)
  string(REPLACE "," ";" r2 "${r2}")
  string(REPLACE "," ";" r1 "${r1}")
  list(GET r2 2 l2)
  list(GET r1 2 l1)
  micro_gap(${l2} ${l1} gap)
  if(gap GREATER worst)
    set(worst ${gap})
  endif()
endforeach()
if(worst GREATER 1000)
  message(FATAL_ERROR "the 2-rank loss curve departs from the 1-process one by ${worst} millionths at some step")
endif()
message(STATUS "loss curves of ${last} steps: largest step difference ${worst} millionths (bound 1000)")

# resume on 2 ranks: epoch 1 saved, then epoch 2, equals the straight 2-epoch run bit for bit
run(first ${MPIEXEC} -n 2 "${MIXTAPE}" ${common} --epochs 1 --batch 64 --save "${WORK}/a.ckpt")
run(resumed ${MPIEXEC} -n 2 "${MIXTAPE}" ${common} --epochs 2 --batch 64 --resume "${WORK}/a.ckpt")
string(JSON loss_resumed GET "${resumed}" final_loss)
if(NOT loss_resumed STREQUAL loss2)
  message(FATAL_ERROR "resumed on 2 ranks: final loss ${loss_resumed}, straight run ${loss2}")
endif()

# resume with another number of ranks: refused, naming both
execute_process(COMMAND "${MIXTAPE}" ${common} --epochs 2 --batch 64 --resume "${WORK}/a.ckpt"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "made on 2 rank\\(s\\) but this run has 1")
  message(FATAL_ERROR "a 1-process resume of a 2-rank checkpoint was not refused (exit ${rc}):\n${err}")
endif()
message(STATUS "resume on 2 ranks exact (${loss_resumed}); a 1-process resume refused")

# a rank that fails mid-run (rank 1's data directory lacks the files; rank 0 is fine) ends both ranks with an
# error naming it, instead of leaving rank 0 waiting in its next collective (the test's timeout catches a hang)
file(MAKE_DIRECTORY "${WORK}/empty")
execute_process(COMMAND ${MPIEXEC} -n 1 "${MIXTAPE}" ${common} --epochs 1 : -n 1 "${MIXTAPE}" ${common} --epochs 1
                        --data "${WORK}/empty"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 120)
if(rc EQUAL 0 OR NOT err MATCHES "error on rank 1 of 2: Fashion-MNIST")
  message(FATAL_ERROR "a failing rank 1 did not end the run with an error naming it (exit ${rc}):\n${err}")
endif()
message(STATUS "a failing rank 1 ended both ranks (exit ${rc})")

if(DEVICE STREQUAL "cuda")
  # one GPU per rank, the one of its local rank: a fixed GPU for every rank is refused, and so are more ranks on a
  # machine than it has GPUs (naming the rank)
  execute_process(COMMAND ${MPIEXEC} -n 2 "${MIXTAPE}" ${base} --epochs 1 --device cuda:1
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 120)
  if(rc EQUAL 0 OR NOT err MATCHES "each rank trains on the GPU of its local rank")
    message(FATAL_ERROR "--device cuda:1 on 2 ranks was not refused (exit ${rc}):\n${err}")
  endif()
  execute_process(COMMAND ${MPIEXEC} -n 3 "${MIXTAPE}" ${common} --epochs 1
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 120)
  if(rc EQUAL 0 OR NOT err MATCHES "error on rank 2 of 3: .*start at most 2 rank")
    message(FATAL_ERROR "3 ranks on a machine with 2 GPUs were not refused (exit ${rc}):\n${err}")
  endif()
  message(STATUS "a fixed GPU for every rank and a third rank without a GPU were refused")
endif()
