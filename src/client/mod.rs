//! A connected client: configuration, transport, authentication (login,
//! transparent JWT renewal, logout) and the generic `query`.
//!
//! - `send`: one request through the nodes, failover, the network seam.
//! - `stats`: `kuzzle_client_stats`.

mod send;
mod stats;

use crate::config::{Compression, Config, Credentials, WriteOptions};
use crate::error::{push_json_str, Error, Result, Status};
use crate::mwrite::{self, Engine, Outcome};
use crate::nodes::Pool;
use crate::retry::{self, Backoff, Class};
use crate::secrets;
use crate::transport::{Answer, Bound, Transport};
use send::Auth;
use serde::Deserialize;
use serde_json::value::RawValue;
use stats::Counters;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Renew a JWT this long before Kuzzle would expire it.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

struct Session {
    jwt: String,
    /// When to log in again; None for tokens whose expiry is unknown.
    renew_at: Option<Instant>,
}

pub struct Client {
    pub config: Config,
    transport: Transport,
    /// The nodes, alive or not, and their load.
    pool: Pool,
    counters: Counters,
    /// `config.compression` and `config.concurrency`, settled once
    /// connected.
    settled: OnceLock<Settled>,
    /// The first connection, one thread at a time.
    connecting: Mutex<()>,
    /// The JWT of a `local` login. A mutex, not a RwLock: renewals are rare
    /// and short, reads are a clone of a short string.
    session: Mutex<Option<Session>>,
    /// Random per-client prefix and counter for client-side document ids.
    id_prefix: String,
    id_counter: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Settled {
    compression: Compression,
    concurrency: usize,
}

#[derive(Deserialize)]
struct LoginResult {
    jwt: String,
    #[serde(default)]
    ttl: Option<i64>,
}

impl Client {
    /// Builds the client, logs in when credentials are given and checks that
    /// Kuzzle answers.
    pub fn connect(config: Config) -> Result<Client> {
        let secrets = config.credentials.secrets();
        Client::connect_as_configured(config).map_err(|mut e| {
            e.message = secrets::scrub(&e.message, &secrets).into_owned();
            e
        })
    }

    fn connect_as_configured(config: Config) -> Result<Client> {
        let pool = Pool::new(
            config.node_urls(),
            config.concurrency.is_none(),
            config.concurrency.unwrap_or(CONCURRENCY),
            config.concurrency_max,
        );
        let client = Client {
            transport: Transport::new(&config)?,
            pool,
            counters: Counters::default(),
            settled: OnceLock::new(),
            connecting: Mutex::new(()),
            session: Mutex::new(None),
            id_prefix: random_prefix()?,
            id_counter: AtomicU64::new(0),
            config,
        };
        if !client.config.lazy_connect {
            client.ready()?;
        }
        Ok(client)
    }

    /// Connects once: settles what was left to "auto", then logs in or
    /// checks the token or that Kuzzle answers. At `kuzzle_connect`, or on
    /// first use with `lazyConnect` (again at each use until it succeeds).
    fn ready(&self) -> Result<()> {
        if self.settled.get().is_some() {
            return Ok(());
        }
        let _one_at_a_time = self.connecting.lock().unwrap_or_else(|p| p.into_inner());
        if self.settled.get().is_some() {
            return Ok(());
        }
        let config = &self.config;
        // What was left to "auto", with a loopback host, depends on whether
        // Kuzzle is really on this machine.
        let unsettled = config.compression.is_none() || config.concurrency.is_none();
        let nearby = config.loopback()
            && unsettled
            && nearby(
                &self.transport,
                &self.pool.nodes[0].base_url,
                PROBE_TIMEOUT.min(config.timeout),
            );
        let settled = Settled {
            compression: config.compression.unwrap_or(match nearby {
                true => Compression::None,
                false => Compression::Gzip,
            }),
            concurrency: config.concurrency.unwrap_or(match nearby {
                true => NEARBY_CONCURRENCY,
                false => CONCURRENCY,
            }),
        };
        self.transport
            .accept_gzip
            .store(settled.compression == Compression::Gzip, Ordering::Relaxed);
        match &config.credentials {
            Credentials::Local { .. } => {
                self.login()?;
            }
            Credentials::Token(token) => self.check_token(token)?,
            Credentials::Anonymous => self.check_alive()?,
        }
        if config.concurrency.is_none() {
            self.pool.restart(settled.concurrency);
        }
        let _ = self.settled.set(settled);
        Ok(())
    }

