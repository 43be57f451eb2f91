#!/usr/bin/env bash
# Downloads (here, where apt works) the Debian packages that the GPU machine
# lacks for our build, into .deps/debs (git-ignored; name `.deps` in the
# device tool's `carry`). See scripts/gpu_check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/debs
cd .deps/debs
apt-get download libprotobuf-dev libprotobuf32 libprotobuf-lite32 libprotoc32 protobuf-compiler \
  libabsl-dev libabsl20220623 libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev
ls -1 | wc -l
