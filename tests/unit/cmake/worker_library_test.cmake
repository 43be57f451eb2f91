# Tests of the worker's layering rule (cmake/worker_library.cmake and
# cmake/check_layer_includes.cmake), in CMake script mode:
#   cmake -DSOURCE=<project root> -DWORK=<scratch dir> [-DGENERATOR=Ninja] -P worker_library_test.cmake
# 1. the check on fixture folders: an upward include fails naming the file, the
#    header and the missing dependency; a declared one passes; distill may not
#    include runtime (the remote teacher is built there and passed in);
# 2. a scratch project of three layers made with distill_worker_library():
#    a transitive dependency configures; an upward include added afterwards
#    fails the build (the layer check target) and the next configure.
cmake_minimum_required(VERSION 3.22)
foreach(v SOURCE WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "worker_library_test.cmake: -D${v}=... is required")
  endif()
endforeach()
set(CHECK ${SOURCE}/cmake/check_layer_includes.cmake)
set(failures 0)

# expect(NAME PASS|FAIL [MESSAGE substring] COMMAND ...)
function(expect name want)
  cmake_parse_arguments(ARG "" "MESSAGE" "COMMAND" ${ARGN})
  execute_process(COMMAND ${ARG_COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(all "${out}${err}")
  string(REGEX REPLACE "\n[ \t]*" " " flat "${all}")  # CMake wraps long messages
  set(ok TRUE)
  if(want STREQUAL "PASS" AND NOT rc EQUAL 0)
    set(ok FALSE)
  elseif(want STREQUAL "FAIL" AND rc EQUAL 0)
    set(ok FALSE)
  elseif(ARG_MESSAGE AND NOT flat MATCHES "${ARG_MESSAGE}")
    set(ok FALSE)
  endif()
  if(ok)
    message(STATUS "ok: ${name}")
  else()
    message(STATUS "FAILED: ${name} (want ${want} ${ARG_MESSAGE}; exit ${rc}):\n${all}")
    math(EXPR n "${failures} + 1")
    set(failures ${n} PARENT_SCOPE)
  endif()
endfunction()

# 1. The check on fixture folders.
set(F ${WORK}/fixture)
file(REMOVE_RECURSE ${WORK})
file(WRITE ${F}/worker/comm/x.cc "#include \"worker/comm/x.h\"\n#include \"worker/train/y.h\"\n")
file(WRITE ${F}/worker/comm/x.h "#include <vector>\n")
file(WRITE ${F}/worker/distill/distill_trainer.h "#include \"worker/train/trainer.h\"\n")
file(WRITE ${F}/worker/distill/kd_loss.cc "  #  include \"worker/runtime/runtime.h\"\n")
expect("upward include fails" FAIL
  MESSAGE "worker/comm/x.cc includes worker/train/y.h, but comm does not depend on train"
  COMMAND ${CMAKE_COMMAND} -DLAYER=comm -DDIR=${F}/worker/comm -DROOT=${F} "-DALLOWED=data" -P ${CHECK})
expect("declared include passes" PASS
  COMMAND ${CMAKE_COMMAND} -DLAYER=comm -DDIR=${F}/worker/comm -DROOT=${F} "-DALLOWED=data|train" -P ${CHECK})
expect("distill including runtime fails" FAIL
  MESSAGE "worker/distill/kd_loss.cc includes worker/runtime/runtime.h, but distill does not depend on runtime"
  COMMAND ${CMAKE_COMMAND} -DLAYER=distill -DDIR=${F}/worker/distill -DROOT=${F}
          "-DALLOWED=train|model|data|comm" -P ${CHECK})
file(REMOVE ${F}/worker/distill/kd_loss.cc)
expect("distill including train passes" PASS
  COMMAND ${CMAKE_COMMAND} -DLAYER=distill -DDIR=${F}/worker/distill -DROOT=${F}
          "-DALLOWED=train|model|data|comm" -P ${CHECK})

# 2. A scratch project: data <- comm <- train, declared with distill_worker_library().
set(P ${WORK}/project)
file(WRITE ${P}/CMakeLists.txt
  "cmake_minimum_required(VERSION 3.22)\nproject(layers_test LANGUAGES CXX)\n"
  "add_library(distill_common INTERFACE)\n"
  "include(${SOURCE}/cmake/worker_library.cmake)\n"
  "add_subdirectory(worker/data)\nadd_subdirectory(worker/comm)\nadd_subdirectory(worker/train)\n")
file(WRITE ${P}/worker/data/CMakeLists.txt "distill_worker_library(NAME data NO_TORCH)\n")
file(WRITE ${P}/worker/comm/CMakeLists.txt "distill_worker_library(NAME comm NO_TORCH DEPS data)\n")
file(WRITE ${P}/worker/train/CMakeLists.txt "distill_worker_library(NAME train NO_TORCH DEPS comm)\n")
file(WRITE ${P}/worker/data/d.h "inline int D() { return 1; }\n")
file(WRITE ${P}/worker/data/d.cc "#include \"worker/data/d.h\"\n")
file(WRITE ${P}/worker/comm/c.h "#include \"worker/data/d.h\"\n")
file(WRITE ${P}/worker/comm/c.cc "#include \"worker/comm/c.h\"\n")
file(WRITE ${P}/worker/train/t.h "int T();\n")
file(WRITE ${P}/worker/train/t.cc "#include \"worker/comm/c.h\"\n#include \"worker/data/d.h\"  // through comm\n")
set(gen)
if(GENERATOR)
  set(gen -G ${GENERATOR})
endif()
expect("layers with a transitive dependency configure" PASS
  COMMAND ${CMAKE_COMMAND} ${gen} -S ${P} -B ${WORK}/build)
expect("their layer checks build" PASS
  COMMAND ${CMAKE_COMMAND} --build ${WORK}/build --target distill_worker_train_layer_check distill_worker_comm_layer_check)
file(APPEND ${P}/worker/comm/c.cc "#include \"worker/train/t.h\"\n")
# The edit lands within the file system's timestamp tick of the last build's
# stamp now and then, and ninja would see nothing new: date it a minute ahead.
string(TIMESTAMP now "%s" UTC)
math(EXPR later "${now} + 60")
execute_process(COMMAND touch -d @${later} ${P}/worker/comm/c.cc COMMAND_ERROR_IS_FATAL ANY)
expect("an upward include added after configuring fails the build" FAIL
  MESSAGE "worker/comm/c.cc includes worker/train/t.h, but comm does not depend on train"
  COMMAND ${CMAKE_COMMAND} --build ${WORK}/build --target distill_worker_comm_layer_check)
expect("and fails the next configure" FAIL
  MESSAGE "worker/comm/c.cc includes worker/train/t.h, but comm does not depend on train"
  COMMAND ${CMAKE_COMMAND} ${gen} -S ${P} -B ${WORK}/build)
file(WRITE ${P}/worker/comm/CMakeLists.txt "distill_worker_library(NAME comm NO_TORCH DEPS nothere)\n")
expect("an undeclared dependency is a configure error" FAIL
  MESSAGE "dependency 'nothere' is not a worker layer declared before it"
  COMMAND ${CMAKE_COMMAND} ${gen} -S ${P} -B ${WORK}/build2)

if(failures GREATER 0)
  message(FATAL_ERROR "${failures} layering check(s) failed")
endif()
