//! Test fixture: the real local Kuzzle stack (started by
//! scripts/kuzzle-stack.sh, never mocked), one fresh index per test, and thin
//! safe wrappers over the C ABI so every test goes through `extern "C"`.
//!
//! A test that needs Kuzzle panics with the script's output when the stack
//! cannot be started: it never skips and never passes without a server.

#![allow(dead_code)]

pub mod producer;

use kuzzle::ffi::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::ffi::{c_char, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A named stack of scripts/kuzzle-stack.sh: its ports and environment.
#[derive(Clone, Debug)]
pub struct Stack {
    pub name: &'static str,
    pub port: u16,
    pub redis_port: u16,
    pub storage_port: u16,
    pub rc_extra: Option<String>,
}

impl Stack {
    pub fn script(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("scripts/kuzzle-stack.sh"))
            .args(args)
            .env("KUZZLE_STACK_NAME", self.name)
            .env("KUZZLE_PORT", self.port.to_string())
            .env("KUZZLE_REDIS_PORT", self.redis_port.to_string())
            .env("KUZZLE_STORAGE_PORT", self.storage_port.to_string());
        if let Some(extra) = &self.rc_extra {
            cmd.env("KUZZLE_RC_EXTRA", extra);
        }
        cmd.output().expect("cannot run scripts/kuzzle-stack.sh")
    }

    /// Starts the stack (a no-op when it runs) or panics with the script's
    /// output: tests needing Kuzzle must fail loudly without it.
    pub fn start(&self) {
        let out = self.script(&["start"]);
        assert!(
            out.status.success(),
            "the local Kuzzle stack '{}' could not be started:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let out = self.script(&["stop"]);
        assert!(out.status.success(), "stop failed: {out:?}");
    }

    /// Creates the first admin and an API key; returns (user, password, key).
    pub fn admin(&self) -> (String, String, String) {
        let out = self.script(&["admin"]);
        assert!(out.status.success(), "admin failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("admin JSON");
        let v: Value = serde_json::from_str(line).unwrap();
        (
            v["username"].as_str().unwrap().into(),
            v["password"].as_str().unwrap().into(),
            v["apiKey"].as_str().unwrap().into(),
        )
    }

    pub fn config(&self) -> Value {
        json!({"host": "127.0.0.1", "port": self.port})
    }

    /// Freezes the stack's storage engine (SIGSTOP) until the guard is
    /// dropped (SIGCONT, on panic too). Kuzzle keeps answering what needs
    /// no storage, and a request that reaches storage stays inside Kuzzle,
    /// holding its slot: tests order events with it instead of sleeping.
    pub fn pause_storage(&self) -> PausedStorage {
        let pidf = repo().join(format!(".stack/run/{}/osmem.pid", self.name));
        let pid = std::fs::read_to_string(&pidf)
            .unwrap_or_else(|e| panic!("{}: {e} (stack not started?)", pidf.display()));
        let pid = pid.trim().to_string();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("osmem-server"),
            "pid {pid} of {} is not osmem-server",
            pidf.display()
        );
        assert!(signal(&pid, "-STOP"), "kill -STOP {pid} failed");
        PausedStorage {
            pid,
            port: self.storage_port,
            unread_at_pause: unread_bytes(self.storage_port),
        }
    }
}

fn signal(pid: &str, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success())
}

/// Bytes received by the kernel on the listening side of `port` (loopback,
/// established connections) that no process has read yet.
fn unread_bytes(port: u16) -> u64 {
    let mut total = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address (ADDR:PORT), state (01: established), tx:rx queues
            let (Some(local), Some(state), Some(queues)) = (f.get(1), f.get(3), f.get(4)) else {
                continue;
            };
            let local_port = local.rsplit(':').next().unwrap_or("");
            if *state != "01" || u16::from_str_radix(local_port, 16) != Ok(port) {
                continue;
            }
            let rx = queues.rsplit(':').next().unwrap_or("0");
            total += u64::from_str_radix(rx, 16).unwrap_or(0);
        }
    }
    total
}

/// A frozen storage engine; resumed when dropped.
pub struct PausedStorage {
    pid: String,
    port: u16,
    unread_at_pause: u64,
}