    /// What "auto" settled to; before the first successful connection
    /// (`lazyConnect`, Kuzzle out of reach), what it would be through a
    /// network: requests are then sized for gzip, as for a distant Kuzzle.
    fn settings(&self) -> Settled {
        self.settled.get().copied().unwrap_or(Settled {
            compression: self.config.compression.unwrap_or(Compression::Gzip),
            concurrency: self.config.concurrency.unwrap_or(CONCURRENCY),
        })
    }

    fn check_alive(&self) -> Result<()> {
        // The GET route: anonymous may use it even where it may do nothing
        // else.
        let reply = self.health_check()?;
        if reply.http == 200 {
            Ok(())
        } else {
            match reply.answer() {
                Answer::Error { error, .. } => Err(error),
                Answer::Result(_) => Err(Error::server(
                    reply.http,
                    None,
                    format!("health check answered HTTP {}", reply.http),
                )),
            }
        }
    }

    /// Asks Kuzzle whether an API key or JWT is valid, so a bad one fails at
    /// connect rather than at the first write.
    fn check_token(&self, token: &str) -> Result<()> {
        let mut req =
            String::from(r#"{"controller":"auth","action":"checkToken","body":{"token":"#);
        push_json_str(&mut req, token);
        req.push_str("}}");
        let reply = self.request(req.into_bytes(), false, Bound::Query, Auth::Given(None))?;
        let valid = match reply.answer() {
            Answer::Result(raw) => {
                #[derive(Deserialize)]
                struct Check {
                    valid: bool,
                }
                raw.and_then(|r| serde_json::from_str::<Check>(r.get()).ok())
                    .is_some_and(|c| c.valid)
            }
            Answer::Error { error, .. } => return Err(error),
        };
        if valid {
            Ok(())
        } else {
            Err(Error::server(
                401,
                Some("security.token.invalid"),
                "Kuzzle rejected the apiKey/jwt given in the configuration",
            ))
        }
    }

    /// Logs in with the `local` strategy and stores the JWT.
    fn login(&self) -> Result<String> {
        let Credentials::Local { username, password } = &self.config.credentials else {
            return Err(Error::new(
                Status::KUZZLE_ERR_INTERNAL,
                "login without credentials",
            ));
        };
        let mut req = String::from(
            r#"{"controller":"auth","action":"login","strategy":"local","body":{"username":"#,
        );
        push_json_str(&mut req, username);
        req.push_str(",\"password\":");
        push_json_str(&mut req, password);
        req.push_str("}}");
        let started = Instant::now();
        let reply = self.request(req.into_bytes(), false, Bound::Query, Auth::Given(None))?;
        let login: LoginResult = match reply.answer() {
            Answer::Result(raw) => {
                serde_json::from_str(raw.map_or("null", |r| r.get())).map_err(|_| {
                    Error::server(
                        reply.http,
                        Some("libkuzzle.bad_response"),
                        "login answer has no jwt",
                    )
                })?
            }
            Answer::Error { mut error, .. } => {
                // Kuzzle's message for a bad login never holds the password,
                // but say plainly what failed.
                error.message = format!("login as \"{username}\" failed: {}", error.message);
                return Err(error);
            }
        };
        let renew_at = login.ttl.filter(|ttl| *ttl > 0).map(|ttl| {
            let ttl = Duration::from_millis(ttl as u64);
            // Renew a minute early, or halfway for very short tokens.
            started + ttl.checked_sub(RENEW_MARGIN).unwrap_or(ttl / 2)
        });
        let jwt = login.jwt;
        *self.lock_session() = Some(Session {
            jwt: jwt.clone(),
            renew_at,
        });
        Ok(jwt)
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        // A panic while holding the lock cannot leave a Session half-written.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Bearer token to send, renewing the session when it is due.
    pub fn token(&self) -> Result<Option<String>> {
        match &self.config.credentials {
            Credentials::Anonymous => Ok(None),
            Credentials::Token(t) => Ok(Some(t.clone())),
            Credentials::Local { .. } => {
                {
                    let session = self.lock_session();
                    if let Some(s) = session.as_ref() {
                        if s.renew_at.is_none_or(|at| Instant::now() < at) {
                            return Ok(Some(s.jwt.clone()));
                        }
                    }
                }
                self.login().map(Some)
            }
        }
    }

    /// After Kuzzle refused `used` as expired or invalid: log in again unless
    /// another thread already did. Returns whether a retry makes sense.
    fn renew_after_rejection(&self, used: Option<&str>) -> bool {
        if !matches!(self.config.credentials, Credentials::Local { .. }) {
            return false;
        }
        let current = self.lock_session().as_ref().map(|s| s.jwt.clone());
        if current.as_deref() != used {
            return true;
        }
        self.login().is_ok()
    }

    /// `kuzzle_query`: any Kuzzle API request as JSON; returns its `result`.
    pub fn query(&self, request: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            controller: Option<&'a RawValue>,
            #[serde(borrow)]
            action: Option<&'a RawValue>,
        }
        let head: Head = serde_json::from_str(request)
            .map_err(|e| Error::json(format!("request is not a JSON object: {e}")))?;
        for (name, value) in [("controller", head.controller), ("action", head.action)] {
            match value {
                Some(v) if v.get().starts_with('"') && v.get() != "\"\"" => {}
                _ => {
                    return Err(Error::json(format!(
                        "request needs \"{name}\" as a non-empty string"
                    )))
                }
            }
        }
        // A first use that cannot connect fails here, retried like the
        // request it precedes.
        let mut backoff = Backoff::new(&self.config, Instant::now());
        while let Err(e) = self.ready() {
            if retry::class(&e) != Class::NotRun || !backoff.wait() {
                return Err(self.scrubbed(e));
            }
        }
        let gzip = request.len() > 4096 && self.settings().compression == Compression::Gzip;
        let wire = if gzip {
            let mut packed = Vec::new();
            self.gzip(request.as_bytes(), &mut packed);
            Cow::Owned(packed)
        } else {
            Cow::Borrowed(request.as_bytes())
        };
        // Retried only when Kuzzle certainly did not run the request: any
        // action may be sent, and not every action is idempotent.
        loop {
            let failure = match self.request(wire.to_vec(), gzip, Bound::Query, Auth::Session) {
                Ok(reply) => match reply.answer() {
                    Answer::Result(raw) => return Ok(raw.map_or("null", |r| r.get()).to_string()),
                    Answer::Error { error, .. } => error,
                },
                Err(e) => e,
            };
            if retry::class(&failure) != Class::NotRun || !backoff.wait() {
                return Err(self.scrubbed(failure));
            }
        }
    }

    /// `kuzzle_mwrite`.
    pub fn mwrite(
        &self,
        index: &str,
        collection: &str,
        documents: &str,
        options: &WriteOptions,
    ) -> Result<Outcome> {
        self.run_mwrite(&self.config, |engine| {
            mwrite::mwrite(engine, index, collection, documents, options)
        })
    }

    /// The producer's mWrite (`mwrite::mwrite_checked`): documents its door
    /// checked at acceptance, each document's verdict as a value; one
    /// attempt per request (no retry: the producer retries itself, after
    /// its own pause, and a close must not wait for a backoff).
    pub(crate) fn mwrite_checked(
        &self,
        index: &str,
        collection: &str,
        docs: &[(&str, &str)],
        options: &WriteOptions,
    ) -> Result<Outcome> {
        let config = Config {
            retries: 0,
            ..self.config.clone()
        };
        self.run_mwrite(&config, |engine| {
            mwrite::mwrite_checked(engine, index, collection, docs, options)
        })
    }

    /// One call of the engine with `config`, its documents counted.
    fn run_mwrite(
        &self,
        config: &Config,
        call: impl FnOnce(&Engine) -> Result<Outcome>,
    ) -> Result<Outcome> {
        let secrets = self.secrets();
        // Not connected yet (lazyConnect): the first request connects, and
        // a failure to is that request's, retried and reported as such.
        let _ = self.ready();
        let outcome = call(&self.engine(config, &secrets))?;
        self.counters.documents(&outcome);
        Ok(outcome)
    }

    /// The engine for one mWrite call, with the settings in effect now.
    fn engine<'a>(&'a self, config: &'a Config, secrets: &'a [String]) -> Engine<'a> {
        let settings = self.settings();
        let (concurrency, spread) = match self.config.concurrency {
            Some(fixed) => (fixed, fixed),
            // Requests are cut for the starting concurrency, not for the
            // limits of the moment: a limit that fell would make requests
            // larger, their round trips longer, and the limit fall again.
            None => (
                self.pool.workers(MAX_WORKERS),
                (settings.concurrency * self.pool.nodes.len()).clamp(1, MAX_WORKERS),
            ),
        };
        Engine {
            net: self,
            config,
            compression: settings.compression,
            concurrency,
            spread,
            gzip: &self.transport.gzip,
            id_prefix: &self.id_prefix,
            id_counter: &self.id_counter,
            secrets,
        }
    }

