#!/usr/bin/env bash
# Builds libkuzzle (cargo build --release, extra arguments passed on) and
# gives target/release the link a program linked there needs at run time:
# libkuzzle.so records SONAME libkuzzle.so.0 (build.rs), so `-lkuzzle`
# programs ask the loader for libkuzzle.so.0, which cargo does not make.
# Honours CARGO_TARGET_DIR (relative to the repository, as cargo run there).
#
# usage: scripts/build.sh [CARGO BUILD ARGS...]
#        scripts/build.sh --links-only   (only the link, no build)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
release="$target_dir/release"

if [ "${1:-}" = --links-only ]; then
  shift
else
  (cd "$root" && cargo build --release "$@")
fi

lib="$release/libkuzzle.so"
[ -f "$lib" ] || { echo "build.sh: $lib is missing (build first)" >&2; exit 1; }
soname=$(objdump -p "$lib" | sed -n 's/^ *SONAME *//p')
case "$soname" in
  libkuzzle.so.*) ;;
  *) echo "build.sh: $lib has SONAME '${soname}', expected libkuzzle.so.<major>" >&2; exit 1 ;;
esac
# Relative, so that it follows each rebuild and a moved target directory.
if [ "$(readlink "$release/$soname" 2>/dev/null)" != libkuzzle.so ]; then
  ln -sfn libkuzzle.so "$release/$soname.tmp.$$"
  mv -Tf "$release/$soname.tmp.$$" "$release/$soname"
fi
echo "build.sh: $release/$soname -> libkuzzle.so" >&2
