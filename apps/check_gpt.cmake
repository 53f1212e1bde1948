# CLI test of the character-level GPT: `mixtape train --model gpt` on a small text reports validation bits per
# character in its JSON, resumes exactly, `mixtape sample` continues a prompt the same way for the same seed, and
# bad input (a character outside the vocabulary, a checkpoint of another model, too little text) is refused with a
# message that names it.
#   cmake -DMIXTAPE=path/to/mixtape -DWORK=dir -P check_gpt.cmake
include(${CMAKE_CURRENT_LIST_DIR}/check_numbers.cmake)  # run
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
# a text with structure to learn: sentences built from a few words, in a fixed pseudo-random order
set(words the quick brown fox jumps over lazy dog and cat sleeps under warm sun)
set(text "")
set(state 7)
foreach(i RANGE 1 900)
  math(EXPR state "(${state} * 1103515245 + 12345) % 2147483648")
  math(EXPR w "(${state} / 65536) % 14")
  list(GET words ${w} word)
  math(EXPR end "${i} % 9")
  if(end EQUAL 0)
    string(APPEND text "${word}.\n")
  else()
    string(APPEND text "${word} ")
  endif()
endforeach()
file(WRITE "${WORK}/text.txt" "${text}")
set(model_flags --context 16 --width 32 --depth 1 --heads 2)
set(base train --model gpt --data "${WORK}/text.txt" --steps 15 --batch 8 --seed 3 --threads 1 --no-progress --json)
set(common ${base} ${model_flags})

function(fails pattern)  # fails(PATTERN cmd...): the command must fail with PATTERN in its stderr
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(rc EQUAL 0 OR NOT err MATCHES "${pattern}")
    message(FATAL_ERROR "${ARGN}: expected a failure matching '${pattern}', got exit ${rc}:\n${err}")
  endif()
endfunction()

run(straight "${MIXTAPE}" ${common} --epochs 2 --save "${WORK}/a.ckpt")
string(JSON bpc GET "${straight}" val_bpc)
string(JSON context GET "${straight}" context)
string(JSON loss GET "${straight}" final_loss)
string(JSON steps GET "${straight}" steps)
if(NOT context EQUAL 16 OR NOT steps EQUAL 30 OR NOT bpc MATCHES "^[0-9]" OR bpc GREATER 5)
  message(FATAL_ERROR "unexpected result: ${straight}")
endif()
message(STATUS "gpt: 30 steps, validation ${bpc} bits/char, final loss ${loss}")

# resume: 1 epoch saved, then the second, equals the straight run bit for bit
run(first "${MIXTAPE}" ${common} --epochs 1 --save "${WORK}/b.ckpt")
run(resumed "${MIXTAPE}" ${common} --epochs 2 --resume "${WORK}/b.ckpt")
string(JSON loss_resumed GET "${resumed}" final_loss)
string(JSON bpc_resumed GET "${resumed}" val_bpc)
if(NOT loss_resumed STREQUAL loss OR NOT bpc_resumed STREQUAL bpc)
  message(FATAL_ERROR "resumed: loss ${loss_resumed}, ${bpc_resumed} bits/char; straight: ${loss}, ${bpc}")
endif()
fails("the checkpoint was made with width=32" "${MIXTAPE}" ${base} --context 16 --width 64 --depth 1 --heads 2 --epochs 3
      --resume "${WORK}/b.ckpt")

# sampling: the prompt, then --tokens characters; the same seed gives the same text
run(s1 "${MIXTAPE}" sample --checkpoint "${WORK}/a.ckpt" --prompt "the " --tokens 40 --seed 9)
run(s2 "${MIXTAPE}" sample --checkpoint "${WORK}/a.ckpt" --prompt "the " --tokens 40 --seed 9)
if(NOT s1 STREQUAL s2 OR NOT s1 MATCHES "^the ")
  message(FATAL_ERROR "sampling is not repeatable or lost its prompt:\n${s1}\n${s2}")
endif()
run(greedy "${MIXTAPE}" sample --checkpoint "${WORK}/a.ckpt" --prompt "the " --tokens 20 --temperature 0)
message(STATUS "sample: ${s1}")
fails("--prompt: the character 'Z' \\(U\\+005A\\) is not in the vocabulary"
      "${MIXTAPE}" sample --checkpoint "${WORK}/a.ckpt" --prompt "Zebra")

# bad input
file(WRITE "${WORK}/short.txt" "tiny")
fails("short.txt: 4 characters is too little text" "${MIXTAPE}" train --model gpt --data "${WORK}/short.txt" ${model_flags})
run(mlp "${MIXTAPE}" train --model mlp --limit 128 --test-limit 100 --no-progress --json --save "${WORK}/mlp.ckpt")
fails("not a gpt checkpoint" "${MIXTAPE}" sample --checkpoint "${WORK}/mlp.ckpt")
fails("--width 30 must be a multiple of --heads 4" "${MIXTAPE}" ${base} --width 30 --heads 4)

# compare: one table with the validation bits per character of each precision
run(table "${MIXTAPE}" compare --model gpt --data "${WORK}/text.txt" ${model_flags} --steps 10 --epochs 1 --batch 8
    --threads 1 --no-progress --precisions fp32,bf16 --out "${WORK}/compare")
if(NOT table MATCHES "val bpc +char acc[^\n]*\nfp32 [^\n]*\nbf16 ")
  message(FATAL_ERROR "compare --model gpt printed no table with bits per character:\n${table}")
endif()
message(STATUS "compare:\n${table}")
