//! What ureq cannot tell by itself: how far a request got before it failed.
//! Kuzzle runs a request only once it has all of it, so a failure before the
//! whole request was written certainly left nothing applied, and one after
//! it may have.
//!
//! ureq 3 runs a call on the caller's thread, in order: connect (TCP, then
//! the TLS handshake, inside the connector chain), write the head and body
//! (`transmit_output`), then wait for the answer (`await_input`; nothing
//! waits for input before the body is sent, since no request of ours asks
//! for `100-continue`). The connector chain below is ureq's default one
//! (CONNECT proxy, TCP, then TLS: ours, `tls.rs`, to count handshakes; SOCKS
//! is not compiled in) with two marks: one after TCP, one on the final
//! transport, which notes the first wait for input and whether the call
//! went on a pooled connection. The phase lives in a thread-local, reset
//! before each call.

use crate::error::{Error, Status};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, TcpConnector,
    Transport,
};

/// How far the current call of this thread got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Resolving the name, connecting; also writing on a pooled connection
    /// (Kuzzle closes every connection, so there seldom is one).
    Connecting,
    /// TCP connected, the TLS handshake under way.
    Handshake,
    /// Connected, the request being written.
    Writing,
    /// The whole request was handed to the kernel: the answer is awaited.
    Written,
}

/// What the answer's head, as it came, said of its encoding: ureq drops
/// `Content-Encoding` from the headers it hands over when it inflates gzip,
/// so a gzip answer not asked for would look like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    Awaited,
    Plain,
    Encoded,
}

thread_local! {
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Connecting) };
    static HEAD: Cell<Head> = const { Cell::new(Head::Awaited) };
    static REUSED: Cell<bool> = const { Cell::new(false) };
}

/// Before each call.
pub(super) fn start() {
    PHASE.set(Phase::Connecting);
    HEAD.set(Head::Awaited);
    REUSED.set(false);
}

/// The current call went on a connection a previous call had used.
pub(super) fn reused() -> bool {
    REUSED.get()
}

/// Nothing of the current call's answer came (not even a head's first
/// bytes).
pub(super) fn nothing_came() -> bool {
    HEAD.get() == Head::Awaited
}

/// The head of the current call's answer had a `Content-Encoding` other
/// than `identity`.
pub(super) fn head_encoded() -> bool {
    HEAD.get() == Head::Encoded
}

/// Reads the answer's head from what came in so far (`input`, where
/// nothing of this answer was consumed yet), once it is whole; interim
/// 1xx heads are skipped.
fn note_head(mut input: &[u8]) {
    while HEAD.get() == Head::Awaited {
        let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let head = &input[..end];
        input = &input[end + 4..];
        if head.starts_with(b"HTTP/1.1 1") || head.starts_with(b"HTTP/1.0 1") {
            continue;
        }
        let encoded = head.split(|b| *b == b'\n').skip(1).any(|line| {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                return false;
            };
            let value = line[colon + 1..].trim_ascii();
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"content-encoding")
                && !value.is_empty()
                && !value.eq_ignore_ascii_case(b"identity")
        });
        HEAD.set(if encoded { Head::Encoded } else { Head::Plain });
    }
}

pub(super) fn phase() -> Phase {
    PHASE.get()
}

