//! The result writer: success and error items written as JSON text, in the
//! order they are known, with their counts.

use super::index::Doc;
use crate::error::{push_json_str, Error};
use std::borrow::Cow;

/// One document's outcome, for a caller that takes them as values (the
/// producer) rather than as the result's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Stored {
        version: Option<u64>,
        created: Option<bool>,
    },
    Failed {
        status: u16,
        reason: String,
        in_doubt: bool,
    },
}

/// What one request contributed to the result: JSON items already written.
/// Strings, not bytes: every piece is a slice of valid text (the caller's
/// documents, Kuzzle's answer, our own), so the result needs no UTF-8 pass.
#[derive(Default)]
pub(super) struct Fragment {
    pub(super) successes: String,
    pub(super) errors: String,
    pub(super) n_success: usize,
    pub(super) n_error: usize,
    /// Of `n_error`, those in doubt.
    pub(super) n_in_doubt: usize,
    /// The first whole-request failure, if any.
    pub(super) failure: Option<Error>,
    /// Typed: each document's verdict with its position in the call
    /// (`Doc::i`), in place of the JSON items.
    pub(super) verdicts: Option<Vec<(usize, Verdict)>>,
}

/// A fragment's lengths and counts at one moment.
pub(super) struct Mark {
    successes: usize,
    n_success: usize,
    errors: usize,
    n_error: usize,
    n_in_doubt: usize,
    verdicts: usize,
}

impl Fragment {
    /// A fragment that keeps verdicts instead of JSON.
    pub(super) fn typed() -> Fragment {
        Fragment {
            verdicts: Some(Vec::new()),
            ..Fragment::default()
        }
    }

    /// An empty fragment of the same kind.
    pub(super) fn blank(&self) -> Fragment {
        match self.verdicts {
            Some(_) => Fragment::typed(),
            None => Fragment::default(),
        }
    }

    /// Typed: records a failure (and counts it); false: write the JSON.
    fn typed_failure(
        &mut self,
        at: Option<usize>,
        status: u16,
        reason: &str,
        in_doubt: bool,
    ) -> bool {
        let Some(verdicts) = self.verdicts.as_mut() else {
            return false;
        };
        self.n_error += 1;
        self.n_in_doubt += in_doubt as usize;
        if let Some(at) = at {
            let reason = reason.to_string();
            verdicts.push((
                at,
                Verdict::Failed {
                    status,
                    reason,
                    in_doubt,
                },
            ));
        }
        true
    }

    fn open(buf: &mut String, n: &mut usize) {
        if *n > 0 {
            buf.push(',');
        }
        *n += 1;
    }

    /// One error item; `reason` is a JSON string literal already.
    fn error_raw(&mut self, document: &str, status: u16, reason: &str, in_doubt: bool) {
        Self::open(&mut self.errors, &mut self.n_error);
        self.n_in_doubt += in_doubt as usize;
        let e = &mut self.errors;
        e.push_str("{\"document\":");
        e.push_str(document);
        e.push_str(",\"status\":");
        e.push_str(&status.to_string());
        e.push_str(",\"reason\":");
        e.push_str(reason);
        e.push_str(match in_doubt {
            true => ",\"inDoubt\":true}",
            false => ",\"inDoubt\":false}",
        });
    }

    /// An error item about `document`, whose position is unknown (a door
    /// rejection: typed fragments have none).
    pub(super) fn error(&mut self, document: &str, status: u16, reason: &str, in_doubt: bool) {
        if self.typed_failure(None, status, reason, in_doubt) {
            return;
        }
        let mut r = String::with_capacity(reason.len() + 2);
        push_json_str(&mut r, reason);
        self.error_raw(document, status, &r, in_doubt);
    }

    pub(super) fn doc_error(&mut self, doc: &Doc, status: u16, reason: &str, in_doubt: bool) {
        if self.typed_failure(Some(doc.i), status, reason, in_doubt) {
            return;
        }
        let mut r = String::with_capacity(reason.len() + 2);
        push_json_str(&mut r, reason);
        self.error_raw(&doc.text(), status, &r, in_doubt);
    }