    /// `n` client-side ids (the producer gives them at acceptance): the
    /// prefix and the first counter value.
    pub fn next_ids(&self, n: usize) -> (&str, u64) {
        let first = self.id_counter.fetch_add(n as u64, Ordering::Relaxed);
        (&self.id_prefix, first)
    }

    /// The configured secrets and the session's JWT.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = self.config.credentials.secrets();
        if let Some(s) = self.lock_session().as_ref() {
            secrets.push(s.jwt.clone());
        }
        secrets
    }

    /// `e` with no secret left in its message.
    pub fn scrubbed(&self, mut e: Error) -> Error {
        if let Cow::Owned(clean) = secrets::scrub(&e.message, &self.secrets()) {
            e.message = clean;
        }
        e
    }

    /// Logs out when this client logged in; errors are irrelevant then.
    pub fn logout(&self) {
        let jwt = self.lock_session().take().map(|s| s.jwt);
        if let Some(jwt) = jwt {
            let req = br#"{"controller":"auth","action":"logout"}"#;
            let _ = self.request(req.to_vec(), false, Bound::Query, Auth::Given(Some(&jwt)));
        }
    }

    /// The settings in effect, "auto" settled, as `kuzzle_connect`'s
    /// configuration keys (credentials named, never given).
    pub fn info(&self) -> String {
        let c = &self.config;
        let ms = |d: Duration| d.as_millis() as u64;
        let (auth, username) = match &c.credentials {
            Credentials::Anonymous => ("anonymous", None),
            Credentials::Local { username, .. } => ("local", Some(username.as_str())),
            Credentials::Token(_) => ("token", None),
        };
        serde_json::json!({
            "host": c.host,
            "port": c.port,
            "ssl": c.ssl,
            "auth": auth,
            "username": username,
            // Before the first connection (lazyConnect), "auto" is not
            // settled yet: null.
            "compression": self.settled.get().map(|s| match s.compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
            }).or(c.compression.map(|c| match c {
                Compression::None => "none",
                Compression::Gzip => "gzip",
            })),
            "concurrency": self.settled.get().map(|s| s.concurrency).or(c.concurrency),
            "concurrencyMax": c.concurrency_max,
            "gzipLevel": c.gzip_level.map_or(serde_json::Value::from("auto"), serde_json::Value::from),
            "hosts": self.pool.nodes.iter().map(|n| n.address.as_str()).collect::<Vec<_>>(),
            "lazyConnect": c.lazy_connect,
            "connected": self.settled.get().is_some(),
            "maxRequestBytes": c.max_request_bytes,
            "maxDocumentsPerRequest": c.max_documents_per_request,
            "timeoutMs": ms(c.timeout),
            "connectTimeoutMs": ms(c.connect_timeout),
            "caFile": c.ca_file,
            "tlsVerify": c.tls_verify,
            "retries": c.retries,
            "retryBackoffMs": ms(c.retry_backoff),
            "retryDeadlineMs": ms(c.retry_deadline),
            "generateIds": c.generate_ids,
        })
        .to_string()
    }

    /// `raw` gzip'd into `out`, by one of the client's compressors, for a
    /// query: at the current level, outside the level's choice (which
    /// learns from mWrite exchanges).
    pub fn gzip(&self, raw: &[u8], out: &mut Vec<u8>) {
        self.transport.gzip.compress_aside(raw, out);
    }
}

