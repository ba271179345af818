"""Python binding for libkuzzle (ctypes): bulk-write JSON documents into Kuzzle.

    import kuzzle

    with kuzzle.Client(host="127.0.0.1", port=7512) as client:
        result = client.mwrite("iot", "readings",
                               [{"_id": "gw1-0001", "body": {"temp": 21.5}},
                                {"body": {"temp": 22.0}}],
                               wait_for_refresh=True)
        print(result.status.name, len(result.successes), result.errors)
        print(client.query({"controller": "server", "action": "now"}))

Finding the library, in this order: the ``LIBKUZZLE_PATH`` environment
variable (a path to ``libkuzzle.so``; if set it must load, there is no
fallback), then ``<repo>/target/release/libkuzzle.so`` next to this file
(after ``cargo build --release``), then ``ctypes.util.find_library("kuzzle")``.

Errors
------
Every failure reported by the library raises :class:`KuzzleError`, carrying
``status`` (a :class:`Status`), ``status_name`` (the C name, e.g.
``"KUZZLE_ERR_CONNECTION"``), ``status_text`` (``kuzzle_status_str``),
``error`` (the library's ``{"status","id","message"}`` object, also as
``id``, ``message`` and ``http_status``) and ``result`` (the whole parsed
JSON the call returned).

``mwrite`` and statuses -- a bulk write is judged per document:

* ``Status.OK`` and ``Status.PARTIAL`` **return** an :class:`MWriteResult`.
  PARTIAL means the call completed and only single documents were rejected
  (bad shape, refused by Kuzzle): they are listed in ``result.errors``, every
  other document is in ``result.successes``. Check ``result.errors`` (or
  ``result.ok``) yourself, as with any bulk API.
* Any other status (Kuzzle unreachable, index missing, 401, ...) **raises**
  :class:`KuzzleError`. Whole requests failed, but others may have been
  written: the complete result is never lost, it is ``exc.result``, an
  :class:`MWriteResult` with the same ``successes``/``errors`` lists (an
  error with ``inDoubt`` true was sent and got no conclusive answer: the
  document may or may not have been written; ``status`` 0 means no HTTP
  answer came). When the arguments themselves were refused, before
  anything was sent, ``exc.result`` only holds ``{"error": ...}``.

Options and configuration keys may be given in the library's spelling
(``waitForRefresh=True``, ``apiKey=...``) or in snake_case
(``wait_for_refresh=True``, ``api_key=...``, ``timeout_ms=...``): snake_case
names are turned into camelCase before they are sent, and unknown keys are
refused by the library (``Status.ERR_INVALID_ARGUMENT``, naming the key).

Producer (a gateway's queue): ``client.producer(spoolDir=..., ...)`` opens a
:class:`Producer` (``kuzzle_producer_open``; the keys of its configuration in
the README). ``produce`` returns at once with the document's ``seq``; the
library's own thread sends; one final report per document (a ``dict``: see
``kuzzle_producer_poll``) comes through ``poll``, ``reports()``, ``flush`` +
``poll``, or ``close()`` (the ones not polled yet). ``fileno()`` makes it
usable with ``selectors``/``select``: readable while reports wait.

Memory: every ``char *`` the library returns is copied into Python and
released with ``kuzzle_free_result`` at once (never ``free()``); the
``kuzzle_status_str``/``kuzzle_version`` strings are static and never freed.

Threads: ctypes releases the GIL during each call, and one :class:`Client`
may be used by many threads at once for ``mwrite`` and ``query``.
``close()`` stops new calls at once, then waits for the calls in progress to
end before it releases the handle (the C API forbids ``kuzzle_disconnect``
during another call on the same handle). Using a closed client raises
:class:`ClientClosedError` without calling into the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import json
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

__all__ = [
    "Client",
    "ClientClosedError",
    "KuzzleError",
    "MWriteResult",
    "Producer",
    "ProducerClosedError",
    "Status",
    "library_path",
    "status_str",
    "version",
]


class Status(enum.IntEnum):
    """``kuzzle_status`` from ``include/kuzzle.h``, without the ``KUZZLE_``
    prefix. Values are ABI: the library only ever appends new ones, so a
    status unknown to this module is passed on as a plain ``int``."""

    OK = 0
    PARTIAL = 1
    ERR_INVALID_ARGUMENT = 2
    ERR_JSON = 3
    ERR_CONNECTION = 4
    ERR_TIMEOUT = 5
    ERR_TLS = 6
    ERR_AUTH = 7
    ERR_FORBIDDEN = 8
    ERR_SERVER = 9
    ERR_INTERNAL = 10
    ERR_QUEUE_FULL = 11
    ERR_SPOOL = 12


def _status(code: int) -> Union[Status, int]:
    try:
        return Status(code)
    except ValueError:
        return code  # appended by a newer library


# ---- loading the library ----------------------------------------------------


class _KuzzleClient(ctypes.Structure):
    """The opaque ``struct kuzzle_client``: only ever used through a pointer."""


_ClientPtr = ctypes.POINTER(_KuzzleClient)


class _KuzzleProducer(ctypes.Structure):
    """The opaque ``struct kuzzle_producer``: only ever used through a pointer."""


_ProducerPtr = ctypes.POINTER(_KuzzleProducer)


class _Report(ctypes.Structure):
    """``struct kuzzle_report`` (``kuzzle_producer_next_report``); its strings
    belong to the producer (borrowed: ``c_char_p`` copies them as bytes)."""

    _fields_ = [
        ("seq", ctypes.c_uint64),
        ("ok", ctypes.c_bool),
        ("in_doubt", ctypes.c_bool),
        ("redelivered", ctypes.c_bool),
        ("status", ctypes.c_uint16),
        ("version", ctypes.c_int64),
        ("id", ctypes.c_char_p),
        ("reason", ctypes.c_char_p),
        ("index", ctypes.c_char_p),
        ("collection", ctypes.c_char_p),
    ]
_OutStr = ctypes.POINTER(ctypes.c_void_p)  # char **: kept as c_void_p to free it


def _find_library() -> str:
    env = os.environ.get("LIBKUZZLE_PATH")
    if env:
        return env
    built = Path(__file__).resolve().parents[2] / "target" / "release" / "libkuzzle.so"
    if built.is_file():
        return str(built)
    found = ctypes.util.find_library("kuzzle")
    if found:
        return found
    raise OSError(
        "libkuzzle not found: set LIBKUZZLE_PATH to libkuzzle.so, run "
        f"'cargo build --release' (looked for {built}), or install it where "
        "the dynamic linker finds it"
    )


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    c_int, c_char_p, c_void_p = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p

    lib.kuzzle_connect.argtypes = [c_char_p, ctypes.POINTER(_ClientPtr), _OutStr]
    lib.kuzzle_connect.restype = c_int
    lib.kuzzle_mwrite.argtypes = [_ClientPtr, c_char_p, c_char_p, c_char_p, c_char_p, _OutStr]
    lib.kuzzle_mwrite.restype = c_int
    lib.kuzzle_query.argtypes = [_ClientPtr, c_char_p, _OutStr]
    lib.kuzzle_query.restype = c_int
    lib.kuzzle_client_info.argtypes = [_ClientPtr, _OutStr]
    lib.kuzzle_client_info.restype = c_int
    lib.kuzzle_client_stats.argtypes = [_ClientPtr, _OutStr]
    lib.kuzzle_client_stats.restype = c_int
    lib.kuzzle_free_result.argtypes = [c_void_p]
    lib.kuzzle_free_result.restype = None
    lib.kuzzle_disconnect.argtypes = [_ClientPtr]
    lib.kuzzle_disconnect.restype = None
    # Static strings: c_char_p (converted to bytes, never freed) is right here.
    lib.kuzzle_status_str.argtypes = [c_int]
    lib.kuzzle_status_str.restype = c_char_p
    lib.kuzzle_version.argtypes = []
    lib.kuzzle_version.restype = c_char_p

    # The producer. Owned strings through _OutStr (c_void_p, freed with
    # kuzzle_free_result); kuzzle_produce_error's is the library's (c_char_p).
    u64p, sizep = ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_size_t)
    lib.kuzzle_producer_open.argtypes = [_ClientPtr, c_char_p, ctypes.POINTER(_ProducerPtr),
                                         _OutStr]
    lib.kuzzle_producer_open.restype = c_int
    lib.kuzzle_produce.argtypes = [_ProducerPtr, c_char_p, c_char_p, c_char_p, u64p]
    lib.kuzzle_produce.restype = c_int
    lib.kuzzle_produce_batch.argtypes = [_ProducerPtr, c_char_p, c_char_p, c_char_p, u64p,
                                         sizep]
    lib.kuzzle_produce_batch.restype = c_int
    lib.kuzzle_produce_error.argtypes = []
    lib.kuzzle_produce_error.restype = c_char_p
    lib.kuzzle_producer_poll.argtypes = [_ProducerPtr, ctypes.c_size_t, c_int, _OutStr]
    lib.kuzzle_producer_poll.restype = c_int
    lib.kuzzle_producer_next_report.argtypes = [_ProducerPtr, c_int, ctypes.POINTER(_Report)]
    lib.kuzzle_producer_next_report.restype = c_int
    lib.kuzzle_producer_fd.argtypes = [_ProducerPtr]
    lib.kuzzle_producer_fd.restype = c_int
    lib.kuzzle_producer_flush.argtypes = [_ProducerPtr, c_int]
    lib.kuzzle_producer_flush.restype = c_int
    lib.kuzzle_producer_stats.argtypes = [_ProducerPtr, _OutStr]
    lib.kuzzle_producer_stats.restype = c_int
    lib.kuzzle_producer_close.argtypes = [_ProducerPtr, c_int, _OutStr]
    lib.kuzzle_producer_close.restype = c_int
    return lib


_LIB_PATH = _find_library()
_lib = _load(_LIB_PATH)


def library_path() -> str:
    """The path (or name) the library was loaded from."""
    return _LIB_PATH


def version() -> str:
    """The library's version, ``"MAJOR.MINOR.PATCH"`` (``kuzzle_version``)."""
    return _lib.kuzzle_version().decode("utf-8")


