#!/usr/bin/env python3
"""Writes 1,000 sensor readings into Kuzzle through libkuzzle, then counts them.

    KUZZLE_HOST=127.0.0.1 KUZZLE_PORT=7512 python3 example.py

KUZZLE_INDEX / KUZZLE_COLLECTION choose where (default iot / readings); both
are created when missing. Exits 0 when every reading was written.
"""

import os
import random
import sys
import time

import kuzzle

HOST = os.environ.get("KUZZLE_HOST", "127.0.0.1")
PORT = int(os.environ.get("KUZZLE_PORT", "7512"))
INDEX = os.environ.get("KUZZLE_INDEX", "iot")
COLLECTION = os.environ.get("KUZZLE_COLLECTION", "readings")
READINGS = 1000


def ensure_collection(client: kuzzle.Client, index: str, collection: str) -> None:
    if not client.query({"controller": "index", "action": "exists", "index": index}):
        client.query({"controller": "index", "action": "create", "index": index})
    if not client.query({"controller": "collection", "action": "exists",
                         "index": index, "collection": collection}):
        client.query({"controller": "collection", "action": "create",
                      "index": index, "collection": collection})


def readings(n: int) -> list:
    now = int(time.time() * 1000)
    return [
        {
            "_id": f"gw1-{now}-{i:05d}",
            "body": {
                "sensor": f"s{i % 20:02d}",
                "temp": round(random.uniform(18.0, 26.0), 2),
                "humidity": round(random.uniform(30.0, 60.0), 1),
                "ts": now + i,
            },
        }
        for i in range(n)
    ]


def main() -> int:
    print(f"libkuzzle {kuzzle.version()} ({kuzzle.library_path()}), "
          f"Kuzzle at {HOST}:{PORT}")
    try:
        with kuzzle.Client(host=HOST, port=PORT) as client:
            ensure_collection(client, INDEX, COLLECTION)
            docs = readings(READINGS)
            start = time.perf_counter()
            result = client.mwrite(INDEX, COLLECTION, docs, wait_for_refresh=True)
            elapsed = time.perf_counter() - start
            for err in result.errors[:5]:
                print(f"  rejected {err['document'].get('_id')}: {err['status']} {err['reason']}")
            count = client.query({"controller": "document", "action": "count",
                                  "index": INDEX, "collection": COLLECTION, "body": {}})
    except kuzzle.KuzzleError as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e.result, kuzzle.MWriteResult):
            print(f"  {len(e.result.successes)} written, {len(e.result.errors)} failed",
                  file=sys.stderr)
        return 1
    print(f"{result.status.name}: written {len(result.successes)}, failed {len(result.errors)}, "
          f"{elapsed:.2f} s, {len(docs) / elapsed:.0f} docs/s; "
          f"{INDEX}/{COLLECTION} now holds {count['count']} documents")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
