//! The worker loop: one group of documents at a time, sent through the
//! network seam, split on 413, retried as its failure's class allows, and
//! every document reported exactly once into the group's sink.

use super::answer::{fast_record, record, MWriteResult};
use super::claims::Claims;
use super::index::Doc;
use super::merge::Sink;
use super::result::Fragment;
use super::strict::strict_partial;
use super::Engine;
use crate::error::Error;
use crate::retry::{self, Backoff, Class};
use crate::transport::{Answer, Call, Reply};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Everything one mWrite call shares between its worker threads.
pub(super) struct Job<'a> {
    pub(super) engine: &'a Engine<'a>,
    /// `{"controller":...,"body":{"documents":[` for every request.
    pub(super) head: String,
    pub(super) strict: bool,
    /// Successes echo each document's `_source` (option `source`).
    pub(super) with_source: bool,
    pub(super) started: Instant,
    /// Set when a request found Kuzzle unreachable after `retryDeadlineMs`:
    /// groups not sent yet then fail at once, not sent, so that the call
    /// ends within `retryDeadlineMs + timeoutMs` however many groups are
    /// left.
    pub(super) down: OnceLock<Error>,
    /// With gzip: the call's level, and what it cost (`GzipPool::end_call`).
    pub(super) gzip: Option<Call>,
    /// A request failed, was split or refused a document too large: the
    /// call's time says little of the gzip level.
    pub(super) troubled: AtomicBool,
}

/// A worker's buffers, kept from one request to the next: megabytes each
/// for big requests, so reusing them saves copies and page faults.
#[derive(Default)]
pub(super) struct Buffers {
    /// The request as JSON; `packed`: its gzip. The one sent then takes
    /// Kuzzle's answer: a request and its answer are never needed at the
    /// same time (a retry builds the request again), and answers are about
    /// as large.
    raw: Vec<u8>,
    packed: Vec<u8>,
    /// `packed` holds the gzip of `raw`, and is what goes on the wire.
    gzip: bool,
}

impl Buffers {
    fn wire(&self) -> &[u8] {
        if self.gzip {
            &self.packed
        } else {
            &self.raw
        }
    }

    fn wire_mut(&mut self) -> &mut Vec<u8> {
        if self.gzip {
            &mut self.packed
        } else {
            &mut self.raw
        }
    }
}

/// What to do with a group after Kuzzle's answer.
enum Next {
    Done,
    Split,
    Failed(Error),
}

