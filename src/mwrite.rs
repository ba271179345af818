//! The bulk:mWrite engine: checks documents at the door, splits them into
//! requests that fit `maxRequestBytes` on the wire, sends up to `concurrency`
//! of them at once, retries what is safe to retry, and merges every answer
//! into one `{"successes":[...],"errors":[...]}` where each input document
//! appears exactly once.

use crate::client::Client;
use crate::config::{Compression, WriteOptions};
use crate::error::{push_json_str, Error, Result, Status};
use crate::retry::{self, Backoff};
use crate::transport::{self, Answer};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Elasticsearch refuses longer ids, and one such id fails a whole request.
pub(crate) const MAX_ID_BYTES: usize = 512;
/// Kuzzle overflows its stack on bodies nested ~20,000 levels deep and fails
/// the whole request; Elasticsearch maps far less. Stop such documents alone.
pub(crate) const MAX_DEPTH: usize = 512;
/// What is sampled to estimate the gzip ratio before cutting requests.
const SAMPLE_BYTES: usize = 128 * 1024;

/// A document that passed the door checks.
struct Doc<'a> {
    /// The `_id` as a JSON string literal, when there is one.
    id: Option<Cow<'a, str>>,
    /// The body's JSON text, validated.
    body: &'a str,
}

impl Doc<'_> {
    fn wire_len(&self) -> usize {
        self.body.len() + self.id.as_ref().map_or(0, |i| i.len() + 8) + 10
    }

    /// `{"_id":...,"body":...}` as sent.
    fn write(&self, out: &mut Vec<u8>) {
        match &self.id {
            Some(id) => {
                out.extend_from_slice(b"{\"_id\":");
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(b",\"body\":");
            }
            None => out.extend_from_slice(b"{\"body\":"),
        }
        out.extend_from_slice(self.body.as_bytes());
        out.push(b'}');
    }
}

/// Checks one input item; `Err` is the reason it is rejected.
fn check_item<'a>(raw: &'a RawValue, client: &Client) -> std::result::Result<Doc<'a>, String> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err("a document must be an object {\"_id\"?: string, \"body\": object}".into());
    }
    let (mut id, mut body) = (None, None);
    for (key, value, depth) in members(text) {
        let name = if key.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(key).unwrap_or_default())
        } else {
            Cow::Borrowed(&key[1..key.len() - 1])
        };
        let slot = match &*name {
            "_id" => &mut id,
            "body" => &mut body,
            _ => {
                return Err(format!(
                    "invalid document: unknown key {key} (a document has \"_id\" and \"body\")"
                ))
            }
        };
        if slot.replace((value, depth)).is_some() {
            return Err(format!("invalid document: duplicate key {key}"));
        }
    }
    let body = match body {
        Some((b, depth)) if b.starts_with('{') => {
            if depth > MAX_DEPTH {
                return Err(format!(
                    "document body is nested deeper than {MAX_DEPTH} levels"
                ));
            }
            b
        }
        _ => return Err("document body must be an object".into()),
    };
    let id = match id.map(|(text, _)| text) {
        None | Some("null") | Some("\"\"") => None,
        Some(text) if text.starts_with('"') => {
            let decoded_len = if text.contains('\\') {
                serde_json::from_str::<String>(text).map_or(usize::MAX, |s| s.len())
            } else {
                text.len() - 2
            };
            if decoded_len > MAX_ID_BYTES {
                return Err(format!("_id is longer than {MAX_ID_BYTES} bytes"));
            }
            Some(Cow::Borrowed(text))
        }
        Some(_) => return Err("_id must be a string".into()),
    };
    let id = match id {
        None if client.config.generate_ids => Some(Cow::Owned(format!("\"{}\"", client.next_id()))),
        id => id,
    };
    Ok(Doc { id, body })
}

