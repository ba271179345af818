//! The delivery threads: wait for `lingerMs` companions (or a full batch,
//! a flush, a close), send a batch through the mWrite engine, turn each
//! document's result into its final report, and put back what could not
//! be delivered yet (Kuzzle out of reach) to try again after a pause.
//!
//! `LANES` threads, each with a batch of its own: while one batch's last
//! requests are out, the next one is already being sent, so a slow link is
//! not left idle for a round trip or more between batches. `Order` keeps
//! the versions of one document in seq order across them.

use super::store::Item;
use super::{Flight, Report, Shared, State};
use crate::config::WriteOptions;
use crate::mwrite::Verdict;
use crate::spool::{Outcome, ReportedDoc, StoredDoc, Target};
use rustc_hash::FxHashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Delivery threads, each with at most one batch in flight.
pub(super) const LANES: usize = 2;

/// The pause after a batch that got nothing through, doubled up to the
/// longest: Kuzzle is out of reach, and every retry costs the link.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

pub(super) fn run(shared: &Shared) {
    let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver_all(shared)));
    let mut state = shared.lock();
    // A bug: this thread's batch is lost; flush and close must not wait.
    state.thread_gone |= ended.is_err();
    state.lanes -= 1;
    state.done = state.lanes == 0;
    drop(state);
    shared.progress.notify_all();
    shared.wake.notify_all();
}

fn deliver_all(shared: &Shared) {
    let mut after_held = None;
    while let Some((flight, batch)) = next_batch(shared, after_held.take()) {
        let fates = deliver(shared, &batch);
        {
            let mut state = shared.lock();
            if state.abandoned {
                // Memory mode, closed: close reported these already.
                break;
            }
            state.reporting += 1;
            // Its lowest seq stays in `flying` (for the watermark) until it
            // is settled; its documents are no longer close's to abandon.
            if let Some(f) = state.flying.iter_mut().find(|f| f.id == flight) {
                f.batch = None;
            }
        }
        let n = batch.len();
        // Close shares the batch only when it abandons it (above).
        let items = Arc::try_unwrap(batch).unwrap_or_else(|kept| (*kept).clone());
        let (finals, retry, held) = settle(items, fates);
        let delivered_some = finals.iter().any(|r| r.ok);
        let failed_again = !retry.is_empty();
        let only_held = !held.is_empty() && finals.is_empty() && retry.is_empty();
        let put_back = retry.len() + held.len();
        let put_back_bytes: usize = retry.iter().chain(&held).map(Item::size).sum();
        if failed_again {
            shared
                .counters
                .retried_batches
                .fetch_add(1, Ordering::Relaxed);
        }
        if put_back > 0 {
            let mut again = retry;
            again.extend(held);
            shared.store.put_back(again);
        }
        finish(shared, finals);
        let mut state = shared.lock();
        // A batch all held back says nothing of Kuzzle: it leaves the
        // pause another batch set as it is.
        if failed_again && !delivered_some {
            state.pause = (state.pause * 2).clamp(FIRST_PAUSE, LONGEST_PAUSE);
            state.resume_at = Some(Instant::now() + state.pause);
        } else if !only_held {
            state.pause = Duration::ZERO;
            state.resume_at = None;
        }
        state.in_flight -= n.min(state.in_flight);
        state.reporting -= 1;
        state.waiting += put_back;
        state.waiting_bytes += put_back_bytes;
        if put_back > 0 {
            state.oldest.get_or_insert_with(Instant::now);
        }
        state.flying.retain(|f| f.id != flight);
        state.batches_done += 1;
        // All held back for earlier versions in another batch in flight:
        // taken again once a batch has ended, not at once.
        if only_held && !state.flying.is_empty() {
            after_held = Some(state.batches_done);
        }
        state.low_watermark = watermark(shared, &state).max(state.low_watermark);
        drop(state);
        shared.progress.notify_all();
        shared.wake.notify_all();
    }
}

/// The documents of a batch turned into their final reports, in seq
/// order; those to try again; those held back (an earlier version had no
/// final outcome yet).
fn settle(items: Vec<Item>, fates: Vec<Fate>) -> (Vec<Report>, Vec<Item>, Vec<Item>) {
    let mut finals = Vec::with_capacity(items.len());
    let mut retry = Vec::new();
    let mut held = Vec::new();
    for (mut item, fate) in items.into_iter().zip(fates) {
        match fate {
            Fate::Final(Verdict::Stored { version, created }) => finals.push(Report {
                version,
                created,
                ..report_for(item, true, 200)
            }),
            Fate::Final(Verdict::Failed {
                status,
                reason,
                in_doubt,
            }) => finals.push(failure(item, status, reason, in_doubt)),
            Fate::Again { in_doubt } => {
                item.sent_in_doubt |= in_doubt;
                retry.push(item);
            }
            Fate::Held => held.push(item),
        }
    }
    (finals, retry, held)
}

