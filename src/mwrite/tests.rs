//! Server-free tests of the engine through its network seam: scripted
//! replies, and after every call the same checks: each input document
//! reported exactly once, successes in input order, the JSON well formed,
//! no secret in it. Requests are ordered by events (`Gate`), never by time.

use super::{mwrite, Engine, Outcome};
use crate::config::{Compression, Config, WriteOptions};
use crate::error::{Error, Status};
use crate::net::Network;
use crate::transport::{GzipPool, Reply};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One request as the scripted server saw it.
#[derive(Clone, Debug)]
pub(super) struct Sent {
    /// Its place among all requests of the test (0, 1, ...).
    pub n: usize,
    /// The documents: `_id` (None: id-less) and body.
    pub docs: Vec<(Option<String>, Value)>,
    pub strict: bool,
    /// Sent gzip'd, and its length on the wire.
    pub gzip: bool,
    pub wire_len: usize,
    /// Its round trip may teach the node's limit and the gzip level.
    pub teach: bool,
    /// The request as JSON (inflated).
    pub raw: String,
}

impl Sent {
    pub fn ids(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| d.0.clone().unwrap_or_default())
            .collect()
    }

    /// The `n` of each document's body, in the order sent.
    pub fn ns(&self) -> Vec<i64> {
        self.docs
            .iter()
            .map(|d| d.1["n"].as_i64().unwrap())
            .collect()
    }

    pub fn has(&self, n: i64) -> bool {
        self.ns().contains(&n)
    }
}

/// What the scripted server does with one request.
pub(super) enum Step {
    /// An HTTP answer.
    Answer(u16, String),
    /// No answer: the failure the transport would classify.
    Fail(Error),
}

type Respond = dyn Fn(&Sent) -> Step + Sync;

/// A network whose replies come from a script, which also records every
/// request sent.
pub(super) struct Scripted {
    respond: Box<Respond>,
    count: AtomicUsize,
    pub log: Mutex<Vec<Sent>>,
}

impl Scripted {
    pub fn new(respond: impl Fn(&Sent) -> Step + Sync + 'static) -> Scripted {
        Scripted {
            respond: Box::new(respond),
            count: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn sent(&self) -> Vec<Sent> {
        let mut log = self.log.lock().unwrap().clone();
        log.sort_by_key(|s| s.n);
        log
    }
}

impl Network for Scripted {
    fn exchange(
        &self,
        wire: Vec<u8>,
        gzip: bool,
        raw_len: usize,
        teach: bool,
    ) -> crate::error::Result<Reply> {
        let raw = if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&wire[..])
                .read_to_end(&mut out)
                .expect("the engine sends valid gzip");
            out
        } else {
            wire.clone()
        };
        assert_eq!(raw.len(), raw_len, "raw_len is the request's length");
        let request: Value = serde_json::from_slice(&raw).expect("the engine sends valid JSON");
        assert_eq!(request["controller"], "bulk");
        assert_eq!(request["action"], "mWrite");
        let docs = request["body"]["documents"]
            .as_array()
            .expect("documents")
            .iter()
            .map(|d| {
                let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
                assert!(keys.iter().all(|k| *k == "_id" || *k == "body"), "{d}");
                (d["_id"].as_str().map(String::from), d["body"].clone())
            })
            .collect();
        let sent = Sent {
            n: self.count.fetch_add(1, Ordering::SeqCst),
            docs,
            strict: request["strict"] == true,
            gzip,
            wire_len: wire.len(),
            teach,
            raw: String::from_utf8(raw).expect("the engine sends UTF-8"),
        };
        self.log.lock().unwrap().push(sent.clone());
        match (self.respond)(&sent) {
            Step::Answer(http, body) => Ok(Reply::new(http, body.into_bytes())),
            Step::Fail(e) => Err(e),
        }
    }
}

/// Kuzzle's answer storing every document of `sent` (server ids for
/// id-less ones).
pub(super) fn stored(sent: &Sent) -> Step {
    let successes: Vec<Value> = sent
        .docs
        .iter()
        .enumerate()
        .map(|(i, (id, body))| {
            let id = id.clone().unwrap_or_else(|| format!("srv-{}-{i}", sent.n));
            json!({"_id": id, "_source": body, "_version": 1})
        })
        .collect();
    Step::Answer(
        200,
        json!({"status": 200, "error": null, "result": {"successes": successes, "errors": []}})
            .to_string(),
    )
}

/// Kuzzle's own error envelope.
pub(super) fn kuzzle_error(http: u16, id: &str) -> Step {
    Step::Answer(
        http,
        json!({"status": http, "error": {"id": id, "message": format!("{id} (scripted)")}, "result": null})
            .to_string(),
    )
}

/// A failure with no HTTP answer.
pub(super) fn no_answer(status: Status, in_doubt: bool) -> Step {
    let mut e = Error::new(status, "scripted failure");
    e.in_doubt = in_doubt;
    Step::Fail(e)
}

/// The settings of a test: no gzip, fast retries, generated ids.
pub(super) fn config() -> Config {
    Config {
        retries: 3,
        retry_backoff: Duration::from_millis(1),
        retry_deadline: Duration::from_secs(60),
        ..Config::default()
    }
}

/// Runs one call through `net`; checks the accounting and returns the
/// outcome's status and JSON.
pub(super) fn run(
    net: &Scripted,
    config: &Config,
    concurrency: usize,
    documents: &str,
    options: &WriteOptions,
) -> (Status, Value) {
    let gzip = GzipPool::default();
    let counter = AtomicU64::new(0);
    let secrets = vec!["s3cr3t-token".to_string()];
    let engine = Engine {
        net,
        config,
        compression: config.compression.unwrap_or(Compression::None),
        concurrency,
        spread: concurrency,
        gzip: &gzip,
        id_prefix: "t-",
        id_counter: &counter,
        secrets: &secrets,
    };
    let Outcome { status, json, .. } = mwrite(&engine, "idx", "col", documents, options).unwrap();
    let result: Value = serde_json::from_str(&json).expect("the result is JSON");
    accounted(documents, &result);
    (status, result)
}

/// Every input document appears exactly once in successes or errors, and
/// the successes keep the input order. Documents are told apart by their
/// body's `n` (successes without `_source`, by their `_id`).
pub(super) fn accounted(documents: &str, result: &Value) {
    let input: Vec<Value> = serde_json::from_str(documents).unwrap();
    let n_of = |v: &Value| v["n"].as_i64();
    let mut seen = vec![0; input.len()];
    let position = |n: i64| {
        input
            .iter()
            .position(|d| n_of(&d["body"]) == Some(n))
            .unwrap_or_else(|| panic!("n {n} was never an input"))
    };
    let successes = result["successes"].as_array().expect("successes");
    let errors = result["errors"].as_array().expect("errors");
    let mut last = None;
    for s in successes {
        let p = match n_of(&s["_source"]) {
            Some(n) => position(n),
            None => {
                assert!(s.get("_source").is_none(), "a _source without n: {s}");
                let id = s["_id"].as_str().expect("no _source: found by _id");
                let found = input.iter().position(|d| d["_id"] == id);
                found.unwrap_or_else(|| panic!("_id {id} was never an input"))
            }
        };
        seen[p] += 1;
        assert!(last < Some(p), "successes out of input order: {result}");
        last = Some(p);
        assert!(s["_id"].is_string() || s["_id"].is_null(), "{s}");
    }
    for e in errors {
        let n = n_of(&e["document"]["body"])
            .or_else(|| n_of(&e["document"]["_source"]))
            .unwrap_or_else(|| panic!("errors carry the document: {e}"));
        seen[position(n)] += 1;
        assert!(e["status"].is_u64(), "{e}");
        assert!(e["reason"].is_string(), "{e}");
        assert!(e["inDoubt"].is_boolean(), "{e}");
    }
    for (i, count) in seen.iter().enumerate() {
        assert_eq!(*count, 1, "document {i} reported {count} times: {result}");
    }
    assert!(!result.to_string().contains("s3cr3t-token"));
}