/// The members of a JSON object that serde_json has already validated: each
/// key (with its quotes), its value's text, and that value's nesting depth.
/// One pass, no recursion: cheaper than parsing the item a second time.
fn members(obj: &str) -> Vec<(&str, &str, usize)> {
    let b = obj.as_bytes();
    let mut out = Vec::with_capacity(2);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // Index just past the closing quote of the string that starts at `i`.
    let end_of_string = |mut i: usize| {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        b.len()
    };
    let mut i = 1; // after '{'
    loop {
        skip_ws(&mut i);
        if i >= b.len() || b[i] == b'}' {
            return out;
        }
        let key_end = end_of_string(i);
        let key = &obj[i..key_end];
        i = key_end;
        skip_ws(&mut i);
        i += 1; // ':'
        skip_ws(&mut i);
        let start = i;
        let (mut depth, mut max) = (0usize, 0usize);
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = end_of_string(i);
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                b'{' | b'[' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                b',' | b'}' | b']' if depth == 0 => break,
                c if depth == 0 && c.is_ascii_whitespace() => break,
                _ => {}
            }
            i += 1;
        }
        out.push((key, &obj[start..i], max));
        skip_ws(&mut i);
        if i < b.len() && b[i] == b',' {
            i += 1;
        }
    }
}

/// What one request contributed to the result: JSON items already written.
#[derive(Default)]
struct Fragment {
    successes: Vec<u8>,
    errors: Vec<u8>,
    n_success: usize,
    n_error: usize,
    /// The first whole-request failure, if any.
    failure: Option<Error>,
}

impl Fragment {
    fn open(buf: &mut Vec<u8>, n: &mut usize) {
        if *n > 0 {
            buf.push(b',');
        }
        *n += 1;
    }

    fn error_raw(&mut self, document: &str, status: u16, reason: &str) {
        Self::open(&mut self.errors, &mut self.n_error);
        self.errors.extend_from_slice(b"{\"document\":");
        self.errors.extend_from_slice(document.as_bytes());
        self.errors.extend_from_slice(b",\"status\":");
        self.errors.extend_from_slice(status.to_string().as_bytes());
        self.errors.extend_from_slice(b",\"reason\":");
        self.errors.extend_from_slice(reason.as_bytes());
        self.errors.push(b'}');
    }

    fn error(&mut self, document: &str, status: u16, reason: &str) {
        let mut r = String::with_capacity(reason.len() + 2);
        push_json_str(&mut r, reason);
        self.error_raw(document, status, &r);
    }

    fn doc_error(&mut self, doc: &Doc, status: u16, reason: &str) {
        let mut d = Vec::with_capacity(doc.wire_len());
        doc.write(&mut d);
        self.error(&String::from_utf8_lossy(&d), status, reason);
    }

    fn success(&mut self, id: &str, version: Option<u64>, source: &str, created: Option<bool>) {
        Self::open(&mut self.successes, &mut self.n_success);
        let s = &mut self.successes;
        s.extend_from_slice(b"{\"_id\":");
        s.extend_from_slice(id.as_bytes());
        s.extend_from_slice(b",\"_version\":");
        match version {
            Some(v) => s.extend_from_slice(v.to_string().as_bytes()),
            None => s.extend_from_slice(b"null"),
        }
        s.extend_from_slice(b",\"_source\":");
        s.extend_from_slice(source.as_bytes());
        s.extend_from_slice(match created {
            Some(true) => b",\"created\":true}",
            Some(false) => b",\"created\":false}",
            None => b",\"created\":null}",
        });
    }

    fn fail(&mut self, docs: &[&Doc], error: Error) {
        let reason = if error.http == 0 && error.in_doubt {
            format!(
                "{} (no answer from Kuzzle: this document may or may not have been written)",
                error.message
            )
        } else {
            error.message.clone()
        };
        for doc in docs {
            self.doc_error(doc, error.http, &reason);
        }
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    fn absorb(&mut self, other: Fragment) {
        for (mine, n, theirs, m) in [
            (
                &mut self.successes,
                &mut self.n_success,
                other.successes,
                other.n_success,
            ),
            (
                &mut self.errors,
                &mut self.n_error,
                other.errors,
                other.n_error,
            ),
        ] {
            if m > 0 {
                if *n > 0 {
                    mine.push(b',');
                }
                mine.extend_from_slice(&theirs);
                *n += m;
            }
        }
        if self.failure.is_none() {
            self.failure = other.failure;
        }
    }
}

#[derive(Deserialize)]
struct MWriteResult<'a> {
    #[serde(borrow)]
    successes: Vec<SuccessItem<'a>>,
    #[serde(borrow)]
    errors: Vec<ErrorItem<'a>>,
}

