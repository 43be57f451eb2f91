#!/usr/bin/env bash
# fetch_jinja.sh: puts llama.cpp's C++ Jinja engine (MIT; the chat-template
# renderer of worker/data/chat_template.cc) into third_party/llama-jinja/
# (ignored by git; built by cmake/jinja.cmake as distill_jinja). Debian has no
# C++ Jinja; PyPI's llama-cpp-python sdist (pinned below, sha256 checked by
# pip --require-hashes) carries llama.cpp's sources. Only what the build and
# tests need is extracted: common/jinja/*.{h,cpp}, common/{json,unicode}.{h,cpp}
# (json.cpp wraps Debian's nlohmann json), llama.cpp's LICENSE, a ggml.h that
# defines the one macro json.cpp uses, and the chat templates the tests render
# (templates/). Idempotent: a folder whose stamp names this version is kept.
#
# The GPU machine has no PyPI: the folder travels there with the working tree
# (run's `carry: ["third_party/llama-jinja"]`), like the build folder.
#
# Usage: scripts/fetch_jinja.sh   (DISTILL_PYTHON: the pip to use, default .venv)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/third_party/llama-jinja"
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
stamp_text="llama-cpp-python $version sha256:$sha256"
if [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$stamp_text" ]; then exit 0; fi

python="${DISTILL_PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
mkdir -p "$root/third_party"
stage="$(mktemp -d "$root/third_party/.llama-jinja.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
echo "llama-cpp-python==$version --hash=sha256:$sha256" >"$stage/requirements.txt"
echo "fetch_jinja: downloading llama-cpp-python $version (sdist, 77 MB) for its C++ Jinja engine" >&2
"$python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
  --require-hashes -r "$stage/requirements.txt" -d "$stage/dl" >&2
sdist="$stage/dl/llama_cpp_python-$version.tar.gz"
echo "$sha256  $sdist" | sha256sum -c --quiet -  # pip checked it too; the file we extract is this one

top="llama_cpp_python-$version/vendor/llama.cpp"
templates=(Qwen-Qwen2.5-7B-Instruct meta-llama-Llama-3.1-8B-Instruct mistralai-Mistral-Nemo-Instruct-2407)
members=("$top/LICENSE")
for f in json.h json.cpp unicode.h unicode.cpp; do members+=("$top/common/$f"); done
for f in caps lexer parser runtime string value; do members+=("$top/common/jinja/$f.h" "$top/common/jinja/$f.cpp"); done
members+=("$top/common/jinja/utils.h")
for t in "${templates[@]}"; do members+=("$top/models/templates/$t.jinja"); done
tar -xzf "$sdist" -C "$stage" "${members[@]}"

out="$stage/llama-jinja"
mkdir -p "$out/common/jinja" "$out/templates"
cp "$stage/$top/LICENSE" "$out/LICENSE"
cp "$stage/$top"/common/*.h "$stage/$top"/common/*.cpp "$out/common/"
cp "$stage/$top"/common/jinja/* "$out/common/jinja/"
cp "$stage/$top"/models/templates/*.jinja "$out/templates/"
cat >"$out/common/ggml.h" <<'H'
// Written by scripts/fetch_jinja.sh: json.cpp needs only GGML_ASSERT from ggml.
#pragma once
#include <cstdio>
#include <cstdlib>
#define GGML_ASSERT(x)                                                          \
  do {                                                                          \
    if (!(x)) {                                                                 \
      std::fprintf(stderr, "%s:%d: GGML_ASSERT(%s) failed\n", __FILE__, __LINE__, #x); \
      std::abort();                                                             \
    }                                                                           \
  } while (0)
H
echo "$stamp_text" >"$out/.stamp"
rm -rf "$dest"
mv "$out" "$dest"
echo "fetch_jinja: $dest" >&2
