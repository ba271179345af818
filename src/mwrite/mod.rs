//! The bulk:mWrite engine. A call reads as its pipeline:
//! 1. `door`: check every document once; reject the ones that would sink a
//!    request, alone, before anything is sent (`index`: what is kept of the
//!    others, 8 bytes each, and their ids).
//! 2. `plan`: cut them into requests that fit `maxRequestBytes` on the wire.
//! 3. `worker`: up to `concurrency` workers send them through the network
//!    seam (`crate::net`), split on 413, retry what is safe to retry.
//! 4. `answer`: read each answer into the result (fast path, generic
//!    decoder), every item matched to the document sent (`claims`); strict
//!    mode's partial failures reconciled by `strict`.
//! 5. `merge`: the requests' results go into one `result` in input order,
//!    each input document exactly once.

mod answer;
mod claims;
mod door;
mod index;
mod merge;
mod plan;
mod result;
mod strict;
#[cfg(test)]
mod tests;

pub(crate) use door::{check_document, check_documents};
pub(crate) use result::Verdict;
mod worker;

use crate::config::{Compression, Config, WriteOptions};
use crate::error::{Error, Result, Status};
use crate::net::Network;
use crate::secrets;
use crate::transport::GzipPool;
use index::{Doc, Index};
use merge::{Merge, Sink};
use result::Fragment;
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use worker::{Buffers, Job};

/// What the engine runs with: the network seam and a client's settings.
pub(crate) struct Engine<'a> {
    pub net: &'a dyn Network,
    pub config: &'a Config,
    /// `config.compression` and `config.concurrency`, settled.
    pub compression: Compression,
    pub concurrency: usize,
    /// The requests in flight a call's documents are cut for (`plan`).
    pub spread: usize,
    pub gzip: &'a GzipPool,
    /// Client-side ids (`generateIds`): `<prefix><counter in base 62>`.
    pub id_prefix: &'a str,
    pub id_counter: &'a AtomicU64,
    /// Kept out of every error text of the result.
    pub secrets: &'a [String],
}

/// The result of one `kuzzle_mwrite`: its status and its JSON.
pub(crate) struct Outcome {
    pub status: Status,
    pub json: String,
    /// Documents written, failed, and of those failed, in doubt.
    pub written: usize,
    pub failed: usize,
    pub in_doubt: usize,
    /// `mwrite_checked`: each document's verdict, by position (None: not
    /// in the result, which a bug alone would cause). Empty otherwise.
    pub verdicts: Vec<Option<Verdict>>,
}

/// `kuzzle_mwrite`.
pub(crate) fn mwrite(
    engine: &Engine,
    index: &str,
    collection: &str,
    documents: &str,
    options: &WriteOptions,
) -> Result<Outcome> {
    if index.is_empty() || collection.is_empty() {
        return Err(Error::invalid("index and collection must not be empty"));
    }
    // Before the scan: the index keeps 32-bit offsets.
    Index::new(documents)?;
    let (mut docs, door) = door::check_all(documents).map_err(|e| {
        Error::json(format!(
            "documents must be a JSON array of {{\"_id\"?, \"body\"}} objects: {}",
            e.describe(documents)
        ))
    })?;
    if engine.config.generate_ids {
        // A block of counter values for the whole call, one per position:
        // the documents that have an id leave gaps, which cost nothing.
        let first = engine
            .id_counter
            .fetch_add(docs.len() as u64, Ordering::Relaxed);
        docs.generate_ids(engine.id_prefix, first);
    }
    // The result is written in one buffer, sized for every success (Kuzzle
    // echoes each body), so it rarely grows; door rejections come first in
    // `errors`, as Kuzzle itself lists them.
    let estimate: usize = (0..docs.len())
        .map(|i| match options.source {
            true => docs.doc(i).wire_len() + 48,
            false => docs.doc(i).id_len().max(20) + 52,
        })
        .sum();
    let n_door = door.n_error;
    let mut all = Fragment {
        successes: String::with_capacity(estimate + 64),
        ..door
    };
    all.successes.push_str("{\"successes\":[");
    Ok(match send(engine, index, collection, options, &docs, all) {
        Some(all) => finish(all, engine.secrets),
        None => unaccounted(documents, &docs, n_door, engine.secrets),
    })
}

