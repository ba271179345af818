//! A real crash: a child process (this test binary again) appends, reports
//! and consumes in a loop, printing what returned, and is killed with
//! SIGKILL after a given number of lines; the spool it leaves must hold
//! everything that was acknowledged.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::tests::{body_of, config, drain, id_of, ok, TempDir};
use super::*;

const TEST: &str = "spool::tests_crash::sigkill_at_any_moment_loses_nothing_returned";

#[test]
fn sigkill_at_any_moment_loses_nothing_returned() {
    if let Some(dir) = std::env::var_os("SPOOL_CHILD") {
        child(
            Path::new(&dir),
            std::env::var_os("SPOOL_CHILD_ALWAYS").is_some(),
        );
        return;
    }
    let tmp = TempDir::new("sigkill");
    let mut accepted = BTreeSet::new();
    // "c": about to call consumed (it may or may not have been stored);
    // "C": consumed returned.
    let mut maybe_consumed = BTreeSet::new();
    let mut consumed = BTreeSet::new();
    for (round, (kill_after, always)) in [(40usize, true), (700, false), (3000, false), (5, false)]
        .into_iter()
        .enumerate()
    {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("SPOOL_CHILD", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if always {
            cmd.env("SPOOL_CHILD_ALWAYS", "1");
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut appended = 0;
        let mut killed = false;
        // After the kill, what is still in the pipe was printed before it.
        for line in lines.by_ref() {
            let line = line.unwrap();
            let mut parts = line.split(' ');
            let (Some(tag), Some(seq)) = (
                parts.next(),
                parts.next().and_then(|s| s.parse::<u64>().ok()),
            ) else {
                continue;
            };
            match tag {
                "A" => {
                    accepted.insert(seq);
                    appended += 1;
                }
                "c" => {
                    maybe_consumed.insert(seq);
                }
                "C" => {
                    consumed.insert(seq);
                }
                _ => {}
            }
            if appended >= kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child stopped by itself after {appended} appends"
        );

        let (spool, redo) = Spool::open(config(tmp.path(), SyncMode::None)).unwrap();
        let pending = drain(&spool);
        for d in &pending {
            assert_eq!(
                (d.id().to_string(), d.body().to_string()),
                (id_of(d.seq), body_of(d.seq)),
                "round {round}: intact"
            );
        }
        let pending: BTreeSet<u64> = pending.iter().map(|d| d.seq).collect();
        let redone: BTreeSet<u64> = redo.iter().map(|r| r.doc.seq).collect();
        assert!(pending.is_disjoint(&redone), "round {round}");
        assert!(
            consumed.is_disjoint(&pending),
            "round {round}: consumed, delivered again"
        );
        assert!(
            consumed.is_disjoint(&redone),
            "round {round}: consumed, reported again"
        );
        let known: BTreeSet<u64> = pending
            .iter()
            .chain(&redone)
            .chain(&maybe_consumed)
            .copied()
            .collect();
        let lost: Vec<&u64> = accepted.difference(&known).collect();
        assert!(lost.is_empty(), "round {round}: lost {lost:?}");
        let st = spool.stats();
        assert_eq!(
            (st.corrupt_records, st.replay_risk_docs),
            (0, 0),
            "round {round}: {st:?}"
        );
        assert!(st.next_seq > *accepted.last().unwrap());
        drop(spool);
    }
    assert!(
        accepted.len() >= 40 + 700 + 3000 + 5 && consumed.len() > 100,
        "{} {}",
        accepted.len(),
        consumed.len()
    );
}

/// Appends for ever; every 25 appends, delivers up to 30 documents (all
/// "ok") and consumes the reports of the previous delivery, as a producer
/// whose application polls would. Redeliveries found at open are consumed
/// first.
fn child(dir: &Path, always: bool) {
    let mut cfg = config(
        dir,
        if always {
            SyncMode::Always
        } else {
            SyncMode::None
        },
    );
    cfg.segment_bytes = 4096; // rotations and deletions all the time
    let (spool, redo) = Spool::open(cfg).unwrap();
    let out = std::io::stdout();
    let say = |tag: &str, seq: u64| {
        let mut out = out.lock();
        writeln!(out, "{tag} {seq}").unwrap();
        out.flush().unwrap();
    };
    let mut to_consume: Vec<u64> = redo.iter().map(|r| r.doc.seq).collect();
    let mut n = spool.stats().next_seq;
    loop {
        let (id, body) = (id_of(n), body_of(n));
        let seq = spool
            .append(&[NewDoc {
                index: "idx",
                collection: "col",
                id: &id,
                body: &body,
            }])
            .unwrap();
        assert_eq!(seq, n);
        say("A", seq);
        n += 1;
        if n % 25 == 0 {
            for &s in &to_consume {
                say("c", s);
            }
            spool.consumed(&to_consume).unwrap();
            for &s in &to_consume {
                say("C", s);
            }
            let got = spool.read_pending(30, usize::MAX).unwrap();
            spool
                .record_outcomes(&got.iter().map(|d| ok(d.seq)).collect::<Vec<_>>())
                .unwrap();
            to_consume = got.iter().map(|d| d.seq).collect();
        }
    }
}
