#!/usr/bin/env bash
# Installs the Debian packages that building and testing libkuzzle need, only
# when missing (the Kuzzle stack's own packages come with kuzzle-stack.sh).
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v cc >/dev/null 2>&1 || need+=(gcc)
# readelf/objdump: the SONAME checks of build.sh, install.sh, test-install.sh
command -v objdump >/dev/null 2>&1 || need+=(binutils)
command -v c++ >/dev/null 2>&1 || need+=(g++)
[ -f /usr/include/cjson/cJSON.h ] || need+=(libcjson-dev)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup-deps] installing: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# pytest for the Python FFI example's tests, from PyPI when missing.
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install --quiet pytest \
  || { echo "[setup-deps] cannot install pytest" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "[setup-deps] cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