/// The producer's mWrite: documents its door checked at acceptance, each
/// as its `_id` literal (never empty) and body; each document's verdict
/// by its position in `docs`, in `Outcome::verdicts`, instead of the
/// result's JSON (which stays empty). The door is not run again, and
/// nothing is read back from text.
pub(crate) fn mwrite_checked(
    engine: &Engine,
    index: &str,
    collection: &str,
    docs: &[(&str, &str)],
    options: &WriteOptions,
) -> Result<Outcome> {
    if index.is_empty() || collection.is_empty() {
        return Err(Error::invalid("index and collection must not be empty"));
    }
    // Each document in the compact form the index keeps as its own text.
    let len: usize = docs
        .iter()
        .map(|(id, body)| id.len() + body.len() + 18)
        .sum();
    let mut src = String::with_capacity(len + 2);
    let mut at = Vec::with_capacity(docs.len());
    src.push('[');
    for (k, (id, body)) in docs.iter().enumerate() {
        if k > 0 {
            src.push(',');
        }
        at.push(src.len());
        src.push_str("{\"_id\":");
        src.push_str(id);
        src.push_str(",\"body\":");
        src.push_str(body);
        src.push('}');
    }
    src.push(']');
    let mut checked = Index::new(&src)?;
    for (&start, (id, body)) in at.iter().zip(docs) {
        let id_at = start + 7;
        let body_at = id_at + id.len() + 8;
        let whole = &src[start..body_at + body.len() + 1];
        checked.push(
            &src[id_at..body_at - 8],
            &src[body_at..body_at + body.len()],
            whole,
        );
    }
    let n = checked.len();
    Ok(
        match send(
            engine,
            index,
            collection,
            options,
            &checked,
            Fragment::typed(),
        ) {
            Some(all) => verdicts(all, n, engine.secrets),
            None => {
                let mut all = Fragment::typed();
                let every: Vec<Doc> = (0..n).map(|i| checked.doc(i)).collect();
                all.fail(&every, lost_results());
                verdicts(all, n, engine.secrets)
            }
        },
    )
}

/// Sends every document of `docs` (checked), their results going into
/// `all`; None when a bug broke the merge (a worker panicked, or a
/// request's results never came).
fn send(
    engine: &Engine,
    index: &str,
    collection: &str,
    options: &WriteOptions,
    docs: &Index,
    all: Fragment,
) -> Option<Fragment> {
    let job = Job {
        engine,
        head: plan::head(index, collection, options),
        strict: options.strict,
        with_source: options.source,
        started: Instant::now(),
        down: OnceLock::new(),
        // All of a call's requests at one level (transport/gzip.rs).
        gzip: (engine.compression == Compression::Gzip && docs.len() > 0)
            .then(|| engine.gzip.begin_call()),
        troubled: AtomicBool::new(false),
    };
    let (groups, bytes) = match docs.len() {
        0 => (Vec::new(), 0),
        _ => plan::plan(&job, docs),
    };
    if let Some(call) = &job.gzip {
        let teach = groups.iter().filter(|g| g.teach).count();
        engine.gzip.planned(call, teach);
    }
    let blank = all.blank();
    let merge = Mutex::new(Merge::new(all));
    let next = AtomicUsize::new(0);
    let panicked = AtomicBool::new(false);
    let work = || {
        let mut bufs = Buffers::default();
        let mut own = blank.blank();
        let run = catch_unwind(AssertUnwindSafe(|| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(group) = groups.get(i) else { return };
            let mut sink = Sink::new(&merge, i, std::mem::take(&mut own));
            let members = group.range.clone().map(|i| docs.doc(i)).collect();
            job.write(members, group.teach, &mut bufs, &mut sink);
            own = sink.finish();
        }));
        if run.is_err() {
            panicked.store(true, Ordering::Relaxed);
        }
    };
    let workers = engine.concurrency.min(groups.len());
    std::thread::scope(|s| {
        for _ in 1..workers {
            // A thread the OS refuses is one worker less, not a lost result.
            if !start_worker(s, work) {
                break;
            }
        }
        work();
    });
    if let Some(call) = job.gzip {
        let clean = !job.troubled.load(Ordering::Relaxed) && !panicked.load(Ordering::Relaxed);
        engine.gzip.end_call(call, bytes, clean);
    }
    let merged = merge.into_inner().unwrap_or_else(|p| p.into_inner());
    match merged.into_result(groups.len()) {
        Some(all) if !panicked.load(Ordering::Relaxed) => Some(all),
        _ => None,
    }
}

