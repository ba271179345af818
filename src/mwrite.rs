//! The bulk:mWrite engine: checks documents at the door, splits them into
//! requests that fit `maxRequestBytes` on the wire, sends up to `concurrency`
//! of them at once, retries what is safe to retry, and merges every answer
//! into one `{"successes":[...],"errors":[...]}` where each input document
//! appears exactly once.

use crate::client::{self, Client};
use crate::config::{Compression, WriteOptions};
use crate::error::{push_json_str, Error, Result, Status};
use crate::json::{Parsed, Scanner, SyntaxError};
use crate::retry::{self, Backoff};
use crate::transport::{Answer, Reply};
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
/// Requests are cut smaller than `maxRequestBytes` so that every worker gets
/// a few, down to this much JSON: below, Kuzzle's cost per request shows.
const MIN_SPREAD_BYTES: usize = 128 * 1024;

/// A document that passed the door checks, as kept for the whole call: 8
/// bytes (100,000 small documents: 0.8 MB, all in memory at once). Usually
/// its own text, `{"_id":"…","body":{…}}` or `{"body":{…}}` exactly, which
/// is also what goes on the wire; any other form (spaces, another key
/// order, an `_id` null or empty) has its parts in `Index::unusual`.
#[derive(Clone, Copy)]
struct Entry {
    at: u32,
    /// The text's length (the low `LEN_BITS`) and its `_id` literal's (0:
    /// none); `UNUSUAL`: `at` is the document's place in `Index::unusual`.
    packed: u32,
}

const LEN_BITS: u32 = 20;
/// Longer documents and ids are kept as unusual ones.
const MAX_COMPACT_LEN: usize = (1 << LEN_BITS) - 1;
const MAX_COMPACT_ID: usize = (1 << (32 - LEN_BITS)) - 2;
const UNUSUAL: u32 = u32::MAX;

impl Entry {
    /// The text's length and the `_id` literal's, for a compact document.
    #[inline]
    fn compact(self) -> Option<(usize, usize)> {
        (self.packed != UNUSUAL).then_some((
            (self.packed & MAX_COMPACT_LEN as u32) as usize,
            (self.packed >> LEN_BITS) as usize,
        ))
    }
}

/// A document in another form: where its body and `_id` literal are.
#[derive(Clone, Copy)]
struct Parts {
    body: u32,
    body_len: u32,
    /// `id_len` 0: no id.
    id: u32,
    id_len: u32,
}

/// Every checked document of one call.
#[derive(Default, Clone)]
struct Index<'a> {
    src: &'a str,
    entries: Vec<Entry>,
    unusual: Vec<Parts>,
    /// With `generateIds`: the id prefix and the counter value of the first
    /// document; an id-less document gets the value of its position.
    generated: Option<(&'a str, u64)>,
}

impl<'a> Index<'a> {
    fn doc(&self, i: usize) -> Doc<'_> {
        Doc { index: self, i }
    }

    fn text(&self, at: u32, len: u32) -> &'a str {
        &self.src[at as usize..(at + len) as usize]
    }

    /// Keeps a document, given its checked `_id` literal ("" for none), its
    /// body and its whole text: slices of `src`, which is under 4 GiB
    /// (checked first).
    fn push(&mut self, id: &str, body: &str, whole: &str) {
        let at = |part: &str| (part.as_ptr() as usize - self.src.as_ptr() as usize) as u32;
        let (form, extra) = match id {
            "" => ("{\"body\":", 8 + 1),
            _ => ("{\"_id\":\"", 7 + id.len() + 8 + 1),
        };
        let fits = whole.len() <= MAX_COMPACT_LEN && id.len() <= MAX_COMPACT_ID;
        let entry = if fits && whole.len() == body.len() + extra && whole.starts_with(form) {
            Entry {
                at: at(whole),
                packed: whole.len() as u32 | (id.len() as u32) << LEN_BITS,
            }
        } else {
            self.unusual.push(Parts {
                body: at(body),
                body_len: body.len() as u32,
                id: if id.is_empty() { 0 } else { at(id) },
                id_len: id.len() as u32,
            });
            Entry {
                at: (self.unusual.len() - 1) as u32,
                packed: UNUSUAL,
            }
        };
        self.entries.push(entry);
    }
}

/// The longest generated `_id` literal: quotes, prefix and at most 11
/// base-62 digits of the counter.
fn generated_len(prefix: &str) -> usize {
    prefix.len() + 11 + 2
}

/// One document of the index.
#[derive(Clone, Copy)]
struct Doc<'a> {
    index: &'a Index<'a>,
    i: usize,
}

