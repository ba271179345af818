//! The gateway producer's crash-safe on-disk spool: documents are appended
//! before `produce` returns, read back in chunks by the delivery thread,
//! and their final outcomes journaled until the application has consumed
//! their reports.
//!
//! A spool directory holds:
//! - `LOCK`: flock'ed (exclusive, non-blocking) while a `Spool` is open.
//! - `META`: `libkuzzle-spool <format version>`, written once through a
//!   temporary file, fsync, rename, fsync of the directory.
//! - `seg-<firstSeq>.log`: documents, one DOCS record per append
//!   (`frame.rs` has the framing, `codec.rs` the payloads). The last one is
//!   the active segment; a new one starts past `segment_bytes`.
//! - `out-<n>.log`: the outcome journal: OUTCOMES and CONSUMED records.
//!   Started anew at each open and whenever it outgrows a segment, with a
//!   snapshot of what is still live (outcomes not consumed, consumed seqs
//!   above the floor); reading every journal in order is right at any
//!   moment, since a snapshot only restates what is true.
//! - `CHECKPOINT`: the floor (`checkpoint.rs`): seqs below it are done.
//!
//! In memory: per segment, the count of documents whose report is not
//! consumed (deletable at 0, oldest first, never the active one); the seqs
//! with an outcome and the consumed ones as range sets; the outcomes not
//! consumed yet (the producer bounds them: reports not polled); a read
//! cursor and a small cache of the documents appended last. Nothing grows
//! with the backlog on disk. Seqs are never given twice: `open` goes on
//! after the highest seq any segment or journal names.
//!
//! What reaches the disk when, and in which order (a crash at any point
//! leaves a state that `open` reads correctly):
//! 1. `append`: one write() of the record; then with `Always`, one
//!    fdatasync of the active segment shared by every appender waiting
//!    (group commit) before returning; with `Interval`, a background
//!    fdatasync at most once per interval (segments, then the journal);
//!    with `None`, the OS decides.
//! 2. Segment rotation (`Always`/`Interval`): fdatasync of the full
//!    segment, then the new one created with its header, fsynced, and the
//!    directory fsynced, before any record goes there.
//! 3. `record_outcomes`: one write() to the journal; with `Always`,
//!    fdatasync before returning, so a report the application saw survives
//!    power loss.
//! 4. `consumed`: one write() to the journal (fdatasync with `Always`).
//!    Then, when the oldest segments are fully consumed: CHECKPOINT with the
//!    new floor, fdatasync'ed; then unlink; then fsync of the directory. A
//!    crash in between leaves segments below the floor, deleted at open
//!    (never a checkpoint naming a file that is gone).
//! 5. Journal rotation: new journal written and fdatasync'ed, directory
//!    fsynced, then the old journal unlinked and the directory fsynced.
//! 6. `open`: each segment fdatasync'ed (cheap when clean) so `durable_seq`
//!    starts at the last seq present; a torn tail of the active segment cut
//!    off; the journal rotated (so nothing is ever appended after damage).
//! 7. `close`: fdatasync of the active segment and the journal.

mod checkpoint;
mod codec;
mod frame;
mod journal;
mod open;
mod ranges;
mod reader;
#[allow(unsafe_code)]
mod sys;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crash;
#[cfg(test)]
mod tests_damage;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use ranges::RangeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncMode {
    Always,
    Interval(Duration),
    None,
}

#[derive(Clone, Debug)]
pub(crate) struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub sync: SyncMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpoolError {
    /// Another `Spool` (this process or another) has the directory open.
    Locked(String),
    Io(String),
    /// A spool of a format version this library does not read.
    Version(String),
    /// Appending would take the spool past `max_bytes`.
    Full,
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Locked(m) | SpoolError::Io(m) | SpoolError::Version(m) => f.write_str(m),
            SpoolError::Full => f.write_str("the spool is full (max_bytes reached)"),
        }
    }
}

impl std::error::Error for SpoolError {}

pub(super) fn io_err(path: &Path, what: &str, e: std::io::Error) -> SpoolError {
    SpoolError::Io(format!("spool: {what} {}: {e}", path.display()))
}

/// A document to append: where it goes, its `_id` (a JSON string literal,
/// always present), and its body (JSON text).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewDoc<'a> {
    pub index: &'a str,
    pub collection: &'a str,
    pub id: &'a str,
    pub body: &'a str,
}

/// Where documents go: shared by the documents that go there (one
/// allocation for all, not two per document).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub index: String,
    pub collection: String,
}

impl Target {
    /// `last` again if it is the same target, else a new one (kept in `last`).
    pub fn shared(last: &mut Option<Arc<Target>>, index: &str, collection: &str) -> Arc<Target> {
        match last {
            Some(t) if t.index == index && t.collection == collection => t.clone(),
            _ => {
                let t = Arc::new(Target {
                    index: index.to_owned(),
                    collection: collection.to_owned(),
                });
                *last = Some(t.clone());
                t
            }
        }
    }
}

