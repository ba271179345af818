//! Which sent document each result of Kuzzle's answer is about. Kuzzle
//! lists one item per document sent: successes in the order sent, errors
//! naming their document. An answer that names a document never sent, one
//! twice, or lists more or fewer items than documents cannot be matched:
//! the request's documents are then reported in doubt rather than guessed.

use super::index::{Doc, Id};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

pub(super) struct Claims<'d, 'a> {
    docs: &'d [Doc<'a>],
    claimed: Vec<bool>,
    /// Documents claimed, and items listed by the answer.
    count: usize,
    listed: usize,
    /// Where the next success is looked for.
    cursor: usize,
    /// Where the next id-less error is looked for.
    idless_cursor: usize,
    /// Positions of the documents that have an id, by decoded id: built
    /// when first needed (an error item, or id-less documents beside
    /// documents with ids).
    by_id: Option<HashMap<String, Vec<usize>>>,
    mixed: Option<bool>,
    broken: bool,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default, rename = "_id")]
    id: Option<&'a RawValue>,
}

impl<'d, 'a> Claims<'d, 'a> {
    pub(super) fn new(docs: &'d [Doc<'a>]) -> Self {
        Claims {
            docs,
            claimed: vec![false; docs.len()],
            count: 0,
            listed: 0,
            cursor: 0,
            idless_cursor: 0,
            by_id: None,
            mixed: None,
            broken: false,
        }
    }

    /// Every document sent is claimed by exactly one item, and no item is
    /// left over.
    pub(super) fn complete(&self) -> bool {
        !self.broken && self.count == self.docs.len() && self.listed == self.docs.len()
    }

    /// Why the answer could not be matched, for the documents' reason.
    pub(super) fn describe(&self) -> String {
        if self.broken {
            format!(
                "Kuzzle's answer names documents that were not sent, or one twice ({} results \
                 for {} documents)",
                self.listed,
                self.docs.len()
            )
        } else {
            format!(
                "Kuzzle's answer lists {} results for {} documents",
                self.listed,
                self.docs.len()
            )
        }
    }

    /// The document the next success most likely is: whose `_source` echo
    /// to compare bytes with.
    pub(super) fn expected(&self) -> Option<&'d Doc<'a>> {
        (self.cursor..self.docs.len())
            .find(|&k| !self.claimed[k])
            .map(|k| &self.docs[k])
    }

    /// Claims the document at `k`: its position in the call (`Doc::i`).
    fn take(&mut self, k: usize) -> Option<usize> {
        self.claimed[k] = true;
        self.count += 1;
        Some(self.docs[k].i)
    }

    fn fail(&mut self) -> Option<usize> {
        self.broken = true;
        None
    }

    /// A success naming `literal` (its `_id` as Kuzzle wrote it): the
    /// position in the call (`Doc::i`) of the document it is about. Successes come in the order
    /// sent, so the cursor only moves forward (linear in all).
    pub(super) fn success(&mut self, literal: &str) -> Option<usize> {
        self.listed += 1;
        if self.broken {
            return None;
        }
        let n = self.docs.len();
        while self.cursor < n {
            let k = self.cursor;
            self.cursor += 1;
            if self.claimed[k] {
                continue;
            }
            let doc = &self.docs[k];
            match doc.id() {
                // Kuzzle named it, unless the id is one of ours further on
                // (then this one was rejected: it is among the errors).
                Id::None => {
                    if self.is_mixed() {
                        if let Some(j) = self.unclaimed_with(literal, k + 1) {
                            self.cursor = j + 1;
                            return self.take(j);
                        }
                    }
                    return self.take(k);
                }
                id if Doc::names(id, literal) => return self.take(k),
                _ => {}
            }
        }
        self.fail()
    }

    /// An error item about `document` (as Kuzzle lists it: `{"_id"?, ...}`):
    /// the position in the call of the document it is about.
    pub(super) fn error(&mut self, document: &str) -> Option<usize> {
        self.listed += 1;
        if self.broken {
            return None;
        }
        let Ok(named) = serde_json::from_str::<Named>(document) else {
            return self.fail();
        };
        let found = match named.id.map(RawValue::get) {
            None | Some("null") | Some("\"\"") => {
                let n = self.docs.len();
                while self.idless_cursor < n
                    && (self.claimed[self.idless_cursor] || self.docs[self.idless_cursor].has_id())
                {
                    self.idless_cursor += 1;
                }
                (self.idless_cursor < n).then_some(self.idless_cursor)
            }
            Some(literal) => self.unclaimed_with(literal, 0),
        };
        match found {
            Some(k) => self.take(k),
            None => self.fail(),
        }
    }

    fn is_mixed(&mut self) -> bool {
        let docs = self.docs;
        *self
            .mixed
            .get_or_insert_with(|| docs.iter().any(|d| d.has_id()))
    }

    /// The first unclaimed document from `from` on whose id `literal` names.
    fn unclaimed_with(&mut self, literal: &str, from: usize) -> Option<usize> {
        let id: String = serde_json::from_str(literal).ok()?;
        let docs = self.docs;
        let by_id = self.by_id.get_or_insert_with(|| {
            let mut map: HashMap<String, Vec<usize>> = HashMap::new();
            for (k, doc) in docs.iter().enumerate() {
                if let Some(id) = doc.id_string() {
                    map.entry(id).or_default().push(k);
                }
            }
            map
        });
        let positions = by_id.get(&id)?;
        // Positions ascend; the same id twice in one request is rare.
        positions
            .iter()
            .copied()
            .find(|&k| k >= from && !self.claimed[k])
    }
}

