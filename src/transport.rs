//! HTTP transport to Kuzzle: one `POST /_query` route for every API action,
//! bodies always sent with a Content-Length (Kuzzle shuts itself down on an
//! oversized chunked body), gzip both ways, answers decoded into either a
//! result or a classified [`Error`].

use crate::config::Config;
use crate::error::{Error, Result, Status};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};

/// Responses echo every document: allow large ones, but not unbounded.
const MAX_RESPONSE_BYTES: u64 = 4 << 30;
/// The most reserved up front for an answer, whatever its headers claim.
const MAX_HINT_BYTES: u64 = 64 << 20;
/// ureq's read and write buffers, per connection.
const IO_BUFFER_BYTES: usize = 32 * 1024;
/// gzip level 2: with zlib-rs, sensor JSON shrinks ~6.8x (level 3: ~8.9x)
/// at 1.3x level 3's speed, text 3.8x (3.9x) at 1.4x; level 1 is zlib-rs's
/// "quick" strategy, faster still but 2.7x on text, which costs more on a
/// slow uplink than it saves (BENCHMARKS.md).
const GZIP_LEVEL: u32 = 2;

/// Kuzzle's answer: the raw bytes and the HTTP status.
pub struct Reply {
    pub http: u16,
    /// The answer is `buf[..len]`; the rest is initialised spare room, kept
    /// so that a recycled buffer is not zeroed again before each read.
    buf: Vec<u8>,
    len: usize,
}

/// The parts of Kuzzle's response envelope the library reads. A few errors
/// (413 request too large) come as a bare error object instead: its `id` and
/// `message` then sit at the top level.
#[derive(Deserialize)]
struct Envelope<'a, T> {
    #[serde(default = "Option::default")]
    result: Option<T>,
    #[serde(borrow, default)]
    error: Option<KuzzleError<'a>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct KuzzleError<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Per-document errors of `api.process.incomplete_multiple_request`.
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
}

/// A decoded answer: Kuzzle's `result` (None when it sent none) or its error.
pub enum Answer<'a, T> {
    Result(Option<T>),
    Error {
        error: Error,
        /// Per-document errors Kuzzle attached to the error, if any.
        details: Option<&'a RawValue>,
    },
}

impl Reply {
    pub fn new(http: u16, body: Vec<u8>) -> Reply {
        let len = body.len();
        Reply {
            http,
            buf: body,
            len,
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The buffer, for the next read.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Decodes Kuzzle's envelope with `result` as raw JSON.
    pub fn answer(&self) -> Answer<'_, &RawValue> {
        self.decode()
    }

    /// Decodes Kuzzle's envelope, parsing `result` as `T` in the same pass.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Answer<'a, T> {
        // Validate UTF-8 once for the whole body: borrowed raw values
        // parsed from a &str need no further check each.
        let parsed = std::str::from_utf8(self.body())
            .map_err(serde::de::Error::custom)
            .and_then(serde_json::from_str::<Envelope<T>>);
        let env: Envelope<T> = match parsed {
            Ok(env) => env,
            Err(e) => {
                let text = String::from_utf8_lossy(self.body());
                let snippet: String = text.chars().take(200).collect();
                return Answer::Error {
                    error: Error::server(
                        if self.http < 400 { 502 } else { self.http },
                        Some("libkuzzle.bad_response"),
                        format!("HTTP {}: unexpected answer ({e}): {snippet}", self.http),
                    ),
                    details: None,
                };
            }
        };
        let (id, message, details) = match env.error {
            Some(e) => (e.id, e.message, e.errors),
            None if self.http >= 400 => (env.id, env.message, None),
            None => return Answer::Result(env.result),
        };
        let http = if self.http < 400 { 500 } else { self.http };
        let message = message.unwrap_or_else(|| format!("Kuzzle answered HTTP {http}"));
        Answer::Error {
            error: Error::server(http, id.as_deref(), message),
            details,
        }
    }
}

/// How long a host name's addresses are kept (libcurl's DNS cache default).
const DNS_CACHE_TTL: Duration = Duration::from_secs(60);

/// ureq's resolver starts a thread for every lookup (to bound it by the
/// timeout), and Kuzzle closes every connection, so that would be a thread
/// per request: a tenth of the client's CPU in a bulk write. An IP address
/// needs no lookup, and a name is looked up once a minute at most (libcurl
/// keeps names as long), again after a request that failed; successive
/// connections take its addresses in turn, as fresh lookups of a
/// round-robin name would.
#[derive(Debug, Default)]
struct CachingResolver {
    lookup: DefaultResolver,
    cache: Arc<DnsCache>,
}

