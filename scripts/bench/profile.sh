#!/usr/bin/env bash
# Where libkuzzle's CPU goes: callgrind counts the instructions of one
# kuzzle_mwrite of N small documents (default 20,000) against the local
# "bench" stack, and profile_report.py prints them per document, by part.
# Instruction counts do not depend on the machine's load: rerun it to compare
# two versions of the library.
#
#   bash scripts/bench/profile.sh [N] [CONFIG_JSON] [OPTIONS_JSON]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
# What "{}" settles to on loopback: under valgrind the library is too slow
# to see Kuzzle answer within 10 ms, and "auto" would pick gzip and 8.
CONFIG=${2:-'{"compression":"none","concurrency":4}'}
OPTIONS=${3:-}
OUT=build/profile
mkdir -p "$OUT"

export KUZZLE_STACK_NAME=bench KUZZLE_PORT=7562 KUZZLE_REDIS_PORT=6396 KUZZLE_STORAGE_PORT=9262
bash scripts/kuzzle-stack.sh start >/dev/null 2>&1

# Line tables let callgrind name inlined code; a separate target directory
# keeps the normal release build as it is.
CARGO_TARGET_DIR="$OUT/target" CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  bash scripts/build.sh --quiet
cc -O2 -std=c11 -Wall -Wextra -Werror -Iinclude scripts/bench/bench_mwrite.c \
  -L"$OUT/target/release" -lkuzzle -Wl,-rpath,"$PWD/$OUT/target/release" -o "$OUT/bench_mwrite"

# A fresh index, so every run writes into an empty collection.
curl -fsS -XDELETE "http://127.0.0.1:$KUZZLE_PORT/bench" >/dev/null 2>&1 || true
curl -fsS -XPOST "http://127.0.0.1:$KUZZLE_PORT/bench/_create" >/dev/null
curl -fsS -XPUT "http://127.0.0.1:$KUZZLE_PORT/bench/c" >/dev/null

# Only the library's work is counted: kuzzle_mwrite on the calling thread
# and the worker threads it starts (their Rust entry point).
valgrind --tool=callgrind --collect-atstart=no \
  --toggle-collect=kuzzle_mwrite \
  --toggle-collect='std::sys::backtrace::__rust_begin_short_backtrace*' \
  --callgrind-out-file="$OUT/callgrind.out" \
  "$OUT/bench_mwrite" "$KUZZLE_PORT" bench "$N" small "$CONFIG" ${OPTIONS:+"$OPTIONS"} \
  2>"$OUT/valgrind.log"
python3 scripts/bench/profile_report.py "$OUT/callgrind.out" "$N"
