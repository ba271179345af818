# CTest script: mwrite_file killed in the middle of an import (a test hook
# of its own, SIGKILL), then run again on the same spool, stores every
# document of the sample exactly once; counted in Kuzzle with curl.
#   cmake -DMWRITE_FILE=... -DCURL=... -DHOST=... -DPORT=... -DINDEX=...
#         -DDATA=... -DSPOOL=... -DCRASH="--crash-after;2500" -P resume_test.cmake
set(_url "http://${HOST}:${PORT}")
execute_process(COMMAND ${CURL} -s -X DELETE "${_url}/${INDEX}" OUTPUT_QUIET)
file(REMOVE_RECURSE "${SPOOL}")
file(MAKE_DIRECTORY "${SPOOL}")
set(_run ${MWRITE_FILE} --host ${HOST} --port ${PORT} --wait-for-refresh
         --spool ${SPOOL} ${INDEX} sensors ${DATA})

execute_process(COMMAND ${_run} ${CRASH} RESULT_VARIABLE rc1 OUTPUT_VARIABLE out1
                ERROR_VARIABLE err1)
if(rc1 MATCHES "^[0-9]+$" OR NOT EXISTS "${SPOOL}/mwrite_file.progress")
  message(FATAL_ERROR "the first run was not killed (${rc1}): ${out1} ${err1}")
endif()

execute_process(COMMAND ${_run} RESULT_VARIABLE rc2 OUTPUT_VARIABLE out2
                ERROR_VARIABLE err2)
message(STATUS "second run (${rc2}): ${out2} ${err2}")
if(NOT rc2 MATCHES "^[01]$" OR NOT err2 MATCHES "resuming at byte")
  message(FATAL_ERROR "the second run did not resume and finish")
endif()
if(EXISTS "${SPOOL}/mwrite_file.progress")
  message(FATAL_ERROR "the progress record outlived a finished import")
endif()

execute_process(COMMAND ${CURL} -s -X POST -H "Content-Type: application/json"
                        -d "{}" "${_url}/${INDEX}/sensors/_count"
                OUTPUT_VARIABLE answer RESULT_VARIABLE rc3)
string(JSON count ERROR_VARIABLE bad GET "${answer}" result count)
if(NOT rc3 EQUAL 0 OR bad)
  message(FATAL_ERROR "count failed: ${answer}")
endif()
# 5,000 valid documents, 3,333 of them without _id: a document accepted
# twice would make more, one lost fewer.
if(NOT count EQUAL 5000)
  message(FATAL_ERROR "${count} documents stored, expected 5000")
endif()
message(STATUS "stored exactly 5000 across the interruption")
file(REMOVE_RECURSE "${SPOOL}")