/// Every seq below it has its final report: the lowest seq of a batch in
/// flight or of a document waiting (put back, or not taken yet), else the
/// next seq.
fn watermark(shared: &Shared, state: &State) -> u64 {
    let stored = match shared.store.spool() {
        Some(spool) => spool.lowest_unsettled_untaken(),
        None => shared
            .store
            .front_seq()
            .unwrap_or_else(|| shared.next_seq.load(Ordering::Relaxed)),
    };
    state.flying.iter().map(|f| f.first).fold(stored, u64::min)
}

/// Waits until `until`, unless a close comes first.
fn pause_until<'s>(
    shared: &'s Shared,
    mut state: std::sync::MutexGuard<'s, State>,
    until: Instant,
) -> std::sync::MutexGuard<'s, State> {
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

/// The next batch once one is due, with its flight's id; None when
/// closing. `after_held`: this thread's last batch was all held back: wait
/// for the count of batches ended to pass it first.
fn next_batch(shared: &Shared, after_held: Option<u64>) -> Option<(u64, Arc<Vec<Item>>)> {
    let c = &shared.config;
    let mut state = shared.lock();
    loop {
        if state.closing {
            return None;
        }
        // Nothing got through: every thread waits (a close ends the wait).
        if let Some(until) = state.resume_at.filter(|&t| t > Instant::now()) {
            state = pause_until(shared, state, until);
            continue;
        }
        let held_back = after_held.is_some_and(|n| n == state.batches_done);
        // One thread takes at a time: `waiting` counts what is not taken.
        if state.taking || (held_back && !state.flying.is_empty()) {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        // With a spool, the backlog may be far larger than memory: its
        // reports wait for polls, at most `maxQueueDocuments` of them.
        if shared.store.spool().is_some() && shared.reports.waiting() >= c.max_queue_documents {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        if state.waiting == 0 {
            if state.flying.is_empty() {
                state.flush = false;
                state.oldest = None;
            }
            state.low_watermark = watermark(shared, &state).max(state.low_watermark);
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
    // In flight from here, before the store hands anything out: what it
    // takes is at or above the lowest seq waiting now, and the watermark
    // must not pass it meanwhile.
    let flight = state.next_flight;
    state.next_flight += 1;
    let first = watermark(shared, &state);
    state.flying.push(Flight {
        id: flight,
        first,
        batch: None,
    });
    state.taking = true;
    drop(state);
    let taken = shared.store.take(c.batch_documents, c.max_queue_bytes);
    let mut state = shared.lock();
    state.taking = false;
    shared.wake.notify_all();
    // A close past its deadline waits for this.
    shared.progress.notify_all();
    let items = match taken {
        Ok(items) => items,
        Err(_) => {
            // A spool that cannot be read now (an I/O error): the documents
            // stay counted; try again after a pause (a close ends it).
            drop(pause_until(shared, state, Instant::now() + FIRST_PAUSE));
            return Some((flight, Arc::default()));
        }
    };
    shared.order.enter(&items);
    let bytes: usize = items.iter().map(Item::size).sum();
    if items.is_empty() {
        // Counted but not there (a spool's damaged records): nothing waits.
        state.waiting = 0;
        state.waiting_bytes = 0;
    } else {
        state.waiting -= items.len().min(state.waiting);
        state.waiting_bytes -= bytes.min(state.waiting_bytes);
    }
    state.in_flight += items.len();
    state.oldest = (state.waiting > 0).then(Instant::now);
    let items = Arc::new(items);
    if let Some(f) = state.flying.iter_mut().find(|f| f.id == flight) {
        f.first = items
            .iter()
            .map(Item::seq)
            .fold(u64::MAX, u64::min)
            .max(first);
        // For a close that cannot wait for it (memory mode: with a spool
        // the documents stay on disk).
        f.batch = Some(items.clone());
    }
    Some((flight, items))
}

/// What became of one document of a batch.
enum Fate {
    /// Its final outcome.
    Final(Verdict),
    /// To send again later (this attempt in doubt or not).
    Again { in_doubt: bool },
    /// Not sent: an earlier version of it had no final outcome yet.
    Held,
}

/// Sends a batch: each document's fate, by position.
fn deliver(shared: &Shared, batch: &[Item]) -> Vec<Fate> {
    let mut fates: Vec<Fate> = (0..batch.len()).map(|_| Fate::Held).collect();
    for mut group in requests(batch) {
        if shared.lock().abandoned {
            // Memory mode, closed: close reported these already.
            continue;
        }
        // A document with an earlier version still without its outcome
        // (put back from this batch, in another batch in flight, or
        // waiting to be sent again) stays: sent now, that version's resend
        // could overwrite it.
        shared.order.keep_first_versions(batch, &mut group);
        if group.is_empty() {
            continue;
        }
        deliver_group(shared, batch, &group, &mut fates);
        shared.order.leave(
            group
                .iter()
                .filter(|&&k| matches!(fates[k], Fate::Final(_)))
                .map(|&k| &batch[k]),
        );
    }
    fates
}

/// The batch cut into requests of one index and collection each (the
/// positions of their documents), in seq order, with each `_id` at most
/// once per request (two versions of one document in one request could be
/// stored in either order).
fn requests(batch: &[Item]) -> Vec<Vec<usize>> {
    type IdSet<'a> = FxHashSet<&'a str>;
    let mut groups: Vec<(Vec<usize>, IdSet)> = Vec::new();
    for (k, item) in batch.iter().enumerate() {
        let target = &item.doc.target;
        let same = |g: &(Vec<usize>, IdSet)| {
            let t = &batch[g.0[0]].doc.target;
            Arc::ptr_eq(t, target) || t == target
        };
        match groups.iter().rposition(same) {
            Some(g) if !groups[g].1.contains(item.id()) => {
                groups[g].1.insert(item.id());
                groups[g].0.push(k);
            }
            _ => {
                let mut ids = IdSet::default();
                ids.reserve(batch.len() - k);
                ids.insert(item.id());
                groups.push((vec![k], ids));
            }
        }
    }
    groups.into_iter().map(|(g, _)| g).collect()
}

/// Sends the documents of `batch` at `group` (one target) in one mWrite,
/// and writes their fates.
fn deliver_group(shared: &Shared, batch: &[Item], group: &[usize], fates: &mut [Fate]) {
    let c = &shared.config;
    let options = WriteOptions {
        wait_for_refresh: c.wait_for_refresh,
        notify: c.notify,
        strict: false,
        source: false,
    };
    let docs: Vec<(&str, &str)> = group
        .iter()
        .map(|&k| (batch[k].id(), batch[k].doc.body()))
        .collect();
    let target = &batch[group[0]].doc.target;
    let outcome = shared
        .client
        .mwrite_checked(&target.index, &target.collection, &docs, &options);
    let verdicts = match outcome {
        Ok(o) => o.verdicts,
        // The call refused whole (an index name Kuzzle cannot take...):
        // every document's final failure.
        Err(e) => {
            for &k in group {
                fates[k] = Fate::Final(Verdict::Failed {
                    status: e.http,
                    reason: e.message.clone(),
                    in_doubt: e.in_doubt || batch[k].sent_in_doubt,
                });
            }
            return;
        }
    };
    let mut verdicts = verdicts.into_iter();
    for &k in group {
        let item = &batch[k];
        fates[k] = match verdicts.next().flatten() {
            Some(stored @ Verdict::Stored { .. }) => Fate::Final(stored),
            Some(Verdict::Failed {
                status,
                reason,
                in_doubt,
            }) => {
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
                match again && !expired {
                    true => Fate::Again { in_doubt },
                    false => Fate::Final(Verdict::Failed {
                        status,
                        reason,
                        in_doubt: in_doubt || item.sent_in_doubt,
                    }),
                }
            }
            // Not in the result (cannot happen: every document is): sent
            // again, it is harmless with its id.
            None => Fate::Again { in_doubt: false },
        };
    }
}

/// A report about `item`, its outcome to fill in: no version, no reason.
fn report_for(item: Item, ok: bool, status: u16) -> Report {
    let held = item.size();
    let StoredDoc {
        seq,
        target,
        text,
        id_len,
    } = item.doc;
    // The `_id` alone, in the text's allocation (shrunk in place).
    let mut id = String::from(text);
    id.truncate(id_len as usize);
    Report {
        held,
        seq,
        target,
        id: id.into_boxed_str(),
        ok,
        status,
        version: None,
        created: None,
        reason: None,
        in_doubt: false,
        redelivered: false,
    }
}

pub(super) fn failure(item: Item, status: u16, reason: String, in_doubt: bool) -> Report {
    Report {
        reason: Some(reason),
        in_doubt,
        ..report_for(item, false, status)
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
pub(super) fn report_of(doc: ReportedDoc, o: Outcome, redelivered: bool) -> Report {
    Report {
        held: 0,
        seq: doc.seq,
        target: Arc::new(Target {
            index: doc.index,
            collection: doc.collection,
        }),
        id: doc.id.into_boxed_str(),
        ok: o.ok,
        status: o.status,
        version: o.version,
        created: o.created,
        reason: o.reason,
        in_doubt: o.in_doubt,
        redelivered,
    }
}
