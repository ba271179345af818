//! The gateway producer through the C ABI, against the real local Kuzzle:
//! one final report per accepted document, in memory and with a spool,
//! across a close, a reopen and a SIGKILL of the producing process.

mod common;

use common::producer::*;
use common::*;
use kuzzle::ffi::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A port nothing listens on: Kuzzle out of reach.
/// Documents in `index`/c once refreshed.
fn stored(h: &Handle, index: &str) -> u64 {
    h.query_ok(
        json!({"controller":"collection","action":"refresh","index":index,"collection":"c"}),
    );
    h.count(index, "c")
}

/// Opens a spool producer, waiting while the spool is still locked by a
/// producer closed a moment ago whose request was in flight when its close
/// timed out (it ends within one request's `timeoutMs`).
fn open_when_free(h: &Handle, config: Value) -> Producer {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match open(h, config.clone()) {
            Ok(p) => return p,
            Err((S::KUZZLE_ERR_SPOOL, e)) if Instant::now() < deadline => {
                assert!(e.to_string().contains("in use"), "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open: {e:?}"),
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuzzle-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn memory_mode_reports_each_document_once_from_eight_threads() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "prod");
    let p = open(&h, json!({"lingerMs": 2})).unwrap();
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (p, index) = (&p, &index);
                s.spawn(move || {
                    (0..500)
                        .map(|i| {
                            let doc = json!({"body": {"t": t, "i": i}});
                            let (status, seq) = p.produce(index, &doc);
                            assert_eq!(status, S::KUZZLE_OK);
                            seq
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 4_000, "seqs are unique");
    assert_eq!(p.flush(60_000), S::KUZZLE_OK);
    let reports = collect(&p, 4_000);
    assert_eq!(reports.keys().copied().collect::<HashSet<u64>>(), unique);
    for r in reports.values() {
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["_id"].as_str().is_some_and(|id| !id.is_empty()), "{r}");
        assert_eq!(r["index"], index.as_str());
    }
    assert!(p.poll(10, 0).is_empty(), "nothing more");
    assert_eq!(p.stats()["delivered"], 4_000);
    assert!(p.close(10_000).is_empty());
    assert_eq!(stored(&h, &index), 4_000);
}

#[test]
fn batches_ids_refusals_and_the_report_struct() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "prodb");
    let p = open(&h, json!({"lingerMs": 0})).unwrap();
    // A refused batch accepts nothing.
    let (status, first, n) = p.batch(&index, &json!([{"body": {}}, {"body": 1}]));
    assert_eq!((status, first, n), (S::KUZZLE_ERR_INVALID_ARGUMENT, 0, 0));
    let why = unsafe { CStr::from_ptr(kuzzle_produce_error()) }
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains("document 1") && why.contains("object"),
        "{why}"
    );
    let (status, _) = p.produce(&index, &json!({"bdy": {}}));
    assert_eq!(status, S::KUZZLE_ERR_INVALID_ARGUMENT);
    let docs = json!([{"_id": "mine", "body": {"v": 1}}, {"body": {"v": 2}}, {"_id": "mine", "body": {"v": 3}}]);
    let (status, first, n) = p.batch(&index, &docs);
    assert_eq!((status, n), (S::KUZZLE_OK, 3));
    assert_eq!(p.flush(30_000), S::KUZZLE_OK);
    // One report at a time, without JSON.
    let mut seen = Vec::new();
    let fd = unsafe { kuzzle_producer_fd(p.0) };
    assert!(fd >= 0);
    for _ in 0..3 {
        let mut r = std::mem::MaybeUninit::<kuzzle_report>::uninit();
        let status = unsafe { kuzzle_producer_next_report(p.0, 5_000, r.as_mut_ptr()) };
        assert_eq!(status, S::KUZZLE_OK);
        let r = unsafe { r.assume_init() };
        let text = |c: *const c_char| unsafe { CStr::from_ptr(c) }.to_str().unwrap().to_string();
        assert!(r.ok && !r.in_doubt && r.reason.is_null());
        seen.push((r.seq, text(r.id), r.version, text(r.index)));
    }
    seen.sort();
    assert_eq!(seen[0].0, first);
    assert_eq!((seen[0].1.as_str(), seen[0].2), ("mine", 1));
    assert!(seen[1].1.len() > 4, "an id given at acceptance: {seen:?}");
    assert_eq!(
        (seen[2].1.as_str(), seen[2].2),
        ("mine", 2),
        "the later version last"
    );
    let mut r = std::mem::MaybeUninit::<kuzzle_report>::uninit();
    let status = unsafe { kuzzle_producer_next_report(p.0, 0, r.as_mut_ptr()) };
    assert_eq!(status, S::KUZZLE_ERR_TIMEOUT);
    assert!(p.close(1_000).is_empty());
}

