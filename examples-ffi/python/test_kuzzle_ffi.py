"""Tests of the ctypes binding against a REAL Kuzzle (never mocked).

    KUZZLE_PORT=7512 python3 -m pytest -v examples-ffi/python

KUZZLE_HOST (127.0.0.1) and KUZZLE_PORT (7512) say where Kuzzle is. A test
that needs Kuzzle and cannot reach it FAILS (it never skips). Each test
works in its own index (``py-<pid>-<n>``), deleted afterwards.
"""

import itertools
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import kuzzle
from kuzzle import (Client, ClientClosedError, KuzzleError, MWriteResult, ProducerClosedError,
                    Status)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HOST = os.environ.get("KUZZLE_HOST", "127.0.0.1")
PORT = int(os.environ.get("KUZZLE_PORT", "7512"))

_counter = itertools.count()


def unique_index() -> str:
    return f"py-{os.getpid()}-{next(_counter)}"


class Kuzzle:
    """Per-test helper: connects (failing the test when Kuzzle is not
    there), makes fresh indexes, and cleans both up afterwards."""

    def __init__(self):
        self.clients = []
        self.indexes = []

    def connect(self, **config) -> Client:
        config = {"host": HOST, "port": PORT, **config}
        try:
            client = Client(**config)
        except KuzzleError as e:
            pytest.fail(
                f"cannot connect to Kuzzle at {HOST}:{PORT}: {e}\n"
                "start it with: KUZZLE_PORT=... bash scripts/kuzzle-stack.sh start",
                pytrace=False,
            )
        self.clients.append(client)
        return client

    def fresh_index(self, client: Client, collection: str = "c") -> str:
        index = unique_index()
        client.query({"controller": "index", "action": "create", "index": index})
        self.indexes.append(index)
        client.query({"controller": "collection", "action": "create",
                      "index": index, "collection": collection})
        return index

    def cleanup(self):
        if self.indexes:
            try:
                with Client(host=HOST, port=PORT) as admin:
                    for index in self.indexes:
                        admin.query({"controller": "index", "action": "delete", "index": index})
            except KuzzleError:
                pass  # the test itself already reported an unreachable Kuzzle
        for client in self.clients:
            client.close()


@pytest.fixture
def kz():
    helper = Kuzzle()
    yield helper
    helper.cleanup()


def count(client: Client, index: str, collection: str = "c") -> int:
    client.query({"controller": "collection", "action": "refresh",
                  "index": index, "collection": collection})
    result = client.query({"controller": "document", "action": "count",
                           "index": index, "collection": collection, "body": {}})
    return result["count"]


def readings(n: int, prefix: str = None) -> list:
    docs = []
    for i in range(n):
        body = {"sensor": f"s{i % 10}", "seq": i, "temp": 20.0 + (i % 50) / 10}
        docs.append({"_id": f"{prefix}{i:05d}", "body": body} if prefix else {"body": body})
    return docs


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# ---- writing -----------------------------------------------------------------