/// `n` documents `{"_id"?: "d<i>", "body": {"n": i, ...}}`: with ids when
/// `ids`, of about `pad` bytes each.
pub(super) fn documents(n: usize, ids: bool, pad: usize) -> String {
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            let body = json!({"n": i, "pad": "x".repeat(pad)});
            match ids {
                true => json!({"_id": format!("d{i}"), "body": body}),
                false => json!({"body": body}),
            }
        })
        .collect();
    Value::Array(docs).to_string()
}

pub(super) fn errors_of(result: &Value) -> &Vec<Value> {
    result["errors"].as_array().unwrap()
}

pub(super) fn successes_of(result: &Value) -> &Vec<Value> {
    result["successes"].as_array().unwrap()
}

/// `n` documents `{"_id"?: id(i), "body": {"n": i, "pad": "x" * pad(i)}}`.
pub(super) fn documents_with(
    n: usize,
    id: impl Fn(usize) -> Option<String>,
    pad: impl Fn(usize) -> usize,
) -> String {
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            let body = json!({"n": i, "pad": "x".repeat(pad(i))});
            match id(i) {
                Some(id) => json!({"_id": id, "body": body}),
                None => json!({"body": body}),
            }
        })
        .collect();
    Value::Array(docs).to_string()
}

/// The `n` of each success's `_source`, in the result's order.
pub(super) fn success_ns(result: &Value) -> Vec<i64> {
    let n = |s: &Value| s["_source"]["n"].as_i64().expect("a _source with n");
    successes_of(result).iter().map(n).collect()
}

/// The `n` of each error's document, in the result's order.
pub(super) fn error_ns(result: &Value) -> Vec<i64> {
    let n = |e: &Value| {
        let d = &e["document"];
        d["body"]["n"]
            .as_i64()
            .or(d["_source"]["n"].as_i64())
            .unwrap()
    };
    errors_of(result).iter().map(n).collect()
}

pub(super) fn range(r: std::ops::Range<i64>) -> Vec<i64> {
    r.collect()
}

/// Each document's id as sent, by `n`, checking that every document was
/// sent with one, and the same one every time (resends and splits).
pub(super) fn ids_by_n(sent: &[Sent]) -> HashMap<i64, String> {
    let mut ids = HashMap::new();
    for s in sent {
        for (n, id) in s.ns().into_iter().zip(s.docs.iter().map(|d| d.0.clone())) {
            let id = id.unwrap_or_else(|| panic!("document {n} sent without an id"));
            let first = ids.entry(n).or_insert_with(|| id.clone());
            assert_eq!(*first, id, "document {n} sent under two ids");
        }
    }
    ids
}

/// Kuzzle's success item for the `i`th document of `sent`.
pub(super) fn success_item(sent: &Sent, i: usize) -> Value {
    let (id, body) = &sent.docs[i];
    let id = id.clone().unwrap_or_else(|| format!("srv-{}-{i}", sent.n));
    json!({"_id": id, "_source": body, "_version": 1})
}

/// Kuzzle's rejection of one document as sent: `{"document":{"_id"?,
/// "_source"},"status":400,"reason"}`.
pub(super) fn rejection(doc: &(Option<String>, Value), reason: &str) -> Value {
    let mut document = json!({"_source": doc.1});
    if let Some(id) = &doc.0 {
        document["_id"] = json!(id);
    }
    json!({"document": document, "status": 400, "reason": reason})
}

/// A 200 mWrite answer listing these items, successes first (as Kuzzle
/// does; `stored`'s, from a sorted map, lists errors first); `pretty`:
/// indented, not what the fast path reads byte for byte.
pub(super) fn answer(successes: Vec<Value>, errors: Vec<Value>, pretty: bool) -> Step {
    let text = |v: &Vec<Value>| match pretty {
        true => serde_json::to_string_pretty(v).unwrap(),
        false => serde_json::to_string(v).unwrap(),
    };
    let body = format!(
        r#"{{"requestId":"r","status":200,"error":null,"result":{{"successes":{},"errors":{}}}}}"#,
        text(&successes),
        text(&errors)
    );
    Step::Answer(200, body)
}

/// Kuzzle storing the documents of `sent` except those `rejected` (by `n`).
pub(super) fn stored_except(sent: &Sent, rejected: impl Fn(i64) -> bool) -> Step {
    let (mut successes, mut errors) = (Vec::new(), Vec::new());
    for (i, n) in sent.ns().into_iter().enumerate() {
        match rejected(n) {
            true => errors.push(rejection(&sent.docs[i], "mapping rejected (scripted)")),
            false => successes.push(success_item(sent, i)),
        }
    }
    answer(successes, errors, false)
}

/// Kuzzle's 413: a bare error object, no envelope.
pub(super) fn too_large() -> Step {
    let body = json!({"message": "Maximum HTTP request size exceeded (scripted)", "status": 413,
        "id": "network.http.request_too_large"});
    Step::Answer(413, body.to_string())
}

/// Strict mode's partial failure: the rejected documents in `error.errors`.
pub(super) fn strict_incomplete(rejections: Vec<Value>) -> Step {
    let body = json!({"status": 400, "result": null, "error": {
        "id": "api.process.incomplete_multiple_request",
        "message": "some documents failed (scripted)", "status": 400, "errors": rejections}});
    Step::Answer(400, body.to_string())
}

/// A proxy's bare HTML error page.
pub(super) fn html(http: u16) -> Step {
    Step::Answer(
        http,
        format!("<html><body><h1>{http}</h1>upstream</body></html>"),
    )
}

/// A count that scripts wait on, to order requests by events, not time.
/// The wait gives up after a minute: a guard against a hang if the engine
/// did not run requests at once as expected (the test then fails), not a
/// pace.
pub(super) struct Gate {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            count: Mutex::new(0),
            changed: Condvar::new(),
        })
    }

    /// Counts one event; the count so far.
    pub fn add(&self) -> usize {
        let mut count = self.count.lock().unwrap();
        *count += 1;
        self.changed.notify_all();
        *count
    }

    /// Waits until `k` events were counted; false if that never happened.
    pub fn wait_for(&self, k: usize) -> bool {
        let count = self.count.lock().unwrap();
        let guard = Duration::from_secs(60);
        let (count, _) = self
            .changed
            .wait_timeout_while(count, guard, |c| *c < k)
            .unwrap();
        *count >= k
    }
}

// ---------------------------------------------------------------------------
// The usual paths

#[test]
fn all_stored_in_one_request() {
    let net = Scripted::new(stored);
    let docs = documents(10, true, 0);
    let (status, result) = run(&net, &config(), 4, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK);
    assert_eq!(successes_of(&result).len(), 10);
    assert_eq!(net.sent().len(), 1);
}

