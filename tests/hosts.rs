//! `hosts` against the real local Kuzzle, reached as several nodes: the
//! stack itself and loopback proxies to it, one of them dead, cut or
//! refusing. (A real multi-node cluster: tests/cluster.rs.)

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};

fn hosts(ports: &[u16]) -> Value {
    Value::from(
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>(),
    )
}

/// The stats of node `address`.
fn node(stats: &Value, port: u16) -> &Value {
    let address = format!("127.0.0.1:{port}");
    stats["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == address.as_str())
        .unwrap_or_else(|| panic!("{address} not in {stats}"))
}

#[test]
fn requests_spread_over_every_node() {
    let stack = default_stack();
    let proxy = Proxy::start(stack.port);
    let h = connect(&json!({
        "hosts": hosts(&[proxy.port, stack.port]),
        "concurrency": 2,
        // Not left to the probe's timing: the byte counts below are raw.
        "compression": "none",
        "maxDocumentsPerRequest": 100,
    }));
    let index = fresh_index(&h, "spread");
    let docs = sensor_docs(4_000, Some("sp"));
    let (status, result) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
    all_written(&result, docs.as_array().unwrap().len());
    assert_eq!(h.count(&index, "c"), 4_000);
    let stats = h.stats();
    let (a, b) = (node(&stats, proxy.port), node(&stats, stack.port));
    // 40 mWrite requests, plus connect's and the queries', two in flight,
    // each to the less loaded node: neither is left out.
    for n in [a, b] {
        assert_eq!(n["alive"], true, "{stats}");
        assert!(n["requests"].as_u64().unwrap() >= 10, "{stats}");
        assert_eq!(n["failures"], 0, "{stats}");
        assert_eq!(n["inFlight"], 0, "{stats}");
        assert_eq!(n["concurrencyLimit"], 2, "{stats}");
        assert!(n["rttMs"].as_f64().unwrap() > 0.0, "{stats}");
    }
    assert_eq!(stats["documents"]["written"], 4_000, "{stats}");
    assert_eq!(stats["documents"]["failed"], 0, "{stats}");
    assert_eq!(stats["retries"], 0, "{stats}");
    let bytes = &stats["bytes"];
    assert!(bytes["sent"].as_u64().unwrap() > 4_000 * 40, "{stats}");
    assert!(bytes["received"].as_u64().unwrap() > 4_000 * 40, "{stats}");
    assert_eq!(
        h.info()["hosts"],
        json!([
            format!("127.0.0.1:{}", proxy.port),
            format!("127.0.0.1:{}", stack.port)
        ])
    );
}

#[test]
fn a_dead_node_is_avoided_and_costs_no_document() {
    let stack = default_stack();
    let dead = dead_port();
    // The dead node first: connect's own request finds it dead.
    let h = connect(&json!({
        "hosts": hosts(&[dead, stack.port]),
        "maxDocumentsPerRequest": 200,
    }));
    let index = fresh_index(&h, "deadnode");
    let docs = sensor_docs(5_000, None);
    let (status, result) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
    all_written(&result, docs.as_array().unwrap().len());
    assert_eq!(h.count(&index, "c"), 5_000);
    let stats = h.stats();
    let d = node(&stats, dead);
    assert_eq!(d["alive"], false, "{stats}");
    // Tried once, by connect; then left alone (its wait is 1 s at least,
    // and its probes are not requests).
    assert_eq!(d["requests"], 1, "{stats}");
    // (Its failed probes count too, if the write outlasted its wait.)
    assert!(d["failures"].as_u64().unwrap() >= 1, "{stats}");
    assert!(node(&stats, stack.port)["requests"].as_u64().unwrap() >= 25);
    // The refused request went to the other node at once.
    assert_eq!(stats["retries"], 1, "{stats}");
}

#[test]
fn an_entry_point_cut_mid_write_loses_and_doubles_nothing() {
    let stack = default_stack();
    let proxy = Proxy::start(stack.port);
    let h = connect(&json!({
        "hosts": hosts(&[proxy.port, stack.port]),
        "concurrency": 4,
        "maxDocumentsPerRequest": 250,
    }));
    let index = fresh_index(&h, "cutnode");
    let docs = sensor_docs(60_000, None);
    let docs_text = docs.to_string();
    let before = proxy.bytes_up();
    std::thread::scope(|s| {
        let writer = s.spawn(|| h.mwrite_raw(&index, "c", &docs_text, None));
        // Once some requests went through it, the entry point vanishes:
        // the requests under way through it end, new connections are
        // refused.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        // (Five requests of 250 documents.)
        while proxy.bytes_up() < before + 100_000 {
            assert!(std::time::Instant::now() < deadline, "nothing went through");
            assert!(!writer.is_finished(), "the write ended before the cut");
            std::thread::yield_now();
        }
        proxy.cut();
        let (status, result) = writer.join().unwrap();
        assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
        all_written(&result, docs.as_array().unwrap().len());
    });
    // Resent with the same ids: stored once each.
    assert_eq!(h.count(&index, "c"), 60_000);
    let stats = h.stats();
    assert_eq!(node(&stats, proxy.port)["alive"], false, "{stats}");
    assert_eq!(stats["documents"]["written"], 60_000, "{stats}");
}

#[test]
fn every_node_down_ends_in_bounded_time_with_every_document_reported() {
    let (a, b) = (Proxy::start(default_stack().port), dead_port());
    let h = connect(&json!({
        "hosts": hosts(&[a.port, b]),
        "retries": 3,
        "retryBackoffMs": 10,
        "maxDocumentsPerRequest": 100,
    }));
    a.cut();
    let docs = sensor_docs(1_000, None);
    let (status, result) = h.mwrite("nowhere", "c", &docs, None);
    assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{}", result["error"]);
    assert_eq!(arr_len(&result, "successes"), 0);
    assert_eq!(arr_len(&result, "errors"), 1_000);
    for e in result["errors"].as_array().unwrap() {
        // Refused: certainly not written.
        assert_eq!(e["inDoubt"], false, "{e}");
    }
    let stats = h.stats();
    assert!(stats["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["alive"] == false && n["inFlight"] == 0));
    assert_eq!(stats["documents"]["failed"], 1_000, "{stats}");
}

#[test]
fn hosts_are_checked_at_connect() {
    for (config, what) in [
        (json!({"hosts": []}), "1 to 64"),
        (json!({"hosts": "127.0.0.1:7512"}), "not an array"),
        (json!({"hosts": ["127.0.0.1"]}), "no port"),
        (json!({"hosts": ["127.0.0.1:0"]}), "no valid port"),
        (json!({"hosts": ["::1:7512"]}), "no port"),
        (json!({"hosts": ["a/b:7512"]}), "no valid host"),
        (json!({"hosts": ["h:1", "h:1"]}), "twice"),
        (
            json!({"hosts": ["h:1"], "port": 7512}),
            "exclude each other",
        ),
        (json!({"concurrency": "many"}), "concurrency"),
    ] {
        let (status, e) = match try_connect(&config) {
            Ok(_) => panic!("{config} accepted"),
            Err(failure) => failure,
        };
        assert_eq!(status, S::KUZZLE_ERR_INVALID_ARGUMENT, "{config}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{config}: {message}");
    }
    // IPv6 in brackets, and "auto" spelt out.
    let h = connect(&json!({
        "hosts": [format!("127.0.0.1:{}", default_stack().port), "[::1]:1"],
        "concurrency": "auto",
        "lazyConnect": true,
    }));
    assert_eq!(h.info()["hosts"][1], "[::1]:1");
}
