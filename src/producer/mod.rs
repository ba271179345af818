//! The gateway producer: documents accepted one by one from any thread,
//! kept in memory or in the crash-safe spool, sent in batches by two
//! delivery threads through the mWrite engine, and one final report per
//! document handed to the application by `poll`.
//!
//! - `store`: where accepted documents wait (memory or spool).
//! - `deliver`: the delivery threads: batches, the engine, outcomes.
//! - `order`: one document's versions sent in seq order across batches.
//! - `reports`: the reports waiting for `poll`, and their descriptor.

mod deliver;
mod order;
mod reports;
mod store;

pub(crate) use reports::{json_array, Report};

use crate::client::Client;
use crate::config::{ProducerConfig, SpoolSync, WhenFull};
use crate::error::{Error, Result, Status};
use crate::mwrite::{check_document, check_documents};
use crate::spool::{Spool, SpoolConfig, SpoolError, SyncMode};
use order::Order;
use reports::Reports;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{Item, Store};

/// What the producer's threads share.
pub(crate) struct Shared {
    client: Arc<Client>,
    config: ProducerConfig,
    store: Store,
    state: Mutex<State>,
    /// The delivery threads wait on it: documents, a flush, a close, a
    /// batch ended.
    wake: Condvar,
    /// Producers waiting for room, flushes waiting for reports.
    progress: Condvar,
    reports: Reports,
    order: Order,
    /// Polls one at a time.
    polling: Mutex<()>,
    /// Seqs of memory mode (a spool numbers its own).
    next_seq: AtomicU64,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    retried_batches: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Accepted documents not yet taken by a delivery thread.
    waiting: usize,
    waiting_bytes: usize,
    /// Taken, in batches being delivered.
    in_flight: usize,
    /// The batches being delivered, oldest first.
    flying: Vec<Flight>,
    next_flight: u64,
    /// Batches delivered (settled) so far.
    batches_done: u64,
    /// A delivery thread is taking a batch from the store.
    taking: bool,
    /// After batches that got nothing through: the pause, and when
    /// delivery may try again.
    pause: Duration,
    resume_at: Option<Instant>,
    /// Accepted, final report not yet polled: what the queue bound counts.
    outstanding: usize,
    outstanding_bytes: usize,
    /// When the oldest waiting document arrived (for `lingerMs`).
    oldest: Option<Instant>,
    /// Raised by flush, until nothing waits.
    flush: bool,
    closing: bool,
    /// Delivery threads running, and whether all have ended.
    lanes: usize,
    done: bool,
    /// One ended by a panic (a bug): its batch will never be reported.
    thread_gone: bool,
    /// Every seq below this has its final report (or was never ours).
    low_watermark: u64,
    /// Seqs of the reports handed out by the last poll.
    handed: Vec<u64>,
    /// Delivery threads turning a batch's results into reports.
    reporting: usize,
    /// Memory mode: close reported the batches in flight; their outcomes
    /// are dropped.
    abandoned: bool,
    /// Seqs of documents whose final report is a failure, since the last
    /// flush (which says `KUZZLE_PARTIAL` when one of its own is there).
    failed: std::collections::BTreeSet<u64>,
}

/// A batch being delivered.
struct Flight {
    id: u64,
    /// Its lowest seq (at most that, while it is being taken).
    first: u64,
    /// Its documents, until its results come back: for a close that cannot
    /// wait for them (memory mode).
    batch: Option<Arc<Vec<Item>>>,
}

