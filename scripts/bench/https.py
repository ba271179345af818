#!/usr/bin/env python3
"""HTTPS behind a real reverse proxy (issue 17), in one command:

    python3 scripts/bench/https.py [--reps N] [--only REGEX]   (3 rounds by default)
                                   [--n-up-big N] [--warm K] [--timed K]  (10,000, 2 and 3
                                   by default: big documents per libkuzzle uplink call, its
                                   untimed calls first, its timed calls)

Builds the library (scripts/build.sh, honouring CARGO_TARGET_DIR) and
bench_mwrite, starts its own stack ("hbench": Kuzzle 7882, Redis 6697,
storage 9482) with the TLS-terminating nginx of kuzzle-stack.sh on
https://localhost:7883 (KUZZLE_TLS_PORT), then runs every case once per
round, in the same order each round, each in a process of its own, the index
deleted and created again before each run:

- libkuzzle, plain HTTP straight to Kuzzle, defaults;
- libkuzzle, HTTPS through nginx, defaults (gzipLevel "auto"), and with
  gzipLevel pinned at 2 (what the library did before "auto") and 6;
- Kuzzle's JS SDK over HTTPS through nginx, HTTP and WebSocket;

for small (~80 B) and big (~2 KB text) documents, on loopback and through
the emulated uplink (uplink_proxy.py: 50 ms round trip, 10 Mbit/s per
direction, one round trip per new connection). Each uplink run gets a fresh
uplink proxy of its own (port 7891 in front of nginx, 7892 in front of
Kuzzle), whose byte counts at exit are that run's wire bytes.

On loopback the defaults send no gzip (compression "auto" sees Kuzzle on
this machine), so the level cannot matter there; the loopback big rows with
compression "gzip" forced compare "auto" with level 2 where compressing is
pure cost. libkuzzle's uplink runs are timed on a warm client
(BENCH_WARMUP=2: two untimed calls of the same documents on the same client
first), over three calls in a row (BENCH_TIMED=3), alike for every setting:
"auto" compares gzip levels call by call (a call at the current level, then
one at another), and a gateway's client is long-lived; its figures are
those of a steady state, the calls at another level included.

Columns: docs/s; client CPU us/doc; bytes on the wire per document each way
(libkuzzle: its kuzzle_client_stats bytes, TCP payload under TLS, of the
timed call alone; the SDK: the uplink proxy's counts through the uplink,
nginx's access log (HTTP level: TLS records and handshakes not counted)
on loopback; WebSocket up on loopback: not measured); connections opened,
full and resumed TLS handshakes per request; the gzip level at the end;
the link's limit (10 Mbit/s / the larger direction's bytes per document).

Prints medians with spreads and the ratios of issue 17's targets, and writes
every run to scripts/bench/results/https.jsonl (https-only.jsonl with
--only). Stops what it started.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(REPO, "build", "hbench")
OUT = os.path.join(HERE, "results", "https.jsonl")
STACK_ENV = {
    "KUZZLE_STACK_NAME": "hbench",
    "KUZZLE_PORT": "7882",
    "KUZZLE_REDIS_PORT": "6697",
    "KUZZLE_STORAGE_PORT": "9482",
    "KUZZLE_TLS_PORT": "7883",
}
PORT = 7882
TLS_PORT = 7883
UP_TLS = 7891    # uplink proxy -> nginx
UP_PLAIN = 7892  # uplink proxy -> Kuzzle
INDEX = "hbench"
RTT_MS, MBIT = 50, 10
LINK_BYTES_PER_S = MBIT * 1e6 / 8
WARM = 2
TIMED = 3
RUN_TIMEOUT = 300


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, env=None, **kw):
    log("+ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, **(env or {})}, **kw)


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def api(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (PORT, path),
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def fresh():
    api("DELETE", "/" + INDEX)
    if api("POST", "/%s/_create" % INDEX, {}) != 200 or api("PUT", "/%s/c" % INDEX, {}) != 200:
        raise RuntimeError("cannot create the index")


class Uplink:
    """A fresh uplink_proxy for one run; its byte counts when it exits."""

    def __init__(self, port, target):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "uplink_proxy.py"), str(port), str(target),
             "--rtt-ms", str(RTT_MS), "--mbit", str(MBIT), "--max-seconds", "900"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("uplink_proxy did not start")

    def stop(self):
        """-> {connections, up, down} as the proxy counted them."""
        # communicate closes stdin: the proxy exits and prints its counts.
        _, err = self.proc.communicate(timeout=30)
        m = re.search(r"(\d+) connections, (\d+) bytes up, (\d+) bytes down", err)
        return {"connections": int(m[1]), "up": int(m[2]), "down": int(m[3])} if m else {}


def access_log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def access_lines(path, offset):
    """nginx's lines since offset (it flushes its buffer within 1 s)."""
    time.sleep(1.2)
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        m = re.search(r' %d conn=(\d+) req=(\d+) \S+ reused=(\S) "(\S+) (\S+)[^"]*" (\d+) in=(\d+) out=(\d+)'
                      % TLS_PORT, line)
        if m:
            out.append({"conn": int(m[1]), "req": int(m[2]), "resumed": m[3] == "r", "method": m[4],
                        "path": m[5], "status": int(m[6]), "in": int(m[7]), "out": int(m[8])})
    return out


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def cases(n_up_big=10000):
    ca = os.path.join(REPO, ".stack", "tls", "ca.pem")
    tls = lambda port, **kw: dict({"host": "localhost", "port": port, "ssl": True, "caFile": ca}, **kw)
    plain = lambda port, **kw: dict({"host": "127.0.0.1", "port": port}, **kw)
    c = []

    def lib(path, shape, n, label, config, warm):
        c.append({"id": "%s/%s/libkuzzle/%s" % (path, shape, label), "client": "libkuzzle", "path": path,
                  "shape": shape, "n": n, "label": label, "config": config, "warm": warm,
                  "timed": TIMED if warm else 1,
                  "tls": config.get("ssl", False)})

    def sdk(path, shape, n, per_call, protocol):
        label = "HTTPS %s %d/call" % ("http" if protocol == "http" else "websocket", per_call)
        c.append({"id": "%s/%s/sdk/%s" % (path, shape, label), "client": "sdk", "path": path, "shape": shape,
                  "n": n, "label": label, "per_call": per_call, "protocol": protocol, "tls": True})

    lo, up = "loopback", "uplink"
    lib(lo, "small", 100000, "HTTP default", plain(PORT), 0)
    lib(lo, "small", 100000, "HTTPS default", tls(TLS_PORT), 0)
    sdk(lo, "small", 50000, 1000, "http")
    sdk(lo, "small", 50000, 1000, "websocket")
    lib(lo, "big", 20000, "HTTP default", plain(PORT), 0)
    lib(lo, "big", 20000, "HTTPS default", tls(TLS_PORT), 0)
    lib(lo, "big", 20000, "HTTPS gzip level auto", tls(TLS_PORT, compression="gzip"), 0)
    lib(lo, "big", 20000, "HTTPS gzip level 2", tls(TLS_PORT, compression="gzip", gzipLevel=2), 0)
    sdk(lo, "big", 10000, 200, "http")
    sdk(lo, "big", 10000, 200, "websocket")
    for shape, n in (("small", 50000), ("big", n_up_big)):
        lib(up, shape, n, "HTTP default", plain(UP_PLAIN), WARM)
        lib(up, shape, n, "HTTPS default", tls(UP_TLS), WARM)
        lib(up, shape, n, "HTTPS level 2", tls(UP_TLS, gzipLevel=2), WARM)
        lib(up, shape, n, "HTTPS level 6", tls(UP_TLS, gzipLevel=6), WARM)
    sdk(up, "small", 10000, 1000, "http")
    sdk(up, "small", 10000, 1000, "websocket")
    sdk(up, "big", 2000, 200, "http")
    sdk(up, "big", 2000, 200, "websocket")
    return c