    /// One success; `version` is the number's JSON text; no `source`: the
    /// caller asked for none. Without Kuzzle's `created` (2.56 sends none),
    /// it is derived as `_version == 1`.
    /// `at`: the document's position (`Doc::i`), None when the answer
    /// could not be matched (then rolled back).
    pub(super) fn success(
        &mut self,
        at: Option<usize>,
        id: &str,
        version: Option<&str>,
        source: Option<&str>,
        created: Option<bool>,
    ) {
        if let Some(verdicts) = self.verdicts.as_mut() {
            self.n_success += 1;
            if let Some(at) = at {
                let created = created.or(version.map(|v| v == "1"));
                let version = version.and_then(|v| v.parse().ok());
                verdicts.push((at, Verdict::Stored { version, created }));
            }
            return;
        }
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
    pub(super) fn mark(&self) -> Mark {
        Mark {
            successes: self.successes.len(),
            n_success: self.n_success,
            errors: self.errors.len(),
            n_error: self.n_error,
            n_in_doubt: self.n_in_doubt,
            verdicts: self.verdicts.as_ref().map_or(0, Vec::len),
        }
    }

    pub(super) fn rollback(&mut self, mark: Mark) {
        if let Some(v) = self.verdicts.as_mut() {
            v.truncate(mark.verdicts);
        }
        self.successes.truncate(mark.successes);
        self.n_success = mark.n_success;
        self.errors.truncate(mark.errors);
        self.n_error = mark.n_error;
        self.n_in_doubt = mark.n_in_doubt;
    }

    /// One of Kuzzle's per-document errors: Kuzzle's own verdict, not in
    /// doubt.
    pub(super) fn kuzzle_error(
        &mut self,
        at: Option<usize>,
        document: &str,
        status: Option<u16>,
        reason: Option<&str>,
    ) {
        if self.verdicts.is_some() {
            let reason = match reason {
                Some(r) if r.starts_with('"') => {
                    serde_json::from_str::<String>(r).map_or(Cow::Borrowed(r), Cow::Owned)
                }
                Some(r) => Cow::Borrowed(r),
                None => Cow::Borrowed("rejected by Kuzzle"),
            };
            self.typed_failure(at, status.unwrap_or(400), &reason, false);
            return;
        }
        let reason = match reason {
            Some(r) if r.starts_with('"') => Cow::Borrowed(r),
            Some(r) => Cow::Owned(serde_json::to_string(r).unwrap_or_default()),
            None => Cow::Borrowed("\"rejected by Kuzzle\""),
        };
        self.error_raw(document, status.unwrap_or(400), &reason, false);
    }

    /// Every document of `docs` failed with `error`; the first such failure
    /// of the call becomes its top-level `error`.
    pub(super) fn fail(&mut self, docs: &[Doc], error: Error) {
        let reason = if error.in_doubt {
            format!(
                "{} (no conclusive answer from Kuzzle: this document may or may not have been \
                 written)",
                error.message
            )
        } else {
            error.message.clone()
        };
        for doc in docs {
            self.doc_error(doc, error.http, &reason, error.in_doubt);
        }
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    /// Appends `other`'s items, leaving it empty (its capacity kept).
    pub(super) fn absorb(&mut self, other: &mut Fragment) {
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
            // Typed fragments have counts and no text.
            if *m > 0 && !theirs.is_empty() {
                if !mine.is_empty() && *n > 0 {
                    mine.push(',');
                }
                mine.push_str(theirs);
            }
            *n += *m;
            theirs.clear();
            *m = 0;
        }
        if let (Some(mine), Some(theirs)) = (self.verdicts.as_mut(), other.verdicts.as_mut()) {
            mine.append(theirs);
        }
        self.n_in_doubt += std::mem::take(&mut other.n_in_doubt);
        let failure = other.failure.take();
        if self.failure.is_none() {
            self.failure = failure;
        }
    }
}
