//! Faults: Kuzzle crashing mid-write and coming back, a server that never
//! answers, request-size and overload limits, one client shared by threads.
//! Every document must come back exactly once, and nothing twice in storage.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// A stack of its own, since these tests kill its Kuzzle. They take turns
/// (the guard): each kills and restarts the Kuzzle the other writes to.
fn crash_stack() -> (&'static Stack, MutexGuard<'static, ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    static STACK: OnceLock<Stack> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let stack = STACK.get_or_init(|| {
        let stack = Stack {
            name: "faults",
            port: 7542,
            redis_port: 6394,
            storage_port: 9242,
            rc_extra: None,
        };
        stack.start();
        stack
    });
    (stack, turn)
}

/// A Kuzzle with tiny limits: 8 KB requests, one request at a time and
/// a 2-request buffer, so that 413 and 503 happen. Its tests take turns
/// (the guard): each counts on the slot and the buffer being its own.
fn limits_stack() -> (&'static Stack, MutexGuard<'static, ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    static STACK: OnceLock<Stack> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let stack = STACK.get_or_init(|| {
        let stack = Stack {
            name: "limits",
            port: 7552,
            redis_port: 6395,
            storage_port: 9252,
            rc_extra: Some(
                r#"{"server":{"maxRequestSize":"8KB"},"limits":{"concurrentRequests":1,"requestsBufferSize":2,"requestsBufferWarningThreshold":1}}"#
                    .into(),
            ),
        };
        stack.start();
        stack
    });
    (stack, turn)
}

fn ids_of(r: &Value) -> Vec<String> {
    r["successes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kuzzle_killed_mid_write_and_restarted_loses_and_duplicates_nothing() {
    let (stack, _turn) = crash_stack();
    let h = connect(&json!({"host":"127.0.0.1","port":stack.port,
        "maxDocumentsPerRequest":1000,"concurrency":4,
        "retries":12,"retryBackoffMs":200,"retryDeadlineMs":60000}));
    let index = fresh_index(&h, "crash");
    // Half with ids of their own, half given one by generateIds.
    let docs: Vec<Value> = (0..50_000)
        .map(|i| {
            let body = json!({"seq": i, "temp": 20.5});
            if i % 2 == 0 {
                json!({"_id": format!("own-{i}"), "body": body})
            } else {
                json!({"body": body})
            }
        })
        .collect();
    let docs = Value::Array(docs).to_string();

    let (status, r) = std::thread::scope(|s| {
        // Killed while it holds requests of this write, whatever the
        // machine's speed: with the storage frozen, the write's first bulk
        // waits inside Kuzzle (as do the other requests in flight).
        let paused = stack.pause_storage();
        let writer = s.spawn(|| h.mwrite_raw(&index, "c", &docs, None));
        paused.wait_for_a_storage_request("the write");
        let out = stack.script(&["kill-kuzzle"]);
        assert!(out.status.success(), "{out:?}");
        // The storage may still apply the bulk it got: an outcome the
        // client cannot know, as in a real crash.
        drop(paused);
        let out = stack.script(&["start-kuzzle"]);
        assert!(out.status.success(), "{out:?}");
        writer.join().unwrap()
    });

    let (ok, failed) = (arr_len(&r, "successes"), arr_len(&r, "errors"));
    assert_eq!(ok + failed, 50_000, "every document reported once");
    for e in r["errors"].as_array().unwrap() {
        assert_eq!(e["status"], 0, "only unknown outcomes may fail: {e}");
    }
    let ids = ids_of(&r);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ok, "no id reported twice");
    let stored = h.count(&index, "c");
    assert!(
        stored >= ok as u64,
        "reported successes are stored: {stored} < {ok}"
    );
    assert!(
        stored <= 50_000,
        "retries duplicated documents: {stored} stored"
    );
    if status == S::KUZZLE_OK {
        assert_eq!(stored, 50_000);
    }
    // Spot-check successes by id.
    for id in ids.iter().step_by(5000) {
        let got = h.query_ok(json!({"controller":"document","action":"get",
            "index":index,"collection":"c","_id":id}));
        assert!(got["_source"]["seq"].is_number(), "{id}: {got}");
    }
}

