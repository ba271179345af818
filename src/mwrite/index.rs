//! The checked documents of one call, kept as offsets into the caller's
//! input (8 bytes each), and their ids: given, generated, or none.

use crate::client;
use crate::error::{Error, Result};
use std::borrow::Cow;

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

/// Every checked document of one call. Offsets are 32-bit: `new` refuses an
/// input of 4 GiB or more, so every offset fits.
#[derive(Default, Clone)]
pub(super) struct Index<'a> {
    src: &'a str,
    entries: Vec<Entry>,
    unusual: Vec<Parts>,
    /// With `generateIds`: the id prefix and the counter value of the first
    /// document; an id-less document gets the value of its position.
    generated: Option<(&'a str, u64)>,
}

impl<'a> Index<'a> {
    pub(super) fn new(src: &'a str) -> Result<Index<'a>> {
        if src.len() > u32::MAX as usize {
            return Err(Error::invalid(
                "documents is 4 GiB or more: split it into several calls",
            ));
        }
        Ok(Index {
            src,
            ..Index::default()
        })
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn doc(&self, i: usize) -> Doc<'_> {
        Doc { index: self, i }
    }

    /// Gives every id-less document an id: `prefix` and the counter value
    /// `first` plus its position.
    pub(super) fn generate_ids(&mut self, prefix: &'a str, first: u64) {
        self.generated = Some((prefix, first));
    }

    fn text(&self, at: u32, len: u32) -> &'a str {
        &self.src[at as usize..(at + len) as usize]
    }

