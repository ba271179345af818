//! `read_pending`: documents read back from the segments in chunks through
//! a cursor, so memory does not grow with the backlog on disk.

use std::fs::File;

use super::codec;
use super::frame::{self, Step, FILE_HEADER, KIND_DOCS};
use super::writer::segment_path;
use super::{io_err, lock, Cursor, Inner, SpoolError, State, StoredDoc, Target};

pub(super) fn read_pending(
    inner: &Inner,
    max_docs: usize,
    max_bytes: usize,
) -> Result<Vec<StoredDoc>, SpoolError> {
    let mut guard = lock(&inner.state);
    let st: &mut State = &mut guard;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let full = |out: &Vec<StoredDoc>, bytes: usize| {
        out.len() >= max_docs || (!out.is_empty() && bytes >= max_bytes)
    };
    while !full(&out, bytes) {
        let Some(doc) = st.requeued.pop_front() else {
            break;
        };
        // One that got its outcome meanwhile is done.
        if !st.done.contains(doc.seq) {
            bytes += doc.body().len();
            out.push(doc);
        }
    }
    while !full(&out, bytes) {
        // From the tail cache once the cursor has caught up with it.
        while st.tail.front().is_some_and(|(d, _)| d.seq <= st.passed) {
            drop_front(st);
        }
        if st.tail.front().is_some_and(|(d, _)| d.seq == st.passed + 1) {
            if let Some((doc, after)) = drop_front(st) {
                st.passed = doc.seq;
                st.cursor = after;
                if doc.seq >= st.floor && !st.done.contains(doc.seq) {
                    bytes += doc.body().len();
                    out.push(doc);
                }
            }
            continue;
        }
        let Some((&first, seg)) = st.segments.range(st.cursor.segment..).next() else {
            break;
        };
        if first != st.cursor.segment {
            st.cursor = Cursor {
                segment: first,
                offset: FILE_HEADER,
                skip: 0,
            };
        }
        let end = seg.len;
        let active = first == st.active_first;
        if st.cursor.offset >= end {
            if active {
                break;
            }
            st.cursor = Cursor {
                segment: first + 1,
                offset: FILE_HEADER,
                skip: 0,
            };
            continue;
        }
        if !active && st.reading.as_ref().is_none_or(|(f, _)| *f != first) {
            let path = segment_path(&inner.cfg.dir, first);
            let file = File::open(&path).map_err(|e| io_err(&path, "open", e))?;
            st.reading = Some((first, file));
        }
        let file: &File = match &st.reading {
            Some((_, file)) if !active => file,
            _ => &st.active,
        };
        let step = frame::read_step(&mut st.ahead, first, file, st.cursor.offset, end)
            .map_err(|e| io_err(&segment_path(&inner.cfg.dir, first), "read", e))?;
        match step {
            Step::Record {
                kind: KIND_DOCS,
                payload,
                next,
                ..
            } => {
                let docs = codec::docs(payload).into_iter().flatten();
                let mut stopped_at = None;
                for (i, d) in docs.enumerate().skip(st.cursor.skip as usize) {
                    if full(&out, bytes) {
                        stopped_at = Some(i);
                        break;
                    }
                    st.passed = st.passed.max(d.seq);
                    if d.seq < st.floor || st.done.contains(d.seq) {
                        continue;
                    }
                    bytes += d.body().len();
                    let target = Target::shared(&mut st.last_target, d.index, d.collection);
                    out.push(StoredDoc {
                        seq: d.seq,
                        target,
                        text: d.id_body.into(),
                        id_len: d.id_len as u32,
                    });
                }
                match stopped_at {
                    Some(i) => st.cursor.skip = i as u32,
                    None => {
                        st.cursor.offset = next;
                        st.cursor.skip = 0;
                    }
                }
            }
            Step::Record { next, .. } | Step::Skipped { next, .. } => {
                st.cursor.offset = next;
                st.cursor.skip = 0;
            }
            // Damage counted at open: what is after it is lost.
            Step::End { .. } => {
                st.cursor.offset = end;
                st.cursor.skip = 0;
            }
        }
    }
    Ok(out)
}

/// Bodies (and ids) kept in the tail cache at most.
const TAIL_BYTES: usize = 1 << 20;
const TAIL_DOCS: usize = 8192;

/// Keeps copies of the documents just appended (one record, at `at` in
/// segment `segment`), dropping the oldest past the budget.
pub(super) fn cache(
    st: &mut State,
    docs: Vec<StoredDoc>,
    segment: u64,
    at: u64,
    record_len: u64,
    count: usize,
) {
    for (i, doc) in docs.into_iter().enumerate() {
        let after = if i + 1 < count {
            Cursor {
                segment,
                offset: at,
                skip: i as u32 + 1,
            }
        } else {
            Cursor {
                segment,
                offset: at + record_len,
                skip: 0,
            }
        };
        st.tail_bytes += doc.text.len();
        st.tail.push_back((doc, after));
    }
    while st.tail_bytes > TAIL_BYTES || st.tail.len() > TAIL_DOCS {
        drop_front(st);
    }
}

fn drop_front(st: &mut State) -> Option<(StoredDoc, Cursor)> {
    let (doc, after) = st.tail.pop_front()?;
    st.tail_bytes -= doc.text.len();
    Some((doc, after))
}
