#!/usr/bin/env bash
# Local Kuzzle stack for tests and benchmarks: Redis + osmem-server (in-memory,
# OpenSearch-compatible storage) + Kuzzle 2.56, all on 127.0.0.1, all in memory.
#
# Usage: scripts/kuzzle-stack.sh <command>
#
#   install   install everything into <repo>/.stack/ (idempotent; apt-get only
#             for missing Debian packages)
#   start     install if needed, start the stack, wait until Kuzzle answers
#             (and the TLS proxy, with KUZZLE_TLS_PORT); a no-op when the
#             stack already runs and is healthy; on a running stack whose
#             KUZZLE_TLS_PORT changed, only the proxy is started, restarted
#             or stopped (Kuzzle and its data stay)
#   stop      stop the processes this script started for the stack
#   status    show the stack; exit 0 only if all three processes are up and
#             Kuzzle answers (with KUZZLE_TLS_PORT: also nginx and its fault
#             upstream, and the proxy's ports answer as they should)
#   reset     stop + start: every datum is in memory, so this wipes the data
#   admin     create the first admin (once), log in, print one JSON line:
#             {"username":...,"password":...,"apiKey":...}
#   logs      print the log paths and their tails:
#             logs [redis|osmem|kuzzle|nginx|blackhole|access] [LINES]
#   kill-kuzzle   SIGKILL Kuzzle alone (fault tests); Redis and storage keep data
#   start-kuzzle  start Kuzzle again on the running Redis and storage
#   tls-info  print one JSON line about the TLS proxy (see below):
#             {"port","url","host","wrongHost","caFile","faultPorts":{...},
#              "accessLog"}
#
# Environment (settings given here win; otherwise a stack reuses the settings
# it was last started with; otherwise the defaults):
#   KUZZLE_STACK_NAME      stack name, one runtime folder each   (default: default)
#   KUZZLE_PORT            Kuzzle HTTP/WebSocket port             (default: 7512)
#   KUZZLE_REDIS_PORT      Redis port                             (default: 6390)
#   KUZZLE_STORAGE_PORT    osmem-server port                      (default: 9210)
#   KUZZLE_TLS_PORT        port of the TLS proxy (nginx) in front of Kuzzle;
#                          its fault ports are the next four (default: none:
#                          no proxy; set it empty to turn a recorded one off)
#   KUZZLE_RC_EXTRA        JSON object deep-merged into the generated kuzzlerc,
#                          e.g. '{"server":{"maxRequestSize":"8KB"}}'
#   KUZZLE_ADMIN_USER      admin user for `admin`                 (default: admin)
#   KUZZLE_ADMIN_PASSWORD  its password                           (default: admin-Passw0rd)
#
# TLS proxy (when KUZZLE_TLS_PORT is set): Debian's nginx, in the foreground,
# its config, logs, pid and temp files in <run dir>/nginx/ (nothing in
# /etc/nginx or /var), rendered from scripts/kuzzle-stack/nginx.conf.in:
# TLS 1.2 + 1.3, session tickets and a shared session cache, HTTP/1.1
# keep-alive to clients (75 s, 10000 requests), a new upstream connection per
# request, the request body read whole and forwarded with a Content-Length,
# no gzip at the proxy. The certificate (ECDSA P-256, made once per install
# by scripts/kuzzle-stack/make-tls.sh in <repo>/.stack/tls/) names only
# DNS:localhost: https://localhost:PORT verifies against .stack/tls/ca.pem,
# https://127.0.0.1:PORT must be refused (wrong host name). Ports, all TLS
# with that certificate, all on 127.0.0.1 (and [::1] when localhost resolves
# there), P = KUZZLE_TLS_PORT:
#   P     the proxy in front of this stack's Kuzzle
#   P+1   every request answered 503 by nginx itself (its small HTML page)
#   P+2   forwarded to an upstream that accepts and never answers: 504 after
#         2 s, the request sent (in doubt); the upstream is
#         scripts/kuzzle-stack/blackhole.py, started and stopped with nginx
#   P+3   forwarded to an upstream that refuses the connection: 502
#   P+4   as P, but idle kept-alive client connections closed after 1 s
# Access log (one line per request, with connection reuse and TLS session
# resumption): <run dir>/nginx/access.log, flushed every second. A restart
# of the proxy (reset, another KUZZLE_TLS_PORT) makes new ticket keys and an
# empty session cache: TLS sessions saved before are not resumed.
#
# Messages go to stderr; only `admin` and `tls-info` write to stdout (one
# JSON line each).
set -euo pipefail

SCRIPTS_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPTS_DIR/.." && pwd -P)
STACK_FILES="$SCRIPTS_DIR/kuzzle-stack"
STACK_ROOT="$REPO_ROOT/.stack"
KUZZLE_DIR="$STACK_ROOT/kuzzle"
PY_DIR="$STACK_ROOT/py"
OSMEM_VERSION="0.1.6"
OSMEM_BIN="$PY_DIR/osmem_server/bin/osmem-server"
TLS_DIR="$STACK_ROOT/tls"       # the local CA and the proxy's certificate

STACK_NAME="${KUZZLE_STACK_NAME:-default}"
RUN_DIR="$STACK_ROOT/run/$STACK_NAME"
NGINX_DIR="$RUN_DIR/nginx"

READY_TIMEOUT=60        # seconds Kuzzle gets to answer /_publicApi
STOP_TIMEOUT=20         # seconds a process gets to exit after SIGTERM
TAIL_LINES=40           # log lines shown on failure

COMPONENTS=(redis osmem kuzzle)
PROXY_COMPONENTS=(blackhole nginx)   # only when KUZZLE_TLS_PORT is set

# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

log() { printf '[kuzzle-stack:%s] %s\n' "$STACK_NAME" "$*" >&2; }
die() { printf '[kuzzle-stack:%s] ERROR: %s\n' "$STACK_NAME" "$*" >&2; exit 1; }

