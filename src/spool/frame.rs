//! Files and records on disk.
//!
//! A segment or journal file starts with a 32-byte header: an 8-byte magic,
//! the format version (u32), 4 reserved bytes, the file's number (first seq
//! of a segment, sequence number of a journal; u64), a CRC32C of the 24
//! bytes before it, and 4 bytes of padding. Then records, each
//! `crc32c u32 | len u32 | kind u8 | payload[len]`, little endian, the CRC
//! covering `len | kind | payload`, written with one positioned write.
//!
//! Reading never trusts a length it has not checked: a record is taken only
//! when it is complete and its CRC matches; past a bad one the reader looks
//! for the next position where a valid record starts (payloads are JSON
//! text, whose bytes never make a plausible length, so this is cheap), and
//! what has no valid record after it is a torn or zeroed tail.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(super) const FORMAT_VERSION: u32 = 1;
pub(super) const FILE_HEADER: u64 = 32;
pub(super) const RECORD_HEADER: usize = 9;
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"KZSPSEG\0";
pub(super) const JOURNAL_MAGIC: &[u8; 8] = b"KZSPOUT\0";

pub(super) const KIND_DOCS: u8 = 1;
pub(super) const KIND_OUTCOMES: u8 = 2;
pub(super) const KIND_CONSUMED: u8 = 3;

/// No record is larger: a bigger length is damage.
const MAX_RECORD: u64 = 1 << 30;
/// How much is read at a time while looking for the next valid record.
const RESYNC_WINDOW: usize = 64 * 1024;

pub(super) fn file_header(magic: &[u8; 8], number: u64) -> [u8; FILE_HEADER as usize] {
    let mut h = [0u8; FILE_HEADER as usize];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&number.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

pub(super) enum Header {
    /// Intact, of our version.
    Ok,
    /// Intact, of another version.
    Version(u32),
    /// Shorter than a header: a crash right after the file was created.
    Short,
    Damaged,
}

pub(super) fn read_header(file: &File, magic: &[u8; 8]) -> io::Result<Header> {
    let mut h = [0u8; FILE_HEADER as usize];
    if file.metadata()?.len() < FILE_HEADER {
        return Ok(Header::Short);
    }
    file.read_exact_at(&mut h, 0)?;
    let crc = u32::from_le_bytes(h[24..28].try_into().unwrap_or_default());
    if &h[..8] != magic || crc32c::crc32c(&h[..24]) != crc {
        return Ok(Header::Damaged);
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    Ok(if version == FORMAT_VERSION {
        Header::Ok
    } else {
        Header::Version(version)
    })
}

/// A record's bytes with room for its header; `seal` fills the header in.
pub(super) fn new_record(kind: u8, payload_hint: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(RECORD_HEADER + payload_hint);
    buf.extend_from_slice(&[0u8; 8]);
    buf.push(kind);
    buf
}

/// Writes the length and the CRC of a record built on `new_record`.
pub(super) fn seal(buf: &mut [u8]) {
    let len = (buf.len() - RECORD_HEADER) as u32;
    buf[4..8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&buf[4..]);
    buf[..4].copy_from_slice(&crc.to_le_bytes());
}

pub(super) enum Step<'a> {
    /// A valid record (its payload borrowed from the read-ahead); the next
    /// one starts at `next`.
    Record {
        kind: u8,
        payload: &'a [u8],
        next: u64,
    },
    /// Damage up to `next`, where a valid record starts.
    Skipped { next: u64 },
    /// Nothing valid from `at` to the end: `at == end`, or a torn, zeroed or
    /// garbled tail starts there.
    End { at: u64 },
}

/// What a reader read of one file, ahead of the record it wants: small
/// records read one by one would cost two `pread`s each; this reads
/// `READ_AHEAD` bytes at a time. Only bytes below the readable end at the
/// time of the read are kept, and those never change (files are appended
/// to, and cut only at or past that end), so what is kept stays right.
#[derive(Default)]
pub(super) struct ReadAhead {
    /// The file the bytes are from (a segment's first seq, say).
    file: Option<u64>,
    start: u64,
    buf: Vec<u8>,
}

const READ_AHEAD: usize = 256 * 1024;

impl ReadAhead {
    /// Bytes `at..at + len` of `file` (known as `id`), which lie below `end`.
    fn get(&mut self, id: u64, file: &File, at: u64, len: usize, end: u64) -> io::Result<&[u8]> {
        let kept = self.file == Some(id)
            && at >= self.start
            && at + len as u64 <= self.start + self.buf.len() as u64;
        if !kept {
            let n = (len.max(READ_AHEAD) as u64).min(end - at) as usize;
            self.file = None;
            self.buf.resize(n, 0);
            file.read_exact_at(&mut self.buf, at)?;
            (self.file, self.start) = (Some(id), at);
            if self.buf.capacity() > 4 * READ_AHEAD {
                // Once past a huge record, the next reads are small again.
                self.buf.shrink_to(n.max(READ_AHEAD));
            }
        }
        let from = (at - self.start) as usize;
        Ok(&self.buf[from..from + len])
    }
}

/// Reads the record at `at` in a file (known to `ahead` as `id`) whose
/// readable part ends at `end`.
pub(super) fn read_step<'r>(
    ahead: &'r mut ReadAhead,
    id: u64,
    file: &File,
    at: u64,
    end: u64,
) -> io::Result<Step<'r>> {
    if at >= end {
        return Ok(Step::End { at });
    }
    if let Some((kind, len, next)) = checked_at(ahead, id, file, at, end)? {
        let from = (at - ahead.start) as usize + RECORD_HEADER;
        return Ok(Step::Record {
            kind,
            payload: &ahead.buf[from..from + len],
            next,
        });
    }
    // Look for the first position after `at` where a valid record starts.
    let mut from = at + 1;
    let mut window = vec![0u8; RESYNC_WINDOW];
    while from + (RECORD_HEADER as u64) <= end {
        let n = ((end - from) as usize).min(RESYNC_WINDOW);
        file.read_exact_at(&mut window[..n], from)?;
        let last = n.saturating_sub(RECORD_HEADER - 1);
        for i in 0..last {
            let pos = from + i as u64;
            if plausible(&window[i..i + RECORD_HEADER], pos, end) && intact_at(file, pos, end)? {
                return Ok(Step::Skipped { next: pos });
            }
        }
        if last == 0 {
            break;
        }
        from += last as u64;
    }
    Ok(Step::End { at })
}

