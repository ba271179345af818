//! Damage tests: every truncation of the last record, zeroed tails,
//! flipped bytes, lost checkpoints, headers and unlinks, and seqs that a
//! lost tail must not give again.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::tests::{
    append_each, config, copy_dir, drain, failed, file_len, ok, only_file, open_at, seqs, TempDir,
};
use super::*;

#[test]
fn every_truncation_of_the_last_segment_record_opens() {
    let tmp = TempDir::new("trunc-seg");
    let work = TempDir::new("trunc-seg-work");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 5);
    let seg = only_file(tmp.path(), "seg-");
    let last_start = file_len(&seg);
    append_each(&spool, 6, 1);
    let full = file_len(&seg);
    spool.close().unwrap();
    for cut in last_start..full {
        copy_dir(tmp.path(), work.path());
        let seg = only_file(work.path(), "seg-");
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (spool, _) = open_at(work.path());
        assert_eq!(seqs(&drain(&spool)), [1, 2, 3, 4, 5], "cut at {cut}");
        assert_eq!(spool.stats().torn_tails, u64::from(cut > last_start));
        assert_eq!(file_len(&seg), last_start, "the torn tail is cut off");
        // Appends go on after the cut, and the seq is not reused by mistake.
        assert_eq!(append_each(&spool, 6, 1), [6]);
        drop(spool);
        let (spool, _) = open_at(work.path());
        assert_eq!(seqs(&drain(&spool)), [1, 2, 3, 4, 5, 6]);
        assert_eq!(spool.stats().torn_tails, 0);
        spool.close().unwrap();
    }
}

#[test]
fn every_truncation_of_the_last_journal_record_opens() {
    let tmp = TempDir::new("trunc-out");
    let work = TempDir::new("trunc-out-work");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 5);
    drain(&spool);
    spool
        .record_outcomes(&[ok(1), ok(2), ok(3), ok(4)])
        .unwrap();
    let journal = only_file(tmp.path(), "out-");
    let last_start = file_len(&journal);
    spool.record_outcomes(&[failed(5)]).unwrap();
    let full = file_len(&journal);
    drop(spool);
    for cut in last_start..=full {
        copy_dir(tmp.path(), work.path());
        let journal = only_file(work.path(), "out-");
        fs::OpenOptions::new()
            .write(true)
            .open(&journal)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (spool, redo) = open_at(work.path());
        let redone: Vec<u64> = redo.iter().map(|r| r.doc.seq).collect();
        if cut == full {
            assert_eq!(redone, [1, 2, 3, 4, 5]);
            assert!(drain(&spool).is_empty());
        } else {
            assert_eq!(redone, [1, 2, 3, 4], "cut at {cut}");
            // Its outcome lost with the tail: 5 is delivered again.
            assert_eq!(seqs(&drain(&spool)), [5]);
            assert_eq!(spool.stats().torn_tails, u64::from(cut > last_start));
        }
        spool.close().unwrap();
    }
}

#[test]
fn zeroed_tails_open() {
    let tmp = TempDir::new("zeroed");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 4);
    drain(&spool);
    spool.record_outcomes(&[ok(1)]).unwrap();
    let seg = only_file(tmp.path(), "seg-");
    let before_last = file_len(&seg);
    append_each(&spool, 5, 1);
    drop(spool);
    let journal = only_file(tmp.path(), "out-");
    // Zeros after the end (a file system that extended the file but lost
    // the data), and a last record overwritten with zeros.
    for path in [&seg, &journal] {
        let len = file_len(path);
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len + 4096)
            .unwrap();
    }
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(
            &vec![0u8; (file_len(&seg) - before_last) as usize],
            before_last,
        )
        .unwrap();
    }
    let (spool, redo) = open_at(tmp.path());
    assert_eq!(redo.iter().map(|r| r.doc.seq).collect::<Vec<_>>(), [1]);
    assert_eq!(seqs(&drain(&spool)), [2, 3, 4], "5 was zeroed");
    assert_eq!(spool.stats().torn_tails, 2);
    assert_eq!(spool.stats().corrupt_records, 0);
    assert_eq!(file_len(&seg), before_last);
    spool.close().unwrap();
}

/// The offset of each record of a segment with one document per record.
fn record_offsets(spool: &Spool, seg: &Path, from: u64, count: u64) -> Vec<u64> {
    (from..from + count)
        .map(|n| {
            let at = file_len(seg);
            append_each(spool, n, 1);
            at
        })
        .collect()
}

pub(super) fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