#[derive(Deserialize)]
struct SuccessItem<'a> {
    #[serde(borrow, rename = "_id")]
    id: &'a RawValue,
    #[serde(default, rename = "_version")]
    version: Option<u64>,
    #[serde(borrow, rename = "_source")]
    source: &'a RawValue,
    #[serde(default)]
    created: Option<bool>,
}

#[derive(Deserialize)]
struct ErrorItem<'a> {
    #[serde(borrow)]
    document: &'a RawValue,
    #[serde(default)]
    status: Option<u16>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
}

impl ErrorItem<'_> {
    fn push_to(&self, out: &mut Fragment) {
        let reason = match self.reason {
            Some(r) if r.get().starts_with('"') => Cow::Borrowed(r.get()),
            Some(r) => Cow::Owned(serde_json::to_string(r.get()).unwrap_or_default()),
            None => Cow::Borrowed("\"rejected by Kuzzle\""),
        };
        out.error_raw(self.document.get(), self.status.unwrap_or(400), &reason);
    }
}

/// Everything one mWrite call shares between its worker threads.
struct Job<'a> {
    client: &'a Client,
    /// `{"controller":...,"body":{"documents":[` for every request.
    head: String,
    strict: bool,
    started: Instant,
}

impl Job<'_> {
    fn build(&self, docs: &[&Doc]) -> Vec<u8> {
        let len: usize = docs.iter().map(|d| d.wire_len() + 1).sum();
        let mut raw = Vec::with_capacity(self.head.len() + len + 4);
        raw.extend_from_slice(self.head.as_bytes());
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            doc.write(&mut raw);
        }
        raw.extend_from_slice(b"]}}");
        raw
    }

    /// Writes one group of documents, splitting, retrying and reporting each
    /// of them exactly once into `out`.
    fn write(&self, mut docs: Vec<&Doc>, out: &mut Fragment) {
        let client = self.client;
        let max = client.config.max_request_bytes;
        let mut backoff = Backoff::new(&client.config, self.started);
        let mut wire = None;
        loop {
            if docs.is_empty() {
                return;
            }
            let (body, gzip) = wire
                .get_or_insert_with(|| transport::encode(self.build(&docs), client.compression()));
            if body.len() > max {
                if docs.len() > 1 {
                    return self.split(docs, out);
                }
                let reason = format!(
                    "document too large: {} bytes on the wire, over maxRequestBytes ({max})",
                    body.len()
                );
                return out.doc_error(docs[0], 413, &reason);
            }
            let reply = match client.send(body, *gzip) {
                Ok(reply) => reply,
                Err(error) => {
                    if !(retry::transient(&error) && backoff.wait()) {
                        return out.fail(&docs, error);
                    }
                    if error.in_doubt && docs.iter().any(|d| d.id.is_none()) {
                        // Resending a document without _id after an unknown
                        // outcome could store it twice.
                        let (keep, doubtful): (Vec<&Doc>, Vec<&Doc>) =
                            docs.into_iter().partition(|d| d.id.is_some());
                        out.fail(&doubtful, error);
                        docs = keep;
                        wire = None;
                    }
                    continue;
                }
            };
            match reply.decode::<MWriteResult>() {
                Answer::Result(Some(result)) => return record(result, out),
                Answer::Result(None) => {
                    let e = Error::server(
                        reply.http,
                        Some("libkuzzle.bad_response"),
                        "mWrite answer has no result",
                    );
                    return out.fail(&docs, e);
                }
                Answer::Error { error, details } => match error.http {
                    413 if docs.len() > 1 => return self.split(docs, out),
                    // Alone and still too large for this server: that
                    // document's own rejection, the call goes on.
                    413 => return out.doc_error(docs[0], 413, &error.message),
                    http if retry::refused_for_now(http) => {
                        if !backoff.wait() {
                            return out.fail(&docs, error);
                        }
                    }
                    400 if self.strict && error.id == "api.process.incomplete_multiple_request" => {
                        return strict_partial(&docs, details, out);
                    }
                    _ => return out.fail(&docs, error),
                },
            }
        }
    }

    fn split(&self, mut docs: Vec<&Doc>, out: &mut Fragment) {
        let second = docs.split_off(docs.len() / 2);
        self.write(docs, out);
        self.write(second, out);
    }
}

