#!/usr/bin/env bash
# fetch_jinja.sh: puts llama.cpp's C++ Jinja engine (MIT; the chat-template
# renderer of worker/data/chat_template.cc) into third_party/llama-jinja/
# (ignored by git; built by cmake/jinja.cmake as distill_jinja). Debian has no
# C++ Jinja; PyPI's llama-cpp-python sdist (pinned below, sha256 checked)
# carries llama.cpp's sources. It is fetched as a file from PyPI's file host
# (DISTILL_PYPI_FILES: a mirror of files.pythonhosted.org), not with `pip
# download`, which would prepare the sdist's metadata by building its build
# dependencies from source. The download is kept in DISTILL_CACHE (default
# ~/.cache/distill) so fresh clones do not fetch it again. Only what the build and
# tests need is extracted: common/jinja/*.{h,cpp}, common/{json,unicode}.{h,cpp}
# (json.cpp wraps Debian's nlohmann json), llama.cpp's LICENSE, a ggml.h that
# defines the one macro json.cpp uses, and the chat templates the tests render
# (templates/). Idempotent: a folder whose stamp names this version is kept.
#
# The GPU machine has no PyPI: the folder travels there with the working tree
# (run's `carry: ["third_party/llama-jinja"]`), like the build folder.
#
# Usage: scripts/fetch_jinja.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/third_party/llama-jinja"
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
stamp_text="llama-cpp-python $version sha256:$sha256"
if [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$stamp_text" ]; then exit 0; fi

mkdir -p "$root/third_party"
stage="$(mktemp -d "$root/third_party/.llama-jinja.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
cache="${DISTILL_CACHE:-$HOME/.cache/distill}"
sdist="$cache/llama_cpp_python-$version.tar.gz"
if ! echo "$sha256  $sdist" | sha256sum -c --quiet - >/dev/null 2>&1; then
  files="${DISTILL_PYPI_FILES:-https://files.pythonhosted.org}"
  url="$files/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$version.tar.gz"
  echo "fetch_jinja: downloading llama-cpp-python $version (sdist, 77 MB) for its C++ Jinja engine" >&2
  mkdir -p "$cache"
  curl -fsSL --retry 3 -o "$stage/sdist.tar.gz" "$url" ||
    { echo "fetch_jinja: cannot download $url" >&2; exit 1; }
  echo "$sha256  $stage/sdist.tar.gz" | sha256sum -c --quiet - ||
    { echo "fetch_jinja: $url does not have sha256 $sha256" >&2; exit 1; }
  mv -f "$stage/sdist.tar.gz" "$sdist"
fi

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
