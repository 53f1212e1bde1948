# cli.report: `mixtape compare --report` and `mixtape report DIR` end to end.
#   cmake -DMIXTAPE=path/to/mixtape -DPYTHON=python3 -DCHECKER=tests/report/check_report.py -DWORK=dir -P check_report.cmake
# * an MLP comparison (fp32, fp16, bf16) writes the page and the PNG; the page passes tests/report/check_report.py
#   (valid HTML5, self-contained, one plot per section with its series, numbers equal to compare.json, verdicts
#   recomputed); `mixtape report DIR` rebuilds the same bytes (page and PNG);
# * a GPT comparison (fp32, bf16): the same checks for a text model (bits/char);
# * errors, each naming the problem, and an existing page left as it was: no gnuplot (compare fails before it
#   trains), a directory with no compare.json, a truncated compare.json, a CSV with a bad row, a missing CSV.
include(${CMAKE_CURRENT_LIST_DIR}/check_numbers.cmake)  # run()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

execute_process(COMMAND ${PYTHON} -c "import html5lib" RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PYTHON} cannot import html5lib, which checks the page: run scripts/setup (Debian: python3-html5lib)")
endif()

# fails(NEEDLE cmd...): the command must fail and its stderr contain NEEDLE.
function(fails needle)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${ARGN} succeeded; it should have failed with '${needle}'")
  endif()
  string(FIND "${err}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${ARGN} failed without naming '${needle}':\n${err}")
  endif()
  message(STATUS "refused as expected: ${err}")
  set(last_error "${err}" PARENT_SCOPE)
endfunction()

# --- an MLP comparison ---
set(mlp ${WORK}/mlp)
run(table ${MIXTAPE} compare --limit 512 --test-limit 200 --epochs 2 --batch 64 --no-progress --out ${mlp}
    --report ${WORK}/mlp.html --plot ${WORK}/mlp.png)
message(STATUS "${table}")
run(checked ${PYTHON} ${CHECKER} ${WORK}/mlp.html ${mlp})
message(STATUS "${checked}")
run(ignored ${MIXTAPE} report ${mlp} --plot ${WORK}/again.png)  # default output: DIR/report.html
foreach(pair "mlp.html;mlp/report.html" "mlp.png;again.png")
  list(GET pair 0 a)
  list(GET pair 1 b)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${WORK}/${a} ${WORK}/${b} RESULT_VARIABLE differ)
  if(NOT differ EQUAL 0)
    message(FATAL_ERROR "mixtape report ${mlp} did not reproduce ${a} (wrote ${b})")
  endif()
endforeach()
file(READ ${WORK}/mlp.png magic LIMIT 8 HEX)
if(NOT magic STREQUAL "89504e470d0a1a0a")
  message(FATAL_ERROR "--plot did not write a PNG (starts with ${magic})")
endif()

# --- a GPT comparison: bits per character instead of test accuracy ---
set(gpt ${WORK}/gpt)
run(table ${MIXTAPE} compare --model gpt --precisions fp32,bf16 --steps 6 --epochs 2 --batch 4 --context 16 --width 32
    --depth 1 --heads 2 --test-limit 600 --no-progress --out ${gpt} --report ${WORK}/gpt.html)
run(checked ${PYTHON} ${CHECKER} ${WORK}/gpt.html ${gpt})
message(STATUS "${checked}")

# --- errors: each names its problem and leaves the existing page alone ---
file(SHA256 ${WORK}/mlp.html before)
# no gnuplot on PATH: report refuses; compare refuses before it trains
fails("gnuplot-nox" ${CMAKE_COMMAND} -E env PATH=${WORK}/nowhere ${MIXTAPE} report ${mlp} --output ${WORK}/mlp.html)
fails("gnuplot-nox" ${CMAKE_COMMAND} -E env PATH=${WORK}/nowhere ${MIXTAPE} compare --limit 512 --no-progress
      --out ${WORK}/none --report ${WORK}/none.html)
if(last_error MATCHES "== mlp in" OR EXISTS ${WORK}/none)
  message(FATAL_ERROR "compare started (trained or created --out) before finding gnuplot missing")
endif()
fails("holds no compare.json" ${MIXTAPE} report ${WORK} --output ${WORK}/mlp.html)
fails("is not a directory" ${MIXTAPE} report ${WORK}/no-such-dir)
# a truncated record
file(COPY ${mlp}/ DESTINATION ${WORK}/broken)
file(READ ${mlp}/compare.json record)
string(SUBSTRING "${record}" 0 200 truncated)
file(WRITE ${WORK}/broken/compare.json "${truncated}")
fails("is not valid JSON" ${MIXTAPE} report ${WORK}/broken --output ${WORK}/mlp.html)
# a CSV with a row that is not numbers
file(WRITE ${WORK}/broken/compare.json "${record}")
file(READ ${mlp}/mlp_fp16.csv csv)
string(REGEX REPLACE "\n3,1,[^,\n]*," "\n3,1,oops," csv "${csv}")
file(WRITE ${WORK}/broken/mlp_fp16.csv "${csv}")
fails("mlp_fp16.csv' line 4: loss 'oops' is not a number" ${MIXTAPE} report ${WORK}/broken --output ${WORK}/mlp.html)
# a missing CSV
file(REMOVE ${WORK}/broken/mlp_fp16.csv)
fails("mlp_fp16.csv': no such file" ${MIXTAPE} report ${WORK}/broken --output ${WORK}/mlp.html)
file(SHA256 ${WORK}/mlp.html after)
if(NOT before STREQUAL after)
  message(FATAL_ERROR "a failed report changed the existing page")
endif()
message(STATUS "cli.report: pages checked, rebuilt byte for byte, errors named")