show_tail() { # file [lines]
  local file=$1 lines=${2:-$TAIL_LINES}
  if [[ -s $file ]]; then
    printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
    tail -n "$lines" -- "$file" >&2 || true
    printf -- '----- end of %s -----\n' "$file" >&2
  else
    printf -- '(%s is empty or missing)\n' "$file" >&2
  fi
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------

[[ $STACK_NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
  || die "KUZZLE_STACK_NAME must match [A-Za-z0-9][A-Za-z0-9._-]* (got '$STACK_NAME')"

SETTINGS_FILE="$RUN_DIR/settings"     # ports the stack was last started with
RC_EXTRA_FILE="$RUN_DIR/rc-extra.json"
RC_FILE="$RUN_DIR/kuzzlerc.json"
ADMIN_CACHE="$RUN_DIR/admin.json"

recorded_setting() { # key -> value or empty
  [[ -f $SETTINGS_FILE ]] || return 0
  local key value
  while IFS='=' read -r key value; do
    if [[ $key == "$1" ]]; then printf '%s' "$value"; return 0; fi
  done <"$SETTINGS_FILE"
}

check_port() { # name value
  [[ $2 =~ ^[0-9]+$ ]] && (( $2 >= 1 && $2 <= 65535 )) || die "$1 must be a TCP port number (got '$2')"
}

# Fills PORT, REDIS_PORT, STORAGE_PORT, TLS_PORT, RC_EXTRA: environment, else
# what the stack was last started with, else defaults.
load_settings() {
  PORT=${KUZZLE_PORT:-$(recorded_setting port)}; PORT=${PORT:-7512}
  REDIS_PORT=${KUZZLE_REDIS_PORT:-$(recorded_setting redis_port)}; REDIS_PORT=${REDIS_PORT:-6390}
  STORAGE_PORT=${KUZZLE_STORAGE_PORT:-$(recorded_setting storage_port)}; STORAGE_PORT=${STORAGE_PORT:-9210}
  check_port KUZZLE_PORT "$PORT"
  check_port KUZZLE_REDIS_PORT "$REDIS_PORT"
  check_port KUZZLE_STORAGE_PORT "$STORAGE_PORT"
  if [[ $PORT == "$REDIS_PORT" || $PORT == "$STORAGE_PORT" || $REDIS_PORT == "$STORAGE_PORT" ]]; then
    die "KUZZLE_PORT, KUZZLE_REDIS_PORT and KUZZLE_STORAGE_PORT must differ ($PORT, $REDIS_PORT, $STORAGE_PORT)"
  fi
  # Set but empty turns a recorded proxy off.
  if [[ -n ${KUZZLE_TLS_PORT+set} ]]; then
    TLS_PORT=$KUZZLE_TLS_PORT
  else
    TLS_PORT=$(recorded_setting tls_port)
  fi
  TLS_PORTS=()
  if [[ -n $TLS_PORT ]]; then
    check_port KUZZLE_TLS_PORT "$TLS_PORT"
    ((TLS_PORT + 4 <= 65535)) || die "KUZZLE_TLS_PORT must leave room for its four fault ports (got $TLS_PORT)"
    TLS_PORTS=("$TLS_PORT" $((TLS_PORT + 1)) $((TLS_PORT + 2)) $((TLS_PORT + 3)) $((TLS_PORT + 4)))
    local p
    for p in "$PORT" "$REDIS_PORT" "$STORAGE_PORT"; do
      if ((p >= TLS_PORT && p <= TLS_PORT + 4)); then
        die "KUZZLE_TLS_PORT..KUZZLE_TLS_PORT+4 ($TLS_PORT-$((TLS_PORT + 4))) must not hold KUZZLE_PORT, KUZZLE_REDIS_PORT or KUZZLE_STORAGE_PORT ($PORT, $REDIS_PORT, $STORAGE_PORT)"
      fi
    done
  fi
  if [[ -n ${KUZZLE_RC_EXTRA+set} ]]; then
    RC_EXTRA=$KUZZLE_RC_EXTRA
  elif [[ -f $RC_EXTRA_FILE ]]; then
    RC_EXTRA=$(cat -- "$RC_EXTRA_FILE")
  else
    RC_EXTRA=""
  fi
  ADMIN_USER=${KUZZLE_ADMIN_USER:-admin}
  ADMIN_PASSWORD=${KUZZLE_ADMIN_PASSWORD:-admin-Passw0rd}
  KUZZLE_URL="http://127.0.0.1:$PORT"
}

# The kuzzlerc for the current settings, on stdout.
render_rc() {
  RC_PORT=$PORT RC_REDIS_PORT=$REDIS_PORT RC_STORAGE_PORT=$STORAGE_PORT RC_EXTRA_JSON=$RC_EXTRA \
    node -e '
      "use strict";
      const base = {
        server: { port: Number(process.env.RC_PORT) },
        cluster: { enabled: false },
        services: {
          internalCache: { backend: "redis", node: { host: "127.0.0.1", port: Number(process.env.RC_REDIS_PORT) } },
          memoryStorage: { backend: "redis", node: { host: "127.0.0.1", port: Number(process.env.RC_REDIS_PORT) } },
          storageEngine: {
            // must be the string "7": the number 7 is refused
            majorVersion: "7",
            client: { node: `http://127.0.0.1:${process.env.RC_STORAGE_PORT}` },
          },
        },
      };
      const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
      const merge = (into, from) => {
        for (const [k, v] of Object.entries(from)) {
          into[k] = isObject(v) && isObject(into[k]) ? merge(into[k], v) : v;
        }
        return into;
      };
      const raw = (process.env.RC_EXTRA_JSON || "").trim();
      let extra = {};
      if (raw !== "") {
        try { extra = JSON.parse(raw); } catch (e) {
          process.stderr.write(`KUZZLE_RC_EXTRA is not valid JSON: ${e.message}\n`); process.exit(2);
        }
        if (!isObject(extra)) {
          process.stderr.write("KUZZLE_RC_EXTRA must be a JSON object\n"); process.exit(2);
        }
      }
      process.stdout.write(JSON.stringify(merge(base, extra), null, 2) + "\n");
    ' || die "cannot build the kuzzlerc (see the message above)"
}

# ---------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || die "'$*' needs root: run it as root (or allow sudo) and retry"
  else
    die "'$*' needs root: run it as root and retry"
  fi
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_MARK="kuzzle-stack.sh: no daemon starts during its apt-get install"

remove_own_policy_rc() {
  if grep -qF -- "$POLICY_RC_MARK" "$POLICY_RC" 2>/dev/null; then
    as_root rm -f -- "$POLICY_RC"
  fi
}

# A package's maintainer scripts start its daemon (nginx on :80, redis-server
# on :6379) unless policy-rc.d forbids it. The stack runs its own processes,
# so none may start: apt_install denies them with a policy-rc.d for the
# duration of the install (one already there is left as it is), then stops
# and disables a system daemon that started anyway (systemd).
stop_system_daemon() { # package pidfile
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now "$1" >/dev/null 2>&1 || true
  fi
  local pid=""
  [[ -r $2 ]] && pid=$(tr -dc '0-9' <"$2")
  if [[ -n $pid ]] && process_alive "$pid"; then
    log "the $1 package started a system $1 (pid $pid): stopping it"
    as_root kill -TERM "$pid" || true
  fi
}

apt_install() { # packages...
  command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get to install them"
  log "installing Debian packages: $*"
  if [[ ! -e $POLICY_RC ]]; then
    as_root sh -c 'printf "#!/bin/sh\n# %s\nexit 101\n" "$2" >"$1" && chmod 755 "$1"' sh "$POLICY_RC" "$POLICY_RC_MARK"
    trap remove_own_policy_rc EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  remove_own_policy_rc
  trap - EXIT
  local pkg
  for pkg in "$@"; do
    case $pkg in
      nginx) stop_system_daemon nginx /run/nginx.pid ;;
      redis-server) stop_system_daemon redis-server /run/redis/redis-server.pid ;;
    esac
  done
}

nginx_bin() {
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && printf '%s' /usr/sbin/nginx; }
}