pub(crate) struct Producer {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Producer {
    pub fn open(client: Arc<Client>, config: ProducerConfig) -> Result<Producer> {
        let reports = Reports::new()
            .map_err(|e| Error::new(Status::KUZZLE_ERR_INTERNAL, format!("no socket pair: {e}")))?;
        let mut state = State {
            low_watermark: 1,
            lanes: deliver::LANES,
            ..State::default()
        };
        let store = match &config.spool_dir {
            None => Store::Memory(Mutex::new(Default::default())),
            Some(dir) => {
                let (spool, redeliveries) = Spool::open(SpoolConfig {
                    dir: dir.into(),
                    max_bytes: config.spool_max_bytes,
                    segment_bytes: config.spool_segment_bytes,
                    sync: match config.spool_sync {
                        SpoolSync::Always => SyncMode::Always,
                        SpoolSync::Interval(d) => SyncMode::Interval(d),
                        SpoolSync::None => SyncMode::None,
                    },
                })
                .map_err(spool_error)?;
                let stats = spool.stats();
                state.waiting = stats.pending as usize;
                state.oldest = (stats.pending > 0).then(Instant::now);
                reports.push(
                    redeliveries
                        .into_iter()
                        .map(|r| deliver::report_of(r.doc, r.outcome, true))
                        .collect(),
                );
                Store::Spool(spool)
            }
        };
        let shared = Arc::new(Shared {
            client,
            config,
            store,
            state: Mutex::new(state),
            wake: Condvar::new(),
            progress: Condvar::new(),
            reports,
            order: Order::default(),
            polling: Mutex::new(()),
            next_seq: AtomicU64::new(1),
            counters: Counters::default(),
        });
        let mut producer = Producer {
            shared,
            threads: Vec::new(),
        };
        for _ in 0..deliver::LANES {
            let worker = producer.shared.clone();
            let started = std::thread::Builder::new()
                .name("kuzzle-producer".into())
                .spawn(move || deliver::run(&worker));
            match started {
                Ok(thread) => producer.threads.push(thread),
                Err(e) => {
                    // Those started stop at once (nothing accepted yet).
                    let mut state = producer.shared.lock();
                    state.lanes -= deliver::LANES - producer.threads.len();
                    drop(state);
                    producer.stop(Duration::ZERO, false);
                    producer.join();
                    return Err(Error::new(
                        Status::KUZZLE_ERR_INTERNAL,
                        format!("cannot start a delivery thread: {e}"),
                    ));
                }
            }
        }
        Ok(producer)
    }

    /// `kuzzle_produce` (`batch` false: one document) and
    /// `kuzzle_produce_batch`: the first seq and how many were accepted.
    pub fn produce(
        &self,
        index: &str,
        collection: &str,
        text: &str,
        batch: bool,
    ) -> Result<(u64, usize)> {
        if index.is_empty() || collection.is_empty() {
            return Err(Error::invalid("index and collection must not be empty"));
        }
        let shared = &*self.shared;
        // Ids given at acceptance, so that every resend (after a restart
        // too: they are spooled) carries the same one. Each document as
        // kept: its `_id` literal then its body, one allocation.
        let (mut one, mut many);
        let docs: &mut [(Box<str>, u32)] = match batch {
            false => {
                let (id, body) = check_document(text)?;
                let (prefix, first_id) = shared.client.next_ids(1);
                one = [kept(prefix, first_id, id, body)];
                &mut one
            }
            true => {
                let checked = check_documents(text, batch)?;
                if checked.is_empty() {
                    return Ok((0, 0));
                }
                let (prefix, first_id) = shared.client.next_ids(checked.len());
                many = checked
                    .iter()
                    .enumerate()
                    .map(|(k, (id, body))| kept(prefix, first_id + k as u64, id, body))
                    .collect::<Vec<_>>();
                &mut many
            }
        };
        // As `Item::size` counts them (released with their reports).
        let bytes: usize = docs
            .iter()
            .map(|(text, _)| index.len() + collection.len() + text.len() + 64)
            .sum();
        let n = docs.len();
        self.admit(n, bytes)?;
        let deadline = Instant::now() + shared.config.block_timeout;
        let first = loop {
            let appended = shared.store.append(index, collection, docs, |n| {
                shared.next_seq.fetch_add(n as u64, Ordering::Relaxed)
            });
            match appended {
                Ok(first) => break first,
                Err(SpoolError::Full) if shared.config.when_full == WhenFull::Block => {
                    if !self.wait_for_room_on_disk(deadline) {
                        self.release(n, bytes);
                        return Err(queue_full("the spool is full (spoolMaxBytes)"));
                    }
                }
                Err(SpoolError::Full) => {
                    self.release(n, bytes);
                    return Err(queue_full("the spool is full (spoolMaxBytes)"));
                }
                Err(e) => {
                    self.release(n, bytes);
                    return Err(spool_error(e));
                }
            }
        };
        let mut state = shared.lock();
        state.waiting += n;
        state.waiting_bytes += bytes;
        state.oldest.get_or_insert_with(Instant::now);
        // The delivery threads sleep until the first document (then
        // `lingerMs`) or a full batch: waking it for every one costs more
        // than the produce call itself.
        let batch = shared.config.batch_documents;
        let wake = state.waiting == n || (state.waiting >= batch && state.waiting - n < batch);
        drop(state);
        shared
            .counters
            .accepted
            .fetch_add(n as u64, Ordering::Relaxed);
        if wake {
            shared.wake.notify_all();
        }
        Ok((first, n))
    }