    /// Keeps a document, given its checked `_id` literal ("" for none), its
    /// body and its whole text: slices of `src`.
    pub(super) fn push(&mut self, id: &str, body: &str, whole: &str) {
        let src = self.src.as_ptr() as usize;
        let at = |part: &str| {
            let offset = part.as_ptr() as usize - src;
            debug_assert!(offset + part.len() <= self.src.len(), "a slice of src");
            offset as u32
        };
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
            let parts = Parts {
                body: at(body),
                body_len: body.len() as u32,
                id: if id.is_empty() { 0 } else { at(id) },
                id_len: id.len() as u32,
            };
            self.unusual.push(parts);
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
pub(super) struct Doc<'a> {
    index: &'a Index<'a>,
    /// Its position in the call's input (among checked documents).
    pub(super) i: usize,
}

/// A document's `_id`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Id<'a> {
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
    pub(super) fn body(&self) -> &'a str {
        self.parts().1
    }

    #[inline]
    pub(super) fn id(&self) -> Id<'a> {
        match (self.parts().0, self.index.generated) {
            ("", Some((prefix, first))) => Id::Generated(prefix, first + self.i as u64),
            ("", None) => Id::None,
            (given, _) => Id::Given(given),
        }
    }

    #[inline]
    pub(super) fn has_id(&self) -> bool {
        !matches!(self.id(), Id::None)
    }

    /// The `_id`'s JSON text, `null` when there is none.
    pub(super) fn id_json(&self) -> Cow<'a, str> {
        match self.id() {
            Id::None => Cow::Borrowed("null"),
            Id::Given(text) => Cow::Borrowed(text),
            id @ Id::Generated(..) => {
                let mut out = Vec::new();
                push_id(id, &mut out);
                Cow::Owned(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// Whether `literal`, a JSON string literal from Kuzzle's answer, names
    /// this document's `_id`. An id-less document matches any: Kuzzle gave
    /// it one.
    #[cfg(test)]
    pub(super) fn id_is(&self, literal: &str) -> bool {
        Doc::names(self.id(), literal)
    }

    /// Whether `literal` names the document whose id is `id` (see `id_is`).
    pub(super) fn names(id: Id, literal: &str) -> bool {
        match id {
            Id::None => true,
            Id::Given(text) if text == literal => true,
            Id::Given(text) => {
                // Same id, other escapes (`"\u0041"` is `"A"`).
                (text.contains('\\') || literal.contains('\\'))
                    && serde_json::from_str::<String>(text).ok()
                        == serde_json::from_str::<String>(literal).ok()
            }
            Id::Generated(prefix, n) => {
                let mut digits = [0; 11];
                let digits = client::base62(n, &mut digits);
                let l = literal.as_bytes();
                l.len() == prefix.len() + digits.len() + 2
                    && l[1..1 + prefix.len()] == *prefix.as_bytes()
                    && l[1 + prefix.len()..l.len() - 1] == *digits
                    && l[0] == b'"'
                    && l[l.len() - 1] == b'"'
            }
        }
    }

    /// The decoded `_id`, when the document has one.
    pub(super) fn id_string(&self) -> Option<String> {
        match self.id() {
            Id::None => None,
            Id::Given(text) => serde_json::from_str(text).ok(),
            Id::Generated(..) => serde_json::from_str(&self.id_json()).ok(),
        }
    }

    /// The length of `id_json`, 0 when there is none; for a generated id, at
    /// most 10 bytes over (the counter's longest).
    #[inline]
    pub(super) fn id_len(&self) -> usize {
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
    pub(super) fn wire_len(&self) -> usize {
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

    /// `{"_id":...,"body":...}` as sent.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
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
                push_id(id, out);
                out.extend_from_slice(b",\"body\":");
            }
        }
        out.extend_from_slice(body.as_bytes());
        out.push(b'}');
    }

    /// The document as sent, as text (for an error item).
    pub(super) fn text(&self) -> String {
        let mut d = Vec::with_capacity(self.wire_len());
        self.write(&mut d);
        // Every piece is valid UTF-8: slices of the input and our own ASCII.
        String::from_utf8(d).unwrap_or_default()
    }
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

#[cfg(test)]
mod tests {
    use super::super::door::check_all;

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
            let mut index = index.clone();
            if let Some((prefix, first)) = generated {
                index.generate_ids(prefix, first);
            }
            let written: Vec<String> = (0..6)
                .map(|i| {
                    let doc = index.doc(i);
                    let out = doc.text();
                    // an estimate: never under, a few bytes over
                    let over = doc.wire_len().checked_sub(out.len());
                    assert!(over.is_some_and(|o| o <= 11), "{i} {generated:?}: {over:?}");
                    out
                })
                .collect();
            assert_eq!(written[0], r#"{"_id":"a\"b","body":{"v":1}}"#);
            assert_eq!(index.doc(0).body(), r#"{"v":1}"#);
            assert_eq!(written[2], r#"{"_id":"late","body":{}}"#);
            assert_eq!(written[3], r#"{"_id":"c\\","body":{"x":"\""}}"#);
            assert_eq!(index.doc(3).id_json(), r#""c\\""#);
            assert_eq!(index.doc(3).body(), r#"{"x":"\""}"#);
            assert!(index.doc(0).id_is(r#""a\"b""#) && !index.doc(0).id_is(r#""ab""#));
            assert!(index.doc(2).id_is(r#""l\u0061te""#));
            match generated {
                None => {
                    assert_eq!(written[1], r#"{"body":{"w":2}}"#);
                    assert_eq!(written[4], r#"{"body":{}}"#);
                    assert_eq!(written[5], r#"{"body":{"n":0}}"#);
                    assert_eq!(index.doc(1).id_json(), "null");
                    assert!(!index.doc(1).has_id() && !index.doc(5).has_id());
                    assert!(index.doc(1).id_is(r#""anything""#));
                }
                Some(_) => {
                    // position 1: counter 62, "10" in base 62
                    assert_eq!(written[1], r#"{"_id":"pre-10","body":{"w":2}}"#);
                    assert_eq!(index.doc(1).id_json(), r#""pre-10""#);
                    assert!(index.doc(1).id_is(r#""pre-10""#));
                    assert!(!index.doc(1).id_is(r#""pre-11""#) && !index.doc(1).id_is("\"x\""));
                    assert_eq!(index.doc(1).id_string().as_deref(), Some("pre-10"));
                    assert_eq!(written[5], r#"{"_id":"pre-14","body":{"n":0}}"#);
                }
            }
        }
    }
}