impl PausedStorage {
    /// Waits until Kuzzle has sent the frozen storage a request (its bytes
    /// wait, unread, in the kernel): a Kuzzle request is then being
    /// processed. `what` names the test's step for the failure message; the
    /// bound only catches a Kuzzle that never gets there.
    pub fn wait_for_a_storage_request(&self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while unread_bytes(self.port) <= self.unread_at_pause {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: Kuzzle never reached its storage"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for PausedStorage {
    fn drop(&mut self) {
        // No panic here: this also runs while a failed test unwinds.
        if !signal(&self.pid, "-CONT") {
            eprintln!("kill -CONT {} failed: the storage stays frozen", self.pid);
        }
    }
}

fn env_port(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default stack, shared by most tests (anonymous keeps every right).
pub fn default_stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    let stack = STACK.get_or_init(|| Stack {
        name: std::env::var("KUZZLE_STACK_NAME")
            .map(|n| &*Box::leak(n.into_boxed_str()))
            .unwrap_or("default"),
        port: env_port("KUZZLE_PORT", 7512),
        redis_port: env_port("KUZZLE_REDIS_PORT", 6390),
        storage_port: env_port("KUZZLE_STORAGE_PORT", 9210),
        rc_extra: None,
    });
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| stack.start());
    stack
}

// ---- thin wrappers over the C ABI ----

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Takes a string returned by libkuzzle, copies it, and frees it.
pub fn take(p: *mut c_char) -> String {
    assert!(
        !p.is_null(),
        "libkuzzle returned NULL where a string was due"
    );
    // SAFETY: a string returned by libkuzzle, freed once right after.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    unsafe { kuzzle_free_result(p) };
    s
}

pub struct Handle(pub *mut kuzzle_client);

// The C API documents the handle as safe to share between threads.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { kuzzle_disconnect(self.0) };
    }
}

pub fn try_connect(config: &Value) -> Result<Handle, (S, Value)> {
    let cfg = cstr(&config.to_string());
    let mut client = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe { kuzzle_connect(cfg.as_ptr(), &mut client, &mut err) };
    if status == S::KUZZLE_OK {
        assert!(err.is_null(), "error JSON set on success");
        assert!(!client.is_null());
        Ok(Handle(client))
    } else {
        assert!(client.is_null(), "handle set on failure");
        Err((status, serde_json::from_str(&take(err)).unwrap()))
    }
}

pub fn connect(config: &Value) -> Handle {
    try_connect(config).unwrap_or_else(|(s, e)| panic!("connect failed: {s:?} {e}"))
}

impl Handle {
    /// kuzzle_mwrite with raw strings; the result as text.
    pub fn mwrite_text(
        &self,
        index: &str,
        collection: &str,
        docs: &str,
        options: Option<&str>,
    ) -> (S, String) {
        let (i, c, d) = (cstr(index), cstr(collection), cstr(docs));
        let o = options.map(cstr);
        let mut out = ptr::null_mut();
        let status = unsafe {
            kuzzle_mwrite(
                self.0,
                i.as_ptr(),
                c.as_ptr(),
                d.as_ptr(),
                o.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                &mut out,
            )
        };
        (status, take(out))
    }

    pub fn mwrite_raw(
        &self,
        index: &str,
        collection: &str,
        docs: &str,
        options: Option<&str>,
    ) -> (S, Value) {
        let (status, text) = self.mwrite_text(index, collection, docs, options);
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("result is not JSON ({e}): {text:.300}"));
        (status, v)
    }

    pub fn mwrite(
        &self,
        index: &str,
        collection: &str,
        docs: &Value,
        options: Option<Value>,
    ) -> (S, Value) {
        self.mwrite_raw(
            index,
            collection,
            &docs.to_string(),
            options.map(|o| o.to_string()).as_deref(),
        )
    }

    pub fn query(&self, request: Value) -> (S, Value) {
        let r = cstr(&request.to_string());
        let mut out = ptr::null_mut();
        let status = unsafe { kuzzle_query(self.0, r.as_ptr(), &mut out) };
        (status, serde_json::from_str(&take(out)).unwrap())
    }

    pub fn query_ok(&self, request: Value) -> Value {
        let (s, v) = self.query(request.clone());
        assert_eq!(s, S::KUZZLE_OK, "query {request} failed: {v}");
        v
    }

    /// kuzzle_client_info, parsed.
    pub fn info(&self) -> Value {
        let mut out = ptr::null_mut();
        let status = unsafe { kuzzle_client_info(self.0, &mut out) };
        assert_eq!(status, S::KUZZLE_OK);
        serde_json::from_str(&take(out)).unwrap()
    }

    /// kuzzle_client_stats, parsed.
    pub fn stats(&self) -> Value {
        let mut out = ptr::null_mut();
        let status = unsafe { kuzzle_client_stats(self.0, &mut out) };
        assert_eq!(status, S::KUZZLE_OK);
        serde_json::from_str(&take(out)).unwrap()
    }

    pub fn count(&self, index: &str, collection: &str) -> u64 {
        self.query_ok(json!({"controller":"collection","action":"refresh","index":index,"collection":collection}));
        let v = self.query_ok(json!({"controller":"document","action":"count","index":index,"collection":collection,"body":{}}));
        v["count"].as_u64().expect("count")
    }
}