install_system_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # The TLS proxy and its certificates.
  nginx_bin >/dev/null || missing+=(nginx)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v flock >/dev/null 2>&1 || missing+=(util-linux)
  # Native addons of Kuzzle's dependencies are built by node-gyp / cmake.
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
  fi
  command -v node >/dev/null 2>&1 || die "Node.js is required (node 20 with npm); it is not installed"
  command -v npm >/dev/null 2>&1 || die "npm is required; it is not installed"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
}

kuzzle_install_hash() {
  {
    cat -- "$STACK_FILES/package.json" "$STACK_FILES/package-lock.json"
    node -p 'process.version + " " + process.platform + " " + process.arch'
    npm --version
  } | sha256sum | cut -d' ' -f1
}

install_kuzzle() {
  local want have="" logf="$STACK_ROOT/install-kuzzle.log"
  want=$(kuzzle_install_hash)
  [[ -f $KUZZLE_DIR/.install-hash ]] && have=$(cat -- "$KUZZLE_DIR/.install-hash")
  if [[ $have == "$want" && -f $KUZZLE_DIR/node_modules/kuzzle/package.json ]]; then
    return 0
  fi
  log "installing Kuzzle into $KUZZLE_DIR (npm ci + native builds: a few minutes; log: $logf)"
  mkdir -p -- "$KUZZLE_DIR"
  rm -f -- "$KUZZLE_DIR/.install-hash"
  cp -- "$STACK_FILES/package.json" "$STACK_FILES/package-lock.json" "$KUZZLE_DIR/"
  : >"$logf"
  if ! (cd -- "$KUZZLE_DIR" && npm ci --no-audit --no-fund) >>"$logf" 2>&1; then
    show_tail "$logf"; die "npm ci failed"
  fi
  # npm >= 11 skips dependency install scripts not listed in "allowScripts".
  # package.json lists them all; if a newer lock brought another one, approve
  # it and run the skipped scripts now.
  if (cd -- "$KUZZLE_DIR" && npm help install-scripts) >/dev/null 2>&1; then
    local pending
    pending=$(cd -- "$KUZZLE_DIR" && npm install-scripts ls 2>>"$logf") || pending="?"
    if ! grep -q 'No packages with unreviewed install scripts' <<<"$pending"; then
      log "approving the install scripts still pending and rebuilding"
      if ! (cd -- "$KUZZLE_DIR" && npm install-scripts approve --all && npm rebuild) >>"$logf" 2>&1; then
        show_tail "$logf"; die "npm install-scripts approve / npm rebuild failed"
      fi
    fi
  fi
  # Loading Kuzzle pulls in its native addons: a failed build shows here.
  if ! (cd -- "$KUZZLE_DIR" && node -e 'require("kuzzle"); require("kuzzle-sdk")') >>"$logf" 2>&1; then
    show_tail "$logf"; die "the installed Kuzzle does not load"
  fi
  printf '%s\n' "$want" >"$KUZZLE_DIR/.install-hash"
  log "Kuzzle installed"
}

install_osmem() {
  if [[ -x $OSMEM_BIN && -d $PY_DIR/osmem_server-$OSMEM_VERSION.dist-info ]]; then
    return 0
  fi
  local tmp="$STACK_ROOT/py.tmp" logf="$STACK_ROOT/install-osmem.log"
  log "installing osmem-server==$OSMEM_VERSION into $PY_DIR"
  rm -rf -- "$tmp"
  if ! python3 -m pip install --disable-pip-version-check --no-input --no-warn-script-location \
      --target "$tmp" "osmem-server==$OSMEM_VERSION" >"$logf" 2>&1; then
    show_tail "$logf"; die "pip install osmem-server==$OSMEM_VERSION failed"
  fi
  [[ -x $tmp/osmem_server/bin/osmem-server ]] \
    || die "osmem-server wheel has no osmem_server/bin/osmem-server binary"
  rm -rf -- "$PY_DIR"
  mv -- "$tmp" "$PY_DIR"
}

# The local CA and the proxy's certificate, shared by every stack of this
# install; remade only when missing, outdated or expiring within 30 days.
install_tls() {
  bash "$STACK_FILES/make-tls.sh" --check "$TLS_DIR" && return 0
  log "making a local CA and the proxy's certificate in $TLS_DIR"
  rm -rf -- "$TLS_DIR.tmp"
  bash "$STACK_FILES/make-tls.sh" "$TLS_DIR.tmp" || die "cannot make the TLS certificates"
  rm -rf -- "$TLS_DIR"
  mv -- "$TLS_DIR.tmp" "$TLS_DIR"
}