#[test]
fn a_flipped_byte_skips_one_record_and_keeps_the_rest() {
    // Flipped in the body, in the length, in the CRC, in the kind.
    for (case, delta) in [("body", 30u64), ("len", 5), ("crc", 1), ("kind", 8)] {
        let tmp = TempDir::new("flip");
        let (spool, _) = open_at(tmp.path());
        append_each(&spool, 1, 1);
        let seg = only_file(tmp.path(), "seg-");
        let offsets = record_offsets(&spool, &seg, 2, 9);
        spool.close().unwrap();
        flip(&seg, offsets[3] + delta); // the record of seq 5
        let (spool, _) = open_at(tmp.path());
        let expected: Vec<u64> = (1..=10).filter(|&s| s != 5).collect();
        assert_eq!(seqs(&drain(&spool)), expected, "{case}");
        assert_eq!(spool.stats().corrupt_records, 1, "{case}");
        assert_eq!(spool.stats().pending, 9, "{case}");
        // The damaged record stays where it is, skipped again (counted
        // again) at the next open, and appends go on.
        assert_eq!(append_each(&spool, 11, 1), [11]);
        drop(spool);
        let (spool, _) = open_at(tmp.path());
        assert_eq!(drain(&spool).len(), 10, "{case}");
        spool.close().unwrap();
    }
}

