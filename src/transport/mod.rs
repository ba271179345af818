//! HTTP transport to Kuzzle: one `POST /_query` route for every API action,
//! bodies always sent with a Content-Length (Kuzzle shuts itself down on an
//! oversized chunked body), gzip both ways, every answer bounded, answers
//! decoded into either a result or a classified [`Error`].
//!
//! - `reply`: the answer and Kuzzle's envelope.
//! - `wire`: how far a request got before it failed (`in_doubt`).
//! - `dns`: the host name's addresses, cached.
//! - `gzip`: request compressors.

mod dns;
mod gzip;
mod reply;
mod tls;
mod wire;

use dns::DnsCache;
pub use gzip::{Call, GzipPool};
pub use reply::{Answer, Reply};
pub use std::sync::atomic::{AtomicBool, Ordering};
pub use tls::Connections;
pub use wire::Bytes;

use crate::config::Config;
use crate::error::{Error, Result, Status};
use std::io::Read;
use std::time::Duration;

/// Times a request that met a closed pooled connection before it was
/// written goes again on another.
const STALE_RESENDS: usize = 4;

/// The server closed a kept-alive connection just as a request went on it,
/// after it was written whole: almost surely not run (a server closes only
/// connections it reads nothing on), but that cannot be known. The engine
/// sends documents with ids again at once (`Client::retry_now`).
pub(crate) const STALE_ID: &str = "libkuzzle.stale_connection";

fn stale_in_doubt(mut e: Error) -> Error {
    e.id = STALE_ID.to_string();
    e.message = format!(
        "the server closed a kept-alive connection as the request went on it ({}): it may have run",
        e.message
    );
    e
}

/// Idle kept-alive connections a client keeps, all nodes together.
const MAX_IDLE_CONNECTIONS: usize = 256;

/// ureq's read and write buffers, per connection.
const IO_BUFFER_BYTES: usize = 32 * 1024;

/// An answer that echoes its request (bulk:mWrite) may be this many times
/// the raw (uncompressed) request: Kuzzle echoes every `_source` and adds
/// `_id`, `_version` and `result` to each, ~1.3x the request for sensor
/// readings; twice leaves room for documents with long ids and short bodies.
const ECHO_FACTOR: u64 = 2;
/// Plus this much per document a request may hold (`maxDocumentsPerRequest`):
/// a rejected document comes back with its status and Kuzzle's reason (100
/// to 250 bytes), which can be several times a tiny document.
const PER_DOCUMENT_BYTES: u64 = 512;
/// Plus this much whatever the request: the envelope, and any error Kuzzle
/// answers a small request with. Also the bound of a `get`.
const ANSWER_MARGIN: u64 = 1 << 20;
/// `kuzzle_query` answers are not in proportion to their request: a
/// document:search of a hundred bytes can fetch 10,000 documents (Kuzzle's
/// default `limits.documentsFetchCount`); 256 MiB is 26 KB for each of them.
pub(crate) const MAX_QUERY_ANSWER_BYTES: u64 = 256 << 20;
/// An answer's buffer is sized up front from its Content-Length at most
/// to what its request leads one to expect, `ECHO_FACTOR` x the raw
/// request plus `ANSWER_MARGIN`, and grows as bytes actually arrive beyond
/// that: a length is a claim, not bytes.
const fn presize_cap(raw_len: u64) -> u64 {
    ECHO_FACTOR * raw_len + ANSWER_MARGIN
}

/// How large an answer may be once decoded (gzip inflated): beyond it the
/// answer is an error, never an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// bulk:mWrite and the like, answers in proportion to the request:
    /// `raw_len` is the request's size before gzip. `teach` is the client's
    /// (whether the round trip teaches the node's limit), not the bound's.
    Echo { raw_len: usize, teach: bool },
    /// Any other action: `MAX_QUERY_ANSWER_BYTES`.
    Query,
}

pub struct Transport {
    agent: ureq::Agent,
    pub gzip: GzipPool,
    /// Ask Kuzzle for gzip answers: with compression, both ways. Set by
    /// `Client::connect` once "auto" is settled.
    pub accept_gzip: AtomicBool,
    dns: std::sync::Arc<DnsCache>,
    /// Through every connection, each way.
    pub bytes: std::sync::Arc<Bytes>,
    /// Connections opened, reused, and their TLS handshakes.
    pub connections: std::sync::Arc<Connections>,
    /// `PER_DOCUMENT_BYTES` x `maxDocumentsPerRequest` + `ANSWER_MARGIN`.
    echo_margin: u64,
}

