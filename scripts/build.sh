#!/usr/bin/env bash
# Configures and builds the project into ./build (incremental; ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/distill-ccache}"
# Paths relative to the checkout, so another clone (CI's) reuses the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
BUILD_DIR="${BUILD_DIR:-build}"
# llama.cpp's Jinja engine (chat templates) is fetched from PyPI, not kept in
# the repository; on the GPU machine (no PyPI) it comes with `carry`.
if [ ! -f third_party/llama-jinja/.stamp ]; then bash scripts/fetch_jinja.sh; fi
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
fi
cmake --build "$BUILD_DIR" -j"$(nproc)"
