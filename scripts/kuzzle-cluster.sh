#!/usr/bin/env bash
# A local Kuzzle cluster: N Kuzzle 2.56 nodes forming one real cluster, over
# one Redis and one storage (osmem-server), for tests and benchmarks.
#
# Usage (from anywhere): scripts/kuzzle-cluster.sh <command>
#
#   up N      start N nodes (1..6) and wait until every node reports N active
#             nodes; a cluster already up is stopped first (so `up` always
#             leaves exactly N fresh nodes, with empty data)
#   nodes     print each node's host:port as a client on this machine
#             reaches it, one a line, node 0 first
#   kill I    SIGKILL node I's Kuzzle (its forwarder, Redis and storage stay)
#   term I    SIGTERM node I's Kuzzle and wait until it exited (a clean stop:
#             rolling restarts)
#   start I   start node I's Kuzzle again; wait until every node reports the
#             full count again
#   status    print cluster:status as node 0 answers it
#   down      stop everything this script started and remove its namespaces
#
# How it is laid out. Kuzzle's cluster wants a private, non-loopback IPv4 per
# node and the same cluster ports (7510, 7511) on every node, so each node
# runs in a network namespace of its own, `kzc-<name>-<i>`, with address
# 10.77.0.(10+i) on a veth pair to a bridge in `kzc-<name>-infra`, where Redis
# (10.77.0.1:6379) and osmem-server (10.77.0.1:9200) run. These addresses
# exist only inside the namespaces this script creates: nothing is added to
# the machine's own network. Each node's Kuzzle listens on the loopback of
# its namespace (scripts/kuzzle-stack/server.js), and a forwarder
# (kuzzle-cluster/forward.py) listens on 127.0.0.1:(KUZZLE_CLUSTER_BASE_PORT
# + i) of this machine and connects inside the node's namespace. When the
# node is dead, the forwarder resets the connection that found it so (its
# request unread) and stops listening, so that further connects are refused
# as by a dead host, until the node accepts again.
#
# What cluster:status returns: {"activeNodes": n, "nodes": [{"address":
# "10.77.0.10", "birthdate", "id"}...], "activity": [{"address", "date",
# "event": "joined"|"evicted", "id", "reason"}...]}: the cluster-internal
# addresses, not the ones clients reach.
#
# Environment:
#   KUZZLE_CLUSTER_NAME       name (default: c), one set of namespaces each
#   KUZZLE_CLUSTER_BASE_PORT  node i is reached at 127.0.0.1:(base + i)
#                             (default: 7700)
# Needs root (namespaces); installs iproute2 if `ip` is missing and the
# stack's software with scripts/kuzzle-stack.sh install.
set -euo pipefail

SCRIPTS_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPTS_DIR/.." && pwd -P)
STACK_FILES="$SCRIPTS_DIR/kuzzle-stack"
KUZZLE_DIR="$REPO_ROOT/.stack/kuzzle"
OSMEM_BIN="$REPO_ROOT/.stack/py/osmem_server/bin/osmem-server"
FORWARD="$SCRIPTS_DIR/kuzzle-cluster/forward.py"

NAME=${KUZZLE_CLUSTER_NAME:-c}
BASE_PORT=${KUZZLE_CLUSTER_BASE_PORT:-7700}
[[ $NAME =~ ^[a-z0-9]{1,8}$ ]] || { echo "KUZZLE_CLUSTER_NAME must be 1-8 of [a-z0-9]" >&2; exit 2; }
RUN="$REPO_ROOT/.stack/cluster/$NAME"
INFRA="kzc-$NAME-infra"
BRIDGE=kzbr0
INFRA_IP=10.77.0.1
KUZZLE_PORT_IN_NS=7512
MAX_NODES=6
READY_TIMEOUT=120

