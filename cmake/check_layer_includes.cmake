# distill_check_layer_includes(): the check that makes the worker's layering
# a build rule (docs/architecture.md, "Layers"). Every header is reachable from
# the project root, so the compiler alone would accept an upward include; this
# check scans a folder's sources for `#include "worker/<other>/..."` and fails
# when <other> is not the folder itself nor one of its declared (transitive)
# dependencies, naming the file, the header and the missing dependency.
#
# Used at configure time by distill_worker_library() (cmake/worker_library.cmake),
# and at build time in script mode, so an include added after configuring
# fails the next build:
#   cmake -DLAYER=comm -DDIR=/src/worker/comm -DROOT=/src "-DALLOWED=data|model"
#         -P cmake/check_layer_includes.cmake
# (ALLOWED: the layers it may include, separated by '|'.)

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  cmake_minimum_required(VERSION 3.22)  # policies (IN_LIST) in script mode
endif()

# distill_check_layer_includes(LAYER name DIR dir ROOT root ALLOWED layers...)
# Fails (FATAL_ERROR) listing every upward include among DIR's *.h and *.cc.
function(distill_check_layer_includes)
  cmake_parse_arguments(ARG "" "LAYER;DIR;ROOT" "ALLOWED" ${ARGN})
  file(GLOB files ${ARG_DIR}/*.h ${ARG_DIR}/*.cc)
  list(SORT files)
  set(problems)
  foreach(f ${files})
    file(RELATIVE_PATH rel ${ARG_ROOT} ${f})
    file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"worker/")
    foreach(line ${lines})
      if(NOT line MATCHES "\"(worker/([A-Za-z0-9_]+)/[^\"]+)\"")
        continue()
      endif()
      set(header ${CMAKE_MATCH_1})
      set(other ${CMAKE_MATCH_2})
      if(other STREQUAL ARG_LAYER OR other IN_LIST ARG_ALLOWED)
        continue()
      endif()
      list(APPEND problems "  ${rel} includes ${header}, but ${ARG_LAYER} does not depend on ${other}")
    endforeach()
  endforeach()
  if(problems)
    string(REPLACE ";" "\n" problems "${problems}")
    if(ARG_ALLOWED)
      string(REPLACE ";" ", " deps "${ARG_ALLOWED}")
    else()
      set(deps "none")
    endif()
    message(FATAL_ERROR "distill: upward include in worker layer '${ARG_LAYER}' "
                        "(its dependencies: ${deps}):\n${problems}\n"
                        "Declare the dependency in distill_worker_library(), or move the code down.")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  foreach(v LAYER DIR ROOT)
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "check_layer_includes.cmake: -D${v}=... is required")
    endif()
  endforeach()
  string(REPLACE "|" ";" _allowed "${ALLOWED}")
  distill_check_layer_includes(LAYER ${LAYER} DIR ${DIR} ROOT ${ROOT} ALLOWED ${_allowed})
endif()