/// A document's `_id`.
enum Id<'a> {
    None,
    /// A JSON string literal, as given.
    Given(&'a str),
    /// Prefix and counter value.
    Generated(&'a str, u64),
}

impl<'a> Doc<'a> {
    /// The `_id` literal given ("" for none) and the body's JSON text.
    #[inline]
    fn parts(&self) -> (&'a str, &'a str) {
        let index = self.index;
        let e = index.entries[self.i];
        let Some((len, id_len)) = e.compact() else {
            let p = &index.unusual[e.at as usize];
            return (index.text(p.id, p.id_len), index.text(p.body, p.body_len));
        };
        let text = index.text(e.at, len as u32);
        match id_len {
            // {"body":…}
            0 => ("", &text[8..len - 1]),
            // {"_id":"…","body":…}
            _ => (&text[7..7 + id_len], &text[7 + id_len + 8..len - 1]),
        }
    }

    /// The body's JSON text, validated.
    #[inline]
    fn body(&self) -> &'a str {
        self.parts().1
    }

    #[inline]
    fn id(&self) -> Id<'a> {
        match (self.parts().0, self.index.generated) {
            ("", Some((prefix, first))) => Id::Generated(prefix, first + self.i as u64),
            ("", None) => Id::None,
            (given, _) => Id::Given(given),
        }
    }

    #[inline]
    fn has_id(&self) -> bool {
        !matches!(self.id(), Id::None)
    }

    /// The `_id`'s JSON text, `null` when there is none.
    fn id_json(&self) -> Cow<'a, str> {
        match self.id() {
            Id::None => Cow::Borrowed("null"),
            Id::Given(text) => Cow::Borrowed(text),
            Id::Generated(..) => {
                let mut out = Vec::new();
                Self::push_id(self.id(), &mut out);
                Cow::Owned(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// The length of `id_json`, 0 when there is none; for a generated id, at
    /// most 10 bytes over (the counter's longest).
    #[inline]
    fn id_len(&self) -> usize {
        match self.id() {
            Id::None => 0,
            Id::Given(text) => text.len(),
            Id::Generated(prefix, _) => generated_len(prefix),
        }
    }

    /// The length of `write`'s output, give or take a few bytes; from the
    /// entry alone for the usual forms: this is asked several times per
    /// document (planning, sizing).
    #[inline]
    fn wire_len(&self) -> usize {
        let index = self.index;
        let e = index.entries[self.i];
        // `"_id":` and `,` around a generated literal; `{"body":` and `}`
        // around the body.
        let generated = index
            .generated
            .map_or(0, |(prefix, _)| generated_len(prefix) + 7);
        if let Some((len, id_len)) = e.compact() {
            return len + if id_len == 0 { generated } else { 0 };
        }
        let p = &index.unusual[e.at as usize];
        let id = match p.id_len {
            0 => generated,
            n => n as usize + 7,
        };
        p.body_len as usize + id + 9
    }

    fn push_id(id: Id, out: &mut Vec<u8>) {
        match id {
            Id::None => {}
            Id::Given(text) => out.extend_from_slice(text.as_bytes()),
            Id::Generated(prefix, n) => {
                out.push(b'"');
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(client::base62(n, &mut [0; 11]));
                out.push(b'"');
            }
        }
    }

    /// `{"_id":...,"body":...}` as sent.
    fn write(&self, out: &mut Vec<u8>) {
        let e = self.index.entries[self.i];
        if let Some((len, 1..)) = e.compact() {
            // Already in the form sent.
            let at = e.at as usize;
            return out.extend_from_slice(&self.index.src.as_bytes()[at..at + len]);
        }
        let body = self.body();
        match self.id() {
            Id::None => out.extend_from_slice(b"{\"body\":"),
            id => {
                out.extend_from_slice(b"{\"_id\":");
                Self::push_id(id, out);
                out.extend_from_slice(b",\"body\":");
            }
        }
        out.extend_from_slice(body.as_bytes());
        out.push(b'}');
    }
}

/// Scans one input item (the scanner sits on its first byte). The outer
/// `Err` is a syntax error that fails the whole call; the inner one is the
/// reason this item alone is rejected.
fn check_item<'a>(s: &mut Scanner<'a>) -> Parsed<std::result::Result<(&'a str, &'a str), String>> {
    if s.peek() != Some(b'{') {
        s.value()?;
        return Ok(Err(
            "a document must be an object {\"_id\"?: string, \"body\": object}".into(),
        ));
    }
    if let Some((id, body)) = usual_item(s) {
        return Ok(doc(id, body));
    }
    let (mut id, mut body, mut problem) = (None, None, None);
    s.members(|key, value, depth| {
        if problem.is_some() {
            return Ok(());
        }
        let name = if key.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(key).unwrap_or_default())
        } else {
            Cow::Borrowed(&key[1..key.len() - 1])
        };
        let slot = match &*name {
            "_id" => &mut id,
            "body" => &mut body,
            _ => {
                problem = Some(format!(
                    "invalid document: unknown key {key} (a document has \"_id\" and \"body\")"
                ));
                return Ok(());
            }
        };
        if slot.replace((value, depth)).is_some() {
            problem = Some(format!("invalid document: duplicate key {key}"));
        }
        Ok(())
    })?;
    Ok(match problem {
        Some(problem) => Err(problem),
        None => doc(id, body),
    })
}

/// Checks the whole `documents` array: the index of the documents that
/// pass, and the door rejections of the others. `Err`: not a JSON array.
fn check_all(documents: &str) -> Parsed<(Index<'_>, Fragment)> {
    let mut door = Fragment::default();
    let mut index = Index {
        src: documents,
        ..Index::default()
    };
    let mut s = Scanner::new(documents);
    s.items(|s| {
        let start = s.pos;
        match check_item(s)? {
            Ok((id, body)) => index.push(id, body, s.slice(start, s.pos)),
            Err(reason) => door.error(s.slice(start, s.pos), 400, &reason),
        }
        Ok(())
    })?;
    s.end()?;
    Ok((index, door))
}

/// A document's `_id` or `body`, if given: its JSON text and nesting depth.
type Member<'a> = Option<(&'a str, usize)>;

/// A document in the usual compact form, `{"_id":"…","body":{…}}` or
/// `{"body":{…}}`: its `_id` and `body` (text and depth), read without the
/// general member walk. `None`, the scanner back where it was, otherwise.
fn usual_item<'a>(s: &mut Scanner<'a>) -> Option<(Member<'a>, Member<'a>)> {
    let start = s.pos;
    let mut read = || {
        let id = if s.exact(b"{\"_id\":") {
            let id = s.string()?;
            if !s.exact(b",\"body\":") {
                return None;
            }
            Some((id, 0))
        } else if s.exact(b"{\"body\":") {
            None
        } else {
            return None;
        };
        s.ws();
        let from = s.pos;
        let depth = s.value().ok()?;
        let body = s.slice(from, s.pos);
        s.exact(b"}").then_some((id, Some((body, depth))))
    };
    let found = read();
    if found.is_none() {
        s.pos = start;
    }
    found
}