log() { printf '[kuzzle-cluster:%s] %s\n' "$NAME" "$*" >&2; }
die() { printf '[kuzzle-cluster:%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

ns() { printf 'kzc-%s-%s' "$NAME" "$1"; }
node_ip() { printf '10.77.0.%s' $((10 + $1)); }
node_port() { printf '%s' $((BASE_PORT + $1)); }
count() { cat "$RUN/count" 2>/dev/null || echo 0; }

tails() {
  local f
  for f in "$RUN"/*.log; do
    [[ -s $f ]] || continue
    printf -- '----- last 30 lines of %s -----\n' "$f" >&2
    tail -n 30 -- "$f" >&2 || true
  done
}

need() {
  if ! command -v ip >/dev/null 2>&1; then
    log "installing iproute2"
    DEBIAN_FRONTEND=noninteractive apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 >&2
  fi
  [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces)"
  bash "$SCRIPTS_DIR/kuzzle-stack.sh" install
}

# launch NAME NETNS CMD...: detached, its pid in $RUN/NAME.pid, output in
# $RUN/NAME.log. An empty NETNS runs it in the machine's namespace.
launch() {
  local name=$1 netns=$2; shift 2
  local prefix=()
  [[ -n $netns ]] && prefix=(ip netns exec "$netns")
  rm -f -- "$RUN/$name.pid"
  KUZZLE_CLUSTER_RUN="$RUN" nohup setsid "${prefix[@]}" sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$RUN/$name.pid" "$@" >"$RUN/$name.log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $RUN/$name.pid ]] && return 0
    sleep 0.1
  done
  die "$name did not start"
}

alive() { # pid
  local stat state
  { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  state=${stat##*) }
  state=${state%% *}
  [[ -n $state && $state != Z && $state != X ]]
}

pid_of() { tr -dc '0-9' 2>/dev/null <"$RUN/$1.pid"; }

stop_process() { # name signal
  local pid i
  pid=$(pid_of "$1") || true
  [[ -n $pid ]] || return 0
  if alive "$pid"; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for ((i = 0; i < 400; i++)); do
      alive "$pid" || break
      sleep 0.05
    done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
    fi
  fi
  rm -f -- "$RUN/$1.pid"
}

# POST a Kuzzle API request to node I through its forwarder.
api() { # i json
  curl -s --max-time 5 -H 'content-type: application/json' -d "$2" \
    "http://127.0.0.1:$(node_port "$1")/_query" 2>/dev/null || true
}

active_nodes() { # i -> activeNodes or empty
  api "$1" '{"controller":"cluster","action":"status"}' |
    sed -n 's/.*"activeNodes":\([0-9]*\).*/\1/p'
}

# Every node not marked down reports `want` active nodes.
wait_converged() {
  local want=$1 deadline=$((SECONDS + READY_TIMEOUT)) i ok
  while ((SECONDS < deadline)); do
    ok=1
    for ((i = 0; i < $(count); i++)); do
      [[ -f $RUN/down-$i ]] && continue
      [[ $(active_nodes "$i") == "$want" ]] || { ok=0; break; }
    done
    ((ok)) && return 0
    sleep 0.5
  done
  tails
  die "the nodes did not all report $want active nodes within ${READY_TIMEOUT}s"
}

rc_file() { # i
  local i=$1
  cat >"$RUN/kuzzlerc-$i.json" <<EOF
{
  "server": {"port": $KUZZLE_PORT_IN_NS},
  "cluster": {"enabled": true, "interface": "eth0", "ip": "private", "heartbeat": 1000,
              "joinTimeout": 30000, "minimumNodes": 1},
  "services": {
    "internalCache": {"backend": "redis", "node": {"host": "$INFRA_IP", "port": 6379}},
    "memoryStorage": {"backend": "redis", "node": {"host": "$INFRA_IP", "port": 6379}},
    "storageEngine": {"majorVersion": "7", "client": {"node": "http://$INFRA_IP:9200"}}
  }
}
EOF
}

start_kuzzle() { # i
  local i=$1
  rc_file "$i"
  rm -f -- "$RUN/down-$i"
  launch "kuzzle-$i" "$(ns "$i")" env kuzzle_config="$RUN/kuzzlerc-$i.json" \
    KUZZLE_STACK_KUZZLE_DIR="$KUZZLE_DIR" \
    node --require "$STACK_FILES/opensearch-compat.js" "$STACK_FILES/server.js"
}

cmd_down() {
  local i name
  for name in "$RUN"/*.pid; do
    [[ -e $name ]] || continue
    name=$(basename "$name" .pid)
    case $name in kuzzle-*) stop_process "$name" KILL ;; esac
  done
  for name in "$RUN"/*.pid; do
    [[ -e $name ]] || continue
    stop_process "$(basename "$name" .pid)" TERM
  done
  for i in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^kzc-$NAME-" || true); do
    ip netns pids "$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$i" 2>/dev/null || true
  done
  rm -rf -- "$RUN"
  log "down"
}

cmd_up() {
  local n=${1:-}
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAX_NODES)) || die "up N: N in 1..$MAX_NODES"
  need
  cmd_down 2>/dev/null || true
  mkdir -p -- "$RUN"
  trap 'status=$?; if ((status)); then tails; cmd_down; fi' EXIT
  echo "$n" >"$RUN/count"
  local i
  for ((i = 0; i < n; i++)); do
    touch "$RUN/down-$i" # until started
    if (exec 3<>"/dev/tcp/127.0.0.1/$(node_port "$i")") 2>/dev/null; then
      die "port $(node_port "$i") is in use (KUZZLE_CLUSTER_BASE_PORT)"
    fi
  done
  ip netns add "$INFRA"
  ip -n "$INFRA" link set lo up
  ip -n "$INFRA" link add "$BRIDGE" type bridge
  ip -n "$INFRA" addr add "$INFRA_IP/24" dev "$BRIDGE"
  ip -n "$INFRA" link set "$BRIDGE" up
  for ((i = 0; i < n; i++)); do
    ip netns add "$(ns "$i")"
    ip -n "$(ns "$i")" link set lo up
    ip -n "$(ns "$i")" link add eth0 type veth peer name "v$i" netns "$INFRA"
    ip -n "$(ns "$i")" addr add "$(node_ip "$i")/24" dev eth0
    ip -n "$(ns "$i")" link set eth0 up
    ip -n "$INFRA" link set "v$i" master "$BRIDGE"
    ip -n "$INFRA" link set "v$i" up
  done
  launch redis "$INFRA" redis-server --bind "$INFRA_IP" --port 6379 --protected-mode no \
    --save '' --appendonly no --daemonize no
  launch osmem "$INFRA" "$OSMEM_BIN" -addr "$INFRA_IP:9200" -no-stdin-watch
  local deadline=$((SECONDS + 30))
  until ip netns exec "$INFRA" curl -s -o /dev/null --max-time 2 "http://$INFRA_IP:9200/"; do
    ((SECONDS < deadline)) || die "osmem-server does not answer"
    sleep 0.2
  done
  # Nodes join one after the other: the first one creates Kuzzle's
  # internal indexes, which the others then find.
  for ((i = 0; i < n; i++)); do
    launch "forward-$i" "" python3 "$FORWARD" "$(node_port "$i")" "/run/netns/$(ns "$i")" \
      127.0.0.1 "$KUZZLE_PORT_IN_NS"
    start_kuzzle "$i"
    wait_converged $((i + 1))
  done
  trap - EXIT
  log "up: $n nodes, $(cmd_nodes | tr '\n' ' ')"
}

cmd_nodes() {
  local i
  for ((i = 0; i < $(count); i++)); do
    printf '127.0.0.1:%s\n' "$(node_port "$i")"
  done
}

check_index() { # i
  [[ $1 =~ ^[0-9]+$ ]] && (($1 < $(count))) || die "no node '$1' (the cluster has $(count))"
}

cmd_kill() {
  check_index "$1"
  touch "$RUN/down-$1"
  stop_process "kuzzle-$1" KILL
  log "node $1 killed"
}

cmd_term() {
  check_index "$1"
  touch "$RUN/down-$1"
  stop_process "kuzzle-$1" TERM
  log "node $1 stopped"
}

cmd_start() {
  check_index "$1"
  local pid
  pid=$(pid_of "kuzzle-$1") || true
  if [[ -n $pid ]] && alive "$pid"; then
    log "node $1 already runs"
    return 0
  fi
  start_kuzzle "$1"
  local up=0 i
  for ((i = 0; i < $(count); i++)); do [[ -f $RUN/down-$i ]] || up=$((up + 1)); done
  wait_converged "$up"
  log "node $1 rejoined ($up active)"
}

[[ -d $RUN || ${1:-} == up || ${1:-} == down ]] || { [[ ${1:-} == "" ]] || die "the cluster is not up"; }
case ${1:-} in
  up) cmd_up "${2:-}" ;;
  down) cmd_down ;;
  nodes) cmd_nodes ;;
  kill) cmd_kill "${2:?kill I}" ;;
  term) cmd_term "${2:?term I}" ;;
  start) cmd_start "${2:?start I}" ;;
  status) api 0 '{"controller":"cluster","action":"status"}'; echo ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
