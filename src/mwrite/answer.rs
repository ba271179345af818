//! Reading Kuzzle's mWrite answer into the result: a fast path that reads
//! the usual answer in one validating pass straight into the result buffer
//! (recognising each `_source` echo by comparing it with the bytes sent),
//! and the generic serde decoder for anything else. Both match every item
//! to the document sent (`Claims`).

use super::claims::Claims;
use super::result::Fragment;
use crate::json::{Parsed, Scanner, SyntaxError};
use crate::transport::Reply;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
pub(super) struct MWriteResult<'a> {
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
pub(super) struct ErrorItem<'a> {
    #[serde(borrow)]
    pub(super) document: &'a RawValue,
    #[serde(default)]
    status: Option<u16>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
}

impl ErrorItem<'_> {
    /// `at`: the document's position (`Doc::i`), if matched.
    pub(super) fn push_to(&self, out: &mut Fragment, at: Option<usize>) {
        out.kuzzle_error(
            at,
            self.document.get(),
            self.status,
            self.reason.map(RawValue::get),
        );
    }
}

/// The generic decoder's result, written into `out`, each item claimed.
pub(super) fn record(
    result: MWriteResult,
    out: &mut Fragment,
    with_source: bool,
    claims: &mut Claims,
) {
    for s in &result.successes {
        let at = claims.success(s.id.get());
        let version = s.version.map(|v| v.to_string());
        let source = with_source.then(|| s.source.get());
        out.success(at, s.id.get(), version.as_deref(), source, s.created);
    }
    for e in &result.errors {
        let at = claims.error(e.document.get());
        e.push_to(out, at);
    }
}

/// Kuzzle's successful mWrite answer, read in one validating pass straight
/// into `out` (the generic serde decoder costs twice as much on this, the
/// largest thing the library parses). `false`, with `out` untouched, for
/// anything else: the generic decoder then tells what it is. Whether the
/// items match the documents sent is for the caller to ask `claims`.
pub(super) fn fast_record(
    reply: &Reply,
    out: &mut Fragment,
    with_source: bool,
    claims: &mut Claims,
) -> bool {
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
                read_result(s, out, with_source, claims)
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

/// Kuzzle echoes each stored body as `_source`: most often byte for byte
/// what was sent (compact JSON stays the same through JSON.parse and
/// JSON.stringify). Such an echo is recognised by comparing bytes, far
/// cheaper than scanning it; anything else is scanned.
fn source<'t>(s: &mut Scanner<'t>, sent: Option<&str>) -> Parsed<&'t str> {
    let start = s.pos;
    if sent.is_some_and(|body| s.skip_known(body)) {
        return Ok(s.slice(start, s.pos));
    }
    s.raw()
}

/// `{"successes":[...],"errors":[...]}`, both required.
fn read_result(
    s: &mut Scanner,
    out: &mut Fragment,
    with_source: bool,
    claims: &mut Claims,
) -> Parsed<()> {
    let mut seen = [0; 2];
    s.fields(|s, key| match key {
        "\"successes\"" => {
            seen[0] += 1;
            s.items(|s| read_success(s, out, with_source, claims))
        }
        "\"errors\"" => {
            seen[1] += 1;
            s.items(|s| read_error(s, out, claims))
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
/// few byte comparisons. `false`, the scanner back where it was and nothing
/// claimed, for any other form: `read_success` reads it then.
fn read_usual_success(
    s: &mut Scanner,
    out: &mut Fragment,
    with_source: bool,
    claims: &mut Claims,
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
        let sent = claims.expected().map(|d| d.body());
        let source = source(s, sent).ok()?;
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
            let at = claims.success(id);
            let source = with_source.then_some(source);
            out.success(at, id, Some(version), source, None);
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
    claims: &mut Claims,
) -> Parsed<()> {
    if read_usual_success(s, out, with_source, claims) {
        return Ok(());
    }
    let keys = ["\"_id\"", "\"_source\"", "\"_version\"", "\"created\""];
    let sent = claims.expected().map(|d| d.body());
    let [id, source_text, version, created] = known_fields(s, keys, |s, k| match k {
        1 => source(s, sent),
        _ => s.raw(),
    })?;
    let (Some(id), Some(source_text)) = (id, source_text) else {
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
    let at = claims.success(id);
    out.success(at, id, version, with_source.then_some(source_text), created);
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

fn read_error(s: &mut Scanner, out: &mut Fragment, claims: &mut Claims) -> Parsed<()> {
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
    let at = claims.error(document);
    out.kuzzle_error(at, document, status, reason.filter(|r| *r != "null"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::door::check_all;
    use super::super::index::Doc;
    use super::*;
    use crate::transport::Answer;

    /// Kuzzle's answer read by the fast path and by serde: same result, same
    /// claims.
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
                let mut claims = Claims::new(&refs);
                assert!(
                    fast_record(&reply, &mut fast, with_source, &mut claims),
                    "{answer}"
                );
                assert!(claims.complete(), "{answer}");
                let mut slow = Fragment::default();
                let mut claims = Claims::new(&refs);
                match reply.decode::<MWriteResult>() {
                    Answer::Result(Some(result)) => {
                        record(result, &mut slow, with_source, &mut claims)
                    }
                    _ => panic!("{answer}"),
                }
                assert!(claims.complete(), "{answer}");
                assert_eq!(fast.successes, slow.successes);
                assert_eq!(fast.errors, slow.errors);
            }
        }
        // A repeated "error" key is not a plain success.
        let reply = Reply::new(
            200,
            br#"{"error":{"id":"x"},"error":null,"result":{"successes":[],"errors":[]}}"#.to_vec(),
        );
        let mut claims = Claims::new(&refs);
        assert!(!fast_record(
            &reply,
            &mut Fragment::default(),
            true,
            &mut claims
        ));
        // Not a plain success: left to the generic decoder, nothing written.
        let mut out = Fragment::default();
        let reply = Reply::new(200, br#"{"error":{"id":"x","message":"y"},"result":{"successes":[{"_id":"d0","_source":{},"_version":1}],"errors":[]}}"#.to_vec());
        let mut claims = Claims::new(&refs);
        assert!(!fast_record(&reply, &mut out, true, &mut claims));
        assert!(out.successes.is_empty() && out.n_success == 0);
    }
}