/// The checks on a document's `_id` and `body` (each: text and depth): the
/// `_id` literal ("" for none) and the body.
fn doc<'a>(id: Member<'a>, body: Member<'a>) -> std::result::Result<(&'a str, &'a str), String> {
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
        None | Some("null") | Some("\"\"") => "",
        Some(text) if text.starts_with('"') => {
            // Escapes only shorten a string: decode only when it matters.
            let decoded_len = if text.len() - 2 > MAX_ID_BYTES && text.contains('\\') {
                serde_json::from_str::<String>(text).map_or(usize::MAX, |s| s.len())
            } else {
                text.len() - 2
            };
            if decoded_len > MAX_ID_BYTES {
                return Err(format!("_id is longer than {MAX_ID_BYTES} bytes"));
            }
            text
        }
        Some(_) => return Err("_id must be a string".into()),
    };
    Ok((id, body))
}

/// What one request contributed to the result: JSON items already written.
/// Strings, not bytes: every piece is a slice of valid text (the caller's
/// documents, Kuzzle's answer, our own), so the result needs no UTF-8 pass.
#[derive(Default)]
struct Fragment {
    successes: String,
    errors: String,
    n_success: usize,
    n_error: usize,
    /// The first whole-request failure, if any.
    failure: Option<Error>,
}

impl Fragment {
    fn open(buf: &mut String, n: &mut usize) {
        if *n > 0 {
            buf.push(',');
        }
        *n += 1;
    }