/// Bytes through the client's TCP connections, each way: HTTP heads and
/// bodies as they go on the wire, and TLS records over HTTPS.
#[derive(Debug, Default)]
pub struct Bytes {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// ureq's default connectors with our TLS, marked, counting into `bytes`.
pub(super) fn connector(bytes: Arc<Bytes>, tls: super::tls::TlsConnector) -> impl Connector {
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(Count(bytes))
        .chain(MarkHandshake)
        .chain(tls)
        .chain(Record)
}

/// Right over TCP, below TLS: counts what goes each way.
#[derive(Debug)]
struct Count(Arc<Bytes>);

impl<In: Transport> Connector<In> for Count {
    type Out = Counted<In>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Counted<In>>, ureq::Error> {
        Ok(chained.map(|t| Counted(t, self.0.clone())))
    }
}

#[derive(Debug)]
pub(super) struct Counted<T>(T, Arc<Bytes>);

impl<T: Transport> Counted<T> {
    /// Counts what one wait for input brought.
    fn received(
        &mut self,
        wait: impl FnOnce(&mut T) -> Result<bool, ureq::Error>,
    ) -> Result<bool, ureq::Error> {
        let before = self.0.buffers().input().len();
        let progress = wait(&mut self.0);
        let after = self.0.buffers().input().len();
        let got = after.saturating_sub(before) as u64;
        self.1.received.fetch_add(got, Ordering::Relaxed);
        progress
    }
}

impl<T: Transport> Transport for Counted<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.1.sent.fetch_add(amount as u64, Ordering::Relaxed);
        self.0.transmit_output(amount, timeout)
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.received(|t| t.maybe_await_input(timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.received(|t| t.await_input(timeout))
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

/// After TCP: an https URI's handshake starts.
#[derive(Debug)]
struct MarkHandshake;

impl<In: Transport> Connector<In> for MarkHandshake {
    type Out = In;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<In>, ureq::Error> {
        if chained.is_some() && details.needs_tls() {
            PHASE.set(Phase::Handshake);
        }
        Ok(chained)
    }
}

/// The final transport, connected (and TLS established): records the
/// first wait for the answer.
#[derive(Debug)]
struct Record;

impl<In: Transport> Connector<In> for Record {
    type Out = Recorded<In>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Recorded<In>>, ureq::Error> {
        Ok(chained.map(|t| {
            PHASE.set(Phase::Writing);
            Recorded(t)
        }))
    }
}

#[derive(Debug)]
pub(super) struct Recorded<T>(T);

impl<T: Transport> Transport for Recorded<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        // Still "connecting" when writing: no connector ran, ureq took
        // this connection from its pool.
        if PHASE.get() == Phase::Connecting {
            PHASE.set(Phase::Writing);
            REUSED.set(true);
        }
        self.0.transmit_output(amount, timeout)
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        PHASE.set(Phase::Written);
        let progress = self.0.maybe_await_input(timeout)?;
        if HEAD.get() == Head::Awaited {
            note_head(self.0.buffers().input());
        }
        Ok(progress)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        PHASE.set(Phase::Written);
        let progress = self.0.await_input(timeout)?;
        if HEAD.get() == Head::Awaited {
            note_head(self.0.buffers().input());
        }
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

/// Maps a transport failure to a status, and tells whether the request may
/// have been run (`in_doubt`): exactly when it was written whole. Refused,
/// DNS failure, connect timeout, TLS handshake failure, a reset, EPIPE or
/// timeout while the request was still being written: not in doubt.
pub(super) fn classify(e: ureq::Error) -> Error {
    use std::io::ErrorKind::*;
    use ureq::Error as U;
    let phase = phase();
    let status = match &e {
        U::Timeout(_) => Status::KUZZLE_ERR_TIMEOUT,
        U::Io(io) if matches!(io.kind(), TimedOut | WouldBlock) => Status::KUZZLE_ERR_TIMEOUT,
        U::HostNotFound | U::ConnectionFailed => Status::KUZZLE_ERR_CONNECTION,
        U::Io(io) if matches!(io.kind(), ConnectionRefused | AddrNotAvailable | NotFound) => {
            Status::KUZZLE_ERR_CONNECTION
        }
        U::Tls(_) | U::Pem(_) | U::Rustls(_) => Status::KUZZLE_ERR_TLS,
        // Whatever broke a handshake (a plain HTTP port answering the
        // ClientHello with "400 Bad Request", a reset) is a TLS failure.
        _ if phase == Phase::Handshake => Status::KUZZLE_ERR_TLS,
        U::Io(io) if is_tls_io(io) => Status::KUZZLE_ERR_TLS,
        _ => Status::KUZZLE_ERR_CONNECTION,
    };
    let mut err = Error::new(status, e.to_string());
    err.in_doubt = phase == Phase::Written;
    err
}

/// rustls reports handshake failures (untrusted certificate...) as I/O errors
/// wrapping its own error type; tell them apart by their text.
fn is_tls_io(io: &std::io::Error) -> bool {
    let text = io.to_string();
    ["certificate", "handshake", "tls", "TLS", "alert"]
        .iter()
        .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_tells_its_encoding() {
        for (input, head) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Len"[..], Head::Awaited),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                Head::Plain,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-encoding: identity\r\n\r\n",
                Head::Plain,
            ),
            (
                b"HTTP/1.1 200 OK\r\nCONTENT-ENCODING:gzip\r\n\r\n\x1f\x8b",
                Head::Encoded,
            ),
            (
                b"HTTP/1.1 200 OK\r\nX-Content-Encoding: gzip\r\n\r\n",
                Head::Plain,
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n",
                Head::Encoded,
            ),
        ] {
            start();
            note_head(input);
            assert_eq!(HEAD.get(), head, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn in_doubt_exactly_once_written() {
        let reset = || ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        for (phase, doubt) in [
            (Phase::Connecting, false),
            (Phase::Writing, false),
            (Phase::Written, true),
        ] {
            PHASE.set(phase);
            let e = classify(reset());
            assert_eq!(e.status, Status::KUZZLE_ERR_CONNECTION, "{phase:?}");
            assert_eq!(e.in_doubt, doubt, "{phase:?}");
            let e = classify(ureq::Error::Timeout(ureq::Timeout::Global));
            assert_eq!(e.status, Status::KUZZLE_ERR_TIMEOUT);
            assert_eq!(e.in_doubt, doubt, "{phase:?}");
        }
        PHASE.set(Phase::Handshake);
        let e = classify(reset());
        assert_eq!((e.status, e.in_doubt), (Status::KUZZLE_ERR_TLS, false));
        let e = classify(ureq::Error::Timeout(ureq::Timeout::Connect));
        assert_eq!((e.status, e.in_doubt), (Status::KUZZLE_ERR_TIMEOUT, false));
        start();
        assert_eq!(phase(), Phase::Connecting);
        let e = classify(ureq::Error::ConnectionFailed);
        assert_eq!(
            (e.status, e.in_doubt),
            (Status::KUZZLE_ERR_CONNECTION, false)
        );
    }
}
