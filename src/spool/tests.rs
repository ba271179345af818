//! Unit tests of the spool: round trips, reopen after a simulated crash,
//! every kind of damage, the lock, versions, space, group commit, memory.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::tests_damage::flip;
use super::*;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under the system's temporary directory, removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("kuzzle-spool-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn config(dir: &Path, sync: SyncMode) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 64 * 1024,
        sync,
    }
}

pub(super) fn open_at(dir: &Path) -> (Spool, Vec<Redelivery>) {
    Spool::open(config(dir, SyncMode::None)).expect("open")
}

pub(super) fn id_of(n: u64) -> String {
    format!("\"doc-{n}\"")
}

pub(super) fn body_of(n: u64) -> String {
    format!("{{\"n\":{n},\"text\":\"some text to make a body\"}}")
}

/// Appends one document per call, named by its position `n`; returns seqs.
pub(super) fn append_each(spool: &Spool, from: u64, count: u64) -> Vec<u64> {
    (from..from + count)
        .map(|n| {
            let (id, body) = (id_of(n), body_of(n));
            spool
                .append(&[NewDoc {
                    index: "idx",
                    collection: "col",
                    id: &id,
                    body: &body,
                }])
                .expect("append")
        })
        .collect()
}

pub(super) fn ok(seq: u64) -> Outcome {
    Outcome {
        seq,
        ok: true,
        status: 200,
        version: Some(1),
        created: Some(true),
        reason: None,
        in_doubt: false,
    }
}

pub(super) fn failed(seq: u64) -> Outcome {
    Outcome {
        seq,
        ok: false,
        status: 400,
        version: None,
        created: None,
        reason: Some("bad \u{e9}".into()),
        in_doubt: true,
    }
}

pub(super) fn drain(spool: &Spool) -> Vec<StoredDoc> {
    let mut all = Vec::new();
    loop {
        let chunk = spool.read_pending(1000, usize::MAX).expect("read_pending");
        if chunk.is_empty() {
            return all;
        }
        all.extend(chunk);
    }
}

pub(super) fn seqs(docs: &[StoredDoc]) -> Vec<u64> {
    docs.iter().map(|d| d.seq).collect()
}

pub(super) fn only_file(dir: &Path, prefix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    found.sort();
    assert_eq!(found.len(), 1, "{prefix}* in {}: {found:?}", dir.display());
    found.pop().unwrap()
}

/// Copies the spool's files, as a power cut or a backup would see them.
pub(super) fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

pub(super) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

#[test]
fn round_trip_and_seqs_continue() {
    let tmp = TempDir::new("roundtrip");
    let (spool, redo) = open_at(tmp.path());
    assert!(redo.is_empty());
    assert_eq!(append_each(&spool, 1, 10), (1..=10).collect::<Vec<_>>());
    let batch: Vec<(String, String)> = (11..=15).map(|n| (id_of(n), body_of(n))).collect();
    let docs: Vec<NewDoc> = batch
        .iter()
        .map(|(id, body)| NewDoc {
            index: "idx2",
            collection: "col2",
            id,
            body,
        })
        .collect();
    assert_eq!(spool.append(&docs).unwrap(), 11);
    assert_eq!(spool.stats().pending, 15);

    let got = spool.read_pending(100, usize::MAX).unwrap();
    assert_eq!(seqs(&got), (1..=15).collect::<Vec<_>>());
    assert_eq!(
        got[0],
        StoredDoc::new(
            1,
            Arc::new(Target {
                index: "idx".into(),
                collection: "col".into()
            }),
            &id_of(1),
            &body_of(1)
        )
    );
    assert_eq!(
        (
            got[12].index(),
            got[12].id().to_string(),
            got[12].body().to_string()
        ),
        ("idx2", id_of(13), body_of(13))
    );
    assert!(
        spool.read_pending(100, usize::MAX).unwrap().is_empty(),
        "handed out once"
    );

    let outcomes: Vec<Outcome> = (1..=15)
        .map(|s| if s % 2 == 0 { failed(s) } else { ok(s) })
        .collect();
    spool.record_outcomes(&outcomes).unwrap();
    let st = spool.stats();
    assert_eq!((st.pending, st.unconsumed), (0, 15));
    spool.consumed(&(1..=15).collect::<Vec<_>>()).unwrap();
    assert_eq!(spool.stats().unconsumed, 0);
    spool.close().unwrap();

    let (spool, redo) = open_at(tmp.path());
    assert!(redo.is_empty());
    assert!(drain(&spool).is_empty());
    assert_eq!(spool.stats().next_seq, 16);
    assert_eq!(append_each(&spool, 16, 1), [16]);
    spool.close().unwrap();
}