/// The last name looked up: `host:port`, when, its addresses, and how many
/// times they were handed out.
#[derive(Debug, Default)]
pub struct DnsCache(Mutex<Option<DnsEntry>>);

type DnsEntry = (String, Instant, ResolvedSocketAddrs, usize);

impl DnsCache {
    /// The entry; a thread that panicked holding it left it whole.
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DnsEntry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self) {
        *self.lock() = None;
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ResolvedSocketAddrs, ureq::Error> {
        let port = match (uri.scheme_str(), uri.port_u16()) {
            (_, Some(port)) => port,
            (Some("http"), None) => 80,
            (Some("https"), None) => 443,
            // Other schemes (a proxy's) keep ureq's own rules.
            _ => return self.lookup.resolve(uri, config, timeout),
        };
        let host = uri.host().unwrap_or_default();
        // `[::1]` keeps its brackets in a URI.
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        let key = format!("{host}:{port}");
        let mut cache = self.cache.lock();
        if let Some((k, at, addrs, used)) = cache.as_mut() {
            if *k == key && at.elapsed() < DNS_CACHE_TTL {
                let mut addrs = addrs.clone();
                let turn = *used % addrs.len().max(1);
                *used += 1;
                addrs.rotate_left(turn);
                return Ok(addrs);
            }
        }
        // Not under the lock: a slow lookup must not hold up other threads.
        drop(cache);
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        cache = self.cache.lock();
        *cache = Some((key, Instant::now(), addrs.clone(), 1));
        Ok(addrs)
    }
}

pub struct Transport {
    agent: ureq::Agent,
    pub gzip: GzipPool,
    /// Ask Kuzzle for gzip answers: with compression, both ways. Set by
    /// `Client::connect` once "auto" is settled.
    pub accept_gzip: bool,
    dns: Arc<DnsCache>,
    query_url: String,
    base_url: String,
}

impl Transport {
    pub fn new(config: &Config) -> Result<Transport> {
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(!config.tls_verify);
        if let Some(path) = &config.ca_file {
            tls = tls.root_certs(load_ca_file(path)?);
        }
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Asked per request (`accept_gzip`): ureq inflates an answer
            // by its Content-Encoding, whoever asked for it.
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
            .tls_config(tls.build())
            .build();
        let resolver = CachingResolver::default();
        let dns = resolver.cache.clone();
        let agent = ureq::Agent::with_parts(
            agent_config,
            ureq::unversioned::transport::DefaultConnector::new(),
            resolver,
        );
        let base_url = config.base_url();
        Ok(Transport {
            agent,
            gzip: GzipPool::default(),
            accept_gzip: false,
            dns,
            query_url: format!("{base_url}/_query"),
            base_url,
        })
    }

    /// Posts one Kuzzle request (a JSON object, possibly gzip-encoded) to
    /// `/_query` and reads the answer. `Err` only when no complete HTTP
    /// answer came.
    pub fn post_query(&self, body: &[u8], gzip: bool, token: Option<&str>) -> Result<Reply> {
        self.post(body, gzip, token)?.read(Vec::new())
    }

    /// Sends the request; its answer is read later, so that the buffer that
    /// held the request can take it.
    pub fn post(&self, body: &[u8], gzip: bool, token: Option<&str>) -> Result<Pending<'_>> {
        let mut req = self
            .agent
            .post(&self.query_url)
            .header("content-type", "application/json");
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        if self.accept_gzip {
            req = req.header("accept-encoding", "gzip");
        }
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        // A byte slice has a known size: ureq sends it with a Content-Length.
        self.pending(req.send(body))
    }

    /// A GET on a path that needs no authentication (health probe), within
    /// `timeout` if given, else the configured one.
    pub fn get(&self, path: &str, timeout: Option<Duration>) -> Result<Reply> {
        let mut req = self.agent.get(format!("{}{path}", self.base_url));
        if timeout.is_some() {
            req = req.config().timeout_global(timeout).build();
        }
        self.pending(req.call())?.read(Vec::new())
    }

    /// A request that failed, sending or reading, makes the next one look
    /// the name up again, in case Kuzzle moved.
    fn pending(
        &self,
        sent: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Pending<'_>> {
        match sent {
            Ok(response) => Ok(Pending::Unread(response, &self.dns)),
            Err(e) => {
                self.dns.forget();
                Err(classify(e))
            }
        }
    }
}

