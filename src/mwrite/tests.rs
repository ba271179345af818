//! Server-free tests of the engine through its network seam: scripted
//! replies, and after every call the same checks: each input document
//! reported exactly once, successes in input order, the JSON well formed.

use super::{mwrite, Engine, Outcome};
use crate::config::{Compression, Config, WriteOptions};
use crate::error::{Error, Status};
use crate::net::Network;
use crate::transport::{GzipPool, Reply};
use serde_json::{json, Value};
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One request as the scripted server saw it.
#[derive(Clone, Debug)]
pub(super) struct Sent {
    /// Its place among all requests of the test (0, 1, ...).
    pub n: usize,
    /// The documents: `_id` (None: id-less) and body.
    pub docs: Vec<(Option<String>, Value)>,
    pub strict: bool,
    pub wire_len: usize,
}

impl Sent {
    pub fn ids(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| d.0.clone().unwrap_or_default())
            .collect()
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
    fn exchange(&self, wire: Vec<u8>, gzip: bool, raw_len: usize) -> crate::error::Result<Reply> {
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
            wire_len: wire.len(),
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
        gzip: &gzip,
        id_prefix: "t-",
        id_counter: &counter,
        secrets: &secrets,
    };
    let Outcome { status, json } = mwrite(&engine, "idx", "col", documents, options).unwrap();
    let result: Value = serde_json::from_str(&json).expect("the result is JSON");
    accounted(documents, &result);
    (status, result)
}

/// Every input document appears exactly once in successes or errors, and
/// the successes keep the input order. Documents are told apart by their
/// body's `n`.
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
        let n = n_of(&s["_source"]).expect("successes carry _source with n");
        let p = position(n);
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
