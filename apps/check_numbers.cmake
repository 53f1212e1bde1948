# Helpers of the CLI check scripts. CMake's math() is integer only: to_micro(VALUE OUT) turns a decimal string
# "I.FFF..." into an integer count of millionths. run(OUT cmd...) runs a command that must succeed.
function(to_micro value out)
  if(NOT value MATCHES "^([0-9]+)(\\.([0-9]*))?$")
    message(FATAL_ERROR "unexpected number '${value}'")
  endif()
  set(int "${CMAKE_MATCH_1}")
  set(frac "${CMAKE_MATCH_3}000000")
  string(SUBSTRING "${frac}" 0 6 frac)
  string(REGEX REPLACE "^0+([0-9])" "\\1" frac "${frac}")
  math(EXPR v "${int} * 1000000 + ${frac}")
  set(${out} ${v} PARENT_SCOPE)
endfunction()

# micro_gap(A B OUT): |A - B| in millionths, for two decimal strings.
function(micro_gap a b out)
  to_micro(${a} ma)
  to_micro(${b} mb)
  math(EXPR gap "${ma} - ${mb}")
  if(gap LESS 0)
    math(EXPR gap "-${gap}")
  endif()
  set(${out} ${gap} PARENT_SCOPE)
endfunction()

# run(OUT cmd...): the stripped stdout of a command that must succeed (its output and errors shown when it fails).
function(run out_var)  # run(OUT cmd...): stdout of a command that must succeed
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN} exited with ${rc}:\n${out}\n${err}")
  endif()
  string(STRIP "${out}" out)
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()
