//! The C ABI. Every `unsafe` of the crate lives here; every function catches
//! panics so none unwinds into C.
//!
//! The conventions every function keeps (strings in and out, blocking,
//! threads, error JSON, `inDoubt`) are stated once, at the top of the
//! header: `PREAMBLE` in build.rs.

mod producer;

pub use producer::*;

use crate::client::Client;
use crate::config::{Config, WriteOptions};
use crate::error::{kuzzle_status, Error, Status};
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

/// A connection to one Kuzzle server. Opaque: create it with
/// `kuzzle_connect`, release it with `kuzzle_disconnect`.
///
/// One handle may be used by many threads at once for `kuzzle_mwrite`,
/// `kuzzle_query` and `kuzzle_client_info`. Only `kuzzle_disconnect` must
/// not run while another call on the same handle is in progress.
#[allow(non_camel_case_types)]
pub struct kuzzle_client {
    /// Shared with the client's producers, which may outlive the handle.
    inner: Arc<Client>,
}

/// Runs `f`, turning a panic into `KUZZLE_ERR_INTERNAL` and its error JSON.
fn boundary(f: impl FnOnce() -> (Status, String)) -> (Status, String) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(out) => out,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let e = Error::new(
                Status::KUZZLE_ERR_INTERNAL,
                format!("libkuzzle bug (please report it): {what}"),
            );
            (e.status, e.to_json())
        }
    }
}

/// Reads a C string argument. `name` appears in the error message.
///
/// SAFETY (caller): `p` is NULL or points to a NUL-terminated string that
/// stays valid for the call.
unsafe fn arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| Error::invalid(format!("{name} is not valid UTF-8 ({e})")))
}

/// Hands a string to C. JSON text never holds a NUL byte (control
/// characters are escaped), so the fallback is only a safety net.
fn to_c(s: String) -> *mut c_char {
    if !has_nul(s.as_bytes()) {
        // SAFETY: just checked: no NUL byte. (`CString::new` checks with a
        // byte-at-a-time search: a tenth of the library's own time on a
        // bulk write's result of megabytes.)
        return unsafe { CString::from_vec_unchecked(s.into_bytes()) }.into_raw();
    }
    let clean: Vec<u8> = s.into_bytes().into_iter().filter(|&b| b != 0).collect();
    CString::new(clean).map_or(ptr::null_mut(), CString::into_raw)
}

/// Whether `bytes` holds a 0, in blocks the compiler turns into SIMD.
fn has_nul(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    let found = blocks
        .by_ref()
        .any(|block| block.iter().fold(false, |nul, &b| nul | (b == 0)));
    found || blocks.remainder().contains(&0)
}

/// Stores `s` in `*out` when `out` is not NULL.
///
/// SAFETY (caller): `out` is NULL or valid for a write of one pointer.
unsafe fn put(out: *mut *mut c_char, s: String) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { *out = to_c(s) };
    }
}

fn fail(e: Error) -> (Status, String) {
    (e.status, e.to_json())
}