#[cfg(test)]
thread_local! {
    /// Tests play an OS that refuses every thread.
    pub(super) static REFUSE_THREADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts a worker; false when the OS refuses a thread (where
/// `std::thread::Scope::spawn` would panic).
fn start_worker<'scope, F: FnOnce() + Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: F,
) -> bool {
    #[cfg(test)]
    if REFUSE_THREADS.get() {
        return false;
    }
    std::thread::Builder::new().spawn_scoped(s, f).is_ok()
}

/// `{"successes":[...],"errors":[...]}` and the call's status, from the
/// merged result (`successes` holds its opening already).
fn finish(all: Fragment, secrets: &[String]) -> Outcome {
    let Fragment {
        successes: mut json,
        mut errors,
        n_success,
        n_error,
        n_in_doubt,
        mut failure,
        ..
    } = all;
    if secrets::in_json(&errors, secrets) {
        let mut list = format!("[{errors}]");
        secrets::scrub_json(&mut list, secrets);
        errors = list[1..list.len() - 1].to_string();
    }
    if let Some(e) = failure.as_mut() {
        e.message = secrets::scrub(&e.message, secrets).into_owned();
    }
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
    Outcome {
        status,
        json,
        written: n_success,
        failed: n_error,
        in_doubt: n_in_doubt,
        verdicts: Vec::new(),
    }
}

/// `mwrite_checked`'s outcome: the verdicts by position, no JSON.
fn verdicts(all: Fragment, n: usize, secrets: &[String]) -> Outcome {
    let mut each: Vec<Option<Verdict>> = (0..n).map(|_| None).collect();
    for (at, mut verdict) in all.verdicts.unwrap_or_default() {
        if let Verdict::Failed { reason, .. } = &mut verdict {
            if let Cow::Owned(clean) = secrets::scrub(reason, secrets) {
                *reason = clean;
            }
        }
        if let Some(slot) = each.get_mut(at) {
            *slot = Some(verdict);
        }
    }
    let status = match &all.failure {
        Some(e) => e.status,
        None if all.n_error > 0 => Status::KUZZLE_PARTIAL,
        None => Status::KUZZLE_OK,
    };
    Outcome {
        status,
        json: String::new(),
        written: all.n_success,
        failed: all.n_error,
        in_doubt: all.n_in_doubt,
        verdicts: each,
    }
}

/// What every document of a call whose results were lost to a bug gets.
fn lost_results() -> Error {
    let mut e = Error::new(
        Status::KUZZLE_ERR_INTERNAL,
        "libkuzzle bug (please report it): a request's results were lost; every document \
         is reported in doubt",
    );
    e.in_doubt = true;
    e
}

/// A bug broke the merge (a worker panicked, or a request's results never
/// came): what was merged cannot be trusted, so every document is reported
/// in doubt, each once, rather than a result with some left out.
fn unaccounted(documents: &str, docs: &Index, n_door: usize, secrets: &[String]) -> Outcome {
    let mut all = match door::check_all(documents) {
        Ok((_, door)) if door.n_error == n_door => door,
        _ => Fragment::default(),
    };
    all.successes.push_str("{\"successes\":[");
    let every: Vec<Doc> = (0..docs.len()).map(|i| docs.doc(i)).collect();
    all.fail(&every, lost_results());
    finish(all, secrets)
}