/// A document read back: its `_id` literal and its body in one text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredDoc {
    pub seq: u64,
    pub target: Arc<Target>,
    /// The `_id` literal, then the body.
    pub text: Box<str>,
    pub id_len: u32,
}

impl StoredDoc {
    /// `id`: its `_id` literal; `body`: its JSON text.
    pub fn new(seq: u64, target: Arc<Target>, id: &str, body: &str) -> StoredDoc {
        let mut text = String::with_capacity(id.len() + body.len());
        text.push_str(id);
        text.push_str(body);
        StoredDoc {
            seq,
            target,
            text: text.into_boxed_str(),
            id_len: id.len() as u32,
        }
    }

    pub fn id(&self) -> &str {
        &self.text[..self.id_len as usize]
    }

    pub fn body(&self) -> &str {
        &self.text[self.id_len as usize..]
    }

    pub fn index(&self) -> &str {
        &self.target.index
    }

    pub fn collection(&self) -> &str {
        &self.target.collection
    }
}

/// The final outcome of one document, stored so that its report survives
/// a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub seq: u64,
    pub ok: bool,
    pub status: u16,
    pub version: Option<u64>,
    pub created: Option<bool>,
    pub reason: Option<String>,
    pub in_doubt: bool,
}

/// What a report names of its document.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ReportedDoc {
    pub seq: u64,
    pub index: String,
    pub collection: String,
    pub id: String,
}

/// A report to hand out again after a reopen: its outcome was stored, its
/// consumption was not. `doc`'s strings are empty if the document's record
/// was lost to damage (counted in `corrupt_records`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Redelivery {
    pub doc: ReportedDoc,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpoolStats {
    /// Bytes of segments and journal on disk.
    pub bytes: u64,
    pub segments: usize,
    /// The highest seq known fdatasync'ed (every seq up to it is), 0 if none.
    pub durable_seq: u64,
    pub next_seq: u64,
    /// Appended, no outcome yet.
    pub pending: u64,
    /// Outcomes stored, reports not consumed yet.
    pub unconsumed: u64,
    /// Damaged records skipped at open (their documents, if any, are lost).
    pub corrupt_records: u64,
    /// Torn or zeroed tails cut off at open (appends that never returned).
    pub torn_tails: u64,
    /// Documents that came back at open while the checkpoint was lost:
    /// some may have been delivered and reported already (same `_id`).
    pub replay_risk_docs: u64,
    pub fsyncs: u64,
    pub bytes_written: u64,
}

/// A segment of the directory.
#[derive(Debug)]
struct Segment {
    first: u64,
    /// File size, header included.
    len: u64,
    /// Documents in it whose report is not consumed yet: deletable at 0.
    live: u64,
}

/// Where `read_pending` goes on on disk: segment, record offset, and how
/// many documents of that record were already looked at.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    segment: u64,
    offset: u64,
    skip: u32,
}

struct Journal {
    number: u64,
    file: Arc<File>,
    len: u64,
    /// Length right after the snapshot: rotation is due past this plus one
    /// segment's worth.
    base_len: u64,
    dirty: bool,
}

struct State {
    segments: BTreeMap<u64, Segment>,
    segment_bytes_total: u64,
    active: Arc<File>,
    active_first: u64,
    /// The active segment's size on disk: with `SyncMode::Always`, zeros
    /// run past its records up to here (writer.rs, `preallocate`).
    allocated: u64,
    next_seq: u64,
    floor: u64,
    checkpoint: File,
    generation: u64,
    journal: Journal,
    /// Seqs with a stored outcome (consumed or not), at or above the floor.
    done: RangeSet,
    /// Seqs whose report was consumed, at or above the floor.
    consumed: RangeSet,
    /// Outcomes stored and not consumed, with their report order.
    /// Outcomes stored, in that order, from the oldest not consumed (some
    /// after it may be consumed: `consumed` says which).
    outcomes: VecDeque<Outcome>,
    /// Outcomes stored and not consumed.
    unconsumed: u64,
    cursor: Cursor,
    /// The file of a non-active segment the cursor reads.
    reading: Option<(u64, File)>,
    /// What the cursor read ahead (keyed by segment).
    ahead: frame::ReadAhead,
    requeued: VecDeque<StoredDoc>,
    /// The target of the last document read or appended, for the next.
    last_target: Option<Arc<Target>>,
    /// The documents appended last, so that a delivery thread that keeps
    /// up does not read them back from disk: consecutive seqs, each with
    /// the cursor position after it.
    tail: VecDeque<(StoredDoc, Cursor)>,
    tail_bytes: usize,
    /// The highest seq the cursor has gone past (handed out or skipped).
    passed: u64,
    /// Outcomes to hand out again whose document was lost to damage: not
    /// counted in any segment.
    absent: BTreeSet<u64>,
    pending: u64,
    corrupt_records: u64,
    torn_tails: u64,
    replay_risk_docs: u64,
    /// Segments left without an fdatasync at rotation (`SyncMode::None`):
    /// `close` syncs them.
    unsynced: Vec<u64>,
}