fn plausible(header: &[u8], pos: u64, end: u64) -> bool {
    let len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) as u64;
    matches!(header[8], KIND_DOCS | KIND_OUTCOMES | KIND_CONSUMED)
        && len <= MAX_RECORD
        && pos + RECORD_HEADER as u64 + len <= end
}

/// The kind, payload length and end of the record at `pos` when it is
/// complete and intact; its bytes are then in `ahead`.
fn checked_at(
    ahead: &mut ReadAhead,
    id: u64,
    file: &File,
    pos: u64,
    end: u64,
) -> io::Result<Option<(u8, usize, u64)>> {
    if pos + RECORD_HEADER as u64 > end {
        return Ok(None);
    }
    let header = ahead.get(id, file, pos, RECORD_HEADER, end)?;
    if !plausible(header, pos, end) {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) as usize;
    let record = ahead.get(id, file, pos, RECORD_HEADER + len, end)?;
    let stored = u32::from_le_bytes(record[..4].try_into().unwrap_or_default());
    if crc32c::crc32c(&record[4..]) != stored {
        return Ok(None);
    }
    Ok(Some((record[8], len, pos + (RECORD_HEADER + len) as u64)))
}

/// Whether a complete, intact record starts at `pos` (while resyncing).
fn intact_at(file: &File, pos: u64, end: u64) -> io::Result<bool> {
    if pos + RECORD_HEADER as u64 > end {
        return Ok(false);
    }
    let mut header = [0u8; RECORD_HEADER];
    file.read_exact_at(&mut header, pos)?;
    if !plausible(&header, pos, end) {
        return Ok(false);
    }
    let len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) as usize;
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, pos + RECORD_HEADER as u64)?;
    let mut crc = crc32c::crc32c(&header[4..]);
    crc = crc32c::crc32c_append(crc, &payload);
    Ok(crc == u32::from_le_bytes(header[..4].try_into().unwrap_or_default()))
}

/// Whether the bytes at `at` frame a complete record (whatever its CRC):
/// a whole record that fails is damage, a short or zeroed one a torn write.
pub(super) fn complete_at(file: &File, at: u64, end: u64) -> io::Result<bool> {
    if at + RECORD_HEADER as u64 > end {
        return Ok(false);
    }
    let mut header = [0u8; RECORD_HEADER];
    file.read_exact_at(&mut header, at)?;
    Ok(plausible(&header, at, end))
}