/// The shape of every call on a client that hands back one string: a NULL
/// `out` is refused (a result must never be dropped), `*out` is always set,
/// a NULL client is an error, `f` runs inside the panic boundary.
///
/// SAFETY (caller): `client` is NULL or a live handle; `out` is NULL or
/// writable.
unsafe fn client_call(
    client: *mut kuzzle_client,
    out: *mut *mut c_char,
    f: impl FnOnce(&Client) -> Result<(Status, String), Error>,
) -> kuzzle_status {
    if out.is_null() {
        return Status::KUZZLE_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: checked non-NULL; writable per the contract.
    unsafe { *out = ptr::null_mut() };
    let (status, json) = boundary(|| {
        // SAFETY: a handle from kuzzle_connect, not yet disconnected, or NULL.
        match unsafe { client.as_ref() } {
            Some(client) => f(&client.inner).unwrap_or_else(fail),
            None => fail(Error::invalid("client is NULL")),
        }
    });
    // SAFETY: checked non-NULL above.
    unsafe { put(out, json) };
    status
}

/// Connects to Kuzzle: reads the configuration, logs in when credentials
/// are given, and checks that Kuzzle answers (one request, not retried;
/// with `hosts`, sent again to another node when one is out of reach).
///
/// `config_json`: a JSON object; `"{}"` means every default, and a key set
/// to `null` counts as absent. An unknown key, a wrong type or a value out
/// of range is `KUZZLE_ERR_INVALID_ARGUMENT` naming the key (never its
/// value); text that is not a JSON object is `KUZZLE_ERR_JSON`.
/// - `host` string, default "localhost": a host name or an IP address (no
///   scheme, port or path).
/// - `port` integer 1..65535, default 7512.
/// - `hosts` array of 1..64 `"host:port"` strings (IPv6 in brackets:
///   `"[::1]:7512"`), instead of `host` and `port` (giving both is
///   invalid): the nodes of a Kuzzle cluster, or entry points to one.
///   Requests spread over the nodes alive, the least loaded first. A node
///   that refuses or resets a connection, times out, answers Kuzzle's
///   "shutting down" 503, or whose proxy answers 502, 503 or 504, is
///   avoided: a request it certainly did not run goes to another node at
///   once (any request), one it may have run is retried at once elsewhere
///   as `retries` allow (documents with an `_id` only, as after any unknown
///   outcome). The node is tried again after 1 s, doubling with each
///   failure in a row up to 30 s (jittered), once a `/_healthcheck` probe
///   (2 s at most, sent by the request that finds the wait over) answers.
///   With every node avoided, requests go to the one due first, paced by
///   the retry backoff. Every node must accept the same credentials (a
///   cluster shares its users and tokens).
/// - `ssl` boolean, default false: HTTPS.
/// - `tlsVerify` boolean, default true: verify the server's certificate.
/// - `caFile` string, default none: a PEM file of the CA certificates to
///   trust instead of the built-in Mozilla roots (a regular file of at most
///   1 MiB).
/// - `timeoutMs` integer 1..86400000, default 60000: bound of one request,
///   from connecting to the end of the answer.
/// - `connectTimeoutMs` integer 1..86400000, default 10000: bound of
///   opening a connection.
/// - `username` + `password` strings, default none: `local` strategy login;
///   the JWT is renewed before it expires, or when Kuzzle says it expired.
/// - `apiKey` or `jwt` non-empty string, default none: sent as a Bearer
///   token, checked here. At most one of these three ways to authenticate;
///   none of them: anonymous.
/// - `maxRequestBytes` integer 1024..1073741824, default 1000000: the
///   largest request on the wire (after gzip); Kuzzle's default limit is
///   1 MB.
/// - `maxDocumentsPerRequest` integer 1..1000000, default 2000.
/// - `compression` "auto", "gzip" or "none", default "auto": "gzip"
///   compresses requests and asks for compressed answers; "auto" is "gzip"
///   unless Kuzzle is on this machine (below), then "none".
/// - `concurrency` integer 1..64, or "auto" (the default): requests in
///   flight. A number is fixed: the requests in flight for one
///   `kuzzle_mwrite`, spread over the nodes. "auto" adapts per node and
///   across every call of the client: each node starts at 8 (4 when Kuzzle
///   is on this machine) and takes one more request in flight per round
///   trip while its round trips do not grow (or less than one request
///   waits), a tenth fewer when it pushes back (429, Kuzzle's "overloaded"
///   503) or its round trips rise above their usual spread with more than
///   a few requests waiting; a request waits for a node under its limit.
///   `kuzzle_client_stats` shows each node's limit.
/// - `concurrencyMax` integer 1..64, default 16: the most requests in
///   flight per node that "auto" reaches (each holds up to
///   `maxRequestBytes` and its answer in memory).
/// - `gzipLevel` integer 1..9, or "auto" (the default): the gzip level of
///   requests. "auto" starts at 2 and moves among 1, 2 and 6 to the one
///   with which a request costs the least time (compressing plus
///   exchanging) per byte of JSON, measured by probing a neighbouring level
///   every 16th request (less and less often while probes lose, down to
///   one request in 256).
/// - `retries` integer 0..100, default 5: retries of a request that failed
///   in a way worth retrying.
/// - `retryBackoffMs` integer 0..86400000, default 200: the pause before the
///   first retry, doubled for each next one up to 10 s, each jittered down
///   to half at most.
/// - `retryDeadlineMs` integer 0..86400000, default 120000: no retry starts
///   later than this after the call began.
/// - `generateIds` boolean, default true: documents without `_id` get a
///   client-side one before the first attempt, so a retry cannot store them
///   twice.
/// - `lazyConnect` boolean, default false: true skips everything below
///   (probe, login, check) here, done on first use instead (and again at
///   each use until it succeeds), so that a gateway booting with its uplink
///   down gets a handle at once; only a bad configuration fails here then.
///
/// With a loopback `host` and `compression` or `concurrency` left to auto,
/// it first asks `server:now` up to 3 times (0.25 s each at most, or
/// `timeoutMs` if less): an answer within 10 ms means Kuzzle is on this
/// machine; three slower ones, a tunnel or proxy to a distant Kuzzle.
/// `kuzzle_client_info` tells what was settled; setting both keys skips
/// this.
///
/// On success `*out_client` receives a handle to release with
/// `kuzzle_disconnect`, and `*out_error_json` (if not NULL) is set to NULL.
/// On failure `*out_client` (if not NULL) is set to NULL and
/// `*out_error_json` (if not NULL) receives the error JSON, to release with
/// `kuzzle_free_result`. A NULL `out_client` is
/// `KUZZLE_ERR_INVALID_ARGUMENT`, nothing done.
///
/// # Safety
/// `config_json` is NULL or NUL-terminated and valid for the call;
/// `out_client` and `out_error_json` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_connect(
    config_json: *const c_char,
    out_client: *mut *mut kuzzle_client,
    out_error_json: *mut *mut c_char,
) -> kuzzle_status {
    if !out_error_json.is_null() {
        // SAFETY: non-NULL out-parameter, writable per the contract.
        unsafe { *out_error_json = ptr::null_mut() };
    }
    if !out_client.is_null() {
        // SAFETY: as above.
        unsafe { *out_client = ptr::null_mut() };
    }
    let mut handle: *mut kuzzle_client = ptr::null_mut();
    let (status, error) = boundary(|| {
        if out_client.is_null() {
            return fail(Error::invalid("out_client is NULL"));
        }
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let text = match unsafe { arg(config_json, "config_json") } {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        match Config::from_json(text).and_then(Client::connect) {
            Ok(client) => {
                handle = Box::into_raw(Box::new(kuzzle_client {
                    inner: Arc::new(client),
                }));
                (Status::KUZZLE_OK, String::new())
            }
            Err(e) => fail(e),
        }
    });
    if status == Status::KUZZLE_OK {
        // SAFETY: checked non-NULL inside the boundary before handle was set.
        unsafe { *out_client = handle };
    } else {
        // SAFETY: NULL or writable per the contract.
        unsafe { put(out_error_json, error) };
    }
    status
}

/// Creates or replaces many documents with Kuzzle's `bulk:mWrite`.
///
/// `index`, `collection`: non-empty names.
/// `documents_json`: a JSON array of `{"_id"?: string, "body": object}`,
/// under 4 GiB (larger: `KUZZLE_ERR_INVALID_ARGUMENT`, nothing sent).
/// `options_json`: NULL or a JSON object with `waitForRefresh`, `notify`,
/// `strict` (booleans, default false) and `source` (default true; false:
/// successes leave out `_source`, for a result a fraction of the size).
///
/// `*out_result_json` always receives a string (release it with
/// `kuzzle_free_result`): `{"successes":[...],"errors":[...]}` as soon as
/// `documents_json` is a valid array, plus `"error":{...}` when whole
/// requests failed; otherwise only `{"error":{...}}`.
/// Every input document appears exactly once in `successes` or `errors`.
/// A success is `{"_id","_version","_source","created"}` (no `_source` with
/// `"source":false`); `created` is Kuzzle's when it sends one, else derived
/// as `_version == 1`. With `strict`, documents Kuzzle stored beside
/// rejected ones have `_version` and `created` null, and `_id` null when
/// neither the caller nor `generateIds` gave one. An error is
/// `{"document","status","reason","inDoubt"}` (see the header's preamble).
/// Each answer is bounded in proportion to its request (twice its size,
/// plus 512 bytes per `maxDocumentsPerRequest`, plus 1 MiB), whatever the
/// server sends.
///
/// If `out_result_json` is NULL nothing is done and
/// `KUZZLE_ERR_INVALID_ARGUMENT` is returned: results are never dropped.
///
/// Returns `KUZZLE_OK` when `errors` is empty, `KUZZLE_PARTIAL` when only
/// single documents were rejected, else the class of the first failure.
/// Thread-safe on a shared handle; may start up to `concurrency - 1`
/// threads for the call (with "auto", the nodes' limits plus one each,
/// less one, 63 at most).
///
/// # Safety
/// String arguments are NULL or NUL-terminated and valid for the call;
/// out-parameters are NULL or writable; `client` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_mwrite(
    client: *mut kuzzle_client,
    index: *const c_char,
    collection: *const c_char,
    documents_json: *const c_char,
    options_json: *const c_char,
    out_result_json: *mut *mut c_char,
) -> kuzzle_status {
    // SAFETY: NULL or live handle, NULL or writable out, per the contract.
    unsafe {
        client_call(client, out_result_json, |client| {
            // SAFETY (all four): NULL or NUL-terminated strings per the contract.
            let index = arg(index, "index")?;
            let collection = arg(collection, "collection")?;
            let documents = arg(documents_json, "documents_json")?;
            let options = if options_json.is_null() {
                None
            } else {
                Some(arg(options_json, "options_json")?)
            };
            let options = WriteOptions::from_json(options)?;
            let outcome = client.mwrite(index, collection, documents, &options)?;
            Ok((outcome.status, outcome.json))
        })
    }
}