/// A fresh index with one collection `c`, unique to this test.
pub fn fresh_index(h: &Handle, tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let index = format!(
        "t-{}-{}-{}",
        tag.to_lowercase(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    h.query_ok(json!({"controller":"index","action":"create","index":index}));
    h.query_ok(json!({"controller":"collection","action":"create","index":index,"collection":"c"}));
    index
}

/// `n` small sensor documents; with ids when `prefix` is given.
pub fn sensor_docs(n: usize, prefix: Option<&str>) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let body = json!({"sensor": format!("s{}", i % 50), "seq": i, "temp": 20.0 + (i % 100) as f64 / 10.0});
                match prefix {
                    Some(p) => json!({"_id": format!("{p}{i:06}"), "body": body}),
                    None => json!({"body": body}),
                }
            })
            .collect(),
    )
}

pub fn arr_len(v: &Value, key: &str) -> usize {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {v:.300}"))
        .len()
}

/// A loopback TCP proxy to Kuzzle that can be cut, or turned into a black
/// hole that accepts connections and never answers: lets a test make the
/// server vanish or hang under a connected client without touching the stack.
/// With a delay, each connection waits that long before its first byte goes
/// on: a distant Kuzzle behind a local tunnel, as the client sees it.
pub struct Proxy {
    pub port: u16,
    mode: Arc<AtomicUsize>,
    /// Bytes sent by clients towards Kuzzle.
    up: Arc<AtomicUsize>,
}

const OPEN: usize = 0;
const CUT: usize = 1;
const BLACKHOLE: usize = 2;
const DOWN: usize = 3;

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        Proxy::delayed(target, Duration::ZERO)
    }

    pub fn delayed(target: u16, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicUsize::new(OPEN));
        let up = Arc::new(AtomicUsize::new(0));
        let (flag, counter) = (mode.clone(), up.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                match flag.load(Ordering::SeqCst) {
                    // Dropping the listener: further connects are refused.
                    CUT => return,
                    BLACKHOLE => held.extend(conn.ok()),
                    // The uplink down: each connection closed at once.
                    DOWN => drop(conn),
                    _ => {
                        let Ok(client) = conn else { continue };
                        let counter = counter.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            pipe(client, target, &counter)
                        });
                    }
                }
            }
        });
        Proxy { port, mode, up }
    }

    /// Stops accepting: the next connection attempt is refused.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        // Wake the accept loop so it drops the listener, until a connection
        // is refused: cut for sure, however long the loop took. (The bound
        // only catches a loop that never ends.)
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "proxy never cut");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The link down until `up`: every new connection is closed at once,
    /// unanswered.
    pub fn down(&self) {
        self.mode.store(DOWN, Ordering::SeqCst);
    }

    /// The link back after `down`.
    pub fn up(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
    }

    /// Accepts new connections and never answers them.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Bytes sent towards Kuzzle so far.
    pub fn bytes_up(&self) -> usize {
        self.up.load(Ordering::SeqCst)
    }
}

fn pipe(client: TcpStream, target: u16, up: &AtomicUsize) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::scope(|scope| {
        scope.spawn(|| copy(&mut c, &mut s, up));
        let (mut c, mut s) = (client, server);
        copy(&mut s, &mut c, &AtomicUsize::new(0));
    });
}

fn copy(from: &mut TcpStream, to: &mut TcpStream, counted: &AtomicUsize) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counted.fetch_add(n, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// An mWrite result holding `n` documents, each once, in `successes`, and
/// none in `errors`.
pub fn all_written(result: &Value, n: usize) {
    assert_eq!(arr_len(result, "errors"), 0, "{}", result["errors"][0]);
    let ids: std::collections::HashSet<&str> = result["successes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n);
    assert_eq!(arr_len(result, "successes"), n, "an id twice");
}

/// A loopback port nothing listens on (bound, then released): connecting
/// there is refused.
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Incompressible text of `n` bytes (gzip cannot shrink it).
pub fn noise(n: usize, seed: u64) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}