/// An answer whose status and headers came in: its body not read yet, or
/// already read.
pub enum Pending<'t> {
    Unread(ureq::http::Response<ureq::Body>, &'t DnsCache),
    Read(Reply),
}

impl Pending<'_> {
    pub fn http(&self) -> u16 {
        match self {
            Pending::Unread(response, _) => response.status().as_u16(),
            Pending::Read(reply) => reply.http,
        }
    }

    /// The answer, read into `buffer` (its contents overwritten, its
    /// capacity reused).
    pub fn read(self, buffer: Vec<u8>) -> Result<Reply> {
        match self {
            Pending::Unread(response, dns) => {
                read_reply(response, buffer).inspect_err(|_| dns.forget())
            }
            Pending::Read(reply) => Ok(reply),
        }
    }
}

fn read_reply(mut response: ureq::http::Response<ureq::Body>, mut buf: Vec<u8>) -> Result<Reply> {
    use std::io::{ErrorKind, Read};
    let http = response.status().as_u16();
    // Size the buffer from Content-Length rather than let it double its way
    // up: every doubling is a copy and fresh pages to fault in, for answers
    // of megabytes. (ureq gives no length while it inflates gzip: the
    // recycled buffer serves then.)
    let hint = response
        .body()
        .content_length()
        .unwrap_or(0)
        .min(MAX_HINT_BYTES) as usize;
    if buf.len() <= hint {
        buf.resize(hint + 1, 0);
    }
    // Read into the buffer's initialised bytes, not `read_to_end`, which
    // zeroes the spare capacity of a recycled buffer again on every call.
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .reader();
    let mut len = 0;
    loop {
        if len == buf.len() {
            // Zeroed in steps of a quarter, so that an answer of unknown
            // length (gzip) leaves no large zeroed tail to fault in: the
            // buffer comes holding its request, and the answer is ~1.3x
            // that. The Vec still doubles its capacity underneath.
            let step = (buf.len() / 4).clamp(16 * 1024, 1 << 20);
            buf.resize(buf.len() + step, 0);
        }
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let mut e = classify(ureq::Error::from(e));
                e.in_doubt = true; // the request was answered, so it was received
                return Err(e);
            }
        }
    }
    Ok(Reply { http, buf, len })
}

fn load_ca_file(path: &str) -> Result<ureq::tls::RootCerts> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::new(
            Status::KUZZLE_ERR_TLS,
            format!("cannot read caFile {path}: {e}"),
        )
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::new(
                    Status::KUZZLE_ERR_TLS,
                    format!("caFile {path} is not valid PEM: {e}"),
                ))
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::new(
            Status::KUZZLE_ERR_TLS,
            format!("caFile {path} holds no certificate"),
        ));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// Maps a transport failure to a status, and tells whether the request may
/// have reached Kuzzle (`in_doubt`): failures while connecting are certain
/// not to have; anything after the first byte was sent may have.
fn classify(e: ureq::Error) -> Error {
    use std::io::ErrorKind;
    use ureq::Timeout;
    let (status, in_doubt) = match &e {
        ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => {
            (Status::KUZZLE_ERR_TIMEOUT, false)
        }
        ureq::Error::Timeout(_) => (Status::KUZZLE_ERR_TIMEOUT, true),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            (Status::KUZZLE_ERR_CONNECTION, false)
        }
        ureq::Error::Tls(_) | ureq::Error::Pem(_) | ureq::Error::Rustls(_) => {
            (Status::KUZZLE_ERR_TLS, false)
        }
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound => {
                (Status::KUZZLE_ERR_CONNECTION, false)
            }
            ErrorKind::TimedOut | ErrorKind::WouldBlock => (Status::KUZZLE_ERR_TIMEOUT, true),
            _ if is_tls_io(io) => (Status::KUZZLE_ERR_TLS, false),
            _ => (Status::KUZZLE_ERR_CONNECTION, true),
        },
        _ => (Status::KUZZLE_ERR_CONNECTION, true),
    };
    let mut err = Error::new(status, e.to_string());
    err.in_doubt = in_doubt;
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

