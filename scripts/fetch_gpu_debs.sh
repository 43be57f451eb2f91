#!/usr/bin/env bash
# Downloads (here, where apt works) the Debian packages that the GPU machine
# lacks for our build, into .deps/debs (git-ignored; name `.deps` in the
# device tool's `carry`). scripts/gpu_check.sh unpacks them under /opt/deb.
# The list: what top-level CMakeLists.txt finds (gRPC, protobuf, abseil,
# prometheus-cpp with civetweb, curl and zlib, SQLite, yaml-cpp,
# nlohmann-json, PCRE2, ICU, GoogleTest/GoogleMock), a pkg-config, the
# runtime libraries the -dev packages link to, and the civetweb binary (its
# CMake targets check that it exists). Where the GPU machine has a library already
# (same soname), gpu_check.sh uses its copy instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/debs
cd .deps/debs
apt-get download \
  libgrpc++-dev libgrpc-dev libgrpc++1.51 libgrpc29 protobuf-compiler-grpc \
  libprotobuf-dev libprotobuf32 libprotobuf-lite32 libprotoc32 protobuf-compiler \
  libabsl-dev libabsl20220623 libre2-dev libre2-9 libc-ares-dev libc-ares2 \
  libssl-dev libssl3 zlib1g-dev zlib1g libzstd-dev libzstd1 \
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0 \
  libcivetweb-dev libcivetweb1 civetweb libcurl4-openssl-dev libcurl4 \
  libsqlite3-dev libsqlite3-0 libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev \
  libpcre2-dev libpcre2-8-0 libicu-dev libicu72 libgtest-dev libgmock-dev \
  pkgconf pkgconf-bin libpkgconf3
ls -1 | wc -l
du -sh .
