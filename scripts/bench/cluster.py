#!/usr/bin/env python3
"""The cluster and adaptive-concurrency benchmark (issue 16), in one command:

    python3 scripts/bench/cluster.py [--reps N] [--only REGEX]   (3 rounds by default)

Builds the library and bench_mwrite (as run.py does), starts its own stack
("cbench": Kuzzle 7862, Redis 6696, storage 9562), the uplink proxy in front
of it (50 ms round trip, 10 Mbit/s, uplink_proxy.py) and a two-node cluster
(scripts/kuzzle-cluster.sh, name "b", nodes at 127.0.0.1:7800 and :7801),
then runs every case once per round, in the same order each round, each in a
process of its own, the index deleted and created again before each run:

- arc/loopback/<c>: 100,000 small documents straight to the stack, with
  "concurrency" 1, 2, 4, 8, 16 and "auto" (adaptive);
- arc/uplink/<c>: 20,000 small documents through the uplink proxy, same
  settings;
- arc/uplink-warm/<c>: the same, timed after 3 untimed calls of the same
  documents on the same client (a long-running gateway's client, whose
  adaptive limits carry over from call to call);
- cluster/1 node, cluster/2 nodes: 200,000 small documents to node 0 alone,
  then to both nodes ("auto");
- cluster/2 nodes, kill: the same, node 1 SIGKILLed 1 s into the write (and
  started again afterwards): what the kill costs is its time minus the
  2-node time of the same round.

Prints medians, ratios (auto / best fixed), and writes every run to
scripts/bench/results/cluster.jsonl. Stops what it started.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(REPO, "build", "cbench")
OUT = os.path.join(HERE, "results", "cluster.jsonl")
STACK_ENV = {
    "KUZZLE_STACK_NAME": "cbench",
    "KUZZLE_PORT": "7862",
    "KUZZLE_REDIS_PORT": "6696",
    "KUZZLE_STORAGE_PORT": "9562",
}
PORT = 7862
PROXY_PORT = 7863
CLUSTER_ENV = {"KUZZLE_CLUSTER_NAME": "b", "KUZZLE_CLUSTER_BASE_PORT": "7800"}
NODES = ["127.0.0.1:7800", "127.0.0.1:7801"]
SETTINGS = ["1", "2", "4", "8", "16", "auto"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, env=None):
    log("+ " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, **(env or {})})


def cluster(*args):
    sh(["bash", "scripts/kuzzle-cluster.sh", *args], CLUSTER_ENV)


def api(address, body):
    req = urllib.request.Request("http://%s/_query" % address, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def fresh(address, index):
    api(address, {"controller": "index", "action": "delete", "index": index})
    api(address, {"controller": "index", "action": "create", "index": index})
    api(address, {"controller": "collection", "action": "create", "index": index, "collection": "c"})


def run(binary, index, n, config, kill_after=None, warmup=0):
    cmd = [binary, str(PORT), index, str(n), "small", json.dumps(config)]
    env = {**os.environ, "BENCH_WARMUP": str(warmup)}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if kill_after is not None:
        time.sleep(kill_after)
        cluster("kill", "1")
    out, _ = p.communicate(timeout=600)
    line = json.loads(out.strip().splitlines()[-1])
    if line["written"] != n:
        raise RuntimeError("%s: %d of %d written" % (config, line["written"], n))
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="", help="only the cases whose name matches this regex")
    args = ap.parse_args()
    os.makedirs(BUILD, exist_ok=True)
    sh(["bash", "scripts/build.sh"])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    lib = os.path.join(target, "release")
    binary = os.path.join(BUILD, "bench_mwrite")
    sh(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "scripts/bench/bench_mwrite.c",
        "-I", "include", "-L", lib, "-lkuzzle", "-Wl,-rpath," + lib, "-o", binary])
    sh(["bash", "scripts/kuzzle-stack.sh", "reset"], STACK_ENV)
    proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "uplink_proxy.py"), str(PROXY_PORT),
                              str(PORT), "--rtt-ms", "50", "--mbit", "10"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout.readline().strip() == "ready"
        cluster("up", "2")
        rows = {}
        # A partial run (--only) keeps the full run's file.
        path = OUT if not args.only else OUT.replace(".jsonl", "-only.jsonl")
        with open(path, "w") as out:
            for r in range(args.reps):
                cases = []
                for c in SETTINGS:
                    conc = c if c == "auto" else int(c)
                    cases.append(("arc/loopback/%s" % c, "127.0.0.1:%d" % PORT, 100_000,
                                  {"hosts": ["127.0.0.1:%d" % PORT], "concurrency": conc}, None))
                for c in SETTINGS:
                    conc = c if c == "auto" else int(c)
                    cases.append(("arc/uplink/%s" % c, "127.0.0.1:%d" % PORT, 20_000,
                                  {"hosts": ["127.0.0.1:%d" % PROXY_PORT], "concurrency": conc}, None))
                for c in SETTINGS:
                    conc = c if c == "auto" else int(c)
                    cases.append(("arc/uplink-warm/%s" % c, "127.0.0.1:%d" % PORT, 20_000,
                                  {"hosts": ["127.0.0.1:%d" % PROXY_PORT], "concurrency": conc}, None))
                cases.append(("cluster/1 node", NODES[0], 200_000, {"hosts": NODES[:1]}, None))
                cases.append(("cluster/2 nodes", NODES[0], 200_000, {"hosts": NODES}, None))
                cases.append(("cluster/2 nodes, kill", NODES[0], 200_000, {"hosts": NODES}, 1.0))
                for name, admin, n, config, kill in cases:
                    if not re.search(args.only, name):
                        continue
                    fresh(admin, "cbench")
                    # "-warm": the same client wrote the same documents 3
                    # times first, untimed (its adaptive limits learnt).
                    warm = 3 if "-warm/" in name else 0
                    line = run(binary, "cbench", n, config, kill, warm)
                    if kill is not None:
                        cluster("start", "1")
                    line.update(case=name, round=r, load=os.getloadavg()[0])
                    out.write(json.dumps(line) + "\n")
                    out.flush()
                    rows.setdefault(name, []).append(line)
                    limits = [nd["concurrencyLimit"] for nd in line["stats"]["nodes"]]
                    log("%-26s %8.0f docs/s  limits %s  retries %d" % (
                        name, line["docs_per_s"], limits, line["stats"]["retries"]))
        med = {k: statistics.median(x["docs_per_s"] for x in v) for k, v in rows.items()}
        secs = {k: statistics.median(x["seconds"] for x in v) for k, v in rows.items()}
        print("| case | docs/s (median of %d) | spread | final limits |" % args.reps)
        print("|---|---:|---:|---|")
        for k, v in rows.items():
            d = [x["docs_per_s"] for x in v]
            limits = [nd["concurrencyLimit"] for nd in v[-1]["stats"]["nodes"]]
            print("| %s | %.0f | %.0f-%.0f | %s |" % (k, med[k], min(d), max(d), limits))
        for path in ("loopback", "uplink", "uplink-warm"):
            if "arc/%s/auto" % path not in med:
                continue
            fixed = {c: med["arc/%s/%s" % (path, c)] for c in SETTINGS if c != "auto"}
            best = max(fixed, key=fixed.get)
            print("%s: auto %.0f docs/s = %.2fx the best fixed (%s: %.0f)" % (
                path, med["arc/%s/auto" % path], med["arc/%s/auto" % path] / fixed[best], best,
                fixed[best]))
        if "cluster/2 nodes, kill" not in secs:
            return
        print("2 nodes / 1 node: %.2fx" % (med["cluster/2 nodes"] / med["cluster/1 node"]))
        print("a kill costs %.2f s (2 nodes with a kill: %.2f s, without: %.2f s)" % (
            secs["cluster/2 nodes, kill"] - secs["cluster/2 nodes"], secs["cluster/2 nodes, kill"],
            secs["cluster/2 nodes"]))
    finally:
        proxy.stdin.close()
        proxy.wait(timeout=30)
        subprocess.run(["bash", "scripts/kuzzle-cluster.sh", "down"], cwd=REPO,
                       env={**os.environ, **CLUSTER_ENV})
        subprocess.run(["bash", "scripts/kuzzle-stack.sh", "stop"], cwd=REPO,
                       env={**os.environ, **STACK_ENV})


if __name__ == "__main__":
    main()
