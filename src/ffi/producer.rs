//! The producer's C functions: `kuzzle_producer_*` and `kuzzle_produce*`.

use super::{arg, boundary, fail, kuzzle_client, put};
use crate::config::ProducerConfig;
use crate::error::{kuzzle_status, Error, Status};
use crate::producer::{Producer, Report};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::ptr;
use std::sync::Mutex;
use std::time::Duration;

/// A gateway producer: documents accepted one at a time (or a batch at a
/// time) from any number of threads, sent in batches by a thread of its
/// own, one final report per document read with `kuzzle_producer_poll`
/// or `kuzzle_producer_next_report`. Opaque: create it with
/// `kuzzle_producer_open`, release it with `kuzzle_producer_close`.
#[allow(non_camel_case_types)]
pub struct kuzzle_producer {
    inner: Producer,
    /// The strings of the last report handed out by
    /// `kuzzle_producer_next_report`, kept until the next call.
    last: Mutex<Option<[CString; 4]>>,
}

/// One delivery report, for a C program that reads reports without a JSON
/// parser (`kuzzle_producer_next_report`). The strings belong to the
/// producer and stay valid until the next `kuzzle_producer_next_report`,
/// `kuzzle_producer_poll` or `kuzzle_producer_close` on it.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct kuzzle_report {
    /// The document's seq, as `kuzzle_produce` gave it.
    pub seq: u64,
    /// Stored (`true`), or failed for good (`false`).
    pub ok: bool,
    /// A failure that may have been applied (see `inDoubt` at the top).
    pub in_doubt: bool,
    /// The report may have been handed out before a crash.
    pub redelivered: bool,
    /// A failure's HTTP status (0: no HTTP answer); 200 when stored.
    pub status: u16,
    /// The stored `_version`, -1 when unknown.
    pub version: i64,
    /// The document's `_id` (decoded, not JSON).
    pub id: *const c_char,
    /// Why it failed; NULL when stored.
    pub reason: *const c_char,
    pub index: *const c_char,
    pub collection: *const c_char,
}

thread_local! {
    /// The message of this thread's last refused `kuzzle_produce*`.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn millis(ms: c_int) -> Duration {
    // Negative: as long as it takes (a year is as good).
    match u64::try_from(ms) {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => Duration::from_secs(365 * 86_400),
    }
}

/// Runs `f` on a live producer, inside the panic boundary.
///
/// SAFETY (caller): `producer` is NULL or a live handle.
unsafe fn with_producer(
    producer: *mut kuzzle_producer,
    f: impl FnOnce(&kuzzle_producer) -> Result<(Status, String), Error>,
) -> (Status, String) {
    boundary(|| {
        // SAFETY: a handle from kuzzle_producer_open, not yet closed, or NULL.
        match unsafe { producer.as_ref() } {
            Some(p) => f(p).unwrap_or_else(fail),
            None => fail(Error::invalid("producer is NULL")),
        }
    })
}

