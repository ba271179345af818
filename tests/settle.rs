//! `compression` and `concurrency` settled at connect by timing Kuzzle's
//! answers, and what goes on the wire. In a test binary of its own: cargo
//! runs binaries one after another, so no other test loads Kuzzle or the
//! CPU while a loopback answer is timed (under 10 ms when idle; the
//! distant case is a proxy adding 300 ms, beyond the probe's 250 ms).

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::json;
use std::time::Duration;

#[test]
fn compression_on_the_wire_and_auto_settled_by_the_round_trip() {
    let port = default_stack().port;
    let near = Proxy::start(port);
    let far = Proxy::delayed(port, Duration::from_millis(300));
    // A Kuzzle just started answers its first requests slowly (Node's JIT
    // is cold): warm it up before any answer is timed.
    let warm = connect(&json!({"host":"127.0.0.1","port":near.port,
        "compression":"none","concurrency":1}));
    for _ in 0..50 {
        warm.query_ok(json!({"controller":"server","action":"now"}));
    }
    let docs = sensor_docs(3_000, Some("w"));
    let plain = docs.to_string().len();
    for (proxy, compression, gzip, concurrency) in [
        (&near, "gzip", true, 4),
        (&near, "none", false, 4),
        (&near, "auto", false, 4),
        (&far, "auto", true, 8),
        (&far, "none", false, 8),
    ] {
        let delayed = std::ptr::eq(proxy, &far);
        let what = format!("{compression}, delayed: {delayed}");
        let h = connect(&json!({"host":"127.0.0.1","port":proxy.port,"compression":compression}));
        let info = h.info();
        assert_eq!(
            info["compression"],
            if gzip { "gzip" } else { "none" },
            "{what}"
        );
        assert_eq!(info["concurrency"], concurrency, "{what}");
        let index = fresh_index(&h, "wire");
        let before = proxy.bytes_up();
        let (status, r) = h.mwrite(&index, "c", &docs, None);
        let sent = proxy.bytes_up() - before;
        assert_eq!(status, S::KUZZLE_OK, "{what}: {:.300}", r.to_string());
        assert_eq!(arr_len(&r, "successes"), 3_000, "{what}");
        if gzip {
            assert!(
                sent < plain / 3,
                "{what}: {sent} bytes sent for {plain} of JSON"
            );
        } else {
            assert!(
                sent > plain,
                "{what}: {sent} bytes sent for {plain} of JSON"
            );
        }
        assert_eq!(h.count(&index, "c"), 3_000, "{what}");
    }
}
