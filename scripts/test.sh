#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# The coordinator's lock rules (ABSL_GUARDED_BY ...) checked by clang's
# -Wthread-safety (an error): coordinator only, no LibTorch, so cold it costs
# a few minutes (proto, common, coordinator, distillctl).
CC=clang CXX=clang++ BUILD_DIR=build-tsa bash scripts/build.sh \
  -DDISTILL_BUILD_WORKER=OFF -DDISTILL_BUILD_TESTS=OFF
# The fuzz targets (tests/fuzz, docs/fuzzing.md), 10 seconds each over their
# committed corpus: clang with ASan and UBSan, no LibTorch.
bash scripts/fuzz.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900
