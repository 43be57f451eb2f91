#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the demo need,
# then makes the project's Python environment .venv from requirements.txt
# (pinned by requirements.lock): pip torch (its LibTorch is what CMake builds
# against) and the Hugging Face references. Idempotent: does nothing when all
# are present. Root (or sudo) is needed only for missing Debian packages.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  clang                                       # -Wthread-safety build of the coordinator (scripts/test.sh)
  libclang-rt-14-dev                          # libFuzzer and the sanitizer runtimes (scripts/fuzz.sh)
  libopenmpi-dev openmpi-bin                  # MPI (distributed runtime)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev
  nlohmann-json3-dev libyaml-cpp-dev libpcre2-dev libicu-dev   # PCRE2 regexes, ICU normalization (tokenizer.json)
  libsqlite3-dev sqlite3
  libzstd-dev libssl-dev                      # teacher cache: zstd frames, SHA-256 content keys
  gnuplot-nox                                 # distillctl report: the PNG plots
  libboost-math-dev                           # distillctl report: Student t quantiles (header-only)
  libboost-dev                                # Boost.Beast: the worker's /metrics (Note [Worker HTTP])
  python3 python3-venv                        # .venv (pip torch, transformers, peft, tokenizers, TRL)
  curl ca-certificates                        # scripts/fetch_jinja.sh (the chat-template engine from PyPI)
  prometheus                                  # promtool and a real Prometheus (deploy/ checks, dashboard test)
  slurm-wlm munge                             # a real single-node Slurm (the coordinator's slurm launcher tests)
  openssh-server iproute2                     # hosts in network namespaces, mpirun over ssh (multi-host tests)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js runs the JS tokenizer reference (tests, bench) and npm installs its
# tarballs (from shared/data/npm, or the registry on a user's machine); use
# the machine's own if it has one.
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

# The Python environment. A stamp holding the hash of both requirement files
# makes a rerun a no-op; a changed pin reinstalls.
cd "$(dirname "$0")/.."
VENV=.venv
want="$(cat requirements.txt requirements.lock | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.distill-requirements" 2>/dev/null)" = "$want" ]; then
  echo "setup: $VENV up to date"
else
  echo "setup: installing requirements.txt into $VENV (torch with CUDA: about 4 GB)"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt -c requirements.lock
  echo "$want" >"$VENV/.distill-requirements"
fi

# llama.cpp's C++ Jinja engine (chat templates) from PyPI's pinned
# llama-cpp-python sdist into third_party/llama-jinja/ (a no-op when present).
bash scripts/fetch_jinja.sh
