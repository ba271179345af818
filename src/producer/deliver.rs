//! The delivery thread: waits for `lingerMs` companions (or a full batch, a
//! flush, a close), sends a batch through the mWrite engine, turns each
//! document's result into its final report, and puts back what could not
//! be delivered yet (Kuzzle out of reach) to try again after a pause.

use super::store::Item;
use super::{Report, Shared, State};
use crate::config::WriteOptions;
use crate::spool::{Outcome, ReportedDoc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The pause after a batch that got nothing through, doubled up to the
/// longest: Kuzzle is out of reach, and every retry costs the link.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

pub(super) fn run(shared: &Shared) {
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver_all(shared)));
    let mut state = shared.lock();
    // A bug: nothing delivers any more; flush and close must not wait.
    state.thread_gone = ended.is_err();
    state.done = true;
    drop(state);
    shared.progress.notify_all();
}

fn deliver_all(shared: &Shared) {
    let mut pause = Duration::ZERO;
    while let Some(batch) = next_batch(shared, pause) {
        let first = batch.first().map_or(0, |i| i.seq);
        let last = batch.last().map_or(0, |i| i.seq);
        let (finals, retry) = deliver(shared, batch);
        {
            let mut state = shared.lock();
            if state.abandoned {
                // Memory mode, closed: close reported these already.
                break;
            }
            state.reporting = true;
        }
        let delivered_some = finals.iter().any(|r| r.ok);
        let retried = retry.len();
        let retried_min = retry.first().map(|i| i.seq);
        let retried_bytes: usize = retry.iter().map(Item::size).sum();
        if !retry.is_empty() {
            shared.store.put_back(retry);
            shared
                .counters
                .retried_batches
                .fetch_add(1, Ordering::Relaxed);
        }
        finish(shared, finals);
        pause = match (retried, delivered_some) {
            (0, _) | (_, true) => Duration::ZERO,
            _ => (pause * 2).clamp(FIRST_PAUSE, LONGEST_PAUSE),
        };
        let mut state = shared.lock();
        state.in_flight = 0;
        state.reporting = false;
        state.in_flight_meta.clear();
        state.waiting += retried;
        state.waiting_bytes += retried_bytes;
        if retried > 0 {
            state.oldest.get_or_insert_with(Instant::now);
        }
        state.read_upto = state.read_upto.max(last + 1);
        state.low_watermark = watermark(shared, &state, retried_min).max(first);
        drop(state);
        shared.progress.notify_all();
    }
}

/// Every seq below it has its final report: the lowest one put back, else
/// the lowest waiting in memory; with a spool, which hands out in seq
/// order, the first seq not read yet, or the next seq when the spool holds
/// nothing without an outcome.
fn watermark(shared: &Shared, state: &State, retried: Option<u64>) -> u64 {
    if let Some(seq) = retried {
        return seq;
    }
    if let Some(seq) = shared.store.front_seq() {
        return seq;
    }
    match shared.store.spool() {
        Some(spool) if state.waiting == 0 && state.in_flight == 0 => {
            let stats = spool.stats();
            match stats.pending {
                0 => stats.next_seq,
                _ => state.read_upto,
            }
        }
        Some(_) => state.read_upto,
        None => shared.next_seq.load(Ordering::Relaxed),
    }
}