/// A gzip compressor kept from one request to the next: a new deflate state
/// is ~380 KB to allocate and fault in, for each request otherwise.
pub struct Gzip(flate2::Compress);

impl Default for Gzip {
    fn default() -> Gzip {
        Gzip(flate2::Compress::new(
            flate2::Compression::new(GZIP_LEVEL),
            false,
        ))
    }
}

/// Compressors shared by a client's threads. Compressing a request takes a
/// millisecond where sending it takes many: a few serve every worker, and
/// fewer states stay in memory than one per worker (3 MB for 8).
#[derive(Default)]
pub struct GzipPool(Mutex<Vec<Gzip>>);

/// Compressors kept at most: more at once (many threads sharing a client)
/// get one each, dropped after use.
const POOL_SIZE: usize = 4;

impl GzipPool {
    /// `raw` as a gzip member, into `out` (emptied first).
    pub fn compress(&self, raw: &[u8], out: &mut Vec<u8>) {
        // A compressor is whole between calls, even after a panic.
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut gzip = lock().pop().unwrap_or_default();
        gzip.compress(raw, out);
        let mut pool = lock();
        if pool.len() < POOL_SIZE {
            pool.push(gzip);
        }
    }
}

/// gzip's header (RFC 1952) without name, time or flags; OS "unknown".
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

impl Gzip {
    /// `raw` as a gzip member, into `out` (emptied first).
    pub fn compress(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(raw.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        let deflate = &mut self.0;
        deflate.reset();
        loop {
            let done = deflate.total_in() as usize;
            match deflate.compress_vec(&raw[done..], out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => break,
                // Out of room: more, and go on.
                Ok(_) => out.reserve(out.capacity() / 2 + 1024),
                // Deflating into memory only fails on a misuse of the stream.
                Err(e) => unreachable!("deflate: {e}"),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(raw);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE: the length modulo 2^32.
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(http: u16, body: &str) -> Reply {
        Reply::new(http, body.as_bytes().to_vec())
    }

    #[test]
    fn envelope_result() {
        let r = reply(200, r#"{"status":200,"error":null,"result":{"a":1}}"#);
        match r.answer() {
            Answer::Result(raw) => assert_eq!(raw.unwrap().get(), r#"{"a":1}"#),
            Answer::Error { error, .. } => panic!("{error}"),
        }
        let r = reply(200, r#"{"status":200,"error":null}"#);
        assert!(matches!(r.answer(), Answer::Result(None)));
    }

    #[test]
    fn bare_error_object_413() {
        let r = reply(
            413,
            r#"{"message":"Maximum HTTP request size exceeded","status":413,"id":"network.http.request_too_large","code":1}"#,
        );
        match r.answer() {
            Answer::Error { error, .. } => {
                assert_eq!(error.http, 413);
                assert_eq!(error.id, "network.http.request_too_large");
                assert_eq!(error.status, Status::KUZZLE_ERR_SERVER);
            }
            Answer::Result(_) => panic!("413 is an error"),
        }
    }

    #[test]
    fn enveloped_error_and_garbage() {
        let r = reply(
            401,
            r#"{"status":401,"error":{"id":"security.token.invalid","message":"Invalid token."},"result":null}"#,
        );
        assert!(
            matches!(r.answer(), Answer::Error { error, .. } if error.status == Status::KUZZLE_ERR_AUTH && error.id == "security.token.invalid")
        );
        let r = reply(502, "<html>bad gateway</html>");
        assert!(
            matches!(r.answer(), Answer::Error { error, .. } if error.http == 502 && error.message.contains("bad gateway"))
        );
    }

    #[test]
    fn gzip_roundtrip() {
        use std::io::Read;
        let mut packer = Gzip::default();
        let mut packed = Vec::new();
        // Reused, and with outputs larger than first reserved (noise).
        for raw in [
            br#"{"documents":[{"body":{"t":21.5}}]}"#.repeat(100),
            Vec::new(),
            (0..300_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
            br#"{"a":1}"#.to_vec(),
        ] {
            packer.compress(&raw, &mut packed);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, raw);
            if raw.starts_with(b"{\"documents") {
                assert!(packed.len() < raw.len() / 10);
            }
        }
        let pool = GzipPool::default();
        pool.compress(b"x", &mut packed);
        assert_eq!(packed[..10], GZIP_HEADER);
    }
}