#[test]
fn reopen_after_drop_gives_back_pending_and_unconsumed_reports() {
    let tmp = TempDir::new("drop");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 20);
    assert_eq!(
        seqs(&spool.read_pending(10, usize::MAX).unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    // Reported out of order: the report order is what comes back.
    spool.record_outcomes(&[ok(3), failed(1)]).unwrap();
    spool
        .record_outcomes(&(2..=10).filter(|&s| s != 3).map(ok).collect::<Vec<_>>())
        .unwrap();
    spool.consumed(&[1, 2, 3, 4, 5]).unwrap();
    // 11 and 12 handed out, in flight when the process dies.
    assert_eq!(seqs(&spool.read_pending(2, usize::MAX).unwrap()), [11, 12]);
    drop(spool);

    let (spool, redo) = open_at(tmp.path());
    let redo_seqs: Vec<u64> = redo.iter().map(|r| r.doc.seq).collect();
    assert_eq!(redo_seqs, [6, 7, 8, 9, 10]);
    assert_eq!(
        redo[0].doc,
        ReportedDoc {
            seq: 6,
            index: "idx".into(),
            collection: "col".into(),
            id: id_of(6)
        }
    );
    assert_eq!(redo[0].outcome, ok(6));
    assert_eq!(seqs(&drain(&spool)), (11..=20).collect::<Vec<_>>());
    let st = spool.stats();
    assert_eq!((st.pending, st.unconsumed, st.next_seq), (10, 5, 21));
    assert_eq!(st.durable_seq, 20, "open syncs what it found");
    drop(spool);

    // Not consumed yet: they come back again, and keep their order.
    let (spool, redo) = open_at(tmp.path());
    assert_eq!(
        redo.iter().map(|r| r.doc.seq).collect::<Vec<_>>(),
        [6, 7, 8, 9, 10]
    );
    let (spool2, redo) = {
        spool.record_outcomes(&[failed(12), ok(11)]).unwrap();
        drop(spool);
        open_at(tmp.path())
    };
    let order: Vec<u64> = redo.iter().map(|r| r.doc.seq).collect();
    assert_eq!(order, [6, 7, 8, 9, 10, 12, 11]);
    assert_eq!(redo[5].outcome, failed(12));
    spool2.close().unwrap();
}

#[test]
fn copies_taken_at_any_moment_open_with_nothing_lost() {
    let tmp = TempDir::new("copies");
    let copy = TempDir::new("copies-copy");
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.segment_bytes = 2048; // many rotations and deletions
    let (spool, _) = Spool::open(cfg).unwrap();
    let mut accepted: BTreeSet<u64> = BTreeSet::new();
    let mut consumed: BTreeSet<u64> = BTreeSet::new();
    let mut next = 1;
    for round in 0..40u64 {
        accepted.extend(append_each(&spool, next, 7));
        next += 7;
        let got = spool.read_pending(5, usize::MAX).unwrap();
        spool
            .record_outcomes(&got.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
            .unwrap();
        if round % 3 != 0 {
            let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
            spool.consumed(&seqs).unwrap();
            consumed.extend(seqs);
        }
        copy_dir(tmp.path(), copy.path());
        let (copied, redo) = open_at(copy.path());
        let pending: BTreeSet<u64> = drain(&copied).iter().map(|d| d.seq).collect();
        let redone: BTreeSet<u64> = redo.iter().map(|r| r.doc.seq).collect();
        assert!(pending.is_disjoint(&redone));
        assert!(
            pending.is_disjoint(&consumed),
            "round {round}: a consumed document came back"
        );
        assert!(
            redone.is_disjoint(&consumed),
            "round {round}: a consumed report came back"
        );
        let all: BTreeSet<u64> = pending
            .iter()
            .chain(&redone)
            .chain(&consumed)
            .copied()
            .collect();
        assert_eq!(all, accepted, "round {round}");
        assert_eq!(copied.stats().corrupt_records, 0);
        copied.close().unwrap();
    }
    // Everything reported and consumed: only the active segment is left.
    let rest = drain(&spool);
    spool
        .record_outcomes(&rest.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
        .unwrap();
    spool
        .consumed(&accepted.iter().copied().collect::<Vec<_>>())
        .unwrap();
    let st = spool.stats();
    assert_eq!(
        (st.segments, st.pending, st.unconsumed),
        (1, 0, 0),
        "{st:?}"
    );
    spool.close().unwrap();
    let (spool, redo) = open_at(tmp.path());
    assert!(redo.is_empty() && drain(&spool).is_empty());
    spool.close().unwrap();
}

#[test]
fn a_second_opener_gets_locked() {
    let tmp = TempDir::new("lock");
    let (spool, _) = open_at(tmp.path());
    match Spool::open(config(tmp.path(), SyncMode::None)) {
        Err(SpoolError::Locked(msg)) => {
            assert!(msg.contains(&tmp.path().display().to_string()), "{msg}")
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second spool"),
    }
    // flock is per open file description: a new one cannot take it either.
    let again = fs::File::open(tmp.path().join("LOCK")).unwrap();
    assert!(!sys::try_lock_exclusive(&again).unwrap());
    drop(spool);
    assert!(
        sys::try_lock_exclusive(&again).unwrap(),
        "released with the spool"
    );
    drop(again);
    let (spool, _) = open_at(tmp.path());
    spool.close().unwrap();
}

#[test]
fn an_unknown_format_version_is_a_clear_error() {
    let tmp = TempDir::new("version");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 1);
    spool.close().unwrap();
    let meta = tmp.path().join("META");
    let good = fs::read(&meta).unwrap();
    fs::write(&meta, "libkuzzle-spool 99\n").unwrap();
    match Spool::open(config(tmp.path(), SyncMode::None)) {
        Err(SpoolError::Version(msg)) => {
            assert!(msg.contains("version 99") && msg.contains("META"), "{msg}")
        }
        other => panic!("expected a Version error, got {:?}", other.err()),
    }
    fs::write(&meta, good).unwrap();
    // A segment header of version 2, its CRC right.
    let seg = only_file(tmp.path(), "seg-");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    fs::write(&seg, bytes).unwrap();
    match Spool::open(config(tmp.path(), SyncMode::None)) {
        Err(SpoolError::Version(msg)) => {
            assert!(msg.contains("version 2") && msg.contains("seg-"), "{msg}")
        }
        other => panic!("expected a Version error, got {:?}", other.err()),
    }
}

#[test]
fn full_at_max_bytes_and_space_comes_back_after_consumption() {
    let tmp = TempDir::new("full");
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.max_bytes = 16 * 1024;
    cfg.segment_bytes = 4 * 1024;
    let (spool, _) = Spool::open(cfg.clone()).unwrap();
    let (id, body) = (id_of(0), body_of(0));
    let doc = NewDoc {
        index: "idx",
        collection: "col",
        id: &id,
        body: &body,
    };
    let mut accepted = 0u64;
    loop {
        match spool.append(&[doc]) {
            Ok(_) => accepted += 1,
            Err(SpoolError::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 10_000, "never full");
    }
    let st = spool.stats();
    assert!(st.bytes <= cfg.max_bytes, "{st:?}");
    assert!(st.segments >= 4, "{st:?}");
    assert!(
        matches!(spool.append(&[doc]), Err(SpoolError::Full)),
        "still full"
    );
    // What can never fit is an error of its own, not a wait for space.
    let huge = "x".repeat(cfg.max_bytes as usize);
    let big = NewDoc {
        index: "idx",
        collection: "col",
        id: &id,
        body: &huge,
    };
    assert!(matches!(spool.append(&[big]), Err(SpoolError::Io(m)) if m.contains("never fit")));
    let got = drain(&spool);
    assert_eq!(got.len() as u64, accepted);
    spool
        .record_outcomes(&got.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
        .unwrap();
    assert!(
        matches!(spool.append(&[doc]), Err(SpoolError::Full)),
        "reported, not consumed: still there"
    );
    spool.consumed(&seqs(&got)).unwrap();
    // Only the active segment is left; and once it too is consumed, an
    // append that does not fit starts a new one and drops it.
    let st = spool.stats();
    assert_eq!(st.segments, 1, "{st:?}");
    assert!(spool.append(&[doc]).is_ok());
    let count = (1..).take_while(|_| spool.append(&[doc]).is_ok()).count();
    assert!(count > 10, "space came back: {count}");
    spool.close().unwrap();
    let on_disk: u64 = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= cfg.max_bytes + cfg.segment_bytes, "{on_disk}");
}

#[test]
fn group_commit_shares_fdatasyncs_between_threads() {
    let tmp = TempDir::new("group");
    let (spool, _) = Spool::open(config(tmp.path(), SyncMode::Always)).unwrap();
    let base = spool.stats().fsyncs;
    const THREADS: u64 = 8;
    const EACH: u64 = 50;
    let all: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let spool = &spool;
                s.spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let seq = append_each(spool, t * EACH + i, 1)[0];
                            // Returned only once durable.
                            assert!(spool.stats().durable_seq >= seq);
                            seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique, (1..=THREADS * EACH).collect::<BTreeSet<_>>());
    let st = spool.stats();
    assert!(st.fsyncs - base <= THREADS * EACH, "{st:?}");
    assert_eq!(st.durable_seq, THREADS * EACH);
    spool.close().unwrap();
}

#[test]
fn interval_mode_syncs_in_the_background() {
    let tmp = TempDir::new("interval");
    let cfg = config(tmp.path(), SyncMode::Interval(Duration::from_millis(5)));
    let (spool, _) = Spool::open(cfg).unwrap();
    let seq = append_each(&spool, 1, 1)[0];
    // Bounded wait on a state change, not on a duration.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while spool.stats().durable_seq < seq {
        assert!(
            std::time::Instant::now() < deadline,
            "never synced: {:?}",
            spool.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    spool.close().unwrap();
}

#[test]
fn memory_stays_bounded_with_a_large_backlog() {
    let tmp = TempDir::new("backlog");
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.segment_bytes = 1 << 20;
    let (spool, _) = Spool::open(cfg).unwrap();
    // Batches of 7: chunks of 1,000 end inside records.
    let owned: Vec<(String, String)> = (0..7).map(|n| (id_of(n), body_of(n))).collect();
    let docs: Vec<NewDoc> = owned
        .iter()
        .map(|(id, body)| NewDoc {
            index: "idx",
            collection: "col",
            id,
            body,
        })
        .collect();
    let total = 100_002u64;
    for _ in 0..total / 7 {
        spool.append(&docs).unwrap();
    }
    spool.close().unwrap();
    let (spool, _) = open_at(tmp.path());
    assert!(spool.stats().segments > 3);
    let mut expected = 1u64;
    loop {
        let chunk = spool.read_pending(1000, usize::MAX).unwrap();
        assert!(chunk.len() <= 1000);
        if chunk.is_empty() {
            break;
        }
        for d in &chunk {
            assert_eq!(d.seq, expected);
            expected += 1;
        }
    }
    assert_eq!(expected, total + 1);
    spool.close().unwrap();
}

#[test]
fn read_pending_limits_and_requeue() {
    let tmp = TempDir::new("limits");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 10);
    let body_len = body_of(1).len();
    // About max_bytes of bodies, at least one document.
    assert_eq!(seqs(&spool.read_pending(100, 1).unwrap()), [1]);
    assert_eq!(
        seqs(&spool.read_pending(100, body_len * 2).unwrap()),
        [2, 3]
    );
    assert!(spool.read_pending(0, usize::MAX).unwrap().is_empty());
    let got = spool.read_pending(3, usize::MAX).unwrap();
    assert_eq!(seqs(&got), [4, 5, 6]);
    // Kuzzle unreachable: 4..6 are tried again first; 5 meanwhile got its outcome.
    spool.record_outcomes(&[ok(5)]).unwrap();
    spool.requeue(got);
    assert_eq!(seqs(&spool.read_pending(3, usize::MAX).unwrap()), [4, 6, 7]);
    assert_eq!(seqs(&drain(&spool)), [8, 9, 10]);
    // Outcomes for unknown or repeated seqs change nothing.
    spool.record_outcomes(&[ok(5), ok(99)]).unwrap();
    assert_eq!(spool.stats().unconsumed, 1);
    spool.close().unwrap();
}

#[test]
fn appenders_and_a_delivery_thread_at_once() {
    let tmp = TempDir::new("concurrent");
    let mut cfg = config(tmp.path(), SyncMode::Always);
    cfg.segment_bytes = 4096;
    let (spool, _) = Spool::open(cfg).unwrap();
    const THREADS: u64 = 4;
    const EACH: u64 = 100;
    let delivered = std::thread::scope(|s| {
        for t in 0..THREADS {
            let spool = &spool;
            s.spawn(move || append_each(spool, t * EACH, EACH));
        }
        let spool = &spool;
        let delivery = s.spawn(move || {
            let mut seen = BTreeSet::new();
            let mut last: Vec<u64> = Vec::new();
            while seen.len() < (THREADS * EACH) as usize {
                let got = spool.read_pending(16, usize::MAX).unwrap();
                if got.is_empty() {
                    std::thread::yield_now();
                }
                for d in &got {
                    assert!(seen.insert(d.seq), "{} handed out twice", d.seq);
                }
                spool
                    .record_outcomes(&got.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
                    .unwrap();
                spool.consumed(&last).unwrap();
                last = seqs(&got);
            }
            spool.consumed(&last).unwrap();
            seen
        });
        delivery.join().unwrap()
    });
    assert_eq!(delivered, (1..=THREADS * EACH).collect::<BTreeSet<_>>());
    let st = spool.stats();
    assert_eq!(
        (st.pending, st.unconsumed, st.segments),
        (0, 0, 1),
        "{st:?}"
    );
    spool.close().unwrap();
}

#[test]
fn the_tail_cache_serves_what_was_just_appended() {
    let tmp = TempDir::new("tail");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 5);
    assert_eq!(seqs(&spool.read_pending(2, usize::MAX).unwrap()), [1, 2]);
    // Damage on disk behind the spool's back: what is still in memory is
    // handed out from memory.
    let seg = only_file(tmp.path(), "seg-");
    let len = file_len(&seg);
    flip(&seg, len - 3);
    let got = drain(&spool);
    assert_eq!(seqs(&got), [3, 4, 5]);
    assert_eq!(got[2].body(), body_of(5));
    drop(spool);

    // A reader far behind: the oldest copies were dropped, read from disk
    // instead, and then the cache takes over again; each document once.
    let tmp = TempDir::new("tail-behind");
    let (spool, _) = open_at(tmp.path());
    let mut expected = 1;
    for round in 0..3u64 {
        append_each(&spool, round * 10_000 + 1, 10_000);
        loop {
            let chunk = spool.read_pending(700, usize::MAX).unwrap();
            if chunk.is_empty() {
                break;
            }
            for d in chunk {
                assert_eq!((d.seq, d.body()), (expected, body_of(expected).as_str()));
                expected += 1;
            }
        }
        assert_eq!(expected, (round + 1) * 10_000 + 1);
    }
    spool.close().unwrap();
}

#[test]
fn with_always_zeros_run_ahead_of_the_records_and_are_cut_at_rest() {
    let tmp = TempDir::new("zeros");
    let mut cfg = config(tmp.path(), SyncMode::Always);
    cfg.segment_bytes = 8 * 1024;
    let (spool, _) = Spool::open(cfg.clone()).unwrap();
    append_each(&spool, 1, 3);
    let seg = only_file(tmp.path(), "seg-");
    // Zeros up to the segment's size: the next syncs find the size unchanged.
    assert_eq!(file_len(&seg), cfg.segment_bytes);
    drop(spool); // as a crash leaves it
    let (spool, redo) = Spool::open(cfg.clone()).unwrap();
    assert!(redo.is_empty());
    let st = spool.stats();
    assert_eq!((st.corrupt_records, st.torn_tails), (0, 1), "{st:?}");
    assert!(
        file_len(&seg) < 1024,
        "the zeros were cut: {}",
        file_len(&seg)
    );
    // Appending goes on after the records, not after the zeros; rotations
    // cut each full segment's zeros before it is synced for good.
    append_each(&spool, 4, 200);
    assert!(spool.stats().segments >= 3, "{:?}", spool.stats());
    assert_eq!(seqs(&drain(&spool)), (1..=203).collect::<Vec<_>>());
    spool.close().unwrap();
    let (spool, _) = Spool::open(cfg).unwrap();
    let st = spool.stats();
    assert_eq!((st.corrupt_records, st.torn_tails), (0, 0), "{st:?}");
    assert_eq!(seqs(&drain(&spool)), (1..=203).collect::<Vec<_>>());
    spool.close().unwrap();
}