    fn error_raw(&mut self, document: &str, status: u16, reason: &str) {
        Self::open(&mut self.errors, &mut self.n_error);
        let e = &mut self.errors;
        e.push_str("{\"document\":");
        e.push_str(document);
        e.push_str(",\"status\":");
        e.push_str(&status.to_string());
        e.push_str(",\"reason\":");
        e.push_str(reason);
        e.push('}');
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

    /// One success; `version` is the number's JSON text; no `source`: the
    /// caller asked for none. Without Kuzzle's `created` (2.56 sends none),
    /// it is derived as `_version == 1`.
    fn success(
        &mut self,
        id: &str,
        version: Option<&str>,
        source: Option<&str>,
        created: Option<bool>,
    ) {
        Self::open(&mut self.successes, &mut self.n_success);
        let s = &mut self.successes;
        s.push_str("{\"_id\":");
        s.push_str(id);
        s.push_str(",\"_version\":");
        s.push_str(version.unwrap_or("null"));
        if let Some(source) = source {
            s.push_str(",\"_source\":");
            s.push_str(source);
        }
        s.push_str(match created.or(version.map(|v| v == "1")) {
            Some(true) => ",\"created\":true}",
            Some(false) => ",\"created\":false}",
            None => ",\"created\":null}",
        });
    }

    /// Where the fragment stands, to undo what follows with `rollback`.
    fn mark(&self) -> Mark {
        Mark {
            successes: self.successes.len(),
            n_success: self.n_success,
            errors: self.errors.len(),
            n_error: self.n_error,
        }
    }

    fn rollback(&mut self, mark: Mark) {
        self.successes.truncate(mark.successes);
        self.n_success = mark.n_success;
        self.errors.truncate(mark.errors);
        self.n_error = mark.n_error;
    }

    /// Items written since `mark`.
    fn items_since(&self, mark: &Mark) -> usize {
        self.n_success + self.n_error - mark.n_success - mark.n_error
    }

    /// One of Kuzzle's per-document errors.
    fn kuzzle_error(&mut self, document: &str, status: Option<u16>, reason: Option<&str>) {
        let reason = match reason {
            Some(r) if r.starts_with('"') => Cow::Borrowed(r),
            Some(r) => Cow::Owned(serde_json::to_string(r).unwrap_or_default()),
            None => Cow::Borrowed("\"rejected by Kuzzle\""),
        };
        self.error_raw(document, status.unwrap_or(400), &reason);
    }

    fn fail(&mut self, docs: &[Doc], error: Error) {
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

    /// Appends `other`'s items, leaving it empty (its capacity kept).
    fn absorb(&mut self, other: &mut Fragment) {
        for (mine, n, theirs, m) in [
            (
                &mut self.successes,
                &mut self.n_success,
                &mut other.successes,
                &mut other.n_success,
            ),
            (
                &mut self.errors,
                &mut self.n_error,
                &mut other.errors,
                &mut other.n_error,
            ),
        ] {
            if *m > 0 {
                if *n > 0 {
                    mine.push(',');
                }
                mine.push_str(theirs);
                *n += *m;
            }
            theirs.clear();
            *m = 0;
        }
        let failure = other.failure.take();
        if self.failure.is_none() {
            self.failure = failure;
        }
    }
}

/// A fragment's lengths and counts at one moment.
struct Mark {
    successes: usize,
    n_success: usize,
    errors: usize,
    n_error: usize,
}

/// Puts the requests' results into the result in input order. The request
/// next in line writes straight into it, and most are (requests mostly end
/// in the order they were sent); one that ends early writes into a fragment
/// of its own, which waits for its turn (a few at most, with `concurrency`
/// requests in flight) and is then copied in.
struct Merge {
    /// The result; `None` while the request next in line writes into it.
    all: Option<Fragment>,
    next: usize,
    parked: Vec<(usize, Fragment)>,
}

impl Merge {
    /// Takes in the parked fragments whose turn has come.
    fn settle(&mut self) {
        let Some(all) = self.all.as_mut() else { return };
        while let Some(p) = self.parked.iter().position(|(j, _)| *j == self.next) {
            let (_, mut parked) = self.parked.swap_remove(p);
            all.absorb(&mut parked);
            self.next += 1;
        }
    }
}

fn lock(merge: &Mutex<Merge>) -> std::sync::MutexGuard<'_, Merge> {
    // A worker that panicked left no item half-written: every write of a
    // whole item happens without the lock.
    merge.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where request `i`'s results go: chosen when the first one is written,
/// once Kuzzle answered, when it is most likely next in line.
struct Sink<'m> {
    merge: &'m Mutex<Merge>,
    i: usize,
    chosen: bool,
    /// The result itself, lent while this request is next in line.
    direct: Option<Fragment>,
    /// The worker's own fragment otherwise (kept empty between requests,
    /// its capacity reused).
    own: Fragment,
}

impl<'m> Sink<'m> {
    fn new(merge: &'m Mutex<Merge>, i: usize, own: Fragment) -> Sink<'m> {
        Sink {
            merge,
            i,
            chosen: false,
            direct: None,
            own,
        }
    }

    fn out(&mut self) -> &mut Fragment {
        if !self.chosen {
            self.chosen = true;
            let mut merge = lock(self.merge);
            if merge.next == self.i {
                self.direct = merge.all.take();
            }
        }
        match &mut self.direct {
            Some(all) => all,
            None => &mut self.own,
        }
    }

    /// Every result of the request is written: hands them over, and gives
    /// back the worker's fragment, emptied, when it is free for reuse.
    fn finish(self) -> Fragment {
        let mut merge = lock(self.merge);
        let mut own = self.own;
        match self.direct {
            Some(all) => {
                merge.all = Some(all);
                merge.next += 1;
            }
            None if merge.next == self.i && merge.all.is_some() => {
                if let Some(all) = merge.all.as_mut() {
                    all.absorb(&mut own);
                }
                merge.next += 1;
            }
            None => {
                merge.parked.push((self.i, own));
                own = Fragment::default();
            }
        }
        merge.settle();
        own
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
        out.kuzzle_error(
            self.document.get(),
            self.status,
            self.reason.map(RawValue::get),
        );
    }
}

/// Kuzzle's successful mWrite answer, read in one validating pass straight
/// into `out` (the generic serde decoder costs twice as much on this, the
/// largest thing the library parses). `false`, with `out` untouched, for
/// anything else: the generic decoder then tells what it is.
fn fast_record(reply: &Reply, out: &mut Fragment, with_source: bool, docs: &[Doc]) -> bool {
    if reply.http >= 400 {
        return false;
    }
    let Ok(text) = std::str::from_utf8(reply.body()) else {
        return false;
    };
    let mark = out.mark();
    let (mut results, mut error_null, mut seen_error) = (0, true, false);
    let mut s = Scanner::new(text);
    s.ws();
    let parsed = s
        .fields(|s, key| match key {
            "\"result\"" => {
                results += 1;
                let mut echo = Echo { docs, next: 0 };
                read_result(s, out, with_source, &mut echo)
            }
            "\"error\"" => {
                // A repeated key is left to the generic decoder to refuse.
                let value = s.raw()?;
                error_null = error_null && !seen_error && value == "null";
                seen_error = true;
                Ok(())
            }
            _ => s.value().map(drop),
        })
        .and_then(|()| s.end());
    if parsed.is_ok() && results == 1 && error_null {
        return true;
    }
    out.rollback(mark);
    false
}

/// Not what the fast path reads: leave it to the generic decoder.
fn unexpected<T>(s: &Scanner) -> Parsed<T> {
    Err(SyntaxError {
        at: s.pos,
        expected: "an mWrite result",
    })
}

/// Kuzzle echoes each stored body as `_source`, in the order sent: most
/// often byte for byte what we sent (compact JSON stays the same through
/// JSON.parse and JSON.stringify). Such an echo is recognised by comparing
/// bytes, far cheaper than scanning it; anything else is scanned.
struct Echo<'d, 'a> {
    docs: &'d [Doc<'a>],
    /// The document the next success most likely is.
    next: usize,
}

impl Echo<'_, '_> {
    fn source<'t>(&mut self, s: &mut Scanner<'t>) -> Parsed<&'t str> {
        let start = s.pos;
        // The expected document, or the one after it (Kuzzle rejected one).
        let end = (self.next + 2).min(self.docs.len());
        for k in self.next..end {
            if s.skip_known(self.docs[k].body()) {
                self.next = k + 1;
                return Ok(s.slice(start, s.pos));
            }
        }
        s.raw()
    }
}

/// `{"successes":[...],"errors":[...]}`, both required.
fn read_result(
    s: &mut Scanner,
    out: &mut Fragment,
    with_source: bool,
    echo: &mut Echo,
) -> Parsed<()> {
    let mut seen = [0; 2];
    s.fields(|s, key| match key {
        "\"successes\"" => {
            seen[0] += 1;
            s.items(|s| read_success(s, out, with_source, echo))
        }
        "\"errors\"" => {
            seen[1] += 1;
            s.items(|s| read_error(s, out))
        }
        _ => s.value().map(drop),
    })?;
    if seen != [1, 1] {
        return unexpected(s);
    }
    Ok(())
}

