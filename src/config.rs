//! Client configuration (`kuzzle_connect`) and mWrite options, parsed from JSON
//! strictly: an unknown key or a wrong type is an error naming the key, never
//! its value (values may be secrets).

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::time::Duration;

/// Kuzzle's default `server.maxRequestSize` is "1MB" (1,048,576 bytes); stay
/// below it with room for the request envelope.
pub(crate) const DEFAULT_MAX_REQUEST_BYTES: usize = 1_000_000;

/// "auto" concurrency's ceiling per node: each request in flight holds up to
/// `maxRequestBytes` and an answer about as large (about 32 MB at 16 with
/// the default 1 MB), and Kuzzle's own default `limits.concurrentRequests`
/// is 100 for all its clients.
pub(crate) const DEFAULT_CONCURRENCY_MAX: usize = 16;
/// Smallest request size accepted: below that, envelopes would not fit.
pub(crate) const MIN_MAX_REQUEST_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// How the client authenticates.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    Anonymous,
    /// `local` strategy: logs in at connect and again when the JWT expires.
    Local {
        username: String,
        password: String,
    },
    /// An API key or a JWT, sent as a Bearer token as is.
    Token(String),
}

impl Credentials {
    /// What must never appear in an error or a log.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Credentials::Anonymous => Vec::new(),
            Credentials::Local { password, .. } => vec![password.clone()],
            Credentials::Token(token) => vec![token.clone()],
        }
    }
}

// Hand-written so that secrets never reach a log through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Local { username, .. } => write!(f, "Local({username}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// `hosts`: the nodes of a cluster, or entry points to one, as
    /// (host, port); empty: `host` and `port` alone.
    pub hosts: Vec<(String, u16)>,
    pub ssl: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub credentials: Credentials,
    pub max_request_bytes: usize,
    pub max_documents_per_request: usize,
    /// `None`: "auto" with a loopback host, which the client settles at
    /// connect by timing a round trip (`Client::connect`).
    pub compression: Option<Compression>,
    /// `None`: "auto", adaptive per node, starting from what is settled at
    /// connect like `compression`.
    pub concurrency: Option<usize>,
    /// The most requests in flight per node that "auto" may reach.
    pub concurrency_max: usize,
    /// `None`: "auto", chosen by what limits (transport/gzip.rs).
    pub gzip_level: Option<u32>,
    pub ca_file: Option<String>,
    pub tls_verify: bool,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub retry_deadline: Duration,
    pub generate_ids: bool,
    /// Connect (settle "auto", log in) on first use, not in `kuzzle_connect`.
    pub lazy_connect: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "localhost".into(),
            port: 7512,
            hosts: Vec::new(),
            ssl: false,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            credentials: Credentials::Anonymous,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_documents_per_request: 2_000,
            // "auto" with the default host (localhost).
            compression: None,
            concurrency: None,
            concurrency_max: DEFAULT_CONCURRENCY_MAX,
            gzip_level: None,
            ca_file: None,
            tls_verify: true,
            retries: 5,
            retry_backoff: Duration::from_millis(200),
            retry_deadline: Duration::from_secs(120),
            generate_ids: true,
            lazy_connect: false,
        }
    }
}

