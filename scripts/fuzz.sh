#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan, no
# LibTorch) into ./build-fuzz and runs them; docs/fuzzing.md says what each
# covers and records the last long run.
#   scripts/fuzz.sh                 each target for DISTILL_FUZZ_RUNS (100000, seed 1) over
#                                   its committed corpus: the CI run (ctest -L fuzz)
#   scripts/fuzz.sh NAME [ARGS...]  NAME_fuzz alone, e.g. `spec -runs=1000000`: new
#                                   inputs go to build-fuzz/tests/fuzz/scratch/NAME,
#                                   crashes to build-fuzz/NAME-crash-*
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/distill-ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
if [ ! -f third_party/llama-jinja/.stamp ]; then bash scripts/fetch_jinja.sh; fi
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDISTILL_FUZZ=ON -DDISTILL_BUILD_WORKER=OFF -DDISTILL_BUILD_TESTS=OFF \
    -DDISTILL_BUILD_BENCH=OFF -DDISTILL_FUZZ_RUNS="${DISTILL_FUZZ_RUNS:-100000}"
fi
cmake --build build-fuzz -j"$(nproc)"
if [ $# -eq 0 ]; then
  cd build-fuzz && exec ctest -L fuzz --output-on-failure
fi
name=$1
shift
mkdir -p "build-fuzz/tests/fuzz/scratch/$name"
exec "build-fuzz/tests/fuzz/${name}_fuzz" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="build-fuzz/$name-" "$@" "build-fuzz/tests/fuzz/scratch/$name" \
  "tests/fuzz/corpus/$name"
