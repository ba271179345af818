//! A real two-node Kuzzle cluster (scripts/kuzzle-cluster.sh): writes
//! spread over both nodes, a node killed in the middle of a write, avoided
//! afterwards, rejoining, every node down, a rolling restart. The tests
//! take turns (they kill and start the nodes they share); each leaves both
//! nodes up.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

struct Cluster {
    nodes: Vec<String>,
}

fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/kuzzle-cluster.sh"))
        .args(args)
        .output()
        .expect("cannot run scripts/kuzzle-cluster.sh");
    assert!(
        out.status.success(),
        "kuzzle-cluster.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cluster, up with both nodes, for one test at a time.
fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| {
        script(&["up", "2"]);
        let nodes = script(&["nodes"]).lines().map(str::to_string).collect();
        Mutex::new(Cluster { nodes })
    });
    // A test that failed may have left a node down: start it again (a
    // no-op for a node that runs).
    let guard = cluster.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..guard.nodes.len() {
        script(&["start", &i.to_string()]);
    }
    guard
}

impl Cluster {
    fn connect(&self, extra: Value) -> Handle {
        let mut config = json!({"hosts": self.nodes, "maxDocumentsPerRequest": 500});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        connect(&config)
    }

    /// A client of node `i` alone (to read what the cluster stored).
    fn node_client(&self, i: usize) -> Handle {
        let (host, port) = self.nodes[i].rsplit_once(':').unwrap();
        connect(&json!({"host": host, "port": port.parse::<u16>().unwrap()}))
    }
}

fn node_stats(h: &Handle, i: usize) -> Value {
    h.stats()["nodes"][i].clone()
}

fn requests(h: &Handle, i: usize) -> u64 {
    node_stats(h, i)["requests"].as_u64().unwrap()
}

#[test]
fn writes_spread_over_both_nodes_and_each_reads_them() {
    let c = cluster();
    let h = c.connect(json!({}));
    let index = fresh_index(&h, "cspread");
    let (status, result) = h.mwrite(&index, "c", &sensor_docs(20_000, None), None);
    assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
    all_written(&result, 20_000);
    let stats = h.stats();
    for i in 0..2 {
        let n = &stats["nodes"][i];
        assert_eq!(n["alive"], true, "{stats}");
        assert!(n["requests"].as_u64().unwrap() >= 10, "{stats}");
        assert_eq!(n["failures"], 0, "{stats}");
        // Written through one node, read through the other.
        assert_eq!(c.node_client(i).count(&index, "c"), 20_000);
    }
}

#[test]
fn a_node_killed_mid_write_loses_nothing_and_stores_nothing_twice() {
    let c = cluster();
    let h = c.connect(json!({}));
    let index = fresh_index(&h, "ckill");
    let docs = sensor_docs(100_000, None).to_string();
    std::thread::scope(|s| {
        let writer = s.spawn(|| h.mwrite_raw(&index, "c", &docs, None));
        // Once node 1 took some of the write's 200 requests, it dies with
        // others in flight.
        let deadline = Instant::now() + Duration::from_secs(300);
        while requests(&h, 1) < 20 {
            assert!(Instant::now() < deadline, "node 1 got no request");
            assert!(!writer.is_finished(), "the write ended first");
            std::thread::sleep(Duration::from_millis(1));
        }
        script(&["kill", "1"]);
        let (status, result) = writer.join().unwrap();
        assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
        all_written(&result, 100_000);
    });
    let stats = h.stats();
    assert_eq!(stats["nodes"][1]["alive"], false, "{stats}");
    assert_eq!(stats["documents"]["written"], 100_000, "{stats}");
    // Through the survivor, every document once.
    assert_eq!(c.node_client(0).count(&index, "c"), 100_000);

    // Afterwards the dead node is left alone: no request, no retry.
    let (before, retries) = (requests(&h, 1), h.stats()["retries"].clone());
    for _ in 0..3 {
        let (status, result) = h.mwrite(&index, "c", &sensor_docs(5_000, None), None);
        assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
    }
    assert_eq!(requests(&h, 1), before);
    assert_eq!(h.stats()["retries"], retries);

    // Started again, it gets requests within a minute (its wait is 30 s
    // at most, then a probe).
    script(&["start", "1"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while requests(&h, 1) == before {
        assert!(Instant::now() < deadline, "node 1 never used again");
        let (status, result) = h.mwrite(&index, "c", &sensor_docs(1_000, None), None);
        assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(node_stats(&h, 1)["alive"], true);
}

#[test]
fn every_node_down_ends_with_every_document_reported() {
    let c = cluster();
    let h = c.connect(json!({"retries": 3, "retryBackoffMs": 50, "retryDeadlineMs": 20_000}));
    script(&["kill", "0"]);
    script(&["kill", "1"]);
    let (status, result) = h.mwrite("nowhere", "c", &sensor_docs(3_000, None), None);
    assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{}", result["error"]);
    assert_eq!(arr_len(&result, "successes"), 0);
    assert_eq!(arr_len(&result, "errors"), 3_000);
    let stats = h.stats();
    for i in 0..2 {
        assert_eq!(stats["nodes"][i]["alive"], false, "{stats}");
        assert_eq!(stats["nodes"][i]["inFlight"], 0, "{stats}");
    }
    assert_eq!(stats["documents"]["failed"], 3_000, "{stats}");
    drop(c);
    // Both back for the next test.
    let _restarted = cluster();
}

#[test]
fn a_rolling_restart_reports_nothing_in_doubt() {
    let c = cluster();
    let h = c.connect(json!({}));
    let index = fresh_index(&h, "croll");
    let written = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds < 3 {
                let (status, result) = h.mwrite(
                    &index,
                    "c",
                    &sensor_docs(5_000, Some(&format!("r{rounds}"))),
                    None,
                );
                assert_eq!(
                    status,
                    S::KUZZLE_OK,
                    "round {rounds}: {}",
                    result["errors"][0]
                );
                written.fetch_add(5_000, std::sync::atomic::Ordering::SeqCst);
                rounds += 1;
            }
        });
        for i in ["0", "1"] {
            // A clean stop (SIGTERM): the node refuses new requests as
            // shutting down, finishes the ones it runs, exits.
            script(&["term", i]);
            script(&["start", i]);
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.join().unwrap();
    });
    let written = written.into_inner();
    assert!(written >= 15_000);
    assert_eq!(c.node_client(0).count(&index, "c"), written as u64);
    let stats = h.stats();
    assert_eq!(stats["documents"]["inDoubt"], 0, "{stats}");
    assert_eq!(stats["documents"]["failed"], 0, "{stats}");
}
