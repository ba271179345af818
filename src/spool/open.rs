//! `Spool::open`: lock, version checks, and recovery from whatever a crash
//! or a damaged disk left: journals replayed in order, segments scanned
//! with positioned reads, torn tails cut, nothing loaded but counts, range
//! sets, and the few outcomes still to report.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};

use super::checkpoint::{self, sync_dir, Checkpoint};
use super::codec;
use super::frame::{
    self, Header, ReadAhead, Step, FILE_HEADER, JOURNAL_MAGIC, KIND_CONSUMED, KIND_DOCS,
    KIND_OUTCOMES, SEGMENT_MAGIC,
};
use super::journal::{self, journal_path};
use super::ranges::RangeSet;
use super::writer::{create_file, segment_path};
use super::{
    io_err, lock, sys, Cursor, Inner, Outcome, Redelivery, ReportedDoc, Segment, SpoolConfig,
    SpoolError, State, SyncState,
};

/// What the journals say.
#[derive(Default)]
struct Ledger {
    done: RangeSet,
    consumed: RangeSet,
    outcomes: BTreeMap<u64, (u64, Outcome)>,
    report_no: u64,
    /// The highest seq named: seqs are never given again, even when the
    /// segment that held it lost its tail (power loss without `Always`).
    max_seq: u64,
}

#[derive(Default)]
struct Damage {
    corrupt: u64,
    torn: u64,
}

