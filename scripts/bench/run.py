#!/usr/bin/env python3
"""The benchmark, in one command:

    python3 scripts/bench/run.py [--quick] [--reps N]

1. builds the library (cargo build --release), copies libkuzzle.so to
   build/bench/lib/ (so a rebuild elsewhere cannot change it mid-run) and
   builds bench_mwrite (C, through the C ABI) against that copy;
2. starts its own fresh Kuzzle stack named "bench" (port 7562; Redis 6396;
   storage 9262) with scripts/kuzzle-stack.sh reset, and the uplink proxy
   (uplink_proxy.py: 50 ms round trip, 10 Mbit/s per direction shared, one
   round trip per new connection) in front of it;
3. measures, in rounds (each round runs every case once, in a shuffled
   order, so a change of the machine's load hits every case alike), with the
   index deleted and created again before every single run:
   - libkuzzle (bench_mwrite: one kuzzle_mwrite of N documents) with default
     settings and alternatives (compression, concurrency,
     maxDocumentsPerRequest), on small (~80 B) and big (~2 KB) documents;
   - the official JS SDK (sdk_bench.js: bulk.mWrite 200 and 1,000 per call,
     sequential, HTTP and WebSocket);
   - the raw load client (raw_load.py: pre-built bodies of several shapes,
     as fast as possible): the server's limit;
   - the same through the uplink proxy (smaller N where a run would take
     over ~20 s);
4. prints a table and the targets of issue 8, writes
   scripts/bench/results/latest.json (every run, for comparison across runs)
   and latest.md (the table), draws scripts/bench/results/latest.png
   (chart.py, with matplotlib from pip in a git-ignored venv,
   scripts/bench/.venv, made on first use), and stops the stack and proxy.

--quick: one round, few cases (a smoke test, ~1.5 minutes).
--only REGEX: only the cases whose id (PATH/SHAPE/CLIENT/CONFIGURATION)
matches, e.g. --only 'small/(libkuzzle/default|raw)'.
Medians over the rounds are reported (3 rounds by default).
The machine is shared: the 1-minute load average before each run is
recorded with it, and shown in the table.
"""

import argparse
import random
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(REPO, "build", "bench")
RESULTS = os.path.join(HERE, "results")
VENV = os.path.join(HERE, ".venv")

STACK_ENV = {
    "KUZZLE_STACK_NAME": "bench",
    "KUZZLE_PORT": "7562",
    "KUZZLE_REDIS_PORT": "6396",
    "KUZZLE_STORAGE_PORT": "9262",
}
PORT = int(STACK_ENV["KUZZLE_PORT"])
PROXY_PORT = 7563
INDEX = "bench"
COLLECTION = "c"
RTT_MS = 50
MBIT = 10
RUN_TIMEOUT = 180  # seconds for one run of one case


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    log("+ " + (cmd if isinstance(cmd, str) else " ".join(cmd)))
    return subprocess.run(cmd, check=True, cwd=REPO, **kw)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def uptime_text():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: %s" % " ".join(map(str, loadavg()))


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return ""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(),
        "os": out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "rustc": out(["rustc", "--version"]),
        "node": out(["node", "--version"]),
        "python": platform.python_version(),
        "git_commit": out(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(out(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])),
    }


# ---------------------------------------------------------------------------
# Kuzzle and the stack
# ---------------------------------------------------------------------------