/// Waits `pause`, unless a close comes first.
fn pause_for<'s>(
    shared: &'s Shared,
    mut state: std::sync::MutexGuard<'s, State>,
    pause: Duration,
) -> std::sync::MutexGuard<'s, State> {
    let until = Instant::now() + pause;
    while !state.closing {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        state = shared
            .wake
            .wait_timeout(state, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    state
}

/// The next batch once one is due; None when closing.
fn next_batch(shared: &Shared, pause: Duration) -> Option<Vec<Item>> {
    let c = &shared.config;
    // Nothing got through: wait (a close ends the wait).
    let mut state = pause_for(shared, shared.lock(), pause);
    loop {
        if state.closing {
            return None;
        }
        // With a spool, the backlog may be far larger than memory: its
        // reports wait for polls, at most `maxQueueDocuments` of them.
        if shared.store.spool().is_some() && shared.reports.waiting() >= c.max_queue_documents {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        if state.waiting == 0 {
            state.flush = false;
            state.oldest = None;
            state.low_watermark = watermark(shared, &state, None).max(state.low_watermark);
            shared.progress.notify_all();
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let waited = state.oldest.map_or(Duration::MAX, |t| t.elapsed());
        if state.flush || state.waiting >= c.batch_documents || waited >= c.linger {
            break;
        }
        let left = c.linger - waited;
        state = shared
            .wake
            .wait_timeout(state, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    drop(state);
    let items = match shared.store.take(c.batch_documents, c.max_queue_bytes) {
        Ok(items) => items,
        Err(_) => {
            // A spool that cannot be read now (an I/O error): the documents
            // stay counted; try again after a pause (a close ends it).
            drop(pause_for(shared, shared.lock(), FIRST_PAUSE));
            return Some(Vec::new());
        }
    };
    let bytes: usize = items.iter().map(Item::size).sum();
    let mut state = shared.lock();
    if items.is_empty() {
        // Counted but not there (a spool's damaged records): nothing waits.
        state.waiting = 0;
        state.waiting_bytes = 0;
    } else {
        state.waiting -= items.len().min(state.waiting);
        state.waiting_bytes -= bytes.min(state.waiting_bytes);
    }
    state.in_flight = items.len();
    state.in_flight_meta = items
        .iter()
        .map(|i| {
            (
                i.seq,
                i.index.clone(),
                i.collection.clone(),
                i.id.clone(),
                i.size(),
            )
        })
        .collect();
    state.oldest = (state.waiting > 0).then(Instant::now);
    if let Some(first) = items.first() {
        state.low_watermark = state.low_watermark.min(first.seq).max(1);
    }
    Some(items)
}

/// Sends a batch; the final reports, and the documents to try again.
fn deliver(shared: &Shared, batch: Vec<Item>) -> (Vec<Report>, Vec<Item>) {
    let mut finals = Vec::with_capacity(batch.len());
    let mut retry: Vec<Item> = Vec::new();
    // An `_id` put back is not sent again in this batch: a later version of
    // it stored now would be overwritten by the earlier one's resend.
    let mut held: HashSet<(String, String, String)> = HashSet::new();
    for group in requests(batch) {
        if shared.lock().abandoned {
            // Memory mode, closed: close reported these already.
            retry.extend(group);
            continue;
        }
        let key = |i: &Item| (i.index.clone(), i.collection.clone(), i.id.clone());
        let (wait, send): (Vec<Item>, Vec<Item>) =
            group.into_iter().partition(|i| held.contains(&key(i)));
        retry.extend(wait);
        if send.is_empty() {
            continue;
        }
        let (f, r) = deliver_group(shared, send);
        held.extend(r.iter().map(key));
        finals.extend(f);
        retry.extend(r);
    }
    retry.sort_by_key(|i| i.seq);
    (finals, retry)
}

/// The batch cut into requests of one index and collection each, in seq
/// order, with each `_id` at most once per request (two versions of one
/// document in one request could be stored in either order).
fn requests(batch: Vec<Item>) -> Vec<Vec<Item>> {
    let mut groups: Vec<Vec<Item>> = Vec::new();
    let mut ids: Vec<HashSet<String>> = Vec::new();
    for item in batch {
        let k = groups
            .iter()
            .position(|g| g[0].index == item.index && g[0].collection == item.collection);
        match k {
            Some(k) if !ids[k].contains(&item.id) => {
                ids[k].insert(item.id.clone());
                groups[k].push(item);
            }
            _ => {
                ids.push(HashSet::from([item.id.clone()]));
                groups.push(vec![item]);
            }
        }
    }
    groups
}

fn deliver_group(shared: &Shared, group: Vec<Item>) -> (Vec<Report>, Vec<Item>) {
    let c = &shared.config;
    let mut json =
        String::with_capacity(group.iter().map(|i| i.id.len() + i.body.len() + 20).sum());
    json.push('[');
    for (k, item) in group.iter().enumerate() {
        if k > 0 {
            json.push(',');
        }
        json.push_str("{\"_id\":");
        json.push_str(&item.id);
        json.push_str(",\"body\":");
        json.push_str(&item.body);
        json.push('}');
    }
    json.push(']');
    let options = WriteOptions {
        wait_for_refresh: c.wait_for_refresh,
        notify: c.notify,
        strict: false,
        source: false,
    };
    let (index, collection) = (group[0].index.clone(), group[0].collection.clone());
    let outcome = shared
        .client
        .mwrite_once(&index, &collection, &json, &options);
    let json = match outcome {
        Ok(o) => o.json,
        // The call refused whole (an index name Kuzzle cannot take...):
        // every document's final failure.
        Err(e) => {
            let reports = group
                .into_iter()
                .map(|item| failure(item, e.http, &e.message, e.in_doubt))
                .collect();
            return (reports, Vec::new());
        }
    };
    let verdicts = match serde_json::from_str::<Written>(&json) {
        Ok(written) => verdicts(&group, written),
        // Cannot happen (the engine writes it): all sent again.
        Err(_) => (0..group.len()).map(|_| None).collect(),
    };
    let mut finals = Vec::with_capacity(group.len());
    let mut retry = Vec::new();
    for (item, verdict) in group.into_iter().zip(verdicts) {
        match verdict {
            Some(Verdict::Stored(version, created)) => finals.push(Report {
                held: item.size(),
                seq: item.seq,
                index: item.index,
                collection: item.collection,
                id: item.id,
                ok: true,
                status: 200,
                version,
                created,
                reason: None,
                in_doubt: false,
                redelivered: false,
            }),
            Some(Verdict::Failed(status, reason, in_doubt)) => {
                // Out of reach, refused for now or in doubt: the same
                // document, same id, goes again later; with a spool it
                // waits as long as the disk holds it. So do refusals of
                // the whole request that an operator mends (credentials,
                // rights, a missing index): a backlog is not failed for a
                // rotated password.
                let again =
                    in_doubt || matches!(status, 0 | 401 | 403 | 404 | 412 | 429 | 502..=504);
                let expired = shared.store.spool().is_none()
                    && item.accepted.elapsed() >= shared.config.delivery_timeout;
                let mut item = item;
                item.sent_in_doubt |= in_doubt;
                if again && !expired {
                    retry.push(item);
                } else {
                    let in_doubt = item.sent_in_doubt;
                    finals.push(failure(item, status, &reason, in_doubt));
                }
            }
            // Not in the result (cannot happen: every document is): sent
            // again, it is harmless with its id.
            None => retry.push(item),
        }
    }
    (finals, retry)
}

/// The engine's result, with `source: false`: only what a report needs.
#[derive(Deserialize)]
struct Written<'a> {
    #[serde(borrow)]
    successes: Vec<Stored<'a>>,
    #[serde(borrow)]
    errors: Vec<Refused<'a>>,
}

#[derive(Deserialize)]
struct Stored<'a> {
    #[serde(borrow, rename = "_id")]
    id: &'a RawValue,
    #[serde(default, rename = "_version")]
    version: Option<u64>,
    #[serde(default)]
    created: Option<bool>,
}

#[derive(Deserialize)]
struct Refused<'a> {
    #[serde(borrow)]
    document: Named<'a>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, rename = "inDoubt")]
    in_doubt: Option<bool>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default, rename = "_id")]
    id: Option<&'a RawValue>,
}

