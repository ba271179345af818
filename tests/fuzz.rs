//! A bounded, deterministic fuzzer over the JSON entry points (configuration,
//! options, documents, queries), through the C ABI, against the real local
//! Kuzzle. Properties: no panic (never KUZZLE_ERR_INTERNAL), every returned
//! string is JSON, and whenever the documents parse as a JSON array every one
//! of them comes back exactly once.
//!
//! `KUZZLE_FUZZ_SECONDS` (default 20) bounds each target; `KUZZLE_FUZZ_SEED`
//! replays a run. Longer runs: raise the seconds.

mod common;

use common::*;
use kuzzle::ffi::*;
use kuzzle::kuzzle_status as S;
use serde_json::Value;
use std::ffi::{c_char, CString};
use std::ptr;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// One of `seeds`, mutated.
    fn mutant(&mut self, seeds: &[&[u8]]) -> Vec<u8> {
        let seed = seeds[self.below(seeds.len())];
        mutate(self, seed)
    }
}

fn seed() -> u64 {
    std::env::var("KUZZLE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001)
}

fn budget() -> Duration {
    let secs = std::env::var("KUZZLE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\"_id\"",
    b"\"body\"",
    b"{}",
    b"[]",
    b"\xff",
    b"\xc3\x28",
    b" ",
    b"9007199254740993",
];

/// One random edit of `input`: flip, insert a JSON-ish token, delete or
/// duplicate a span. NUL bytes are left out (C strings cannot hold them).
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = (rng.next() % 255 + 1) as u8;
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            _ if !v.is_empty() => {
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(16)).min(v.len());
                let span: Vec<u8> = v[start..end].to_vec();
                v.splice(at..at, span);
            }
            _ => v.push(b'['),
        }
    }
    v.retain(|&b| b != 0);
    v
}

fn c(bytes: &[u8]) -> CString {
    CString::new(bytes.to_vec()).unwrap()
}

/// Checks a returned string: present, and JSON by the grammar. Then its
/// value, unless it echoes input that a strict decoder refuses although the
/// grammar allows it (deep nesting, lone surrogate escapes): None then.
fn returned(p: *mut c_char, what: &str, input: &[u8]) -> Option<Value> {
    let text = take(p);
    if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(&text) {
        panic!(
            "{what}: returned string is not JSON ({e}) for input {:?}: {text:.300}",
            String::from_utf8_lossy(input)
        );
    }
    serde_json::from_str(&text).ok()
}

#[test]
fn fuzz_configuration() {
    let mut rng = Rng(seed());
    let seeds: &[&[u8]] = &[
        br#"{"host":"127.0.0.1","port":1,"timeoutMs":200,"connectTimeoutMs":200}"#,
        br#"{"port":1,"compression":"gzip","concurrency":4,"retries":0,"maxRequestBytes":4096}"#,
        br#"{"port":1,"username":"u","password":"p","tlsVerify":false}"#,
        br#"{"port":1,"apiKey":"k","ssl":true,"caFile":"/nonexistent"}"#,
    ];
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < budget() / 2 {
        let input = rng.mutant(seeds);
        // Never let a mutation reach a real port: only port 1 or none.
        let text = String::from_utf8_lossy(&input);
        if text.contains("\"port\"")
            && !text.contains("\"port\":1,")
            && !text.contains("\"port\":1}")
        {
            continue;
        }
        let cfg = c(&input);
        let mut client = ptr::null_mut();
        let mut err = ptr::null_mut();
        let s = unsafe { kuzzle_connect(cfg.as_ptr(), &mut client, &mut err) };
        assert_ne!(s, S::KUZZLE_ERR_INTERNAL, "{text}");
        if s == S::KUZZLE_OK {
            unsafe { kuzzle_disconnect(client) };
        } else {
            assert!(client.is_null());
            let v = returned(err, "connect", &input).unwrap();
            assert!(v["error"]["message"].is_string(), "{v}");
        }
        runs += 1;
    }
    assert!(runs > 50, "only {runs} configurations tried");
}

