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

/// A failure with no answer that may be retried: the connection failed or
/// broke, or time ran out. (Whether the request may have been applied is
/// `Error::in_doubt`, for the caller to weigh.)
pub fn transient(e: &Error) -> bool {
    matches!(
        e.status,
        Status::KUZZLE_ERR_CONNECTION | Status::KUZZLE_ERR_TIMEOUT
    )
}

/// Kuzzle refused the request without running it: overloaded (503) or rate
/// limited (429).
pub fn refused_for_now(http: u16) -> bool {
    matches!(http, 429 | 503)
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
}
