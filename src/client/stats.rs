//! `kuzzle_client_stats`: what the client did since it connected, per node
//! and in all. Counters only, read without stopping anyone: cheap enough to
//! call every second.

use super::Client;
use crate::mwrite::Outcome;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Requests sent again: the engine's retries and resends to another
    /// node.
    pub(super) retries: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    in_doubt: AtomicU64,
}

impl Counters {
    /// One mWrite's documents (the producer's included).
    pub(super) fn documents(&self, outcome: &Outcome) {
        let add = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.written, outcome.written);
        add(&self.failed, outcome.failed);
        add(&self.in_doubt, outcome.in_doubt);
    }
}

impl Client {
    /// `{"nodes":[...],"documents":{...},"bytes":{...},"retries":n,
    /// "connections":{...},"tlsHandshakes":{...},"gzipLevel":n}`.
    pub fn stats(&self) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut json = String::from("{\"nodes\":[");
        for (i, (node, s)) in self.pool.nodes.iter().zip(self.pool.stats()).enumerate() {
            if i > 0 {
                json.push(',');
            }
            let rtt = match s.rtt_ms {
                Some(ms) => format!("{ms:.3}"),
                None => "null".into(),
            };
            let _ = write!(
                json,
                "{{\"address\":{},\"alive\":{},\"requests\":{},\"failures\":{},\"inFlight\":{},\
                 \"concurrencyLimit\":{},\"rttMs\":{rtt}}}",
                serde_json::Value::from(node.address.as_str()),
                s.alive,
                s.requests,
                s.failures,
                s.in_flight,
                s.limit,
            );
        }
        let c = &self.counters;
        let bytes = &self.transport.bytes;
        let conns = &self.transport.connections;
        let _ = write!(
            json,
            "],\"documents\":{{\"written\":{},\"failed\":{},\"inDoubt\":{}}},\
             \"bytes\":{{\"sent\":{},\"received\":{}}},\"retries\":{},\
             \"connections\":{{\"opened\":{},\"reused\":{},\"stale\":{}}},\
             \"tlsHandshakes\":{{\"full\":{},\"resumed\":{}}},\"gzipLevel\":{}}}",
            load(&c.written),
            load(&c.failed),
            load(&c.in_doubt),
            load(&bytes.sent),
            load(&bytes.received),
            load(&c.retries),
            load(&conns.opened),
            load(&conns.reused),
            load(&conns.stale),
            load(&conns.tls_full),
            load(&conns.tls_resumed),
            self.transport.gzip.level(),
        );
        json
    }
}
