# distill_worker_library(): one CMake library per worker folder, with the
# layers it depends on declared once (the target layering is in
# docs/architecture.md, "Layers"):
#
#   distill_worker_library(NAME train DEPS model data comm [LIBS ...] [NO_TORCH]
#                          [EXCLUDE regex])
#
# makes distill_worker_train, a static library of the folder's *.cc (globbed
# with CONFIGURE_DEPENDS, so files added or moved are picked up), linking
# distill_common, the distill_worker_<dep> libraries and LIBS. The layers
# reachable through DEPS (transitively) are the ones the folder may include:
# cmake/check_layer_includes.cmake checks it at configure time and again
# before each build of the library, so an upward include fails to build.
# Layers must be declared after the layers they depend on.
#
# NO_TORCH: the folder does not use LibTorch (data/): no Torch on its link
# line or include path, no precompiled header. The others link
# distill_worker_torch and share one precompiled header of LibTorch
# (REUSE_FROM distill_worker_pch: compiled once, not once per library).
include(${CMAKE_CURRENT_LIST_DIR}/check_layer_includes.cmake)

function(distill_worker_library)
  cmake_parse_arguments(ARG "NO_TORCH" "NAME;EXCLUDE" "DEPS;LIBS" ${ARGN})
  set(layer ${ARG_NAME})
  set(target distill_worker_${layer})
  set(dir ${CMAKE_CURRENT_SOURCE_DIR})

  # The layers this one may include: DEPS and theirs.
  set(allowed)
  foreach(dep ${ARG_DEPS})
    get_property(declared GLOBAL PROPERTY DISTILL_WORKER_LAYER_${dep} SET)
    if(NOT declared)
      message(FATAL_ERROR "distill_worker_library(${layer}): dependency '${dep}' is not a "
                          "worker layer declared before it")
    endif()
    get_property(dep_allowed GLOBAL PROPERTY DISTILL_WORKER_LAYER_${dep})
    list(APPEND allowed ${dep} ${dep_allowed})
  endforeach()
  list(REMOVE_DUPLICATES allowed)
  set_property(GLOBAL PROPERTY DISTILL_WORKER_LAYER_${layer} "${allowed}")
  distill_check_layer_includes(LAYER ${layer} DIR ${dir} ROOT ${PROJECT_SOURCE_DIR} ALLOWED ${allowed})

  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*.cc)
  if(ARG_EXCLUDE)
    list(FILTER srcs EXCLUDE REGEX "${ARG_EXCLUDE}")
  endif()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PUBLIC distill_common ${ARG_LIBS})
  foreach(dep ${ARG_DEPS})
    target_link_libraries(${target} PUBLIC distill_worker_${dep})
  endforeach()
  target_compile_options(${target} PRIVATE ${DISTILL_WARNINGS})
  if(NOT ARG_NO_TORCH)
    target_link_libraries(${target} PUBLIC distill_worker_torch)
    target_compile_options(${target} PRIVATE ${TORCH_CXX_FLAGS})
    target_precompile_headers(${target} REUSE_FROM distill_worker_pch)
  endif()

  # The same check before every build of the library: an include added
  # since configuring fails here too.
  file(GLOB checked CONFIGURE_DEPENDS ${dir}/*.h ${dir}/*.cc)
  string(REPLACE ";" "|" allowed_arg "${allowed}")
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${target}.layer_check)
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DLAYER=${layer} -DDIR=${dir} -DROOT=${PROJECT_SOURCE_DIR}
            "-DALLOWED=${allowed_arg}" -P ${DISTILL_LAYER_CHECK_SCRIPT}
    COMMAND ${CMAKE_COMMAND} -E touch ${stamp}
    DEPENDS ${checked} ${DISTILL_LAYER_CHECK_SCRIPT}
    COMMENT "layer check: worker/${layer}"
    VERBATIM)
  add_custom_target(${target}_layer_check DEPENDS ${stamp})
  add_dependencies(${target} ${target}_layer_check)
endfunction()

set(DISTILL_LAYER_CHECK_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/check_layer_includes.cmake)
