//! Door checks: every input item is read once, and each one that could sink
//! a whole request (an id Elasticsearch refuses, a body Kuzzle cannot walk)
//! is rejected alone, before anything is sent.

use super::index::Index;
use super::result::Fragment;
use crate::json::{Parsed, Scanner};
use std::borrow::Cow;

/// Elasticsearch refuses longer ids, and one such id fails a whole request.
pub(crate) const MAX_ID_BYTES: usize = 512;
/// Kuzzle overflows its stack on bodies nested ~20,000 levels deep and fails
/// the whole request; Elasticsearch maps far less. Stop such documents alone.
pub(crate) const MAX_DEPTH: usize = 512;

/// Checks the whole `documents` array: the index of the documents that
/// pass, and the door rejections of the others. `Err`: not a JSON array.
pub(super) fn check_all(documents: &str) -> Parsed<(Index<'_>, Fragment)> {
    let mut door = Fragment::default();
    // The caller checked the size; an empty index refuses nothing here.
    let mut index = Index::new(documents).unwrap_or_default();
    let mut s = Scanner::new(documents);
    s.items(|s| {
        let start = s.pos;
        match check_item(s)? {
            Ok((id, body)) => index.push(id, body, s.slice(start, s.pos)),
            Err(reason) => door.error(s.slice(start, s.pos), 400, &reason, false),
        }
        Ok(())
    })?;
    s.end()?;
    Ok((index, door))
}

/// The producer's door, the same checks as each item of an mWrite: the
/// documents of `text`, one `{"_id"?, "body"}` object (`batch` false) or a
/// JSON array of them, each as its `_id` literal ("" for none) and body,
/// slices of `text`. A batch is refused whole when one item is.
pub(crate) fn check_documents<'a>(
    text: &'a str,
    batch: bool,
) -> crate::error::Result<Vec<(&'a str, &'a str)>> {
    use crate::error::Error;
    let syntax =
        |e: crate::json::SyntaxError| Error::json(format!("not JSON: {}", e.describe(text)));
    let mut s = Scanner::new(text);
    let mut docs = Vec::new();
    let mut refused = None;
    let mut one = |s: &mut Scanner<'a>| -> Parsed<()> {
        match check_item(s)? {
            Ok(doc) => docs.push(doc),
            Err(reason) if refused.is_none() => refused = Some((docs.len(), reason)),
            Err(_) => {}
        }
        Ok(())
    };
    if batch {
        s.items(&mut one).map_err(syntax)?;
    } else {
        s.ws();
        one(&mut s).map_err(syntax)?;
    }
    s.end().map_err(syntax)?;
    match refused {
        None => Ok(docs),
        Some((_, reason)) if !batch => Err(Error::invalid(reason)),
        Some((i, reason)) => Err(Error::invalid(format!("document {i}: {reason}"))),
    }
}

/// `check_documents` of one document (`batch` false), without a `Vec`:
/// its `_id` literal ("" for none) and body.
pub(crate) fn check_document(text: &str) -> crate::error::Result<(&str, &str)> {
    use crate::error::Error;
    let syntax =
        |e: crate::json::SyntaxError| Error::json(format!("not JSON: {}", e.describe(text)));
    let mut s = Scanner::new(text);
    s.ws();
    let checked = check_item(&mut s).map_err(syntax)?;
    s.end().map_err(syntax)?;
    checked.map_err(Error::invalid)
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
    let mut id: Member = None;
    let (mut body, mut problem) = (None, None);
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
        None => doc(id.map(|(text, _)| (text, text.contains('\\'))), body),
    })
}

/// A document's `_id` or `body`, if given: its JSON text and nesting depth.
type Member<'a> = Option<(&'a str, usize)>;
/// A document's `_id`, if given: its JSON text, and whether that holds an
/// escape.
type IdText<'a> = Option<(&'a str, bool)>;

/// A document in the usual compact form, `{"_id":"…","body":{…}}` or
/// `{"body":{…}}`: its `_id` and `body` (text and depth), read without the
/// general member walk. `None`, the scanner back where it was, otherwise.
fn usual_item<'a>(s: &mut Scanner<'a>) -> Option<(IdText<'a>, Member<'a>)> {
    let start = s.pos;
    let mut read = || {
        let id = if s.exact(b"{\"_id\":") {
            let id = s.string()?;
            let escaped = s.escaped();
            if !s.exact(b",\"body\":") {
                return None;
            }
            Some((id, escaped))
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
fn doc<'a>(id: IdText<'a>, body: Member<'a>) -> std::result::Result<(&'a str, &'a str), String> {
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
    let id = match id {
        None | Some(("null", _)) | Some(("\"\"", _)) => "",
        Some((text, escaped)) if text.starts_with('"') => {
            let decoded_len = if escaped {
                // Escapes only shorten a string, but a lone surrogate
                // (`"\ud800"`) is no text at all: Kuzzle would store it as
                // U+FFFD, where two such ids overwrite each other.
                match serde_json::from_str::<String>(text) {
                    Ok(s) => s.len(),
                    Err(_) => {
                        return Err("_id is not valid Unicode (a lone surrogate escape)".into())
                    }
                }
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
                    let general_id = find("\"_id\"").map(|(t, _)| (t, t.contains('\\')));
                    assert_eq!(id, general_id, "{text}");
                    assert_eq!(body, find("\"body\""), "{text}");
                    assert_eq!(general.len(), 1 + id.is_some() as usize, "{text}");
                }
                None => assert_eq!(s.pos, 0, "{text}"),
            }
        }
    }

    #[test]
    fn ids_that_are_not_text_are_refused_at_the_door() {
        let src = r#"[{"_id":"\ud800","body":{}},{"_id":"\udfff\ud800","body":{}},{"_id":"\ud83d\ude00","body":{}},{"_id":"ok","body":{}}]"#;
        let (index, door) = check_all(src).unwrap();
        assert_eq!((index.len(), door.n_error), (2, 2));
        assert!(door.errors.contains("lone surrogate"), "{}", door.errors);
        assert!(door.errors.contains("\"inDoubt\":false"), "{}", door.errors);
        let long = format!(r#"[{{"_id":"{}","body":{{}}}}]"#, "\\u0041".repeat(600));
        let (index, door) = check_all(&long).unwrap();
        assert_eq!((index.len(), door.n_error), (0, 1), "600 bytes decoded");
    }
}
