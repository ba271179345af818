#!/usr/bin/env bash
# Tests scripts/install.sh: installs libkuzzle into a temporary prefix
# (versioned file, SONAME and links), then
# builds scripts/packaging/hello.c against it with pkg-config (shared and
# static) and with CMake's find_package(kuzzle) (kuzzle::kuzzle and
# kuzzle::kuzzle_static), and runs the programs. Also checks that a second
# install changes nothing, that the CMake package still works once the
# prefix is moved, and that DESTDIR stages the files; and builds hello.c
# straight from the tree, as the README says. Needs no Kuzzle server.
#
# usage: scripts/test-install.sh [--no-build]
#   --no-build  install what target/release already holds (no cargo build)
# KEEP_TMP=1 keeps the temporary directory. Exit status: 0 when all passed.
set -uo pipefail

build_flag=
case "${1:-}" in
  "") ;;
  --no-build) build_flag=--no-build ;;
  *) sed -n '11,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
packaging="$root/scripts/packaging"
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
release="$target_dir/release"
cc=${CC:-cc}
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kuzzle-install-test.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "(keeping $tmp)"
else
  trap 'rm -rf "$tmp"' EXIT
fi
prefix="$tmp/prefix"
moved="$tmp/moved-prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
unset PKG_CONFIG_LIBDIR CMAKE_PREFIX_PATH LD_LIBRARY_PATH