/// Reads a JSON object's keys one at a time, checking each one's type.
struct Keys<'a> {
    what: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Keys<'a> {
    fn parse(what: &'static str, json: &'a Value) -> Result<Self> {
        match json {
            Value::Object(map) => Ok(Keys { what, map }),
            _ => Err(Error::json(format!("{what} must be a JSON object"))),
        }
    }

    fn ill_typed(&self, key: &str, expected: &str) -> Error {
        Error::invalid(format!("{} key \"{key}\" must be {expected}", self.what))
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.ill_typed(key, "a string")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.ill_typed(key, "true or false")),
        }
    }

    fn uint(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(self.ill_typed(key, &format!("an integer from {min} to {max}"))),
            },
            Some(_) => Err(self.ill_typed(key, "an integer")),
        }
    }

    /// An integer from `min` to `max`, or "auto" (None, as when absent).
    fn uint_or_auto(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
        match self.map.get(key) {
            Some(Value::String(auto)) if auto == "auto" => Ok(None),
            Some(Value::String(_)) => {
                Err(self.ill_typed(key, &format!("\"auto\" or an integer in {min}..={max}")))
            }
            _ => self.uint(key, min, max),
        }
    }

    fn millis(&self, key: &str, min: u64) -> Result<Option<Duration>> {
        Ok(self.uint(key, min, 86_400_000)?.map(Duration::from_millis))
    }

    fn reject_unknown(&self, known: &[&str]) -> Result<()> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Error::invalid(format!(
                "unknown {} key \"{}\" (known keys: {})",
                self.what,
                k,
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

const CONFIG_KEYS: &[&str] = &[
    "host",
    "port",
    "hosts",
    "ssl",
    "timeoutMs",
    "connectTimeoutMs",
    "username",
    "password",
    "apiKey",
    "jwt",
    "maxRequestBytes",
    "maxDocumentsPerRequest",
    "compression",
    "concurrency",
    "concurrencyMax",
    "gzipLevel",
    "caFile",
    "tlsVerify",
    "retries",
    "retryBackoffMs",
    "retryDeadlineMs",
    "generateIds",
    "lazyConnect",
];

impl Config {
    /// Parses `kuzzle_connect`'s configuration JSON.
    pub fn from_json(text: &str) -> Result<Config> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| Error::json(format!("configuration is not valid JSON: {e}")))?;
        let keys = Keys::parse("configuration", &json)?;
        keys.reject_unknown(CONFIG_KEYS)?;
        let mut c = Config::default();
        if let Some(host) = keys.string("host")? {
            c.host = host;
            if !c.uri_parses() {
                return Err(Error::invalid(
                    "configuration key \"host\" must be a host name or an IP address",
                ));
            }
        }
        if let Some(port) = keys.uint("port", 1, 65535)? {
            c.port = port as u16;
        }
        if let Some(hosts) = keys.map.get("hosts") {
            if keys.map.contains_key("host") || keys.map.contains_key("port") {
                return Err(Error::invalid(
                    "configuration keys \"hosts\" and \"host\"/\"port\" exclude each other",
                ));
            }
            c.hosts = parse_hosts(hosts)?;
            (c.host, c.port) = c.hosts[0].clone();
        }
        c.ssl = keys.bool("ssl")?.unwrap_or(c.ssl);
        c.timeout = keys.millis("timeoutMs", 1)?.unwrap_or(c.timeout);
        c.connect_timeout = keys
            .millis("connectTimeoutMs", 1)?
            .unwrap_or(c.connect_timeout);
        c.credentials = credentials(&keys)?;
        if let Some(n) = keys.uint("maxRequestBytes", MIN_MAX_REQUEST_BYTES as u64, 1 << 30)? {
            c.max_request_bytes = n as usize;
        }
        if let Some(n) = keys.uint("maxDocumentsPerRequest", 1, 1_000_000)? {
            c.max_documents_per_request = n as usize;
        }
        c.compression = match keys.string("compression")?.as_deref() {
            // Across a network the link is what limits, and gzip shrinks
            // JSON 5-10x. A loopback address may be Kuzzle itself (bytes
            // cost nothing, gzip costs CPU on both sides) or a tunnel or
            // proxy to a distant one: the client tells them apart.
            None | Some("auto") if c.loopback() => None,
            None | Some("auto") | Some("gzip") => Some(Compression::Gzip),
            Some("none") => Some(Compression::None),
            Some(_) => return Err(keys.ill_typed("compression", "\"auto\", \"gzip\" or \"none\"")),
        };
        if let Some(n) = keys.uint_or_auto("concurrency", 1, 64)? {
            c.concurrency = Some(n as usize);
        }
        if let Some(n) = keys.uint("concurrencyMax", 1, 64)? {
            c.concurrency_max = n as usize;
        }
        c.gzip_level = keys.uint_or_auto("gzipLevel", 1, 9)?.map(|n| n as u32);
        c.ca_file = keys.string("caFile")?;
        c.tls_verify = keys.bool("tlsVerify")?.unwrap_or(true);
        if let Some(n) = keys.uint("retries", 0, 100)? {
            c.retries = n as u32;
        }
        c.retry_backoff = keys.millis("retryBackoffMs", 0)?.unwrap_or(c.retry_backoff);
        c.retry_deadline = keys
            .millis("retryDeadlineMs", 0)?
            .unwrap_or(c.retry_deadline);
        c.generate_ids = keys.bool("generateIds")?.unwrap_or(c.generate_ids);
        c.lazy_connect = keys.bool("lazyConnect")?.unwrap_or(c.lazy_connect);
        Ok(c)
    }

    /// Every node is `localhost` or a loopback address.
    pub fn loopback(&self) -> bool {
        self.nodes().iter().all(|(host, _)| is_loopback(host))
    }

    /// The nodes: `hosts`, or `host` and `port`.
    pub fn nodes(&self) -> Vec<(String, u16)> {
        match self.hosts.is_empty() {
            true => vec![(self.host.clone(), self.port)],
            false => self.hosts.clone(),
        }
    }

    /// Each node's `host:port` and `http(s)://host:port`, in order.
    pub fn node_urls(&self) -> Vec<(String, String)> {
        self.nodes()
            .iter()
            .map(|(host, port)| {
                let address = authority(host, *port);
                let url = format!("{}://{address}", self.scheme());
                (address, url)
            })
            .collect()
    }

    /// The URL of `host` and `port` is one ureq can request: a bare host
    /// (no user, path or query), an IPv6 address when it has a colon.
    fn uri_parses(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        if bare.is_empty()
            || self.host.contains(['/', ' ', '@', '?', '#', '%'])
            || ((bare.contains(':') || self.host.starts_with('['))
                && bare.parse::<std::net::Ipv6Addr>().is_err())
            || (self.host.starts_with('[') != self.host.ends_with(']'))
        {
            return false;
        }
        ureq::http::Uri::try_from(self.base_url()).is_ok_and(|uri| {
            uri.host()
                .is_some_and(|h| h.trim_start_matches('[').trim_end_matches(']') == bare)
        })
    }

    /// `http://host:port` or `https://host:port`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme(), authority(&self.host, self.port))
    }

    fn scheme(&self) -> &'static str {
        match self.ssl {
            true => "https",
            false => "http",
        }
    }
}

