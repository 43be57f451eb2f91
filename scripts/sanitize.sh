#!/usr/bin/env bash
# The test suite under sanitizers (docs/sanitizers.md records the last runs):
#   scripts/sanitize.sh thread [CTEST_ARGS...]
#                                 the coordinator (no LibTorch) with TSan into
#                                 ./build-tsan: common_tests and coordinator_tests
#                                 (the gRPC server, the group commit, the control
#                                 loop, the store's reader pool), against abseil
#                                 rebuilt with TSan (scripts/tsan_abseil.sh)
#   scripts/sanitize.sh comm [CTEST_ARGS...]
#                                 the communicator's tests (worker/comm: MPI,
#                                 the gradient reducer's autograd hooks) with
#                                 TSan on real MPI ranks, into ./build-tsan-comm
#   scripts/sanitize.sh address [CTEST_ARGS...]
#                                 everything with ASan + UBSan into ./build-asan
#                                 (gcc; LibTorch, gRPC and MPI themselves are not
#                                 instrumented), then ctest [CTEST_ARGS] there
# Leak checking is off (LibTorch, gRPC and Open MPI keep process-lifetime
# allocations); any other report fails the test that made it.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/sanitize.sh thread|comm|address [CTEST_ARGS...]}
shift
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/distill-ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:${TSAN_OPTIONS:-}"
case "$mode" in
  thread)
    # Note [TSan and abseil] (docs/sanitizers.md): an instrumented abseil under
    # Debian's sonames, and suppressions for the uninstrumented libraries.
    bash scripts/tsan_abseil.sh
    export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp:$TSAN_OPTIONS"
    tsan_flags=(-DDISTILL_SANITIZE=thread -DDISTILL_BUILD_WORKER=OFF -DDISTILL_BUILD_BENCH=OFF
                -DDISTILL_TSAN_ABSEIL_DIR="$PWD/build-tsan-absl/lib")
    [ -f build-tsan/build.ninja ] && cmake -S . -B build-tsan "${tsan_flags[@]}" >/dev/null
    BUILD_DIR=build-tsan bash scripts/build.sh "${tsan_flags[@]}"
    cd build-tsan && exec ctest --output-on-failure -j"$(nproc)" "$@"
    ;;
  comm)
    # The communicator's tests under TSan on real MPI ranks (worker/comm and
    # its tests only: tests/CMakeLists.txt comm_tsan_tests), into build-tsan-comm.
    bash scripts/setup.sh
    bash scripts/tsan_abseil.sh
    export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp:$TSAN_OPTIONS"
    if [ ! -f build-tsan-comm/build.ninja ]; then
      cmake -S . -B build-tsan-comm -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDISTILL_SANITIZE=thread \
        -DDISTILL_BUILD_BENCH=OFF -DDISTILL_TSAN_ABSEIL_DIR="$PWD/build-tsan-absl/lib"
    fi
    cmake --build build-tsan-comm -j"$(nproc)" --target comm_tsan_tests
    cd build-tsan-comm && exec ctest --output-on-failure -L tsan_comm "$@"
    ;;
  address)
    bash scripts/setup.sh
    BUILD_DIR=build-asan bash scripts/build.sh -DDISTILL_SANITIZE=address -DDISTILL_BUILD_BENCH=OFF
    cd build-asan && exec ctest --output-on-failure -j"$(nproc)" --timeout 1800 "$@"
    ;;
  *)
    echo "usage: scripts/sanitize.sh thread|comm|address [CTEST_ARGS...]" >&2
    exit 2
    ;;
esac