/// Opens a producer on `client` (which it shares: the client handle may be
/// disconnected before the producer is closed).
///
/// `config_json`: NULL or a JSON object (a key set to null counts as absent):
/// - `spoolDir` string, default none (memory only): a directory for the
///   crash-safe spool; one producer per directory at a time (a second one
///   gets `KUZZLE_ERR_SPOOL`). Documents not delivered when the producer
///   closes or the process dies are sent after the next open.
/// - `lingerMs` integer 0..86400000, default 5: how long a document may wait
///   for companions before its request leaves (0: at once).
/// - `batchDocuments` integer 1..1000000, default 16000: documents handed to
///   one `kuzzle_mwrite` (it cuts and sends them `concurrency` at a time);
///   two batches are in flight at most, the next one leaving while the
///   last requests of the one before are out (the client's `concurrency`
///   bounds the requests of both together).
/// - `maxQueueDocuments` integer, default 100000, and `maxQueueBytes`
///   integer, default 67108864: documents accepted whose report was not yet
///   polled, at most (the bound of the memory a producer holds).
/// - `whenFull` "block" (default), "reject" or "dropOldest": what a produce
///   call does without room: wait up to `blockTimeoutMs` (integer, default
///   10000) then `KUZZLE_ERR_QUEUE_FULL`; `KUZZLE_ERR_QUEUE_FULL` at once; or
///   (memory mode only: with a spool it is "block") fail the oldest waiting
///   documents, a report each (status 507).
/// - `deliveryTimeoutMs` integer, default 300000: memory mode only: a document
///   not delivered in that time is reported failed (with a spool it waits
///   for Kuzzle as long as the disk holds it).
/// - `spoolMaxBytes` integer, default 1073741824 (then `whenFull` applies),
///   `spoolSegmentBytes` integer, default 16777216.
/// - `spoolSync` "always", "none" or an interval in ms, default 1000: when
///   the spool's writes reach the disk (`always`: a produce call returns
///   after an fdatasync, shared by concurrent calls).
/// - `waitForRefresh`, `notify` booleans, default false: mWrite's options.
///
/// On success `*out_producer` receives the handle and `*out_error_json` (if
/// not NULL) NULL; on failure `*out_producer` is NULL and `*out_error_json`
/// (if not NULL) the error JSON, to release with `kuzzle_free_result`.
/// Starts two threads (the delivery threads), which end with the producer.
///
/// # Safety
/// `client` is NULL or a live handle; `config_json` is NULL or
/// NUL-terminated; the out-parameters are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_open(
    client: *mut kuzzle_client,
    config_json: *const c_char,
    out_producer: *mut *mut kuzzle_producer,
    out_error_json: *mut *mut c_char,
) -> kuzzle_status {
    if !out_error_json.is_null() {
        // SAFETY: non-NULL out-parameter, writable per the contract.
        unsafe { *out_error_json = ptr::null_mut() };
    }
    if !out_producer.is_null() {
        // SAFETY: as above.
        unsafe { *out_producer = ptr::null_mut() };
    }
    let mut handle: *mut kuzzle_producer = ptr::null_mut();
    let (status, error) = boundary(|| {
        if out_producer.is_null() {
            return fail(Error::invalid("out_producer is NULL"));
        }
        // SAFETY: NULL or a live handle per the contract.
        let Some(client) = (unsafe { client.as_ref() }) else {
            return fail(Error::invalid("client is NULL"));
        };
        let config = match config_json.is_null() {
            true => None,
            // SAFETY: NUL-terminated per the contract.
            false => match unsafe { arg(config_json, "config_json") } {
                Ok(t) => Some(t),
                Err(e) => return fail(e),
            },
        };
        match ProducerConfig::from_json(config)
            .and_then(|config| Producer::open(client.inner.clone(), config))
        {
            Ok(inner) => {
                handle = Box::into_raw(Box::new(kuzzle_producer {
                    inner,
                    last: Mutex::new(None),
                }));
                (Status::KUZZLE_OK, String::new())
            }
            Err(e) => fail(e),
        }
    });
    if status == Status::KUZZLE_OK {
        // SAFETY: checked non-NULL inside the boundary before handle was set.
        unsafe { *out_producer = handle };
    } else {
        // SAFETY: NULL or writable per the contract.
        unsafe { put(out_error_json, error) };
    }
    status
}

/// The shared body of `kuzzle_produce` and `kuzzle_produce_batch`.
///
/// SAFETY (caller): as `kuzzle_produce_batch`.
unsafe fn produce(
    producer: *mut kuzzle_producer,
    index: *const c_char,
    collection: *const c_char,
    json: *const c_char,
    batch: bool,
) -> (Status, u64, usize) {
    let mut accepted = (0, 0);
    let (status, error) = unsafe {
        // SAFETY: per the caller's contract.
        with_producer(producer, |p| {
            // SAFETY (all three): NULL or NUL-terminated per the contract.
            let index = arg(index, "index")?;
            let collection = arg(collection, "collection")?;
            let json = arg(
                json,
                if batch {
                    "documents_json"
                } else {
                    "document_json"
                },
            )?;
            accepted = p.inner.produce(index, collection, json, batch)?;
            Ok((Status::KUZZLE_OK, String::new()))
        })
    };
    let message = match status {
        Status::KUZZLE_OK => String::new(),
        _ => serde_json::from_str::<serde_json::Value>(&error)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or(error),
    };
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        // Most calls succeed after one that did: nothing to rewrite then.
        if !(message.is_empty() && last.is_empty()) {
            *last = CString::new(message.replace('\0', "")).unwrap_or_default();
        }
    });
    (status, accepted.0, accepted.1)
}