#[test]
fn overloaded_then_stored_is_resent_and_written_once() {
    let net = Scripted::new(|sent| match sent.n {
        0 => kuzzle_error(503, "api.process.overloaded"),
        1 => kuzzle_error(429, "api.process.too_many_requests"),
        _ => stored(sent),
    });
    let docs = documents(5, false, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK);
    let sent = net.sent();
    assert_eq!(sent.len(), 3);
    // the same generated ids each time
    assert_eq!(sent[0].ids(), sent[2].ids());
    assert!(sent[0].ids().iter().all(|id| id.starts_with("t-")));
    assert_eq!(successes_of(&result).len(), 5);
}

#[test]
fn timeout_after_sending_without_ids_is_never_resent() {
    let net = Scripted::new(|sent| match sent.n {
        0 => no_answer(Status::KUZZLE_ERR_TIMEOUT, true),
        _ => stored(sent),
    });
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let docs = documents(4, false, 0);
    let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_TIMEOUT);
    assert_eq!(
        net.sent().len(),
        1,
        "id-less documents in doubt are not resent"
    );
    for e in errors_of(&result) {
        assert_eq!(e["status"], 0);
        assert_eq!(e["inDoubt"], true);
    }
    assert_eq!(result["error"]["inDoubt"], true);
}

// ---------------------------------------------------------------------------
// 413: splitting down to one document

/// How many requests splitting `len` documents takes when the server takes
/// at most `k` at once (halves, the first one the smaller).
fn requests_to_split(len: usize, k: usize) -> usize {
    match len > k {
        true => 1 + requests_to_split(len / 2, k) + requests_to_split(len - len / 2, k),
        false => 1,
    }
}

#[test]
fn split_on_413_at_every_depth() {
    for k in [1, 2, 3, 7] {
        let net = Scripted::new(move |sent| match sent.docs.len() > k {
            true => too_large(),
            false => stored(sent),
        });
        let docs = documents(10, false, 0);
        let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
        assert_eq!(status, Status::KUZZLE_OK, "k {k}: {result}");
        assert_eq!(success_ns(&result), range(0..10), "k {k}");
        let sent = net.sent();
        assert_eq!(sent.len(), requests_to_split(10, k), "k {k}");
        // Each document stored by exactly one request the server took.
        let mut taken: Vec<i64> = sent
            .iter()
            .filter(|s| s.docs.len() <= k)
            .flat_map(Sent::ns)
            .collect();
        taken.sort();
        assert_eq!(taken, range(0..10), "k {k}");
        // The generated ids are the same in every piece, and reported.
        let ids = ids_by_n(&sent);
        for s in successes_of(&result) {
            assert_eq!(s["_id"], ids[&s["_source"]["n"].as_i64().unwrap()]);
        }
    }
}

#[test]
fn one_document_too_large_for_the_server_is_rejected_alone() {
    let net = Scripted::new(|sent| match sent.has(4) {
        true => too_large(),
        false => stored(sent),
    });
    let docs = documents(8, true, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(error_ns(&result), vec![4]);
    let e = &errors_of(&result)[0];
    assert_eq!(e["status"], 413);
    assert_eq!(e["inDoubt"], false);
    assert!(e["reason"]
        .as_str()
        .unwrap()
        .contains("Maximum HTTP request size"));
    assert!(result.get("error").is_none(), "one document's rejection");
    assert_eq!(success_ns(&result), vec![0, 1, 2, 3, 5, 6, 7]);
    let alone = net.sent().iter().filter(|s| s.ns() == [4]).count();
    assert_eq!(alone, 1, "sent alone once, not retried");
}

#[test]
fn document_over_max_request_bytes_is_never_sent() {
    let config = Config {
        max_request_bytes: 400,
        ..config()
    };
    let docs = documents_with(
        6,
        |i| Some(format!("d{i}")),
        |i| if i == 3 { 1000 } else { 10 },
    );
    let net = Scripted::new(stored);
    let (status, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(error_ns(&result), vec![3]);
    let e = &errors_of(&result)[0];
    assert_eq!(
        (e["status"].as_u64(), e["inDoubt"].as_bool()),
        (Some(413), Some(false))
    );
    assert!(
        e["reason"].as_str().unwrap().contains("maxRequestBytes"),
        "{e}"
    );
    assert_eq!(success_ns(&result), vec![0, 1, 2, 4, 5]);
    for s in net.sent() {
        assert!(!s.has(3), "the large document was sent");
        assert!(s.wire_len <= 400, "{} bytes", s.wire_len);
    }
}

#[test]
fn a_proxy_413_page_splits_like_kuzzle_s() {
    let page = "<html><head><title>413 Request Entity Too Large</title></head></html>";
    let net = Scripted::new(move |sent| match sent.docs.len() > 2 {
        true => Step::Answer(413, page.into()),
        false => stored(sent),
    });
    let docs = documents(6, false, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    assert_eq!(success_ns(&result), range(0..6));
    assert_eq!(net.sent().len(), requests_to_split(6, 2));
    ids_by_n(&net.sent());
}

// ---------------------------------------------------------------------------
// Refused before running: resent as they were, ids or not

#[test]
fn refused_before_running_is_resent_as_is_even_without_ids() {
    let refusals = [
        (503, "api.process.overloaded"),
        (503, "api.process.shutting_down"),
        (503, "api.process.not_enough_nodes"),
        (503, "network.entrypoint.shutting_down"),
        (429, "api.process.too_many_requests"),
    ]
    .map(|(http, id)| match kuzzle_error(http, id) {
        Step::Answer(_, body) => (http, body),
        Step::Fail(_) => unreachable!(),
    })
    .into_iter()
    // A rate limiter's bare 429, not Kuzzle's.
    .chain([(429, "Too Many Requests".to_string())]);
    let config = Config {
        generate_ids: false,
        ..config()
    };
    for (http, body) in refusals {
        let refusal = body.clone();
        let net = Scripted::new(move |sent| match sent.n {
            0 => Step::Answer(http, refusal.clone()),
            _ => stored(sent),
        });
        let docs = documents(5, false, 0);
        let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
        assert_eq!(status, Status::KUZZLE_OK, "{body}: {result}");
        let sent = net.sent();
        assert_eq!(sent.len(), 2, "{body}");
        assert_eq!(sent[0].raw, sent[1].raw, "the same request again");
        assert_eq!(success_ns(&result), range(0..5));
    }
}

#[test]
fn overloaded_forever_ends_when_retries_are_spent() {
    let net = Scripted::new(|_| kuzzle_error(503, "api.process.overloaded"));
    let docs = documents(6, false, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_SERVER);
    let sent = net.sent();
    assert_eq!(sent.len(), 1 + config().retries as usize);
    assert!(sent.iter().all(|s| s.raw == sent[0].raw));
    assert!(successes_of(&result).is_empty());
    assert_eq!(error_ns(&result), range(0..6));
    for e in errors_of(&result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(503), Some(false))
        );
    }
    let error = &result["error"];
    assert_eq!(error["id"], "api.process.overloaded");
    assert_eq!(
        (error["status"].as_u64(), error["inDoubt"].as_bool()),
        (Some(503), Some(false))
    );
}

// ---------------------------------------------------------------------------
// In doubt: a proxy's 5xx, a timeout or reset after sending

#[test]
fn proxy_5xx_with_ids_is_resent_under_the_same_ids() {
    for http in [502, 503, 504] {
        let net = Scripted::new(move |sent| match sent.n {
            0 => html(http),
            _ => stored(sent),
        });
        let docs = documents(5, false, 0);
        let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
        assert_eq!(status, Status::KUZZLE_OK, "{http}: {result}");
        let sent = net.sent();
        assert_eq!(sent.len(), 2, "{http}");
        assert_eq!(sent[0].raw, sent[1].raw, "{http}");
        ids_by_n(&sent);
    }
}

#[test]
fn proxy_5xx_without_ids_leaves_idless_documents_in_doubt_unsent() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    for http in [502, 503, 504] {
        let net = Scripted::new(move |sent| match sent.n {
            0 => html(http),
            _ => stored(sent),
        });
        // Even ones with an id, odd ones without.
        let docs = documents_with(6, |i| (i % 2 == 0).then(|| format!("d{i}")), |_| 0);
        let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
        assert_eq!(status, Status::KUZZLE_ERR_SERVER, "{http}: {result}");
        assert_eq!(success_ns(&result), vec![0, 2, 4]);
        assert_eq!(error_ns(&result), vec![1, 3, 5]);
        for e in errors_of(&result) {
            assert_eq!(e["status"], http);
            assert_eq!(e["inDoubt"], true);
            assert!(e["reason"].as_str().unwrap().contains("may or may not"));
        }
        let error = &result["error"];
        assert_eq!(error["id"], "libkuzzle.bad_gateway");
        assert_eq!(
            (error["status"].as_u64(), error["inDoubt"].as_bool()),
            (Some(http as u64), Some(true))
        );
        let sent = net.sent();
        assert_eq!(sent.len(), 2, "{http}");
        assert_eq!(
            sent[1].ns(),
            vec![0, 2, 4],
            "only the documents with an id again"
        );
    }
}