fn record(result: MWriteResult, out: &mut Fragment) {
    for s in &result.successes {
        let created = s.created.or(s.version.map(|v| v == 1));
        out.success(s.id.get(), s.version, s.source.get(), created);
    }
    for e in &result.errors {
        e.push_to(out);
    }
}

/// `strict=true` and some documents rejected: Kuzzle answers 400 with the
/// rejected ones, yet it stored the others. Match the rejected documents to
/// ours (by `_id`, else by body) and report the rest as successes with what is
/// known: no `_version` and no server-generated `_id`.
fn strict_partial(docs: &[&Doc], details: Option<&RawValue>, out: &mut Fragment) {
    let errors: Vec<ErrorItem> = details
        .and_then(|d| serde_json::from_str(d.get()).ok())
        .unwrap_or_default();
    #[derive(Deserialize)]
    struct Sent {
        #[serde(default, rename = "_id")]
        id: Option<String>,
        #[serde(default)]
        body: Option<serde_json::Value>,
    }
    let mut failed = vec![false; docs.len()];
    let mut unmatched = 0;
    for e in &errors {
        let sent: Option<Sent> = serde_json::from_str(e.document.get()).ok();
        let found = sent.and_then(|sent| {
            (0..docs.len()).find(|&i| {
                !failed[i]
                    && match (&docs[i].id, &sent.id) {
                        (Some(mine), Some(theirs)) => {
                            serde_json::from_str::<String>(mine).ok().as_deref()
                                == Some(theirs.as_str())
                        }
                        (None, None) => {
                            serde_json::from_str::<serde_json::Value>(docs[i].body).ok()
                                == sent.body
                        }
                        _ => false,
                    }
            })
        });
        match found {
            Some(i) => {
                failed[i] = true;
                e.push_to(out);
            }
            None => unmatched += 1,
        }
    }
    for (doc, failed) in docs.iter().zip(failed) {
        if failed {
            continue;
        }
        if unmatched > 0 {
            out.doc_error(
                doc,
                0,
                "strict mode: Kuzzle reported rejections that could not be matched to documents; \
                 this document may or may not have been written",
            );
        } else {
            out.success(doc.id.as_deref().unwrap_or("null"), None, doc.body, None);
        }
    }
}

/// Splits checked documents into groups of at most `max_docs`, each expected
/// to fit `max_bytes` on the wire.
fn plan(job: &Job, docs: &[Doc]) -> Vec<std::ops::Range<usize>> {
    let cfg = &job.client.config;
    let overhead = job.head.len() + 4;
    let budget = cfg.max_request_bytes.saturating_sub(overhead).max(1);
    let raw_budget = match cfg.compression {
        Compression::None => budget,
        Compression::Gzip => {
            // Estimate the ratio on a sample; keep 25% headroom, requests
            // that still come out too large are split when built.
            let mut n = 0;
            let mut len = 0;
            while n < docs.len() && len < SAMPLE_BYTES {
                len += docs[n].wire_len() + 1;
                n += 1;
            }
            let refs: Vec<&Doc> = docs[..n].iter().collect();
            let raw = job.build(&refs);
            let packed = transport::gzip(&raw).len().max(1);
            let ratio = (raw.len() as f64 / packed as f64).clamp(1.0, 50.0);
            ((budget as f64) * ratio * 0.75) as usize
        }
    };
    let mut ranges = Vec::new();
    let (mut start, mut len) = (0, 0);
    for (i, doc) in docs.iter().enumerate() {
        let l = doc.wire_len() + 1;
        if i > start && (len + l > raw_budget || i - start >= cfg.max_documents_per_request) {
            ranges.push(start..i);
            start = i;
            len = 0;
        }
        len += l;
    }
    if start < docs.len() {
        ranges.push(start..docs.len());
    }
    ranges
}

/// The result of one `kuzzle_mwrite`: its status and its JSON.
pub struct Outcome {
    pub status: Status,
    pub json: String,
}

