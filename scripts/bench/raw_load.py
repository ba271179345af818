#!/usr/bin/env python3
"""raw_load: the server's limit. Pre-builds every bulk:mWrite request body of
one shape, then POSTs them as fast as possible with K requests in flight, each
on its own connection (Kuzzle closes every HTTP connection after one answer),
always with a Content-Length (never chunked). Prints one JSON line.

    raw_load.py PORT INDEX N [--shape small|big] [--per-request 5000]
                [--compression gzip|none] [--ids|--no-ids] [--inflight 8]
                [--route query|mwrite] [--collection c] [--gzip-level 6]

--compression gzip: bodies sent with Content-Encoding: gzip AND answers asked
with Accept-Encoding: gzip; none: neither. --no-ids: documents without _id
(Kuzzle generates its random 20-character ids). --route query posts
{"controller":"bulk","action":"mWrite","index","collection","body":{...}}
to /_query; mwrite posts {"documents":[...]} to /INDEX/COLLECTION/_mWrite.

The client does next to nothing while timed (send prepared bytes, receive,
inflate the answer, look for "errors":[]), so the throughput it reaches is
what the server can take for that request shape. Its own CPU is reported
(cpu_us_per_doc) to show it is not the bottleneck.
"""

import argparse
import gzip
import json
import os
import resource
import socket
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docgen  # noqa: E402

KUZZLE_MAX_REQUEST = 1024 * 1024  # Kuzzle's default server.maxRequestSize ("1MB")


def peak_rss_mb():
    """VmHWM: getrusage's ru_maxrss keeps the parent's RSS at fork across exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(args):
    """Returns [(request bytes, number of documents)]."""
    reqs = []
    for start in range(0, args.n, args.per_request):
        count = min(args.per_request, args.n - start)
        docs = docgen.docs_json(count, args.shape, args.ids, start)
        if args.route == "query":
            body = ('{"controller":"bulk","action":"mWrite","index":%s,"collection":%s,'
                    '"body":{"documents":%s}}' % (json.dumps(args.index), json.dumps(args.collection), docs))
            path = "/_query"
        else:
            body = '{"documents":%s}' % docs
            path = "/%s/%s/_mWrite" % (args.index, args.collection)
        body = body.encode()
        headers = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % args.port,
                   "Content-Type: application/json", "Connection: close"]
        if args.compression == "gzip":
            body = gzip.compress(body, args.gzip_level)
            headers += ["Content-Encoding: gzip", "Accept-Encoding: gzip"]
        if len(body) > KUZZLE_MAX_REQUEST:
            sys.exit("raw_load: a request of %d documents is %d bytes on the wire, over Kuzzle's "
                     "1 MB limit: lower --per-request" % (count, len(body)))
        headers.append("Content-Length: %d" % len(body))
        reqs.append(("\r\n".join(headers).encode() + b"\r\n\r\n" + body, count))
    return reqs


def exchange(port, request, timeout):
    """One request on a new connection; returns (status, headers dict, body, bytes read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
        buf = bytearray()
        head_end = -1
        length = None
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            buf += chunk
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    for line in bytes(buf[:head_end]).split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v.strip())
            if head_end >= 0 and length is not None and len(buf) >= head_end + 4 + length:
                break
    if head_end < 0:
        raise ConnectionError("no complete HTTP answer (%d bytes)" % len(buf))
    lines = bytes(buf[:head_end]).split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    body = bytes(buf[head_end + 4:])
    if length is not None:
        body = body[:length]
    return status, headers, body, len(buf)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("index")
    ap.add_argument("n", type=int)
    ap.add_argument("--collection", default="c")
    ap.add_argument("--shape", choices=("small", "big"), default="small")
    ap.add_argument("--per-request", type=int, default=5000)
    ap.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    ap.add_argument("--ids", dest="ids", action="store_true", default=True)
    ap.add_argument("--no-ids", dest="ids", action="store_false")
    ap.add_argument("--inflight", type=int, default=8)
    ap.add_argument("--route", choices=("query", "mwrite"), default="query")
    ap.add_argument("--gzip-level", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    args = ap.parse_args()

    t_build = time.monotonic()
    reqs = build(args)
    t_build = time.monotonic() - t_build
    bytes_up = sum(len(r) for r, _ in reqs)

    lock = threading.Lock()
    state = {"next": 0, "written": 0, "failed": 0, "bytes_down": 0, "errors": []}
    start = threading.Barrier(args.inflight + 1)

    def worker():
        start.wait()
        while True:
            with lock:
                k = state["next"]
                state["next"] += 1
            if k >= len(reqs):
                return
            request, count = reqs[k]
            written = 0
            try:
                status, headers, body, nread = exchange(args.port, request, args.timeout)
                if headers.get("content-encoding") == "gzip":
                    body = zlib.decompress(body, 31)
                if status == 200 and b'"errors":[]' in body:
                    written = count
                else:
                    try:
                        reply = json.loads(body)
                        written = len(((reply.get("result") or {}).get("successes")) or [])
                    except ValueError:
                        pass
                    if written < count:
                        with lock:
                            state["errors"].append("HTTP %d: %.200s" % (status, body))
            except (OSError, ValueError, zlib.error) as e:
                nread = 0
                with lock:
                    state["errors"].append("%s: %s" % (type(e).__name__, e))
            with lock:
                state["written"] += written
                state["failed"] += count - written
                state["bytes_down"] += nread

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.inflight)]
    for t in threads:
        t.start()
    c0 = cpu_s()
    t0 = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    c1 = cpu_s()

    out = {
        "docs": args.n, "written": state["written"], "failed": state["failed"],
        "seconds": round(seconds, 4), "docs_per_s": round(state["written"] / seconds),
        "requests": len(reqs), "bytes_up": bytes_up, "bytes_down": state["bytes_down"],
        "cpu_us_per_doc": round((c1 - c0) * 1e6 / args.n, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "build_seconds": round(t_build, 3),
        "shape": args.shape, "per_request": args.per_request, "compression": args.compression,
        "ids": args.ids, "inflight": args.inflight, "route": args.route,
        "status": "ok" if state["failed"] == 0 else "failed",
    }
    if state["errors"]:
        out["first_error"] = state["errors"][0]
        print("raw_load: %d failed requests, first: %s" % (len(state["errors"]), state["errors"][0]),
              file=sys.stderr)
    print(json.dumps(out), flush=True)
    return 0 if state["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