/// Kuzzle's usual success item, exactly `{"_id":"…","_source":{…},
/// "_version":N}` (JSON.stringify: no spaces, this key order), read with a
/// few byte comparisons. `false`, the scanner back where it was, for any
/// other form: `read_success` reads it then.
fn read_usual_success(
    s: &mut Scanner,
    out: &mut Fragment,
    with_source: bool,
    echo: &mut Echo,
) -> bool {
    let start = s.pos;
    let mut read = || {
        if !s.exact(b"{\"_id\":") {
            return None;
        }
        let id = s.string()?;
        if !s.exact(b",\"_source\":") {
            return None;
        }
        let source = echo.source(s).ok()?;
        if !s.exact(b",\"_version\":") {
            return None;
        }
        let version = s.digit_run();
        if version.is_empty()
            || version.len() > 19
            || (version.len() > 1 && version.starts_with('0'))
        {
            return None;
        }
        if !s.exact(b"}") {
            return None;
        }
        Some((id, source, version))
    };
    match read() {
        Some((id, source, version)) => {
            let source = with_source.then_some(source);
            out.success(id, Some(version), source, None);
            true
        }
        None => {
            s.pos = start;
            false
        }
    }
}

fn read_success(
    s: &mut Scanner,
    out: &mut Fragment,
    with_source: bool,
    echo: &mut Echo,
) -> Parsed<()> {
    if read_usual_success(s, out, with_source, echo) {
        return Ok(());
    }
    let keys = ["\"_id\"", "\"_source\"", "\"_version\"", "\"created\""];
    let [id, source, version, created] = known_fields(s, keys, |s, k| match k {
        1 => echo.source(s),
        _ => s.raw(),
    })?;
    let (Some(id), Some(source)) = (id, source) else {
        return unexpected(s);
    };
    let version = match version {
        None | Some("null") => None,
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) && v.len() <= 19 => Some(v),
        Some(_) => return unexpected(s),
    };
    let created = match created {
        None | Some("null") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return unexpected(s),
    };
    out.success(id, version, with_source.then_some(source), created);
    Ok(())
}

/// The values of `keys` (with their quotes) in the object at the scanner,
/// each read by `value(scanner, index of its key)`; other keys are skipped,
/// a repeated one is not what the fast path reads.
fn known_fields<'t, const N: usize>(
    s: &mut Scanner<'t>,
    keys: [&str; N],
    mut value: impl FnMut(&mut Scanner<'t>, usize) -> Parsed<&'t str>,
) -> Parsed<[Option<&'t str>; N]> {
    let mut found = [None; N];
    s.fields(|s, key| {
        let Some(k) = keys.iter().position(|&name| name == key) else {
            return s.value().map(drop);
        };
        if found[k].replace(value(s, k)?).is_some() {
            return unexpected(s);
        }
        Ok(())
    })?;
    Ok(found)
}

fn read_error(s: &mut Scanner, out: &mut Fragment) -> Parsed<()> {
    let keys = ["\"document\"", "\"status\"", "\"reason\""];
    let [document, status, reason] = known_fields(s, keys, |s, _| s.raw())?;
    let Some(document) = document else {
        return unexpected(s);
    };
    let status = match status {
        None | Some("null") => None,
        Some(v) => match v.parse::<u16>() {
            Ok(v) => Some(v),
            Err(_) => return unexpected(s),
        },
    };
    out.kuzzle_error(document, status, reason.filter(|r| *r != "null"));
    Ok(())
}

/// Everything one mWrite call shares between its worker threads.
struct Job<'a> {
    client: &'a Client,
    /// `{"controller":...,"body":{"documents":[` for every request.
    head: String,
    strict: bool,
    /// Successes echo each document's `_source` (option `source`).
    with_source: bool,
    started: Instant,
}

/// A worker's buffers, kept from one request to the next: megabytes each
/// for big requests, so reusing them saves copies and page faults.
#[derive(Default)]
struct Buffers {
    /// The request as JSON, then, once it is sent, Kuzzle's answer: a
    /// request and its answer are never needed at the same time (a retry
    /// builds the request again), and answers are about as large.
    raw: Vec<u8>,
    packed: Vec<u8>,
    /// `packed` holds the gzip of `raw`, and is what goes on the wire.
    gzip: bool,
}

impl Buffers {
    fn wire(&self) -> &[u8] {
        if self.gzip {
            &self.packed
        } else {
            &self.raw
        }
    }
}

/// What to do with a group after Kuzzle's answer.
enum Next {
    Done,
    Split,
    Retry,
}