/// `host:port`, an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

/// At most this many nodes in `hosts`.
const MAX_HOSTS: usize = 64;

/// `hosts`: a non-empty array of `"host:port"` strings, IPv6 in brackets.
fn parse_hosts(json: &Value) -> Result<Vec<(String, u16)>> {
    let invalid = |what: String| {
        Error::invalid(format!(
            "configuration key \"hosts\" must be an array of 1 to {MAX_HOSTS} \"host:port\" \
             strings (IPv6 in brackets): {what}"
        ))
    };
    let list = match json {
        Value::Array(list) if !list.is_empty() && list.len() <= MAX_HOSTS => list,
        Value::Array(list) => return Err(invalid(format!("{} given", list.len()))),
        _ => return Err(invalid("not an array".into())),
    };
    let mut hosts = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(text) = item else {
            return Err(invalid(format!("{item} is not a string")));
        };
        let shown: String = text.chars().take(100).collect();
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) =>
            {
                (host, port)
            }
            _ => return Err(invalid(format!("\"{shown}\" has no port"))),
        };
        let port = match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(invalid(format!("\"{shown}\" has no valid port"))),
        };
        let node = Config {
            host: host.to_string(),
            port,
            ..Config::default()
        };
        if !node.uri_parses() {
            return Err(invalid(format!("\"{shown}\" has no valid host")));
        }
        if hosts
            .iter()
            .any(|(h, p): &(String, u16)| h == host && *p == port)
        {
            return Err(invalid(format!("\"{shown}\" is given twice")));
        }
        hosts.push((host.to_string(), port));
    }
    Ok(hosts)
}

/// `localhost` or an address of this machine: 127/8 and `::1`, and the
/// unspecified `0.0.0.0` and `::`, which Linux connects to this machine;
/// IPv4 also in the forms `inet_aton` takes (`127.1`, `0`, `0x7f.1`) and
/// mapped into IPv6 (`::ffff:127.0.0.1`).
fn is_loopback(host: &str) -> bool {
    use std::net::IpAddr;
    let local_v4 = |ip: std::net::Ipv4Addr| ip.is_loopback() || ip.is_unspecified();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || match bare.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => local_v4(ip),
            Ok(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => local_v4(v4),
                None => ip.is_loopback() || ip.is_unspecified(),
            },
            Err(_) => inet_aton(bare).is_some_and(local_v4),
        }
}

