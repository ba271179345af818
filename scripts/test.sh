#!/usr/bin/env bash
# Every test of the project, against real local Kuzzle stacks (started here
# when needed; tests fail, never skip, when Kuzzle cannot be reached).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
bash scripts/kuzzle-stack.sh start
echo "== cargo test"
cargo test --release 2>&1
echo "== C/C++ examples and tests (CTest)"
cmake -S examples-c -B build/examples -DCMAKE_BUILD_TYPE=Release \
  -DKUZZLE_TEST_PORT="${KUZZLE_PORT:-7512}" >/dev/null
cmake --build build/examples --parallel 2
ctest --test-dir build/examples --output-on-failure
echo "== Python ctypes binding (pytest)"
cargo build --release
KUZZLE_PORT="${KUZZLE_PORT:-7512}" python3 -m pytest -q examples-ffi/python
echo "== install: pkg-config and CMake consumers"
bash scripts/test-install.sh --no-build