/// Whether two `_id` literals name the same id.
fn same_id(a: &str, b: &str) -> bool {
    a == b
        || ((a.contains('\\') || b.contains('\\'))
            && serde_json::from_str::<String>(a).ok() == serde_json::from_str::<String>(b).ok())
}

/// Each document's verdict: successes come in the order sent (a cursor),
/// errors by their `_id` (each `_id` is once in a request).
fn verdicts(group: &[Item], written: Written) -> Vec<Option<Verdict>> {
    let mut errors: HashMap<String, Refused> = written
        .errors
        .into_iter()
        .filter_map(|e| {
            let id = serde_json::from_str::<String>(e.document.id?.get()).ok()?;
            Some((id, e))
        })
        .collect();
    let mut successes = written.successes.into_iter().peekable();
    group
        .iter()
        .map(|item| {
            if let Some(s) = successes.next_if(|s| same_id(s.id.get(), &item.id)) {
                return Some(Verdict::Stored(s.version, s.created));
            }
            let id = serde_json::from_str::<String>(&item.id).ok()?;
            let e = errors.remove(&id)?;
            Some(Verdict::Failed(
                e.status.unwrap_or(0),
                e.reason.unwrap_or_default(),
                e.in_doubt.unwrap_or(true),
            ))
        })
        .collect()
}

enum Verdict {
    Stored(Option<u64>, Option<bool>),
    Failed(u16, String, bool),
}

pub(super) fn failure(item: Item, status: u16, reason: &str, in_doubt: bool) -> Report {
    Report {
        held: item.size(),
        seq: item.seq,
        index: item.index,
        collection: item.collection,
        id: item.id,
        ok: false,
        status,
        version: None,
        created: None,
        reason: Some(reason.to_string()),
        in_doubt,
        redelivered: false,
    }
}

/// Final reports: stored first (with a spool, so that a crash from here on
/// hands them out again rather than sending again), then counted and
/// handed to `poll`.
pub(super) fn finish(shared: &Shared, reports: Vec<Report>) {
    if reports.is_empty() {
        return;
    }
    let outcomes: Vec<Outcome> = reports.iter().map(outcome_of).collect();
    // On failure the reports still go out: after a crash these documents
    // would be sent again (harmless: same ids) and reported once more.
    let _ = shared.store.outcomes(&outcomes);
    let ok = reports.iter().filter(|r| r.ok).count() as u64;
    if ok < reports.len() as u64 {
        let mut state = shared.lock();
        state
            .failed
            .extend(reports.iter().filter(|r| !r.ok).map(|r| r.seq));
    }
    shared.counters.delivered.fetch_add(ok, Ordering::Relaxed);
    shared
        .counters
        .failed
        .fetch_add(reports.len() as u64 - ok, Ordering::Relaxed);
    shared.reports.push(reports);
}

fn outcome_of(r: &Report) -> Outcome {
    Outcome {
        seq: r.seq,
        ok: r.ok,
        status: r.status,
        version: r.version,
        created: r.created,
        reason: r.reason.clone(),
        in_doubt: r.in_doubt,
    }
}

/// A report from the spool's memory of it (after a reopen).
pub(super) fn report_of(doc: &ReportedDoc, o: &Outcome, redelivered: bool) -> Report {
    Report {
        held: 0,
        seq: doc.seq,
        index: doc.index.clone(),
        collection: doc.collection.clone(),
        id: doc.id.clone(),
        ok: o.ok,
        status: o.status,
        version: o.version,
        created: o.created,
        reason: o.reason.clone(),
        in_doubt: o.in_doubt,
        redelivered,
    }
}
