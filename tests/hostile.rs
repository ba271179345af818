//! A hostile or broken server in Kuzzle's place: a look-alike on loopback,
//! written here with std::net, that answers the health check and then
//! whatever the test scripts (bombs, endless or lying answers, resets,
//! proxies' bare 503s). Every call must end, with a classified error, in
//! bounded memory and time, through the C ABI.

mod common;

use common::*;
use kuzzle::kuzzle_status as S;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time: the memory peaks measured are the process's.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request as the look-alike read it.
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Handler = dyn Fn(&Request, &mut TcpStream) + Send + Sync;

/// The look-alike: `GET /_healthcheck` and `GET /_now` answered as Kuzzle
/// does, every `POST /_query` counted and given to the handler.
struct Fake {
    port: u16,
    queries: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

/// Whether the look-alike reads a request's body before the handler runs.
#[derive(Clone, Copy, PartialEq)]
enum Body {
    Read,
    Unread,
}

impl Fake {
    fn start(
        body: Body,
        handler: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let queries = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (count, stop) = (queries.clone(), stopped.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    // Dropping the listener: further connects are refused.
                    return;
                }
                let Ok(stream) = conn else { continue };
                let (handler, count) = (handler.clone(), count.clone());
                std::thread::spawn(move || serve(stream, body, &*handler, &count));
            }
        });
        Fake {
            port,
            queries,
            stopped,
        }
    }

    fn config(&self, extra: Value) -> Value {
        let mut c = json!({"host": "127.0.0.1", "port": self.port,
            "compression": "none", "concurrency": 1, "retries": 0,
            "timeoutMs": 5000, "connectTimeoutMs": 2000});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Stops accepting: the next connection is refused.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        // The accept loop drops the listener once it sees the flag.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "the look-alike did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(mut stream: TcpStream, body: Body, handler: &Handler, count: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        // Not HTTP (a TLS ClientHello): refused as Node's parser does.
        if head.len() == 1 && !byte[0].is_ascii_uppercase() || head.len() > 64 * 1024 {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut req = Request {
        head,
        body: Vec::new(),
    };
    let line = req.head.lines().next().unwrap_or_default().to_string();
    if line.starts_with("GET /_healthcheck ") {
        return answer(
            &mut stream,
            200,
            r#"{"status":200,"error":null,"result":{}}"#,
        );
    }
    if line.starts_with("GET /_now ") {
        return answer(
            &mut stream,
            200,
            r#"{"status":200,"error":null,"result":{"now":1}}"#,
        );
    }
    count.fetch_add(1, Ordering::SeqCst);
    if body == Body::Read {
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        req.body = vec![0; len];
        if stream.read_exact(&mut req.body).is_err() {
            return;
        }
    }
    handler(&req, &mut stream);
}

fn answer(stream: &mut TcpStream, status: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Waits until the client goes away (or 30 s), holding the connection.
fn hold(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn ok_result(result: &str) -> String {
    format!(r#"{{"status":200,"error":null,"result":{result}}}"#)
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

const MB: u64 = 1 << 20;

fn create_request() -> Value {
    json!({"controller":"document","action":"create","index":"i","collection":"c","body":{"a":1}})
}

fn docs(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"_id": format!("d{i}"), "body": {"v": i}}))
            .collect(),
    )
}

/// Every document of an mWrite that failed whole is in `errors`, in doubt.
fn assert_all_failed_in_doubt(r: &Value, n: usize) {
    assert_eq!(arr_len(r, "successes"), 0, "{r}");
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), n, "{r}");
    for e in errors {
        assert_eq!(e["inDoubt"], true, "{e}");
    }
}

/// A gzip member of zeros that never ends: the gzip header, then the same
/// deflate block over and over (each one flushed whole, so it refers to
/// nothing before it), 1 MiB of zeros each for ~1 KB on the wire.
fn gzip_bomb(stream: &mut TcpStream, max_inflated_mb: usize) {
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let mut block = Vec::with_capacity(64 * 1024);
    deflate
        .compress_vec(
            &vec![0; MB as usize],
            &mut block,
            flate2::FlushCompress::Full,
        )
        .unwrap();
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    let mut chunk = |bytes: &[u8]| {
        write!(stream, "{:x}\r\n", bytes.len()).and_then(|_| {
            stream.write_all(bytes)?;
            stream.write_all(b"\r\n")
        })
    };
    if chunk(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]).is_err() {
        return;
    }
    for _ in 0..max_inflated_mb {
        if chunk(&block).is_err() {
            return;
        }
    }
}

#[test]
fn gzip_bomb_answer_is_bounded_by_its_request() {
    let _serial = serial();
    // 4 GiB inflated at most, if nothing stopped it.
    let fake = Fake::start(Body::Read, |_, s| gzip_bomb(s, 4096));
    let config = fake.config(json!({"compression": "gzip", "concurrency": 4}));
    assert_stopped_by_the_bound(&config, Duration::from_secs(10));
}

