#!/usr/bin/env bash
# The main job: start the local Kuzzle stack, build libkuzzle and the C
# examples, and bulk-write the sample data set with the C program mwrite_file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
bash scripts/kuzzle-stack.sh start
# CMake builds the library too (scripts/build.sh: cargo build --release and
# the libkuzzle.so.0 link the programs load at run time).
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
cmake -S examples-c -B build/examples -DCMAKE_BUILD_TYPE=Release \
  -DKUZZLE_TARGET_DIR="$target_dir" >/dev/null
cmake --build build/examples --parallel 2 >/dev/null
echo "== mwrite_file: examples-c/data/sensors.ndjson -> index demo, collection sensors"
set +e
./build/examples/mwrite_file --port "${KUZZLE_PORT:-7512}" --wait-for-refresh \
  demo sensors examples-c/data/sensors.ndjson
rc=$?
set -e
case $rc in
  0) echo "== done: every document written" ;;
  1) echo "== done: the 4 rejected documents above are invalid on purpose (see examples-c/data/README.md)" ;;
  *) echo "== mwrite_file failed (exit $rc)" >&2; exit "$rc" ;;
esac
