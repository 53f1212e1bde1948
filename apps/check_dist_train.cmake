# CLI test of data-parallel training: `mpiexec -n 2 mixtape train` (batch B per rank) prints one result, from rank 0,
# that matches one process trained at batch 2B on the same data (the same samples per step: the ranks' shares
# interleave the global batch; only the order of float sums differs), resumes exactly on 2 ranks, and refuses to
# resume on another number of ranks.
#   cmake -DMIXTAPE=path/to/mixtape -DMPIEXEC=mpiexec -DWORK=dir -P check_dist_train.cmake
include(${CMAKE_CURRENT_LIST_DIR}/check_numbers.cmake)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(common train --model mlp --limit 2048 --test-limit 500 --seed 5 --threads 1 --no-progress --json)

function(run out_var)  # run(OUT cmd...): stdout of a command that must succeed
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN} exited with ${rc}:\n${out}\n${err}")
  endif()
  string(STRIP "${out}" out)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

run(two ${MPIEXEC} -n 2 "${MIXTAPE}" ${common} --epochs 2 --batch 64)
string(REGEX MATCHALL "\"world_size\"" results "${two}")
list(LENGTH results n_results)
if(NOT n_results EQUAL 1)
  message(FATAL_ERROR "expected one JSON result (rank 0's), got ${n_results}:\n${two}")
endif()
string(JSON world GET "${two}" world_size)
string(JSON global GET "${two}" global_batch)
string(JSON loss2 GET "${two}" final_loss)
string(JSON acc2 GET "${two}" test_acc)
if(NOT world EQUAL 2 OR NOT global EQUAL 128)
  message(FATAL_ERROR "world_size ${world}, global_batch ${global}: expected 2 and 128")
endif()

run(one "${MIXTAPE}" ${common} --epochs 2 --batch 128)
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
