//! The outcome journal (`out-<n>.log`): outcomes and consumptions, the
//! journal's rotation with a snapshot, and the deletion of consumed
//! segments behind a checkpoint.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::checkpoint::{self, sync_dir, Checkpoint};
use super::frame::{self, FILE_HEADER, JOURNAL_MAGIC};
use super::ranges::RangeSet;
use super::writer::{create_file, segment_path, write_record};
use super::{codec, io_err, lock, Cursor, Inner, Journal, Outcome, SpoolError, State, SyncMode};

/// A journal is rotated when it has grown by this much (or by a segment,
/// if larger) since its snapshot.
const MIN_JOURNAL_GROWTH: u64 = 64 * 1024;
/// Outcomes or ranges per snapshot record.
const SNAPSHOT_CHUNK: usize = 1024;

pub(super) fn journal_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("out-{number:020}.log"))
}

pub(super) fn record_outcomes(inner: &Inner, outcomes: &[Outcome]) -> Result<(), SpoolError> {
    let file = {
        let mut st = lock(&inner.state);
        let usable = |st: &State, o: &Outcome| {
            o.seq >= st.floor && o.seq < st.next_seq && !st.done.contains(o.seq)
        };
        // A second outcome for a seq is the caller's mistake: the first
        // stands. Outcomes come in ascending seqs, which rules that out
        // without a set.
        let ascending = outcomes.windows(2).all(|w| w[0].seq < w[1].seq);
        let fresh: Vec<&Outcome> = if ascending {
            outcomes.iter().filter(|o| usable(&st, o)).collect()
        } else {
            let mut seen = std::collections::HashSet::new();
            outcomes
                .iter()
                .filter(|o| usable(&st, o) && seen.insert(o.seq))
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let mut record = codec::outcomes_record(&fresh);
        frame::seal(&mut record);
        append(inner, &mut st, &record)?;
        let mut seqs: Vec<u64> = fresh.iter().map(|o| o.seq).collect();
        if !ascending {
            seqs.sort_unstable();
        }
        for (a, b) in to_ranges(&seqs) {
            st.done.insert_range(a, b);
        }
        st.pending = st.pending.saturating_sub(fresh.len() as u64);
        st.unconsumed += fresh.len() as u64;
        st.outcomes.extend(fresh.into_iter().cloned());
        maybe_rotate(inner, &mut st)?;
        st.journal.file.clone()
    };
    if inner.cfg.sync == SyncMode::Always {
        sync_journal(inner, &file)?;
    }
    Ok(())
}

pub(super) fn consumed(inner: &Inner, seqs: &[u64]) -> Result<(), SpoolError> {
    let file = {
        let mut st = lock(&inner.state);
        let mut fresh: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&s| s >= st.floor && s < st.next_seq && !st.consumed.contains(s))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        if !fresh.windows(2).all(|w| w[0] < w[1]) {
            fresh.sort_unstable();
            fresh.dedup();
        }
        let ranges = to_ranges(&fresh);
        let mut record = codec::consumed_record(&ranges);
        frame::seal(&mut record);
        append(inner, &mut st, &record)?;
        // The segment of the seq before, while the seqs ascend within it.
        let mut within: Option<(u64, u64)> = None;
        for &seq in &fresh {
            match st.done.contains(seq) {
                true => st.unconsumed = st.unconsumed.saturating_sub(1),
                false => st.pending = st.pending.saturating_sub(1),
            }
            if !st.absent.is_empty() && st.absent.remove(&seq) {
                continue;
            }
            let first = match within {
                Some((first, end)) if seq >= first && seq < end => first,
                _ => {
                    let Some((&first, _)) = st.segments.range(..=seq).next_back() else {
                        continue;
                    };
                    let end = st
                        .segments
                        .range(first + 1..)
                        .next()
                        .map_or(u64::MAX, |(&f, _)| f);
                    within = Some((first, end));
                    first
                }
            };
            if let Some(seg) = st.segments.get_mut(&first) {
                seg.live = seg.live.saturating_sub(1);
            }
        }
        for &(a, b) in &ranges {
            st.done.insert_range(a, b);
            st.consumed.insert_range(a, b);
        }
        // Reports are consumed in the order their outcomes were stored.
        while st
            .outcomes
            .front()
            .is_some_and(|o| st.consumed.contains(o.seq))
        {
            st.outcomes.pop_front();
        }
        compact(inner, &mut st)?;
        maybe_rotate(inner, &mut st)?;
        st.journal.file.clone()
    };
    if inner.cfg.sync == SyncMode::Always {
        sync_journal(inner, &file)?;
    }
    Ok(())
}

fn to_ranges(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &seq in sorted {
        match out.last_mut() {
            Some(last) if last.1 + 1 == seq => last.1 = seq,
            _ => out.push((seq, seq)),
        }
    }
    out
}