#[cfg(test)]
mod tests {
    use super::super::door::check_all;
    use super::*;

    fn docs_of(src: &str) -> super::super::index::Index<'_> {
        check_all(src).unwrap().0
    }

    #[test]
    fn successes_in_order_errors_anywhere() {
        let index = docs_of(
            r#"[{"_id":"a","body":{}},{"_id":"b","body":{}},{"_id":"c","body":{}},{"_id":"a","body":{}}]"#,
        );
        let docs: Vec<Doc> = (0..4).map(|i| index.doc(i)).collect();
        let mut c = Claims::new(&docs);
        assert_eq!(c.success(r#""a""#), Some(0));
        assert_eq!(c.success(r#""c""#), Some(2));
        assert_eq!(c.success(r#""a""#), Some(3), "the same id twice");
        assert!(c.error(r#"{"_id":"b","_source":{}}"#).is_some());
        assert!(c.complete());

        // errors first, then successes
        let mut c = Claims::new(&docs);
        assert!(c.error(r#"{"_id":"c","body":{}}"#).is_some());
        for (id, k) in [("a", 0), ("b", 1), ("a", 3)] {
            assert_eq!(c.success(&format!("\"{id}\"")), Some(k));
        }
        assert!(c.complete());
    }

    #[test]
    fn unknown_repeated_missing_and_extra_items_break_the_match() {
        let index = docs_of(r#"[{"_id":"a","body":{}},{"_id":"b","body":{}}]"#);
        let docs: Vec<Doc> = (0..2).map(|i| index.doc(i)).collect();
        let mut c = Claims::new(&docs);
        assert_eq!(c.success(r#""x""#), None);
        assert!(!c.complete() && c.describe().contains("not sent"));
        let mut c = Claims::new(&docs);
        c.success(r#""b""#);
        assert_eq!(c.success(r#""b""#), None, "b twice");
        assert!(!c.complete());
        let mut c = Claims::new(&docs);
        c.success(r#""a""#);
        assert!(!c.complete(), "one missing");
        assert!(c.describe().contains("lists 1 results for 2"));
        let mut c = Claims::new(&docs);
        c.success(r#""a""#);
        c.success(r#""b""#);
        assert!(c.error(r#"{"_id":"a"}"#).is_none(), "one extra");
        assert!(!c.complete());
    }

    #[test]
    fn idless_documents_take_the_ids_kuzzle_gave_them() {
        let index = docs_of(r#"[{"body":{"n":1}},{"_id":"k","body":{}},{"body":{"n":2}}]"#);
        let docs: Vec<Doc> = (0..3).map(|i| index.doc(i)).collect();
        // first id-less rejected, "k" and the second id-less stored
        let mut c = Claims::new(&docs);
        assert_eq!(c.success(r#""k""#), Some(1));
        assert_eq!(c.success(r#""srv-id""#), Some(2));
        assert!(c.error(r#"{"_source":{"n":1}}"#).is_some());
        assert!(c.complete());
    }
}