/// An IPv4 address in any form of `inet_aton(3)`: one to four parts, each
/// decimal, octal (`0` first) or hexadecimal (`0x` first), the last one
/// filling the bytes left (`127.1` is 127.0.0.1, `0` is 0.0.0.0). The name
/// resolver takes these forms, so the host they name is that address.
fn inet_aton(text: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<u64> = text.split('.').map(aton_part).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 {
        return None;
    }
    let last_bits = 32 - 8 * head.len() as u32;
    if head.iter().any(|p| *p > 255) || *last >> last_bits != 0 {
        return None;
    }
    let addr = head.iter().fold(0, |a, p| a << 8 | p) << last_bits | last;
    Some((addr as u32).into())
}

/// One part of an `inet_aton` address.
fn aton_part(part: &str) -> Option<u64> {
    let (digits, radix) = match part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
        None => (part, 10),
    };
    // from_str_radix would take a sign, and u64 any part's 32 bits.
    if digits.is_empty() || digits.len() > 11 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn credentials(keys: &Keys) -> Result<Credentials> {
    let username = keys.string("username")?;
    let password = keys.string("password")?;
    let api_key = keys.string("apiKey")?;
    let jwt = keys.string("jwt")?;
    let given = [
        username.is_some() || password.is_some(),
        api_key.is_some(),
        jwt.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(Error::invalid(
            "give only one of username+password, apiKey or jwt",
        ));
    }
    Ok(match (username, password, api_key.or(jwt)) {
        (Some(username), Some(password), _) => Credentials::Local { username, password },
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(Error::invalid(
                "configuration keys \"username\" and \"password\" go together",
            ))
        }
        (None, None, Some(token)) if token.is_empty() => {
            return Err(Error::invalid("an empty apiKey or jwt is not a token"))
        }
        (None, None, Some(token)) => Credentials::Token(token),
        (None, None, None) => Credentials::Anonymous,
    })
}

/// Options of one `kuzzle_mwrite` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    pub wait_for_refresh: bool,
    pub notify: bool,
    pub strict: bool,
    /// Successes carry each document's `_source` (Kuzzle's echo).
    pub source: bool,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            wait_for_refresh: false,
            notify: false,
            strict: false,
            source: true,
        }
    }
}

impl WriteOptions {
    pub fn from_json(text: Option<&str>) -> Result<WriteOptions> {
        let Some(text) = text else {
            return Ok(WriteOptions::default());
        };
        let json: Value = serde_json::from_str(text)
            .map_err(|e| Error::json(format!("options are not valid JSON: {e}")))?;
        let keys = Keys::parse("options", &json)?;
        keys.reject_unknown(&["waitForRefresh", "notify", "strict", "source"])?;
        Ok(WriteOptions {
            wait_for_refresh: keys.bool("waitForRefresh")?.unwrap_or(false),
            notify: keys.bool("notify")?.unwrap_or(false),
            strict: keys.bool("strict")?.unwrap_or(false),
            source: keys.bool("source")?.unwrap_or(true),
        })
    }
}

/// What a full queue (or spool) does to a new document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room up to `blockTimeoutMs`, then `KUZZLE_ERR_QUEUE_FULL`.
    Block,
    /// `KUZZLE_ERR_QUEUE_FULL` at once.
    Reject,
    /// Make room by failing the oldest documents waiting (a report each);
    /// memory mode only: a spool never drops what it accepted.
    DropOldest,
}

/// When the spool's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolSync {
    /// Each produce returns after an fdatasync (shared by concurrent ones).
    Always,
    /// An fdatasync at most this often.
    Interval(Duration),
    /// When the OS writes back.
    None,
}

/// `kuzzle_producer_open`'s configuration.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub spool_dir: Option<String>,
    pub linger: Duration,
    pub batch_documents: usize,
    pub max_queue_documents: usize,
    pub max_queue_bytes: usize,
    pub when_full: WhenFull,
    pub block_timeout: Duration,
    pub delivery_timeout: Duration,
    pub spool_max_bytes: u64,
    pub spool_segment_bytes: u64,
    pub spool_sync: SpoolSync,
    pub wait_for_refresh: bool,
    pub notify: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            spool_dir: None,
            // librdkafka's linger.ms: enough for companions from a busy
            // sensor loop, too short to notice for a lone reading.
            linger: Duration::from_millis(5),
            batch_documents: 16_000,
            max_queue_documents: 100_000,
            max_queue_bytes: 64 << 20,
            when_full: WhenFull::Block,
            block_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(300),
            spool_max_bytes: 1 << 30,
            spool_segment_bytes: 16 << 20,
            spool_sync: SpoolSync::Interval(Duration::from_secs(1)),
            wait_for_refresh: false,
            notify: false,
        }
    }
}

