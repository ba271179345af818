//! The payloads of the three record kinds (little endian):
//! - DOCS: `firstSeq u64 | count u32`, then per document the lengths
//!   `index u32 | collection u32 | id u32 | body u32`, then those bytes; the
//!   documents have consecutive seqs. One record per append, so a batch is
//!   on disk entirely or not at all.
//! - OUTCOMES: `count u32`, then per outcome `seq u64 | status u16 |
//!   flags u8 | version u64 | reasonLen u32 | reason`.
//! - CONSUMED: `count u32`, then inclusive ranges `first u64 | last u64`.

use super::frame::{new_record, KIND_CONSUMED, KIND_DOCS, KIND_OUTCOMES, RECORD_HEADER};
use super::{NewDoc, Outcome};

const OK: u8 = 1;
const IN_DOUBT: u8 = 2;
const HAS_VERSION: u8 = 4;
const HAS_CREATED: u8 = 8;
const CREATED: u8 = 16;
const HAS_REASON: u8 = 32;

/// Where the first seq sits in a DOCS record (patched in under the lock).
pub(super) const DOCS_SEQ_AT: usize = RECORD_HEADER;

/// A DOCS record, its first seq still 0, not sealed.
pub(super) fn docs_record(docs: &[NewDoc]) -> Vec<u8> {
    let size: usize = docs
        .iter()
        .map(|d| 16 + d.index.len() + d.collection.len() + d.id.len() + d.body.len())
        .sum();
    let mut buf = new_record(KIND_DOCS, 12 + size);
    put_u64(&mut buf, 0);
    put_u32(&mut buf, docs.len() as u32);
    for d in docs {
        for s in [d.index, d.collection, d.id, d.body] {
            put_u32(&mut buf, s.len() as u32);
        }
        for s in [d.index, d.collection, d.id, d.body] {
            buf.extend_from_slice(s.as_bytes());
        }
    }
    buf
}

/// A document of a DOCS payload, borrowed from it.
pub(super) struct DocRef<'a> {
    pub seq: u64,
    pub index: &'a str,
    pub collection: &'a str,
    /// The `_id` literal then the body: adjacent in the record.
    pub id_body: &'a str,
    pub id_len: usize,
}

impl<'a> DocRef<'a> {
    pub fn id(&self) -> &'a str {
        &self.id_body[..self.id_len]
    }
    pub fn body(&self) -> &'a str {
        &self.id_body[self.id_len..]
    }
}

/// The documents of a DOCS payload, read one at a time without allocating.
/// Its lengths are checked whole before the first is handed out; a
/// document that is not UTF-8 (a CRC-valid record cannot be, short of a
/// bug) ends the walk and sets `broken`.
#[derive(Clone)]
pub(super) struct Docs<'a> {
    seq: u64,
    left: u32,
    r: Reader<'a>,
    pub broken: bool,
}

/// `None`: not a DOCS payload as written.
pub(super) fn docs(payload: &[u8]) -> Option<Docs<'_>> {
    let mut r = Reader(payload);
    let first = r.u64()?;
    let count = r.u32()?;
    first.checked_add(count as u64)?;
    let docs = Docs {
        seq: first,
        left: count,
        r: Reader(r.0),
        broken: false,
    };
    for _ in 0..count {
        let lens = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
        r.take(lens.iter().map(|&l| l as usize).sum())?;
    }
    r.0.is_empty().then_some(docs)
}

impl<'a> Iterator for Docs<'a> {
    type Item = DocRef<'a>;

    fn next(&mut self) -> Option<DocRef<'a>> {
        if self.left == 0 {
            return None;
        }
        let doc = self.read();
        self.left -= 1;
        self.seq += 1;
        if doc.is_none() {
            self.broken = true;
            self.left = 0;
        }
        doc
    }
}

impl<'a> Docs<'a> {
    fn read(&mut self) -> Option<DocRef<'a>> {
        let lens = [self.r.u32()?, self.r.u32()?, self.r.u32()?, self.r.u32()?];
        let [a, b, c, d] = lens.map(|l| l as usize);
        // One UTF-8 pass over the four, then cuts at char boundaries.
        let all = std::str::from_utf8(self.r.take(a + b + c + d)?).ok()?;
        Some(DocRef {
            seq: self.seq,
            index: all.get(..a)?,
            collection: all.get(a..a + b)?,
            id_body: all.get(a + b..)?,
            id_len: all.get(a + b..a + b + c).map(str::len)?,
        })
    }
}

pub(super) fn outcomes_record(outcomes: &[&Outcome]) -> Vec<u8> {
    let reasons: usize = outcomes
        .iter()
        .map(|o| o.reason.as_ref().map_or(0, |r| r.len()))
        .sum();
    let mut buf = new_record(KIND_OUTCOMES, 4 + outcomes.len() * 23 + reasons);
    put_u32(&mut buf, outcomes.len() as u32);
    for o in outcomes {
        let mut flags = 0;
        for (on, bit) in [
            (o.ok, OK),
            (o.in_doubt, IN_DOUBT),
            (o.version.is_some(), HAS_VERSION),
            (o.created.is_some(), HAS_CREATED),
            (o.created == Some(true), CREATED),
            (o.reason.is_some(), HAS_REASON),
        ] {
            if on {
                flags |= bit;
            }
        }
        put_u64(&mut buf, o.seq);
        buf.extend_from_slice(&o.status.to_le_bytes());
        buf.push(flags);
        put_u64(&mut buf, o.version.unwrap_or(0));
        let reason = o.reason.as_deref().unwrap_or("");
        put_u32(&mut buf, reason.len() as u32);
        buf.extend_from_slice(reason.as_bytes());
    }
    buf
}

pub(super) fn decode_outcomes(payload: &[u8]) -> Option<Vec<Outcome>> {
    let mut r = Reader(payload);
    let count = r.u32()?;
    let mut out = Vec::with_capacity((count as usize).min(payload.len() / 23));
    for _ in 0..count {
        let seq = r.u64()?;
        let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let flags = r.take(1)?[0];
        let version = r.u64()?;
        let reason_len = r.u32()?;
        let reason = r.str(reason_len)?;
        out.push(Outcome {
            seq,
            ok: flags & OK != 0,
            status,
            version: (flags & HAS_VERSION != 0).then_some(version),
            created: (flags & HAS_CREATED != 0).then_some(flags & CREATED != 0),
            reason: (flags & HAS_REASON != 0).then(|| reason.to_owned()),
            in_doubt: flags & IN_DOUBT != 0,
        });
    }
    r.0.is_empty().then_some(out)
}

pub(super) fn consumed_record(ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut buf = new_record(KIND_CONSUMED, 4 + ranges.len() * 16);
    put_u32(&mut buf, ranges.len() as u32);
    for &(first, last) in ranges {
        put_u64(&mut buf, first);
        put_u64(&mut buf, last);
    }
    buf
}

pub(super) fn decode_consumed(payload: &[u8]) -> Option<Vec<(u64, u64)>> {
    let mut r = Reader(payload);
    let count = r.u32()?;
    let mut out = Vec::with_capacity((count as usize).min(payload.len() / 16));
    for _ in 0..count {
        out.push((r.u64()?, r.u64()?));
    }
    r.0.is_empty().then_some(out)
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[derive(Clone)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self, len: u32) -> Option<&'a str> {
        std::str::from_utf8(self.take(len as usize)?).ok()
    }
}