/// Accepts one document `{"_id"?: string, "body": object}` for `index` and
/// `collection`, checked as each item of `kuzzle_mwrite` is (a refused one:
/// `KUZZLE_ERR_INVALID_ARGUMENT` or `KUZZLE_ERR_JSON`, the reason in
/// `kuzzle_produce_error()`). Returns once the document is queued and, with
/// a spool, written to it (`spoolSync` says when it is on the disk). A
/// document without `_id` is given one now, kept in the spool, the same at
/// every resend. The document is copied: nothing of `document_json` is kept.
/// `*out_seq` (if not NULL) receives its seq: unique per producer, and per
/// spool across reopens; its report carries it.
/// Without room: `whenFull` (`KUZZLE_ERR_QUEUE_FULL`). Any number of threads
/// may call it at once.
///
/// # Safety
/// `producer` is NULL or a live handle; the strings are NULL or
/// NUL-terminated; `out_seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_produce(
    producer: *mut kuzzle_producer,
    index: *const c_char,
    collection: *const c_char,
    document_json: *const c_char,
    out_seq: *mut u64,
) -> kuzzle_status {
    // SAFETY: per the contract.
    let (status, first, _) = unsafe { produce(producer, index, collection, document_json, false) };
    if !out_seq.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { *out_seq = first };
    }
    status
}

/// Accepts a JSON array of documents, all or none (one refused refuses the
/// call, nothing accepted), with consecutive seqs: `*out_first_seq` and
/// `*out_count` (each if not NULL; 0 and 0 for an empty array or a refusal).
/// Otherwise as `kuzzle_produce`.
///
/// # Safety
/// As `kuzzle_produce`; `out_first_seq` and `out_count` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_produce_batch(
    producer: *mut kuzzle_producer,
    index: *const c_char,
    collection: *const c_char,
    documents_json: *const c_char,
    out_first_seq: *mut u64,
    out_count: *mut usize,
) -> kuzzle_status {
    // SAFETY: per the contract.
    let (status, first, count) =
        unsafe { produce(producer, index, collection, documents_json, true) };
    if !out_first_seq.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { *out_first_seq = first };
    }
    if !out_count.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { *out_count = count };
    }
    status
}

