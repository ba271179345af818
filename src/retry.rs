//! When and how long to wait before trying a request again: exponential
//! backoff with jitter, bounded by `retries` and `retryDeadlineMs`.

use crate::config::Config;
use crate::error::{Error, Status};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Backoff never waits longer than this between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct Backoff<'a> {
    config: &'a Config,
    /// The deadline counts from here (the start of the user's call).
    started: Instant,
    attempt: u32,
    seed: u64,
}

impl<'a> Backoff<'a> {
    pub fn new(config: &'a Config, started: Instant) -> Self {
        // Random per call: gateways that lost the same server spread out.
        let seed = RandomState::new().hash_one(started) | 1;
        Backoff {
            config,
            started,
            attempt: 0,
            seed,
        }
    }

    /// The pause before the next attempt, or None when retries are spent.
    pub fn next_pause(&mut self) -> Option<Duration> {
        if self.attempt >= self.config.retries {
            return None;
        }
        let exp = self
            .config
            .retry_backoff
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(MAX_BACKOFF);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        // Jitter in [exp/2, exp].
        let wait = exp.mul_f64(0.5 + (self.seed % 1000) as f64 / 2000.0);
        if self.started.elapsed() + wait > self.config.retry_deadline {
            return None;
        }
        self.attempt += 1;
        Some(wait)
    }

    /// Counts an attempt without its pause (another node takes it); false
    /// when retries are spent.
    pub fn skip(&mut self) -> bool {
        if self.attempt >= self.config.retries
            || self.started.elapsed() > self.config.retry_deadline
        {
            return false;
        }
        self.attempt += 1;
        true
    }

    /// Waits for the next attempt; false when retries are spent.
    pub fn wait(&mut self) -> bool {
        match self.next_pause() {
            Some(d) => {
                std::thread::sleep(d);
                true
            }
            None => false,
        }
    }
}

/// What a failed request means for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Certainly not run: connection refused, a request not written whole,
    /// Kuzzle's own "overloaded", "shutting down" or "not enough nodes"
    /// 503, any 429. Anything may be sent again.
    NotRun,
    /// Sent, and no conclusive answer: a reset or timeout after the
    /// request was written, a 502/503/504 without Kuzzle's error envelope
    /// (a proxy's: it may have forwarded the request). Only what cannot be
    /// applied twice may be sent again: documents with an `_id`.
    InDoubt,
    /// Anything else: Kuzzle's verdict, or a failure a retry cannot mend.
    Final,
}

/// Kuzzle's 503 ids for a request refused before it ran.
const REFUSED_IDS: [&str; 4] = [
    "api.process.overloaded",
    "api.process.shutting_down",
    "api.process.not_enough_nodes",
    "network.entrypoint.shutting_down",
];

/// How a failure of one request is retried. `e.http` 0: no HTTP answer
/// (then `e.in_doubt` tells whether the request was written whole).
pub fn class(e: &Error) -> Class {
    match e.http {
        0 => match e.status {
            Status::KUZZLE_ERR_CONNECTION | Status::KUZZLE_ERR_TIMEOUT if e.in_doubt => {
                Class::InDoubt
            }
            Status::KUZZLE_ERR_CONNECTION | Status::KUZZLE_ERR_TIMEOUT => Class::NotRun,
            _ => Class::Final,
        },
        429 => Class::NotRun,
        503 if REFUSED_IDS.contains(&e.id.as_str()) => Class::NotRun,
        502..=504 if e.in_doubt => Class::InDoubt,
        _ => Class::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stops() {
        let config = Config {
            retries: 4,
            retry_backoff: Duration::from_millis(100),
            ..Config::default()
        };
        let mut b = Backoff::new(&config, Instant::now());
        let waits: Vec<Duration> = std::iter::from_fn(|| b.next_pause()).collect();
        assert_eq!(waits.len(), 4);
        for (i, w) in waits.iter().enumerate() {
            let exp = Duration::from_millis(100 << i);
            assert!(*w >= exp / 2 && *w <= exp, "{i}: {w:?}");
        }
        let config = Config {
            retry_deadline: Duration::ZERO,
            ..config
        };
        assert!(Backoff::new(&config, Instant::now()).next_pause().is_none());
    }

    #[test]
    fn classes_follow_what_kuzzle_means() {
        let mut refused = Error::new(Status::KUZZLE_ERR_CONNECTION, "refused");
        assert_eq!(class(&refused), Class::NotRun);
        refused.in_doubt = true;
        assert_eq!(class(&refused), Class::InDoubt);
        let tls = Error::new(Status::KUZZLE_ERR_TLS, "bad certificate");
        assert_eq!(class(&tls), Class::Final);
        let overloaded = Error::server(503, Some("api.process.overloaded"), "busy");
        assert_eq!(class(&overloaded), Class::NotRun);
        let mut bare = Error::server(503, Some("libkuzzle.bad_gateway"), "<html>");
        bare.in_doubt = true;
        assert_eq!(class(&bare), Class::InDoubt);
        bare.http = 504;
        assert_eq!(class(&bare), Class::InDoubt);
        let limited = Error::server(429, None, "slow down");
        assert_eq!(class(&limited), Class::NotRun);
        let rejected = Error::server(400, Some("api.assert.invalid_argument"), "no");
        assert_eq!(class(&rejected), Class::Final);
        let kuzzle_500 = Error::server(500, Some("services.storage.unexpected_error"), "x");
        assert_eq!(class(&kuzzle_500), Class::Final);
    }
}