    /// Counts `n` documents against the queue's bounds, as `whenFull` says
    /// when there is no room.
    fn admit(&self, n: usize, bytes: usize) -> Result<()> {
        let shared = &*self.shared;
        let c = &shared.config;
        let deadline = Instant::now() + c.block_timeout;
        let mut state = shared.lock();
        loop {
            if state.closing {
                return Err(Error::invalid("the producer is closing"));
            }
            // With a spool, what waits is on disk (`spoolMaxBytes` bounds
            // it): memory holds the reports not polled, and a batch.
            let spooled = shared.store.spool().is_some();
            let fits = |s: &State| match spooled {
                true => shared.reports.waiting() + n <= c.max_queue_documents.max(n),
                false => {
                    s.outstanding == 0
                        || (s.outstanding + n <= c.max_queue_documents
                            && s.outstanding_bytes + bytes <= c.max_queue_bytes)
                }
            };
            if fits(&state) {
                state.outstanding += n;
                state.outstanding_bytes += bytes;
                return Ok(());
            }
            match c.when_full {
                WhenFull::Reject => return Err(queue_full("the queue is full")),
                WhenFull::DropOldest if shared.store.spool().is_none() => {
                    // The reports of dropped documents are small; they are
                    // bounded apart, so that a program that never polls
                    // still hears of the queue being full.
                    if shared.reports.waiting() >= c.max_queue_documents {
                        return Err(queue_full("the queue is full of reports not polled"));
                    }
                    let dropped = shared.store.drop_oldest(n.max(1));
                    if dropped.is_empty() {
                        return Err(queue_full("the queue is full of reports not polled"));
                    }
                    let freed: usize = dropped.iter().map(Item::size).sum();
                    // Put back ones among them held later versions.
                    shared.order.leave(&dropped);
                    state.waiting -= dropped.len().min(state.waiting);
                    state.waiting_bytes -= freed.min(state.waiting_bytes);
                    state.outstanding -= dropped.len().min(state.outstanding);
                    state.outstanding_bytes -= freed.min(state.outstanding_bytes);
                    drop(state);
                    shared
                        .counters
                        .dropped
                        .fetch_add(dropped.len() as u64, Ordering::Relaxed);
                    deliver::finish(shared, dropped_reports(dropped));
                    state = shared.lock();
                }
                _ => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(queue_full("the queue is full (blockTimeoutMs passed)"));
                    }
                    state = shared
                        .progress
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    fn release(&self, n: usize, bytes: usize) {
        let mut state = self.shared.lock();
        state.outstanding -= n.min(state.outstanding);
        state.outstanding_bytes -= bytes.min(state.outstanding_bytes);
    }

    /// With a full spool and `block`: waits for reports to be consumed
    /// (which frees segments), at most until `deadline` (then false). The
    /// caller tries the spool again after each wake-up, and at least every
    /// 100 ms, so a consumption just before the wait is not missed.
    fn wait_for_room_on_disk(&self, deadline: Instant) -> bool {
        let shared = &*self.shared;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let state = shared.lock();
        let _state = shared
            .progress
            .wait_timeout(state, left.min(Duration::from_millis(100)))
            .unwrap_or_else(|p| p.into_inner());
        true
    }

    /// `kuzzle_producer_poll`: at most `max` reports, waiting up to
    /// `timeout` for one. The reports of the previous poll are consumed.
    pub fn poll(&self, max: usize, timeout: Duration) -> Result<Vec<Report>> {
        let shared = &*self.shared;
        // One poll at a time: each consumes what the one before handed out.
        let _one = shared.polling.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::take(&mut shared.lock().handed);
        if let Err(e) = shared.store.consumed(&previous) {
            // Kept, to be consumed by the next poll.
            shared.lock().handed = previous;
            return Err(spool_error(e));
        }
        let reports = shared.reports.take(max, timeout);
        // Dropped documents stopped counting when they were dropped.
        let counted: Vec<&Report> = reports.iter().filter(|r| !r.dropped()).collect();
        let freed: usize = counted.iter().map(|r| r.held).sum();
        let mut state = shared.lock();
        state.handed = reports.iter().map(|r| r.seq).collect();
        state.outstanding -= counted.len().min(state.outstanding);
        state.outstanding_bytes -= freed.min(state.outstanding_bytes);
        drop(state);
        shared.progress.notify_all();
        // Room for reports: a spool's delivery may go on.
        shared.wake.notify_all();
        Ok(reports)
    }

    /// `kuzzle_producer_flush`: sends what waits at once, and waits until
    /// every document accepted before the call has its final report.
    pub fn flush(&self, timeout: Duration) -> Status {
        let shared = &*self.shared;
        let target = match shared.store.spool() {
            Some(spool) => spool.stats().next_seq,
            None => shared.next_seq.load(Ordering::Relaxed),
        };
        let deadline = Instant::now() + timeout;
        let mut state = shared.lock();
        state.flush = true;
        shared.wake.notify_all();
        while state.low_watermark < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || state.done {
                return Status::KUZZLE_ERR_TIMEOUT;
            }
            state = shared
                .progress
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        // The documents this flush covers: accepted before it, and after
        // the flush before it (a failure is not reported by every flush
        // after it).
        let failed = state.failed.range(..target).next().is_some();
        state.failed = state.failed.split_off(&target);
        match failed {
            true => Status::KUZZLE_PARTIAL,
            false => Status::KUZZLE_OK,
        }
    }

    /// `kuzzle_producer_stats`.
    pub fn stats(&self) -> String {
        let shared = &*self.shared;
        let c = &shared.counters;
        let state = shared.lock();
        let mut v = serde_json::json!({
            "accepted": c.accepted.load(Ordering::Relaxed),
            "delivered": c.delivered.load(Ordering::Relaxed),
            "failed": c.failed.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "retriedBatches": c.retried_batches.load(Ordering::Relaxed),
            "waiting": state.waiting,
            "inFlight": state.in_flight,
            "reportsWaiting": shared.reports.waiting(),
            "outstanding": state.outstanding,
            "outstandingBytes": state.outstanding_bytes,
            "spool": null,
        });
        drop(state);
        if let Some(spool) = shared.store.spool() {
            let s = spool.stats();
            v["spool"] = serde_json::json!({
                "bytes": s.bytes,
                "segments": s.segments,
                "durableSeq": s.durable_seq,
                "nextSeq": s.next_seq,
                "pending": s.pending,
                "corruptRecords": s.corrupt_records,
                "fsyncs": s.fsyncs,
                "bytesWritten": s.bytes_written,
            });
        }
        v.to_string()
    }

    /// The descriptor that is readable while reports wait.
    pub fn fd(&self) -> i32 {
        self.shared.reports.fd()
    }

    /// `kuzzle_producer_close`: flushes up to `timeout`, stops, and hands
    /// back the reports not polled. Memory mode: what was not delivered by
    /// then gets a final failure report; with a spool it stays on disk for
    /// the next open.
    /// `wanted`: the caller takes the reports not polled; if not, they are
    /// not consumed (with a spool they come again after the next open).
    pub fn close(self, timeout: Duration, wanted: bool) -> Vec<Report> {
        let reports = self.stop(timeout, wanted);
        self.join();
        reports
    }

    /// Once the delivery threads have ended: their share of the spool too,
    /// which is closed now (synced, unlocked) for the next opener. A thread
    /// still sending (closed without waiting for it) ends on its own.
    fn join(mut self) {
        if !self.shared.lock().done {
            return;
        }
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
        if let Ok(shared) = Arc::try_unwrap(self.shared) {
            if let Store::Spool(spool) = shared.store {
                // What it could not sync is replayed at the next open.
                let _ = spool.close();
            }
        }
    }

    fn stop(&self, timeout: Duration, wanted: bool) -> Vec<Report> {
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        // No time to wait: starting a request now would only leave its
        // documents in doubt (memory mode) instead of plainly not sent.
        if !timeout.is_zero() {
            let _ = self.flush(timeout);
        }
        let mut state = shared.lock();
        state.closing = true;
        shared.wake.notify_all();
        // A thread that is not sending ends at once (it only waits on
        // what `closing` interrupts); one with a request in flight gets
        // what is left of the timeout.
        let mut abandoned = Vec::new();
        while !state.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && state.in_flight > 0 && state.reporting == 0 && !state.taking {
                // They end on their own (bounded by timeoutMs): with a
                // spool their documents stay there; in memory mode they are
                // reported here, in doubt, and their outcomes are dropped.
                if shared.store.spool().is_none() {
                    state.abandoned = true;
                    abandoned = state
                        .flying
                        .iter_mut()
                        .filter_map(|f| f.batch.take())
                        .collect();
                }
                break;
            }
            if left.is_zero() && state.thread_gone {
                break;
            }
            // Past the deadline, what is waited for (a thread ending its
            // take or its reports, or its end) notifies `progress`.
            let wait = if state.in_flight > 0 && state.reporting == 0 && !left.is_zero() {
                left
            } else {
                Duration::from_secs(1)
            };
            state = shared
                .progress
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let handed = std::mem::take(&mut state.handed);
        drop(state);
        let _ = shared.store.consumed(&handed);
        if shared.store.spool().is_none() {
            let left = shared.store.drop_oldest(usize::MAX);
            let mut reports = in_doubt_reports(&abandoned);
            reports.extend(closed_reports(left));
            deliver::finish(shared, reports);
        }
        let reports = shared.reports.take_all();
        if wanted {
            let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
            let _ = shared.store.consumed(&seqs);
        }
        reports
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters are updated whole under the lock: a panic leaves them so.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A document as the producer keeps it: its `_id` literal (`id`, or
/// generated from `prefix` and counter value `n` when `id` is "") then its
/// body, in one allocation; and the literal's length.
fn kept(prefix: &str, n: u64, id: &str, body: &str) -> (Box<str>, u32) {
    let mut digits = [0; 11];
    let digits = match id {
        "" => crate::client::base62(n, &mut digits),
        _ => &[],
    };
    let id_len = match id {
        "" => prefix.len() + digits.len() + 2,
        given => given.len(),
    };
    let mut text = String::with_capacity(id_len + body.len());
    match id {
        "" => {
            text.push('"');
            text.push_str(prefix);
            // Base-62 digits are ASCII.
            text.extend(digits.iter().map(|&b| b as char));
            text.push('"');
        }
        given => text.push_str(given),
    }
    text.push_str(body);
    (text.into_boxed_str(), id_len as u32)
}

fn queue_full(why: &str) -> Error {
    Error::new(Status::KUZZLE_ERR_QUEUE_FULL, why)
}

fn spool_error(e: SpoolError) -> Error {
    match e {
        SpoolError::Full => queue_full("the spool is full (spoolMaxBytes)"),
        other => Error::new(Status::KUZZLE_ERR_SPOOL, other.to_string()),
    }
}

fn dropped_reports(items: Vec<Item>) -> Vec<Report> {
    failed_reports(
        items,
        reports::DROPPED,
        "dropped: the queue was full (whenFull: dropOldest)",
    )
}

fn closed_reports(items: Vec<Item>) -> Vec<Report> {
    failed_reports(
        items,
        0,
        "not sent: the producer was closed before delivery",
    )
}

/// Documents whose request was in flight when the producer closed.
fn in_doubt_reports(batches: &[Arc<Vec<Item>>]) -> Vec<Report> {
    let reason = "the producer was closed while its request was in flight: it may or may not \
                  have been written";
    batches
        .iter()
        .flat_map(|batch| batch.iter())
        .map(|item| deliver::failure(item.clone(), 0, reason.into(), true))
        .collect()
}

/// Final failures of documents never delivered: in doubt if an earlier
/// attempt was.
fn failed_reports(items: Vec<Item>, status: u16, reason: &str) -> Vec<Report> {
    items
        .into_iter()
        .map(|item| {
            let in_doubt = item.sent_in_doubt;
            let reason = match in_doubt {
                true => format!("{reason}; an earlier attempt may or may not have written it"),
                false => format!("{reason}: not sent"),
            };
            deliver::failure(item, status, reason, in_doubt)
        })
        .collect()
}