/// Sends any Kuzzle API request, in Kuzzle's JSON request format:
/// `{"controller","action","index"?,"collection"?,"_id"?,"body"?, ...}`.
///
/// `*out_result_json` always receives a string to release with
/// `kuzzle_free_result`: Kuzzle's `result` (`null` when it sent none) on
/// `KUZZLE_OK`, else the error JSON. Retried only when Kuzzle certainly
/// did not run it (any action may be sent, not all are idempotent).
/// A NULL `out_result_json` is `KUZZLE_ERR_INVALID_ARGUMENT`, nothing done.
/// Thread-safe on a shared handle.
///
/// # Safety
/// String arguments are NULL or NUL-terminated and valid for the call;
/// out-parameters are NULL or writable; `client` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_query(
    client: *mut kuzzle_client,
    request_json: *const c_char,
    out_result_json: *mut *mut c_char,
) -> kuzzle_status {
    // SAFETY: NULL or live handle, NULL or writable out, per the contract.
    unsafe {
        client_call(client, out_result_json, |client| {
            // SAFETY: NULL or a NUL-terminated string per the contract.
            let request = arg(request_json, "request_json")?;
            Ok((Status::KUZZLE_OK, client.query(request)?))
        })
    }
}

/// The settings a client runs with, those that `kuzzle_connect` settled
/// included (`compression` and `concurrency` left to "auto"), as a JSON
/// object with the configuration's key names: `host`, `port`, `ssl`,
/// `auth` (`"anonymous"`, `"local"` or `"token"`), `username` (or null),
/// `compression` (`"none"` or `"gzip"`), `concurrency` (the number
/// settled; per node's limits: `kuzzle_client_stats`), `concurrencyMax`,
/// `hosts` (every node as `"host:port"`), `maxRequestBytes`,
/// `maxDocumentsPerRequest`, `timeoutMs`, `connectTimeoutMs`, `caFile`,
/// `tlsVerify`, `retries`, `retryBackoffMs`, `retryDeadlineMs`,
/// `generateIds`, `lazyConnect`, and `connected` (false until a
/// `lazyConnect` client first reached Kuzzle; `compression` and
/// `concurrency` left to auto are null until then). No password, token or API key appears in it. Useful to
/// log what a gateway runs with.
///
/// `*out_info_json` always receives a string to release with
/// `kuzzle_free_result` (the error JSON when `client` is NULL). A NULL
/// `out_info_json` is `KUZZLE_ERR_INVALID_ARGUMENT`. No I/O.
/// Thread-safe on a shared handle.
///
/// # Safety
/// `out_info_json` is NULL or writable; `client` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_client_info(
    client: *mut kuzzle_client,
    out_info_json: *mut *mut c_char,
) -> kuzzle_status {
    // SAFETY: NULL or live handle, NULL or writable out, per the contract.
    unsafe {
        client_call(client, out_info_json, |client| {
            Ok((Status::KUZZLE_OK, client.info()))
        })
    }
}