#[derive(Default)]
struct SyncState {
    in_progress: bool,
    durable: u64,
    /// The last seq of each thread waiting for a sync (`SyncMode::Always`).
    waiting: Vec<u64>,
    /// Threads the last sync served, and threads come to wait since it
    /// ended: the next sync gives the ones served a moment to come back
    /// with their next document (writer.rs, `sync_to`).
    served: usize,
    came: usize,
    /// A sync waits for them now: arrivals wake it.
    gathering: bool,
    /// How long the last fdatasync took.
    last_took: std::time::Duration,
}

struct Inner {
    cfg: SpoolConfig,
    _lock: sys::Held,
    state: Mutex<State>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// The thread gathering a sync waits on this one alone: an arrival
    /// wakes it, not every thread waiting for the sync to end.
    gathered: Condvar,
    fsyncs: AtomicU64,
    bytes_written: AtomicU64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

/// The spool. `append`, `read_pending`, `record_outcomes` and `consumed`
/// may be called from different threads at once.
pub(crate) struct Spool {
    inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves data that is still consistent
    // enough to go on (every update is a few assignments after the I/O).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Spool {
    /// Locks the directory (creating it), checks the format version, scans
    /// what is there, and returns the spool plus the reports to hand out
    /// again (outcomes stored and not consumed, in report order).
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Vec<Redelivery>), SpoolError> {
        let (inner, redeliveries) = open::open(cfg)?;
        let inner = Arc::new(inner);
        let background = match inner.cfg.sync {
            SyncMode::Interval(every) => {
                let inner = inner.clone();
                Some(
                    std::thread::Builder::new()
                        .name("kuzzle-spool-sync".into())
                        .spawn(move || writer::background(&inner, every))
                        .map_err(|e| {
                            SpoolError::Io(format!("spool: start the sync thread: {e}"))
                        })?,
                )
            }
            _ => None,
        };
        Ok((Spool { inner, background }, redeliveries))
    }

    /// Appends documents (all or nothing) with consecutive seqs and returns
    /// the first: once written, and with `SyncMode::Always` once on disk.
    /// `Err(Full)` when `max_bytes` would be exceeded.
    pub fn append(&self, docs: &[NewDoc]) -> Result<u64, SpoolError> {
        writer::append(&self.inner, docs)
    }

    /// The next pending documents in seq order: requeued ones first, at
    /// most `max_docs` and about `max_bytes` of bodies (at least one).
    pub fn read_pending(
        &self,
        max_docs: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredDoc>, SpoolError> {
        reader::read_pending(&self.inner, max_docs, max_bytes)
    }

    /// Documents handed out to be tried again later: they come back first.
    pub fn requeue(&self, docs: Vec<StoredDoc>) {
        let mut st = lock(&self.inner.state);
        // Batches come back in any order (several in flight): handed out
        // again in seq order all the same.
        st.requeued.extend(docs);
        st.requeued
            .make_contiguous()
            .sort_unstable_by_key(|d| d.seq);
    }

    /// The lowest seq without an outcome that is not handed out now
    /// (requeued, or not read yet); the next seq when every document has
    /// its outcome.
    pub fn lowest_unsettled_untaken(&self) -> u64 {
        let st = lock(&self.inner.state);
        if st.pending == 0 {
            return st.next_seq;
        }
        let unread = st.passed + 1;
        st.requeued.front().map_or(unread, |d| d.seq.min(unread))
    }

    /// Stores final outcomes, durably as `sync` says.
    pub fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), SpoolError> {
        journal::record_outcomes(&self.inner, outcomes)
    }

    /// The reports of these seqs were consumed: not handed out again after
    /// a reopen. Deletes the oldest segments once all theirs are.
    pub fn consumed(&self, seqs: &[u64]) -> Result<(), SpoolError> {
        journal::consumed(&self.inner, seqs)
    }

    pub fn stats(&self) -> SpoolStats {
        let st = lock(&self.inner.state);
        let durable_seq = lock(&self.inner.sync).durable;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        SpoolStats {
            bytes: st.segment_bytes_total + st.journal.len,
            segments: st.segments.len(),
            durable_seq,
            next_seq: st.next_seq,
            pending: st.pending,
            unconsumed: st.unconsumed,
            corrupt_records: st.corrupt_records,
            torn_tails: st.torn_tails,
            replay_risk_docs: st.replay_risk_docs,
            fsyncs: self.inner.fsyncs.load(relaxed),
            bytes_written: self.inner.bytes_written.load(relaxed),
        }
    }

    /// Syncs what was written and releases the lock.
    pub fn close(mut self) -> Result<(), SpoolError> {
        self.stop_background();
        writer::sync_everything(&self.inner)
    }

    fn stop_background(&mut self) {
        if let Some(handle) = self.background.take() {
            *lock(&self.inner.stop) = true;
            self.inner.stop_cv.notify_all();
            let _ = handle.join();
        }
    }
}

impl Drop for Spool {
    /// Without `close`: like a crash (nothing is buffered in memory), but the
    /// sync thread is stopped so that the lock is released on return.
    fn drop(&mut self) {
        self.stop_background();
    }
}
