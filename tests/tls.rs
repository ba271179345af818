//! TLS: verification is on by default. A local TLS endpoint (a loopback TLS
//! proxy in front of the real Kuzzle) whose certificate comes from a
//! self-signed CA is refused without `caFile`, accepted with it.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct TlsProxy {
    child: Child,
    port: u16,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed CA and a `localhost`/127.0.0.1 server certificate it
/// signed, made with openssl. Returns (ca, server cert, server key).
fn certificates(dir: &Path) -> (String, String, String) {
    let p = |name: &str| dir.join(name).display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed to make test certificates");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=libkuzzle test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

fn tls_proxy(cert: &str, key: &str, target: u16) -> TlsProxy {
    let mut child = Command::new("python3")
        .arg(repo().join("tests/support/tls_proxy.py"))
        .args([cert, key, &target.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the TLS proxy");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("ready ")
        .expect("proxy ready")
        .parse()
        .unwrap();
    TlsProxy { child, port }
}

#[test]
fn self_signed_certificate_is_refused_by_default_and_trusted_with_ca_file() {
    let stack = default_stack();
    let dir = std::env::temp_dir().join(format!("libkuzzle-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let proxy = tls_proxy(&cert, &key, stack.port);

    // Verification on by default: refused.
    let (s, e) = try_connect(&json!({"host":"localhost","port":proxy.port,"ssl":true}))
        .err()
        .expect("an untrusted certificate must be refused");
    assert_eq!(s, S::KUZZLE_ERR_TLS, "{e}");

    // Trusted through caFile: connects and writes.
    let h = connect(&json!({"host":"localhost","port":proxy.port,"ssl":true,"caFile":ca}));
    let index = fresh_index(&h, "tls");
    let (s, r) = h.mwrite(&index, "c", &sensor_docs(500, Some("tls")), None);
    assert_eq!(s, S::KUZZLE_OK, "{r}");
    assert_eq!(h.count(&index, "c"), 500);

    // Verification off, on purpose: accepted.
    let h = connect(&json!({"host":"localhost","port":proxy.port,"ssl":true,"tlsVerify":false}));
    h.query_ok(json!({"controller":"server","action":"now"}));

    // A caFile that is not PEM: a TLS error naming the file.
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let (s, e) = try_connect(&json!({"host":"localhost","port":proxy.port,"ssl":true,
        "caFile":bogus.display().to_string()}))
    .err()
    .unwrap();
    assert_eq!(s, S::KUZZLE_ERR_TLS, "{e}");
    // TLS to a plain-HTTP port fails cleanly too (Kuzzle waits for an HTTP
    // request that never comes: a timeout).
    let (s, e) =
        try_connect(&json!({"host":"127.0.0.1","port":stack.port,"ssl":true,"timeoutMs":3000}))
            .err()
            .unwrap();
    assert!(
        matches!(
            s,
            S::KUZZLE_ERR_TLS | S::KUZZLE_ERR_CONNECTION | S::KUZZLE_ERR_TIMEOUT
        ),
        "{s:?} {e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
