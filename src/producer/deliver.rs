//! The delivery thread: waits for `lingerMs` companions (or a full batch, a
//! flush, a close), sends a batch through the mWrite engine, turns each
//! document's result into its final report, and puts back what could not
//! be delivered yet (Kuzzle out of reach) to try again after a pause.

use super::store::Item;
use super::{Report, Shared, State};
use crate::config::WriteOptions;
use crate::mwrite::Verdict;
use crate::spool::{Outcome, ReportedDoc, StoredDoc, Target};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
        let first = batch.first().map_or(0, Item::seq);
        let last = batch.last().map_or(0, Item::seq);
        let fates = deliver(shared, &batch);
        let batch = {
            let mut state = shared.lock();
            if state.abandoned {
                // Memory mode, closed: close reported these already.
                break;
            }
            state.reporting = true;
            state.in_flight_batch = None;
            batch
        };
        // Close shares the batch only when it abandons it (above).
        let items = Arc::try_unwrap(batch).unwrap_or_else(|kept| (*kept).clone());
        let (finals, retry) = settle(items, fates);
        let delivered_some = finals.iter().any(|r| r.ok);
        let retried = retry.len();
        let retried_min = retry.first().map(Item::seq);
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

/// The documents of a batch turned into their final reports, in seq
/// order, and those to try again.
fn settle(items: Vec<Item>, fates: Vec<Fate>) -> (Vec<Report>, Vec<Item>) {
    let mut finals = Vec::with_capacity(items.len());
    let mut retry = Vec::new();
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
        }
    }
    (finals, retry)
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
fn next_batch(shared: &Shared, pause: Duration) -> Option<Arc<Vec<Item>>> {
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
            return Some(Arc::default());
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
    state.oldest = (state.waiting > 0).then(Instant::now);
    if let Some(first) = items.first() {
        state.low_watermark = state.low_watermark.min(first.seq()).max(1);
    }
    let items = Arc::new(items);
    // For a close that cannot wait for it (memory mode: with a spool the
    // documents stay on disk).
    if shared.store.spool().is_none() {
        state.in_flight_batch = Some(items.clone());
    }
    Some(items)
}

/// What became of one document of a batch.
enum Fate {
    /// Its final outcome.
    Final(Verdict),
    /// To send again later (this attempt in doubt or not).
    Again { in_doubt: bool },
}

/// Sends a batch: each document's fate, by position.
fn deliver(shared: &Shared, batch: &[Item]) -> Vec<Fate> {
    fn key(i: &Item) -> (&str, &str, &str) {
        (i.doc.index(), i.doc.collection(), i.id())
    }
    let mut fates: Vec<Fate> = (0..batch.len())
        .map(|_| Fate::Again { in_doubt: false })
        .collect();
    // An `_id` put back is not sent again in this batch: a later version of
    // it stored now would be overwritten by the earlier one's resend.
    let mut held: HashSet<(&str, &str, &str)> = HashSet::new();
    for mut group in requests(batch) {
        if shared.lock().abandoned {
            // Memory mode, closed: close reported these already.
            continue;
        }
        if !held.is_empty() {
            group.retain(|&k| !held.contains(&key(&batch[k])));
        }
        if group.is_empty() {
            continue;
        }
        deliver_group(shared, batch, &group, &mut fates);
        held.extend(
            group
                .iter()
                .filter(|&&k| matches!(fates[k], Fate::Again { .. }))
                .map(|&k| key(&batch[k])),
        );
    }
    fates
}

/// Hashes ids for the duplicate check of `requests`: they are short and
/// the application's own, where SipHash's resistance buys nothing.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The batch cut into requests of one index and collection each (the
/// positions of their documents), in seq order, with each `_id` at most
/// once per request (two versions of one document in one request could be
/// stored in either order).
fn requests(batch: &[Item]) -> Vec<Vec<usize>> {
    // Local: cbindgen, which reads this crate, cannot read such an alias.
    type IdSet<'a> = HashSet<&'a str, std::hash::BuildHasherDefault<IdHasher>>;
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