impl Job<'_> {
    /// The request for `docs`, raw, into `raw`.
    fn build(&self, docs: &[Doc], raw: &mut Vec<u8>) {
        let len: usize = docs.iter().map(|d| d.wire_len() + 1).sum();
        raw.clear();
        raw.reserve(self.head.len() + len + 4);
        raw.extend_from_slice(self.head.as_bytes());
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            doc.write(raw);
        }
        raw.extend_from_slice(b"]}}");
    }

    /// The request for `docs` as it goes on the wire, into `bufs`.
    fn encode(&self, docs: &[Doc], bufs: &mut Buffers) {
        self.build(docs, &mut bufs.raw);
        bufs.gzip = self.client.compression() == Compression::Gzip;
        if bufs.gzip {
            self.client.gzip(&bufs.raw, &mut bufs.packed);
        }
    }

    /// Writes one group of documents, splitting, retrying and reporting each
    /// of them exactly once into `sink`.
    fn write(&self, mut docs: Vec<Doc>, bufs: &mut Buffers, sink: &mut Sink) {
        let client = self.client;
        let max = client.config.max_request_bytes;
        let mut backoff = Backoff::new(&client.config, self.started);
        loop {
            if docs.is_empty() {
                return;
            }
            // Built for every attempt: the last one's answer is in `raw`.
            self.encode(&docs, bufs);
            let size = bufs.wire().len();
            if size > max {
                if docs.len() > 1 {
                    return self.split(docs, bufs, sink);
                }
                let reason = format!(
                    "document too large: {size} bytes on the wire, over maxRequestBytes ({max})"
                );
                return sink.out().doc_error(&docs[0], 413, &reason);
            }
            let reply = client
                .send(bufs.wire(), bufs.gzip)
                .and_then(|sent| sent.read(std::mem::take(&mut bufs.raw)));
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) => {
                    if !(retry::transient(&error) && backoff.wait()) {
                        return sink.out().fail(&docs, error);
                    }
                    if error.in_doubt && docs.iter().any(|d| !d.has_id()) {
                        // Resending a document without _id after an unknown
                        // outcome could store it twice.
                        let (keep, doubtful): (Vec<Doc>, Vec<Doc>) =
                            docs.into_iter().partition(|d| d.has_id());
                        sink.out().fail(&doubtful, error);
                        docs = keep;
                    }
                    continue;
                }
            };
            let next = self.answer(&reply, &docs, sink, &mut backoff);
            bufs.raw = reply.into_buffer();
            match next {
                Next::Done => return,
                Next::Split => return self.split(docs, bufs, sink),
                Next::Retry => {}
            }
        }
    }

    /// Records Kuzzle's answer about `docs`, or says what to do instead
    /// (then writing nothing: the sink is chosen by what is written).
    fn answer(&self, reply: &Reply, docs: &[Doc], sink: &mut Sink, backoff: &mut Backoff) -> Next {
        // Only a success can be read fast (an error status never is).
        if reply.http < 400 {
            let out = sink.out();
            let mark = out.mark();
            if fast_record(reply, out, self.with_source, docs) {
                check_count(docs, mark, out);
                return Next::Done;
            }
        }
        match reply.decode::<MWriteResult>() {
            Answer::Result(Some(result)) => {
                let out = sink.out();
                let mark = out.mark();
                record(result, out, self.with_source);
                check_count(docs, mark, out);
            }
            Answer::Result(None) => {
                let e = Error::server(
                    reply.http,
                    Some("libkuzzle.bad_response"),
                    "mWrite answer has no result",
                );
                sink.out().fail(docs, e);
            }
            Answer::Error { error, details } => match error.http {
                413 if docs.len() > 1 => return Next::Split,
                // Alone and still too large for this server: that
                // document's own rejection, the call goes on.
                413 => sink.out().doc_error(&docs[0], 413, &error.message),
                http if retry::refused_for_now(http) && backoff.wait() => return Next::Retry,
                400 if self.strict && error.id == "api.process.incomplete_multiple_request" => {
                    strict_partial(docs, details, sink.out(), self.with_source);
                }
                _ => sink.out().fail(docs, error),
            },
        }
        Next::Done
    }

    fn split(&self, mut docs: Vec<Doc>, bufs: &mut Buffers, sink: &mut Sink) {
        let second = docs.split_off(docs.len() / 2);
        self.write(docs, bufs, sink);
        self.write(second, bufs, sink);
    }
}

/// Kuzzle lists one item per document sent. An answer that lists more or
/// fewer cannot be matched to the documents: all of them are then reported
/// as failed, in doubt, so that each still appears exactly once.
fn check_count(docs: &[Doc], mark: Mark, out: &mut Fragment) {
    let listed = out.items_since(&mark);
    if listed != docs.len() {
        out.rollback(mark);
        let mut e = Error::server(
            502,
            Some("libkuzzle.bad_response"),
            format!(
                "Kuzzle's answer lists {listed} results for {} documents: \
                 they may or may not have been written",
                docs.len()
            ),
        );
        e.in_doubt = true;
        out.fail(docs, e);
    }
}

fn record(result: MWriteResult, out: &mut Fragment, with_source: bool) {
    for s in &result.successes {
        let version = s.version.map(|v| v.to_string());
        let source = with_source.then(|| s.source.get());
        out.success(s.id.get(), version.as_deref(), source, s.created);
    }
    for e in &result.errors {
        e.push_to(out);
    }
}

/// `strict=true` and some documents rejected: Kuzzle answers 400 with the
/// rejected ones, yet it stored the others. Match the rejected documents to
/// ours (by `_id`, else by body) and report the rest as successes with what is
/// known: no `_version` and no server-generated `_id`.
fn strict_partial(docs: &[Doc], details: Option<&RawValue>, out: &mut Fragment, with_source: bool) {
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
                    && match (docs[i].has_id(), &sent.id) {
                        (true, Some(theirs)) => {
                            serde_json::from_str::<String>(&docs[i].id_json())
                                .ok()
                                .as_deref()
                                == Some(theirs.as_str())
                        }
                        (false, None) => {
                            serde_json::from_str::<serde_json::Value>(docs[i].body()).ok()
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
            let source = with_source.then_some(doc.body());
            out.success(&doc.id_json(), None, source, None);
        }
    }
}