const PRODUCER_KEYS: &[&str] = &[
    "spoolDir",
    "lingerMs",
    "batchDocuments",
    "maxQueueDocuments",
    "maxQueueBytes",
    "whenFull",
    "blockTimeoutMs",
    "deliveryTimeoutMs",
    "spoolMaxBytes",
    "spoolSegmentBytes",
    "spoolSync",
    "waitForRefresh",
    "notify",
];

impl ProducerConfig {
    /// Parses `kuzzle_producer_open`'s configuration (NULL: every default).
    pub fn from_json(text: Option<&str>) -> Result<ProducerConfig> {
        let mut c = ProducerConfig::default();
        let Some(text) = text else { return Ok(c) };
        let json: Value = serde_json::from_str(text)
            .map_err(|e| Error::json(format!("producer configuration is not valid JSON: {e}")))?;
        let keys = Keys::parse("producer configuration", &json)?;
        keys.reject_unknown(PRODUCER_KEYS)?;
        c.spool_dir = keys.string("spoolDir")?.filter(|d| !d.is_empty());
        c.linger = keys.millis("lingerMs", 0)?.unwrap_or(c.linger);
        if let Some(n) = keys.uint("batchDocuments", 1, 1_000_000)? {
            c.batch_documents = n as usize;
        }
        if let Some(n) = keys.uint("maxQueueDocuments", 1, 100_000_000)? {
            c.max_queue_documents = n as usize;
        }
        if let Some(n) = keys.uint("maxQueueBytes", 1024, 1 << 40)? {
            c.max_queue_bytes = n as usize;
        }
        c.when_full = match keys.string("whenFull")?.as_deref() {
            None | Some("block") => WhenFull::Block,
            Some("reject") => WhenFull::Reject,
            Some("dropOldest") => WhenFull::DropOldest,
            Some(_) => {
                return Err(keys.ill_typed("whenFull", "\"block\", \"reject\" or \"dropOldest\""))
            }
        };
        c.block_timeout = keys.millis("blockTimeoutMs", 0)?.unwrap_or(c.block_timeout);
        c.delivery_timeout = keys
            .millis("deliveryTimeoutMs", 1)?
            .unwrap_or(c.delivery_timeout);
        if let Some(n) = keys.uint("spoolMaxBytes", 1 << 20, 1 << 50)? {
            c.spool_max_bytes = n;
        }
        if let Some(n) = keys.uint("spoolSegmentBytes", 64 << 10, 1 << 30)? {
            c.spool_segment_bytes = n;
        }
        c.spool_sync = match keys.map.get("spoolSync") {
            None | Some(Value::Null) => c.spool_sync,
            Some(Value::String(s)) if s == "always" => SpoolSync::Always,
            Some(Value::String(s)) if s == "none" => SpoolSync::None,
            Some(Value::Number(_)) => SpoolSync::Interval(
                keys.millis("spoolSync", 1)?
                    .unwrap_or(Duration::from_secs(1)),
            ),
            Some(_) => {
                return Err(keys.ill_typed(
                    "spoolSync",
                    "\"always\", \"none\" or an interval in milliseconds",
                ))
            }
        };
        c.wait_for_refresh = keys.bool("waitForRefresh")?.unwrap_or(false);
        c.notify = keys.bool("notify")?.unwrap_or(false);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.base_url(), "http://localhost:7512");
        assert!(c.tls_verify && c.generate_ids);
        assert_eq!(c.compression, None, "auto: loopback, settled at connect");
        let c = Config::from_json(r#"{"host":"kuzzle.example.com"}"#).unwrap();
        assert_eq!(c.compression, Some(Compression::Gzip), "auto: remote");
        let c = Config::from_json(r#"{"host":"127.0.0.1","compression":"gzip"}"#).unwrap();
        assert_eq!(c.compression, Some(Compression::Gzip));
        let c = Config::from_json(
            r#"{"host":"::1","port":7600,"ssl":true,"compression":"none","concurrency":2}"#,
        )
        .unwrap();
        assert_eq!(c.base_url(), "https://[::1]:7600");
        assert_eq!(c.compression, Some(Compression::None));
        assert_eq!(c.concurrency, Some(2));
    }

    #[test]
    fn loopback_in_every_form() {
        for host in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.0.0.2",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0177.0.0.1",
            "2130706433",
            "0",
            "0.0.0.0",
            "::1",
            "[::1]",
            "::",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "::ffff:0.0.0.0",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "kuzzle.example.com",
            "10.0.0.1",
            "128.1",
            "1",
            "127.256.0.1",
            "127.0.0.1.1",
            "1.2.3.4.5.6",
            "127.",
            "0x",
            "+127.1",
            "127.16777216",
            "::ffff:10.0.0.1",
            "::2",
            "fe80::1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        assert_eq!(inet_aton("127.1"), Some([127, 0, 0, 1].into()));
        assert_eq!(inet_aton("10.1.2"), Some([10, 1, 0, 2].into()));
        assert_eq!(inet_aton("0xa.010.0x10.9"), Some([10, 8, 16, 9].into()));
        assert_eq!(inet_aton("4294967295"), Some([255; 4].into()));
        assert_eq!(inet_aton("4294967296"), None);
        assert_eq!(inet_aton("09"), None, "9 is not an octal digit");
    }

    #[test]
    fn hosts_ureq_cannot_request_are_invalid() {
        for host in [
            "",
            "kuz%zle",
            "[::1",
            "::1]",
            "[",
            "a:b",
            "fe80::1%eth0",
            "host/path",
            "user@host",
            "two words",
            "a?b",
            "a#b",
            "[kuzzle]",
            "ho\\st",
            "h\"st",
            "<x>",
        ] {
            let config = serde_json::json!({ "host": host }).to_string();
            let e = Config::from_json(&config).expect_err(host);
            assert_eq!(e.status, Status::KUZZLE_ERR_INVALID_ARGUMENT, "{host}");
            assert!(e.message.contains("\"host\""), "{}", e.message);
        }
        for host in [
            "kuzzle",
            "kuzzle.example.com",
            "10.0.0.1",
            "127.1",
            "::1",
            "[::1]",
            "xn--bcher-kva.example",
            "k_z",
        ] {
            let config = serde_json::json!({ "host": host }).to_string();
            assert!(Config::from_json(&config).is_ok(), "{host}");
        }
    }

    #[test]
    fn unknown_and_ill_typed_keys_are_named() {
        let e = Config::from_json(r#"{"hots":"x"}"#).unwrap_err();
        assert_eq!(e.status, Status::KUZZLE_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("\"hots\""), "{}", e.message);
        let e = Config::from_json(r#"{"port":"7512"}"#).unwrap_err();
        assert!(e.message.contains("\"port\""), "{}", e.message);
        let e = Config::from_json(r#"{"port":70000}"#).unwrap_err();
        assert!(e.message.contains("\"port\""), "{}", e.message);
        let e = Config::from_json("[1]").unwrap_err();
        assert_eq!(e.status, Status::KUZZLE_ERR_JSON);
    }

    #[test]
    fn secrets_stay_out_of_errors_and_debug() {
        let e = Config::from_json(r#"{"password":"s3cr3t-pw"}"#).unwrap_err();
        assert!(!e.message.contains("s3cr3t"));
        let e = Config::from_json(r#"{"apiKey":"s3cr3t-key","jwt":"s3cr3t-jwt"}"#).unwrap_err();
        assert!(!e.message.contains("s3cr3t"));
        let c = Config::from_json(r#"{"username":"u","password":"s3cr3t-pw"}"#).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let c = Config::from_json(r#"{"apiKey":"s3cr3t-key"}"#).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn options() {
        assert_eq!(
            WriteOptions::from_json(None).unwrap(),
            WriteOptions::default()
        );
        let o = WriteOptions::from_json(Some(r#"{"waitForRefresh":true,"strict":true}"#)).unwrap();
        assert!(o.wait_for_refresh && o.strict && !o.notify && o.source);
        let o = WriteOptions::from_json(Some(r#"{"source":false}"#)).unwrap();
        assert!(!o.source && !o.strict);
        let e = WriteOptions::from_json(Some(r#"{"refresh":"wait_for"}"#)).unwrap_err();
        assert_eq!(e.status, Status::KUZZLE_ERR_INVALID_ARGUMENT);
        let e = WriteOptions::from_json(Some(r#"{"notify":1}"#)).unwrap_err();
        assert!(e.message.contains("notify"));
    }
}