#[test]
fn timeout_after_sending_with_ids_is_resent_and_stored() {
    // generated ids, then the caller's own
    for (generate_ids, own_ids) in [(true, false), (false, true)] {
        let config = Config {
            generate_ids,
            ..config()
        };
        let net = Scripted::new(|sent| match sent.n {
            0 => no_answer(Status::KUZZLE_ERR_TIMEOUT, true),
            _ => stored(sent),
        });
        let docs = documents(4, own_ids, 0);
        let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
        assert_eq!(status, Status::KUZZLE_OK, "{result}");
        let sent = net.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].raw, sent[1].raw);
        let ids = ids_by_n(&sent);
        if own_ids {
            assert_eq!(ids[&3], "d3");
        }
    }
}

#[test]
fn failure_before_sending_is_resent_even_without_ids() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let net = Scripted::new(|sent| match sent.n {
        // refused, then a connect timeout: nothing was written
        0 => no_answer(Status::KUZZLE_ERR_CONNECTION, false),
        1 => no_answer(Status::KUZZLE_ERR_TIMEOUT, false),
        _ => stored(sent),
    });
    let docs = documents(4, false, 0);
    let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let sent = net.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s.raw == sent[0].raw));
    assert!(
        sent[0].docs.iter().all(|d| d.0.is_none()),
        "no id was made up"
    );
}

#[test]
fn reset_after_sending_without_ids_is_in_doubt_and_not_resent() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let net = Scripted::new(|sent| match sent.n {
        0 => no_answer(Status::KUZZLE_ERR_CONNECTION, true),
        _ => stored(sent),
    });
    let docs = documents(3, false, 0);
    let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_CONNECTION);
    assert_eq!(net.sent().len(), 1);
    for e in errors_of(&result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(0), Some(true))
        );
    }
    assert_eq!(result["error"]["status"], 0);
    assert_eq!(result["error"]["inDoubt"], true);
}

#[test]
fn no_answer_ever_leaves_documents_in_doubt_with_their_ids() {
    let net = Scripted::new(|_| no_answer(Status::KUZZLE_ERR_TIMEOUT, true));
    let docs = documents(3, false, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_TIMEOUT);
    let sent = net.sent();
    assert_eq!(sent.len(), 1 + config().retries as usize);
    let ids = ids_by_n(&sent);
    for e in errors_of(&result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(0), Some(true))
        );
        // The generated id is in `document`: writing it again is safe.
        let n = e["document"]["body"]["n"].as_i64().unwrap();
        assert_eq!(e["document"]["_id"], ids[&n], "{e}");
    }
}

// ---------------------------------------------------------------------------
// Answers that cannot be matched to the documents sent

/// Checks that every document of a one-request call came back in doubt
/// because of its answer (HTTP 200), and that it was not resent.
fn all_in_doubt_from_the_answer(net: &Scripted, status: Status, result: &Value, n: i64) {
    assert_eq!(status, Status::KUZZLE_ERR_SERVER, "never OK: {result}");
    assert!(successes_of(result).is_empty(), "{result}");
    assert_eq!(error_ns(result), range(0..n));
    for e in errors_of(result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(200), Some(true))
        );
    }
    let error = &result["error"];
    assert_eq!(error["id"], "libkuzzle.bad_response");
    assert_eq!(
        (error["status"].as_u64(), error["inDoubt"].as_bool()),
        (Some(200), Some(true))
    );
    assert_eq!(net.sent().len(), 1);
}

#[test]
fn answer_with_too_many_or_too_few_results_is_in_doubt() {
    for case in 0..4 {
        for pretty in [false, true] {
            let net = Scripted::new(move |sent| {
                let mut successes: Vec<Value> = (0..sent.docs.len())
                    .map(|i| success_item(sent, i))
                    .collect();
                let mut errors = Vec::new();
                match case {
                    0 => successes.push(json!({"_id": "extra", "_source": {}, "_version": 1})),
                    1 => errors.push(rejection(&sent.docs[0], "and rejected")),
                    2 => drop(successes.pop()),
                    _ => successes.clear(),
                }
                answer(successes, errors, pretty)
            });
            let docs = documents(5, true, 0);
            let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
            all_in_doubt_from_the_answer(&net, status, &result, 5);
        }
    }
}

#[test]
fn answer_naming_unsent_or_repeated_ids_is_in_doubt() {
    for case in 0..3 {
        let net = Scripted::new(move |sent| {
            let mut successes: Vec<Value> = (0..sent.docs.len())
                .map(|i| success_item(sent, i))
                .collect();
            let mut errors = Vec::new();
            match case {
                // an id never sent, the count right
                0 => successes[2]["_id"] = json!("zz"),
                // one id twice, the count right
                1 => successes[2]["_id"] = successes[1]["_id"].clone(),
                // a rejection of a document never sent instead of a success
                _ => {
                    successes.pop();
                    errors.push(rejection(&(Some("zz".into()), json!({})), "no"));
                }
            }
            answer(successes, errors, false)
        });
        let docs = documents(4, true, 0);
        let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
        all_in_doubt_from_the_answer(&net, status, &result, 4);
    }
}

#[test]
fn answer_without_result_is_in_doubt() {
    for body in [
        r#"{"status":200,"error":null,"result":null}"#,
        r#"{"status":200,"error":null}"#,
    ] {
        let net = Scripted::new(move |_| Step::Answer(200, body.to_string()));
        let docs = documents(3, true, 0);
        let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
        all_in_doubt_from_the_answer(&net, status, &result, 3);
    }
}