/// Requests in flight: enough to hide a distant Kuzzle's round trips (8
/// through 50 ms of round trip: up to 1.2x 4 in BENCHMARKS.md), and to keep
/// one on this machine busy, parsing a request while its storage indexes
/// another (2, 4 and 8 measured the same; each more in flight holds a
/// request and its answer in memory).
const CONCURRENCY: usize = 8;
const NEARBY_CONCURRENCY: usize = 4;
/// With "auto", one mWrite call starts at most this many threads, whatever
/// the nodes' limits (64 x 16 at most) add up to.
const MAX_WORKERS: usize = 64;

/// A Kuzzle on this machine answers `server:now` in about a millisecond;
/// through any real link it takes a connection's setup and a round trip at
/// least (100 ms through 50 ms of round trip).
const NEAR: Duration = Duration::from_millis(10);
/// How many times it is asked: a local Kuzzle busy with other writers can
/// be slow to answer once, hardly three times in a row.
const PROBES: usize = 3;
/// An answer slower than that is slow enough to tell: no probe waits longer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// With a loopback host: whether it is Kuzzle itself, or a tunnel, sidecar
/// or proxy to a distant one, told apart by the time an answer takes. Only
/// three slow answers make it distant (at most 0.75 s): taking a local
/// Kuzzle for a distant one costs it gzip and more requests in flight on
/// its own CPU; the other mistake only costs bytes on a short link.
fn nearby(transport: &Transport, base_url: &str, timeout: Duration) -> bool {
    for _ in 0..PROBES {
        let sent = Instant::now();
        // The cheapest action (no storage, no cache); any HTTP answer, a
        // 401 too, times the trip.
        match transport.get(base_url, "/_now", Some(timeout)) {
            Ok(_) if sent.elapsed() < NEAR => return true,
            Ok(_) => {}
            Err(e) if e.status == Status::KUZZLE_ERR_TIMEOUT => {}
            // Nothing to time: the checks that follow report the failure.
            Err(_) => return true,
        }
    }
    false
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` in base 62, written at the end of `buf`.
pub(crate) fn base62(mut n: u64, buf: &mut [u8; 11]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = BASE62[(n % 62) as usize];
        n /= 62;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// 64 random bits from the OS as 11 base-62 characters and a separator.
fn random_prefix() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        Error::new(
            Status::KUZZLE_ERR_INTERNAL,
            format!("no OS randomness for ids: {e}"),
        )
    })?;
    let mut s = String::with_capacity(12);
    let mut n = u64::from_le_bytes(bytes);
    for _ in 0..11 {
        s.push(BASE62[(n % 62) as usize] as char);
        n /= 62;
    }
    s.push('-');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_counter() {
        let mut buf = [0; 11];
        assert_eq!(base62(0, &mut buf), b"0");
        assert_eq!(base62(61, &mut buf), b"z");
        assert_eq!(base62(62, &mut buf), b"10");
        assert_eq!(base62(u64::MAX, &mut buf).len(), 11);
    }

    #[test]
    fn prefixes_differ() {
        let a = random_prefix().unwrap();
        let b = random_prefix().unwrap();
        assert_eq!(a.len(), 12);
        assert_ne!(a, b);
    }
}