impl Job<'_> {
    /// The request for `docs`, raw, into `raw`.
    pub(super) fn build(&self, docs: &[Doc], raw: &mut Vec<u8>) {
        let len: usize = docs.iter().map(|d| d.wire_len() + 1).sum();
        raw.clear();
        raw.reserve(self.head.len() + len + 4);
        raw.extend_from_slice(self.head.as_bytes());
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            doc.write(raw);
        }
        raw.extend_from_slice(b"]}}");
    }

    /// The request for `docs` as it goes on the wire, into `bufs`.
    fn encode(&self, docs: &[Doc], bufs: &mut Buffers) {
        self.build(docs, &mut bufs.raw);
        bufs.gzip = self.gzip.is_some();
        if let Some(call) = &self.gzip {
            self.engine.gzip.compress(call, &bufs.raw, &mut bufs.packed);
        }
    }

    /// Writes one group of documents, splitting, retrying and reporting each
    /// of them exactly once into `sink`. `teach`: its round trips are a fair
    /// sample for the node's limit and the gzip level (`plan::Group`).
    pub(super) fn write(
        &self,
        mut docs: Vec<Doc>,
        teach: bool,
        bufs: &mut Buffers,
        sink: &mut Sink,
    ) {
        if docs.is_empty() {
            return;
        }
        if let Some(e) = self.down.get() {
            return sink.out().fail(&docs, not_sent(e));
        }
        let config = self.engine.config;
        let max = config.max_request_bytes;
        let mut backoff = Backoff::new(config, self.started);
        loop {
            // Built for every attempt: the last one's answer is in `raw`.
            self.encode(&docs, bufs);
            let size = bufs.wire().len();
            if size > max {
                if docs.len() > 1 {
                    return self.split(docs, bufs, sink);
                }
                let reason = format!(
                    "document too large: {size} bytes on the wire, over maxRequestBytes ({max})"
                );
                self.troubled.store(true, Ordering::Relaxed);
                return sink.out().doc_error(&docs[0], 413, &reason, false);
            }
            // The buffer sent takes the answer; the other one stays.
            let raw_len = bufs.raw.len();
            let wire = std::mem::take(bufs.wire_mut());
            let failure = match self.engine.net.exchange(wire, bufs.gzip, raw_len, teach) {
                Ok(reply) => {
                    let next = self.answer(&reply, &docs, sink);
                    *bufs.wire_mut() = reply.into_buffer();
                    match next {
                        Next::Done => return,
                        Next::Split => return self.split(docs, bufs, sink),
                        Next::Failed(error) => error,
                    }
                }
                Err(error) => error,
            };
            if !self.retry_after(failure, &mut docs, &mut backoff, sink) {
                return;
            }
        }
    }

    /// After a failed attempt: whether to try `docs` again (after the
    /// backoff, or at once when another node takes it); else every document of `docs` is reported. Documents that
    /// may have been written and have no `_id` are never sent again: they
    /// could be stored twice.
    fn retry_after(
        &self,
        error: Error,
        docs: &mut Vec<Doc>,
        backoff: &mut Backoff,
        sink: &mut Sink,
    ) -> bool {
        self.troubled.store(true, Ordering::Relaxed);
        let class = retry::class(&error);
        if class == Class::Final {
            sink.out().fail(docs, error);
            return false;
        }
        if class == Class::InDoubt && docs.iter().any(|d| !d.has_id()) {
            let (keep, doubtful): (Vec<Doc>, Vec<Doc>) =
                std::mem::take(docs).into_iter().partition(|d| d.has_id());
            sink.out().fail(&doubtful, error.clone());
            *docs = keep;
            if docs.is_empty() {
                return false;
            }
        }
        let now = self.engine.net.retry_now(&error);
        if (now && backoff.skip()) || (!now && backoff.wait()) {
            self.engine.net.retried();
            return true;
        }
        // No answer, or a proxy's: Kuzzle is out of reach.
        let unreachable = error.http == 0 || class == Class::InDoubt;
        if unreachable && self.started.elapsed() >= self.engine.config.retry_deadline {
            let _ = self.down.set(error.clone());
        }
        sink.out().fail(docs, error);
        false
    }

    /// Records Kuzzle's answer about `docs`, or says what to do instead
    /// (then writing nothing: the sink is chosen by what is written).
    fn answer(&self, reply: &Reply, docs: &[Doc], sink: &mut Sink) -> Next {
        // Only a success can be read fast (an error status never is).
        if reply.http < 400 {
            let out = sink.out();
            let mark = out.mark();
            let mut claims = Claims::new(docs);
            if fast_record(reply, out, self.with_source, &mut claims) {
                unmatched(reply, docs, &claims, mark, out);
                return Next::Done;
            }
        }
        match reply.decode::<MWriteResult>() {
            Answer::Result(Some(result)) => {
                let out = sink.out();
                let mark = out.mark();
                let mut claims = Claims::new(docs);
                record(result, out, self.with_source, &mut claims);
                unmatched(reply, docs, &claims, mark, out);
            }
            Answer::Result(None) => {
                let mut e = Error::server(
                    reply.http,
                    Some("libkuzzle.bad_response"),
                    "mWrite answer has no result",
                );
                // An answer that says nothing of the documents sent.
                e.in_doubt = true;
                self.troubled.store(true, Ordering::Relaxed);
                sink.out().fail(docs, e);
            }
            Answer::Error { error, details } => match error.http {
                413 if docs.len() > 1 => return Next::Split,
                // Alone and still too large for this server: that
                // document's own rejection, the call goes on.
                413 => {
                    self.troubled.store(true, Ordering::Relaxed);
                    sink.out().doc_error(&docs[0], 413, &error.message, false)
                }
                400 if self.strict && error.id == "api.process.incomplete_multiple_request" => {
                    strict_partial(docs, details, sink.out(), self.with_source, reply.http);
                }
                _ => return Next::Failed(error),
            },
        }
        Next::Done
    }

    fn split(&self, mut docs: Vec<Doc>, bufs: &mut Buffers, sink: &mut Sink) {
        self.troubled.store(true, Ordering::Relaxed);
        let second = docs.split_off(docs.len() / 2);
        // Halves are smaller than the requests planned: no fair sample.
        self.write(docs, false, bufs, sink);
        self.write(second, false, bufs, sink);
    }
}

/// When the items of an answer do not match the documents sent one for one,
/// what was written of them is undone and every document is reported in
/// doubt instead, so that each still appears exactly once.
fn unmatched(
    reply: &Reply,
    docs: &[Doc],
    claims: &Claims,
    mark: super::result::Mark,
    out: &mut Fragment,
) {
    if claims.complete() {
        return;
    }
    out.rollback(mark);
    let mut e = Error::server(
        reply.http,
        Some("libkuzzle.bad_response"),
        claims.describe(),
    );
    e.in_doubt = true;
    out.fail(docs, e);
}

/// The error of a group not sent because Kuzzle stopped answering.
fn not_sent(cause: &Error) -> Error {
    let mut e = cause.clone();
    e.in_doubt = false;
    e.http = 0;
    e.message = format!(
        "not sent: Kuzzle was out of reach for this call's earlier requests past \
         retryDeadlineMs ({})",
        cause.message
    );
    e
}
