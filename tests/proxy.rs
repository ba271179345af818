//! HTTPS through a real reverse proxy: Debian's nginx terminating TLS in
//! front of the real Kuzzle (scripts/kuzzle-stack.sh with KUZZLE_TLS_PORT),
//! keeping client connections alive while it opens a new one to Kuzzle for
//! each request, as production deployments do. Its fault ports give the
//! proxy's own 503, a 504 after the request was forwarded, a 502, and idle
//! connections closed after 1 s.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::sync::OnceLock;

struct Tls {
    stack: Stack,
    info: Value,
}

impl Tls {
    fn port(&self, fault: Option<&str>) -> u64 {
        match fault {
            None => self.info["port"].as_u64().unwrap(),
            Some(name) => self.info["faultPorts"][name].as_u64().unwrap(),
        }
    }

    /// A client of the proxy (or of one of its fault ports) by the name its
    /// certificate holds, trusting the stack's CA.
    fn config(&self, fault: Option<&str>) -> Value {
        json!({
            "host": self.info["host"],
            "port": self.port(fault),
            "ssl": true,
            "caFile": self.info["caFile"],
        })
    }
}

/// The `tlsproxy` stack with its nginx, started once for this file.
fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let stack = Stack {
            name: "tlsproxy",
            port: 7582,
            redis_port: 6398,
            storage_port: 9282,
            rc_extra: None,
        };
        let run = |args: &[&str]| {
            std::process::Command::new("bash")
                .arg(repo().join("scripts/kuzzle-stack.sh"))
                .args(args)
                .env("KUZZLE_STACK_NAME", stack.name)
                .env("KUZZLE_PORT", stack.port.to_string())
                .env("KUZZLE_REDIS_PORT", stack.redis_port.to_string())
                .env("KUZZLE_STORAGE_PORT", stack.storage_port.to_string())
                .env("KUZZLE_TLS_PORT", "7583")
                .output()
                .expect("cannot run scripts/kuzzle-stack.sh")
        };
        let out = run(&["start"]);
        assert!(
            out.status.success(),
            "the 'tlsproxy' stack (Kuzzle behind nginx) could not be started:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["tls-info"]);
        assert!(out.status.success(), "tls-info: {out:?}");
        let info = serde_json::from_slice(&out.stdout).expect("tls-info prints JSON");
        Tls { stack, info }
    })
}