#[test]
fn a_spool_keeps_what_kuzzle_could_not_take_and_delivers_it_after_a_reopen() {
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "spool");
    let dir = temp_dir("spool-reopen");
    let config = json!({"spoolDir": dir.to_str().unwrap(), "lingerMs": 1});
    // The uplink down: nothing listens on that port.
    let port = dead_port();
    let down = connect(&json!({"host":"127.0.0.1","port":port,"lazyConnect":true,"retries":0}));
    let p = open(&down, config.clone()).unwrap();
    let docs: Vec<Value> = (0..300).map(|i| json!({"body": {"n": i}})).collect();
    let (status, first, n) = p.batch(&index, &Value::Array(docs));
    assert_eq!((status, n), (S::KUZZLE_OK, 300));
    assert_eq!(p.flush(500), S::KUZZLE_ERR_TIMEOUT, "Kuzzle out of reach");
    assert!(
        p.poll(10, 0).is_empty(),
        "nothing is reported failed while out of reach"
    );
    // A second opener is refused while the first holds the spool.
    let (status, e) = open(&down, config.clone()).map(|_| ()).unwrap_err();
    assert_eq!(status, S::KUZZLE_ERR_SPOOL, "{e}");
    assert!(p.close(2_000).is_empty());
    drop(down);
    // Reopened with Kuzzle reachable: delivered, once each, seqs kept.
    let p = open_when_free(&h, config);
    assert_eq!(p.flush(60_000), S::KUZZLE_OK);
    let reports = collect(&p, 300);
    let expected: HashSet<u64> = (first..first + 300).collect();
    assert_eq!(reports.keys().copied().collect::<HashSet<u64>>(), expected);
    assert!(reports.values().all(|r| r["ok"] == true));
    let (status, later) = p.produce(&index, &json!({"body": {"n": 300}}));
    assert_eq!(status, S::KUZZLE_OK);
    assert!(later >= first + 300, "seqs continue after a reopen");
    assert_eq!(p.flush(30_000), S::KUZZLE_OK);
    collect(&p, 1);
    assert!(p.close(5_000).is_empty());
    assert_eq!(stored(&h, &index), 301);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_rejects_or_drops_the_oldest_as_told() {
    let port = dead_port();
    let down = connect(&json!({"host":"127.0.0.1","port":port,"lazyConnect":true,"retries":0}));
    let p = open(
        &down,
        json!({"maxQueueDocuments": 10, "whenFull": "reject", "lingerMs": 100000}),
    )
    .unwrap();
    for i in 0..10 {
        assert_eq!(p.produce("i", &json!({"body": {"n": i}})).0, S::KUZZLE_OK);
    }
    assert_eq!(
        p.produce("i", &json!({"body": {"n": 10}})).0,
        S::KUZZLE_ERR_QUEUE_FULL
    );
    let left = p.close(0);
    assert_eq!(
        left.len(),
        10,
        "memory mode: every undelivered document reported at close"
    );
    assert!(
        left.iter()
            .all(|r| r["ok"] == false && r["inDoubt"] == false),
        "{left:?}"
    );

    let p = open(
        &down,
        json!({"maxQueueDocuments": 10, "whenFull": "dropOldest", "lingerMs": 100000}),
    )
    .unwrap();
    let mut seqs = Vec::new();
    for i in 0..15 {
        let (status, seq) = p.produce("i", &json!({"body": {"n": i}}));
        assert_eq!(status, S::KUZZLE_OK);
        seqs.push(seq);
    }
    let dropped = p.poll(100, 0);
    assert_eq!(dropped.len(), 5, "{dropped:?}");
    for (r, seq) in dropped.iter().zip(&seqs) {
        assert_eq!(
            (r["seq"].as_u64(), r["status"].as_u64()),
            (Some(*seq), Some(507)),
            "{r}"
        );
    }
    assert_eq!(p.close(0).len(), 10);
}