cmd_install() {
  mkdir -p -- "$STACK_ROOT"
  install_system_packages
  # One installer at a time, whatever the stack name.
  exec 8>"$STACK_ROOT/.install.lock"
  flock 8
  install_tls
  install_osmem
  install_kuzzle
  flock -u 8
  exec 8>&-
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$RUN_DIR" "$1"; }

# Prints the recorded pid of a component if that process is alive and is the
# one this script started (right program, and for osmem/kuzzle the run
# directory in its environment). Fails otherwise.
owned_pid() {
  local name=$1 pidf pid cmdline
  pidf=$(pid_file "$name")
  [[ -f $pidf ]] || return 1
  pid=$(tr -dc '0-9' <"$pidf")
  [[ -n $pid ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case $name in
    redis)
      # redis-server rewrites its title (and environment area) to
      # "redis-server 127.0.0.1:PORT"
      local port; port=$(recorded_setting redis_port)
      [[ $cmdline == *redis-server* && -n $port && $cmdline == *":$port"* ]] || return 1
      ;;
    osmem)
      [[ $cmdline == *osmem-server* ]] || return 1
      grep -qzxF -- "KUZZLE_STACK_RUN_DIR=$RUN_DIR" "/proc/$pid/environ" 2>/dev/null || return 1
      ;;
    kuzzle)
      [[ $cmdline == *node* && $cmdline == *server.js* ]] || return 1
      grep -qzxF -- "KUZZLE_STACK_RUN_DIR=$RUN_DIR" "/proc/$pid/environ" 2>/dev/null || return 1
      ;;
    nginx)
      # the master rewrites its title (over its environment) to "nginx:
      # master process <command line>": the config path tells the stack
      [[ $cmdline == *nginx* && $cmdline == *" -c $NGINX_DIR/nginx.conf "* ]] || return 1
      ;;
    blackhole)
      [[ $cmdline == *python* && $cmdline == *blackhole.py* ]] || return 1
      grep -qzxF -- "KUZZLE_STACK_RUN_DIR=$RUN_DIR" "/proc/$pid/environ" 2>/dev/null || return 1
      ;;
  esac
  printf '%s' "$pid"
}

# launch NAME CMD...: start detached; the process writes its own pid file.
launch() {
  local name=$1; shift
  local pidf logf
  pidf=$(pid_file "$name"); logf=$(log_file "$name")
  rm -f -- "$pidf"
  [[ -f $logf ]] && mv -f -- "$logf" "$logf.prev"
  (
    cd -- "$RUN_DIR"
    KUZZLE_STACK_RUN_DIR="$RUN_DIR" nohup setsid sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
      "$pidf" "$@" >"$logf" 2>&1 </dev/null 8>&- 9>&- &
  )
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pidf ]] && return 0
    sleep 0.1
  done
  show_tail "$logf"; return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_ping() {
  local reply=""
  {
    exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3<&-
  } 2>/dev/null
  [[ $reply == +PONG* ]]
}

http_code() { # url -> HTTP status (000 when nothing answers)
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true
}

storage_up() { [[ $(http_code "http://127.0.0.1:$STORAGE_PORT/") == 200 ]]; }
kuzzle_up() { [[ $(http_code "$KUZZLE_URL/_publicApi") == 200 ]]; }

# wait_until SECONDS COMPONENT CHECK...: polls CHECK, fails early if the
# component's process is gone.
wait_until() {
  local timeout=$1 name=$2; shift 2
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    "$@" && return 0
    owned_pid "$name" >/dev/null || { log "$name exited during startup"; return 1; }
    sleep 0.2
  done
  log "$name not ready after ${timeout}s"
  return 1
}