/// What the client did since it connected, as a JSON object, cumulative:
///
/// ```json
/// {"nodes": [{"address": "host:port", "alive": true, "requests": 12,
///             "failures": 0, "inFlight": 2, "concurrencyLimit": 6,
///             "rttMs": 14.2}],
///  "documents": {"written": 24000, "failed": 0, "inDoubt": 0},
///  "bytes": {"sent": 1843200, "received": 2211840},
///  "retries": 0,
///  "connections": {"opened": 4, "reused": 916, "stale": 0},
///  "tlsHandshakes": {"full": 1, "resumed": 3},
///  "gzipLevel": 2}
/// ```
///
/// One entry per node of `hosts` (or the one `host`), in the configuration's
/// order: `alive` false while the node is avoided after a failure;
/// `requests` sent to it, `failures` among them (no answer, or pushed back:
/// 429, Kuzzle's "overloaded" 503); `inFlight` now; `concurrencyLimit`, the
/// requests it may have in flight (adaptive with `"concurrency": "auto"`,
/// else the configured number); `rttMs`, the moving average of its
/// successful requests' round trips (null before the first). `documents`:
/// every mWrite's documents (the producers' too) by outcome, `inDoubt`
/// counted among `failed`. `bytes`: through the client's TCP connections
/// each way, HTTP heads and bodies, TLS records over HTTPS. `retries`:
/// requests sent again (after a backoff, or at once to another node).
/// `connections`: TCP connections `opened`, requests sent on a connection an
/// earlier one used (`reused`: a server that keeps connections alive, such
/// as a reverse proxy; Kuzzle itself closes them), and requests that found
/// their pooled connection closed and went on another (`stale`).
/// `tlsHandshakes`: one per connection opened over HTTPS, `full` or
/// `resumed` (a session of an earlier connection). `gzipLevel`: the level
/// requests are compressed at now.
///
/// Counters only: no I/O, no wait, cheap enough to call every second.
/// `*out_stats_json` always receives a string to release with
/// `kuzzle_free_result` (the error JSON when `client` is NULL). A NULL
/// `out_stats_json` is `KUZZLE_ERR_INVALID_ARGUMENT`. Thread-safe on a
/// shared handle.
///
/// # Safety
/// `out_stats_json` is NULL or writable; `client` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_client_stats(
    client: *mut kuzzle_client,
    out_stats_json: *mut *mut c_char,
) -> kuzzle_status {
    // SAFETY: NULL or live handle, NULL or writable out, per the contract.
    unsafe {
        client_call(client, out_stats_json, |client| {
            Ok((Status::KUZZLE_OK, client.stats()))
        })
    }
}