def test_connect_mwrite_and_count(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    docs = readings(250, prefix="r") + readings(250) + [
        {"_id": "unicode", "body": {"name": "é \"quoted\" ☃", "nested": {"a": [1, None]}}}
    ]
    result = client.mwrite(index, "c", docs)

    assert isinstance(result, MWriteResult) and isinstance(result, dict)
    assert result.status is Status.OK and result.ok
    assert result.errors == [] and "error" not in result
    assert len(result.successes) == len(docs)
    first = result.successes[0]
    assert first["_id"] == "r00000" and first["_version"] == 1 and first["created"] is True
    assert first["_source"] == docs[0]["body"]
    assert result.successes[-1]["_source"] == docs[-1]["body"]
    assert all(s["_id"] for s in result.successes[250:500])  # generated ids

    assert count(client, index) == len(docs)
    got = client.query({"controller": "document", "action": "get",
                        "index": index, "collection": "c", "_id": "unicode"})
    assert got["_source"]["name"] == "é \"quoted\" ☃"


def test_options_snake_case_and_camel_case(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    client.mwrite(index, "c", readings(10, prefix="a"), wait_for_refresh=True)
    # Searchable at once: no collection:refresh before counting.
    counted = client.query({"controller": "document", "action": "count",
                            "index": index, "collection": "c", "body": {}})
    assert counted["count"] == 10
    client.mwrite(index, "c", readings(10, prefix="b"), waitForRefresh=True, notify=False)

    with pytest.raises(KuzzleError) as info:
        client.mwrite(index, "c", readings(1), wait_for_refrsh=True)
    assert info.value.status is Status.ERR_INVALID_ARGUMENT
    assert "waitForRefrsh" in info.value.message
    assert count(client, index) == 20


def test_partial_result_with_invalid_documents(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    docs = [
        {"_id": "ok1", "body": {"v": 1}},
        {"_id": "nobody"},
        {"_id": "notobj", "body": [1, 2]},
        {"_id": "typo", "Body": {"v": 3}},
        {"body": {"v": 5}},
    ]
    result = client.mwrite(index, "c", docs)  # PARTIAL returns, it does not raise

    assert result.status is Status.PARTIAL and not result.ok
    assert [s["_source"] for s in result.successes] == [{"v": 1}, {"v": 5}]
    assert len(result.errors) == 3
    assert [e["document"] for e in result.errors] == docs[1:4]  # input form, input order
    for err in result.errors:
        assert err["status"] == 400 and err["reason"]
    assert count(client, index) == 2


def test_failed_mwrite_raises_with_the_whole_result(kz):
    client = kz.connect()
    missing = unique_index()  # never created
    docs = readings(3, prefix="m")
    with pytest.raises(KuzzleError) as info:
        client.mwrite(missing, "c", docs)
    err = info.value
    assert err.status is Status.ERR_SERVER
    assert err.status_name == "KUZZLE_ERR_SERVER"
    assert err.id == "services.storage.unknown_index" and err.http_status == 412
    assert missing in err.message and missing in str(err)
    # Nothing lost: every document is reported, on the exception.
    assert isinstance(err.result, MWriteResult) and err.result.status is Status.ERR_SERVER
    assert err.result.successes == []
    assert [e["document"] for e in err.result.errors] == docs
    assert all(e["status"] == 412 for e in err.result.errors)


def test_mwrite_argument_errors(kz):
    client = kz.connect()
    with pytest.raises(KuzzleError) as info:
        client.mwrite("", "c", readings(1))
    assert info.value.status is Status.ERR_INVALID_ARGUMENT
    assert info.value.result == {"error": info.value.error}
    with pytest.raises(ValueError):
        client.mwrite("a\0b", "c", readings(1))  # would be cut silently by ctypes
    with pytest.raises(ValueError):
        client.mwrite("a", "c", [{"body": {"t": float("nan")}}])
    with pytest.raises(TypeError):
        client.mwrite("a", "c", {"body": {}})


def test_concurrent_mwrite_on_one_client(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    results, failures = [], []

    def work(t):
        try:
            results.append(client.mwrite(index, "c", readings(250, prefix=f"t{t}-")))
        except Exception as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert [r.status for r in results] == [Status.OK] * 4
    assert count(client, index) == 1000


# ---- queries -----------------------------------------------------------------


def test_query_results_and_errors(kz):
    client = kz.connect()
    index = unique_index()
    assert client.query({"controller": "index", "action": "exists", "index": index}) is False
    with pytest.raises(KuzzleError) as info:
        client.query({"controller": "no-such-controller", "action": "x"})
    assert info.value.status is Status.ERR_SERVER
    assert info.value.id == "api.process.controller_not_found"
    assert info.value.result == {"error": info.value.error}
    with pytest.raises(TypeError):
        client.query('{"controller":"server","action":"now"}')


def test_info_tells_the_settled_settings(kz):
    client = kz.connect(maxDocumentsPerRequest=500)
    info = client.info()
    assert info["maxDocumentsPerRequest"] == 500
    assert info["auth"] == "anonymous" and info["username"] is None
    # A Kuzzle on this machine: auto settles to no gzip and 4 in flight.
    assert (info["compression"], info["concurrency"]) == ("none", 4)


def test_stats_count_requests_documents_and_bytes(kz):
    client = kz.connect(maxDocumentsPerRequest=100)
    index = kz.fresh_index(client)
    client.mwrite(index, "c", readings(1000))
    stats = client.stats()
    (node,) = stats["nodes"]
    assert node["alive"] is True and node["inFlight"] == 0
    assert node["requests"] >= 10 and node["failures"] == 0
    assert node["concurrencyLimit"] >= 1 and node["rttMs"] > 0
    assert stats["documents"] == {"written": 1000, "failed": 0, "inDoubt": 0}
    assert stats["bytes"]["sent"] > 1000 * 40 and stats["bytes"]["received"] > 1000 * 40
    assert stats["retries"] == 0


# ---- connecting ----------------------------------------------------------------


def test_unknown_config_key_is_named():
    with pytest.raises(KuzzleError) as info:
        Client(host=HOST, port=PORT, bogus=1)
    err = info.value
    assert err.status is Status.ERR_INVALID_ARGUMENT
    assert err.status_name == "KUZZLE_ERR_INVALID_ARGUMENT"
    assert '"bogus"' in err.message and err.id == "libkuzzle.invalid_argument"
    # snake_case is sent in camelCase: the library names that spelling.
    with pytest.raises(KuzzleError) as info:
        Client({"host": HOST}, port=PORT, time_out_ms=5)
    assert info.value.status is Status.ERR_INVALID_ARGUMENT
    assert "timeOutMs" in info.value.message
    # Ill-typed value.
    with pytest.raises(KuzzleError) as info:
        Client(host=HOST, port="not a port")
    assert info.value.status is Status.ERR_INVALID_ARGUMENT
    assert "port" in info.value.message


def test_connection_refused():
    port = unused_port()
    with pytest.raises(KuzzleError) as info:
        Client(host="127.0.0.1", port=port, connect_timeout_ms=2000, retries=0)
    err = info.value
    assert err.status is Status.ERR_CONNECTION
    assert err.status_name == "KUZZLE_ERR_CONNECTION"
    assert err.status_text == "connection error"
    assert err.error["id"] == "libkuzzle.connection" and err.error["message"]


# ---- statuses and version ----------------------------------------------------


def test_status_enum_mirrors_the_header():
    header = (REPO / "include" / "kuzzle.h").read_text()
    in_header = {name: int(value) for name, value in
                 re.findall(r"^\s*KUZZLE_(\w+) = (\d+),", header, re.M)}
    assert in_header == {s.name: s.value for s in Status}


def test_status_str_for_every_code():
    texts = {s: kuzzle.status_str(s) for s in Status}
    assert texts[Status.OK] == "ok"
    assert texts[Status.ERR_CONNECTION] == "connection error"
    for status, text in texts.items():
        assert text and text != "unknown status", status
    assert len(set(texts.values())) == len(Status)
    for unknown in (len(Status), 99, -1, 2**31 - 1, -(2**31), 2**32, 2**40 + 4):
        assert kuzzle.status_str(unknown) == "unknown status"
    # A status appended by a newer library stays a plain int.
    assert KuzzleError(42).status == 42 and KuzzleError(42).status_name == "KUZZLE_STATUS_42"


def test_version_equals_cargo_toml():
    text = (REPO / "Cargo.toml").read_text()
    try:
        import tomllib
        expected = tomllib.loads(text)["package"]["version"]
    except ImportError:  # Python < 3.11
        expected = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)
    assert kuzzle.version() == expected
    header = (REPO / "include" / "kuzzle.h").read_text()
    assert f'#define KUZZLE_VERSION "{expected}"' in header


# ---- memory ------------------------------------------------------------------


def test_results_are_freed(kz):
    """2,000 mwrite + free cycles (each result ~40 KB) and 500 error strings
    (query and connect failures): RSS must stay flat. Without
    kuzzle_free_result the results alone would leak ~80 MB."""
    client = kz.connect()
    index = kz.fresh_index(client)
    body = {"payload": "x" * 2000}
    docs = [{"_id": f"d{i}", "body": {**body, "i": i}} for i in range(20)]
    refused = unused_port()

    def cycle(n):
        for _ in range(n):
            assert client.mwrite(index, "c", docs).status is Status.OK

    def errors(n):
        for _ in range(n):
            with pytest.raises(KuzzleError):
                client.query({"controller": "no-such-controller", "action": "x"})
            with pytest.raises(KuzzleError):
                Client(host="127.0.0.1", port=refused, retries=0)

    cycle(200)  # warm-up: allocator pools, connection pool, caches
    errors(50)
    before = rss_kib()
    cycle(2000)
    errors(250)
    grown = rss_kib() - before
    assert grown < 5 * 1024, f"RSS grew by {grown} KiB over 2,000 mwrite cycles"


# ---- lifecycle -----------------------------------------------------------------


def test_close_twice_and_context_manager(kz):
    client = kz.connect()
    assert not client.closed
    client.close()
    assert client.closed
    client.close()  # idempotent

    with Client(host=HOST, port=PORT) as c:
        assert c.query({"controller": "server", "action": "now"})["now"] > 0
    assert c.closed
    c.close()
    with pytest.raises(ClientClosedError):
        with c:
            pass


def test_use_after_close_raises_before_calling_the_library(kz, monkeypatch):
    client = kz.connect()
    client.close()

    def must_not_be_called(*args):
        raise AssertionError("the library was called with a closed handle")

    monkeypatch.setattr(kuzzle._lib, "kuzzle_mwrite", must_not_be_called)
    monkeypatch.setattr(kuzzle._lib, "kuzzle_query", must_not_be_called)
    monkeypatch.setattr(kuzzle._lib, "kuzzle_disconnect", must_not_be_called)
    with pytest.raises(ClientClosedError) as info:
        client.mwrite("idx", "c", readings(1))
    assert isinstance(info.value, KuzzleError)
    assert info.value.status is Status.ERR_INVALID_ARGUMENT
    assert "closed" in str(info.value)
    with pytest.raises(ClientClosedError):
        client.query({"controller": "server", "action": "now"})
    client.close()  # still fine, and still no library call


def test_library_refuses_a_null_handle():
    """What the binding guards against, straight through ctypes: the library
    answers a NULL handle with ERR_INVALID_ARGUMENT and an error string."""
    import ctypes

    out = ctypes.c_void_p()
    status = kuzzle._lib.kuzzle_query(None, b'{"controller":"server","action":"now"}',
                                      ctypes.byref(out))
    assert status == Status.ERR_INVALID_ARGUMENT
    assert out.value  # an error JSON, to free
    kuzzle._lib.kuzzle_free_result(out)
    kuzzle._lib.kuzzle_disconnect(None)  # no-op
    kuzzle._lib.kuzzle_free_result(None)  # no-op


def test_close_waits_for_calls_in_progress(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    started, outcome = threading.Event(), []

    def writer():
        started.set()
        try:
            outcome.append(client.mwrite(index, "c", readings(20000, prefix="w")).status)
        except Exception as e:  # reported below
            outcome.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait()
    deadline = time.monotonic() + 10
    while not client._busy and time.monotonic() < deadline:  # inside kuzzle_mwrite
        time.sleep(0.001)
    assert client._busy == 1, "the writer never entered kuzzle_mwrite"
    client.close()  # must wait: no kuzzle_disconnect under a running mwrite
    assert client.closed and client._busy == 0
    thread.join()
    assert outcome == [Status.OK], outcome
    checker = kz.connect()
    assert count(checker, index) == 20000


def test_unclosed_client_is_closed_by_gc():
    import gc

    client = Client(host=HOST, port=PORT)
    with pytest.warns(ResourceWarning):
        del client
        gc.collect()


# ---- the producer --------------------------------------------------------------


def offline_client() -> Client:
    """A client of a Kuzzle out of reach (nothing listens on the port):
    lazyConnect opens it anyway; retries=0 so each attempt ends at once."""
    return Client(host=HOST, port=unused_port(), lazyConnect=True, retries=0)


def test_producer_reports_every_seq_once(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    docs = readings(500, prefix="p-") + readings(500)
    with client.producer(lingerMs=1) as producer:
        seqs = [producer.produce(index, "c", doc) for doc in docs]
        assert producer.flush(60) == Status.OK
        reports = list(producer.reports(timeout=0))
        assert producer.poll(timeout=0) == []
        stats = producer.stats()
    assert len(set(seqs)) == 1000
    assert sorted(r["seq"] for r in reports) == sorted(seqs)  # each exactly once
    assert all(r["ok"] and r["index"] == index for r in reports), \
        [r for r in reports if not r["ok"]][:3]
    ids = {r["_id"] for r in reports}
    assert len(ids) == 1000 and {f"p-{i:05d}" for i in range(500)} <= ids
    assert (stats["accepted"], stats["delivered"], stats["failed"]) == (1000, 1000, 0)
    assert stats["spool"] is None
    assert count(client, index) == 1000


def test_producer_batch_refusals_and_close(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    producer = client.producer()
    first, n = producer.produce_batch(index, "c", readings(5))
    assert n == 5 and first >= 1
    assert producer.produce_batch(index, "c", []) == (0, 0)
    with pytest.raises(KuzzleError) as e:  # all or none: one bad refuses the batch
        producer.produce_batch(index, "c", readings(3) + [{"body": [1]}])
    assert e.value.status == Status.ERR_INVALID_ARGUMENT and "body" in e.value.message
    with pytest.raises(KuzzleError) as e:
        producer.produce(index, "c", {"_id": 12, "body": {}})
    assert e.value.status == Status.ERR_INVALID_ARGUMENT and "_id" in e.value.message
    left = producer.close(timeout=60)  # flushes: the 5 reports come back here
    assert sorted(r["seq"] for r in left) == list(range(first, first + 5))
    assert all(r["ok"] for r in left)
    assert producer.closed and producer.close() == []  # idempotent
    with pytest.raises(ProducerClosedError):
        producer.produce(index, "c", {"body": {}})
    with pytest.raises(ProducerClosedError):
        producer.poll()


def test_producer_fileno_works_with_selectors(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    with client.producer() as producer, selectors.DefaultSelector() as sel:
        sel.register(producer, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []  # nothing produced: no report waits
        seqs = {producer.produce(index, "c", doc) for doc in readings(20)}
        got = []
        while len(got) < 20:
            ready = sel.select(timeout=60)
            assert ready, "no report in 60 s"
            got += producer.poll(timeout=0)
        assert {r["seq"] for r in got} == seqs
        assert producer.poll(timeout=0) == []
        assert sel.select(timeout=0) == []  # all taken: not readable any more


def test_producer_spool_delivers_after_reopen(kz):
    client = kz.connect()
    index = kz.fresh_index(client)
    docs = readings(40, prefix="sp-") + readings(40)  # generated ids are spooled
    with tempfile.TemporaryDirectory() as spool:
        offline = offline_client()
        try:
            producer = offline.producer(spoolDir=spool, lingerMs=1)
            seqs = [producer.produce(index, "c", doc) for doc in docs]
            assert producer.flush(0.5) == Status.ERR_TIMEOUT  # nothing gets through
            assert producer.poll(timeout=0) == []  # out of reach is not a failure
            assert producer.stats()["spool"]["pending"] == 80
            with pytest.raises(KuzzleError) as e:  # one producer per spool
                offline.producer(spoolDir=spool)
            assert e.value.status == Status.ERR_SPOOL
            assert producer.close(timeout=1) == []
        finally:
            offline.close()
        # Kuzzle out of reach, close could not wait for the delivery thread:
        # it lets the spool go as it ends (promptly: it was between attempts).
        deadline = time.monotonic() + 30
        while True:
            try:
                reopened = client.producer(spoolDir=spool)
                break
            except KuzzleError as e:
                if e.status != Status.ERR_SPOOL or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with reopened:
            assert reopened.flush(60) == Status.OK
            reports = list(reopened.reports(timeout=0))
            later = reopened.produce(index, "c", {"body": {"after": True}})
            assert reopened.flush(60) == Status.OK
    assert sorted(r["seq"] for r in reports) == seqs
    assert all(r["ok"] for r in reports)
    assert later > max(seqs)  # seqs go on across the reopen
    assert count(client, index) == 81  # nothing twice, nothing lost


def test_producer_queue_full_with_reject():
    offline = offline_client()
    try:
        # deliveryTimeoutMs=1: the first failed attempt is final, so reports
        # come without waiting for minutes.
        producer = offline.producer(whenFull="reject", maxQueueDocuments=10,
                                    deliveryTimeoutMs=1)
        seqs = [producer.produce("idx", "c", doc) for doc in readings(10)]
        with pytest.raises(KuzzleError) as e:  # room: until the reports are polled
            producer.produce("idx", "c", {"body": {"one": "too many"}})
        assert e.value.status == Status.ERR_QUEUE_FULL
        assert e.value.status_name == "KUZZLE_ERR_QUEUE_FULL"
        got = []
        while len(got) < 10:
            got += producer.poll(timeout=None)
        assert sorted(r["seq"] for r in got) == seqs
        assert all(not r["ok"] and r["status"] == 0 and not r["inDoubt"] for r in got)
        assert producer.produce("idx", "c", {"body": {}}) > max(seqs)  # room again
        producer.close(timeout=0)
    finally:
        offline.close()


# ---- the example ---------------------------------------------------------------


def test_example_runs(kz):
    index = unique_index()
    kz.indexes.append(index)  # created by the example, deleted by the fixture
    env = {**os.environ, "KUZZLE_HOST": HOST, "KUZZLE_PORT": str(PORT), "KUZZLE_INDEX": index}
    run = subprocess.run([sys.executable, str(HERE / "example.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "written 1000, failed 0" in run.stdout
    assert f"{index}/readings now holds 1000 documents" in run.stdout