def http(method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (PORT, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stack(cmd):
    env = dict(os.environ, **STACK_ENV)
    sh(["bash", "scripts/kuzzle-stack.sh", cmd], env=env, stdout=subprocess.DEVNULL)


def fresh_index():
    """Deletes and creates the index and its collection, so every run starts
    on an empty collection and the in-memory storage does not balloon. If the
    stack went away (someone stopped every stack), starts it again once."""
    for attempt in (1, 2):
        try:
            http("DELETE", "/" + INDEX)
            st, body = http("POST", "/%s/_create" % INDEX, {})
            if st != 200:
                raise RuntimeError("index create: HTTP %d %s" % (st, body[:200]))
            st, body = http("PUT", "/%s/%s" % (INDEX, COLLECTION), {})
            if st != 200:
                raise RuntimeError("collection create: HTTP %d %s" % (st, body[:200]))
            return
        except (OSError, RuntimeError) as e:
            if attempt == 2:
                raise
            log("fresh_index: %s; starting the bench stack again" % e)
            stack("start")


def free_port(preferred):
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise RuntimeError("no free port")


class UplinkProxy:
    def __init__(self, port):
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "uplink_proxy.py"), str(port), str(PORT),
             "--rtt-ms", str(RTT_MS), "--mbit", str(MBIT), "--max-seconds", "3600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError("uplink_proxy did not start (%r)" % line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the proxy exits when its stdin closes
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def lib_case(path, shape, n, label, config, options=None):
    return {"client": "libkuzzle", "path": path, "shape": shape, "n": n, "label": label,
            "config": config, "options": options}


def sdk_case(path, shape, n, per_call, protocol):
    return {"client": "sdk", "path": path, "shape": shape, "n": n,
            "label": "%s %d/call" % ("HTTP" if protocol == "http" else "WebSocket", per_call),
            "per_call": per_call, "protocol": protocol}


def raw_case(path, shape, n, per_request, compression, ids, inflight):
    return {"client": "raw", "path": path, "shape": shape, "n": n,
            "label": "%s %s %d/req x%d" % (compression, "ids" if ids else "no-ids", per_request, inflight),
            "per_request": per_request, "compression": compression, "ids": ids, "inflight": inflight}


# Settings of libkuzzle tried besides the defaults. maxDocumentsPerRequest
# and concurrency are the library's knobs; "none"/"gzip" its request body
# compression (answers are always asked gzip).
def lib_configs(quick):
    g = {"compression": "gzip"}
    if quick:
        return [("default", {}), ("gzip c8 m5000", dict(g, concurrency=8, maxDocumentsPerRequest=5000))]
    n = {"compression": "none"}
    return [
        ("default", {}),
        ("none c8 m1000", dict(n, concurrency=8, maxDocumentsPerRequest=1000)),
        ("none c4 m1000", dict(n, concurrency=4, maxDocumentsPerRequest=1000)),
        ("none c2 m2000", dict(n, concurrency=2, maxDocumentsPerRequest=2000)),
        ("none c4 m2000", dict(n, concurrency=4, maxDocumentsPerRequest=2000)),
        ("none c8 m2000", dict(n, concurrency=8, maxDocumentsPerRequest=2000)),
        ("none c4 m5000", dict(n, concurrency=4, maxDocumentsPerRequest=5000)),
        ("none c8 m5000", dict(n, concurrency=8, maxDocumentsPerRequest=5000)),
        ("none c8 m10000", dict(n, concurrency=8, maxDocumentsPerRequest=10000)),
        ("gzip c1 m5000", dict(g, concurrency=1, maxDocumentsPerRequest=5000)),
        ("gzip c8 m5000", dict(g, concurrency=8, maxDocumentsPerRequest=5000)),
    ]


def cases_for(quick, n_small, n_big):
    c = []
    lo, up = "loopback", "uplink"
    # --- loopback, small documents
    for label, cfg in lib_configs(quick):
        c.append(lib_case(lo, "small", n_small, label, cfg))
    # the option that leaves _source out of the result (less memory, less CPU)
    c.append(lib_case(lo, "small", n_small, "default, source:false", {}, {"source": False}))
    sdk_small = [(1000, "http"), (1000, "websocket")] if quick else \
        [(200, "http"), (1000, "http"), (200, "websocket"), (1000, "websocket")]
    for per, proto in sdk_small:
        c.append(sdk_case(lo, "small", n_small, per, proto))
    if quick:
        raw_small = [(5000, "gzip", True, 8), (5000, "none", True, 8)]
    else:
        # every combination at 5,000 per request; the main ones at 1,000 and
        # 10,000; 1 in flight once (to show what concurrency buys)
        raw_small = [(5000, "gzip", True, 1)]
        for comp in ("gzip", "none"):
            for ids in (True, False):
                for inflight in (4, 8):
                    raw_small.append((5000, comp, ids, inflight))
        raw_small += [(1000, "gzip", True, 4), (1000, "gzip", True, 8), (1000, "none", True, 8),
                      (10000, "gzip", True, 8), (10000, "none", True, 8)]
    for per, comp, ids, inflight in raw_small:
        c.append(raw_case(lo, "small", n_small, per, comp, ids, inflight))
    # --- loopback, big documents (~2 KB: 400 per request stay under 1 MB
    # uncompressed; gzip lets 1,000 fit)
    big_lib = [("default", {})] if quick else [
        ("default", {}),
        ("gzip c8", {"compression": "gzip", "concurrency": 8}),
        ("none c8", {"compression": "none", "concurrency": 8}),
    ]
    for label, cfg in big_lib:
        c.append(lib_case(lo, "big", n_big, label, cfg))
    c.append(lib_case(lo, "big", n_big, "default, source:false", {}, {"source": False}))
    for proto in (["http"] if quick else ["http", "websocket"]):
        c.append(sdk_case(lo, "big", n_big, 200, proto))
    raw_big = [(1000, "gzip", True, 8)] if quick else \
        [(400, "none", True, 4), (400, "none", True, 8), (400, "gzip", True, 8), (1000, "gzip", True, 8)]
    for per, comp, ids, inflight in raw_big:
        c.append(raw_case(lo, "big", n_big, per, comp, ids, inflight))

    # --- uplink. N is lowered where a run would take over ~20 s.
    n_up_sdk = min(n_small, 20000)
    n_up_big = min(n_big, 5000)
    n_up_sdk_big = min(n_big, 2000)
    # "default": compression auto, which the slow health check through the
    # proxy turns into gzip; "none c8 m2000" is what auto chose for any
    # loopback address before it timed one.
    up_lib = [("default", {})]
    if not quick:
        up_lib += [("none c8 m2000", {"compression": "none", "concurrency": 8, "maxDocumentsPerRequest": 2000}),
                   ("gzip c8 m1000", {"compression": "gzip", "concurrency": 8, "maxDocumentsPerRequest": 1000}),
                   ("gzip c8 m2000", {"compression": "gzip", "concurrency": 8, "maxDocumentsPerRequest": 2000}),
                   ("gzip c8 m5000", {"compression": "gzip", "concurrency": 8, "maxDocumentsPerRequest": 5000}),
                   ("gzip c8 m10000", {"compression": "gzip", "concurrency": 8, "maxDocumentsPerRequest": 10000})]
    for label, cfg in up_lib:
        c.append(lib_case(up, "small", n_small, label, cfg))
    for per, proto in ([(1000, "http")] if quick else [(1000, "http"), (1000, "websocket")]):
        c.append(sdk_case(up, "small", n_up_sdk, per, proto))
    up_raw = [(5000, "gzip", True, 8)] if quick else \
        [(5000, "gzip", True, 8), (5000, "gzip", True, 4), (1000, "gzip", True, 8),
         (5000, "gzip", False, 8), (5000, "none", True, 8)]
    for per, comp, ids, inflight in up_raw:
        c.append(raw_case(up, "small", n_small, per, comp, ids, inflight))
    if not quick:
        c.append(lib_case(up, "big", n_up_big, "default", {}))
        c.append(lib_case(up, "big", n_up_big, "none c8", {"compression": "none", "concurrency": 8}))
        c.append(lib_case(up, "big", n_up_big, "gzip c4", {"compression": "gzip", "concurrency": 4}))
        c.append(sdk_case(up, "big", n_up_sdk_big, 200, "websocket"))
        c.append(raw_case(up, "big", n_up_big, 400, "gzip", True, 8))
        c.append(raw_case(up, "big", n_up_big, 1000, "gzip", True, 8))
    for k, case in enumerate(c):
        case["id"] = "%s/%s/%s/%s" % (case["path"], case["shape"], case["client"], case["label"])
    return c


def command(case, bench_bin):
    port = PROXY_PORT if case["path"] == "uplink" else PORT
    n = str(case["n"])
    if case["client"] == "libkuzzle":
        cmd = [bench_bin, str(port), INDEX, n, case["shape"], json.dumps(case["config"])]
        return cmd + ([json.dumps(case["options"])] if case.get("options") else [])
    if case["client"] == "sdk":
        return ["node", os.path.join(HERE, "sdk_bench.js"), str(port), INDEX, n, case["shape"],
                str(case["per_call"]), case["protocol"]]
    cmd = [sys.executable, os.path.join(HERE, "raw_load.py"), str(port), INDEX, n,
           "--shape", case["shape"], "--per-request", str(case["per_request"]),
           "--compression", case["compression"], "--inflight", str(case["inflight"])]
    if not case["ids"]:
        cmd.append("--no-ids")
    return cmd


def run_once(case, bench_bin):
    fresh_index()
    load = loadavg()[0]
    cmd = command(case, bench_bin)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=REPO)
    wall = time.monotonic() - t0
    line = (p.stdout.strip().splitlines() or [""])[-1]
    try:
        res = json.loads(line)
    except ValueError:
        res = {"status": "crashed", "docs_per_s": 0, "docs": case["n"], "written": 0}
    if p.returncode != 0 or res.get("written") != case["n"]:
        res["stderr"] = p.stderr.strip()[-600:]
        log("  !! %s: exit %d, %s" % (case["id"], p.returncode, res["stderr"][-300:]))
    res["load1"] = load
    res["wall_s"] = round(wall, 2)
    return res