def status_str(status: int) -> str:
    """The library's text for a status code; any int is fine
    (unknown values give ``"unknown status"``)."""
    code = int(status)
    if ctypes.c_int(code).value != code:
        code = -1  # ctypes would silently wrap it (2**32 -> 0, "ok"); never a status
    return _lib.kuzzle_status_str(code).decode("utf-8")


# ---- helpers -----------------------------------------------------------------


def _take(ptr: ctypes.c_void_p) -> Optional[str]:
    """Copies a string returned by the library, then releases it (once)."""
    if not ptr.value:
        return None
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        _lib.kuzzle_free_result(ptr.value)
        ptr.value = None


def _parse(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def _cstr(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        # ctypes would silently cut the string at the NUL.
        raise ValueError(f"{what} contains a NUL character")
    return value.encode("utf-8")


def _json(value: Any, what: str) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON, say so here rather than
    # getting ERR_JSON back. ensure_ascii (the default) escapes NULs too.
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("ascii")
    except ValueError as e:
        raise ValueError(f"{what} cannot be sent as JSON: {e}") from None


_SNAKE = re.compile(r"_([a-z0-9])")


def _camel(key: str) -> str:
    """``wait_for_refresh`` -> ``waitForRefresh``; camelCase is kept as is."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), key)


def _keys(options: Mapping[str, Any]) -> dict:
    out: dict = {}
    for key, value in options.items():
        name = _camel(key)
        if name in out:
            raise TypeError(f"option {name!r} given twice")
        out[name] = value
    return out


# ---- results and errors ------------------------------------------------------


class MWriteResult(dict):
    """The parsed ``kuzzle_mwrite`` result (a plain ``dict``:
    ``{"successes": [...], "errors": [...]}``, plus ``"error"`` when whole
    requests failed) with the call's ``status`` attached."""

    def __init__(self, data: Mapping[str, Any], status: Union[Status, int]):
        super().__init__(data)
        self.status = status

    @property
    def successes(self) -> list:
        return self.get("successes", [])

    @property
    def errors(self) -> list:
        return self.get("errors", [])

    @property
    def ok(self) -> bool:
        """True when every document was written."""
        return self.status == Status.OK

    def __repr__(self) -> str:
        name = getattr(self.status, "name", self.status)
        return (f"<MWriteResult {name}: {len(self.successes)} successes, "
                f"{len(self.errors)} errors>")


class KuzzleError(Exception):
    """A failure reported by libkuzzle (see the module docstring)."""

    def __init__(self, status: Union[Status, int], result: Any = None, message: str = ""):
        self.status = _status(int(status))
        self.result = result
        err = result.get("error") if isinstance(result, Mapping) else None
        self.error: dict = err if isinstance(err, dict) else {}
        self.id: Optional[str] = self.error.get("id")
        self.http_status: Optional[int] = self.error.get("status")
        self.message: str = message or self.error.get("message") or ""
        super().__init__(str(self))

    @property
    def status_name(self) -> str:
        """The C name, e.g. ``"KUZZLE_ERR_CONNECTION"``."""
        if isinstance(self.status, Status):
            return "KUZZLE_" + self.status.name
        return f"KUZZLE_STATUS_{int(self.status)}"

    @property
    def status_text(self) -> str:
        return status_str(self.status)

    def __str__(self) -> str:
        parts = [f"{self.status_name} ({self.status_text})"]
        if self.id:
            parts.append(self.id)
        if self.message:
            parts.append(self.message)
        return ": ".join(parts)

    def __reduce__(self):  # picklable despite the custom __init__
        return (type(self), (self.status, self.result, self.message))


class ClientClosedError(KuzzleError):
    """The client was closed; nothing was sent to the library."""

    def __init__(self, status: Union[Status, int] = Status.ERR_INVALID_ARGUMENT,
                 result: Any = None, message: str = "the client is closed"):
        super().__init__(status, result, message)


class ProducerClosedError(KuzzleError):
    """The producer was closed; nothing was sent to the library."""

    def __init__(self, status: Union[Status, int] = Status.ERR_INVALID_ARGUMENT,
                 result: Any = None, message: str = "the producer is closed"):
        super().__init__(status, result, message)


class _Calls:
    """Counts the calls in progress on a handle, so that closing it waits
    for them (the C API forbids releasing a handle during another call)."""

    def __init__(self, handle, closed_error):
        self.handle = handle
        self._closed_error = closed_error
        self._cond = threading.Condition()
        self._busy = 0

    def enter(self):
        with self._cond:
            if self.handle is None:
                raise self._closed_error()
            self._busy += 1
            return self.handle

    def leave(self) -> None:
        with self._cond:
            self._busy -= 1
            if not self._busy:
                self._cond.notify_all()

    def take(self):
        """Refuses new calls, waits for the running ones; the handle (None
        when already taken)."""
        with self._cond:
            handle, self.handle = self.handle, None
            while handle is not None and self._busy:
                self._cond.wait()
            return handle


def _millis(timeout: Optional[float]) -> int:
    """Seconds (None: no limit) as the library's ``int`` milliseconds
    (negative: no limit)."""
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be >= 0 seconds, or None")
    return min(int(timeout * 1000), 2**31 - 1)


# ---- the client --------------------------------------------------------------


class Client:
    """A connection to one Kuzzle server (``kuzzle_connect``).

    ``Client(host="127.0.0.1", port=7512, api_key="...")`` or
    ``Client({"host": "127.0.0.1", "port": 7512})``: the configuration keys
    of the README (``host``, ``port``, ``ssl``, ``username`` + ``password``,
    ``apiKey``, ``timeoutMs``, ``concurrency``, ...); none means every
    default. Raises :class:`KuzzleError` when connecting fails.

    Close it with :meth:`close` or a ``with`` block; it is also closed when
    garbage-collected (with a ``ResourceWarning``, as for files).
    """

    def __init__(self, config: Optional[Mapping[str, Any]] = None, /, **kwargs: Any):
        self._handle = None  # set first: __del__ may run if __init__ fails
        self._cond = threading.Condition()
        self._busy = 0
        merged = dict(config or {})
        merged.update(_keys(kwargs))
        handle = _ClientPtr()
        err = ctypes.c_void_p()
        status = _lib.kuzzle_connect(_json(merged, "config"), ctypes.byref(handle),
                                     ctypes.byref(err))
        text = _take(err)  # freed on every path
        if status != Status.OK:
            if handle:  # the library promises NULL on failure; never leak one
                _lib.kuzzle_disconnect(handle)
            raise KuzzleError(status, _parse(text))
        if not handle:
            raise KuzzleError(Status.ERR_INTERNAL, None, "kuzzle_connect returned no handle")
        self._handle = handle

    # -- lifecycle --

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Logs out (if it logged in) and releases the handle. Idempotent.
        Waits for the calls in progress on other threads to end first."""
        with self._cond:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            while self._busy:
                self._cond.wait()
        _lib.kuzzle_disconnect(handle)

    def __enter__(self) -> "Client":
        if self.closed:
            raise ClientClosedError()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is None:
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:  # interpreter shutting down
            pass
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<kuzzle.Client {'closed' if self.closed else 'open'}>"

    def _enter_call(self):
        with self._cond:
            if self._handle is None:
                raise ClientClosedError()
            self._busy += 1
            return self._handle

    def _leave_call(self) -> None:
        with self._cond:
            self._busy -= 1
            if not self._busy:
                self._cond.notify_all()

    # -- calls --

    def mwrite(self, index: str, collection: str, documents: Iterable[Mapping[str, Any]],
               **options: Any) -> MWriteResult:
        """Creates or replaces documents (``bulk:mWrite``), any number of them.

        ``documents``: ``[{"_id": "optional id", "body": {...}}, ...]``.
        ``options``: ``wait_for_refresh``, ``notify``, ``strict`` (booleans).
        Returns an :class:`MWriteResult` on ``Status.OK`` and
        ``Status.PARTIAL`` (rejected documents in ``.errors``); raises
        :class:`KuzzleError` otherwise, with the result as ``exc.result``.
        """
        if isinstance(documents, (str, bytes, Mapping)):
            raise TypeError("documents must be a list of {'_id'?, 'body'} objects")
        args = (
            _cstr(index, "index"),
            _cstr(collection, "collection"),
            _json(list(documents), "documents"),
            _json(_keys(options), "options") if options else None,
        )
        out = ctypes.c_void_p()
        handle = self._enter_call()
        try:
            status = _lib.kuzzle_mwrite(handle, *args, ctypes.byref(out))
        finally:
            self._leave_call()
            text = _take(out)
        status = _status(status)
        data = _parse(text)
        if not isinstance(data, dict):
            raise KuzzleError(Status.ERR_INTERNAL, data,
                              f"kuzzle_mwrite returned no result object (status {status})")
        result = MWriteResult(data, status)
        if status not in (Status.OK, Status.PARTIAL):
            raise KuzzleError(status, result)
        return result

    def info(self) -> dict:
        """The settings the client runs with, ``"auto"`` settled
        (``compression``, ``concurrency``), under the configuration's key
        names; never a password, token or API key (``kuzzle_client_info``)."""
        return self._json_call(_lib.kuzzle_client_info)

    def stats(self) -> dict:
        """What the client did since it connected (``kuzzle_client_stats``):
        ``{"nodes": [{"address", "alive", "requests", "failures",
        "inFlight", "concurrencyLimit", "rttMs"}], "documents": {"written",
        "failed", "inDoubt"}, "bytes": {"sent", "received"}, "retries"}``.
        Counters only: cheap enough to log every second."""
        return self._json_call(_lib.kuzzle_client_stats)

    def query(self, request: Mapping[str, Any]) -> Any:
        """Any Kuzzle API request, e.g. ``{"controller": "document",
        "action": "count", "index": ..., "collection": ..., "body": {}}``.
        Returns Kuzzle's ``result`` (parsed; ``None`` when it sent none);
        raises :class:`KuzzleError` on any failure."""
        if not isinstance(request, Mapping):
            raise TypeError("request must be a dict with 'controller' and 'action'")
        return self._json_call(_lib.kuzzle_query, _json(dict(request), "request"))

    def producer(self, config: Optional[Mapping[str, Any]] = None, /,
                 **kwargs: Any) -> "Producer":
        """Opens a :class:`Producer` on this client (``kuzzle_producer_open``):
        ``spoolDir`` (or ``spool_dir``), ``lingerMs``, ``batchDocuments``,
        ``maxQueueDocuments``, ``whenFull``, ... (see the README). The client
        may be closed before the producer: the library shares it."""
        merged = dict(config or {})
        merged.update(_keys(kwargs))
        return Producer(self, merged)

    def _json_call(self, function, *args) -> Any:
        """Calls ``function(handle, *args, &out)``: its JSON, parsed, or
        :class:`KuzzleError` unless the status is OK."""
        out = ctypes.c_void_p()
        handle = self._enter_call()
        try:
            status = function(handle, *args, ctypes.byref(out))
        finally:
            self._leave_call()
            text = _take(out)
        data = _parse(text)
        if status != Status.OK:
            raise KuzzleError(status, data)
        return data


# ---- the producer ------------------------------------------------------------


class Producer:
    """A gateway producer (``kuzzle_producer_*``): made by
    :meth:`Client.producer`. ``produce`` queues a document (and with a spool
    writes it to disk) and returns its ``seq``; the library's delivery
    thread sends batches; each document gets one final report, a ``dict``
    ``{"seq", "index", "collection", "_id", "ok": True, "_version",
    "created"}`` or ``{..., "ok": False, "status", "reason", "inDoubt"}``
    (plus ``"redelivered": True`` when it may have been handed out before a
    crash).

    Many threads may produce at once; ``close`` waits for the calls in
    progress. Close it with :meth:`close` or a ``with`` block (garbage
    collection closes it too, with a ``ResourceWarning``).
    """

    def __init__(self, client: Client, config: Mapping[str, Any]):
        self._calls = None  # set first: __del__ may run if __init__ fails
        handle = _ProducerPtr()
        err = ctypes.c_void_p()
        cfg = _json(dict(config), "config")
        client_handle = client._enter_call()
        try:
            status = _lib.kuzzle_producer_open(client_handle, cfg, ctypes.byref(handle),
                                               ctypes.byref(err))
        finally:
            client._leave_call()
            text = _take(err)
        if status != Status.OK:
            if handle:  # NULL on failure, per the header; never leak one
                _lib.kuzzle_producer_close(handle, 0, None)
            raise KuzzleError(status, _parse(text))
        if not handle:
            raise KuzzleError(Status.ERR_INTERNAL, None, "kuzzle_producer_open returned no handle")
        self._calls = _Calls(handle, ProducerClosedError)

    # -- lifecycle --

    @property
    def closed(self) -> bool:
        return self._calls is None or self._calls.handle is None

    def close(self, timeout: Optional[float] = 10.0) -> list:
        """Flushes up to ``timeout`` seconds, stops the delivery thread and
        releases the producer; returns the reports not polled yet (with a
        spool, what was not delivered stays on disk for the next producer;
        without, it is reported failed). Idempotent: ``[]`` once closed."""
        handle = self._calls.take() if self._calls is not None else None
        if handle is None:
            return []
        out = ctypes.c_void_p()
        try:
            _lib.kuzzle_producer_close(handle, _millis(timeout), ctypes.byref(out))
        finally:
            text = _take(out)
        return _parse(text) or []

    def __enter__(self) -> "Producer":
        if self.closed:
            raise ProducerClosedError()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_calls", None) is None or self._calls.handle is None:
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
        except Exception:  # interpreter shutting down
            pass
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<kuzzle.Producer {'closed' if self.closed else 'open'}>"

    def _call(self, function, *args) -> int:
        if self._calls is None:
            raise ProducerClosedError()
        handle = self._calls.enter()
        try:
            return function(handle, *args)
        finally:
            self._calls.leave()

    # -- producing --

    def _produce(self, function, index: str, collection: str, documents: Any, *outs) -> None:
        args = (_cstr(index, "index"), _cstr(collection, "collection"),
                _json(documents, "documents"))
        if self._calls is None:
            raise ProducerClosedError()
        handle = self._calls.enter()
        try:
            status = function(handle, *args, *(ctypes.byref(o) for o in outs))
            # Thread-local in the library: read on this thread, at once.
            why = _lib.kuzzle_produce_error() if status != Status.OK else None
        finally:
            self._calls.leave()
        if status != Status.OK:
            raise KuzzleError(status, None, (why or b"").decode("utf-8", "replace"))

    def produce(self, index: str, collection: str, document: Mapping[str, Any]) -> int:
        """Accepts one document ``{"_id"?: str, "body": {...}}``; its seq.
        Raises :class:`KuzzleError`: ``ERR_INVALID_ARGUMENT``/``ERR_JSON``
        for a document refused (``.message`` says why), ``ERR_QUEUE_FULL``
        without room (``whenFull``), ``ERR_SPOOL``."""
        if not isinstance(document, Mapping):
            raise TypeError("document must be a {'_id'?, 'body'} dict")
        seq = ctypes.c_uint64()
        self._produce(_lib.kuzzle_produce, index, collection, dict(document), seq)
        return seq.value

    def produce_batch(self, index: str, collection: str,
                      documents: Iterable[Mapping[str, Any]]) -> tuple:
        """Accepts documents all or none, with consecutive seqs:
        ``(first_seq, count)`` (``(0, 0)`` for none)."""
        if isinstance(documents, (str, bytes, Mapping)):
            raise TypeError("documents must be a list of {'_id'?, 'body'} objects")
        first, n = ctypes.c_uint64(), ctypes.c_size_t()
        self._produce(_lib.kuzzle_produce_batch, index, collection, list(documents), first, n)
        return first.value, n.value

    # -- reports --

    def poll(self, max: int = 1000, timeout: Optional[float] = 0.0) -> list:
        """At most ``max`` reports, waiting up to ``timeout`` seconds for the
        first one (0: not at all; None: until one comes). ``[]`` when none
        came. The reports of the previous poll count as consumed."""
        if max < 1:
            raise ValueError("max must be >= 1")
        out = ctypes.c_void_p()
        try:
            status = self._call(_lib.kuzzle_producer_poll, max, _millis(timeout),
                                ctypes.byref(out))
        finally:
            text = _take(out)
        data = _parse(text)
        if status != Status.OK:
            raise KuzzleError(status, data)
        return data

    def reports(self, timeout: Optional[float] = 0.0, max: int = 1000):
        """Yields reports as they come; ends when none came within
        ``timeout`` seconds (None: never ends)."""
        while True:
            batch = self.poll(max, timeout)
            if not batch:
                return
            yield from batch

    def fileno(self) -> int:
        """A descriptor readable while reports wait (``kuzzle_producer_fd``),
        for ``selectors``/``select``; then ``poll(timeout=0)``. The producer
        owns it: never close it."""
        return self._call(_lib.kuzzle_producer_fd)

    def flush(self, timeout: Optional[float] = None) -> Union[Status, int]:
        """Sends what waits at once and waits up to ``timeout`` seconds (None:
        as long as it takes) until every document accepted before the call
        has its final report (to poll): ``Status.OK``, ``Status.PARTIAL``
        (some of them failed) or ``Status.ERR_TIMEOUT``."""
        return _status(self._call(_lib.kuzzle_producer_flush, _millis(timeout)))

    def stats(self) -> dict:
        """The producer's counters (``accepted``, ``delivered``, ``failed``,
        ``waiting``, ... and ``spool``: None in memory mode)."""
        out = ctypes.c_void_p()
        try:
            status = self._call(_lib.kuzzle_producer_stats, ctypes.byref(out))
        finally:
            text = _take(out)
        data = _parse(text)
        if status != Status.OK:
            raise KuzzleError(status, data)
        return data
