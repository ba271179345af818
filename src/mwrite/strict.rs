//! Strict mode: when Kuzzle rejects some documents of a `strict=true`
//! request it answers 400 `api.process.incomplete_multiple_request` with
//! the rejected ones, yet it stored the others. Match the rejected items to
//! the documents sent (by `_id`, else by body) and report the rest as
//! stored, with what is known.

use super::answer::ErrorItem;
use super::index::Doc;
use super::result::Fragment;
use crate::error::Error;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// A rejected document as Kuzzle 2.56 lists it: `{"_id"?, "_source"}` for a
/// storage rejection (a mapping), `{"_id"?, "body"}` in its input form for
/// one refused before storage.
#[derive(Deserialize)]
struct Sent<'a> {
    #[serde(default, rename = "_id")]
    id: Option<serde_json::Value>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "_source")]
    source: Option<&'a RawValue>,
}

/// The documents sent, by what an error item can name them with: each
/// lookup is a hash probe, so the work is linear in the answer's size.
struct Lookup<'d, 'a> {
    docs: &'d [Doc<'a>],
    /// Decoded `_id` -> positions.
    by_id: HashMap<String, Vec<usize>>,
    /// Id-less documents: body text as sent -> positions.
    by_body: HashMap<&'a str, Vec<usize>>,
    /// Id-less documents by their body's canonical form (serde_json's
    /// sorted maps): for an echo that Kuzzle reformatted. Built when first
    /// needed.
    by_value: Option<HashMap<String, Vec<usize>>>,
}

impl<'d, 'a> Lookup<'d, 'a> {
    fn new(docs: &'d [Doc<'a>]) -> Self {
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_body: HashMap<&str, Vec<usize>> = HashMap::new();
        for (k, doc) in docs.iter().enumerate() {
            match doc.id_string() {
                Some(id) => by_id.entry(id).or_default().push(k),
                None if !doc.has_id() => by_body.entry(doc.body()).or_default().push(k),
                None => {}
            }
        }
        Lookup {
            docs,
            by_id,
            by_body,
            by_value: None,
        }
    }

    fn find(&mut self, sent: &Sent, failed: &[bool]) -> Option<usize> {
        let first = |positions: Option<&Vec<usize>>| {
            positions.and_then(|p| p.iter().copied().find(|&k| !failed[k]))
        };
        match &sent.id {
            Some(serde_json::Value::String(id)) if !id.is_empty() => {
                return first(self.by_id.get(id))
            }
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return None,
        }
        let body = sent.source.or(sent.body)?;
        if let Some(k) = first(self.by_body.get(body.get())) {
            return Some(k);
        }
        let docs = self.docs;
        let by_value = self.by_value.get_or_insert_with(|| {
            let mut map: HashMap<String, Vec<usize>> = HashMap::new();
            for (k, doc) in docs.iter().enumerate().filter(|(_, d)| !d.has_id()) {
                if let Some(c) = canonical(doc.body()) {
                    map.entry(c).or_default().push(k);
                }
            }
            map
        });
        first(by_value.get(&canonical(body.get())?))
    }
}

fn canonical(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .map(|v| v.to_string())
}

/// Records a strict-mode partial failure: the rejected documents with
/// Kuzzle's reasons, the others as stored (`_version` and `created` null,
/// `_id` null when neither the caller nor `generateIds` gave one). If some
/// rejection cannot be matched to a document sent, the documents not
/// matched fail in doubt (`http`: the answer's status), and with them the
/// call.
pub(super) fn strict_partial(
    docs: &[Doc],
    details: Option<&RawValue>,
    out: &mut Fragment,
    with_source: bool,
    http: u16,
) {
    let errors: Option<Vec<ErrorItem>> = details.and_then(|d| serde_json::from_str(d.get()).ok());
    let mut failed = vec![false; docs.len()];
    // More rejections than documents sent cannot all be about them.
    let mut unmatched = match &errors {
        Some(errors) if errors.len() <= docs.len() => 0,
        _ => 1,
    };
    if unmatched == 0 {
        let mut lookup = Lookup::new(docs);
        for e in errors.iter().flatten() {
            let found = serde_json::from_str::<Sent>(e.document.get())
                .ok()
                .and_then(|sent| lookup.find(&sent, &failed));
            match found {
                Some(k) => {
                    failed[k] = true;
                    e.push_to(out, Some(docs[k].i));
                }
                None => unmatched += 1,
            }
        }
    }
    if unmatched > 0 {
        let rest: Vec<Doc> = docs
            .iter()
            .zip(&failed)
            .filter(|(_, failed)| !**failed)
            .map(|(doc, _)| *doc)
            .collect();
        let mut e = Error::server(
            http,
            Some("libkuzzle.bad_response"),
            "strict mode: Kuzzle reported rejections that could not be matched to the documents \
             sent",
        );
        e.in_doubt = true;
        return out.fail(&rest, e);
    }
    for (doc, failed) in docs.iter().zip(failed) {
        if !failed {
            let source = with_source.then_some(doc.body());
            out.success(Some(doc.i), &doc.id_json(), None, source, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::door::check_all;
    use super::*;

    fn run(src: &str, details: &str) -> Fragment {
        let index = check_all(src).unwrap().0;
        let docs: Vec<Doc> = (0..index.len()).map(|i| index.doc(i)).collect();
        let details: Box<RawValue> = serde_json::from_str(details).unwrap();
        let mut out = Fragment::default();
        strict_partial(&docs, Some(&details), &mut out, true, 400);
        assert_eq!(out.n_success + out.n_error, docs.len(), "each once");
        out
    }

    #[test]
    fn rejections_matched_by_id_by_source_and_by_reformatted_body() {
        // Kuzzle 2.56's storage rejection carries the document as _source.
        let out = run(
            r#"[{"body":{"a":1}},{"body":{"a":"x"}},{"body":{"b":2, "c":3}}]"#,
            r#"[{"document":{"_source":{"a":"x"}},"status":400,"reason":"mapping"},
                {"document":{"_source":{"c":3,"b":2}},"status":400,"reason":"mapping"}]"#,
        );
        assert_eq!((out.n_success, out.n_error), (1, 2));
        assert!(out.successes.contains(r#""_source":{"a":1}"#));
        assert!(!out.errors.contains("inDoubt\":true"));
        let out = run(
            r#"[{"_id":"k1","body":{}},{"_id":"k2","body":{}}]"#,
            r#"[{"document":{"_id":"k2","_source":{}},"status":400,"reason":"no"}]"#,
        );
        assert_eq!((out.n_success, out.n_error), (1, 1));
        assert!(out.successes.contains("\"k1\""));
    }

    #[test]
    fn unmatched_or_too_many_rejections_leave_the_rest_in_doubt() {
        let out = run(
            r#"[{"_id":"k1","body":{}},{"_id":"k2","body":{}}]"#,
            r#"[{"document":{"_id":"zz","_source":{}},"status":400,"reason":"no"}]"#,
        );
        assert_eq!((out.n_success, out.n_error), (0, 2));
        assert!(out.errors.contains("inDoubt\":true"));
        // 200,000 rejections against 2,000 documents: refused at once.
        let items: Vec<String> = (0..200_000)
            .map(|i| format!(r#"{{"document":{{"_id":"x{i}"}},"status":400}}"#))
            .collect();
        let src: Vec<String> = (0..2_000)
            .map(|i| format!(r#"{{"_id":"d{i}","body":{{}}}}"#))
            .collect();
        let out = run(
            &format!("[{}]", src.join(",")),
            &format!("[{}]", items.join(",")),
        );
        assert_eq!(out.n_error, 2_000);
    }
}