fn append(inner: &Inner, st: &mut State, record: &[u8]) -> Result<(), SpoolError> {
    let path = journal_path(&inner.cfg.dir, st.journal.number);
    write_record(&st.journal.file, &path, st.journal.len, record)?;
    st.journal.len += record.len() as u64;
    st.journal.dirty = true;
    inner.bytes_written.fetch_add(record.len() as u64, Relaxed);
    Ok(())
}

pub(super) fn sync_journal(inner: &Inner, file: &File) -> Result<(), SpoolError> {
    file.sync_data().map_err(|e| {
        SpoolError::Io(format!(
            "spool: fdatasync the journal in {}: {e}",
            inner.cfg.dir.display()
        ))
    })?;
    inner.fsyncs.fetch_add(1, Relaxed);
    Ok(())
}

fn maybe_rotate(inner: &Inner, st: &mut State) -> Result<(), SpoolError> {
    let growth = inner.cfg.segment_bytes.max(MIN_JOURNAL_GROWTH);
    if st.journal.len <= st.journal.base_len + growth {
        return Ok(());
    }
    let number = st.journal.number + 1;
    let live: Vec<&Outcome> = live_outcomes(st).collect();
    let journal = write_snapshot(&inner.cfg.dir, number, &live, &st.consumed, &inner.fsyncs)?;
    let old = std::mem::replace(&mut st.journal, journal);
    remove_journals(&inner.cfg.dir, &[old.number])
}

/// The outcomes stored and not consumed, in the order they were stored.
pub(super) fn live_outcomes(st: &State) -> impl Iterator<Item = &Outcome> {
    st.outcomes
        .iter()
        .filter(|o| o.seq >= st.floor && !st.consumed.contains(o.seq))
}

/// Starts journal `number` with what is still live: outcomes not consumed
/// (in report order) and the consumed seqs at or above the floor. Synced,
/// directory included, before the caller deletes older journals.
pub(super) fn write_snapshot(
    dir: &Path,
    number: u64,
    outcomes: &[&Outcome],
    consumed: &RangeSet,
    fsyncs: &AtomicU64,
) -> Result<Journal, SpoolError> {
    let path = journal_path(dir, number);
    let file = create_file(&path, JOURNAL_MAGIC, number, false)?;
    let mut len = FILE_HEADER;
    for list in outcomes.chunks(SNAPSHOT_CHUNK) {
        let mut record = codec::outcomes_record(list);
        frame::seal(&mut record);
        write_record(&file, &path, len, &record)?;
        len += record.len() as u64;
    }
    let ranges: Vec<(u64, u64)> = consumed.ranges().collect();
    for chunk in ranges.chunks(SNAPSHOT_CHUNK) {
        let mut record = codec::consumed_record(chunk);
        frame::seal(&mut record);
        write_record(&file, &path, len, &record)?;
        len += record.len() as u64;
    }
    file.sync_data()
        .map_err(|e| io_err(&path, "fdatasync", e))?;
    fsyncs.fetch_add(1, Relaxed);
    sync_dir(dir)?;
    Ok(Journal {
        number,
        file: Arc::new(file),
        len,
        base_len: len,
        dirty: false,
    })
}

pub(super) fn remove_journals(dir: &Path, numbers: &[u64]) -> Result<(), SpoolError> {
    if numbers.is_empty() {
        return Ok(());
    }
    for &n in numbers {
        let path = journal_path(dir, n);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "unlink", e)),
        }
    }
    sync_dir(dir)
}

/// Deletes the oldest segments whose every document is reported and
/// consumed (never the active one): checkpoint with the new floor first,
/// then unlink, then fsync of the directory.
pub(super) fn compact(inner: &Inner, st: &mut State) -> Result<(), SpoolError> {
    let gone: Vec<u64> = st
        .segments
        .values()
        .take_while(|seg| seg.first != st.active_first && seg.live == 0)
        .map(|seg| seg.first)
        .collect();
    let Some(&last_gone) = gone.last() else {
        return Ok(());
    };
    let dir = &inner.cfg.dir;
    let floor = st
        .segments
        .range(last_gone + 1..)
        .next()
        .map_or(st.active_first, |(&first, _)| first);
    let cp = Checkpoint {
        generation: st.generation + 1,
        floor,
    };
    checkpoint::write(&st.checkpoint, dir, cp)?;
    inner.fsyncs.fetch_add(1, Relaxed);
    st.generation = cp.generation;
    st.floor = floor;
    for first in gone {
        if let Some(seg) = st.segments.remove(&first) {
            st.segment_bytes_total -= seg.len;
        }
        st.unsynced.retain(|&f| f != first);
        if st.reading.as_ref().is_some_and(|(f, _)| *f == first) {
            st.reading = None;
        }
        let path = segment_path(dir, first);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "unlink", e)),
        }
    }
    sync_dir(dir)?;
    st.done.remove_below(floor);
    st.consumed.remove_below(floor);
    if st.cursor.segment < floor {
        st.cursor = Cursor {
            segment: floor,
            offset: FILE_HEADER,
            skip: 0,
        };
    }
    Ok(())
}
