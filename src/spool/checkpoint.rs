//! `META` (the format version of the directory) and `CHECKPOINT` (the
//! floor: every seq below it is reported and consumed, its segment deleted
//! or about to be).
//!
//! CHECKPOINT has two 4 KiB slots, written in turn, each
//! `magic[8] | version u32 | 0 u32 | generation u64 | floor u64 | crc32c u32`
//! (the CRC over the 32 bytes before it): a write torn by a crash damages
//! one slot only, and the valid slot of the highest generation wins. Both
//! lost is not fatal: the floor then comes from the segments present, and
//! documents that were consumed in a segment caught between the checkpoint
//! and its unlink may come back once (they keep their `_id`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::frame::FORMAT_VERSION;
use super::{io_err, SpoolError};

const META_PREFIX: &str = "libkuzzle-spool ";
const SLOT: u64 = 4096;
const MAGIC: &[u8; 8] = b"KZSPCKPT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Checkpoint {
    pub generation: u64,
    pub floor: u64,
}

/// Checks META, or writes it in a directory that has none. `Ok(true)` when
/// META was there.
pub(super) fn check_meta(dir: &Path) -> Result<bool, SpoolError> {
    let path = dir.join("META");
    match fs::read(&path) {
        Ok(bytes) if bytes.iter().any(|&b| b != 0) => {
            let text = String::from_utf8_lossy(&bytes);
            let version = text
                .trim_end()
                .strip_prefix(META_PREFIX)
                .and_then(|v| v.parse::<u32>().ok());
            match version {
                Some(FORMAT_VERSION) => Ok(true),
                Some(v) => Err(SpoolError::Version(format!(
                    "{}: spool format version {v}, this library reads version {FORMAT_VERSION}",
                    path.display()
                ))),
                None => Err(SpoolError::Version(format!(
                    "{}: not a libkuzzle spool (unrecognised META)",
                    path.display()
                ))),
            }
        }
        // Empty or zeroed (a file system that lost the data of a rename
        // that was not synced): damage, written again.
        Ok(_) => write_meta(dir).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_meta(dir).map(|()| false),
        Err(e) => Err(io_err(&path, "read", e)),
    }
}

fn write_meta(dir: &Path) -> Result<(), SpoolError> {
    let tmp = dir.join("META.tmp");
    let path = dir.join("META");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
    f.write_all(format!("{META_PREFIX}{FORMAT_VERSION}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, "write", e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, "rename", e))?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "fsync", e))
}

/// Opens CHECKPOINT (creating it) and reads the winning slot, if any.
pub(super) fn open(dir: &Path) -> Result<(File, Option<Checkpoint>), SpoolError> {
    let path = dir.join("CHECKPOINT");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(&path, "open", e))?;
    let len = file.metadata().map_err(|e| io_err(&path, "stat", e))?.len();
    let mut best: Option<Checkpoint> = None;
    for slot in 0..2 {
        let mut buf = [0u8; 36];
        if len < slot * SLOT + buf.len() as u64 {
            continue;
        }
        file.read_exact_at(&mut buf, slot * SLOT)
            .map_err(|e| io_err(&path, "read", e))?;
        let crc = u32::from_le_bytes(buf[32..36].try_into().unwrap_or_default());
        if &buf[..8] != MAGIC || crc32c::crc32c(&buf[..32]) != crc {
            continue;
        }
        let version = u32::from_le_bytes(buf[8..12].try_into().unwrap_or_default());
        if version != FORMAT_VERSION {
            return Err(SpoolError::Version(format!(
                "{}: checkpoint format version {version}, this library reads version {FORMAT_VERSION}",
                path.display()
            )));
        }
        let cp = Checkpoint {
            generation: u64::from_le_bytes(buf[16..24].try_into().unwrap_or_default()),
            floor: u64::from_le_bytes(buf[24..32].try_into().unwrap_or_default()),
        };
        if best.is_none_or(|b| cp.generation > b.generation) {
            best = Some(cp);
        }
    }
    Ok((file, best))
}

/// Writes `cp` in its slot and waits for it to be on disk.
pub(super) fn write(file: &File, dir: &Path, cp: Checkpoint) -> Result<(), SpoolError> {
    let mut buf = [0u8; 36];
    buf[..8].copy_from_slice(MAGIC);
    buf[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf[16..24].copy_from_slice(&cp.generation.to_le_bytes());
    buf[24..32].copy_from_slice(&cp.floor.to_le_bytes());
    let crc = crc32c::crc32c(&buf[..32]);
    buf[32..36].copy_from_slice(&crc.to_le_bytes());
    let path = dir.join("CHECKPOINT");
    file.write_all_at(&buf, (cp.generation % 2) * SLOT)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_err(&path, "write", e))
}