/// A write of 10 documents against an answer that never ends: stopped by
/// the answer's bound (an error, every document in doubt) within `within`,
/// in little memory.
fn assert_stopped_by_the_bound(config: &Value, within: Duration) {
    let h = connect(config);
    let before = peak_rss();
    let started = Instant::now();
    let (status, r) = h.mwrite("i", "c", &docs(10), None);
    assert_eq!(status, S::KUZZLE_ERR_SERVER, "{r}");
    assert_all_failed_in_doubt(&r, 10);
    assert!(started.elapsed() < within, "{:?}", started.elapsed());
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 200 * MB, "peak RSS grew by {} MB", grown / MB);
}

#[test]
fn endless_chunked_answer_is_bounded_by_its_request() {
    let _serial = serial();
    let fake = Fake::start(Body::Read, |_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let data = vec![b' '; 64 * 1024];
        // Until the client hangs up (16 GiB at most).
        for _ in 0..256 * 1024 {
            if write!(s, "{:x}\r\n", data.len())
                .and_then(|_| s.write_all(&data))
                .and_then(|_| s.write_all(b"\r\n"))
                .is_err()
            {
                return;
            }
        }
    });
    // Well before timeoutMs: the bound stopped it, not the clock.
    let config = fake.config(json!({"timeoutMs": 60000}));
    assert_stopped_by_the_bound(&config, Duration::from_secs(30));
}

#[test]
fn a_huge_content_length_reserves_nothing() {
    let _serial = serial();
    for claimed in [1_000_000_000_000u64, 200_000_000] {
        let fake = Fake::start(Body::Read, move |_, s| {
            let body = ok_result("{}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {claimed}\r\n\r\n{body}"
            );
            hold(s);
        });
        let h = connect(&fake.config(json!({"timeoutMs": 3000})));
        let before = peak_rss();
        let started = Instant::now();
        let outcomes: Vec<(S, Value)> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| h.query(json!({"controller":"server","action":"now"}))))
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let elapsed = started.elapsed();
        for (status, v) in outcomes {
            match claimed {
                // Over kuzzle_query's bound: refused at once.
                1_000_000_000_000 => {
                    assert_eq!(status, S::KUZZLE_ERR_SERVER, "{v}");
                    assert_eq!(v["error"]["id"], "libkuzzle.answer_too_large", "{v}");
                }
                // Within it: the bytes never come, timeoutMs ends the call.
                _ => assert_eq!(status, S::KUZZLE_ERR_TIMEOUT, "{v}"),
            }
            assert_eq!(v["error"]["inDoubt"], true, "{v}");
        }
        assert!(elapsed < Duration::from_secs(10), "{claimed}: {elapsed:?}");
        let grown = peak_rss().saturating_sub(before);
        assert!(
            grown < 200 * MB,
            "{claimed}: peak RSS grew by {} MB",
            grown / MB
        );
    }
}

