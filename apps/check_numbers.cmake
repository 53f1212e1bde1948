# Helpers of the CLI check scripts. CMake's math() is integer only: to_micro(VALUE OUT) turns a decimal string
# "I.FFF..." into an integer count of millionths.
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
