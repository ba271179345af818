#!/usr/bin/env bash
# Every test of the project, against real local Kuzzle stacks (started here
# when needed; tests fail, never skip, when Kuzzle cannot be reached).
#
# The stacks this run starts (the default one, the named ones tests start:
# auth, faults, limits..., and the two-node cluster of tests/cluster.rs) are
# stopped when it ends, failed or not;
# a stack that already ran before is left running. KUZZLE_KEEP_STACKS=1
# keeps them all running (faster reruns, logs to look at).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac

# A stack runs when any of its processes does (what `stop` would stop).
# (The output is captured first: with pipefail, grep -q closing the pipe
# early would fail the pipeline.)
stack_runs() {
  local out
  out=$(KUZZLE_STACK_NAME=$1 bash scripts/kuzzle-stack.sh status 2>&1) || true
  grep -q 'running (pid' <<<"$out"
}
stack_names() {
  local dir
  for dir in .stack/run/*/; do
    [ -d "$dir" ] && basename "$dir"
  done
  return 0
}
already_running=" "
for name in $(stack_names); do
  if stack_runs "$name"; then already_running+="$name "; fi
done

cluster_was_up=""
[ -d .stack/cluster/c ] && cluster_was_up=1

stop_started_stacks() {
  local status=$? name
  if [ "${KUZZLE_KEEP_STACKS:-0}" = 1 ]; then
    echo "== KUZZLE_KEEP_STACKS=1: stacks left running" >&2
    exit "$status"
  fi
  # tests/cluster.rs brings the local cluster up (scripts/kuzzle-cluster.sh).
  if [ -z "$cluster_was_up" ] && [ -d .stack/cluster/c ]; then
    echo "== stopping the local cluster (started by this run)" >&2
    bash scripts/kuzzle-cluster.sh down || [ "$status" != 0 ] || status=1
  fi
  for name in $(stack_names); do
    case "$already_running" in *" $name "*) continue ;; esac
    if stack_runs "$name"; then
      echo "== stopping the '$name' stack (started by this run)" >&2
      KUZZLE_STACK_NAME=$name bash scripts/kuzzle-stack.sh stop || [ "$status" != 0 ] || status=1
    fi
  done
  exit "$status"
}
trap stop_started_stacks EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/setup-deps.sh
bash scripts/kuzzle-stack.sh start
echo "== cargo test"
cargo test --release 2>&1
echo "== the engine's tests with no network at all (an empty network namespace)"
unshare --net -- cargo test --release --offline --lib mwrite:: 2>&1
echo "== C/C++ examples and tests (CTest)"
cmake -S examples-c -B build/examples -DCMAKE_BUILD_TYPE=Release \
  -DKUZZLE_TARGET_DIR="$target_dir" -DKUZZLE_TEST_PORT="${KUZZLE_PORT:-7512}" >/dev/null
cmake --build build/examples --parallel 2
ctest --test-dir build/examples --output-on-failure
echo "== Python ctypes binding (pytest)"
bash scripts/build.sh
LIBKUZZLE_PATH="$target_dir/release/libkuzzle.so" KUZZLE_PORT="${KUZZLE_PORT:-7512}" \
  python3 -m pytest -q examples-ffi/python
echo "== install: pkg-config and CMake consumers"
bash scripts/test-install.sh --no-build