/// Why this thread's last `kuzzle_produce` or `kuzzle_produce_batch` was
/// refused ("" after one that succeeded). The string belongs to the
/// library and stays valid until this thread's next produce call.
#[no_mangle]
pub extern "C" fn kuzzle_produce_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// Hands over at most `max_reports` delivery reports, waiting up to
/// `timeout_ms` for the first one (0: do not wait; negative: until one
/// comes). `*out_reports_json` receives a JSON array (`[]` when none) to
/// release with `kuzzle_free_result`; a report is
/// `{"seq","index","collection","_id","ok":true,"_version","created"}` or
/// `{"seq","index","collection","_id","ok":false,"status","reason","inDoubt"}`,
/// plus `"redelivered":true` when it may have been handed out before a
/// crash. Every accepted document gets exactly one final report; with a
/// spool, the reports of the last poll before a crash (not followed by
/// another poll or a close) come again after the next open, redelivered.
///
/// # Safety
/// `producer` is NULL or a live handle; `out_reports_json` is NULL or
/// writable (NULL: `KUZZLE_ERR_INVALID_ARGUMENT`, nothing taken).
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_poll(
    producer: *mut kuzzle_producer,
    max_reports: usize,
    timeout_ms: c_int,
    out_reports_json: *mut *mut c_char,
) -> kuzzle_status {
    if out_reports_json.is_null() {
        return Status::KUZZLE_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: checked non-NULL; writable per the contract.
    unsafe { *out_reports_json = ptr::null_mut() };
    // SAFETY: NULL or a live handle per the contract.
    let (status, json) = unsafe {
        with_producer(producer, |p| {
            *p.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let reports = p.inner.poll(max_reports, millis(timeout_ms))?;
            Ok((Status::KUZZLE_OK, crate::producer::json_array(&reports)))
        })
    };
    // SAFETY: checked non-NULL above.
    unsafe { put(out_reports_json, json) };
    status
}

/// One report into `*out_report`, waiting up to `timeout_ms` as
/// `kuzzle_producer_poll` (which it is, for one report, without JSON):
/// `KUZZLE_OK` with `*out_report` set, `KUZZLE_ERR_TIMEOUT` when none came
/// in time (`*out_report` cleared: seq 0, version -1, strings NULL). Its strings stay valid until the next
/// call of this function, `kuzzle_producer_poll` or `kuzzle_producer_close`
/// on this producer: call it from one thread.
///
/// # Safety
/// `producer` is NULL or a live handle; `out_report` is writable.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_next_report(
    producer: *mut kuzzle_producer,
    timeout_ms: c_int,
    out_report: *mut kuzzle_report,
) -> kuzzle_status {
    if out_report.is_null() {
        return Status::KUZZLE_ERR_INVALID_ARGUMENT;
    }
    let mut report = kuzzle_report {
        seq: 0,
        ok: false,
        in_doubt: false,
        redelivered: false,
        status: 0,
        version: -1,
        id: ptr::null(),
        reason: ptr::null(),
        index: ptr::null(),
        collection: ptr::null(),
    };
    // SAFETY: NULL or a live handle per the contract.
    let (status, _) = unsafe {
        with_producer(producer, |p| {
            let mut last = p.last.lock().unwrap_or_else(|e| e.into_inner());
            *last = None;
            let Some(r) = p.inner.poll(1, millis(timeout_ms))?.pop() else {
                return Ok((Status::KUZZLE_ERR_TIMEOUT, String::new()));
            };
            let c = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
            let id = serde_json::from_str::<String>(&r.id).unwrap_or_else(|_| r.id.to_string());
            let strings = [
                c(&id),
                c(r.reason.as_deref().unwrap_or("")),
                c(&r.target.index),
                c(&r.target.collection),
            ];
            fill(&mut report, &r, &strings);
            *last = Some(strings);
            Ok((Status::KUZZLE_OK, String::new()))
        })
    };
    // SAFETY: checked non-NULL; writable per the contract.
    unsafe { *out_report = report };
    status
}

fn fill(out: &mut kuzzle_report, r: &Report, strings: &[CString; 4]) {
    out.seq = r.seq;
    out.ok = r.ok;
    out.in_doubt = r.in_doubt;
    out.redelivered = r.redelivered;
    out.status = r.status;
    out.version = r.version.map_or(-1, |v| v as i64);
    out.id = strings[0].as_ptr();
    out.reason = match r.ok {
        true => ptr::null(),
        false => strings[1].as_ptr(),
    };
    out.index = strings[2].as_ptr();
    out.collection = strings[3].as_ptr();
}

/// A file descriptor that is readable while reports wait, for an event loop
/// (poll, epoll, select) that has no thread to block in
/// `kuzzle_producer_poll`: when readable, poll with timeout 0. Owned by the
/// producer (never close it); -1 for a NULL producer.
///
/// # Safety
/// `producer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_fd(producer: *mut kuzzle_producer) -> c_int {
    let mut fd = -1;
    // SAFETY: NULL or a live handle per the contract.
    let _ = unsafe {
        with_producer(producer, |p| {
            fd = p.inner.fd();
            Ok((Status::KUZZLE_OK, String::new()))
        })
    };
    fd
}

