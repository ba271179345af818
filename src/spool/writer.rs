//! Appending: record writes, segment rotation, free space, and the group
//! commit that lets one fdatasync serve every appender waiting for it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::sync_dir;
use super::codec::{self, DOCS_SEQ_AT};
use super::frame::{self, FILE_HEADER, SEGMENT_MAGIC};
use super::{
    io_err, journal, lock, reader, Inner, NewDoc, Segment, SpoolError, State, StoredDoc, SyncMode,
    Target,
};

pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

/// Creates a segment or journal file with its header (synced if `sync`).
pub(super) fn create_file(
    path: &Path,
    magic: &[u8; 8],
    number: u64,
    sync: bool,
) -> Result<File, SpoolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(path, "create", e))?;
    write_record(&file, path, 0, &frame::file_header(magic, number))?;
    if sync {
        file.sync_data().map_err(|e| io_err(path, "fdatasync", e))?;
    }
    Ok(file)
}

/// Writes `bytes` at `at`; on failure (ENOSPC in mid-record, say) cuts the
/// file back to `at`, so that a failed append leaves nothing behind.
pub(super) fn write_record(
    file: &File,
    path: &Path,
    at: u64,
    bytes: &[u8],
) -> Result<(), SpoolError> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, at).map_err(|e| {
        let _ = file.set_len(at);
        io_err(path, "write", e)
    })
}

pub(super) fn append(inner: &Inner, docs: &[NewDoc]) -> Result<u64, SpoolError> {
    // Encoded before taking the lock; only the seq and the CRC are done under it.
    let mut record = codec::docs_record(docs);
    let mut copies: Vec<StoredDoc> = Vec::with_capacity(docs.len());
    let last = {
        let mut st = lock(&inner.state);
        if docs.is_empty() {
            return Ok(st.next_seq);
        }
        make_room(inner, &mut st, record.len() as u64)?;
        let first = st.next_seq;
        record[DOCS_SEQ_AT..DOCS_SEQ_AT + 8].copy_from_slice(&first.to_le_bytes());
        frame::seal(&mut record);
        let active_first = st.active_first;
        let path = segment_path(&inner.cfg.dir, active_first);
        let at = st.segments[&active_first].len;
        let end = at + record.len() as u64;
        preallocate(inner, &mut st, end);
        if let Err(e) = write_record(&st.active, &path, at, &record) {
            // The file was cut back to `at`.
            st.allocated = at;
            return Err(e);
        }
        st.allocated = st.allocated.max(end);
        let n = docs.len() as u64;
        if let Some(seg) = st.segments.get_mut(&active_first) {
            seg.len += record.len() as u64;
            seg.live += n;
        }
        st.segment_bytes_total += record.len() as u64;
        let count = docs.len();
        for (i, d) in docs.iter().enumerate() {
            let target = Target::shared(&mut st.last_target, d.index, d.collection);
            copies.push(StoredDoc::new(first + i as u64, target, d.id, d.body));
        }
        reader::cache(
            &mut st,
            copies,
            active_first,
            at,
            record.len() as u64,
            count,
        );
        st.pending += n;
        st.next_seq += n;
        inner.bytes_written.fetch_add(record.len() as u64, Relaxed);
        if inner.cfg.sync != SyncMode::Always {
            return Ok(first);
        }
        st.next_seq - 1
    };
    sync_to(inner, last)?;
    Ok(last + 1 - docs.len() as u64)
}

