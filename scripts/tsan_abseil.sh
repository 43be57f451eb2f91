#!/usr/bin/env bash
# Builds Debian's own abseil (the installed libabsl-dev's version, from its
# source package with Debian's patches) with -fsanitize=thread into
# ./build-tsan-absl/lib, shared libraries with Debian's sonames. With that
# folder on LD_LIBRARY_PATH, the TSan tests (and Debian's gRPC, which links the
# same sonames) lock through an instrumented absl::Mutex, so TSan sees its
# lock order (Note [TSan and abseil] in docs/sanitizers.md). Idempotent: a
# finished build is kept (its .stamp names the version).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/build-tsan-absl"
version=$(dpkg-query -W -f='${Version}' libabsl-dev)
version=${version#*:}  # no epoch in the pool's file names
upstream=${version%-*}
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$version" ]; then exit 0; fi
pool=${DEBIAN_POOL:-http://deb.debian.org/debian/pool/main/a/abseil}
work="$out/src"
rm -rf "$out"
mkdir -p "$work"
echo "tsan_abseil: fetching abseil $version from $pool" >&2
curl -fsSL -o "$work/orig.tar.gz" "$pool/abseil_${upstream}.orig.tar.gz"
curl -fsSL -o "$work/debian.tar.xz" "$pool/abseil_${version}.debian.tar.xz"
tar -xzf "$work/orig.tar.gz" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
tar -xJf "$work/debian.tar.xz" -C "$src"
while read -r patch; do
  [ -n "$patch" ] && [ "${patch#\#}" = "$patch" ] || continue
  patch -d "$src" -p1 -s < "$src/debian/patches/$patch"
done < "$src/debian/patches/series"
# Debian's shared build (debian/rules), plus the sanitizer.
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF \
  -DCMAKE_C_FLAGS=-fsanitize=thread -DCMAKE_CXX_FLAGS=-fsanitize=thread \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread -DCMAKE_INSTALL_PREFIX="$out" >/dev/null
cmake --build "$work/build" -j"$(nproc)"
cmake --install "$work/build" >/dev/null
# The options header must be Debian's, or the ABI differs (inline namespace, std types).
cmp -s "$out/include/absl/base/options.h" /usr/include/absl/base/options.h || {
  echo "tsan_abseil: the rebuilt abseil's options.h differs from /usr/include's" >&2
  exit 1
}
rm -rf "$work"
echo "$version" > "$out/.stamp"