pub(super) fn open(cfg: SpoolConfig) -> Result<(Inner, Vec<Redelivery>), SpoolError> {
    let dir = cfg.dir.clone();
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create directory", e))?;
    let lock_path = dir.join("LOCK");
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, "open", e))?;
    if !sys::try_lock_exclusive(&lock_file).map_err(|e| io_err(&lock_path, "flock", e))? {
        return Err(SpoolError::Locked(format!(
            "spool: {} is in use by another producer ({} is locked)",
            dir.display(),
            lock_path.display()
        )));
    }
    checkpoint::check_meta(&dir)?;
    let (segments_found, journals_found) = list(&dir)?;
    let (cp_file, cp) = checkpoint::open(&dir)?;
    let checkpoint_lost = cp.is_none() && !(segments_found.is_empty() && journals_found.is_empty());
    let mut floor = cp.map_or(0, |c| c.floor);
    // Written at once, so that a crash later in this open is not taken for a lost checkpoint.
    let generation = match cp {
        Some(c) => c.generation,
        None => {
            checkpoint::write(
                &cp_file,
                &dir,
                Checkpoint {
                    generation: 1,
                    floor,
                },
            )?;
            1
        }
    };
    let fsyncs = AtomicU64::new(0);
    let mut damage = Damage::default();

    let mut ledger = Ledger::default();
    for &n in &journals_found {
        replay_journal(&journal_path(&dir, n), &mut ledger, &mut damage)?;
    }

    // Segments: counts per segment, the documents of the outcomes to hand
    // out again, and the last seq.
    let mut segments = BTreeMap::new();
    let mut total = 0u64;
    let mut pending = 0u64;
    let mut max_seq = 0u64;
    let mut named: BTreeMap<u64, ReportedDoc> = BTreeMap::new();
    let mut active: Option<File> = None;
    for (i, &first) in segments_found.iter().enumerate() {
        let is_last = i + 1 == segments_found.len();
        let path = segment_path(&dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(is_last)
            .open(&path)
            .map_err(|e| io_err(&path, "open", e))?;
        let header_ok =
            match frame::read_header(&file, SEGMENT_MAGIC).map_err(|e| io_err(&path, "read", e))? {
                Header::Ok => true,
                Header::Version(v) => return Err(version_error(&path, v)),
                Header::Short => {
                    damage.torn += 1;
                    false
                }
                Header::Damaged => {
                    damage.corrupt += 1;
                    false
                }
            };
        let mut live = 0u64;
        let mut docs_seen = 0u64;
        let end = scan(&file, &path, &mut damage, is_last, |payload, damage| {
            let Some(mut docs) = codec::docs(payload) else {
                damage.corrupt += 1;
                return;
            };
            // Counted once the whole record has read: used whole or not at all.
            let (mut seen, mut top, mut alive, mut waiting) = (0, max_seq, 0, 0);
            let mut names = Vec::new();
            for d in docs.by_ref() {
                seen += 1;
                top = top.max(d.seq);
                if d.seq < floor {
                    continue;
                }
                if !ledger.consumed.contains(d.seq) {
                    alive += 1;
                }
                if !ledger.done.contains(d.seq) {
                    waiting += 1;
                }
                if ledger.outcomes.contains_key(&d.seq) {
                    names.push(ReportedDoc {
                        seq: d.seq,
                        index: d.index.to_owned(),
                        collection: d.collection.to_owned(),
                        id: d.id().to_owned(),
                    });
                }
            }
            if docs.broken {
                damage.corrupt += 1;
                return;
            }
            (docs_seen, max_seq) = (docs_seen + seen, top);
            (live, pending) = (live + alive, pending + waiting);
            named.extend(names.into_iter().map(|doc| (doc.seq, doc)));
        })?;
        file.sync_data()
            .map_err(|e| io_err(&path, "fdatasync", e))?;
        fsyncs.fetch_add(1, Relaxed);
        if is_last && !header_ok && docs_seen == 0 {
            // Nothing readable: the file is rewritten as a fresh segment.
            fs::remove_file(&path).map_err(|e| io_err(&path, "unlink", e))?;
            continue;
        }
        total += end;
        segments.insert(
            first,
            Segment {
                first,
                len: end,
                live,
            },
        );
        if is_last && header_ok {
            active = Some(file);
        }
    }
    let last_first = segments.keys().next_back().copied().unwrap_or(0);
    let next_seq = (max_seq.max(ledger.max_seq) + 1)
        .max(floor)
        .max(last_first)
        .max(1);
    if segments.is_empty() {
        floor = floor.max(next_seq);
    }
    let (active, active_first) = match active {
        Some(file) => (file, last_first),
        None => {
            // No segment, or the last one's header is damaged: appends go
            // to a new one.
            let path = segment_path(&dir, next_seq);
            let file = create_file(&path, SEGMENT_MAGIC, next_seq, true)?;
            sync_dir(&dir)?;
            segments.insert(
                next_seq,
                Segment {
                    first: next_seq,
                    len: FILE_HEADER,
                    live: 0,
                },
            );
            total += FILE_HEADER;
            (file, next_seq)
        }
    };

    // What the journals said below the floor is settled.
    ledger.done.remove_below(floor);
    ledger.consumed.remove_below(floor);
    ledger.outcomes.retain(|&seq, _| seq >= floor);

    let mut absent = BTreeSet::new();
    let mut redeliveries: Vec<(u64, Redelivery)> = ledger
        .outcomes
        .iter()
        .map(|(&seq, (no, outcome))| {
            let doc = named.remove(&seq).unwrap_or_else(|| {
                absent.insert(seq);
                ReportedDoc {
                    seq,
                    ..ReportedDoc::default()
                }
            });
            (
                *no,
                Redelivery {
                    doc,
                    outcome: outcome.clone(),
                },
            )
        })
        .collect();
    redeliveries.sort_by_key(|(no, _)| *no);

    // A fresh journal, so that nothing is ever appended after damage.
    let number = journals_found.last().map_or(1, |n| n + 1);
    let mut live: Vec<(u64, Outcome)> = ledger.outcomes.into_values().collect();
    live.sort_by_key(|(no, _)| *no);
    let live: VecDeque<Outcome> = live.into_iter().map(|(_, o)| o).collect();
    let journal = journal::write_snapshot(
        &dir,
        number,
        &live.iter().collect::<Vec<_>>(),
        &ledger.consumed,
        &fsyncs,
    )?;
    journal::remove_journals(&dir, &journals_found)?;
    let first_segment = segments.keys().next().copied().unwrap_or(active_first);
    // The tail past the records was cut: the file ends where they do.
    let allocated = segments.get(&active_first).map_or(FILE_HEADER, |s| s.len);
    let state = State {
        segment_bytes_total: total,
        segments,
        active: Arc::new(active),
        active_first,
        allocated,
        next_seq,
        floor,
        checkpoint: cp_file,
        generation,
        journal,
        done: ledger.done,
        consumed: ledger.consumed,
        unconsumed: live.len() as u64,
        outcomes: live,
        cursor: Cursor {
            segment: first_segment,
            offset: FILE_HEADER,
            skip: 0,
        },
        reading: None,
        ahead: ReadAhead::default(),
        requeued: Default::default(),
        last_target: None,
        tail: Default::default(),
        tail_bytes: 0,
        absent,
        passed: 0,
        pending,
        corrupt_records: damage.corrupt,
        torn_tails: damage.torn,
        replay_risk_docs: if checkpoint_lost { pending } else { 0 },
        unsynced: Vec::new(),
    };
    let inner = Inner {
        cfg,
        _lock: sys::Held(lock_file),
        state: Mutex::new(state),
        sync: Mutex::new(SyncState {
            durable: next_seq - 1,
            ..SyncState::default()
        }),
        synced: Condvar::new(),
        gathered: Condvar::new(),
        fsyncs,
        bytes_written: AtomicU64::new(0),
        stop: Mutex::new(false),
        stop_cv: Condvar::new(),
    };
    // Finishes a deletion a crash interrupted, and any that is now due.
    journal::compact(&inner, &mut lock(&inner.state))?;
    Ok((inner, redeliveries.into_iter().map(|(_, r)| r).collect()))
}