/// Releases a string returned by libkuzzle. NULL is a no-op. Each string is
/// released once; never pass it to `free()`.
///
/// # Safety
/// `json` is NULL or a string returned by libkuzzle, not yet released.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_free_result(json: *mut c_char) {
    if json.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: a pointer from CString::into_raw in this library, released
        // once, per the contract.
        drop(unsafe { CString::from_raw(json) });
    });
}

/// Logs out (when the client logged in with username/password: one
/// request, bounded by `timeoutMs`) and releases the handle. NULL is a
/// no-op. The handle must not be in use by another thread, nor used
/// afterwards.
///
/// # Safety
/// `client` is NULL or a handle from `kuzzle_connect`, not yet released.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_disconnect(client: *mut kuzzle_client) {
    if client.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a pointer from Box::into_raw in kuzzle_connect, released
        // once, per the contract.
        let client = unsafe { Box::from_raw(client) };
        client.inner.logout();
    }));
}

/// A static text for a status code: never NULL, never released. Takes an
/// `int` so any value is safe; unknown values give "unknown status".
#[no_mangle]
pub extern "C" fn kuzzle_status_str(status: c_int) -> *const c_char {
    Status::describe(status).as_ptr().cast()
}

/// The library's version ("MAJOR.MINOR.PATCH"), a static string; compare
/// with the header's `KUZZLE_VERSION` to catch a header/library mismatch.
#[no_mangle]
pub extern "C" fn kuzzle_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_found_anywhere() {
        for len in [0, 1, 63, 64, 65, 200] {
            let text = vec![b'a'; len];
            assert!(!has_nul(&text));
            for at in 0..len {
                let mut t = text.clone();
                t[at] = 0;
                assert!(has_nul(&t), "len {len}, NUL at {at}");
            }
        }
        let c = to_c("a\0b".into());
        // SAFETY: from to_c, released once.
        let back = unsafe { CString::from_raw(c) };
        assert_eq!(back.as_bytes(), b"ab");
    }
}
