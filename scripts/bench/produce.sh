#!/usr/bin/env bash
# The producer's benchmark (issue 15), in one command:
#
#   bash scripts/bench/produce.sh [REPS]        (3 rounds by default, ~4-5 minutes)
#
# Builds the library (scripts/build.sh, honouring CARGO_TARGET_DIR) and
# bench_produce.c against it (rpath: that target's release directory),
# starts its own stack (pbench: Kuzzle 7762, Redis 6596, storage 9462),
# runs every case once per round, in the same order each round (a, b, c,
# a, b, c...), each in a process of its own (its own peak RSS), the index
# deleted and created again before each delivery and mWrite run, then
# prints medians, spreads and ratios, and stops the stack.
#
# Cases (bench_produce.c says what each measures):
#   enqueue ids / noids   1,000,000 kuzzle_produce calls, one thread, memory
#                         mode, Kuzzle out of reach (nothing leaves)
#   mwrite                one kuzzle_mwrite of the 100,000 documents
#   memory x1             100,000 produced one by one, memory mode
#   interval x1           the same, spool synced every 1000 ms
#   always x8             the same from 8 threads, spool synced at every call
#   drain                 $N_DRAIN (1,000,000) documents spooled with Kuzzle
#                         out of reach (fill, a process), then drained by a
#                         new process with Kuzzle reachable (drain)
#   mwrite1m              one kuzzle_mwrite of the same $N_DRAIN documents
#                         (drain's yardstick)
# CASES picks some of them, in that order (e.g. CASES="drain mwrite1m":
# drain + its yardstick alone, 4-6 minutes a round on 2 cores).
# UPLINK=1: the delivery, drain and mWrite cases go through the emulated
# uplink (uplink_proxy.py on port 7765: 50 ms round trip, 10 Mbit/s each
# way) instead of straight to Kuzzle (e.g. UPLINK=1 CASES="mwrite memory x1
# interval x1").
# Every JSON line goes to $OUT (default build/pbench/results.jsonl).
set -euo pipefail

reps=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
work=$root/build/pbench
out=${OUT:-$work/results.jsonl}
port=7762
dead_port=7761 # nothing may listen there: the enqueue cases' Kuzzle
n_enqueue=${N_ENQUEUE:-1000000}
n_deliver=${N_DELIVER:-100000}
n_drain=${N_DRAIN:-1000000}
export KUZZLE_STACK_NAME=pbench KUZZLE_PORT=$port KUZZLE_REDIS_PORT=6596 KUZZLE_STORAGE_PORT=9462

mkdir -p "$work"
(cd "$root" && bash scripts/build.sh) >&2
cc -O2 -Wall -Wextra -Werror -std=c11 "$root/scripts/bench/bench_produce.c" -I "$root/include" \
  -L "$target_dir/release" -lkuzzle -lpthread -Wl,-rpath,"$target_dir/release" -o "$work/bench_produce"
bin=$work/bench_produce

if (exec 3<>"/dev/tcp/127.0.0.1/$dead_port") 2>/dev/null; then
  echo "produce.sh: something listens on $dead_port; the enqueue cases need it closed" >&2
  exit 1
fi
bash "$root/scripts/kuzzle-stack.sh" start >&2
uplink_pid=
trap '[ -z "$uplink_pid" ] || kill "$uplink_pid" 2>/dev/null; bash "$root/scripts/kuzzle-stack.sh" stop >&2 || true' EXIT
if [ "${UPLINK:-0}" = 1 ]; then
  # What the cases send goes through it; the enqueue cases' port stays dead.
  python3 "$root/scripts/bench/uplink_proxy.py" 7765 "$port" --no-stdin-watch --max-seconds 14400 \
    >"$work/uplink.log" 2>&1 &
  uplink_pid=$!
  for _ in $(seq 100); do grep -q ready "$work/uplink.log" && break; sleep 0.1; done
  grep -q ready "$work/uplink.log" || { echo "produce.sh: the uplink proxy did not start" >&2; exit 1; }
  port=7765
fi