#[test]
fn server_that_never_answers_times_out_and_reports_every_document() {
    let port = default_stack().port;
    // The index is made directly, and connecting skips the round-trip
    // probe: the timeout below is for the black hole, yet generous for the
    // one health check a busy machine's Kuzzle must answer at connect.
    let index = fresh_index(&connect(&json!({"host":"127.0.0.1","port":port})), "hang");
    let proxy = Proxy::start(port);
    let h = connect(
        &json!({"host":"127.0.0.1","port":proxy.port,"compression":"none",
        "concurrency":4,"timeoutMs":2000,"retries":1,"retryBackoffMs":10,"generateIds":false}),
    );
    proxy.blackhole();
    let docs = json!([
        {"_id":"a","body":{"v":1}},
        {"body":{"v":2}},
        {"_id":"b","body":{"v":3}}
    ]);
    let (status, r) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_ERR_TIMEOUT, "{r}");
    assert_eq!(arr_len(&r, "successes"), 0);
    assert_eq!(arr_len(&r, "errors"), 3);
    for e in r["errors"].as_array().unwrap() {
        assert_eq!(e["status"], 0);
        assert!(
            e["reason"].as_str().unwrap().contains("may or may not"),
            "{e}"
        );
    }
    assert_eq!(r["error"]["id"], "libkuzzle.timeout");
}