/// How far ahead of the records the active segment is filled with zeros
/// (`SyncMode::Always`). An fdatasync that finds the file grown must also
/// write its inode, a second synchronous write; over blocks already there
/// only the data goes (ext4 on this machine's virtual disk: the `always x8`
/// benchmark went from about 1,600 to about 2,000 fdatasyncs a second).
/// The reader takes zeros after the last record as the end (frame.rs), so
/// the format is unchanged. The price: each byte of a segment is written
/// twice, zeros then records.
const PREALLOCATE: u64 = 1 << 20;
/// Zeros are written from this, a chunk at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Makes the active segment's size on disk reach `PREALLOCATE` past
/// `end` (at most the segment's size) with zeros, when `SyncMode::Always`
/// and `end` is past it. A failure leaves the file as it was: the record's
/// own write reports ENOSPC, if it is that.
fn preallocate(inner: &Inner, st: &mut State, end: u64) {
    use std::os::unix::fs::FileExt;
    let to = (end + PREALLOCATE).min(inner.cfg.segment_bytes);
    if inner.cfg.sync != SyncMode::Always || end <= st.allocated || to <= st.allocated {
        return;
    }
    let mut at = st.allocated;
    while at < to {
        let n = ((to - at) as usize).min(ZEROS.len());
        if st.active.write_all_at(&ZEROS[..n], at).is_err() {
            let _ = st.active.set_len(st.allocated);
            return;
        }
        at += n as u64;
    }
    inner.bytes_written.fetch_add(to - st.allocated, Relaxed);
    st.allocated = to;
}

/// Cuts the zeros past the active segment's records (before its last
/// fdatasync: rotation, close), so that a segment at rest ends with its
/// last record.
pub(super) fn trim(inner: &Inner, st: &mut State) -> Result<(), SpoolError> {
    let len = st.segments[&st.active_first].len;
    if st.allocated > len {
        st.active.set_len(len).map_err(|e| {
            io_err(
                &segment_path(&inner.cfg.dir, st.active_first),
                "truncate",
                e,
            )
        })?;
        st.allocated = len;
    }
    Ok(())
}

/// Checks the space left, and starts a new segment when the active one is full.
fn make_room(inner: &Inner, st: &mut State, need: u64) -> Result<(), SpoolError> {
    let cfg = &inner.cfg;
    if need + 2 * FILE_HEADER > cfg.max_bytes {
        // Full for ever: waiting for space would never end.
        return Err(SpoolError::Io(format!(
            "spool: {}: a record of {need} bytes can never fit in max_bytes ({})",
            cfg.dir.display(),
            cfg.max_bytes
        )));
    }
    let over = |st: &State| st.segment_bytes_total + st.journal.len + need > cfg.max_bytes;
    if over(st) {
        // The active segment is never deleted: when everything in it is
        // consumed, a new one lets it go.
        let active = &st.segments[&st.active_first];
        if active.live == 0 && active.len > FILE_HEADER {
            rotate(inner, st)?;
            journal::compact(inner, st)?;
        }
        if over(st) {
            return Err(SpoolError::Full);
        }
    }
    let len = st.segments[&st.active_first].len;
    if len > FILE_HEADER && len + need > cfg.segment_bytes {
        rotate(inner, st)?;
    }
    Ok(())
}

/// Closes the active segment (synced unless `SyncMode::None`) and starts
/// the next one at `next_seq`.
pub(super) fn rotate(inner: &Inner, st: &mut State) -> Result<(), SpoolError> {
    let dir = &inner.cfg.dir;
    let sync = inner.cfg.sync != SyncMode::None;
    trim(inner, st)?;
    if sync {
        st.active
            .sync_data()
            .map_err(|e| io_err(&segment_path(dir, st.active_first), "fdatasync", e))?;
        inner.fsyncs.fetch_add(1, Relaxed);
        mark_durable(inner, st.next_seq - 1);
    } else {
        st.unsynced.push(st.active_first);
    }
    let first = st.next_seq;
    let file = create_file(&segment_path(dir, first), SEGMENT_MAGIC, first, sync)?;
    if sync {
        sync_dir(dir)?;
    }
    st.segments.insert(
        first,
        Segment {
            first,
            len: FILE_HEADER,
            live: 0,
        },
    );
    st.segment_bytes_total += FILE_HEADER;
    st.active = Arc::new(file);
    st.active_first = first;
    st.allocated = FILE_HEADER;
    Ok(())
}

pub(super) fn mark_durable(inner: &Inner, upto: u64) {
    let mut s = lock(&inner.sync);
    s.durable = s.durable.max(upto);
}

/// How long a sync waits at most for the threads the one before served.
const MOST_GATHER: Duration = Duration::from_millis(1);