impl Transport {
    pub fn new(config: &Config) -> Result<Transport> {
        let ca = config.ca_file.as_deref().map(load_ca_file).transpose()?;
        let tls = tls::TlsConnector {
            config: tls::client_config(ca, config.tls_verify)?,
            counts: Default::default(),
        };
        let connections = tls.counts.clone();
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Asked per request (`accept_gzip`); ureq would inflate an
            // answer by its Content-Encoding whoever asked for it, so an
            // encoding not asked for is refused (`Unread::check`).
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.connect_timeout))
            .max_redirects(0)
            // Kuzzle closes every connection after its answer, and ureq
            // allocates and zeroes both buffers for each new connection:
            // 2 x 128 KiB by default, more than a 2,000-document answer.
            .input_buffer_size(IO_BUFFER_BYTES)
            .output_buffer_size(IO_BUFFER_BYTES)
            .user_agent(concat!("libkuzzle/", env!("CARGO_PKG_VERSION")))
            // A server that keeps connections alive (a reverse proxy) gets
            // each worker's connection again: room for every node's most.
            .max_idle_connections(MAX_IDLE_CONNECTIONS)
            .max_idle_connections_per_host(
                config.concurrency_max.max(config.concurrency.unwrap_or(1)),
            )
            .build();
        let resolver = dns::CachingResolver::default();
        let dns = resolver.cache.clone();
        let bytes = std::sync::Arc::new(Bytes::default());
        let agent =
            ureq::Agent::with_parts(agent_config, wire::connector(bytes.clone(), tls), resolver);
        Ok(Transport {
            agent,
            gzip: GzipPool::new(config.gzip_level),
            accept_gzip: AtomicBool::new(false),
            dns,
            bytes,
            connections,
            echo_margin: PER_DOCUMENT_BYTES * config.max_documents_per_request as u64
                + ANSWER_MARGIN,
        })
    }

    /// Posts one Kuzzle request (a JSON object, possibly gzip-encoded) to
    /// `url` and reads its answer, of any size up to
    /// `MAX_QUERY_ANSWER_BYTES`.
    #[cfg(test)]
    pub fn post_query(&self, url: &str, body: &[u8]) -> Result<Reply> {
        self.post_bounded(url, body, false, None, Bound::Query)?
            .read(Vec::new())
    }

    /// Sends a request to `url` (a node's `/_query`); its answer, to read
    /// later, is bounded by `bound`. `Err` only when no complete HTTP
    /// answer head came.
    pub fn post_bounded(
        &self,
        url: &str,
        body: &[u8],
        gzip: bool,
        token: Option<&str>,
        bound: Bound,
    ) -> Result<Pending<'_>> {
        let accept_gzip = self.accept_gzip.load(Ordering::Relaxed);
        let request = || {
            let mut req = self
                .agent
                .post(url)
                .header("content-type", "application/json");
            if gzip {
                req = req.header("content-encoding", "gzip");
            }
            if accept_gzip {
                req = req.header("accept-encoding", "gzip");
            }
            if let Some(token) = token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            req
        };
        let (limit, presize) = match bound {
            Bound::Echo { raw_len, .. } => {
                let raw = raw_len as u64;
                (ECHO_FACTOR * raw + self.echo_margin, presize_cap(raw))
            }
            Bound::Query => (MAX_QUERY_ANSWER_BYTES, presize_cap(body.len() as u64)),
        };
        // A pooled connection the server closed as it sat idle fails the
        // request that takes it: sent again at once on another (ureq drops
        // the broken one) while it cannot have run; a few times, since the
        // other idle ones may be closed too.
        let mut resends = 0;
        loop {
            wire::start();
            // A byte slice has a known size: ureq sends it with a
            // Content-Length.
            let sent = request().send(body);
            let reused = wire::reused();
            if reused {
                self.connections.reused.fetch_add(1, Ordering::Relaxed);
            }
            match sent {
                Err(e) if reused && wire::nothing_came() && resends < STALE_RESENDS => {
                    let e = wire::classify(e);
                    if e.in_doubt {
                        return Err(stale_in_doubt(e));
                    }
                    self.connections.stale.fetch_add(1, Ordering::Relaxed);
                    resends += 1;
                }
                sent => return self.pending(sent, limit, presize, accept_gzip),
            }
        }
    }

    /// A GET on a path of a node (`base`: `http(s)://host:port`) that needs
    /// no authentication (health probe), within `timeout` if given, else
    /// the configured one.
    pub fn get(&self, base: &str, path: &str, timeout: Option<Duration>) -> Result<Reply> {
        let mut req = self.agent.get(format!("{base}{path}"));
        if timeout.is_some() {
            req = req.config().timeout_global(timeout).build();
        }
        wire::start();
        let sent = req.call();
        self.pending(sent, ANSWER_MARGIN, ANSWER_MARGIN, false)?
            .read(Vec::new())
    }

    /// A request that failed, sending or reading, makes the next one look
    /// the name up again, in case Kuzzle moved.
    fn pending(
        &self,
        sent: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        limit: u64,
        presize: u64,
        asked_gzip: bool,
    ) -> Result<Pending<'_>> {
        let unread = match sent {
            Ok(response) => Unread {
                response,
                dns: &self.dns,
                limit,
                presize,
            },
            Err(e) => {
                self.dns.forget();
                return Err(wire::classify(e));
            }
        };
        unread
            .check(asked_gzip)
            .inspect_err(|_| self.dns.forget())?;
        Ok(Pending(unread))
    }
}

