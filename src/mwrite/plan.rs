//! Planning: the request head shared by every request of a call, and the
//! cut of the documents into groups that fit `maxRequestBytes` on the wire
//! and keep every worker busy.

use super::index::{Doc, Index};
use super::worker::Job;
use crate::config::WriteOptions;
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

/// One request's documents, and whether its round trip is a fair sample
/// of the link: the smaller requests at a call's start and end are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    pub range: Range<usize>,
    pub teach: bool,
}

/// Splits checked documents into groups of at most `max_docs`, each expected
/// to fit `max_bytes` on the wire; also their bytes of JSON in all.
pub(super) fn plan(job: &Job, index: &Index) -> (Vec<Group>, usize) {
    let n_docs = index.len();
    let docs = || (0..n_docs).map(|i| index.doc(i));
    let engine = job.engine;
    let cfg = engine.config;
    let overhead = job.head.len() + 4;
    let budget = cfg.max_request_bytes.saturating_sub(overhead).max(1);
    let raw_budget = match &job.gzip {
        None => budget,
        Some(call) => {
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
            engine.gzip.compress(call, &raw, &mut packed);
            let packed = packed.len().max(1);
            let ratio = (raw.len() as f64 / packed as f64).clamp(1.0, 50.0);
            ((budget as f64) * ratio * 0.75) as usize
        }
    };
    // A few full requests would run one after the other (5,000 big documents
    // through a slow uplink: 4 requests of 1 MB, 1,192 docs/s); 4 per worker
    // overlap one's upload with another's answer (1,843 docs/s).
    let total: usize = docs().map(|d| d.wire_len() + 1).sum();
    let wave = engine.spread.max(1);
    let spread = (total / (wave * 4)).max(MIN_SPREAD_BYTES);
    let raw_budget = raw_budget.min(spread);
    let max_docs = cfg.max_documents_per_request.max(1);
    let cut = Cut { index, max_docs };
    // A full request, also as `maxDocumentsPerRequest` allows (documents of
    // the average size): what the ramps grow to.
    let full = raw_budget.min((total / n_docs.max(1)).max(1).saturating_mul(max_docs));
    // Requests that start together share the link: none is answered before
    // the whole first wave is up, and the downlink idles; at the end the
    // uplink idles the same way. Growing requests at the start and
    // shrinking ones at the end keep both ways busy (big documents through
    // the uplink at concurrency 8: 1,781 -> 2,385 docs/s). Large gzip'd
    // requests grow over two waves: those that follow the first wave's
    // share the uplink with it too, and full-size ones among them left the
    // downlink idle again ~0.5 s into each call (level 6, calls of 10,000
    // big documents: 75-84% of the link's limit with one wave, 87% with
    // two). Small ones grow over one: more of them cost Kuzzle (50,000
    // sensor readings through the uplink: 8% fewer per second with two). So
    // do requests without gzip ("auto" sends none to a nearby Kuzzle).
    // The size is of JSON, not on the wire, so that both levels of a gzip
    // comparison are cut alike.
    let waves = match job.gzip.is_some() && full >= LARGE_REQUEST {
        true => 2,
        false => 1,
    };
    let ramp = |k: usize| {
        (full * (k + 1) / (waves * wave))
            .max(MIN_RAMP_BYTES)
            .min(full)
    };
    // No ramp where its first step would be a full request already.
    if wave < 2 || total < 4 * wave * full || full <= MIN_RAMP_BYTES {
        return (cut.even(0, n_docs, raw_budget), total);
    }
    let steps = waves * wave - 1;
    let mut groups = cut.ramp(0, n_docs, ramp, steps, false);
    let head_end = groups.last().map_or(0, |g| g.range.end);
    let tail = cut.ramp(head_end, n_docs, ramp, steps, true);
    let tail_start = tail.last().map_or(n_docs, |g| g.range.start);
    groups.extend(cut.even(head_end, tail_start, raw_budget));
    groups.extend(tail.into_iter().rev());
    (groups, total)
}

/// A gzip'd request of this much JSON or more (~55 KB on the wire for text
/// at level 6, ~45 ms at 10 Mbit/s) is ramped up to over two waves of
/// requests, smaller ones over one.
const LARGE_REQUEST: usize = 256 * 1024;
/// The smallest request of a ramp: below, Kuzzle's cost per request shows.
const MIN_RAMP_BYTES: usize = 16 * 1024;

/// Cuts runs of documents into groups.
struct Cut<'a, 'i> {
    index: &'i Index<'a>,
    max_docs: usize,
}

impl Cut<'_, '_> {
    /// Document `i`'s bytes in a request, its comma included.
    fn len(&self, i: usize) -> usize {
        self.index.doc(i).wire_len() + 1
    }

    /// At most `count` groups of a ramp in `start..end`, the k-th up to
    /// `size(k)` bytes (at least one document), cut from `start` on, or
    /// (`from_end`) from `end` back (the last group first).
    fn ramp(
        &self,
        start: usize,
        end: usize,
        size: impl Fn(usize) -> usize,
        count: usize,
        from_end: bool,
    ) -> Vec<Group> {
        let mut groups = Vec::new();
        let (mut lo, mut hi) = (start, end);
        while lo < hi && groups.len() < count {
            let limit = size(groups.len());
            let (mut n, mut len) = (0, 0);
            while n < hi - lo {
                let l = self.len(if from_end { hi - 1 - n } else { lo + n });
                if n > 0 && (len + l > limit || n >= self.max_docs) {
                    break;
                }
                len += l;
                n += 1;
            }
            let range = if from_end {
                hi -= n;
                hi..hi + n
            } else {
                lo += n;
                lo - n..lo
            };
            groups.push(Group {
                range,
                teach: false,
            });
        }
        groups
    }

    /// `start..end` in as few groups of at most `budget` bytes as fit, of
    /// about the same size: no small remainder at the end, which would be
    /// a round trip for little.
    fn even(&self, start: usize, end: usize, budget: usize) -> Vec<Group> {
        let total: usize = (start..end).map(|i| self.len(i)).sum();
        let count = total
            .div_ceil(budget.max(1))
            .max((end - start).div_ceil(self.max_docs))
            .max(1);
        let mut groups = Vec::new();
        let (mut from, mut len, mut done) = (start, 0, 0);
        for i in start..end {
            let l = self.len(i);
            // Where the group would end by bytes alone, evenly spread.
            let mark = total * (groups.len() + 1) / count;
            let full = len + l > budget || i - from >= self.max_docs;
            if i > from && (full || (done >= mark && groups.len() + 1 < count)) {
                groups.push(Group {
                    range: from..i,
                    teach: true,
                });
                from = i;
                len = 0;
            }
            len += l;
            done += l;
        }
        if from < end {
            groups.push(Group {
                range: from..end,
                teach: true,
            });
        }
        groups
    }
}