/// Splits checked documents into groups of at most `max_docs`, each expected
/// to fit `max_bytes` on the wire.
fn plan(job: &Job, index: &Index) -> Vec<std::ops::Range<usize>> {
    let n_docs = index.entries.len();
    let docs = || (0..n_docs).map(|i| index.doc(i));
    let cfg = &job.client.config;
    let overhead = job.head.len() + 4;
    let budget = cfg.max_request_bytes.saturating_sub(overhead).max(1);
    let raw_budget = match job.client.compression() {
        Compression::None => budget,
        Compression::Gzip => {
            // Estimate the ratio on a sample; keep 25% headroom, requests
            // that still come out too large are split when built.
            let mut len = 0;
            let sample: Vec<Doc> = docs()
                .take_while(|d| {
                    let more = len < SAMPLE_BYTES;
                    len += d.wire_len() + 1;
                    more
                })
                .collect();
            let mut raw = Vec::new();
            job.build(&sample, &mut raw);
            let mut packed = Vec::new();
            job.client.gzip(&raw, &mut packed);
            let packed = packed.len().max(1);
            let ratio = (raw.len() as f64 / packed as f64).clamp(1.0, 50.0);
            ((budget as f64) * ratio * 0.75) as usize
        }
    };
    // A few full requests would run one after the other (5,000 big documents
    // through a slow uplink: 4 requests of 1 MB, 1,192 docs/s); 4 per worker
    // overlap one's upload with another's answer (1,843 docs/s).
    let total: usize = docs().map(|d| d.wire_len() + 1).sum();
    let spread = (total / (job.client.concurrency().max(1) * 4)).max(MIN_SPREAD_BYTES);
    let raw_budget = raw_budget.min(spread);
    let mut ranges = Vec::new();
    let (mut start, mut len) = (0, 0);
    for (i, doc) in docs().enumerate() {
        let l = doc.wire_len() + 1;
        if i > start && (len + l > raw_budget || i - start >= cfg.max_documents_per_request) {
            ranges.push(start..i);
            start = i;
            len = 0;
        }
        len += l;
    }
    if start < n_docs {
        ranges.push(start..n_docs);
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
    if documents.len() > u32::MAX as usize {
        return Err(Error::invalid(
            "documents is over 4 GiB: split it into several calls",
        ));
    }
    let (mut docs, door) = check_all(documents).map_err(|e| {
        Error::json(format!(
            "documents must be a JSON array of {{\"_id\"?, \"body\"}} objects: {}",
            e.describe(documents)
        ))
    })?;
    docs.generated = client.config.generate_ids.then(|| {
        // A block of counter values for the whole call, one per position:
        // the documents that have an id leave gaps, which cost nothing.
        (client.id_prefix(), client.reserve_ids(docs.entries.len()))
    });

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
        with_source: options.source,
        started: Instant::now(),
    };

    let ranges = if docs.entries.is_empty() {
        Vec::new()
    } else {
        plan(&job, &docs)
    };
    // The result is written in one buffer, sized for every success (Kuzzle
    // echoes each body), so it rarely grows; door rejections come first in
    // `errors`, as Kuzzle itself lists them.
    let estimate: usize = (0..docs.entries.len())
        .map(|i| match options.source {
            true => docs.doc(i).wire_len() + 48,
            false => docs.doc(i).id_len().max(20) + 52,
        })
        .sum();
    let mut all = Fragment {
        successes: String::with_capacity(estimate + 64),
        ..door
    };
    all.successes.push_str("{\"successes\":[");
    let merge = Mutex::new(Merge {
        all: Some(all),
        next: 0,
        parked: Vec::new(),
    });
    let next = AtomicUsize::new(0);
    let work = || {
        let mut bufs = Buffers::default();
        let mut own = Fragment::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = ranges.get(i) else { return };
            let mut sink = Sink::new(&merge, i, own);
            job.write(
                range.clone().map(|i| docs.doc(i)).collect(),
                &mut bufs,
                &mut sink,
            );
            own = sink.finish();
        }
    };
    let workers = client.concurrency().min(ranges.len());
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    let merge = merge.into_inner().unwrap_or_else(|p| p.into_inner());
    debug_assert!(merge.parked.is_empty(), "a request's results left out");
    let Fragment {
        successes: mut json,
        errors,
        n_error,
        failure,
        ..
    } = merge
        .all
        // Every request handed it back: the scope above ended without a
        // panic.
        .unwrap_or_default();
    json.push_str("],\"errors\":[");
    json.push_str(&errors);
    json.push(']');
    let status = match &failure {
        Some(e) => {
            json.push_str(",\"error\":");
            json.push_str(&e.to_json_object());
            e.status
        }
        None if n_error > 0 => Status::KUZZLE_PARTIAL,
        None => Status::KUZZLE_OK,
    };
    json.push('}');
    Ok(Outcome { status, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compact-form shortcut reads what the general walk reads, or
    /// declines and leaves the scanner where it was.
    #[test]
    fn usual_item_agrees_with_the_member_walk() {
        for text in [
            r#"{"_id":"a","body":{"v":1}}"#,
            r#"{"body":{"v":[1,{"w":2}]}}"#,
            r#"{"body": {"v": 5}}"#,
            r#"{"_id": "x", "body": {}}"#,
            r#"{"_id":"a","body":{"v":1} }"#,
            r#"{"_id":"a\"b","body":{}}"#,
            r#"{"body":{},"_id":"late"}"#,
            r#"{"_id":1,"body":{}}"#,
            r#"{"body":[1]}"#,
        ] {
            let mut general = Vec::new();
            Scanner::new(text)
                .members(|k, v, d| {
                    general.push((k, v, d));
                    Ok(())
                })
                .unwrap();
            let mut s = Scanner::new(text);
            match usual_item(&mut s) {
                Some((id, body)) => {
                    assert_eq!(s.pos, text.len(), "{text}");
                    let find = |name| general.iter().find(|m| m.0 == name).map(|m| (m.1, m.2));
                    assert_eq!(id, find("\"_id\"").map(|(t, _)| (t, 0)), "{text}");
                    assert_eq!(body, find("\"body\""), "{text}");
                    assert_eq!(general.len(), 1 + id.is_some() as usize, "{text}");
                }
                None => assert_eq!(s.pos, 0, "{text}"),
            }
        }
    }

    /// Documents as the index gives them back: given ids as they were,
    /// generated ones from the counter block, lengths as written; compact
    /// ones kept as their own text, the others by their parts.
    #[test]
    fn index_gives_documents_back() {
        let src = r#"[{"_id":"a\"b","body":{"v":1}},{"body":{"w":2}}, {"body" : {}, "_id" : "late"},{"_id":"c\\","body":{"x":"\""}},{"_id":"","body":{}},{"_id":null,"body":{"n":0}}]"#;
        let (index, door) = check_all(src).unwrap();
        assert_eq!(door.n_error, 0);
        assert_eq!(index.unusual.len(), 3, "spaces, empty id, null id");
        for generated in [None, Some(("pre-", 61))] {
            let index = Index {
                generated,
                ..index.clone()
            };
            let written: Vec<String> = (0..6)
                .map(|i| {
                    let doc = index.doc(i);
                    let mut out = Vec::new();
                    doc.write(&mut out);
                    // an estimate: never under, a few bytes over
                    let over = doc.wire_len().checked_sub(out.len());
                    assert!(over.is_some_and(|o| o <= 11), "{i} {generated:?}: {over:?}");
                    String::from_utf8(out).unwrap()
                })
                .collect();
            assert_eq!(written[0], r#"{"_id":"a\"b","body":{"v":1}}"#);
            assert_eq!(index.doc(0).body(), r#"{"v":1}"#);
            assert_eq!(written[2], r#"{"_id":"late","body":{}}"#);
            assert_eq!(written[3], r#"{"_id":"c\\","body":{"x":"\""}}"#);
            assert_eq!(index.doc(3).id_json(), r#""c\\""#);
            assert_eq!(index.doc(3).body(), r#"{"x":"\""}"#);
            match generated {
                None => {
                    assert_eq!(written[1], r#"{"body":{"w":2}}"#);
                    assert_eq!(written[4], r#"{"body":{}}"#);
                    assert_eq!(written[5], r#"{"body":{"n":0}}"#);
                    assert_eq!(index.doc(1).id_json(), "null");
                    assert!(!index.doc(1).has_id() && !index.doc(5).has_id());
                }
                Some(_) => {
                    // position 1: counter 62, "10" in base 62
                    assert_eq!(written[1], r#"{"_id":"pre-10","body":{"w":2}}"#);
                    assert_eq!(index.doc(1).id_json(), r#""pre-10""#);
                    assert_eq!(written[5], r#"{"_id":"pre-14","body":{"n":0}}"#);
                }
            }
        }
    }

    /// Kuzzle's answer read by the fast path and by serde: same result.
    #[test]
    fn fast_answer_reading_agrees_with_serde() {
        let src = r#"[{"_id":"d0","body":{"v":1}},{"_id":"d1","body":{"w":[1,2]}},{"_id":"d2","body":{"x":"é"}}]"#;
        let (index, door) = check_all(src).unwrap();
        assert_eq!(door.n_error, 0);
        let refs: Vec<Doc> = (0..3).map(|i| index.doc(i)).collect();
        assert_eq!(refs[2].body(), r#"{"x":"é"}"#);
        assert_eq!(refs[1].id_json(), r#""d1""#);
        let answers = [
            // usual: echoes equal to what was sent
            r#"{"requestId":"r","status":200,"error":null,"result":{"successes":[{"_id":"d0","_source":{"v":1},"_version":1},{"_id":"d1","_source":{"w":[1,2]},"_version":3},{"_id":"d2","_source":{"x":"é"},"_version":12}],"errors":[]},"volatile":null}"#,
            // echo reformatted, one rejected, other key orders, created given
            r#"{"result":{"errors":[{"document":{"_id":"d1","body":{"w":[1,2]}},"status":400,"reason":"bad"}],"successes":[{"_version":2,"_id":"d0","_source":{ "v" : 1 },"created":false},{"_id":"d2","_source":{"x":"\u00e9"},"_version":1}]},"error":null}"#,
        ];
        for answer in answers {
            let reply = Reply::new(200, answer.as_bytes().to_vec());
            for with_source in [true, false] {
                let mut fast = Fragment::default();
                assert!(
                    fast_record(&reply, &mut fast, with_source, &refs),
                    "{answer}"
                );
                let mut slow = Fragment::default();
                match reply.decode::<MWriteResult>() {
                    Answer::Result(Some(result)) => record(result, &mut slow, with_source),
                    _ => panic!("{answer}"),
                }
                assert_eq!(fast.successes, slow.successes);
                assert_eq!(fast.errors, slow.errors);
            }
        }
        // An answer that lists fewer results than documents sent: every
        // document is reported failed, none twice, none lost.
        let reply = Reply::new(200, br#"{"error":null,"result":{"successes":[{"_id":"d0","_source":{"v":1},"_version":1}],"errors":[]}}"#.to_vec());
        let mut out = Fragment::default();
        let mark = out.mark();
        assert!(fast_record(&reply, &mut out, true, &refs));
        check_count(&refs, mark, &mut out);
        assert_eq!((out.n_success, out.n_error), (0, 3));
        assert!(out.errors.contains("lists 1 results for 3 documents"));
        assert!(out.failure.is_some());
        // A repeated "error" key is not a plain success.
        let reply = Reply::new(
            200,
            br#"{"error":{"id":"x"},"error":null,"result":{"successes":[],"errors":[]}}"#.to_vec(),
        );
        assert!(!fast_record(&reply, &mut Fragment::default(), true, &refs));
        // Not a plain success: left to the generic decoder, nothing written.
        let mut out = Fragment::default();
        let reply = Reply::new(200, br#"{"error":{"id":"x","message":"y"},"result":{"successes":[{"_id":"d0","_source":{},"_version":1}],"errors":[]}}"#.to_vec());
        assert!(!fast_record(&reply, &mut out, true, &refs));
        assert!(out.successes.is_empty() && out.n_success == 0);
    }
}