/// An answer whose status and headers came in, its body not read yet.
pub struct Pending<'t>(Unread<'t>);

/// An answer's status and headers, and how large its body may be.
pub struct Unread<'t> {
    response: ureq::http::Response<ureq::Body>,
    dns: &'t DnsCache,
    /// The most bytes its body may decode to.
    limit: u64,
    /// The most bytes reserved for it before they arrive.
    presize: u64,
}

impl Pending<'_> {
    pub fn http(&self) -> u16 {
        self.0.http()
    }

    /// The answer, read into `buffer` (its contents overwritten, its
    /// capacity reused).
    pub fn read(self, buffer: Vec<u8>) -> Result<Reply> {
        let dns = self.0.dns;
        self.0.read(buffer).inspect_err(|_| dns.forget())
    }
}

/// Statuses by which Kuzzle (or a proxy) refuses a request before running
/// it, so that even an answer whose body is unusable says it did not run:
/// unauthenticated, forbidden, too large, rate limited. (A 400 may be
/// `api.process.incomplete_multiple_request`, which ran in part.)
fn refused(http: u16) -> bool {
    matches!(http, 401 | 403 | 413 | 429)
}

impl Unread<'_> {
    fn http(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// An answer that cannot be used although it came: an error of the
    /// server (`KUZZLE_ERR_SERVER`, not retried), `http` 0 since no complete
    /// answer is at hand, in doubt unless its status refused the request.
    fn unusable(&self, id: &str, message: String) -> Error {
        let mut e = Error::new(Status::KUZZLE_ERR_SERVER, message);
        e.id = id.to_string();
        e.in_doubt = !refused(self.http());
        e
    }

    /// Refuses a Content-Encoding the library did not ask for (ureq would
    /// inflate gzip all the same), and a Content-Length over the bound.
    fn check(&self, asked_gzip: bool) -> Result<()> {
        let mut encodings = self
            .response
            .headers()
            .get_all("content-encoding")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|v| v.trim_ascii())
            .filter(|v| !v.eq_ignore_ascii_case(b"identity"));
        let ok = match (encodings.next(), encodings.next()) {
            // ureq drops the header of an answer it inflates: the head
            // as it came says whether there was one.
            (None, _) if wire::head_encoded() => asked_gzip,
            (None, _) => true,
            // Exactly what ureq inflates, once.
            (Some(b"gzip"), None) => asked_gzip,
            _ => false,
        };
        if !ok {
            let what = self
                .response
                .headers()
                .get_all("content-encoding")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            let what: String = match what.is_empty() {
                true => "gzip".into(),
                false => what.chars().take(100).collect(),
            };
            return Err(self.unusable(
                "libkuzzle.bad_encoding",
                format!(
                    "HTTP {}: answer encoded as \"{what}\", which was not asked for",
                    self.http()
                ),
            ));
        }
        match self.response.body().content_length() {
            Some(n) if n > self.limit => Err(self.too_large(Some(n))),
            _ => Ok(()),
        }
    }

    fn too_large(&self, claimed: Option<u64>) -> Error {
        let what = match claimed {
            Some(n) => format!("announced {n} bytes"),
            None => "grew".to_string(),
        };
        self.unusable(
            "libkuzzle.answer_too_large",
            format!(
                "HTTP {}: the answer {what}, over the {} bytes its request allows",
                self.http(),
                self.limit
            ),
        )
    }

    fn read(mut self, mut buf: Vec<u8>) -> Result<Reply> {
        use std::io::ErrorKind;
        let http = self.http();
        // Size the buffer from Content-Length rather than let it double its
        // way up (every doubling is a copy and fresh pages to fault in, for
        // answers of megabytes), but no further than the request leads one
        // to expect. (ureq gives no length while it inflates gzip: the
        // recycled buffer serves then.)
        let hint = self
            .response
            .body()
            .content_length()
            .unwrap_or(0)
            .min(self.presize)
            .min(self.limit) as usize;
        if buf.len() <= hint {
            buf.resize(hint + 1, 0);
        }
        // The limit counts decoded bytes: a gzip bomb stops at it.
        let limit = self.limit;
        let mut reader = self.response.body_mut().with_config().limit(limit).reader();
        let mut len = 0;
        let failed = loop {
            if len == buf.len() {
                // Zeroed in steps of a quarter, so that an answer of unknown
                // length (gzip) leaves no large zeroed tail to fault in: the
                // buffer comes holding its request, and the answer is ~1.3x
                // that. The Vec still doubles its capacity underneath.
                let step = (buf.len() / 4).clamp(16 * 1024, 1 << 20);
                buf.resize(buf.len() + step, 0);
            }
            match reader.read(&mut buf[len..]) {
                Ok(0) => break None,
                Ok(n) => len += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Some(ureq::Error::from(e)),
            }
        };
        drop(reader);
        match failed {
            None => Ok(Reply { http, buf, len }),
            Some(ureq::Error::BodyExceedsLimit(_)) => Err(self.too_large(None)),
            Some(e) => {
                let mut e = wire::classify(e);
                // The request was answered, so it was received.
                e.in_doubt = !refused(http);
                Err(e)
            }
        }
    }
}