fn version_error(path: &Path, v: u32) -> SpoolError {
    SpoolError::Version(format!(
        "{}: spool format version {v}, this library reads version {}",
        path.display(),
        frame::FORMAT_VERSION
    ))
}

/// The segments' first seqs and the journals' numbers, ascending.
fn list(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), SpoolError> {
    let mut segments = Vec::new();
    let mut journals = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, "list", e))? {
        let entry = entry.map_err(|e| io_err(dir, "list", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = |prefix: &str| {
            name.strip_prefix(prefix)?
                .strip_suffix(".log")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?
                .parse::<u64>()
                .ok()
        };
        if let Some(n) = number("seg-") {
            segments.push(n);
        } else if let Some(n) = number("out-") {
            journals.push(n);
        } else if name == "META.tmp" {
            let _ = fs::remove_file(entry.path());
        }
    }
    segments.sort_unstable();
    journals.sort_unstable();
    Ok((segments, journals))
}

/// Scans the records of a segment or journal, handing each DOCS payload
/// (segment) or every payload with its kind (journal) to `each`; counts
/// damage; on the last segment cuts a damaged tail off. Returns the length
/// of the file after the scan.
fn scan(
    file: &File,
    path: &Path,
    damage: &mut Damage,
    cut_tail: bool,
    mut each: impl FnMut(&[u8], &mut Damage),
) -> Result<u64, SpoolError> {
    scan_kinds(file, path, damage, cut_tail, |kind, payload, damage| {
        if kind == KIND_DOCS {
            each(payload, damage);
        }
    })
}

fn scan_kinds(
    file: &File,
    path: &Path,
    damage: &mut Damage,
    cut_tail: bool,
    mut each: impl FnMut(u8, &[u8], &mut Damage),
) -> Result<u64, SpoolError> {
    let end = file.metadata().map_err(|e| io_err(path, "stat", e))?.len();
    let mut offset = FILE_HEADER;
    let mut ahead = ReadAhead::default();
    loop {
        match frame::read_step(&mut ahead, 0, file, offset, end)
            .map_err(|e| io_err(path, "read", e))?
        {
            Step::Record {
                kind,
                payload,
                next,
                ..
            } => {
                each(kind, payload, damage);
                offset = next;
            }
            Step::Skipped { next, .. } => {
                damage.corrupt += 1;
                offset = next;
            }
            Step::End { at } => {
                if at >= end {
                    return Ok(end.max(FILE_HEADER));
                }
                if frame::complete_at(file, at, end).map_err(|e| io_err(path, "read", e))? {
                    // A whole record that fails its CRC: damage, not a torn write.
                    damage.corrupt += 1;
                } else {
                    damage.torn += 1;
                }
                if !cut_tail {
                    return Ok(end);
                }
                let at = at.max(FILE_HEADER);
                file.set_len(at)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_err(path, "truncate", e))?;
                return Ok(at);
            }
        }
    }
}

fn replay_journal(path: &Path, ledger: &mut Ledger, damage: &mut Damage) -> Result<(), SpoolError> {
    let file = File::open(path).map_err(|e| io_err(path, "open", e))?;
    match frame::read_header(&file, JOURNAL_MAGIC).map_err(|e| io_err(path, "read", e))? {
        Header::Ok => {}
        Header::Version(v) => return Err(version_error(path, v)),
        // Created by a crash an instant before its header: nothing in it.
        Header::Short => {
            damage.torn += 1;
            return Ok(());
        }
        Header::Damaged => damage.corrupt += 1,
    }
    scan_kinds(
        &file,
        path,
        damage,
        false,
        |kind, payload, damage| match kind {
            KIND_OUTCOMES => match codec::decode_outcomes(payload) {
                Some(list) => {
                    for o in list {
                        // A snapshot restates outcomes: the first record stands.
                        if !ledger.done.contains(o.seq) {
                            ledger.done.insert(o.seq);
                            ledger.max_seq = ledger.max_seq.max(o.seq);
                            ledger.outcomes.insert(o.seq, (ledger.report_no, o));
                            ledger.report_no += 1;
                        }
                    }
                }
                None => damage.corrupt += 1,
            },
            KIND_CONSUMED => match codec::decode_consumed(payload) {
                Some(ranges) => {
                    for (a, b) in ranges {
                        ledger.done.insert_range(a, b);
                        ledger.consumed.insert_range(a, b);
                        ledger.max_seq = ledger.max_seq.max(b);
                        let gone: Vec<u64> =
                            ledger.outcomes.range(a..=b).map(|(&k, _)| k).collect();
                        for k in gone {
                            ledger.outcomes.remove(&k);
                        }
                    }
                }
                None => damage.corrupt += 1,
            },
            _ => damage.corrupt += 1,
        },
    )?;
    Ok(())
}