#[test]
fn garbage_with_a_success_status_is_resent_only_with_ids() {
    for generate_ids in [true, false] {
        let config = Config {
            generate_ids,
            ..config()
        };
        let net = Scripted::new(|sent| match sent.n {
            0 => Step::Answer(200, "<html>hello</html>".into()),
            _ => stored(sent),
        });
        let docs = documents(3, false, 0);
        let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
        if generate_ids {
            assert_eq!(status, Status::KUZZLE_OK, "{result}");
            assert_eq!(net.sent().len(), 2);
        } else {
            assert_eq!(status, Status::KUZZLE_ERR_SERVER, "{result}");
            assert_eq!(net.sent().len(), 1);
            for e in errors_of(&result) {
                assert_eq!(e["inDoubt"], true, "{e}");
            }
            assert_eq!(result["error"]["id"], "libkuzzle.bad_response");
        }
    }
}

// ---------------------------------------------------------------------------
// Kuzzle's per-document rejections

#[test]
fn rejections_in_a_normal_answer_with_ids() {
    let net = Scripted::new(|sent| stored_except(sent, |n| n == 1 || n == 4));
    let docs = documents(6, true, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(success_ns(&result), vec![0, 2, 3, 5]);
    assert_eq!(error_ns(&result), vec![1, 4]);
    for e in errors_of(&result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(400), Some(false))
        );
        assert_eq!(e["reason"], "mapping rejected (scripted)");
    }
    assert!(result.get("error").is_none());
    assert_eq!(net.sent().len(), 1);
}

#[test]
fn rejections_in_a_normal_answer_without_ids_and_mixed() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let id_less = |_: usize| None;
    let mixed = |i: usize| (i % 2 == 0).then(|| format!("d{i}"));
    let inputs = [
        documents_with(6, id_less, |_| 0),
        documents_with(6, mixed, |_| 0),
    ];
    for docs in inputs {
        let net = Scripted::new(|sent| stored_except(sent, |n| n == 1 || n == 2));
        let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
        assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
        assert_eq!(success_ns(&result), vec![0, 3, 4, 5]);
        assert_eq!(error_ns(&result), vec![1, 2]);
        assert!(errors_of(&result).iter().all(|e| e["inDoubt"] == false));
        // Server ids for the stored id-less ones.
        let ids: Vec<&str> = successes_of(&result)
            .iter()
            .map(|s| s["_id"].as_str().unwrap())
            .collect();
        assert!(ids
            .iter()
            .all(|id| id.starts_with("srv-") || id.starts_with('d')));
    }
}

// ---------------------------------------------------------------------------
// Strict mode's partial failure

#[test]
fn strict_partial_with_ids() {
    // the caller's ids, then generated ones
    for own_ids in [true, false] {
        let net = Scripted::new(|sent| {
            assert!(sent.strict, "strict is sent");
            let k = sent.ns().iter().position(|&n| n == 2).unwrap();
            strict_incomplete(vec![rejection(&sent.docs[k], "strict: rejected")])
        });
        let options = WriteOptions {
            strict: true,
            ..WriteOptions::default()
        };
        let docs = documents(5, own_ids, 0);
        let (status, result) = run(&net, &config(), 1, &docs, &options);
        assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
        assert_eq!(error_ns(&result), vec![2]);
        let e = &errors_of(&result)[0];
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(400), Some(false))
        );
        assert_eq!(e["reason"], "strict: rejected");
        assert_eq!(success_ns(&result), vec![0, 1, 3, 4]);
        let ids = ids_by_n(&net.sent());
        for s in successes_of(&result) {
            let n = s["_source"]["n"].as_i64().unwrap();
            assert_eq!(s["_id"], ids[&n]);
            assert!(s["_version"].is_null() && s["created"].is_null(), "{s}");
        }
        assert_eq!(net.sent().len(), 1);
    }
}

#[test]
fn strict_partial_without_ids_is_matched_by_source() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let net = Scripted::new(|sent| {
        let rejected = [1, 3].map(|k| rejection(&sent.docs[k], "strict: rejected"));
        strict_incomplete(rejected.to_vec())
    });
    let options = WriteOptions {
        strict: true,
        ..WriteOptions::default()
    };
    let docs = documents(5, false, 0);
    let (status, result) = run(&net, &config, 1, &docs, &options);
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(error_ns(&result), vec![1, 3]);
    assert!(errors_of(&result).iter().all(|e| e["inDoubt"] == false));
    assert_eq!(success_ns(&result), vec![0, 2, 4]);
    for s in successes_of(&result) {
        assert!(s["_id"].is_null(), "no id given, none known: {s}");
    }
}

/// Strict mode, one rejection matched and one naming no document sent.
fn strict_with_an_unmatched_rejection() -> (Scripted, Status, Value) {
    let net = Scripted::new(|sent| {
        let stray = rejection(&(Some("zz".into()), json!({"n": 99})), "no such");
        strict_incomplete(vec![rejection(&sent.docs[1], "strict: rejected"), stray])
    });
    let options = WriteOptions {
        strict: true,
        ..WriteOptions::default()
    };
    let (status, result) = run(&net, &config(), 1, &documents(4, true, 0), &options);
    (net, status, result)
}

#[test]
fn strict_rejection_matching_no_document_leaves_the_rest_in_doubt() {
    let (net, _, result) = strict_with_an_unmatched_rejection();
    assert!(successes_of(&result).is_empty(), "{result}");
    assert_eq!(
        error_ns(&result),
        vec![1, 0, 2, 3],
        "Kuzzle's rejection first"
    );
    for (k, e) in errors_of(&result).iter().enumerate() {
        assert_eq!(e["status"], 400);
        assert_eq!(e["inDoubt"], k > 0, "{e}");
    }
    assert_eq!(net.sent().len(), 1);
}

#[test]
fn strict_rejection_matching_no_document_is_not_partial() {
    let (_, status, result) = strict_with_an_unmatched_rejection();
    // PARTIAL means "only single documents were rejected"; documents in
    // doubt are a failure of the request, as for any unmatched answer.
    assert_eq!(status, Status::KUZZLE_ERR_SERVER, "{result}");
    assert_eq!(result["error"]["inDoubt"], true, "{result}");
    assert_eq!(result["error"]["status"], 400, "{result}");
}

// ---------------------------------------------------------------------------
// Several workers