/// The caFile's PEM, at most this long: a bundle of every public root CA is
/// ~220 KB.
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

fn load_ca_file(path: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let tls = |what: String| Error::new(Status::KUZZLE_ERR_TLS, format!("caFile {path}: {what}"));
    // Checked before opening: opening a FIFO blocks until a writer comes,
    // and a device such as /dev/zero never ends.
    let regular = |meta: std::fs::Metadata| match meta.file_type().is_file() {
        true => Ok(()),
        false => Err(tls("not a regular file".into())),
    };
    regular(std::fs::metadata(path).map_err(|e| tls(format!("cannot read it: {e}")))?)?;
    let file = std::fs::File::open(path).map_err(|e| tls(format!("cannot read it: {e}")))?;
    // And again on what was opened, in case the path changed in between.
    regular(
        file.metadata()
            .map_err(|e| tls(format!("cannot read it: {e}")))?,
    )?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| tls(format!("cannot read it: {e}")))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(tls(format!(
            "larger than {MAX_CA_FILE_BYTES} bytes: not a PEM bundle of CA certificates"
        )));
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => {
                certs.push(rustls::pki_types::CertificateDer::from(cert.der().to_vec()))
            }
            Ok(_) => {}
            Err(e) => return Err(tls(format!("not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(tls("holds no certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_must_be_a_small_regular_file() {
        for path in ["/dev/zero", "/dev/null", "/tmp", "/nonexistent/ca.pem"] {
            let e = load_ca_file(path).map(|_| ()).expect_err(path);
            assert_eq!(e.status, Status::KUZZLE_ERR_TLS, "{path}");
            assert!(e.message.contains(path), "{}", e.message);
        }
        let dir = std::env::temp_dir().join(format!("libkuzzle-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'A'; MAX_CA_FILE_BYTES as usize + 1]).unwrap();
        let e = load_ca_file(big.to_str().unwrap()).map(|_| ()).unwrap_err();
        assert!(e.message.contains("larger than"), "{}", e.message);
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let e = load_ca_file(empty.to_str().unwrap())
            .map(|_| ())
            .unwrap_err();
        assert!(e.message.contains("no certificate"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A look-alike that answers every connection with `head` and holds it.
    fn lying_server(head: &'static str) -> Config {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut byte = [0u8; 1];
                    let mut seen = Vec::new();
                    while !seen.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1)
                    {
                        seen.push(byte[0]);
                    }
                    let _ = conn.write_all(head.as_bytes());
                    while conn.read(&mut byte).is_ok_and(|n| n == 1) {}
                });
            }
        });
        Config {
            host: "127.0.0.1".into(),
            port,
            timeout: Duration::from_millis(500),
            ..Config::default()
        }
    }

    #[test]
    fn a_claimed_length_is_not_an_allocation() {
        // Within kuzzle_query's bound: waits for bytes that never come.
        let config = lying_server("HTTP/1.1 200 OK\r\nContent-Length: 200000000\r\n\r\n{}");
        let url = format!("{}/_query", config.base_url());
        let t = Transport::new(&config).unwrap();
        let e = t.post_query(&url, b"{}").map(|_| ()).unwrap_err();
        assert_eq!((e.status, e.in_doubt), (Status::KUZZLE_ERR_TIMEOUT, true));
        // Over an mWrite's: refused at once.
        let e = t
            .post_bounded(
                &url,
                b"{}",
                false,
                None,
                Bound::Echo {
                    raw_len: 2,
                    teach: true,
                },
            )
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.id, "libkuzzle.answer_too_large");
        assert!(e.in_doubt);
        // Refused by its status: not in doubt whatever the body.
        let config =
            lying_server("HTTP/1.1 429 Too Many\r\nContent-Length: 1000000000000\r\n\r\n{}");
        let url = format!("{}/_query", config.base_url());
        let t = Transport::new(&config).unwrap();
        let e = t.post_query(&url, b"{}").map(|_| ()).unwrap_err();
        assert_eq!(
            (e.id.as_str(), e.in_doubt),
            ("libkuzzle.answer_too_large", false)
        );
    }

    /// A server that keeps the connection alive after its first answer,
    /// then closes it on the next request without answering (what a proxy
    /// closing an idle connection looks like when the request crosses the
    /// close).
    #[test]
    fn a_pooled_connection_closed_under_a_request_is_told_apart() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let read_head = |conn: &mut std::net::TcpStream| {
                    let mut seen = Vec::new();
                    let mut byte = [0u8; 1];
                    while !seen.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1)
                    {
                        seen.push(byte[0]);
                    }
                    // The body: `{}`.
                    let _ = conn.read_exact(&mut [0u8; 2]);
                };
                read_head(&mut conn);
                let _ = std::io::Write::write_all(
                    &mut conn,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                );
                read_head(&mut conn);
                drop(conn);
            }
        });
        let config = Config {
            host: "127.0.0.1".into(),
            port,
            ..Config::default()
        };
        let url = format!("{}/_query", config.base_url());
        let t = Transport::new(&config).unwrap();
        assert_eq!(t.post_query(&url, b"{}").unwrap().http, 200);
        let e = t.post_query(&url, b"{}").map(|_| ()).unwrap_err();
        assert_eq!((e.id.as_str(), e.in_doubt), (STALE_ID, true), "{e:?}");
        let c = &t.connections;
        assert_eq!(c.opened.load(Ordering::Relaxed), 1);
        assert_eq!(c.reused.load(Ordering::Relaxed), 1);
        // The next one takes a new connection.
        assert_eq!(t.post_query(&url, b"{}").unwrap().http, 200);
        assert_eq!(c.opened.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bounds_follow_the_request() {
        let t = Transport::new(&Config::default()).unwrap();
        // 2 x 1 MB + 512 B x 2,000 documents + 1 MiB.
        assert_eq!(t.echo_margin, 512 * 2000 + (1 << 20));
        assert_eq!(presize_cap(1_000_000), 2_000_000 + (1 << 20));
    }
}
