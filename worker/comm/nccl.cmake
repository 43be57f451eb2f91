# NCCL detection for the NCCL backend of Communicator (included by
# worker/CMakeLists.txt once distill_worker_torch exists). Sets
# DISTILL_WITH_NCCL when nccl.h, libnccl and the CUDA runtime are all found,
# and then gives distill_worker_torch (what every LibTorch layer links) their
# include dirs and libraries and the definition DISTILL_WITH_NCCL=1 (on all of
# them: they share one precompiled header, Note [One torch PCH], and the test
# binaries share their flags: mpi_tests reuses worker_tests' precompiled
# header).
#
# DISTILL_NCCL: AUTO (default: use NCCL when found), ON (fail when not
# found), OFF (never; comm/nccl_unavailable.cc). NCCL_HOME is searched first.
#
# Which NCCL: with CUDA LibTorch (pip torch), the NCCL wheel next to it comes
# first. libtorch_cuda needs libnccl.so.2 too, and a process loads one
# library per soname; taking the one torch was built with keeps nccl.h, the
# loaded library and torch on one version. Then the CUDA toolkit
# (/usr/local/cuda: CUDA 13 here) and the system (/usr/include,
# /usr/lib/x86_64-linux-gnu: NCCL 2.28.3 on the GPU machine).
set(DISTILL_NCCL AUTO CACHE STRING "NCCL backend: AUTO (when found), ON (required), OFF")
set_property(CACHE DISTILL_NCCL PROPERTY STRINGS AUTO ON OFF)

set(DISTILL_WITH_NCCL OFF)
if(DISTILL_NCCL STREQUAL "OFF")
  message(STATUS "distill: NCCL backend OFF (DISTILL_NCCL=OFF)")
  return()
endif()

set(_distill_nccl_hints)
if(DEFINED ENV{NCCL_HOME})
  list(APPEND _distill_nccl_hints $ENV{NCCL_HOME})
endif()
if(DISTILL_WITH_CUDA AND TORCH_INSTALL_PREFIX)
  # pip: site-packages/torch and site-packages/nvidia/nccl.
  get_filename_component(_distill_torch_nccl ${TORCH_INSTALL_PREFIX}/../nvidia/nccl ABSOLUTE)
  list(APPEND _distill_nccl_hints ${_distill_torch_nccl})
endif()
set(_distill_nccl_inc_hints)
set(_distill_nccl_lib_hints)
foreach(h ${_distill_nccl_hints})
  list(APPEND _distill_nccl_inc_hints ${h}/include)
  list(APPEND _distill_nccl_lib_hints ${h}/lib ${h}/lib64)
endforeach()

find_path(NCCL_INCLUDE_DIR nccl.h
  HINTS ${_distill_nccl_inc_hints}
  PATHS /usr/local/cuda/include /usr/include
  DOC "Directory of nccl.h")
# The pip wheel ships only libnccl.so.2 (no libnccl.so link). NAMES_PER_DIR:
# each directory is searched for both names before the next, so the wheel's
# libnccl.so.2 wins over a system libnccl.so (which would pair the wheel's
# nccl.h with another library version).
find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR
  HINTS ${_distill_nccl_lib_hints}
  PATHS /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu
  DOC "libnccl")

# The CUDA runtime: CUDA::cudart from the CUDAToolkit package (pip torch's
# config has usually found it already), else cudart by hand.
set(_distill_cudart_target "")
set(_distill_cudart_lib "")
set(_distill_cudart_inc "")
if(NOT TARGET CUDA::cudart)
  find_package(CUDAToolkit QUIET)
endif()
if(TARGET CUDA::cudart)
  set(_distill_cudart_target CUDA::cudart)
  get_target_property(_distill_cudart_loc CUDA::cudart IMPORTED_LOCATION)
  set(_distill_cudart_desc "CUDA::cudart ${_distill_cudart_loc} (CUDA ${CUDAToolkit_VERSION})")
else()
  find_path(DISTILL_CUDART_INCLUDE_DIR cuda_runtime.h
    HINTS $ENV{CUDA_HOME}/include PATHS /usr/local/cuda/include /usr/include)
  find_library(DISTILL_CUDART_LIBRARY cudart
    HINTS $ENV{CUDA_HOME}/lib64 PATHS /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu)
  if(DISTILL_CUDART_INCLUDE_DIR AND DISTILL_CUDART_LIBRARY)
    set(_distill_cudart_lib ${DISTILL_CUDART_LIBRARY})
    set(_distill_cudart_inc ${DISTILL_CUDART_INCLUDE_DIR})
    set(_distill_cudart_desc "${DISTILL_CUDART_LIBRARY}")
  endif()
endif()

if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND (_distill_cudart_target OR _distill_cudart_lib))
  set(DISTILL_WITH_NCCL ON)
  file(STRINGS ${NCCL_INCLUDE_DIR}/nccl.h _distill_nccl_defs REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  set(_distill_nccl_version "")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "NCCL_${part} +([0-9]+)" _m "${_distill_nccl_defs}")
    list(APPEND _distill_nccl_version ${CMAKE_MATCH_1})
  endforeach()
  string(REPLACE ";" "." _distill_nccl_version "${_distill_nccl_version}")
  message(STATUS "distill: NCCL backend ON: NCCL ${_distill_nccl_version} (${NCCL_INCLUDE_DIR}/nccl.h, "
                 "${NCCL_LIBRARY}), CUDA runtime ${_distill_cudart_desc}")

  target_include_directories(distill_worker_torch SYSTEM INTERFACE ${NCCL_INCLUDE_DIR} ${_distill_cudart_inc})
  target_link_libraries(distill_worker_torch INTERFACE ${NCCL_LIBRARY} ${_distill_cudart_target} ${_distill_cudart_lib})
  target_compile_definitions(distill_worker_torch INTERFACE DISTILL_WITH_NCCL=1)
else()
  set(_distill_nccl_missing "")
  if(NOT NCCL_INCLUDE_DIR)
    list(APPEND _distill_nccl_missing "nccl.h")
  endif()
  if(NOT NCCL_LIBRARY)
    list(APPEND _distill_nccl_missing "libnccl")
  endif()
  if(NOT _distill_cudart_target AND NOT _distill_cudart_lib)
    list(APPEND _distill_nccl_missing "the CUDA runtime (cuda_runtime.h, libcudart)")
  endif()
  string(REPLACE ";" ", " _distill_nccl_missing "${_distill_nccl_missing}")
  if(DISTILL_NCCL STREQUAL "ON")
    message(FATAL_ERROR "distill: DISTILL_NCCL=ON but not found: ${_distill_nccl_missing} "
                        "(set NCCL_HOME, or CUDAToolkit_ROOT for the CUDA runtime)")
  endif()
  message(STATUS "distill: NCCL backend OFF: not found: ${_distill_nccl_missing}")
endif()