def delta(after, before, *keys):
    a, b = after, before
    for k in keys:
        a, b = a[k], b[k]
    return a - b


def run_case(case, binary, access_log):
    fresh()
    load = os.getloadavg()[0]
    proxy = None
    if case["path"] == "uplink":
        proxy = Uplink(UP_TLS if case["tls"] else UP_PLAIN, TLS_PORT if case["tls"] else PORT)
    if case["client"] == "sdk":
        # nginx writes its log lines up to 1 s late: the previous run's
        # first, then where this run's begin.
        time.sleep(1.2)
    offset = access_log_size(access_log)
    env = dict(os.environ)
    if case["client"] == "libkuzzle":
        cmd = [binary, "0", INDEX, str(case["n"]), case["shape"], json.dumps(case["config"])]
        env["BENCH_WARMUP"] = str(case["warm"])
        env["BENCH_TIMED"] = str(case["timed"])
    else:
        port = UP_TLS if case["path"] == "uplink" else TLS_PORT
        cmd = ["node", os.path.join(HERE, "sdk_bench.js"), str(port), INDEX, str(case["n"]), case["shape"],
               str(case["per_call"]), case["protocol"]]
        env.update(BENCH_HOST="localhost", BENCH_SSL="1",
                   NODE_EXTRA_CA_CERTS=os.path.join(REPO, ".stack", "tls", "ca.pem"))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, cwd=REPO)
    finally:
        wire = proxy.stop() if proxy else {}
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"status": "crashed", "written": 0, "docs_per_s": 0}
    if p.returncode != 0 or res.get("written") != case["n"]:
        res["stderr"] = p.stderr.strip()[-600:]
        log("  !! %s: exit %d: %s" % (case["id"], p.returncode, res["stderr"][-300:]))
    res.update(case=case["id"], load1=load, wire=wire)
    n = case["n"] * case.get("timed", 1)
    m = {"docs_per_s": res.get("docs_per_s"), "cpu_us_per_doc": res.get("cpu_us_per_doc")}
    if case["client"] == "libkuzzle" and "stats" in res:
        s, b = res["stats"], res["stats_before"]
        reqs = sum(x["requests"] for x in s["nodes"]) - sum(x["requests"] for x in b["nodes"])
        m.update(up_b=delta(s, b, "bytes", "sent") / n, down_b=delta(s, b, "bytes", "received") / n,
                 requests=reqs,
                 conn_per_req=delta(s, b, "connections", "opened") / reqs,
                 full_per_req=delta(s, b, "tlsHandshakes", "full") / reqs,
                 resumed_per_req=delta(s, b, "tlsHandshakes", "resumed") / reqs,
                 stale=delta(s, b, "connections", "stale"),
                 gzip_level=s["gzipLevel"],
                 concurrency_limit=[x["concurrencyLimit"] for x in s["nodes"]])
        if wire:
            # The library's counts against the proxy's, over the whole
            # process (warm-up calls and the connect probe included).
            m["stats_vs_wire"] = [s["bytes"]["sent"] - wire["up"], s["bytes"]["received"] - wire["down"]]
    elif case["client"] == "sdk":
        # Only the SDK's own requests (bench_mwrite sends POST /_query).
        lines = [x for x in access_lines(access_log, offset)
                 if x["path"] in ("/_publicApi", "/_checkToken", "/") or x["path"].endswith("/_mWrite")]
        writes = [x for x in lines if x["path"].endswith("/_mWrite")]
        other = [x for x in lines if x["path"] in ("/_publicApi", "/_checkToken")]
        conns = {}
        for x in lines:
            conns.setdefault(x["conn"], x)
        if case["protocol"] == "http" and writes:
            reqs = len(writes)
            m.update(requests=reqs, conn_per_req=len(conns) / reqs,
                     full_per_req=sum(1 for x in conns.values() if not x["resumed"]) / reqs,
                     resumed_per_req=sum(1 for x in conns.values() if x["resumed"]) / reqs)
        if wire:
            # Wire bytes less the connect's own requests (_publicApi,
            # _checkToken: HTTP-level sizes, over 57 KB), which are not
            # per document.
            m.update(up_b=(wire["up"] - sum(x["in"] for x in other)) / n,
                     down_b=(wire["down"] - sum(x["out"] for x in other)) / n)
        elif case["protocol"] == "http":
            m.update(up_b=sum(x["in"] for x in writes) / n, down_b=sum(x["out"] for x in writes) / n)
        else:
            # WebSocket: one line, at the close, its bytes sent to the client
            # all frames included; the frames received are not logged.
            m.update(down_b=sum(x["out"] for x in lines if x["status"] == 101) / n)
    if m.get("up_b") is not None or m.get("down_b") is not None:
        worst = max(m.get("up_b") or 0, m.get("down_b") or 0)
        m["link_limit"] = LINK_BYTES_PER_S / worst if worst else None
    res["metrics"] = m
    return res


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------