#[test]
fn server_request_limit_smaller_than_ours_is_met_by_splitting() {
    let (stack, _turn) = limits_stack();
    // Our default 1 MB requests meet Kuzzle's 8 KB limit: split until they fit.
    let h = connect(
        &json!({"host":"127.0.0.1","port":stack.port,"compression":"none",
        "retries":20,"retryBackoffMs":20}),
    );
    let index = fresh_index(&h, "split");
    let mut docs = sensor_docs(400, Some("s")).as_array().unwrap().clone();
    // One document larger than the server's limit on its own, incompressible.
    docs.insert(
        200,
        json!({"_id":"too-big","body":{"blob": noise(12_000, 7)}}),
    );
    let (status, r) = h.mwrite(&index, "c", &Value::Array(docs), None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{:.500}", r.to_string());
    assert_eq!(arr_len(&r, "successes"), 400);
    assert_eq!(arr_len(&r, "errors"), 1);
    assert_eq!(r["errors"][0]["status"], 413);
    assert_eq!(r["errors"][0]["document"]["_id"], "too-big");
    assert_eq!(h.count(&index, "c"), 400);
}

/// 503 `api.process.overloaded` is retried until written. As below, one
/// write holds Kuzzle's only slot while the storage is frozen, so what the
/// 6 clients send is buffered (2 requests) or refused; and the test waits
/// until they have sent more than one request per worker could weigh,
/// which only resending refused requests explains, before letting Kuzzle
/// go on.
#[test]
fn overloaded_server_503_is_retried_until_written() {
    let (stack, _turn) = limits_stack();
    let port = stack.port;
    let setup = connect(&json!({"host":"127.0.0.1","port":port}));
    let index = fresh_index(&setup, "busy");
    let (status, r) = setup.mwrite(&index, "c", &sensor_docs(1, Some("warm-")), None);
    assert_eq!(status, S::KUZZLE_OK, "{r}");
    let blocker = connect(&json!({"host":"127.0.0.1","port":port,"retries":0}));
    // The clients go through a proxy that counts what they send.
    let proxy = Proxy::start(port);
    let (max_request, workers) = (6000, 4);
    let clients: Vec<Handle> = (0..6)
        .map(|_| {
            connect(
                &json!({"host":"127.0.0.1","port":proxy.port,"compression":"none",
                "maxRequestBytes":max_request,"concurrency":workers,
                "retries":30,"retryBackoffMs":20,"retryDeadlineMs":60000}),
            )
        })
        .collect();
    // Each worker's first request, headers included (generously).
    let first_sendings = clients.len() * workers * (max_request + 2048);

    let results: Vec<(S, Value)> = std::thread::scope(|s| {
        let paused = stack.pause_storage();
        let held = s.spawn(|| blocker.mwrite(&index, "c", &sensor_docs(1, Some("held-")), None));
        paused.wait_for_a_storage_request("the blocking write");
        let before = proxy.bytes_up();
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(t, h)| {
                let index = &index;
                s.spawn(move || {
                    h.mwrite(index, "c", &sensor_docs(300, Some(&format!("t{t}-"))), None)
                })
            })
            .collect();
        // The bound only stops a test whose clients never resend.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while proxy.bytes_up() - before <= first_sendings {
            assert!(
                std::time::Instant::now() < deadline,
                "no refused request was resent: {} bytes sent",
                proxy.bytes_up() - before
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(paused);
        let (status, r) = held.join().unwrap();
        assert_eq!(status, S::KUZZLE_OK, "the write holding the slot: {r}");
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, r) in &results {
        assert_eq!(*status, S::KUZZLE_OK, "{:.300}", r.to_string());
        assert_eq!(arr_len(r, "successes"), 300);
    }
    assert_eq!(setup.count(&index, "c"), 2 + 1800);
}

/// Kuzzle refuses what exceeds its slot and buffer with 503
/// `api.process.overloaded`; with `retries: 0` every document of a refused
/// request is reported with that 503, once. The overload is built, not hoped
/// for (requests sent at once may all pass Kuzzle's check before the first
/// one takes the slot, and connecting 8 clients at once may overload it
/// too): with the storage frozen, one write holds Kuzzle's only slot, so of
/// what the 8 clients send next Kuzzle buffers 2 requests and refuses all
/// the others at once. At most 2 clients wait on the buffer: the 6 others
/// end while the storage is still frozen, refused whole.
#[test]
fn overload_without_retries_reports_503_per_document() {
    let (stack, _turn) = limits_stack();
    let port = stack.port;
    let setup = connect(&json!({"host":"127.0.0.1","port":port}));
    let index = fresh_index(&setup, "noretry");
    let config = json!({"host":"127.0.0.1","port":port,"compression":"none",
        "maxRequestBytes":2048,"concurrency":8,"retries":0});
    // Connected now: connecting asks Kuzzle, which must not wait on storage.
    let blocker = connect(&config);
    let clients: Vec<Handle> = (0..8).map(|_| connect(&config)).collect();
    // One write done before the freeze, so that none of what follows needs
    // storage before it takes a slot (rights, collection: cached by then).
    let (status, r) = setup.mwrite(&index, "c", &sensor_docs(1, Some("warm-")), None);
    assert_eq!(status, S::KUZZLE_OK, "{r}");

    let inputs: Vec<Value> = (0..8)
        .map(|t| sensor_docs(300, Some(&format!("n{t}-"))))
        .collect();
    let (done_tx, done_rx) = mpsc::channel();
    let (results, ended_frozen) = std::thread::scope(|s| {
        let paused = stack.pause_storage();
        let held = s.spawn(|| blocker.mwrite(&index, "c", &sensor_docs(1, Some("held-")), None));
        paused.wait_for_a_storage_request("the blocking write");
        let handles: Vec<_> = clients
            .iter()
            .zip(&inputs)
            .enumerate()
            .map(|(t, (h, docs))| {
                let (index, done_tx) = (&index, done_tx.clone());
                s.spawn(move || {
                    let out = h.mwrite(index, "c", docs, None);
                    let _ = done_tx.send(t);
                    out
                })
            })
            .collect();
        // Refusals come at once; the bound only stops a Kuzzle that buffers
        // more than it says from hanging the test.
        let ended_frozen: Vec<usize> = (0..6)
            .map(|_| {
                done_rx
                    .recv_timeout(Duration::from_secs(120))
                    .expect("6 clients refused whole while the storage is frozen")
            })
            .collect();
        drop(paused);
        let (status, r) = held.join().unwrap();
        assert_eq!(status, S::KUZZLE_OK, "the write holding the slot: {r}");
        let results: Vec<(S, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (results, ended_frozen)
    });

    let mut written = 0;
    for (t, ((status, r), input)) in results.iter().zip(&inputs).enumerate() {
        let what = format!("client {t}: {:.300}", r.to_string());
        // Every client had requests refused (only 2 could be buffered).
        assert_eq!(*status, S::KUZZLE_ERR_SERVER, "{what}");
        assert_eq!(r["error"]["status"], 503, "{what}");
        assert_eq!(r["error"]["id"], "api.process.overloaded", "{what}");
        assert_ne!(r["error"]["inDoubt"], true, "refused, so not run: {what}");
        for e in r["errors"].as_array().unwrap() {
            assert_eq!(e["status"], 503, "{what}: {e}");
            assert_ne!(e["inDoubt"], true, "{what}: {e}");
        }
        // Each input document exactly once, in successes or errors.
        let mut reported: Vec<String> = ids_of(r);
        reported.extend(
            r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["document"]["_id"].as_str().unwrap().to_string()),
        );
        reported.sort();
        let mut expected: Vec<String> = input
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["_id"].as_str().unwrap().to_string())
            .collect();
        expected.sort();
        assert_eq!(reported, expected, "client {t}: each document once");
        if ended_frozen.contains(&t) {
            assert_eq!(arr_len(r, "successes"), 0, "{what}");
            assert_eq!(arr_len(r, "errors"), 300, "{what}");
        }
        written += arr_len(r, "successes") as u64;
    }
    // Refused documents were not written: the warm-up, the held write and
    // the buffered requests' documents are all that Kuzzle stored.
    assert_eq!(setup.count(&index, "c"), 2 + written);
}

#[test]
fn one_client_shared_by_eight_threads() {
    let stack = default_stack();
    let h = connect(&json!({"host":"127.0.0.1","port":stack.port,"maxDocumentsPerRequest":500}));
    let index = fresh_index(&h, "threads");
    let all_ids: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (h, index) = (&h, &index);
                s.spawn(move || {
                    let docs = if t % 2 == 0 {
                        sensor_docs(5000, Some(&format!("th{t}-")))
                    } else {
                        sensor_docs(5000, None)
                    };
                    let (status, r) = h.mwrite(index, "c", &docs, None);
                    assert_eq!(status, S::KUZZLE_OK, "{:.300}", r.to_string());
                    ids_of(&r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: HashSet<&String> = all_ids.iter().flatten().collect();
    assert_eq!(
        unique.len(),
        40_000,
        "generated ids are unique across threads"
    );
    assert_eq!(h.count(&index, "c"), 40_000);
}

#[test]
fn hundred_megabyte_input_is_handled_without_crash() {
    let h = connect(&default_stack().config());
    let index = fresh_index(&h, "hundredmb");
    // 50 documents of 2 MB of incompressible text: each alone is larger than
    // a request (1 MB on the wire), so each is rejected alone with 413.
    let blob = noise(2_000_000, 11);
    let mut docs = String::with_capacity(101_000_000);
    docs.push('[');
    for i in 0..50 {
        if i > 0 {
            docs.push(',');
        }
        docs.push_str(&format!(r#"{{"_id":"big{i}","body":{{"blob":"{blob}"}}}}"#));
    }
    docs.push_str(r#",{"_id":"small","body":{"v":1}}]"#);
    assert!(docs.len() > 100_000_000);
    let (status, text) = h.mwrite_text(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{text:.300}");
    assert_eq!(text.matches(r#""status":413"#).count(), 50);
    assert!(text.starts_with(r#"{"successes":[{"_id":"small""#));
    // The same, cut short: not JSON, a clear error, nothing sent.
    docs.truncate(docs.len() - 10);
    let (status, text) = h.mwrite_text(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_ERR_JSON, "{text:.300}");
    assert_eq!(h.count(&index, "c"), 1);
}

#[test]
fn index_names_kuzzle_rejects_fail_every_document_clearly() {
    let h = connect(&default_stack().config());
    for bad in ["UPPER", "with space", "a/b", "%internal"] {
        let (status, r) = h.mwrite(bad, "c", &sensor_docs(3, Some("x")), None);
        assert_eq!(status, S::KUZZLE_ERR_SERVER, "{bad}: {r}");
        assert_eq!(arr_len(&r, "errors"), 3, "{bad}");
        let http = r["error"]["status"].as_u64().unwrap();
        assert!((400..500).contains(&http), "{bad}: {r}");
    }
}

#[test]
fn kuzzle_killed_during_a_spool_backlog_drain_delivers_everything_once() {
    let (stack, _turn) = crash_stack();
    let h = connect(&json!({"host":"127.0.0.1","port":stack.port,
        "maxDocumentsPerRequest":1000,"concurrency":4,"timeoutMs":10000}));
    let index = fresh_index(&h, "drain");
    let dir = std::env::temp_dir().join(format!("kuzzle-drain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = producer::open(
        &h,
        json!({"spoolDir": dir.to_str().unwrap(), "lingerMs": 1}),
    )
    .unwrap();
    let docs: Vec<Value> = (0..20_000).map(|i| json!({"body": {"n": i}})).collect();
    // Held inside Kuzzle when it dies: the storage frozen, a bulk waiting.
    let paused = stack.pause_storage();
    let (status, first, n) = p.batch(&index, &Value::Array(docs));
    assert_eq!((status, n), (S::KUZZLE_OK, 20_000));
    paused.wait_for_a_storage_request("the drain");
    let out = stack.script(&["kill-kuzzle"]);
    assert!(out.status.success(), "{out:?}");
    drop(paused);
    let out = stack.script(&["start-kuzzle"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(p.flush(180_000), S::KUZZLE_OK);
    let mut seqs = HashSet::new();
    for r in p.poll(1_000_000, 0).into_iter().chain(p.close(10_000)) {
        assert_eq!(r["ok"], true, "with a spool nothing fails for a crash: {r}");
        assert!(
            seqs.insert(r["seq"].as_u64().unwrap()),
            "reported twice: {r}"
        );
    }
    assert_eq!(seqs, (first..first + 20_000).collect::<HashSet<u64>>());
    h.query_ok(
        json!({"controller":"collection","action":"refresh","index":index,"collection":"c"}),
    );
    assert_eq!(
        h.count(&index, "c"),
        20_000,
        "every document once: same ids on resend"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