fn gzipped(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn an_encoding_not_asked_for_is_refused() {
    let _serial = serial();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let fake = Fake::start(Body::Read, move |req, s| {
        seen.lock().unwrap().push(req.header("accept-encoding"));
        let body = gzipped(&ok_result(r#"{"now":1}"#));
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
    });
    let now = json!({"controller":"server","action":"now"});
    let h = connect(&fake.config(json!({})));
    let (status, v) = h.query(now.clone());
    assert_eq!(status, S::KUZZLE_ERR_SERVER, "{v}");
    assert_eq!(v["error"]["id"], "libkuzzle.bad_encoding", "{v}");
    assert_eq!(v["error"]["inDoubt"], true, "a 200 came: it may have run");
    assert_eq!(asked.lock().unwrap().as_slice(), &[None]);
    // Asked for, the same answer is read.
    let h = connect(&fake.config(json!({"compression": "gzip"})));
    let (status, v) = h.query(now);
    assert_eq!((status, &v), (S::KUZZLE_OK, &json!({"now": 1})));
    assert_eq!(asked.lock().unwrap()[1].as_deref(), Some("gzip"));
}

fn assert_prompt_tls(config: Value) {
    let started = Instant::now();
    let e = try_connect(&config)
        .map(|_| ())
        .expect_err("connect must fail");
    assert_eq!(e.0, S::KUZZLE_ERR_TLS, "{}", e.1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn ca_file_must_be_a_regular_file() {
    let _serial = serial();
    let fake = Fake::start(Body::Read, |_, s| answer(s, 200, &ok_result("{}")));
    assert_prompt_tls(fake.config(json!({"ssl": true, "caFile": "/dev/zero"})));
    let dir = std::env::temp_dir().join(format!("libkuzzle-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("ca.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    // No writer ever opens it: opening it to read would block for good.
    assert_prompt_tls(fake.config(json!({"ssl": true, "caFile": fifo.to_str().unwrap()})));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ssl_against_a_plain_http_port_is_a_tls_error() {
    let _serial = serial();
    let fake = Fake::start(Body::Read, |_, s| answer(s, 200, &ok_result("{}")));
    assert_prompt_tls(fake.config(json!({"ssl": true})));
}

#[test]
fn a_host_ureq_cannot_request_is_an_invalid_argument() {
    for host in ["kuz%zle", "[::1", "[kuzzle]", "a:b"] {
        let e = try_connect(&json!({"host": host}))
            .map(|_| ())
            .expect_err(host);
        assert_eq!(e.0, S::KUZZLE_ERR_INVALID_ARGUMENT, "{host}: {}", e.1);
    }
}

const HTML_503: &str = "<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>";

/// Until the engine's query retries follow `inDoubt` (the lead's change to
/// src/client.rs), kuzzle_query retries every 503 and this test fails on
/// the request count.
#[test]
fn a_proxy_s_bare_503_is_in_doubt_and_not_sent_again() {
    let _serial = serial();
    let fake = Fake::start(Body::Read, |_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTML_503}",
            HTML_503.len()
        );
    });
    let h = connect(&fake.config(json!({"retries": 3, "retryBackoffMs": 1})));
    let (status, v) = h.query(create_request());
    assert_eq!(status, S::KUZZLE_ERR_SERVER, "{v}");
    assert_eq!(v["error"]["status"], 503, "{v}");
    assert_eq!(v["error"]["id"], "libkuzzle.bad_gateway", "{v}");
    assert_eq!(v["error"]["inDoubt"], true, "{v}");
    assert_eq!(
        fake.queries(),
        1,
        "document:create sent again after a bare 503"
    );
}

#[test]
fn kuzzle_s_own_503_overloaded_is_retried() {
    let _serial = serial();
    let fake = Arc::new(AtomicUsize::new(0));
    let seen = fake.clone();
    let fake = Fake::start(Body::Read, move |_, s| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            answer(
                s,
                503,
                r#"{"status":503,"error":{"id":"api.process.overloaded","message":"Request discarded: Kuzzle Server is temporarily overloaded.","status":503},"result":null}"#,
            );
        } else {
            answer(s, 200, &ok_result(r#"{"_id":"x","_version":1}"#));
        }
    });
    let h = connect(&fake.config(json!({"retries": 3, "retryBackoffMs": 1})));
    let (status, v) = h.query(create_request());
    assert_eq!(status, S::KUZZLE_OK, "{v}");
    assert_eq!(v["_id"], "x");
    assert_eq!(fake.queries(), 3);
}

#[test]
fn redirects_are_not_followed_and_leak_no_token() {
    let _serial = serial();
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    elsewhere.set_nonblocking(true).unwrap();
    let fake = Fake::start(Body::Read, move |req, s| {
        if req.text().contains("checkToken") {
            return answer(s, 200, &ok_result(r#"{"valid":true}"#));
        }
        let _ = write!(
            s,
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{elsewhere_port}/_query\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let h = connect(&fake.config(json!({"jwt": "s3cr3t-token"})));
    let (status, v) = h.query(json!({"controller":"server","action":"now"}));
    assert_ne!(status, S::KUZZLE_OK, "{v}");
    assert!(!v.to_string().contains("s3cr3t"), "{v}");
    drop(h);
    assert!(
        matches!(elsewhere.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the redirect was followed"
    );
}

#[test]
fn a_trickled_answer_is_bounded_by_timeout() {
    let _serial = serial();
    let fake = Fake::start(Body::Read, |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"result\":\"");
        for _ in 0..100_000 {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let h = connect(&fake.config(json!({"timeoutMs": 1000})));
    let started = Instant::now();
    let (status, v) = h.query(json!({"controller":"server","action":"now"}));
    assert_eq!(status, S::KUZZLE_ERR_TIMEOUT, "{v}");
    assert_eq!(v["error"]["inDoubt"], true, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A request far larger than the kernel's socket buffers, so that the
/// look-alike can hang up before it was all written.
fn big_query() -> Value {
    json!({"controller":"document","action":"create","index":"i","collection":"c",
        "body":{"blob": "x".repeat(32 << 20)}})
}

const CHILD: &str = "LIBKUZZLE_HOSTILE_SIGPIPE_CHILD";

/// With SIGPIPE at its default (a C host that never set it), a request
/// whose connection the server closed mid-write must fail, not kill the
/// process: run in a child process, since Rust's test harness ignores
/// SIGPIPE. Also: a request not written whole is not in doubt.
#[test]
fn a_reset_while_writing_is_not_in_doubt_and_sigpipe_never_kills() {
    if std::env::var_os(CHILD).is_some() {
        // SAFETY: restoring a signal's default disposition, before any
        // thread of this process writes to a socket.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let fake = Fake::start(Body::Unread, |_, s| {
            // Unread bytes left: the kernel answers them with a reset.
            let _ = s.shutdown(Shutdown::Both);
        });
        let h = connect(&fake.config(json!({})));
        for _ in 0..3 {
            let (status, v) = h.query(big_query());
            assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{v}");
            assert_eq!(v["error"]["inDoubt"], false, "{v}");
        }
        println!("child done");
        return;
    }
    let _serial = serial();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_reset_while_writing_is_not_in_doubt_and_sigpipe_never_kills",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child: {:?}\n{text}", out.status);
    assert!(text.contains("child done"), "{text}");
}

#[test]
fn a_reset_after_the_whole_request_is_in_doubt() {
    let _serial = serial();
    // The request read whole, then the connection closed with no answer.
    let fake = Fake::start(Body::Read, |_, s| {
        let _ = s.shutdown(Shutdown::Both);
    });
    let h = connect(&fake.config(json!({"retries": 3, "retryBackoffMs": 1})));
    let (status, v) = h.query(create_request());
    assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{v}");
    assert_eq!(v["error"]["status"], 0, "{v}");
    assert_eq!(v["error"]["inDoubt"], true, "{v}");
    assert_eq!(fake.queries(), 1, "a request in doubt is not sent again");
}

#[test]
fn a_refused_connection_is_not_in_doubt() {
    let _serial = serial();
    let fake = Fake::start(Body::Read, |_, s| answer(s, 200, &ok_result("{}")));
    let h = connect(&fake.config(json!({})));
    fake.stop();
    let (status, v) = h.query(create_request());
    assert_eq!(status, S::KUZZLE_ERR_CONNECTION, "{v}");
    assert_eq!(v["error"]["inDoubt"], false, "{v}");
    assert_eq!(fake.queries(), 0);
}

/// An error message that echoes the request and its Authorization header,
/// as some proxies and broken servers do.
fn echo_error(req: &Request, s: &mut TcpStream, http: u16) {
    let echoed = format!(
        "cannot handle {} with {}",
        req.text(),
        req.header("authorization").unwrap_or_default()
    );
    let body = json!({"status": http, "error": {"id": "x.y.echo", "message": echoed}});
    answer(s, http, &body.to_string());
}

#[test]
fn secrets_echoed_by_a_server_never_reach_an_error() {
    let _serial = serial();
    // A login whose refusal echoes the login body (the password in it).
    let fake = Fake::start(Body::Read, |req, s| echo_error(req, s, 401));
    let config = fake.config(json!({"username": "gw", "password": "pa\"ss-s3cr3t"}));
    let Err((status, e)) = try_connect(&config) else {
        panic!("the login was refused")
    };
    assert_eq!(status, S::KUZZLE_ERR_AUTH, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("***"),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");

    // auth:checkToken echoing its body (the API key in it).
    let fake = Fake::start(Body::Read, |req, s| echo_error(req, s, 500));
    let Err((_, e)) = try_connect(&fake.config(json!({"apiKey": "k3y-s3cr3t"}))) else {
        panic!("the check was refused")
    };
    assert!(!e.to_string().contains("s3cr3t"), "{e}");

    // Writes and queries whose errors echo the Authorization header, whole
    // and per document.
    let fake = Fake::start(Body::Read, |req, s| {
        let text = req.text();
        if text.contains("checkToken") {
            return answer(s, 200, &ok_result(r#"{"valid":true}"#));
        }
        if text.contains("mWrite") && text.contains("\"d0\"") {
            let token = req.header("authorization").unwrap_or_default();
            let result = json!({"successes": [], "errors": [
                {"document": {"_id": "d0", "_source": {"v": 0}}, "status": 400,
                 "reason": format!("refused for {token}")}]});
            return answer(s, 200, &ok_result(&result.to_string()));
        }
        echo_error(req, s, 400)
    });
    let h = connect(&fake.config(json!({"jwt": "jwt-s3cr3t"})));
    let (status, r) = h.mwrite("i", "c", &docs(1), None);
    assert_eq!(status, S::KUZZLE_PARTIAL, "{r}");
    assert_eq!(r["errors"][0]["reason"], "refused for Bearer ***", "{r}");
    let (status, r) = h.mwrite("i", "c", &json!([{"_id": "d1", "body": {}}]), None);
    assert_eq!(status, S::KUZZLE_ERR_SERVER, "{r}");
    assert!(!r.to_string().contains("s3cr3t"), "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("***"),
        "{r}"
    );
    let (_, v) = h.query(create_request());
    assert!(!v.to_string().contains("s3cr3t"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("***"),
        "{v}"
    );
}
