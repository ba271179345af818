#!/usr/bin/env bash
# Refreshes include/kuzzle.h: build.rs generates the header into Cargo's
# OUT_DIR only (a build never writes into the source tree); this builds and
# copies it, to commit with the change of src/ffi.rs or src/error.rs.
# tests/abi.rs fails while the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
# The build script's OUT_DIR, from Cargo's own report of it.
out_dir=$(cargo build --message-format=json-render-diagnostics |
  grep '"reason":"build-script-executed"' | grep -E '#libkuzzle@|"libkuzzle ' |
  sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$out_dir" ] || [ ! -f "$out_dir/kuzzle.h" ]; then
  echo "header.sh: cargo did not report libkuzzle's generated header" >&2
  exit 1
fi
if cmp -s "$out_dir/kuzzle.h" include/kuzzle.h; then
  echo "include/kuzzle.h is up to date"
else
  cp "$out_dir/kuzzle.h" include/kuzzle.h
  echo "include/kuzzle.h regenerated from $out_dir/kuzzle.h"
fi