/// Sends what waits without waiting for `lingerMs`, and waits up to
/// `timeout_ms` (negative: as long as it takes) until every document
/// accepted before the call has its final report (reports still come
/// through poll): `KUZZLE_OK`, `KUZZLE_PARTIAL` when some of those failed,
/// `KUZZLE_ERR_TIMEOUT`.
///
/// # Safety
/// `producer` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_flush(
    producer: *mut kuzzle_producer,
    timeout_ms: c_int,
) -> kuzzle_status {
    // SAFETY: NULL or a live handle per the contract.
    let (status, _) = unsafe {
        with_producer(producer, |p| {
            Ok((p.inner.flush(millis(timeout_ms)), String::new()))
        })
    };
    status
}

/// The producer's counters as JSON (to release with `kuzzle_free_result`):
/// `accepted`, `delivered`, `failed`, `dropped`, `retriedBatches`,
/// `waiting`, `inFlight`, `reportsWaiting`, `outstanding`,
/// `outstandingBytes`, and `spool` (null in memory mode, else `bytes`,
/// `segments`, `durableSeq`: every seq up to it is on the disk, `nextSeq`,
/// `pending`, `corruptRecords`, `fsyncs`, `bytesWritten`). Cheap: call it as
/// often as you like.
///
/// # Safety
/// `producer` is NULL or a live handle; `out_stats_json` is NULL or
/// writable (NULL: `KUZZLE_ERR_INVALID_ARGUMENT`).
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_stats(
    producer: *mut kuzzle_producer,
    out_stats_json: *mut *mut c_char,
) -> kuzzle_status {
    if out_stats_json.is_null() {
        return Status::KUZZLE_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: NULL or a live handle per the contract.
    let (status, json) =
        unsafe { with_producer(producer, |p| Ok((Status::KUZZLE_OK, p.inner.stats()))) };
    // SAFETY: checked non-NULL; writable per the contract.
    unsafe { put(out_stats_json, json) };
    status
}

/// Flushes up to `timeout_ms`, stops the delivery threads and releases the
/// producer (NULL: a no-op, `KUZZLE_OK`). With a spool, what is not
/// delivered stays on disk for the next open; without, each undelivered
/// document gets a final failure report (status 0, not sent, or in doubt
/// if an earlier attempt was). The reports not yet polled come back in
/// `*out_reports_json` (a JSON array, to release with
/// `kuzzle_free_result`); with `out_reports_json` NULL they are not taken
/// as seen: with a spool they come again, redelivered, after the next open. The producer must not be
/// in use by another thread, nor used afterwards. If a request is still in
/// flight when time is up, its delivery thread finishes it on its own (at
/// most `timeoutMs` later) and its documents stay spooled (memory mode:
/// their reports are lost with the handle).
///
/// # Safety
/// `producer` is NULL or a handle from `kuzzle_producer_open`, not yet
/// closed; `out_reports_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kuzzle_producer_close(
    producer: *mut kuzzle_producer,
    timeout_ms: c_int,
    out_reports_json: *mut *mut c_char,
) -> kuzzle_status {
    if !out_reports_json.is_null() {
        // SAFETY: non-NULL out-parameter, writable per the contract.
        unsafe { *out_reports_json = ptr::null_mut() };
    }
    if producer.is_null() {
        // SAFETY: NULL or writable per the contract.
        unsafe { put(out_reports_json, "[]".into()) };
        return Status::KUZZLE_OK;
    }
    let (status, json) = boundary(|| {
        // SAFETY: a pointer from Box::into_raw in kuzzle_producer_open,
        // released once, per the contract.
        let p = unsafe { Box::from_raw(producer) };
        let reports = p
            .inner
            .close(millis(timeout_ms), !out_reports_json.is_null());
        (Status::KUZZLE_OK, crate::producer::json_array(&reports))
    });
    // SAFETY: NULL or writable per the contract.
    unsafe { put(out_reports_json, json) };
    status
}