# A process that exited stays a zombie until init reaps it (which can take
# seconds in some containers): a zombie counts as gone.
process_alive() {
  local stat state
  { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  state=${stat##*) }
  state=${state%% *}
  [[ -n $state && $state != Z && $state != X ]]
}

stop_component() {
  local name=$1 pid pidf i
  pidf=$(pid_file "$name")
  [[ -f $pidf ]] || return 0
  if ! pid=$(owned_pid "$name"); then
    log "$name: recorded pid $(tr -dc '0-9' <"$pidf") is not running (or is not ours): forgetting it"
    rm -f -- "$pidf"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
    process_alive "$pid" || break
    sleep 0.05
  done
  if process_alive "$pid" && owned_pid "$name" >/dev/null; then
    log "$name (pid $pid) still up after ${STOP_TIMEOUT}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      process_alive "$pid" || break
      sleep 0.05
    done
  fi
  if process_alive "$pid" && owned_pid "$name" >/dev/null; then
    die "cannot stop $name (pid $pid)"
  fi
  rm -f -- "$pidf"
}

# child_pids PID: the pids of its children, one a line.
child_pids() {
  local f stat rest
  for f in /proc/[0-9]*/stat; do
    { IFS= read -r stat <"$f"; } 2>/dev/null || continue
    rest=${stat##*) }   # "STATE PPID ..."
    rest=${rest#* }
    if [[ ${rest%% *} == "$1" ]]; then
      f=${f#/proc/}
      printf '%s\n' "${f%/stat}"
    fi
  done
}

proc_start_time() { # pid -> its start time (field 22 of /proc/PID/stat)
  local stat
  { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  # shellcheck disable=SC2086 # split on purpose: the fields after "(comm)"
  set -- $stat
  printf '%s' "${20}"
}

# nginx's master stops its workers on SIGTERM; a master that died (or was
# killed) leaves them serving on their own. Their pids and start times are
# kept at start, so that stop_proxy finds them even then.
record_nginx_workers() {
  local kid pid
  pid=$(owned_pid nginx) || return 0
  for kid in $(child_pids "$pid"); do
    printf '%s %s\n' "$kid" "$(proc_start_time "$kid")"
  done >"$NGINX_DIR/workers"
}

stop_proxy() {
  local pid kid want kids=()
  if pid=$(owned_pid nginx); then
    mapfile -t kids < <(child_pids "$pid")
  fi
  if [[ -f $NGINX_DIR/workers ]]; then
    while read -r kid want; do
      [[ -n $kid && $(proc_start_time "$kid" || true) == "$want" ]] && kids+=("$kid")
    done <"$NGINX_DIR/workers"
  fi
  stop_component nginx
  for kid in "${kids[@]}"; do
    if process_alive "$kid" && [[ $(tr '\0' ' ' <"/proc/$kid/cmdline" 2>/dev/null) == nginx:* ]]; then
      log "killing nginx worker $kid left behind"
      kill -KILL "$kid" 2>/dev/null || true
    fi
  done
  rm -f -- "$NGINX_DIR/workers"
  stop_component blackhole
  # Give init a moment to reap them, so that no "[nginx] <defunct>" lingers
  # for whoever checks with pgrep right after.
  local p i
  for p in ${pid:+"$pid"} "${kids[@]}"; do
    for ((i = 0; i < 50; i++)); do
      [[ -e /proc/$p ]] || break
      sleep 0.1
    done
  done
}

stop_all() {
  local name
  stop_proxy
  for name in kuzzle osmem redis; do
    stop_component "$name"
  done
}

any_running() {
  local name
  for name in "${COMPONENTS[@]}" "${PROXY_COMPONENTS[@]}"; do
    owned_pid "$name" >/dev/null && return 0
  done
  return 1
}

proxy_running() {
  owned_pid nginx >/dev/null && owned_pid blackhole >/dev/null
}

all_running() {
  local name
  for name in "${COMPONENTS[@]}"; do
    owned_pid "$name" >/dev/null || return 1
  done
  return 0
}

lock_stack() {
  mkdir -p -- "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock 9
}

print_locations() {
  log "Kuzzle:  $KUZZLE_URL  (HTTP + WebSocket)"
  log "Redis:   127.0.0.1:$REDIS_PORT   storage: http://127.0.0.1:$STORAGE_PORT"
  if [[ -n $TLS_PORT ]]; then
    log "TLS:     https://localhost:$TLS_PORT  (CA: $TLS_DIR/ca.pem; faults: 503 on $((TLS_PORT + 1)), 504 on $((TLS_PORT + 2)), 502 on $((TLS_PORT + 3)), 1 s keep-alive on $((TLS_PORT + 4)))"
  fi
  log "logs:    $(log_file kuzzle)"
  log "         $(log_file osmem)"
  log "         $(log_file redis)"
  if [[ -n $TLS_PORT ]]; then
    log "         $(log_file nginx)  (access log: $NGINX_DIR/access.log)"
    log "         $(log_file blackhole)"
  fi
}

start_failed() { # component message
  log "$2"
  show_tail "$(log_file "$1")"
  log "stopping what was started"
  stop_all || true
  exit 1
}

# ---------------------------------------------------------------------------
# TLS proxy
# ---------------------------------------------------------------------------

# Kuzzle's server.maxRequestSize for this stack's kuzzlerc (else Kuzzle's
# default), in bytes, as Kuzzle parses it.
kuzzle_max_request_size() {
  (cd -- "$KUZZLE_DIR" && RC="$RC_FILE" node -e '
    "use strict";
    const unwrap = (m) => (m && m.default) || m;
    const bytes = unwrap(require("kuzzle/dist/lib/util/bytes"));
    const defaults = unwrap(require("kuzzle/dist/lib/config/default.config.js"));
    const rc = JSON.parse(require("fs").readFileSync(process.env.RC, "utf8"));
    const value = rc.server && rc.server.maxRequestSize !== undefined
      ? rc.server.maxRequestSize : defaults.server.maxRequestSize;
    const n = bytes(value);
    if (!(Number.isSafeInteger(n) && n > 0)) {
      process.stderr.write(`cannot read server.maxRequestSize (${JSON.stringify(value)})\n`);
      process.exit(1);
    }
    process.stdout.write(String(n));')
}

# localhost names [::1] here too: listen there as well, or a client would try
# it first, be refused, and only then use 127.0.0.1.
localhost_has_v6() {
  getent ahosts localhost 2>/dev/null | grep -q '^::1[[:space:]]' \
    && grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null
}

# The nginx config for the current settings, on stdout.
render_nginx_conf() {
  local max body_kib user="" v6 stamp
  [[ $NGINX_DIR =~ ^[A-Za-z0-9/._+-]+$ ]] \
    || die "the run dir '$NGINX_DIR' has characters nginx's config would need quoted: use a checkout path of [A-Za-z0-9/._+-]"
  ((${#NGINX_DIR} <= 90)) \
    || die "the run dir '$NGINX_DIR' is too long for the fault upstreams' Unix sockets (108 bytes): use a shorter checkout path or stack name"
  max=$(kuzzle_max_request_size) || die "cannot read Kuzzle's server.maxRequestSize"
  # A quarter above Kuzzle's limit (64 KiB at least).
  body_kib=$(((max + (max / 4 > 65536 ? max / 4 : 65536) + 1023) / 1024))
  # As root, nginx would run its workers as nobody, who may not reach the run
  # dir (temp files of large bodies): they run as the stack's user instead.
  if [[ $(id -u) -eq 0 ]]; then
    user="user $(id -un) $(id -gn);"
  fi
  if localhost_has_v6; then v6='s/^#V6/   /'; else v6='/^#V6/d'; fi
  stamp="certificate sha256 $(sha256sum <"$TLS_DIR/server.pem" | cut -d' ' -f1)"
  sed -e "s|@STAMP@|$stamp|g" \
      -e "s|@USER@|$user|g" \
      -e "s|@NGINX_DIR@|$NGINX_DIR|g" \
      -e "s|@TLS_DIR@|$TLS_DIR|g" \
      -e "s|@KUZZLE_PORT@|$PORT|g" \
      -e "s|@KUZZLE_MAX@|$max|g" \
      -e "s|@BODY_MAX@|${body_kib}k|g" \
      -e "s|@TLS_PORT@|$TLS_PORT|g" \
      -e "s|@PORT_503@|$((TLS_PORT + 1))|g" \
      -e "s|@PORT_504@|$((TLS_PORT + 2))|g" \
      -e "s|@PORT_502@|$((TLS_PORT + 3))|g" \
      -e "s|@PORT_IDLE@|$((TLS_PORT + 4))|g" \
      -e "$v6" \
      "$STACK_FILES/nginx.conf.in"
}

nginx_args() { printf '%s\n' -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" -e stderr; }

tls_code() { # port path -> HTTP status over TLS (000 when nothing answers)
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$TLS_DIR/ca.pem" \
    --resolve "localhost:$1:127.0.0.1" "https://localhost:$1$2" 2>/dev/null || true
}

# The proxy and its fault ports answer as they should (all but the 504 one,
# which takes 2 s: its upstream's socket is checked instead).
proxy_up() {
  [[ $(tls_code "$TLS_PORT" /_publicApi) == 200 ]] \
    && [[ $(tls_code $((TLS_PORT + 4)) /_publicApi) == 200 ]] \
    && [[ $(tls_code $((TLS_PORT + 1)) /) == 503 ]] \
    && [[ $(tls_code $((TLS_PORT + 3)) /) == 502 ]] \
    && [[ -S $NGINX_DIR/blackhole.sock ]]
}

# Starts the fault upstream and nginx for the current settings; on failure,
# shows the log that tells why and returns 1 (the caller stops things).
start_proxy() {
  local conf nginx
  nginx=$(nginx_bin) || { log "nginx is not installed: run 'install'"; return 1; }
  conf=$(render_nginx_conf) || return 1
  mkdir -p -- "$NGINX_DIR/tmp"
  printf '%s\n' "$conf" >"$NGINX_DIR/nginx.conf"
  [[ -f $NGINX_DIR/access.log ]] && mv -f -- "$NGINX_DIR/access.log" "$NGINX_DIR/access.log.prev"

  log "starting the never-answering upstream (for port $((TLS_PORT + 2)))"
  launch blackhole python3 "$STACK_FILES/blackhole.py" "$NGINX_DIR/blackhole.sock" "$NGINX_DIR/refused.sock" \
    || { log "blackhole.py did not start"; return 1; }
  if ! wait_until 10 blackhole test -S "$NGINX_DIR/blackhole.sock"; then
    show_tail "$(log_file blackhole)"; return 1
  fi

  local args
  mapfile -t args < <(nginx_args)
  if ! "$nginx" -t -q "${args[@]}" >"$NGINX_DIR/config-test.log" 2>&1; then
    log "nginx refuses its config $NGINX_DIR/nginx.conf"
    show_tail "$NGINX_DIR/config-test.log"; return 1
  fi
  log "starting nginx (TLS) on 127.0.0.1:$TLS_PORT..$((TLS_PORT + 4)) in front of Kuzzle"
  launch nginx "$nginx" "${args[@]}" || { log "nginx did not start"; return 1; }
  if ! wait_until 15 nginx proxy_up; then
    show_tail "$(log_file nginx)"; return 1
  fi
  record_nginx_workers
  log "TLS proxy ready (nginx pid $(owned_pid nginx), blackhole pid $(owned_pid blackhole))"
}

check_ports_free() { # port:what ...
  local p
  for p in "$@"; do
    port_in_use "${p%%:*}" && die "port ${p%%:*} (for ${p#*:}) is already in use on 127.0.0.1: stop whatever holds it, or pick other ports (KUZZLE_PORT, KUZZLE_REDIS_PORT, KUZZLE_STORAGE_PORT, KUZZLE_TLS_PORT)"
  done
  return 0
}

tls_port_list() { # -> port:what for each TLS port
  ((${#TLS_PORTS[@]})) || return 0
  printf '%s\n' "${TLS_PORTS[0]}:the TLS proxy" "${TLS_PORTS[1]}:the TLS proxy's 503 port" \
    "${TLS_PORTS[2]}:the TLS proxy's 504 port" "${TLS_PORTS[3]}:the TLS proxy's 502 port" \
    "${TLS_PORTS[4]}:the TLS proxy's 1 s keep-alive port"
}

# On a stack already running: the proxy as the settings want it (started,
# restarted with a new config, stopped), Kuzzle and its data untouched.
ensure_proxy() {
  if [[ -z $TLS_PORT ]]; then
    if owned_pid nginx >/dev/null || owned_pid blackhole >/dev/null; then
      log "no KUZZLE_TLS_PORT any more: stopping the TLS proxy"
      stop_proxy
    fi
    return 0
  fi
  local conf
  conf=$(render_nginx_conf) || exit 1
  if proxy_running && [[ -f $NGINX_DIR/nginx.conf && $conf == "$(cat -- "$NGINX_DIR/nginx.conf")" ]] && proxy_up; then
    return 0
  fi
  if owned_pid nginx >/dev/null || owned_pid blackhole >/dev/null; then
    log "TLS proxy settings changed or proxy unhealthy: restarting it"
  fi
  stop_proxy
  local ports
  mapfile -t ports < <(tls_port_list)
  check_ports_free "${ports[@]}"
  start_proxy || { log "stopping the TLS proxy (Kuzzle keeps running)"; stop_proxy; exit 1; }
}

write_settings() {
  printf 'port=%s\nredis_port=%s\nstorage_port=%s\ntls_port=%s\n' \
    "$PORT" "$REDIS_PORT" "$STORAGE_PORT" "$TLS_PORT" >"$SETTINGS_FILE"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

cmd_start() {
  cmd_install
  lock_stack
  load_settings
  local rc
  rc=$(render_rc)

  if all_running; then
    if [[ -f $RC_FILE && $rc == "$(cat -- "$RC_FILE")" ]] && kuzzle_up; then
      # Only the proxy may differ from what runs: it alone is (re)started.
      ensure_proxy
      write_settings
      log "already running and healthy"
      print_locations
      return 0
    fi
    if [[ -f $RC_FILE && $rc != "$(cat -- "$RC_FILE")" ]]; then
      die "already running with other settings (ports or KUZZLE_RC_EXTRA): run 'reset' to restart it with the new ones, or 'stop' first"
    fi
    log "running but Kuzzle does not answer: restarting the stack"
  fi
  if any_running; then
    log "partially running: stopping the leftovers first"
  fi
  stop_all

  local ports
  mapfile -t ports < <(tls_port_list)
  check_ports_free "$PORT:Kuzzle" "$REDIS_PORT:Redis" "$STORAGE_PORT:storage" "${ports[@]}"

  # Record the settings before starting, so that stop/status find them.
  printf '%s\n' "$rc" >"$RC_FILE"
  write_settings
  printf '%s' "$RC_EXTRA" >"$RC_EXTRA_FILE"
  rm -f -- "$ADMIN_CACHE"   # fresh, empty data: no admin yet

  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  launch redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize no --dir "$RUN_DIR" --logfile '' \
    || start_failed redis "Redis did not start"
  wait_until 15 redis redis_ping || start_failed redis "Redis does not answer PING"

  log "starting osmem-server on 127.0.0.1:$STORAGE_PORT"
  launch osmem "$OSMEM_BIN" -addr "127.0.0.1:$STORAGE_PORT" -no-stdin-watch \
    || start_failed osmem "osmem-server did not start"
  wait_until 15 osmem storage_up || start_failed osmem "osmem-server does not answer"

  log "starting Kuzzle on 127.0.0.1:$PORT"
  launch kuzzle env kuzzle_config="$RC_FILE" KUZZLE_STACK_KUZZLE_DIR="$KUZZLE_DIR" \
    node --require "$STACK_FILES/opensearch-compat.js" "$STACK_FILES/server.js" \
    || start_failed kuzzle "Kuzzle did not start"
  wait_until "$READY_TIMEOUT" kuzzle kuzzle_up || start_failed kuzzle "Kuzzle is not ready"

  if [[ -n $TLS_PORT ]]; then
    start_proxy || { log "the TLS proxy did not start: stopping what was started"; stop_all || true; exit 1; }
  fi

  log "ready (Kuzzle pid $(owned_pid kuzzle), osmem pid $(owned_pid osmem), redis pid $(owned_pid redis))"
  print_locations
}

cmd_stop() {
  if [[ ! -d $RUN_DIR ]]; then
    log "not running (no $RUN_DIR)"
    return 0
  fi
  lock_stack
  if ! any_running; then
    stop_all   # forgets stale pid files
    log "not running"
    return 0
  fi
  stop_all
  log "stopped"
}

log_components() { # name... -> one line each; fails when one is not running
  local name pid all=0
  for name in "$@"; do
    if pid=$(owned_pid "$name"); then
      log "$(printf '%-7s running (pid %s)' "$name" "$pid")"
    else
      log "$(printf '%-7s not running' "$name")"
      all=1
    fi
  done
  return "$all"
}

cmd_status() {
  if [[ ! -f $SETTINGS_FILE ]]; then
    log "not started yet (no $SETTINGS_FILE)"
    return 1
  fi
  load_settings
  local ok=0
  log_components "${COMPONENTS[@]}" || ok=1
  if kuzzle_up; then
    log "Kuzzle answers on $KUZZLE_URL"
  else
    log "Kuzzle does not answer on $KUZZLE_URL"
    ok=1
  fi
  if [[ -n $TLS_PORT ]]; then
    log_components "${PROXY_COMPONENTS[@]}" || ok=1
    if proxy_up; then
      log "TLS proxy answers on https://localhost:$TLS_PORT (and its fault ports)"
    else
      log "TLS proxy does not answer as it should on https://localhost:$TLS_PORT..$((TLS_PORT + 4))"
      ok=1
    fi
  elif owned_pid nginx >/dev/null; then
    log "nginx runs but no KUZZLE_TLS_PORT is set: 'start' stops it"
  fi
  if ((ok == 0)); then log "healthy"; else log "NOT healthy"; fi
  return "$ok"
}

cmd_reset() {
  cmd_stop
  cmd_start
}

cmd_logs() {
  local lines=20 which=() arg
  for arg in "$@"; do
    case $arg in
      redis|osmem|kuzzle|nginx|blackhole|access) which+=("$arg") ;;
      ''|*[!0-9]*) die "logs: unknown argument '$arg' (expected redis, osmem, kuzzle, nginx, blackhole, access or a line count)" ;;
      *) lines=$arg ;;
    esac
  done
  if ((${#which[@]} == 0)); then
    which=("${COMPONENTS[@]}")
    [[ -n $(recorded_setting tls_port) ]] && which+=(nginx blackhole access)
  fi
  local name f
  for name in "${which[@]}"; do
    if [[ $name == access ]]; then f=$NGINX_DIR/access.log; else f=$(log_file "$name"); fi
    printf '%s: %s\n' "$name" "$f"
    if ((lines > 0)) && [[ -f $f ]]; then
      tail -n "$lines" -- "$f" | sed 's/^/    /'
    fi
  done
}

# --- admin ---

# api METHOD PATH [BODY [TOKEN]] -> sets API_CODE and API_BODY
api() {
  local method=$1 path=$2 body=${3:-} token=${4:-} out
  local args=(-s -S --max-time 30 -X "$method" -o - -w '\n%{http_code}' -H 'Content-Type: application/json')
  [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
  if [[ -n $body ]]; then
    out=$(curl "${args[@]}" --data-binary @- "$KUZZLE_URL$path" <<<"$body") || die "request $method $path failed"
  else
    out=$(curl "${args[@]}" "$KUZZLE_URL$path") || die "request $method $path failed"
  fi
  API_CODE=${out##*$'\n'}
  API_BODY=${out%$'\n'*}
}

# json_field EXPR: reads JSON on stdin, prints the JS expression on `r`.
json_field() {
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      let r; try { r = JSON.parse(s); } catch { process.exit(3); }
      const v = (new Function("r", "return (" + process.argv[1] + ");"))(r);
      if (v === undefined || v === null) process.exit(4);
      process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));
    });' "$1"
}

json_obj() { # key value ... -> compact JSON object of strings
  node -e '
    const a = process.argv.slice(1), o = {};
    for (let i = 0; i < a.length; i += 2) o[a[i]] = a[i + 1];
    process.stdout.write(JSON.stringify(o));' "$@"
}

api_error() { # what
  die "$1: HTTP $API_CODE $(json_field 'r.error ? r.error.id + ": " + r.error.message : (r.id ? r.id + ": " + r.message : JSON.stringify(r))' <<<"$API_BODY" 2>/dev/null || printf '%s' "$API_BODY")"
}

cmd_admin() {
  load_settings
  all_running && kuzzle_up || die "the stack is not running: run 'start' first"
  lock_stack

  local exists jwt key body
  # Once the first admin exists (created with reset=true), anonymous users may
  # not even ask: a 401 means "yes".
  api GET /_adminExists
  case $API_CODE in
    200) exists=$(json_field 'r.result.exists' <<<"$API_BODY") || die "unexpected answer to /_adminExists: $API_BODY" ;;
    401) exists=true ;;
    *) api_error "cannot check whether an admin exists" ;;
  esac

  if [[ $exists != true ]]; then
    body=$(node -e '
      const [u, p] = process.argv.slice(1);
      process.stdout.write(JSON.stringify({ content: {}, credentials: { local: { username: u, password: p } } }));' \
      "$ADMIN_USER" "$ADMIN_PASSWORD")
    api POST "/_createFirstAdmin/$ADMIN_USER?reset=true&refresh=wait_for" "$body"
    [[ $API_CODE == 200 ]] || api_error "cannot create the first admin '$ADMIN_USER'"
    log "first admin '$ADMIN_USER' created; anonymous access is now restricted"
  fi

  api POST /_login/local "$(json_obj username "$ADMIN_USER" password "$ADMIN_PASSWORD")"
  [[ $API_CODE == 200 ]] || api_error "cannot log in as '$ADMIN_USER' (an admin already exists with other credentials?)"
  jwt=$(json_field 'r.result.jwt' <<<"$API_BODY") || die "no jwt in the login answer"

  # Reuse the key cached for this user while it is still valid (two keys
  # created in the same second for one user come out equal anyway).
  key=""
  if [[ -f $ADMIN_CACHE ]] && [[ $(json_field 'r.username' <"$ADMIN_CACHE" 2>/dev/null || true) == "$ADMIN_USER" ]]; then
    key=$(json_field 'r.apiKey' <"$ADMIN_CACHE" 2>/dev/null || true)
    if [[ -n $key ]]; then
      api POST /_checkToken "$(json_obj token "$key")"
      if [[ $API_CODE != 200 || $(json_field 'r.result.valid' <<<"$API_BODY" 2>/dev/null || true) != true ]]; then
        key=""
      fi
    fi
  fi
  if [[ -z $key ]]; then
    api POST "/users/$ADMIN_USER/api-keys/_create?refresh=wait_for" \
      "$(json_obj description "kuzzle-stack admin key ($STACK_NAME)")" "$jwt"
    [[ $API_CODE == 200 ]] || api_error "cannot create an API key for '$ADMIN_USER'"
    key=$(json_field 'r.result._source.token' <<<"$API_BODY") || die "no token in the API key answer: $API_BODY"
    log "API key created for '$ADMIN_USER'"
  fi

  local line
  line=$(json_obj username "$ADMIN_USER" password "$ADMIN_PASSWORD" apiKey "$key")
  (umask 077 && printf '%s\n' "$line" >"$ADMIN_CACHE")
  printf '%s\n' "$line"
}

# Fault tests: crash Kuzzle alone (SIGKILL, as a crash would), keeping Redis
# and the storage engine with their data, then start it again.
cmd_kill_kuzzle() {
  lock_stack
  load_settings
  local pid
  pid=$(owned_pid kuzzle) || die "Kuzzle is not running"
  kill -KILL "$pid"
  local i
  for ((i = 0; i < 50; i++)); do
    owned_pid kuzzle >/dev/null || break
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
    sleep 0.1
  done
  log "Kuzzle (pid $pid) killed; Redis and storage keep running"
}

cmd_start_kuzzle() {
  lock_stack
  load_settings
  owned_pid redis >/dev/null && owned_pid osmem >/dev/null \
    || die "Redis and storage must run: use 'start'"
  if owned_pid kuzzle >/dev/null && kuzzle_up; then
    log "Kuzzle already running"
    return 0
  fi
  log "starting Kuzzle on 127.0.0.1:$PORT (existing data kept)"
  launch kuzzle env kuzzle_config="$RC_FILE" KUZZLE_STACK_KUZZLE_DIR="$KUZZLE_DIR" \
    node --require "$STACK_FILES/opensearch-compat.js" "$STACK_FILES/server.js" \
    || die "Kuzzle did not start"
  wait_until "$READY_TIMEOUT" kuzzle kuzzle_up || { show_tail "$(log_file kuzzle)"; die "Kuzzle is not ready"; }
  log "Kuzzle ready (pid $(owned_pid kuzzle))"
}

# One JSON line for clients of the TLS proxy (static: it does not check that
# the proxy runs; `start` or `status` do).
cmd_tls_info() {
  load_settings
  [[ -n $TLS_PORT ]] || die "no TLS proxy for this stack: set KUZZLE_TLS_PORT (and run 'start')"
  [[ -s $TLS_DIR/ca.pem ]] || die "no $TLS_DIR/ca.pem yet: run 'install' or 'start'"
  TI_PORT=$TLS_PORT TI_CA="$TLS_DIR/ca.pem" TI_LOG="$NGINX_DIR/access.log" node -e '
    const p = Number(process.env.TI_PORT);
    process.stdout.write(JSON.stringify({
      port: p,
      url: `https://localhost:${p}`,
      host: "localhost",
      wrongHost: "127.0.0.1",
      caFile: process.env.TI_CA,
      faultPorts: { status503: p + 1, timeout504: p + 2, refused502: p + 3, keepalive1s: p + 4 },
      accessLog: process.env.TI_LOG,
    }) + "\n");'
}

# ---------------------------------------------------------------------------

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    install) cmd_install; log "installed in $STACK_ROOT" ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    admin) cmd_admin ;;
    logs) cmd_logs "$@" ;;
    kill-kuzzle) cmd_kill_kuzzle ;;
    start-kuzzle) cmd_start_kuzzle ;;
    tls-info) cmd_tls_info ;;
    -h|--help|help) usage ;;
    '') usage; exit 2 ;;
    *) usage; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
