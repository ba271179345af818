#!/usr/bin/env bash
# Installs libkuzzle under PREFIX (default /usr/local):
#   PREFIX/lib/libkuzzle.so.X.Y.Z (SONAME libkuzzle.so.X) with the links
#   libkuzzle.so.X -> libkuzzle.so.X.Y.Z and libkuzzle.so -> libkuzzle.so.X,
#   PREFIX/lib/libkuzzle.a, PREFIX/include/kuzzle.h,
#   PREFIX/lib/pkgconfig/kuzzle.pc,
#   PREFIX/lib/cmake/kuzzle/kuzzleConfig.cmake + kuzzleConfigVersion.cmake.
# Builds first (scripts/build.sh) unless --no-build. Honours DESTDIR
# (staged installs: files go to $DESTDIR$PREFIX, paths inside them say
# PREFIX) and CARGO_TARGET_DIR. Running it again gives the same files.
#
# usage: scripts/install.sh [--no-build] [PREFIX]
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

build=1
prefix=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      if [ -n "$prefix" ]; then
        echo "install.sh: one PREFIX only" >&2; exit 2
      fi
      prefix=$1 ;;
  esac
  shift
done
prefix=${prefix:-/usr/local}
# The prefix is written into kuzzle.pc: make it absolute and clean.
prefix=$(realpath -m -- "$prefix")

root=$(cd "$(dirname "$0")/.." && pwd)
packaging="$root/scripts/packaging"
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
release="$target_dir/release"
dest="${DESTDIR:-}$prefix"

# [package] fields of Cargo.toml (simple `key = "value"` lines).
cargo_field() {
  awk -v key="$1" '
    /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
    section == "[package]" && $1 == key && $2 == "=" {
      sub(/^[^=]*=[[:space:]]*"/, ""); sub(/"[[:space:]]*(#.*)?$/, ""); print; exit
    }' "$root/Cargo.toml"
}
version=$(cargo_field version)
description=$(cargo_field description)
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]; then
  echo "install.sh: cannot read the version from $root/Cargo.toml" >&2; exit 1
fi
IFS=. read -r v_major v_minor _ <<<"$version"

if [ "$build" = 1 ]; then
  echo "== cargo build --release (scripts/build.sh)"
  CARGO_TARGET_DIR="$target_dir" bash "$root/scripts/build.sh"
fi

for f in "$release/libkuzzle.so" "$release/libkuzzle.a" "$root/include/kuzzle.h"; do
  if [ ! -f "$f" ]; then
    echo "install.sh: $f is missing (run without --no-build)" >&2; exit 1
  fi
done
header_version=$(sed -n 's/^#define KUZZLE_VERSION "\(.*\)"$/\1/p' "$root/include/kuzzle.h")
if [ "$header_version" != "$version" ]; then
  echo "install.sh: include/kuzzle.h says $header_version, Cargo.toml $version (stale header: run bash scripts/header.sh)" >&2
  exit 1
fi

# The SONAME build.rs gave the library must be the one of this version.
soname=$(objdump -p "$release/libkuzzle.so" | sed -n 's/^ *SONAME *//p')
if [ "$soname" != "libkuzzle.so.$v_major" ]; then
  echo "install.sh: $release/libkuzzle.so has SONAME '$soname', not libkuzzle.so.$v_major (version $version)" >&2
  exit 1
fi
real="libkuzzle.so.$version"

# Pointer size the library was built for (ELF class: 1 = 32-bit, 2 = 64-bit).
case "$(od -An -tu1 -j4 -N1 "$release/libkuzzle.so" | tr -d ' ')" in
  1) sizeof_void_p=4 ;;
  2) sizeof_void_p=8 ;;
  *) echo "install.sh: $release/libkuzzle.so is not an ELF library" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Escapes a value for the replacement side of a sed s|...|...| command.
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
render() {
  sed -e "s|@PREFIX@|$(sed_escape "$prefix")|g" \
      -e "s|@VERSION@|$(sed_escape "$version")|g" \
      -e "s|@VERSION_MAJOR@|$v_major|g" \
      -e "s|@VERSION_MINOR@|$v_minor|g" \
      -e "s|@DESCRIPTION@|$(sed_escape "$description")|g" \
      -e "s|@SIZEOF_VOID_P@|$sizeof_void_p|g" \
      "$packaging/$1" >"$tmp/$2"
  if grep -q '@[A-Z_]*@' "$tmp/$2"; then
    echo "install.sh: unsubstituted placeholder in $1" >&2; exit 1
  fi
}
render kuzzle.pc.in kuzzle.pc
render kuzzleConfig.cmake.in kuzzleConfig.cmake
render kuzzleConfigVersion.cmake.in kuzzleConfigVersion.cmake

echo "== installing libkuzzle $version into $dest"
# install(1) would rewrite an existing file in place, under the feet of
# running programs that map libkuzzle.so: install beside it, then rename.
put() { # mode source destination
  install -D -m "$1" "$2" "$3.new.$$"
  mv -f "$3.new.$$" "$3"
  echo "  $3"
}
# link TARGET NAME: NAME -> TARGET, replaced in one rename as well.
link() {
  ln -sfn "$1" "$2.new.$$"
  mv -Tf "$2.new.$$" "$2"
  echo "  $2 -> $1"
}
put 755 "$release/libkuzzle.so" "$dest/lib/$real"
# What the loader looks for (the SONAME), then what -lkuzzle finds.
link "$real" "$dest/lib/$soname"
link "$soname" "$dest/lib/libkuzzle.so"
put 644 "$release/libkuzzle.a" "$dest/lib/libkuzzle.a"
put 644 "$root/include/kuzzle.h" "$dest/include/kuzzle.h"
put 644 "$tmp/kuzzle.pc" "$dest/lib/pkgconfig/kuzzle.pc"
put 644 "$tmp/kuzzleConfig.cmake" "$dest/lib/cmake/kuzzle/kuzzleConfig.cmake"
put 644 "$tmp/kuzzleConfigVersion.cmake" "$dest/lib/cmake/kuzzle/kuzzleConfigVersion.cmake"

echo "done. pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig; CMake: CMAKE_PREFIX_PATH=$prefix."
echo "At run time programs find $soname through an rpath, LD_LIBRARY_PATH or ldconfig."
