#!/usr/bin/env bash
# npm_tarball.sh NAME VERSION DIR: puts the npm package NAME@VERSION's tarball
# (as `npm pack` names it: @lenml/tokenizers 3.7.2 -> lenml-tokenizers-3.7.2.tgz)
# into DIR and prints its path. Taken from DISTILL_NPM_DIR (default:
# shared/data/npm beside the repository, which holds the project's tarballs
# unchanged) when it is there, else fetched with `npm pack` (a user's machine
# with the registry). Idempotent: a tarball already in DIR is kept.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 NAME VERSION DIR" >&2; exit 2; }
name=$1 version=$2 dir=$3
root="$(cd "$(dirname "$0")/.." && pwd)"
npm_dir="${DISTILL_NPM_DIR:-$root/../shared/data/npm}"
file="$(echo "${name#@}" | tr / -)-$version.tgz"

mkdir -p "$dir"
if [ -s "$dir/$file" ]; then
  :
elif [ -f "$npm_dir/$file" ]; then
  cp "$npm_dir/$file" "$dir/$file.tmp.$$" && mv -f "$dir/$file.tmp.$$" "$dir/$file"
else
  command -v npm >/dev/null ||
    { echo "$0: $file is not in $npm_dir and npm is not installed to fetch $name@$version" >&2; exit 1; }
  stage=$(mktemp -d "$dir/.pack.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  if ! (cd "$stage" && npm pack "$name@$version" >npm.log 2>&1); then
    echo "$0: $file is not in $npm_dir, and npm pack $name@$version failed:" >&2
    tail -5 "$stage/npm.log" >&2
    exit 1
  fi
  mv -f "$stage/$file" "$dir/$file"
fi
echo "$dir/$file"