#[test]
fn fuzz_documents_and_options() {
    let stack = default_stack();
    let h =
        connect(&serde_json::json!({"host":"127.0.0.1","port":stack.port,"maxRequestBytes":4096}));
    let index = fresh_index(&h, "fuzz");
    let mut rng = Rng(seed() ^ 0x77);
    let docs_seeds: &[&[u8]] = &[
        br#"[{"_id":"a","body":{"t":1,"s":"x"}},{"body":{"n":[1,2,{"d":null}]}}]"#,
        br#"[{"_id":"b","body":{}},{"_id":"","body":{"u":"\u00e9\ud83d\ude00"}},{"body":{"f":-0.0,"big":9007199254740993}}]"#,
        br#"[{"body":{"a":{"b":{"c":{"d":[[[[1]]]]}}}}}]"#,
        br#"[]"#,
    ];
    let opts_seeds: &[&[u8]] = &[
        br#"{"waitForRefresh":false,"notify":false}"#,
        br#"{"strict":false}"#,
        br#"{}"#,
    ];
    let (ci, cc) = (c(index.as_bytes()), c(b"c"));
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < budget() {
        let docs = rng.mutant(docs_seeds);
        let opts = if rng.below(3) == 0 {
            Some(rng.mutant(opts_seeds))
        } else {
            None
        };
        let (d, o) = (c(&docs), opts.as_deref().map(c));
        let mut out = ptr::null_mut();
        let s = unsafe {
            kuzzle_mwrite(
                h.0,
                ci.as_ptr(),
                cc.as_ptr(),
                d.as_ptr(),
                o.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                &mut out,
            )
        };
        assert_ne!(
            s,
            S::KUZZLE_ERR_INTERNAL,
            "{:?}",
            String::from_utf8_lossy(&docs)
        );
        let result = returned(out, "mwrite", &docs);
        // Accounting: a valid array in, each item out exactly once.
        let items = std::str::from_utf8(&docs)
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<&serde_json::value::RawValue>>(t).ok());
        let options_ok =
            opts.is_none() || s != S::KUZZLE_ERR_INVALID_ARGUMENT && s != S::KUZZLE_ERR_JSON;
        if let (Some(items), Some(result), true) = (items, result, options_ok) {
            let n = result["successes"].as_array().map_or(0, Vec::len)
                + result["errors"].as_array().map_or(0, Vec::len);
            assert_eq!(
                n,
                items.len(),
                "accounting broken for {:?}: {result}",
                String::from_utf8_lossy(&docs)
            );
        }
        runs += 1;
    }
    assert!(runs > 50, "only {runs} inputs tried");
}

#[test]
fn fuzz_queries() {
    let stack = default_stack();
    let h = connect(&stack.config());
    let mut rng = Rng(seed() ^ 0x99);
    // Harmless actions only: mutations must not reach admin or delete actions.
    let seeds: &[&[u8]] = &[
        br#"{"controller":"server","action":"info"}"#,
        br#"{"controller":"document","action":"get","index":"nope","collection":"c","_id":"x"}"#,
        br#"{"controller":"index","action":"exists","index":"t-fuzz"}"#,
    ];
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < budget() / 2 {
        let input = rng.mutant(seeds);
        let text = String::from_utf8_lossy(&input).to_lowercase();
        if [
            "admin", "delete", "truncate", "reset", "shutdown", "create", "update", "replace",
            "write",
        ]
        .iter()
        .any(|w| text.contains(w))
        {
            continue;
        }
        let r = c(&input);
        let mut out = ptr::null_mut();
        let s = unsafe { kuzzle_query(h.0, r.as_ptr(), &mut out) };
        assert_ne!(s, S::KUZZLE_ERR_INTERNAL, "{text}");
        returned(out, "query", &input);
        runs += 1;
    }
    assert!(runs > 20, "only {runs} queries tried");
}