/// `kuzzle_mwrite`.
pub fn mwrite(
    client: &Client,
    index: &str,
    collection: &str,
    documents: &str,
    options: &WriteOptions,
) -> Result<Outcome> {
    if index.is_empty() || collection.is_empty() {
        return Err(Error::invalid("index and collection must not be empty"));
    }
    let items: Vec<&RawValue> = serde_json::from_str(documents).map_err(|e| {
        Error::json(format!(
            "documents must be a JSON array of {{\"_id\"?, \"body\"}} objects: {e}"
        ))
    })?;

    let mut door = Fragment::default();
    let mut docs = Vec::with_capacity(items.len());
    for raw in items {
        match check_item(raw, client) {
            Ok(doc) => docs.push(doc),
            Err(reason) => door.error(raw.get(), 400, &reason),
        }
    }

    let mut head = String::from(r#"{"controller":"bulk","action":"mWrite","index":"#);
    push_json_str(&mut head, index);
    head.push_str(",\"collection\":");
    push_json_str(&mut head, collection);
    if options.wait_for_refresh {
        head.push_str(",\"refresh\":\"wait_for\"");
    }
    if options.notify {
        head.push_str(",\"notify\":true");
    }
    if options.strict {
        head.push_str(",\"strict\":true");
    }
    head.push_str(",\"body\":{\"documents\":[");
    let job = Job {
        client,
        head,
        strict: options.strict,
        started: Instant::now(),
    };

    let ranges = if docs.is_empty() {
        Vec::new()
    } else {
        plan(&job, &docs)
    };
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Fragment)>> = Mutex::new(Vec::with_capacity(ranges.len()));
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(range) = ranges.get(i) else { return };
        let mut frag = Fragment::default();
        job.write(docs[range.clone()].iter().collect(), &mut frag);
        done.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((i, frag));
    };
    let workers = client.config.concurrency.min(ranges.len());
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_unstable_by_key(|(i, _)| *i);

    let mut all = Fragment::default();
    for (_, frag) in done {
        all.absorb(frag);
    }
    // Door rejections first, as Kuzzle itself lists them.
    let failure = all.failure.take();
    door.absorb(all);

    let mut json = Vec::with_capacity(door.successes.len() + door.errors.len() + 64);
    json.extend_from_slice(b"{\"successes\":[");
    json.extend_from_slice(&door.successes);
    json.extend_from_slice(b"],\"errors\":[");
    json.extend_from_slice(&door.errors);
    json.push(b']');
    let status = match &failure {
        Some(e) => {
            json.extend_from_slice(b",\"error\":");
            json.extend_from_slice(e.to_json_object().as_bytes());
            e.status
        }
        None if door.n_error > 0 => Status::KUZZLE_PARTIAL,
        None => Status::KUZZLE_OK,
    };
    json.push(b'}');
    // Every piece is valid UTF-8: slices of a &str, Kuzzle's JSON (checked
    // by serde_json while parsing) and our own text.
    let json = String::from_utf8(json)
        .map_err(|_| Error::new(Status::KUZZLE_ERR_INTERNAL, "result is not UTF-8"))?;
    Ok(Outcome { status, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_splits_keys_values_and_depths() {
        let m = members(
            r#"{"_id":"a\"b","body":{"a":[{"b":"[[[{{"}]},"n":-1.5e3 , "t" : true,"z":null}"#,
        );
        assert_eq!(
            m,
            vec![
                (r#""_id""#, r#""a\"b""#, 0),
                (r#""body""#, r#"{"a":[{"b":"[[[{{"}]}"#, 3),
                (r#""n""#, "-1.5e3", 0),
                (r#""t""#, "true", 0),
                (r#""z""#, "null", 0),
            ]
        );
        assert!(members("{ }").is_empty());
        assert_eq!(
            members(r#"{"body":{"a":1,"b":[1,2,{"c":3}]} ,"_id":"x"}"#),
            vec![
                (r#""body""#, r#"{"a":1,"b":[1,2,{"c":3}]}"#, 3),
                (r#""_id""#, r#""x""#, 0)
            ]
        );
        assert_eq!(members(r#"{"a":"\\"}"#), vec![(r#""a""#, r#""\\""#, 0)]);
        let deep = format!(r#"{{"d":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(members(&deep)[0].2, 10_000);
        assert_eq!(members(&deep)[0].1.len(), 20_001);
    }
}