version=$(awk '/^\[/ { s = $0; next } s == "[package]" && $1 == "version" {
  gsub(/"/, "", $3); print $3; exit }' "$root/Cargo.toml")
major=${version%%.*}
soname="libkuzzle.so.$major"

passed=0
failed=0
n=0
# check NAME COMMAND...: runs COMMAND, its output in a log shown on failure.
check() {
  local name=$1
  shift
  n=$((n + 1))
  local log="$tmp/check-$n.log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'PASS  %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$name"
    tail -n 25 "$log" | sed 's/^/      | /'
  fi
}
fail() { echo "$*"; return 1; }

# The DT_NEEDED entries of an executable, one a line. (Outputs are captured
# before grep -q: with pipefail, grep -q closing a pipe early fails it.)
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
links_shared() { # EXE: needs libkuzzle (by its SONAME)
  local libs
  libs=$(needed "$1") && echo "$libs"
  grep -qxF "$soname" <<<"$libs" || fail "$1 does not need $soname"
}
links_static() { # EXE: libkuzzle linked in, not needed at run time
  local libs syms
  libs=$(needed "$1") && echo "$libs"
  ! grep -q kuzzle <<<"$libs" || fail "$1 needs a kuzzle shared library"
  syms=$(nm "$1") || return 1
  grep -q ' T kuzzle_version$' <<<"$syms" || fail "kuzzle_version is not in $1"
}
# Runs a hello program; it prints its findings and exits 0 when all is well.
runs() {
  local out status=0
  out=$("$@") || status=$?
  [ "$status" = 0 ] || { echo "$out"; fail "exit status $status"; }
  echo "$out"
  grep -qx "kuzzle_version: $version" <<<"$out" || fail "version is not $version"
  grep -qx 'KUZZLE_PARTIAL: partial: some documents were rejected' <<<"$out" ||
    fail "unexpected kuzzle_status_str(KUZZLE_PARTIAL)"
  grep -q '^connect with an unknown key: invalid argument: {"error":' <<<"$out" ||
    fail "unexpected kuzzle_connect result"
  grep -qx 'hello: ok' <<<"$out" || fail "hello did not report ok"
}

# ---- install
install_ok() {
  bash "$root/scripts/install.sh" $build_flag "$prefix" || return 1
  local f
  for f in "lib/libkuzzle.so.$version:755" lib/libkuzzle.a:644 include/kuzzle.h:644 \
    lib/pkgconfig/kuzzle.pc:644 lib/cmake/kuzzle/kuzzleConfig.cmake:644 \
    lib/cmake/kuzzle/kuzzleConfigVersion.cmake:644; do
    [ -f "$prefix/${f%:*}" ] && [ ! -L "$prefix/${f%:*}" ] || fail "missing file $prefix/${f%:*}"
    [ "$(stat -c %a "$prefix/${f%:*}")" = "${f#*:}" ] || fail "mode of ${f%:*} is not ${f#*:}"
  done
  has_links "$prefix" || return 1
  local dynamic
  dynamic=$(readelf -d "$prefix/lib/libkuzzle.so.$version") || return 1
  grep -q "SONAME.*\[$soname\]" <<<"$dynamic" || fail "libkuzzle.so.$version has no SONAME $soname"
  cmp "$root/include/kuzzle.h" "$prefix/include/kuzzle.h"
}
# The links every shared library has: the SONAME (what the loader looks for)
# to the real file, the development name (what -lkuzzle finds) to the SONAME.
has_links() { # PREFIX
  local l
  for l in "$soname:libkuzzle.so.$version" "libkuzzle.so:$soname"; do
    [ -L "$1/lib/${l%%:*}" ] || fail "$1/lib/${l%%:*} is not a symbolic link"
    [ "$(readlink "$1/lib/${l%%:*}")" = "${l#*:}" ] || fail "$1/lib/${l%%:*} does not point to ${l#*:}"
  done
  echo "lib/$soname -> libkuzzle.so.$version, lib/libkuzzle.so -> $soname"
}
check "install.sh${build_flag:+ $build_flag} into a temporary prefix (6 files, modes, SONAME $soname, 2 links)" install_ok
if [ ! -f "$prefix/lib/libkuzzle.so" ]; then
  echo "(no install: nothing else to test)"
  echo "$passed passed, $failed failed"
  exit 1
fi

snapshot() {
  (cd "$1" && { find . -type f -exec sha256sum {} +; find . -type l -printf '%l %p\n'; } | sort -k2)
}
idempotent() {
  snapshot "$prefix" >"$tmp/before"
  bash "$root/scripts/install.sh" --no-build "$prefix" || return 1
  snapshot "$prefix" >"$tmp/after"
  diff "$tmp/before" "$tmp/after"
}
check "install.sh again: same files, same contents, same links" idempotent

# ---- pkg-config
pc_metadata() {
  pkg-config --print-errors --exists kuzzle || return 1
  local v
  v=$(pkg-config --modversion kuzzle)
  [ "$v" = "$version" ] || fail "pkg-config version $v, Cargo.toml $version"
  [ "$(pkg-config --variable=prefix kuzzle)" = "$prefix" ] || fail "prefix is not $prefix"
  pkg-config --cflags --libs kuzzle
  pkg-config --static --libs kuzzle
}
check "pkg-config finds kuzzle $version" pc_metadata

pc_shared() {
  # shellcheck disable=SC2046 # pkg-config output is meant to be split
  "$cc" "${cflags[@]}" "$packaging/hello.c" -o "$tmp/hello-pc-shared" \
    $(pkg-config --cflags --libs kuzzle) -Wl,-rpath,"$prefix/lib" &&
    links_shared "$tmp/hello-pc-shared"
}
check "pkg-config --cflags --libs: build with libkuzzle.so" pc_shared
check "pkg-config --cflags --libs: run (rpath)" runs "$tmp/hello-pc-shared"

pc_static() {
  # The .so sits beside the .a and the linker prefers it for -lkuzzle:
  # ask for the archive by file name.
  local libs
  libs=$(pkg-config --static --libs kuzzle | sed 's/-lkuzzle\b/-l:libkuzzle.a/')
  echo "libs: $libs"
  # shellcheck disable=SC2046,SC2086
  "$cc" "${cflags[@]}" "$packaging/hello.c" -o "$tmp/hello-pc-static" \
    $(pkg-config --cflags kuzzle) $libs &&
    links_static "$tmp/hello-pc-static"
}
check "pkg-config --static: build with libkuzzle.a" pc_static
check "pkg-config --static: run" runs "$tmp/hello-pc-static"

# ---- CMake
cmake_build() { # PREFIX BUILD_DIR
  cmake -S "$packaging/cmake-consumer" -B "$2" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$1" -DKUZZLE_REQUIRED_VERSION="$version" -DCMAKE_C_COMPILER="$cc" ||
    return 1
  local dir
  dir=$(sed -n 's/^kuzzle_DIR:PATH=//p' "$2/CMakeCache.txt")
  [ "$dir" = "$1/lib/cmake/kuzzle" ] || fail "found kuzzle in $dir, not $1/lib/cmake/kuzzle"
  cmake --build "$2" --verbose || return 1
  links_shared "$2/hello_shared" && links_static "$2/hello_static"
}
check "CMake find_package(kuzzle $version): configure and build both targets" \
  cmake_build "$prefix" "$tmp/cmake"
check "CMake kuzzle::kuzzle: run" runs "$tmp/cmake/hello_shared"
check "CMake kuzzle::kuzzle_static: run" runs "$tmp/cmake/hello_static"

wrong_version() {
  local want="$((major + 1)).0"
  local out
  if out=$(cmake -S "$packaging/cmake-consumer" -B "$tmp/cmake-wrong" \
    -DCMAKE_PREFIX_PATH="$prefix" -DKUZZLE_REQUIRED_VERSION="$want" 2>&1); then
    echo "$out"
    fail "find_package(kuzzle $want) accepted version $version"
  fi
  echo "$out"
  grep -q 'kuzzleConfig.cmake, version: '"$version" <<<"$out" || fail "refused for another reason"
}
check "CMake find_package(kuzzle $((major + 1)).0) is refused" wrong_version

# ---- relocation: move the whole prefix, the CMake package follows.
relocated() {
  mv "$prefix" "$moved" || return 1
  cmake_build "$moved" "$tmp/cmake-moved" || return 1
  ldd "$tmp/cmake-moved/hello_shared" | tee "$tmp/ldd"
  grep -q "$soname => $moved/lib/$soname" "$tmp/ldd" ||
    fail "hello_shared does not load $moved/lib/$soname"
  runs "$tmp/cmake-moved/hello_shared" && runs "$tmp/cmake-moved/hello_static" || return 1
  local flags
  flags=$(PKG_CONFIG_PATH="$moved/lib/pkgconfig" pkg-config --define-prefix --cflags --libs kuzzle) || return 1
  flags=${flags%"${flags##*[![:space:]]}"} # pkgconf ends with a space
  echo "$flags"
  [ "$flags" = "-I$moved/include -L$moved/lib -lkuzzle" ] ||
    fail "pkg-config --define-prefix does not follow the move"
}
check "moved prefix: CMake builds and runs both, pkg-config --define-prefix follows" relocated

# ---- DESTDIR: files staged under DESTDIR, paths inside them say PREFIX.
destdir() {
  local stage="$tmp/stage" final="/opt/kuzzle-install-test-$$"
  [ ! -e "$final" ] || fail "$final exists already"
  DESTDIR="$stage" bash "$root/scripts/install.sh" --no-build "$final" || return 1
  [ ! -e "$final" ] || fail "$final was created despite DESTDIR"
  (cd "$stage$final" && find . -type f | sort) | tee "$tmp/staged"
  [ "$(wc -l <"$tmp/staged")" = 6 ] || fail "expected 6 staged files"
  has_links "$stage$final" || return 1
  grep -qx "prefix=$final" "$stage$final/lib/pkgconfig/kuzzle.pc" ||
    fail "kuzzle.pc does not say prefix=$final"
}
check "DESTDIR=<stage> install.sh /opt/...: staged, links, prefix kept" destdir

# ---- from the source tree, as the README builds: -L target/release -lkuzzle
# with an rpath there (scripts/build.sh made the SONAME link beside it).
tree_shared() {
  bash "$root/scripts/build.sh" --links-only || return 1
  (cd "$root" && "$cc" "${cflags[@]}" "$packaging/hello.c" -I include -L "$release" -lkuzzle \
    -Wl,-rpath,"$release" -o "$tmp/hello-tree") &&
    links_shared "$tmp/hello-tree" || return 1
  ldd "$tmp/hello-tree" | tee "$tmp/ldd-tree"
  grep -q "$soname => $release/$soname" "$tmp/ldd-tree" ||
    fail "hello-tree does not load $release/$soname"
}
check "from the tree: cc -I include -L target/release -lkuzzle -Wl,-rpath,...: build" tree_shared
check "from the tree: run" runs "$tmp/hello-tree"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