cases=("enqueue ids" "enqueue noids" "mwrite" "memory x1" "interval x1" "always x8" drain mwrite1m)
if [ -n "${CASES:-}" ]; then
  picked=()
  for c in "${cases[@]}"; do
    case " $CASES " in *" $c "*) picked+=("$c") ;; esac
  done
  [ ${#picked[@]} -gt 0 ] || { echo "produce.sh: CASES='$CASES' names no case" >&2; exit 1; }
  cases=("${picked[@]}")
fi
: >"$out"
for ((r = 1; r <= reps; r++)); do
  for c in "${cases[@]}"; do
    spool=$work/spool-$r
    rm -rf "$spool"
    load=$(cut -d' ' -f1 /proc/loadavg)
    case $c in
      "enqueue ids") cmd=("$bin" enqueue $dead_port "$n_enqueue" ids) ;;
      "enqueue noids") cmd=("$bin" enqueue $dead_port "$n_enqueue" noids) ;;
      mwrite) cmd=("$bin" mwrite $port pbench c "$n_deliver") ;;
      "memory x1") cmd=("$bin" deliver $port pbench c "$n_deliver" memory 1 "$spool") ;;
      "interval x1") cmd=("$bin" deliver $port pbench c "$n_deliver" interval 1 "$spool") ;;
      "always x8") cmd=("$bin" deliver $port pbench c "$n_deliver" always 8 "$spool") ;;
      drain)
        # The backlog, written while Kuzzle is out of reach: a row of its own.
        line=$("$bin" fill $dead_port pbench c "$n_drain" "$spool") ||
          { echo "produce.sh: fill failed (round $r): $line" >&2; exit 1; }
        echo "{\"round\":$r,\"load\":$load,\"name\":\"fill\",\"run\":$line}" >>"$out"
        echo "round $r, fill: $line" | cut -c1-220 >&2
        load=$(cut -d' ' -f1 /proc/loadavg)
        cmd=("$bin" drain $port pbench c "$n_drain" "$spool")
        ;;
      mwrite1m) cmd=("$bin" mwrite $port pbench c "$n_drain") ;;
    esac
    line=$("${cmd[@]}") || { echo "produce.sh: '$c' failed (round $r): $line" >&2; exit 1; }
    echo "{\"round\":$r,\"load\":$load,\"name\":\"$c\",\"run\":$line}" >>"$out"
    echo "round $r, $c: $line" | cut -c1-220 >&2
    rm -rf "$spool"
  done
done

dirty=$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock | grep -q . && echo ", src/ modified" || true)
link=$([ "${UPLINK:-0}" = 1 ] && echo "through the emulated uplink" || echo "loopback")
echo "commit $(git -C "$root" rev-parse --short HEAD)$dirty; $link; $(nproc) cores; spool on" \
  "$(df -T "$work" | awk 'NR == 2 {print $2}'); $n_enqueue enqueued, $n_deliver delivered per run;" \
  "$n_drain drained;" \
  "medians of $reps rounds"
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r.get("name", r["run"]["case"]), []).append(r)
med = statistics.median
def rate(case): return med(x["run"]["docs_per_s"] for x in by[case])
mw = {x["round"]: x["run"]["docs_per_s"] for x in by.get("mwrite", [])}
print("| case | docs/s (median) | min–max | ns/call | CPU µs/doc | peak RSS MB | vs mwrite (of medians) | vs mwrite, per round | fsyncs/s | disk bytes/doc | load |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for case, xs in by.items():
    v = [x["run"]["docs_per_s"] for x in xs]
    g = lambda k: med(x["run"][k] for x in xs) if k in xs[0]["run"] else None
    ns = g("ns_per_call")
    ratio = per = "–"
    if mw and case in ("memory x1", "interval x1", "always x8"):
        ratio = "%.0f%%" % (100 * rate(case) / rate("mwrite"))
        rs = sorted(100 * x["run"]["docs_per_s"] / mw[x["round"]] for x in xs if x["round"] in mw)
        per = "%.0f–%.0f%%" % (rs[0], rs[-1])
    fs = g("fsyncs_per_s")
    bpd = g("bytes_per_doc")
    cpu = g("cpu_us_per_doc")
    print("| %s | %s | %s–%s | %s | %s | %.1f | %s | %s | %s | %s | %s |" % (
        case, format(round(med(v)), ","), format(round(min(v)), ","), format(round(max(v)), ","),
        "%.0f" % ns if ns else "–", "%.2f" % cpu if cpu is not None else "–", g("peak_rss_mb"), ratio, per,
        "%.0f" % fs if fs is not None and fs >= 0 else "–",
        "%.0f" % bpd if bpd is not None and bpd >= 0 else "–",
        "%.2f" % med(x["load"] for x in xs)))
if "drain" in by:
    d = by["drain"]
    g = lambda k: med(x["run"][k] for x in d)
    print()
    print("drain: %s docs/s median (%s–%s), open %.2f s, peak RSS %.1f MB (VmHWM; %.1f–%.1f),"
          " sampled VmRSS max %.1f MB, spool %.1f MB at start, ok %s, failed %s, stored %s" % (
        format(round(g("docs_per_s")), ","), format(min(x["run"]["docs_per_s"] for x in d), ","),
        format(max(x["run"]["docs_per_s"] for x in d), ","), g("open_s"), g("peak_rss_mb"),
        min(x["run"]["peak_rss_mb"] for x in d), max(x["run"]["peak_rss_mb"] for x in d),
        g("max_sampled_rss_mb"), g("spool_bytes") / 1048576,
        "/".join(str(x["run"]["ok"]) for x in d), "/".join(str(x["run"]["failed"]) for x in d),
        "/".join(str(x["run"]["stored"]) for x in d)))
    if "mwrite1m" in by:
        m1 = {x["round"]: x["run"]["docs_per_s"] for x in by["mwrite1m"]}
        rs = sorted(100 * x["run"]["docs_per_s"] / m1[x["round"]] for x in d if x["round"] in m1)
        print("mwrite1m: %s docs/s median; drain / mwrite1m: %.0f%% (of medians), %.0f–%.0f%% per round" % (
            format(round(rate("mwrite1m")), ","), 100 * rate("drain") / rate("mwrite1m"), rs[0], rs[-1]))
EOF