#[test]
fn workers_finishing_out_of_order_keep_the_input_order() {
    let config = Config {
        max_documents_per_request: 2,
        ..config()
    };
    // 4 groups, first documents 0, 2, 4, 6: group 0 is answered only once
    // the last group has arrived (the other worker did groups 1 to 3).
    let last = Gate::new();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let stalled = Arc::new(AtomicBool::new(false));
    let (l, a, st) = (last.clone(), answered.clone(), stalled.clone());
    let net = Scripted::new(move |sent| {
        let first = sent.ns()[0];
        if first == 0 && !l.wait_for(1) {
            st.store(true, Ordering::SeqCst);
        }
        a.lock().unwrap().push(first);
        if first == 6 {
            l.add();
        }
        stored_except(sent, |n| n == 3)
    });
    let docs = documents(8, true, 0);
    let (status, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    assert!(
        !stalled.load(Ordering::SeqCst),
        "the second worker never ran"
    );
    assert_eq!(*answered.lock().unwrap(), vec![2, 4, 6, 0]);
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(success_ns(&result), vec![0, 1, 2, 4, 5, 6, 7]);
    assert_eq!(error_ns(&result), vec![3]);
}

#[test]
fn the_call_error_is_the_first_failure_in_input_order() {
    let config = Config {
        max_documents_per_request: 2,
        ..config()
    };
    // Group 3 fails first (403), group 0 after it (404): the call reports
    // group 0's.
    let last = Gate::new();
    let stalled = Arc::new(AtomicBool::new(false));
    let (l, st) = (last.clone(), stalled.clone());
    let net = Scripted::new(move |sent| match sent.ns()[0] {
        0 => {
            if !l.wait_for(1) {
                st.store(true, Ordering::SeqCst);
            }
            kuzzle_error(404, "services.storage.unknown_index")
        }
        6 => {
            let step = kuzzle_error(403, "security.rights.forbidden");
            l.add();
            step
        }
        _ => stored(sent),
    });
    let docs = documents(8, true, 0);
    let (status, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    assert!(
        !stalled.load(Ordering::SeqCst),
        "the second worker never ran"
    );
    assert_eq!(status, Status::KUZZLE_ERR_SERVER, "{result}");
    assert_eq!(result["error"]["id"], "services.storage.unknown_index");
    assert_eq!(error_ns(&result), vec![0, 1, 6, 7]);
    assert_eq!(success_ns(&result), vec![2, 3, 4, 5]);
}

#[test]
fn many_groups_through_four_workers() {
    let config = Config {
        max_documents_per_request: 3,
        ..config()
    };
    // 40 groups of 3. The first 4 requests wait for each other (4 in
    // flight at once); groups starting at a multiple of 15 are refused once
    // (overloaded); documents n % 7 == 3 are rejected.
    let arrived = Gate::new();
    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stalled = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let (a, f, m, st, r) = (
        arrived.clone(),
        in_flight.clone(),
        most.clone(),
        stalled.clone(),
        refused.clone(),
    );
    let net = Scripted::new(move |sent| {
        let now = f.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        if a.add() <= 4 && !a.wait_for(4) {
            st.store(true, Ordering::SeqCst);
        }
        let first = sent.ns()[0];
        let mut refused = r.lock().unwrap();
        let step = match first % 15 == 0 && !refused.contains(&first) {
            true => {
                refused.push(first);
                kuzzle_error(503, "api.process.overloaded")
            }
            false => stored_except(sent, |n| n % 7 == 3),
        };
        f.fetch_sub(1, Ordering::SeqCst);
        step
    });
    let docs = documents(120, true, 0);
    let (status, result) = run(&net, &config, 4, &docs, &WriteOptions::default());
    assert!(
        !stalled.load(Ordering::SeqCst),
        "fewer than 4 requests in flight"
    );
    assert_eq!(most.load(Ordering::SeqCst), 4);
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    let rejected: Vec<i64> = (0..120).filter(|n| n % 7 == 3).collect();
    let kept: Vec<i64> = (0..120).filter(|n| n % 7 != 3).collect();
    assert_eq!(error_ns(&result), rejected);
    assert_eq!(success_ns(&result), kept);
    let sent = net.sent();
    assert_eq!(sent.len(), 40 + 8, "40 groups, 8 of them twice");
    assert!(sent.iter().all(|s| s.docs.len() == 3));
    for first in refused.lock().unwrap().iter() {
        let tries: Vec<&Sent> = sent.iter().filter(|s| s.ns()[0] == *first).collect();
        assert_eq!(tries.len(), 2);
        assert_eq!(tries[0].raw, tries[1].raw);
    }
}

#[test]
fn a_large_call_starts_and_ends_with_smaller_requests_that_teach_nothing() {
    // ~3.1 MB through 4 workers, no gzip: cut for 4 requests per worker
    // (~190 KB), the first 3 (one wave less one) growing to it from a
    // quarter of it, the last 3 shrinking.
    ramps(&config(), 3_000, 3);
}

#[test]
fn large_gzipped_requests_grow_over_two_waves() {
    // ~6.2 MB gzip'd through 4 workers: ~390 KB of JSON per request, 7
    // (two waves less one) growing from an eighth of it, 7 shrinking.
    let config = Config {
        compression: Some(Compression::Gzip),
        ..config()
    };
    ramps(&config, 6_000, 7);
}

#[test]
fn ramps_grow_to_what_max_documents_per_request_allows() {
    // 3,200 documents of ~630 bytes, 100 per request at most: the count,
    // not the bytes (~126 KB per request), makes a request full (~63 KB),
    // and the ramps grow to it instead of reaching it at their second step.
    let config = Config {
        max_documents_per_request: 100,
        ..config()
    };
    let net = Scripted::new(stored);
    let docs = documents(3_200, true, 600);
    let (status, result) = run(&net, &config, 4, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let mut sent = net.sent();
    sent.sort_by_key(|s| s.ns()[0]);
    let counts: Vec<usize> = sent.iter().map(|s| s.docs.len()).collect();
    let k = sent.len();
    assert!(counts.iter().all(|c| *c <= 100), "{counts:?}");
    assert!(counts[..3].windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(
        counts[k - 3..].windows(2).all(|w| w[0] > w[1]),
        "{counts:?}"
    );
    assert!(counts[2] < 100 && counts[k - 3] < 100, "{counts:?}");
    assert_eq!(sent.iter().filter(|s| !s.teach).count(), 6, "{counts:?}");
}

/// `n` documents of ~1 KB through 4 workers: `r` growing requests first
/// and `r` shrinking ones last, that teach nothing, each from
/// 1/(`r` + 1) of a full request; the full ones between.
fn ramps(config: &Config, n: usize, r: usize) {
    let net = Scripted::new(stored);
    let docs = documents(n, true, 1_000);
    let (status, result) = run(&net, config, 4, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let mut sent = net.sent();
    sent.sort_by_key(|s| s.ns()[0]);
    let sizes: Vec<usize> = sent.iter().map(|s| s.raw.len()).collect();
    let teach: Vec<bool> = sent.iter().map(|s| s.teach).collect();
    let k = sent.len();
    assert!(k > 2 * r + 4, "{sizes:?}");
    assert!(teach[..r].iter().all(|t| !t), "{sizes:?}");
    assert!(teach[k - r..].iter().all(|t| !t), "{sizes:?}");
    assert!(teach[r..k - r].iter().all(|t| *t), "{teach:?}");
    let full = sizes[r..k - r].iter().max().copied().unwrap();
    assert!(sizes[..r].windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert!(sizes[k - r..].windows(2).all(|w| w[0] > w[1]), "{sizes:?}");
    assert!(sizes[r - 1] < full && sizes[k - r] < full, "{sizes:?}");
    let step = full / (r + 1);
    assert!(
        sizes[0] < step * 3 / 2 && sizes[k - 1] < step * 3 / 2,
        "{sizes:?}"
    );
    assert!(sizes.iter().all(|s| *s >= 16 * 1024), "{sizes:?}");
    // Consecutive, in input order: nothing sent twice, nothing skipped.
    let ns: Vec<i64> = sent.iter().flat_map(|s| s.ns()).collect();
    assert_eq!(ns, (0..n as i64).collect::<Vec<i64>>());
}

#[test]
fn ramps_never_exceed_a_small_max_request_bytes() {
    // 8 KB requests: the ramps' 16 KB floor would be over the limit, and
    // every one of them split.
    let config = Config {
        max_request_bytes: 8 * 1024,
        ..config()
    };
    let net = Scripted::new(stored);
    let docs = documents(300, true, 1_000);
    let (status, result) = run(&net, &config, 4, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let sent = net.sent();
    assert!(sent.iter().all(|s| s.wire_len <= 8 * 1024));
    // Each document sent once: nothing was split and sent again.
    assert_eq!(sent.iter().map(|s| s.docs.len()).sum::<usize>(), 300);
    // No ramp: its first step, 16 KB at least, would be a full request
    // already; none split in halves.
    assert!(sent.iter().all(|s| s.teach));
}

#[test]
fn a_small_call_is_cut_evenly_and_every_request_teaches() {
    let net = Scripted::new(stored);
    let docs = documents(1_000, true, 1_000);
    let (status, result) = run(&net, &config(), 4, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let sent = net.sent();
    assert!(sent.len() >= 8, "{}", sent.len());
    assert!(sent.iter().all(|s| s.teach));
}

// ---------------------------------------------------------------------------
// A failure in the middle of a split

#[test]
fn timeout_in_one_half_of_a_split() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let net = Scripted::new(|sent| match sent.docs.len() > 5 {
        true => too_large(),
        false if sent.has(0) => no_answer(Status::KUZZLE_ERR_TIMEOUT, true),
        false => stored(sent),
    });
    let docs = documents(10, false, 0);
    let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_TIMEOUT, "{result}");
    assert_eq!(error_ns(&result), range(0..5));
    assert!(errors_of(&result)
        .iter()
        .all(|e| e["inDoubt"] == true && e["status"] == 0));
    assert_eq!(success_ns(&result), range(5..10));
    let ns: Vec<Vec<i64>> = net.sent().iter().map(Sent::ns).collect();
    assert_eq!(
        ns,
        vec![range(0..10), range(0..5), range(5..10)],
        "in doubt: not resent"
    );
}

#[test]
fn overload_and_final_error_in_the_halves_of_a_split() {
    let refused = AtomicBool::new(false);
    let net = Scripted::new(move |sent| match sent.docs.len() > 5 {
        true => too_large(),
        false if sent.has(0) && !refused.swap(true, Ordering::SeqCst) => {
            kuzzle_error(503, "api.process.overloaded")
        }
        false if sent.has(0) => stored(sent),
        false => kuzzle_error(404, "services.storage.unknown_index"),
    });
    let docs = documents(10, false, 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_SERVER, "{result}");
    assert_eq!(result["error"]["id"], "services.storage.unknown_index");
    assert_eq!(success_ns(&result), range(0..5));
    assert_eq!(error_ns(&result), range(5..10));
    for e in errors_of(&result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(404), Some(false))
        );
    }
    let sent = net.sent();
    let ns: Vec<Vec<i64>> = sent.iter().map(Sent::ns).collect();
    assert_eq!(
        ns,
        vec![range(0..10), range(0..5), range(0..5), range(5..10)]
    );
    ids_by_n(&sent);
}

// ---------------------------------------------------------------------------
// Deadlines

#[test]
fn retry_deadline_ends_retries_before_they_are_spent() {
    let config = Config {
        retries: 1000,
        retry_backoff: Duration::from_millis(1),
        retry_deadline: Duration::from_millis(50),
        ..config()
    };
    let net = Scripted::new(|_| kuzzle_error(503, "api.process.overloaded"));
    let docs = documents(4, true, 0);
    let (status, result) = run(&net, &config, 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_SERVER);
    // The backoff doubles from 1 ms: the deadline comes after a few.
    assert!(net.sent().len() < 1000, "{} requests", net.sent().len());
    for e in errors_of(&result) {
        assert_eq!(
            (e["status"].as_u64(), e["inDoubt"].as_bool()),
            (Some(503), Some(false))
        );
    }
}

#[test]
fn groups_are_not_sent_once_kuzzle_is_found_down_past_the_deadline() {
    let config = Config {
        retry_deadline: Duration::ZERO,
        max_documents_per_request: 1,
        ..config()
    };
    let net = Scripted::new(|_| no_answer(Status::KUZZLE_ERR_TIMEOUT, true));
    let docs = documents(40, true, 0);
    let (status, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_TIMEOUT, "{result}");
    let sent = net.sent();
    // At most the request each worker had under way when the first failed.
    assert!((1..=2).contains(&sent.len()), "{} requests", sent.len());
    let sent_ns: Vec<i64> = sent.iter().flat_map(Sent::ns).collect();
    assert_eq!(error_ns(&result), range(0..40));
    for e in errors_of(&result) {
        let n = e["document"]["body"]["n"].as_i64().unwrap();
        assert_eq!(e["status"], 0);
        let reason = e["reason"].as_str().unwrap();
        match sent_ns.contains(&n) {
            true => assert_eq!(e["inDoubt"], true, "{e}"),
            false => {
                assert_eq!(e["inDoubt"], false, "{e}");
                assert!(reason.starts_with("not sent"), "{e}");
            }
        }
    }
}

#[test]
fn groups_are_not_sent_once_a_proxy_says_kuzzle_is_down_past_the_deadline() {
    let config = Config {
        retry_deadline: Duration::ZERO,
        max_documents_per_request: 1,
        ..config()
    };
    // A gateway timing out on a dead Kuzzle: 504 after its own timeout,
    // for every request.
    let net = Scripted::new(|_| html(504));
    let docs = documents(40, true, 0);
    let (_, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    let sent = net.sent().len();
    assert!(sent <= 2, "{sent} requests sent after the deadline");
    let not_sent = errors_of(&result)
        .iter()
        .filter(|e| e["reason"].as_str().unwrap().starts_with("not sent"))
        .count();
    assert_eq!(not_sent, 40 - sent);
}

// ---------------------------------------------------------------------------
// Ids, options, compression

#[test]
fn generated_ids_are_given_once_and_own_ids_kept() {
    let net = Scripted::new(|sent| match sent.n {
        0 => kuzzle_error(503, "api.process.overloaded"),
        1 => no_answer(Status::KUZZLE_ERR_TIMEOUT, true),
        _ => stored(sent),
    });
    let docs = documents_with(6, |i| (i % 2 == 0).then(|| format!("own-{i}")), |_| 0);
    let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let sent = net.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s.raw == sent[0].raw));
    let ids = ids_by_n(&sent);
    let mut generated = Vec::new();
    for n in 0..6 {
        match n % 2 {
            0 => assert_eq!(ids[&n], format!("own-{n}")),
            _ => {
                assert!(ids[&n].starts_with("t-"), "{}", ids[&n]);
                generated.push(ids[&n].clone());
            }
        }
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 3, "distinct ids");
    for s in successes_of(&result) {
        assert_eq!(s["_id"], ids[&s["_source"]["n"].as_i64().unwrap()]);
    }
}

#[test]
fn source_false_and_door_rejections_first() {
    // Documents 2 and 6 are refused at the door; Kuzzle rejects document 0.
    let items: Vec<String> = (0..8)
        .map(|i| match i {
            2 => format!(r#"{{"_id":2,"body":{{"n":{i}}}}}"#),
            6 => format!(r#"{{"_id":"d{i}","body":{{"n":{i}}},"extra":1}}"#),
            _ => format!(r#"{{"_id":"d{i}","body":{{"n":{i}}}}}"#),
        })
        .collect();
    let docs = format!("[{}]", items.join(","));
    let net = Scripted::new(|sent| stored_except(sent, |n| n == 0));
    let options = WriteOptions {
        source: false,
        ..WriteOptions::default()
    };
    let (status, result) = run(&net, &config(), 1, &docs, &options);
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(error_ns(&result), vec![2, 6, 0], "door rejections first");
    let reasons: Vec<&str> = errors_of(&result)
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].contains("_id must be a string"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("unknown key"), "{}", reasons[1]);
    let ids: Vec<&str> = successes_of(&result)
        .iter()
        .map(|s| s["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d1", "d3", "d4", "d5", "d7"]);
    for s in successes_of(&result) {
        assert!(s.get("_source").is_none(), "{s}");
        assert_eq!(
            (s["_version"].as_u64(), s["created"].as_bool()),
            (Some(1), Some(true))
        );
    }
    assert_eq!(net.sent().len(), 1);
    assert_eq!(net.sent()[0].ns(), vec![0, 1, 3, 4, 5, 7]);
}

#[test]
fn gzip_requests_are_inflated_by_the_server() {
    let config = Config {
        compression: Some(Compression::Gzip),
        ..config()
    };
    let net = Scripted::new(stored);
    let docs = documents(300, false, 300);
    let (status, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    assert_eq!(success_ns(&result), range(0..300));
    for s in net.sent() {
        assert!(s.gzip);
        assert!(
            s.wire_len * 4 < s.raw.len(),
            "{} of {}",
            s.wire_len,
            s.raw.len()
        );
    }
    // Split on 413 too: each piece gzip'd again, the ids the same.
    let net = Scripted::new(|sent| match sent.docs.len() > 40 {
        true => too_large(),
        false => stored(sent),
    });
    let (status, result) = run(&net, &config, 2, &docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK, "{result}");
    let sent = net.sent();
    assert!(sent.iter().all(|s| s.gzip));
    assert!(sent.len() > 8, "split");
    ids_by_n(&sent);
}

// ---------------------------------------------------------------------------
// Kuzzle's verdicts, secrets, nothing to send

#[test]
fn final_errors_are_not_retried() {
    let cases = [
        (
            404,
            "services.storage.unknown_index",
            Status::KUZZLE_ERR_SERVER,
        ),
        (401, "security.token.invalid", Status::KUZZLE_ERR_AUTH),
        (
            403,
            "security.rights.forbidden",
            Status::KUZZLE_ERR_FORBIDDEN,
        ),
        (
            400,
            "api.assert.invalid_argument",
            Status::KUZZLE_ERR_SERVER,
        ),
        (
            500,
            "core.fatal.unexpected_error",
            Status::KUZZLE_ERR_SERVER,
        ),
    ];
    for (http, id, expected) in cases {
        let net = Scripted::new(move |_| kuzzle_error(http, id));
        let docs = documents(4, true, 0);
        let (status, result) = run(&net, &config(), 1, &docs, &WriteOptions::default());
        assert_eq!(status, expected, "{id}");
        assert_eq!(net.sent().len(), 1, "{id}: not retried");
        for e in errors_of(&result) {
            assert_eq!(
                (e["status"].as_u64(), e["inDoubt"].as_bool()),
                (Some(http as u64), Some(false))
            );
            assert!(e["reason"].as_str().unwrap().contains(id), "{e}");
        }
        let error = &result["error"];
        assert_eq!(error["id"], id);
        assert_eq!(
            (error["status"].as_u64(), error["inDoubt"].as_bool()),
            (Some(http as u64), Some(false))
        );
    }
}

/// What a server echoing the request's headers puts in its error texts.
const ECHO: &str = "echo: Authorization: Bearer s3cr3t-token";

#[test]
fn secrets_echoed_by_the_server_are_scrubbed() {
    let config = Config {
        generate_ids: false,
        ..config()
    };
    let plain = WriteOptions::default();
    let strict = WriteOptions {
        strict: true,
        ..plain
    };
    let kuzzle = |_: &Sent| {
        let error = json!({"id": "core.fatal.unexpected_error", "message": ECHO});
        Step::Answer(500, json!({"status": 500, "error": error}).to_string())
    };
    let proxy = |_: &Sent| Step::Answer(502, format!("<html>{ECHO}</html>"));
    let rejected = |sent: &Sent| {
        let successes = (1..sent.docs.len()).map(|i| success_item(sent, i));
        answer(
            successes.collect(),
            vec![rejection(&sent.docs[0], ECHO)],
            false,
        )
    };
    let strict_rejected = |sent: &Sent| strict_incomplete(vec![rejection(&sent.docs[0], ECHO)]);
    type Script = fn(&Sent) -> Step;
    let scripts: [(Script, &WriteOptions); 4] = [
        (kuzzle, &plain),
        (proxy, &plain),
        (rejected, &plain),
        (strict_rejected, &strict),
    ];
    for (script, options) in scripts {
        let net = Scripted::new(script);
        let docs = documents(3, false, 0);
        // run() checks that the secret is nowhere in the result.
        let (_, result) = run(&net, &config, 1, &docs, options);
        let text = result.to_string();
        assert!(
            text.contains("Authorization: Bearer ***"),
            "scrubbed, not dropped: {text}"
        );
    }
}

#[test]
fn nothing_to_send_sends_nothing() {
    let net = Scripted::new(stored);
    let (status, result) = run(&net, &config(), 4, "[]", &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_OK);
    assert!(successes_of(&result).is_empty() && errors_of(&result).is_empty());
    let docs = r#"[{"body":{"n":0},"x":1},{"_id":5,"body":{"n":1}},{"body":{"n":2,"deep":"ok"},"body":{"n":2}}]"#;
    let (status, result) = run(&net, &config(), 4, docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_PARTIAL, "{result}");
    assert_eq!(error_ns(&result), vec![0, 1, 2]);
    assert!(errors_of(&result)
        .iter()
        .all(|e| e["status"] == 400 && e["inDoubt"] == false));
    assert!(net.sent().is_empty());
}

// ---- hardening: threads refused, a bug in a worker ----

#[test]
fn threads_the_os_refuses_mean_fewer_workers_not_lost_results() {
    let net = Scripted::new(stored);
    let config = Config {
        max_documents_per_request: 3,
        ..config()
    };
    super::REFUSE_THREADS.set(true);
    let docs = documents(20, true, 0);
    let (status, result) = run(&net, &config, 4, &docs, &WriteOptions::default());
    super::REFUSE_THREADS.set(false);
    assert_eq!(status, Status::KUZZLE_OK);
    assert_eq!(successes_of(&result).len(), 20);
    assert_eq!(
        net.sent().len(),
        7,
        "every group sent by the one worker left"
    );
}

#[test]
fn a_worker_that_panics_leaves_every_document_reported_in_doubt() {
    let net = Scripted::new(|sent| {
        if sent.n == 2 {
            panic!("a bug in the middle of a call (scripted)");
        }
        stored(sent)
    });
    let config = Config {
        max_documents_per_request: 2,
        ..config()
    };
    let docs = r#"[{"_id":"a","body":{"n":0}},{"_id":7,"body":{"n":1}},{"_id":"b","body":{"n":2}},{"_id":"c","body":{"n":3}},{"_id":"d","body":{"n":4}},{"_id":"e","body":{"n":5}},{"_id":"f","body":{"n":6}}]"#;
    let (status, result) = run(&net, &config, 2, docs, &WriteOptions::default());
    assert_eq!(status, Status::KUZZLE_ERR_INTERNAL, "{result}");
    assert_eq!(result["error"]["inDoubt"], true);
    assert!(successes_of(&result).is_empty(), "{result}");
    let errors = errors_of(&result);
    assert_eq!(errors.len(), 7, "{result}");
    assert_eq!(errors[0]["status"], 400, "the door rejection first");
    assert_eq!(errors[0]["inDoubt"], false);
    assert!(errors[1..].iter().all(|e| e["inDoubt"] == true), "{result}");
}
