//! Planning: the request head shared by every request of a call, and the
//! cut of the documents into groups that fit `maxRequestBytes` on the wire
//! and keep every worker busy.

use super::index::{Doc, Index};
use super::worker::Job;
use crate::config::{Compression, WriteOptions};
use crate::error::push_json_str;
use std::ops::Range;

/// What is sampled to estimate the gzip ratio before cutting requests.
const SAMPLE_BYTES: usize = 128 * 1024;
/// Requests are cut smaller than `maxRequestBytes` so that every worker gets
/// a few, down to this much JSON: below, Kuzzle's cost per request shows.
const MIN_SPREAD_BYTES: usize = 128 * 1024;

/// `{"controller":"bulk","action":"mWrite",...,"body":{"documents":[`.
pub(super) fn head(index: &str, collection: &str, options: &WriteOptions) -> String {
    let mut head = String::from(r#"{"controller":"bulk","action":"mWrite","index":"#);
    push_json_str(&mut head, index);
    head.push_str(",\"collection\":");
    push_json_str(&mut head, collection);
    if options.wait_for_refresh {
        head.push_str(",\"refresh\":\"wait_for\"");
    }
    if options.notify {
        head.push_str(",\"notify\":true");
    }
    if options.strict {
        head.push_str(",\"strict\":true");
    }
    head.push_str(",\"body\":{\"documents\":[");
    head
}

/// Splits checked documents into groups of at most `max_docs`, each expected
/// to fit `max_bytes` on the wire.
pub(super) fn plan(job: &Job, index: &Index) -> Vec<Range<usize>> {
    let n_docs = index.len();
    let docs = || (0..n_docs).map(|i| index.doc(i));
    let engine = job.engine;
    let cfg = engine.config;
    let overhead = job.head.len() + 4;
    let budget = cfg.max_request_bytes.saturating_sub(overhead).max(1);
    let raw_budget = match engine.compression {
        Compression::None => budget,
        Compression::Gzip => {
            // Estimate the ratio on a sample; keep 25% headroom, requests
            // that still come out too large are split when built.
            let mut len = 0;
            let sample: Vec<Doc> = docs()
                .take_while(|d| {
                    let more = len < SAMPLE_BYTES;
                    len += d.wire_len() + 1;
                    more
                })
                .collect();
            let mut raw = Vec::new();
            job.build(&sample, &mut raw);
            let mut packed = Vec::new();
            engine.gzip.compress_aside(&raw, &mut packed);
            let packed = packed.len().max(1);
            let ratio = (raw.len() as f64 / packed as f64).clamp(1.0, 50.0);
            ((budget as f64) * ratio * 0.75) as usize
        }
    };
    // A few full requests would run one after the other (5,000 big documents
    // through a slow uplink: 4 requests of 1 MB, 1,192 docs/s); 4 per worker
    // overlap one's upload with another's answer (1,843 docs/s).
    let total: usize = docs().map(|d| d.wire_len() + 1).sum();
    let spread = (total / (engine.spread.max(1) * 4)).max(MIN_SPREAD_BYTES);
    let raw_budget = raw_budget.min(spread);
    let mut ranges = Vec::new();
    let (mut start, mut len) = (0, 0);
    for (i, doc) in docs().enumerate() {
        let l = doc.wire_len() + 1;
        if i > start && (len + l > raw_budget || i - start >= cfg.max_documents_per_request) {
            ranges.push(start..i);
            start = i;
            len = 0;
        }
        len += l;
    }
    if start < n_docs {
        ranges.push(start..n_docs);
    }
    ranges
}