/// The crash test's child (this test binary again, in the environment
/// below): produces numbered documents into a spool and prints each number
/// once its produce call returned, until it is killed.
fn crash_child(dir: String) {
    let index = std::env::var("KUZZLE_CRASH_INDEX").unwrap();
    let start: u64 = std::env::var("KUZZLE_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let port = std::env::var("KUZZLE_CRASH_PORT").unwrap();
    let h = connect(&json!({"host":"127.0.0.1","port":port.parse::<u16>().unwrap()}));
    // Every other round syncs at every call: its segments carry zeros
    // ahead of their records, which the next open must read as the end.
    let sync: Value = serde_json::from_str(&std::env::var("KUZZLE_CRASH_SYNC").unwrap()).unwrap();
    let p = open(
        &h,
        json!({"spoolDir": dir, "lingerMs": 1, "spoolSync": sync}),
    )
    .unwrap();
    use std::io::Write;
    let mut out = std::io::stdout();
    for n in start.. {
        let (status, seq) = p.produce(&index, &json!({"_id": format!("n{n}"), "body": {"n": n}}));
        assert_eq!(status, S::KUZZLE_OK);
        writeln!(out, "{n} {seq}").unwrap();
        out.flush().unwrap();
        let _ = p.poll(1000, 0);
    }
}

#[test]
fn sigkill_at_any_moment_loses_and_duplicates_nothing() {
    if let Ok(dir) = std::env::var("KUZZLE_CRASH_SPOOL") {
        return crash_child(dir);
    }
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "crash");
    let dir = temp_dir("spool-crash");
    let exe = std::env::current_exe().unwrap();
    let mut accepted: Vec<u64> = Vec::new();
    let mut next = 0u64;
    // Deterministic instants: after a number of accepted documents, not
    // after a time (the child runs as fast as the machine lets it).
    // 50 instants, the same on every run (a fixed seed), from the first
    // document to a few hundred: the spool caught mid-append, mid-batch,
    // mid-outcome, mid-consumption.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let instants: Vec<usize> = (0..50)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed % 300) as usize
        })
        .collect();
    for (round, kill_after) in instants.iter().enumerate() {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "sigkill_at_any_moment_loses_and_duplicates_nothing",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("KUZZLE_CRASH_SPOOL", &dir)
            .env("KUZZLE_CRASH_INDEX", &index)
            .env("KUZZLE_CRASH_START", next.to_string())
            .env("KUZZLE_CRASH_PORT", stack.port.to_string())
            .env(
                "KUZZLE_CRASH_SYNC",
                if round % 2 == 0 {
                    r#""always""#
                } else {
                    "1000"
                },
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let mut got = 0;
        while got < *kill_after {
            let Some(Ok(line)) = lines.next() else {
                panic!("round {round}: the child ended early");
            };
            let Some((n, _seq)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            accepted.push(n);
            next = n + 1;
            got += 1;
        }
        // SIGKILL: no destructor, no flush.
        child.kill().unwrap();
        // What it printed before dying was accepted too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line
                .split_once(' ')
                .and_then(|(n, _)| n.parse::<u64>().ok())
            {
                accepted.push(n);
                next = n + 1;
            }
        }
        child.wait().unwrap();
    }
    // Reopened: everything accepted is delivered; nothing twice.
    let p = open(
        &h,
        json!({"spoolDir": dir.to_str().unwrap(), "lingerMs": 1}),
    )
    .unwrap();
    assert_eq!(p.flush(120_000), S::KUZZLE_OK);
    let _ = p.poll(1_000_000, 0);
    assert!(p.close(10_000).len() <= 1_000_000);
    h.query_ok(
        json!({"controller":"collection","action":"refresh","index":index,"collection":"c"}),
    );
    let stored = h.count(&index, "c");
    let accepted: HashSet<u64> = accepted.into_iter().collect();
    // Each produce that returned is stored once (ids n<N> are unique); a
    // produce killed before it returned may be stored or not.
    assert!(
        stored >= accepted.len() as u64,
        "{stored} stored, {} accepted",
        accepted.len()
    );
    // The child may be killed after a produce returned and before it said
    // so: the next round starts again at that number (same `_id`, replaced),
    // but after the last round that one document is stored unannounced.
    assert!(
        stored <= next + 1,
        "{stored} stored, only {next} announced (+1 unannounced)"
    );
    for n in accepted.iter().copied().filter(|n| n % 37 == 0) {
        let doc = h.query_ok(json!({"controller":"document","action":"get","index":index,"collection":"c","_id":format!("n{n}")}));
        // Stored once under its id; a resend after a crash replaces it
        // (`_version` 2), it never adds a second document.
        assert_eq!(doc["_source"]["n"], n, "{doc}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The redelivery test's child: delivers 20 documents, polls their reports,
/// says which, and waits to be killed.
fn redeliver_child(dir: String) {
    let index = std::env::var("KUZZLE_CRASH_INDEX").unwrap();
    let port: u16 = std::env::var("KUZZLE_CRASH_PORT").unwrap().parse().unwrap();
    let h = connect(&json!({"host":"127.0.0.1","port":port}));
    let p = open(&h, json!({"spoolDir": dir, "lingerMs": 0})).unwrap();
    let docs: Vec<Value> = (0..20).map(|i| json!({"body": {"n": i}})).collect();
    assert_eq!(p.batch(&index, &Value::Array(docs)).0, S::KUZZLE_OK);
    assert_eq!(p.flush(60_000), S::KUZZLE_OK);
    let mut seqs: Vec<u64> = collect(&p, 20).into_keys().collect();
    seqs.sort();
    println!("polled {}", serde_json::to_string(&seqs).unwrap());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn reports_handed_out_just_before_a_crash_come_again_marked_redelivered() {
    if let Ok(dir) = std::env::var("KUZZLE_REDELIVER_SPOOL") {
        return redeliver_child(dir);
    }
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "redeliver");
    let dir = temp_dir("spool-redeliver");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reports_handed_out_just_before_a_crash_come_again_marked_redelivered",
            "--nocapture",
        ])
        .env("KUZZLE_REDELIVER_SPOOL", &dir)
        .env("KUZZLE_CRASH_INDEX", &index)
        .env("KUZZLE_CRASH_PORT", stack.port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("polled ").map(String::from))
        .expect("the child polled its reports");
    child.kill().unwrap();
    child.wait().unwrap();
    let polled: Vec<u64> = serde_json::from_str(&line).unwrap();
    assert_eq!(polled.len(), 20);
    // The poll was not followed by another: the same reports come again,
    // marked, and nothing is sent twice.
    let config = json!({"spoolDir": dir.to_str().unwrap(), "lingerMs": 0});
    let p = open(&h, config.clone()).unwrap();
    let again = collect(&p, 20);
    let mut seqs: Vec<u64> = again.keys().copied().collect();
    seqs.sort();
    assert_eq!(seqs, polled);
    assert!(
        again
            .values()
            .all(|r| r["redelivered"] == true && r["ok"] == true),
        "{again:?}"
    );
    assert!(p.poll(100, 200).is_empty(), "no other report");
    assert!(p.close(5_000).is_empty());
    // Seen by a poll followed by a close: not again.
    let p = open_when_free(&h, config);
    assert!(p.poll(100, 300).is_empty());
    assert!(p.close(5_000).is_empty());
    assert_eq!(stored(&h, &index), 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_uplink_down_for_a_while_then_back_delivers_the_backlog_once() {
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "uplink");
    let proxy = Proxy::start(stack.port);
    let gw = connect(
        &json!({"host":"127.0.0.1","port":proxy.port,"compression":"none",
        "concurrency":2,"retries":1,"retryBackoffMs":10,"timeoutMs":5000}),
    );
    let dir = temp_dir("spool-uplink");
    let p = open(
        &gw,
        json!({"spoolDir": dir.to_str().unwrap(), "lingerMs": 1}),
    )
    .unwrap();
    proxy.down();
    let mut seqs = HashSet::new();
    for i in 0..500 {
        let (status, seq) = p.produce(&index, &json!({"body": {"n": i}}));
        assert_eq!(status, S::KUZZLE_OK);
        seqs.insert(seq);
    }
    // Until a batch has come back undelivered: the link is really down.
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stats()["retriedBatches"].as_u64() < Some(1) {
        assert!(Instant::now() < deadline, "no batch tried: {}", p.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        p.poll(1000, 0).is_empty(),
        "nothing reported failed while the link is down"
    );
    proxy.up();
    assert_eq!(p.flush(120_000), S::KUZZLE_OK);
    let reports = collect(&p, 500);
    assert_eq!(reports.keys().copied().collect::<HashSet<u64>>(), seqs);
    assert!(reports.values().all(|r| r["ok"] == true), "{reports:?}");
    assert!(p.close(5_000).is_empty());
    assert_eq!(stored(&h, &index), 500);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flush_says_partial_for_its_own_documents_and_a_rejection_is_final() {
    let h = connect(&default_stack().config());
    let index = format!("t-prodpartial-{}", std::process::id());
    h.query_ok(json!({"controller":"index","action":"create","index":index}));
    h.query_ok(
        json!({"controller":"collection","action":"create","index":index,"collection":"c",
        "body":{"mappings":{"dynamic":"strict","properties":{"temp":{"type":"float"}}}}}),
    );
    let p = open(&h, json!({"lingerMs": 0})).unwrap();
    assert_eq!(
        p.produce(&index, &json!({"body": {"temp": 1.5}})).0,
        S::KUZZLE_OK
    );
    let (_, bad) = p.produce(&index, &json!({"body": {"unmapped": true}}));
    assert_eq!(p.flush(30_000), S::KUZZLE_PARTIAL);
    let reports = collect(&p, 2);
    let r = &reports[&bad];
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(false), Some(400)),
        "{r}"
    );
    assert_eq!(r["inDoubt"], false, "{r}");
    // The next flush covers only what came after.
    assert_eq!(
        p.produce(&index, &json!({"body": {"temp": 2.5}})).0,
        S::KUZZLE_OK
    );
    assert_eq!(p.flush(30_000), S::KUZZLE_OK);
    collect(&p, 1);
    assert!(p.close(5_000).is_empty());
}

#[test]
fn a_full_queue_blocks_until_blocktimeoutms_then_says_so() {
    let port = dead_port();
    let down = connect(&json!({"host":"127.0.0.1","port":port,"lazyConnect":true,"retries":0}));
    let p = open(
        &down,
        json!({"maxQueueDocuments": 3, "whenFull": "block", "blockTimeoutMs": 50, "lingerMs": 100000}),
    )
    .unwrap();
    for i in 0..3 {
        assert_eq!(p.produce("i", &json!({"body": {"n": i}})).0, S::KUZZLE_OK);
    }
    assert_eq!(
        p.produce("i", &json!({"body": {"n": 3}})).0,
        S::KUZZLE_ERR_QUEUE_FULL
    );
    let why = unsafe { CStr::from_ptr(kuzzle_produce_error()) }
        .to_str()
        .unwrap()
        .to_string();
    assert!(why.contains("blockTimeoutMs"), "{why}");
    assert_eq!(p.close(0).len(), 3);
}

/// Two batches are in flight at once, and batches that got nothing through
/// come back to be sent again: a document's versions must still be stored
/// in seq order. 5 ids, 200 versions each, in batches of 7 (so both batches
/// in flight hold versions of the same ids), with the link flapping.
#[test]
fn versions_of_one_document_are_stored_in_seq_order_across_batches_in_flight() {
    let stack = default_stack();
    let h = connect(&stack.config());
    let index = fresh_index(&h, "prodorder");
    let proxy = Proxy::start(stack.port);
    let gw = connect(
        &json!({"host":"127.0.0.1","port":proxy.port,"compression":"none",
        "concurrency":4,"retries":0,"timeoutMs":5000}),
    );
    for dir in [None, Some(temp_dir("spool-order"))] {
        let mut config = json!({"lingerMs": 0, "batchDocuments": 7});
        if let Some(d) = &dir {
            config["spoolDir"] = json!(d.to_str().unwrap());
        }
        let p = open(&gw, config).unwrap();
        let mut last = HashMap::new();
        for i in 0..1_000u64 {
            // The link down for 3 stretches of 50 documents.
            match i {
                100 | 400 | 700 => proxy.down(),
                150 | 450 | 750 => proxy.up(),
                _ => {}
            }
            let id = format!("d{}", i % 5);
            let doc = json!({"_id": id, "body": {"i": i}});
            assert_eq!(p.produce(&index, &doc).0, S::KUZZLE_OK);
            last.insert(id, i);
            // Batches leave while others are produced (what happens when
            // varies from run to run; the order checked below may not).
            std::thread::sleep(Duration::from_millis(1));
        }
        proxy.up();
        assert_eq!(p.flush(120_000), S::KUZZLE_OK);
        let reports = collect(&p, 1_000);
        let mut by_id: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for (seq, r) in &reports {
            assert_eq!(r["ok"], true, "{r}");
            let id = r["_id"].as_str().unwrap().to_string();
            by_id
                .entry(id)
                .or_default()
                .push((*seq, r["_version"].as_u64().unwrap()));
        }
        for (id, mut versions) in by_id {
            versions.sort();
            assert!(
                versions.windows(2).all(|w| w[0].1 < w[1].1),
                "{id}: stored out of seq order: {versions:?}"
            );
            let stored = h.query_ok(json!({"controller":"document","action":"get",
                "index":index,"collection":"c","_id":id}));
            assert_eq!(stored["_source"]["i"], last[&id], "{id}: {stored}");
        }
        assert!(p.close(5_000).is_empty());
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
