//! `read_pending`: documents read back from the segments in chunks through
//! a cursor, so memory does not grow with the backlog on disk.

use std::fs::File;

use super::codec::{self, DocRef};
use super::frame::{self, Step, FILE_HEADER, KIND_DOCS};
use super::writer::segment_path;
use super::{io_err, lock, Cursor, Inner, SpoolError, State, StoredDoc};

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
            bytes += doc.body.len();
            out.push(doc);
        }
    }
    while !full(&out, bytes) {
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
        let path = segment_path(&inner.cfg.dir, first);
        if !active && st.reading.as_ref().is_none_or(|(f, _)| *f != first) {
            let file = File::open(&path).map_err(|e| io_err(&path, "open", e))?;
            st.reading = Some((first, file));
        }
        let file: &File = match &st.reading {
            Some((_, file)) if !active => file,
            _ => &st.active,
        };
        let step =
            frame::read_step(file, st.cursor.offset, end).map_err(|e| io_err(&path, "read", e))?;
        match step {
            Step::Record {
                kind: KIND_DOCS,
                payload,
                next,
                ..
            } => {
                let docs = codec::decode_docs(&payload).unwrap_or_default();
                let mut stopped_at = None;
                for (i, d) in docs.iter().enumerate().skip(st.cursor.skip as usize) {
                    if full(&out, bytes) {
                        stopped_at = Some(i);
                        break;
                    }
                    if d.seq < st.floor || st.done.contains(d.seq) {
                        continue;
                    }
                    bytes += d.body.len();
                    out.push(stored(d));
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

fn stored(d: &DocRef<'_>) -> StoredDoc {
    StoredDoc {
        seq: d.seq,
        index: d.index.to_owned(),
        collection: d.collection.to_owned(),
        id: d.id.to_owned(),
        body: d.body.to_owned(),
    }
}