#[test]
fn a_flipped_byte_in_the_journal_loses_one_outcome_record_only() {
    let tmp = TempDir::new("flip-out");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 3);
    drain(&spool);
    let journal = only_file(tmp.path(), "out-");
    let first = file_len(&journal);
    spool.record_outcomes(&[ok(1)]).unwrap();
    spool.record_outcomes(&[ok(2)]).unwrap();
    spool.record_outcomes(&[ok(3)]).unwrap();
    drop(spool);
    flip(&journal, first + 12);
    let (spool, redo) = open_at(tmp.path());
    assert_eq!(redo.iter().map(|r| r.doc.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(
        seqs(&drain(&spool)),
        [1],
        "its outcome lost, 1 is delivered again"
    );
    assert_eq!(spool.stats().corrupt_records, 1);
    spool.close().unwrap();
}

/// A spool whose first segments were deleted after consumption.
fn compacted(tmp: &TempDir) -> (Spool, BTreeSet<u64>) {
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.segment_bytes = 1024;
    let (spool, _) = Spool::open(cfg).unwrap();
    append_each(&spool, 1, 60);
    let got = spool.read_pending(40, usize::MAX).unwrap();
    spool
        .record_outcomes(&got.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
        .unwrap();
    spool.consumed(&seqs(&got)).unwrap();
    (spool, (41..=60).collect())
}

#[test]
fn a_damaged_or_deleted_checkpoint_still_opens() {
    for case in ["slot0", "slot1", "both", "deleted"] {
        let tmp = TempDir::new("checkpoint");
        let (spool, left) = compacted(&tmp);
        let before = spool.stats();
        assert!(before.segments > 1 && before.next_seq == 61, "{before:?}");
        spool.close().unwrap();
        let cp = tmp.path().join("CHECKPOINT");
        match case {
            "slot0" => flip(&cp, 20),
            "slot1" => flip(&cp, 4096 + 20),
            "both" => {
                flip(&cp, 20);
                flip(&cp, 4096 + 20);
            }
            _ => fs::remove_file(&cp).unwrap(),
        }
        let (spool, redo) = open_at(tmp.path());
        assert!(redo.is_empty(), "{case}");
        let got: BTreeSet<u64> = drain(&spool).iter().map(|d| d.seq).collect();
        // Documents 41..60 always come back; with a checkpoint lost, some
        // consumed ones may too (counted as at risk).
        assert!(got.is_superset(&left), "{case}: {got:?}");
        let st = spool.stats();
        if case == "both" || case == "deleted" {
            assert_eq!(st.replay_risk_docs, 20, "{case}");
        } else {
            assert_eq!(st.replay_risk_docs, 0, "{case}");
            assert_eq!(got, left, "{case}");
        }
        assert_eq!(append_each(&spool, 61, 1), [61], "{case}: seqs continue");
        spool.close().unwrap();
        // The checkpoint is whole again.
        let (spool, _) = open_at(tmp.path());
        assert_eq!(spool.stats().replay_risk_docs, 0, "{case}");
        spool.close().unwrap();
    }
}

#[test]
fn a_segment_whose_unlink_was_lost_is_deleted_at_open() {
    let tmp = TempDir::new("unlink-lost");
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.segment_bytes = 1024;
    let (spool, _) = Spool::open(cfg).unwrap();
    append_each(&spool, 1, 60);
    let first = only_file(tmp.path(), "seg-00000000000000000001");
    let saved = fs::read(&first).unwrap();
    let got = spool.read_pending(40, usize::MAX).unwrap();
    spool
        .record_outcomes(&got.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
        .unwrap();
    spool.consumed(&seqs(&got)).unwrap();
    assert!(!first.exists());
    spool.close().unwrap();
    // As if the checkpoint reached the disk and the unlink did not.
    fs::write(&first, saved).unwrap();
    let (spool, redo) = open_at(tmp.path());
    assert!(redo.is_empty());
    assert_eq!(seqs(&drain(&spool)), (41..=60).collect::<Vec<_>>());
    assert!(!first.exists());
    spool.close().unwrap();
}

#[test]
fn damaged_segment_headers_open() {
    let tmp = TempDir::new("header");
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.segment_bytes = 1024;
    let (spool, _) = Spool::open(cfg.clone()).unwrap();
    append_each(&spool, 1, 30);
    let stats = spool.stats();
    assert!(stats.segments >= 3, "{stats:?}");
    spool.close().unwrap();
    let first = tmp.path().join("seg-00000000000000000001.log");
    flip(&first, 3); // a segment's header: its records are still read
                     // And a last segment cut inside its header, as by a crash right after
                     // its creation.
    let last = tmp.path().join("seg-00000000000000000031.log");
    fs::write(&last, b"KZSP").unwrap();
    let (spool, _) = Spool::open(cfg).unwrap();
    assert_eq!(seqs(&drain(&spool)), (1..=30).collect::<Vec<_>>());
    let st = spool.stats();
    assert_eq!(
        (st.corrupt_records, st.torn_tails, st.next_seq),
        (1, 1, 31),
        "{st:?}"
    );
    assert_eq!(append_each(&spool, 31, 1), [31]);
    drop(spool);
    let (spool, _) = open_at(tmp.path());
    assert_eq!(seqs(&drain(&spool)), (1..=31).collect::<Vec<_>>());
    spool.close().unwrap();
}

#[test]
fn seqs_named_by_the_journal_are_never_given_again() {
    // Power loss without `Always`: the journal reached the disk, the end of
    // the segment did not.
    let tmp = TempDir::new("seq-reuse");
    let (spool, _) = open_at(tmp.path());
    append_each(&spool, 1, 3);
    let seg = only_file(tmp.path(), "seg-");
    let two = file_len(&seg);
    append_each(&spool, 4, 2);
    drain(&spool);
    spool.record_outcomes(&[ok(5)]).unwrap();
    spool.consumed(&[4]).unwrap();
    drop(spool);
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(two)
        .unwrap();
    let (spool, redo) = open_at(tmp.path());
    assert_eq!(redo.len(), 1);
    assert_eq!(
        redo[0].doc,
        ReportedDoc {
            seq: 5,
            ..ReportedDoc::default()
        }
    );
    assert_eq!(spool.stats().next_seq, 6);
    assert_eq!(append_each(&spool, 6, 1), [6]);
    assert_eq!(seqs(&drain(&spool)), [1, 2, 3, 6]);
    spool.close().unwrap();
}

#[test]
fn a_report_whose_document_was_lost_does_not_free_another_document() {
    let tmp = TempDir::new("absent");
    let mut cfg = config(tmp.path(), SyncMode::None);
    cfg.segment_bytes = 1024;
    let (spool, _) = Spool::open(cfg.clone()).unwrap();
    let first = tmp.path().join("seg-00000000000000000001.log");
    let mut ends = Vec::new();
    for n in 1..=20 {
        append_each(&spool, n, 1);
        ends.push(file_len(&first));
    }
    // The first segment ends at the first document that did not fit.
    let in_first = ends
        .iter()
        .position(|&e| e == ends[ends.len() - 1])
        .unwrap() as u64
        + 1;
    assert!(in_first > 3 && in_first < 20, "{ends:?}");
    drain(&spool);
    spool.record_outcomes(&[ok(in_first)]).unwrap();
    drop(spool);
    // The last document of the first segment lost (its outcome was not).
    let cut = ends[in_first as usize - 2];
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let (spool, redo) = Spool::open(cfg.clone()).unwrap();
    assert_eq!(redo.len(), 1);
    assert_eq!(redo[0].doc.seq, in_first);
    assert!(redo[0].doc.id.is_empty());
    let all = seqs(&drain(&spool));
    assert_eq!(all.len(), 19);
    // Its report consumed, and every other document of the first segment
    // but one: the segment stays for that one.
    spool.consumed(&[in_first]).unwrap();
    let most: Vec<u64> = (1..in_first - 1).collect();
    spool
        .record_outcomes(&most.iter().map(|&s| ok(s)).collect::<Vec<_>>())
        .unwrap();
    spool.consumed(&most).unwrap();
    assert!(first.exists());
    drop(spool);
    let (spool, _) = Spool::open(cfg).unwrap();
    assert_eq!(seqs(&drain(&spool))[0], in_first - 1);
    spool.close().unwrap();
}