fn stat(stats: &Value, group: &str, key: &str) -> u64 {
    stats[group][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{group}.{key} not in {stats}"))
}

#[test]
fn https_through_the_proxy_reuses_its_connections() {
    let t = tls();
    let h = connect(&json!({
        "concurrency": 2,
        "maxDocumentsPerRequest": 500,
        "host": t.info["host"], "port": t.port(None), "ssl": true, "caFile": t.info["caFile"],
    }));
    let index = fresh_index(&h, "https");
    let docs = sensor_docs(10_000, Some("tls"));
    let (status, result) = h.mwrite(&index, "c", &docs, None);
    assert_eq!(status, S::KUZZLE_OK, "{}", result["error"]);
    all_written(&result, 10_000);
    assert_eq!(h.count(&index, "c"), 10_000);
    let stats = h.stats();
    let requests = stats["nodes"][0]["requests"].as_u64().unwrap();
    let opened = stat(&stats, "connections", "opened");
    let reused = stat(&stats, "connections", "reused");
    // 20 mWrite requests and the queries around them, two at a time: a
    // connection for each of the two workers (and connect's), the rest
    // go on them again.
    assert!(requests >= 24, "{stats}");
    assert!((1..=4).contains(&opened), "{stats}");
    assert!(reused + opened >= requests, "{stats}");
    // Every connection is TLS, and its handshake counted once.
    let (full, resumed) = (
        stat(&stats, "tlsHandshakes", "full"),
        stat(&stats, "tlsHandshakes", "resumed"),
    );
    assert_eq!(full + resumed, opened, "{stats}");
    assert!(full >= 1, "{stats}");
    assert_eq!(stats["documents"]["written"], 10_000, "{stats}");
    assert_eq!(stats["retries"], 0, "{stats}");
}

#[test]
fn new_connections_resume_the_tls_session() {
    // The 1 s keep-alive port: after a pause the server has closed the
    // connection, so the next request opens another, with the session of
    // the first.
    let t = tls();
    let h = connect(&t.config(Some("keepalive1s")));
    let opened = |h: &Handle| stat(&h.stats(), "connections", "opened");
    let first = opened(&h);
    // Waits until nginx has closed it (1 s, later on a busy machine).
    let mut rounds = 0;
    while opened(&h) == first {
        rounds += 1;
        assert!(
            rounds <= 20,
            "nginx kept the connection for 30 s: {}",
            h.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(1500));
        h.query_ok(json!({"controller":"server","action":"now"}));
    }
    let stats = h.stats();
    assert!(stat(&stats, "tlsHandshakes", "resumed") >= 1, "{stats}");
    assert_eq!(
        stat(&stats, "tlsHandshakes", "full") + stat(&stats, "tlsHandshakes", "resumed"),
        stat(&stats, "connections", "opened"),
        "{stats}"
    );
}

#[test]
fn the_certificate_must_name_the_host() {
    let t = tls();
    // The same listener by its IP: the certificate names only localhost.
    let mut config = t.config(None);
    config["host"] = t.info["wrongHost"].clone();
    let (status, e) = try_connect(&config)
        .err()
        .expect("a wrong host name connects");
    assert_eq!(status, S::KUZZLE_ERR_TLS, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{e}"
    );
    // The right name, but the CA not trusted (Mozilla's roots only).
    let mut config = t.config(None);
    config.as_object_mut().unwrap().remove("caFile");
    let (status, e) = try_connect(&config).err().expect("an unknown CA connects");
    assert_eq!(status, S::KUZZLE_ERR_TLS, "{e}");
    // Trusted: connects.
    let h = connect(&t.config(None));
    assert!(h.info()["connected"].as_bool().unwrap());
}

#[test]
fn the_proxys_own_errors_are_in_doubt_and_queries_never_sent_twice() {
    let t = tls();
    for (fault, http) in [("status503", 503), ("timeout504", 504), ("refused502", 502)] {
        let mut config = t.config(Some(fault));
        config["lazyConnect"] = json!(true);
        config["retries"] = json!(3);
        let h = connect(&config);
        let (status, e) = h.query(json!({"controller":"server","action":"now"}));
        assert_ne!(status, S::KUZZLE_OK, "{fault}: {e}");
        assert_eq!(e["error"]["status"], http, "{fault}: {e}");
        // Nobody can tell whether Kuzzle ran it: in doubt, and not sent
        // again, whatever `retries` allows.
        assert_eq!(e["error"]["inDoubt"], true, "{fault}: {e}");
        let stats = h.stats();
        assert_eq!(stats["retries"], 0, "{fault}: {stats}");
        assert_eq!(stats["nodes"][0]["requests"], 1, "{fault}: {stats}");
    }
}

#[test]
fn documents_through_a_proxy_that_answers_503_are_each_reported_once() {
    let t = tls();
    let mut config = t.config(Some("status503"));
    config["lazyConnect"] = json!(true);
    config["retries"] = json!(1);
    config["retryBackoffMs"] = json!(10);
    config["maxDocumentsPerRequest"] = json!(100);
    let h = connect(&config);
    let docs = sensor_docs(300, Some("p503-"));
    let (status, result) = h.mwrite("any-index", "c", &docs, None);
    assert_ne!(status, S::KUZZLE_OK, "{result}");
    assert_eq!(arr_len(&result, "successes"), 0, "{result}");
    let errors = result["errors"].as_array().unwrap();
    let ids: std::collections::HashSet<&str> = errors
        .iter()
        .map(|e| e["document"]["_id"].as_str().unwrap())
        .collect();
    assert_eq!((errors.len(), ids.len()), (300, 300), "{result}");
    for e in errors {
        assert_eq!(e["status"], 503, "{e}");
        assert_eq!(e["inDoubt"], true, "{e}");
    }
}

#[test]
fn a_kept_alive_connection_closed_by_the_proxy_never_fails_a_document() {
    // The 1 s keep-alive port, with pauses around that second: a pooled
    // connection is found closed before use, or (the race) closed as the
    // request goes. Either way every document is written once.
    let t = tls();
    let h = connect(&t.config(Some("keepalive1s")));
    let index = fresh_index(&h, "stale");
    let mut n = 0;
    for round in 0..6u64 {
        let docs = sensor_docs(500, Some(&format!("st{round}-")));
        let (status, result) = h.mwrite(&index, "c", &docs, None);
        assert_eq!(
            status,
            S::KUZZLE_OK,
            "round {round}: {}",
            result["errors"][0]
        );
        all_written(&result, 500);
        n += 500;
        std::thread::sleep(std::time::Duration::from_millis(960 + 15 * round));
    }
    assert_eq!(h.count(&index, "c"), n);
    let stats = h.stats();
    assert_eq!(stats["documents"]["failed"], 0, "{stats}");
    assert_eq!(stats["documents"]["inDoubt"], 0, "{stats}");
    // Pauses over 1 s: new connections.
    assert!(stat(&stats, "connections", "opened") >= 3, "{stats}");
    // The same stack behind the proxy: everything is there.
    let direct = connect(&t.stack.config());
    assert_eq!(direct.count(&index, "c"), n);
}