def summarize(case):
    runs = case["runs"]
    ok = [r for r in runs if r.get("written") == case["n"]]
    med = {}
    for key in ("docs_per_s", "cpu_us_per_doc", "user_us_per_doc", "peak_rss_mb", "rss_before_mb", "input_mb", "seconds",
                "load1", "bytes_up", "bytes_down"):
        vals = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        if vals:
            med[key] = statistics.median(vals)
    rates = [r.get("docs_per_s", 0) for r in runs]
    case["median"] = med
    case["min_docs_per_s"] = min(rates) if rates else 0
    case["max_docs_per_s"] = max(rates) if rates else 0
    case["ok_runs"] = len(ok)


# ---------------------------------------------------------------------------
# Targets of issue 8
# ---------------------------------------------------------------------------

def targets(cases):
    def find(path, shape, client, label=None):
        return [c for c in cases if c["path"] == path and c["shape"] == shape and c["client"] == client
                and (label is None or c["label"] == label) and c.get("median", {}).get("docs_per_s")]

    def best(lst, key="docs_per_s"):
        return max(lst, key=lambda c: c["median"][key]) if lst else None

    def rate(c):
        return c["median"]["docs_per_s"] if c else None

    out = []

    def add(name, value, limit, op, measured, ok=None):
        if value is None:
            out.append({"target": name, "met": None, "measured": measured})
            return
        met = value >= limit if op == ">=" else value <= limit
        out.append({"target": name, "value": round(value, 3), "limit": limit, "op": op,
                    "met": met, "measured": measured})

    lib_def = (find("loopback", "small", "libkuzzle", "default") or [None])[0]
    raw_best = best(find("loopback", "small", "raw"))
    sdk_best = best(find("loopback", "small", "sdk"))
    lib_best = best(find("loopback", "small", "libkuzzle"))
    if lib_def and raw_best:
        add("loopback: default libkuzzle >= 95% of the best raw shape", rate(lib_def) / rate(raw_best), 0.95,
            ">=", "%d vs %d docs/s (raw %s)" % (rate(lib_def), rate(raw_best), raw_best["label"]))
    if lib_def and sdk_best:
        add("loopback: default libkuzzle >= 1.5x the SDK's best", rate(lib_def) / rate(sdk_best), 1.5, ">=",
            "%d vs %d docs/s (SDK %s)" % (rate(lib_def), rate(sdk_best), sdk_best["label"]))
    up_lib = (find("uplink", "small", "libkuzzle", "default") or [None])[0]
    up_sdk = best(find("uplink", "small", "sdk"))
    up_raw = best(find("uplink", "small", "raw"))
    if up_lib and up_sdk:
        add("uplink: default libkuzzle >= 10x the SDK's best", rate(up_lib) / rate(up_sdk), 10, ">=",
            "%d vs %d docs/s (SDK %s)" % (rate(up_lib), rate(up_sdk), up_sdk["label"]))
    if up_lib and up_raw:
        add("uplink: default libkuzzle >= 90% of the raw client's best", rate(up_lib) / rate(up_raw), 0.9,
            ">=", "%d vs %d docs/s (raw %s)" % (rate(up_lib), rate(up_raw), up_raw["label"]))
    sdk_cpu = [c for c in find("loopback", "small", "sdk") if "cpu_us_per_doc" in c["median"]]
    sdk_cheapest = min(sdk_cpu, key=lambda c: c["median"]["cpu_us_per_doc"]) if sdk_cpu else None
    if lib_def:
        cpu = lib_def["median"]["cpu_us_per_doc"]
        add("client CPU <= 0.5 us per small document (default, loopback)", cpu, 0.5, "<=",
            "%.3f us/doc" % cpu)
        if sdk_cheapest:
            scpu = sdk_cheapest["median"]["cpu_us_per_doc"]
            add("client CPU <= 1/5 of the SDK's (its cheapest configuration)", cpu / scpu, 0.2, "<=",
                "%.3f vs %.3f us/doc (SDK %s)" % (cpu, scpu, sdk_cheapest["label"]))
    for path, shape, label in (("loopback", "small", "default"), ("loopback", "big", "default"),
                               ("loopback", "small", "default, source:false"),
                               ("loopback", "big", "default, source:false"),
                               ("uplink", "small", "default"), ("uplink", "big", "default")):
        c = (find(path, shape, "libkuzzle", label) or [None])[0]
        if c and c["median"].get("input_mb"):
            rss, inp = c["median"]["peak_rss_mb"], c["median"]["input_mb"]
            before = c["median"].get("rss_before_mb", 0)
            add("peak RSS <= 3x the input's size (%s, %s, %s documents)" % (path, label, shape), rss / inp, 3, "<=",
                "%.1f MB peak for %.1f MB of input (whole process, input included; the call itself "
                "added %.1f MB = %.1fx the input)" % (rss, inp, rss - before, (rss - before) / inp))
    info = {
        "lib_best_loopback_small": lib_best and {"label": lib_best["label"], "docs_per_s": rate(lib_best)},
        "raw_best_loopback_small": raw_best and {"label": raw_best["label"], "docs_per_s": rate(raw_best)},
        "sdk_best_loopback_small": sdk_best and {"label": sdk_best["label"], "docs_per_s": rate(sdk_best)},
        "raw_best_uplink_small": up_raw and {"label": up_raw["label"], "docs_per_s": rate(up_raw)},
        "sdk_best_uplink_small": up_sdk and {"label": up_sdk["label"], "docs_per_s": rate(up_sdk)},
    }
    return out, info


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def table(cases):
    rows = []
    hdr = ("path", "docs", "client", "configuration", "N", "docs/s", "min-max", "CPU us/doc",
           "user us/doc", "peak RSS MB", "load")
    for c in cases:
        m = c.get("median", {})
        rows.append((
            c["path"], c["shape"], c["client"], c["label"], str(c["n"]),
            "%d" % m["docs_per_s"] if "docs_per_s" in m else "FAILED",
            "%d-%d" % (c["min_docs_per_s"], c["max_docs_per_s"]),
            "%.2f" % m["cpu_us_per_doc"] if "cpu_us_per_doc" in m else "",
            "%.2f" % m["user_us_per_doc"] if "user_us_per_doc" in m else "",
            "%.1f" % m["peak_rss_mb"] if "peak_rss_mb" in m and c["client"] != "raw" else "",
            "%.1f" % m["load1"] if "load1" in m else "",
        ))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
    right = {4, 5, 6, 7, 8, 9, 10}
    def fmt(r):
        return "| " + " | ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i])
                                 for i, v in enumerate(r)) + " |"
    lines = [fmt(hdr), "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                                      for i, w in enumerate(widths)) + "|"]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def ensure_matplotlib():
    py = os.path.join(VENV, "bin", "python")
    try:
        if not os.path.exists(py):
            sh([sys.executable, "-m", "venv", VENV])
        if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode != 0:
            sh([py, "-m", "pip", "install", "-q", "matplotlib"])
        return py
    except (OSError, subprocess.CalledProcessError) as e:
        log("no chart: cannot set up matplotlib in %s (%s)" % (VENV, e))
        return None


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="libkuzzle benchmark (issue 8)")
    ap.add_argument("--quick", action="store_true", help="1 round, few cases: a smoke test")
    ap.add_argument("--reps", type=int, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--n-small", type=int, default=100000)
    ap.add_argument("--n-big", type=int, default=20000)
    ap.add_argument("--out", default=os.path.join(RESULTS, "latest.json"))
    ap.add_argument("--keep-stack", action="store_true", help="do not stop the bench stack at the end")
    ap.add_argument("--only", metavar="REGEX",
                    help="only the cases whose id matches, e.g. 'loopback/small/(libkuzzle/default|raw)' "
                         "(ids: PATH/SHAPE/CLIENT/CONFIGURATION)")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    global PROXY_PORT

    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    meta = {"command": "python3 scripts/bench/run.py" + (" --quick" if args.quick else "")
            + (" --reps %d" % args.reps if args.reps else "")
            + (" --n-small %d" % args.n_small if args.n_small != 100000 else "")
            + (" --n-big %d" % args.n_big if args.n_big != 20000 else ""),
            "started": started.isoformat(timespec="seconds"), "reps": reps,
            "machine": machine(), "uptime_start": uptime_text(),
            "uplink": {"rtt_ms": RTT_MS, "mbit_per_direction": MBIT, "handshake_rtt_per_connection": True},
            "kuzzle_port": PORT}
    log("== machine: %s" % json.dumps(meta["machine"]))
    log("== load: %s" % meta["uptime_start"])

    # 1. build
    sh(["cargo", "build", "--release", "--quiet"])
    os.makedirs(os.path.join(BUILD, "lib"), exist_ok=True)
    shutil.copy2(os.path.join(REPO, "target", "release", "libkuzzle.so"), os.path.join(BUILD, "lib", "libkuzzle.so"))
    # The program asks for the SONAME, libkuzzle.so.0.
    link = os.path.join(BUILD, "lib", "libkuzzle.so.0")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink("libkuzzle.so", link)
    bench_bin = os.path.join(BUILD, "bench_mwrite")
    sh(["cc", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Iinclude", "scripts/bench/bench_mwrite.c",
        "-L" + os.path.join(BUILD, "lib"), "-lkuzzle", "-Wl,-rpath," + os.path.join(BUILD, "lib"), "-o", bench_bin])

    # the generators of the three clients must agree
    for shape in ("small", "big"):
        dump_c, dump_js = os.path.join(BUILD, "docs_c.json"), os.path.join(BUILD, "docs_js.json")
        subprocess.run([bench_bin, "0", "x", "300", shape, "{}"], check=True, env=dict(os.environ, BENCH_DUMP=dump_c))
        subprocess.run(["node", os.path.join(HERE, "sdk_bench.js"), "0", "x", "300", shape, "1", "http"],
                       check=True, env=dict(os.environ, BENCH_DUMP=dump_js))
        sys.path.insert(0, HERE)
        import docgen
        with open(dump_c) as f:
            c_text = f.read()
        with open(dump_js) as f:
            js = json.load(f)
        if c_text != docgen.docs_json(300, shape) or json.loads(c_text) != js:
            sys.exit("the C, Python and JS document generators disagree (%s)" % shape)

    cases = cases_for(args.quick, args.n_small, args.n_big)
    if args.only:
        cases = [c for c in cases if re.search(args.only, c["id"])]
        if not cases:
            sys.exit("--only %r matches no case" % args.only)
        meta["command"] += " --only '%s'" % args.only
    for c in cases:
        c["runs"] = []

    proxy = None
    interrupted = []

    def on_term(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        # 2. stack and proxy
        stack("reset")
        PROXY_PORT = free_port(PROXY_PORT)
        proxy = UplinkProxy(PROXY_PORT)
        log("== uplink proxy on 127.0.0.1:%d -> %d (%d ms RTT, %d Mbit/s per direction)"
            % (PROXY_PORT, PORT, RTT_MS, MBIT))
        meta["proxy_port"] = PROXY_PORT

        # 3. rounds
        for rep in range(reps):
            log("== round %d/%d (%d cases), %s" % (rep + 1, reps, len(cases), uptime_text()))
            # A different order each round (fixed seeds: reproducible), so
            # that no case always follows the same one.
            order = list(cases)
            random.Random(rep).shuffle(order)
            for c in order:
                r = run_once(c, bench_bin)
                c["runs"].append(r)
                log("  %-62s %8s docs/s  cpu %6s us/doc  rss %6s MB  load %.1f" % (
                    c["id"][:62], r.get("docs_per_s"), r.get("cpu_us_per_doc"), r.get("peak_rss_mb"), r["load1"]))
    finally:
        if proxy:
            proxy.stop()
        if not args.keep_stack:
            try:
                stack("stop")
            except subprocess.CalledProcessError as e:
                log("stopping the bench stack failed: %s" % e)

    for c in cases:
        summarize(c)
    meta["libkuzzle_version"] = next((r["version"] for c in cases for r in c["runs"] if r.get("version")), None)
    tg, info = targets(cases)
    meta["uptime_end"] = uptime_text()
    meta["duration_s"] = round(time.monotonic() - t_start)
    result = {"meta": meta, "cases": cases, "targets": tg, "best": info}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    report = [table(cases), "", "Targets of issue 8 (medians of %d rounds):" % reps, ""]
    for t in tg:
        mark = "MET" if t["met"] else ("NOT MET" if t["met"] is False else "n/a")
        val = ("%s %s %s" % (t["value"], t["op"], t["limit"])) if "value" in t else ""
        report.append("- **%s** %s: %s (%s)" % (mark, t["target"], val, t["measured"]))
    report += ["", "load at start: `%s`  " % meta["uptime_start"], "load at end: `%s`" % meta["uptime_end"]]
    report = "\n".join(report) + "\n"
    md = os.path.splitext(args.out)[0] + ".md"
    with open(md, "w") as f:
        f.write(report)
    print(report)
    print("wrote %s and %s (%d s)" % (os.path.relpath(args.out, REPO), os.path.relpath(md, REPO),
                                       meta["duration_s"]))

    py = ensure_matplotlib()
    if py:
        png = os.path.splitext(args.out)[0] + ".png"
        subprocess.run([py, os.path.join(HERE, "chart.py"), args.out, png], check=False)
        print("drew %s" % os.path.relpath(png, REPO))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