def med(runs, key):
    vals = [r["metrics"][key] for r in runs if isinstance(r["metrics"].get(key), (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v, spec):
    return "" if v is None else spec % v


def table(all_cases, rows):
    out = ["| path | docs | client | setting | N | docs/s (spread) | CPU µs/doc | B/doc up | B/doc down | "
           "conn./req | TLS full/resumed per req | gzip level at end | link limit docs/s | % of limit |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in all_cases:
        runs = rows.get(c["id"])
        if not runs:
            continue
        rates = [r["metrics"]["docs_per_s"] or 0 for r in runs]
        rate = med(runs, "docs_per_s")
        levels = sorted({r["metrics"].get("gzip_level") for r in runs if r["metrics"].get("gzip_level")})
        limit = med(runs, "link_limit") if c["path"] == "uplink" else None
        hs = ""
        if med(runs, "full_per_req") is not None and c["tls"]:
            hs = "%.3f / %.3f" % (med(runs, "full_per_req"), med(runs, "resumed_per_req"))
        elif med(runs, "full_per_req") is not None:
            hs = "(no TLS)"
        out.append("| %s | %s | %s | %s | %d | %s (%d-%d) | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            c["path"], c["shape"], c["client"], c["label"], c["n"], fmt(rate, "%.0f"), min(rates), max(rates),
            fmt(med(runs, "cpu_us_per_doc"), "%.2f"), fmt(med(runs, "up_b"), "%.1f"),
            fmt(med(runs, "down_b"), "%.1f"), fmt(med(runs, "conn_per_req"), "%.3f"), hs,
            "/".join(map(str, levels)) if c["client"] == "libkuzzle" else "",
            fmt(limit, "%.0f"), fmt(rate / limit * 100 if rate and limit else None, "%.0f%%")))
    return "\n".join(out)


def ratios(rows):
    def m(cid, key):
        return med(rows.get(cid, []), key)
    out = []
    for path in ("loopback", "uplink"):
        for shape in ("small", "big"):
            h = "%s/%s/libkuzzle/HTTP default" % (path, shape)
            s = "%s/%s/libkuzzle/HTTPS default" % (path, shape)
            if not (m(h, "docs_per_s") and m(s, "docs_per_s")):
                continue
            out.append("%s %s: HTTPS/HTTP docs/s %.2f (%.0f vs %.0f); bytes/doc up %.2f (%.1f vs %.1f), "
                       "down %.2f (%.1f vs %.1f)" % (
                           path, shape, m(s, "docs_per_s") / m(h, "docs_per_s"), m(s, "docs_per_s"),
                           m(h, "docs_per_s"), m(s, "up_b") / m(h, "up_b"), m(s, "up_b"), m(h, "up_b"),
                           m(s, "down_b") / m(h, "down_b"), m(s, "down_b"), m(h, "down_b")))
            if path == "uplink":
                pinned = {lv: "%s/%s/libkuzzle/HTTPS level %d" % (path, shape, lv) for lv in (2, 6)}
                rates = {lv: m(cid, "docs_per_s") for lv, cid in pinned.items() if m(cid, "docs_per_s")}
                if rates:
                    best = max(rates, key=rates.get)
                    lim = m(pinned[best], "link_limit")
                    out.append("%s %s: auto %.0f docs/s = %.2fx level 2 (%s), %.2fx level 6 (%s); best pinned: "
                               "level %d, whose link limit is %.0f docs/s: auto at %.0f%% of it, level %d at "
                               "%.0f%%" % (
                                   path, shape, m(s, "docs_per_s"), m(s, "docs_per_s") / rates[2],
                                   fmt(rates.get(2), "%.0f"), m(s, "docs_per_s") / rates[6],
                                   fmt(rates.get(6), "%.0f"), best, lim, m(s, "docs_per_s") / lim * 100, best,
                                   rates[best] / lim * 100))
        a = "%s/big/libkuzzle/HTTPS gzip level auto" % path
        b = "%s/big/libkuzzle/HTTPS gzip level 2" % path
        if m(a, "docs_per_s") and m(b, "docs_per_s"):
            out.append("%s big, gzip forced: level auto / level 2 docs/s %.2f (%.0f vs %.0f)" % (
                path, m(a, "docs_per_s") / m(b, "docs_per_s"), m(a, "docs_per_s"), m(b, "docs_per_s")))
    return out


def main():
    global WARM, TIMED
    ap = argparse.ArgumentParser(description="HTTPS behind a reverse proxy (issue 17)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="only the cases whose id (PATH/SHAPE/CLIENT/SETTING) matches")
    ap.add_argument("--n-up-big", type=int, default=10000, help="big documents per libkuzzle uplink run")
    ap.add_argument("--warm", type=int, default=WARM, help="untimed calls first, libkuzzle uplink runs")
    ap.add_argument("--timed", type=int, default=TIMED, help="timed calls in a row, libkuzzle uplink runs")
    args = ap.parse_args()
    WARM, TIMED = args.warm, args.timed
    os.makedirs(BUILD, exist_ok=True)
    sh(["bash", "scripts/build.sh"])
    lib = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release")
    binary = os.path.join(BUILD, "bench_mwrite")
    sh(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "scripts/bench/bench_mwrite.c",
        "-I", "include", "-L", lib, "-lkuzzle", "-Wl,-rpath," + lib, "-o", binary])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                                capture_output=True, text=True, cwd=REPO).stdout.strip())
    all_cases = [c for c in cases(args.n_up_big) if re.search(args.only, c["id"])]
    if not all_cases:
        sys.exit("--only %r matches no case" % args.only)
    command = "python3 scripts/bench/https.py --reps %d" % args.reps + (" --only '%s'" % args.only
                                                                       if args.only else "")
    if args.n_up_big != 10000:
        command += " --n-up-big %d" % args.n_up_big
    if args.warm != 2:
        command += " --warm %d" % args.warm
    if args.timed != 3:
        command += " --timed %d" % args.timed
    rows = {}
    path = OUT if not args.only else OUT.replace(".jsonl", "-only.jsonl")
    sh(["bash", "scripts/kuzzle-stack.sh", "reset"], STACK_ENV, stdout=subprocess.DEVNULL)
    try:
        info = json.loads(subprocess.run(["bash", "scripts/kuzzle-stack.sh", "tls-info"], capture_output=True,
                                         text=True, check=True, cwd=REPO,
                                         env={**os.environ, **STACK_ENV}).stdout)
        access_log = info["accessLog"]
        with open(path, "w") as out:
            out.write(json.dumps({"command": command, "commit": commit, "src_dirty": dirty,
                                  "uptime_start": uptime(), "nproc": os.cpu_count()}) + "\n")
            for r in range(args.reps):
                log("== round %d/%d: %s" % (r + 1, args.reps, uptime()))
                out.write(json.dumps({"round": r, "uptime_start": uptime()}) + "\n")
                t0 = time.monotonic()
                for c in all_cases:
                    res = run_case(c, binary, access_log)
                    res["round"] = r
                    out.write(json.dumps(res) + "\n")
                    out.flush()
                    rows.setdefault(c["id"], []).append(res)
                    m = res["metrics"]
                    log("  %-52s %7s docs/s cpu %6s  up %6s down %6s B/doc  conn/req %s  gzip %s  load %.1f" % (
                        c["id"], m.get("docs_per_s"), m.get("cpu_us_per_doc"), fmt(m.get("up_b"), "%.1f"),
                        fmt(m.get("down_b"), "%.1f"), fmt(m.get("conn_per_req"), "%.3f"), m.get("gzip_level"),
                        res["load1"]))
                out.write(json.dumps({"round": r, "uptime_end": uptime(),
                                      "seconds": round(time.monotonic() - t0, 1)}) + "\n")
                log("== round %d took %.0f s: %s" % (r + 1, time.monotonic() - t0, uptime()))
    finally:
        subprocess.run(["bash", "scripts/kuzzle-stack.sh", "stop"], cwd=REPO, env={**os.environ, **STACK_ENV})
    print("%s (commit %s%s), %d rounds" % (command, commit, ", src modified" if dirty else "", args.reps))
    print(table(all_cases, rows))
    print()
    for line in ratios(rows):
        print("- " + line)
    odd = [(cid, r["metrics"]["concurrency_limit"], r["metrics"]["stale"], r["metrics"].get("stats_vs_wire"))
           for cid, rs in rows.items() for r in rs if r["metrics"].get("concurrency_limit") is not None]
    print()
    print("final concurrency limits / stale connections / stats minus proxy bytes (up, down), per run:")
    for cid, lim, stale, sw in odd:
        print("  %s: limit %s, stale %s%s" % (cid, lim, stale, ", stats-wire %s" % sw if sw else ""))


if __name__ == "__main__":
    main()
