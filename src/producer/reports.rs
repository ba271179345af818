//! Delivery reports: one final report per accepted document, waiting for
//! the application's `poll`, with a file descriptor that is readable while
//! some wait (for an event loop that has no thread to spare).

use crate::spool::Target;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The final outcome of one document.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub seq: u64,
    /// Its index and collection.
    pub target: Arc<Target>,
    /// The `_id` as a JSON string literal.
    pub id: Box<str>,
    pub ok: bool,
    /// HTTP status for a failure (0: no HTTP answer).
    pub status: u16,
    pub version: Option<u64>,
    pub created: Option<bool>,
    pub reason: Option<String>,
    pub in_doubt: bool,
    /// It may have been handed out before a crash.
    pub redelivered: bool,
    /// The bytes its document counted against `maxQueueBytes`, released
    /// when the report is polled.
    pub held: usize,
}

/// The status of the reports of documents dropped by `whenFull: dropOldest`.
pub(crate) const DROPPED: u16 = 507;

impl Report {
    /// A document `dropOldest` dropped (it stopped counting against the
    /// queue's bound then).
    pub fn dropped(&self) -> bool {
        !self.ok && self.status == DROPPED
    }

    /// Appends the report as a JSON object. `last`: the target of the
    /// report before and its `,"index":…,"collection":…` text, reused while
    /// the target stays the same (reports of a batch share theirs).
    fn write_json(&self, out: &mut String, last: &mut Option<(Arc<Target>, String)>) {
        use crate::error::push_json_str;
        out.push_str("{\"seq\":");
        push_u64(out, self.seq);
        match last {
            Some((t, text)) if Arc::ptr_eq(t, &self.target) => out.push_str(text),
            _ => {
                let mut text = String::from(",\"index\":");
                push_json_str(&mut text, &self.target.index);
                text.push_str(",\"collection\":");
                push_json_str(&mut text, &self.target.collection);
                out.push_str(&text);
                *last = Some((self.target.clone(), text));
            }
        }
        out.push_str(",\"_id\":");
        // Empty: a redelivered report whose document's record was lost to
        // damage (the spool counts it).
        out.push_str(if self.id.is_empty() { "null" } else { &self.id });
        if self.ok {
            out.push_str(",\"ok\":true,\"_version\":");
            match self.version {
                Some(v) => push_u64(out, v),
                None => out.push_str("null"),
            }
            out.push_str(match self.created {
                Some(true) => ",\"created\":true",
                Some(false) => ",\"created\":false",
                None => ",\"created\":null",
            });
        } else {
            out.push_str(",\"ok\":false,\"status\":");
            push_u64(out, self.status.into());
            out.push_str(",\"reason\":");
            push_json_str(out, self.reason.as_deref().unwrap_or(""));
            out.push_str(match self.in_doubt {
                true => ",\"inDoubt\":true",
                false => ",\"inDoubt\":false",
            });
        }
        if self.redelivered {
            out.push_str(",\"redelivered\":true");
        }
        out.push('}');
    }
}

/// Appends `n` in decimal (no allocation, unlike `to_string`).
fn push_u64(out: &mut String, mut n: u64) {
    if n < 10 {
        return out.push((b'0' + n as u8) as char);
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n > 0 {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // ASCII digits.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

/// `[report, ...]`.
pub(crate) fn json_array(reports: &[Report]) -> String {
    let mut out = String::with_capacity(2 + reports.len() * 120);
    let mut last = None;
    out.push('[');
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        r.write_json(&mut out, &mut last);
    }
    out.push(']');
    out
}

/// The reports waiting for `poll`.
pub(crate) struct Reports {
    queue: Mutex<VecDeque<Report>>,
    arrived: Condvar,
    /// Readable (a byte waits) while reports wait; `signal` is written.
    notify_read: UnixStream,
    notify_write: UnixStream,
}

impl Reports {
    pub fn new() -> std::io::Result<Reports> {
        let (notify_read, notify_write) = UnixStream::pair()?;
        notify_read.set_nonblocking(true)?;
        notify_write.set_nonblocking(true)?;
        Ok(Reports {
            queue: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
            notify_read,
            notify_write,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Report>> {
        // A report is pushed or taken whole: a panic leaves the queue whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The descriptor an event loop waits on (readable while reports wait).
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.notify_read.as_raw_fd()
    }

    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    pub fn push(&self, reports: Vec<Report>) {
        if reports.is_empty() {
            return;
        }
        let mut queue = self.lock();
        let was_empty = queue.is_empty();
        queue.extend(reports);
        if was_empty {
            // Full or failed: the descriptor is readable already, or the
            // next poll says what there is anyway.
            let _ = (&self.notify_write).write(&[1]);
        }
        drop(queue);
        self.arrived.notify_all();
    }

    /// At most `max` reports, waiting up to `timeout` for the first one.
    pub fn take(&self, max: usize, timeout: Duration) -> Vec<Report> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.lock();
        while queue.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            queue = self
                .arrived
                .wait_timeout(queue, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = max.min(queue.len());
        let taken: Vec<Report> = queue.drain(..n).collect();
        if queue.is_empty() {
            let mut sink = [0u8; 64];
            while matches!((&self.notify_read).read(&mut sink), Ok(n) if n > 0) {}
        }
        taken
    }

    /// Every report waiting, at once.
    pub fn take_all(&self) -> Vec<Report> {
        self.take(usize::MAX, Duration::ZERO)
    }
}
