#!/usr/bin/env bash
# Installs the Debian packages that building and testing libkuzzle need, only
# when missing (the Kuzzle stack's own packages come with kuzzle-stack.sh).
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v c++ >/dev/null 2>&1 || need+=(g++)
[ -f /usr/include/cjson/cJSON.h ] || need+=(libcjson-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup-deps] installing: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "[setup-deps] cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