/// Returns once every seq up to `target` is on disk. One thread at a time
/// runs the fdatasync; the others wait for it, and a sync that covers them
/// (it covers all that was written when it started) serves them all.
pub(super) fn sync_to(inner: &Inner, target: u64) -> Result<(), SpoolError> {
    let mut s = lock(&inner.sync);
    s.waiting.push(target);
    s.came += 1;
    // A sync gathering its documents waits for the last of these (below).
    if s.gathering && s.came >= s.served {
        inner.gathered.notify_one();
    }
    let result = loop {
        if s.durable >= target {
            break Ok(());
        }
        if s.in_progress {
            s = inner.synced.wait(s).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        s.in_progress = true;
        // The threads the last sync served are writing their next
        // documents now: started at once, this sync would cover only the
        // threads that waited through the last one, about half of them,
        // and so would every sync after it. A moment (half a sync, at most
        // `MOST_GATHER`) lets them in; none is waited for when none was
        // served (a lone producer comes back itself).
        let until = Instant::now() + (s.last_took / 2).min(MOST_GATHER);
        s.gathering = true;
        while s.came < s.served {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = inner
                .gathered
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.gathering = false;
        drop(s);
        // Earlier segments were synced at rotation: the active one suffices.
        let (file, upto, path) = {
            let st = lock(&inner.state);
            (
                st.active.clone(),
                st.next_seq - 1,
                segment_path(&inner.cfg.dir, st.active_first),
            )
        };
        let started = Instant::now();
        let synced = file.sync_data();
        s = lock(&inner.sync);
        s.in_progress = false;
        s.last_took = started.elapsed();
        inner.synced.notify_all();
        match synced {
            Ok(()) => {
                inner.fsyncs.fetch_add(1, Relaxed);
                s.durable = s.durable.max(upto);
                s.served = s.waiting.iter().filter(|&&t| t <= upto).count();
                s.came = 0;
            }
            Err(e) => break Err(io_err(&path, "fdatasync", e)),
        }
    };
    if let Some(i) = s.waiting.iter().position(|&t| t == target) {
        s.waiting.swap_remove(i);
    }
    result
}

/// `SyncMode::Interval`'s thread: an fdatasync of what was written, at most
/// once per interval, until the spool is closed or dropped. A failure
/// shows as a `durable_seq` that no longer moves.
pub(super) fn background(inner: &Inner, every: Duration) {
    let mut stop = lock(&inner.stop);
    let mut last = Instant::now();
    loop {
        if *stop {
            return;
        }
        let left = every.saturating_sub(last.elapsed());
        if !left.is_zero() {
            stop = inner
                .stop_cv
                .wait_timeout(stop, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        drop(stop);
        let _ = sync_written(inner);
        last = Instant::now();
        stop = lock(&inner.stop);
    }
}

/// Syncs the segments and the journal if anything was written since the
/// last sync.
fn sync_written(inner: &Inner) -> Result<(), SpoolError> {
    let (target, journal) = {
        let mut st = lock(&inner.state);
        let journal = st.journal.dirty.then(|| st.journal.file.clone());
        st.journal.dirty = false;
        (st.next_seq - 1, journal)
    };
    // Documents first: an outcome on disk whose document is not would
    // come back as a report without its document.
    sync_to(inner, target)?;
    if let Some(file) = journal {
        journal::sync_journal(inner, &file)?;
    }
    Ok(())
}

/// `close`: everything written is synced.
pub(super) fn sync_everything(inner: &Inner) -> Result<(), SpoolError> {
    let dir = &inner.cfg.dir;
    let mut st = lock(&inner.state);
    for first in std::mem::take(&mut st.unsynced) {
        let path = segment_path(dir, first);
        File::open(&path)
            .and_then(|f| f.sync_data())
            .map_err(|e| io_err(&path, "fdatasync", e))?;
        inner.fsyncs.fetch_add(1, Relaxed);
    }
    trim(inner, &mut st)?;
    st.active
        .sync_data()
        .map_err(|e| io_err(&segment_path(dir, st.active_first), "fdatasync", e))?;
    st.journal.file.sync_data().map_err(|e| {
        io_err(
            &journal::journal_path(dir, st.journal.number),
            "fdatasync",
            e,
        )
    })?;
    inner.fsyncs.fetch_add(2, Relaxed);
    mark_durable(inner, st.next_seq - 1);
    Ok(())
}
