//! Thin wrappers over the producer's C functions, for the tests that use
//! one (tests/producer.rs, tests/faults.rs).

use super::{cstr, take, Handle};
use kuzzle::ffi::*;
use kuzzle::kuzzle_status as S;
use serde_json::Value;
use std::collections::HashMap;
use std::ptr;
use std::time::{Duration, Instant};

pub struct Producer(pub *mut kuzzle_producer);

// The C API documents produce calls as safe from many threads.
unsafe impl Send for Producer {}
unsafe impl Sync for Producer {}

pub fn open(h: &Handle, config: Value) -> Result<Producer, (S, Value)> {
    let cfg = cstr(&config.to_string());
    let mut p = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe { kuzzle_producer_open(h.0, cfg.as_ptr(), &mut p, &mut err) };
    if status == S::KUZZLE_OK {
        assert!(err.is_null() && !p.is_null());
        Ok(Producer(p))
    } else {
        assert!(p.is_null());
        Err((status, serde_json::from_str(&take(err)).unwrap()))
    }
}

impl Producer {
    pub fn produce(&self, index: &str, doc: &Value) -> (S, u64) {
        let (i, c, d) = (cstr(index), cstr("c"), cstr(&doc.to_string()));
        let mut seq = 0;
        let status =
            unsafe { kuzzle_produce(self.0, i.as_ptr(), c.as_ptr(), d.as_ptr(), &mut seq) };
        (status, seq)
    }

    pub fn batch(&self, index: &str, docs: &Value) -> (S, u64, usize) {
        let (i, c, d) = (cstr(index), cstr("c"), cstr(&docs.to_string()));
        let (mut first, mut n) = (0, 0);
        let status = unsafe {
            kuzzle_produce_batch(
                self.0,
                i.as_ptr(),
                c.as_ptr(),
                d.as_ptr(),
                &mut first,
                &mut n,
            )
        };
        (status, first, n)
    }

    pub fn poll(&self, max: usize, timeout_ms: i32) -> Vec<Value> {
        let mut out = ptr::null_mut();
        let status = unsafe { kuzzle_producer_poll(self.0, max, timeout_ms, &mut out) };
        assert_eq!(status, S::KUZZLE_OK);
        match serde_json::from_str(&take(out)).unwrap() {
            Value::Array(reports) => reports,
            other => panic!("poll gave {other}"),
        }
    }

    pub fn flush(&self, timeout_ms: i32) -> S {
        unsafe { kuzzle_producer_flush(self.0, timeout_ms) }
    }

    pub fn stats(&self) -> Value {
        let mut out = ptr::null_mut();
        assert_eq!(
            unsafe { kuzzle_producer_stats(self.0, &mut out) },
            S::KUZZLE_OK
        );
        serde_json::from_str(&take(out)).unwrap()
    }

    pub fn close(self, timeout_ms: i32) -> Vec<Value> {
        let mut out = ptr::null_mut();
        let status = unsafe { kuzzle_producer_close(self.0, timeout_ms, &mut out) };
        assert_eq!(status, S::KUZZLE_OK);
        serde_json::from_str::<Vec<Value>>(&take(out)).unwrap()
    }
}

/// Polls until `n` reports came (or 60 s): every report, checked to be
/// about a distinct seq.
pub fn collect(p: &Producer, n: usize) -> HashMap<u64, Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut by_seq = HashMap::new();
    while by_seq.len() < n {
        assert!(Instant::now() < deadline, "{} reports of {n}", by_seq.len());
        for r in p.poll(10_000, 500) {
            let seq = r["seq"].as_u64().unwrap();
            assert!(
                by_seq.insert(seq, r.clone()).is_none(),
                "seq {seq} reported twice: {r}"
            );
        }
    }
    by_seq
}
