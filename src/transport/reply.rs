//! Kuzzle's answer: the bytes and HTTP status of one response, decoded into
//! either its `result` or a classified [`Error`].

use crate::error::Error;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Kuzzle's answer: the raw bytes and the HTTP status.
pub struct Reply {
    pub http: u16,
    /// The answer is `buf[..len]`; the rest is initialised spare room, kept
    /// so that a recycled buffer is not zeroed again before each read.
    pub(super) buf: Vec<u8>,
    pub(super) len: usize,
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

/// An answer that is not Kuzzle's leaves the request in doubt when its
/// status says it may have run: a 2xx, or a 5xx from a proxy or load
/// balancer in front of Kuzzle (it may have forwarded the request before
/// failing). A 3xx or 4xx of a proxy means it forwarded nothing.
fn foreign_in_doubt(http: u16) -> bool {
    !(300..500).contains(&http)
}

impl Reply {
    // For the engine's scripted replies and tests.
    #[allow(dead_code)]
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
    ///
    /// `in_doubt` of the error: Kuzzle's own errors (its envelope, with an
    /// error id) are its verdict, conclusive; so is any 429 (rate limited
    /// before running). An answer without Kuzzle's error id, such as a load
    /// balancer's bare HTML 503, is `libkuzzle.bad_gateway` when its status
    /// is 5xx, and leaves the request in doubt (see `foreign_in_doubt`).
    /// Kuzzle's own 503s that refuse a request before running it carry the
    /// ids `api.process.overloaded`, `api.process.shutting_down`,
    /// `api.process.not_enough_nodes` and `network.entrypoint.shutting_down`
    /// (Kuzzle 2.56's lib/kerror/codes): they are conclusive like any other.
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
                let message = format!("HTTP {}: unexpected answer ({e}): {snippet}", self.http);
                return Answer::Error {
                    error: self.foreign(message),
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
        let error = match id {
            Some(id) => Error::server(http, Some(&id), message),
            // Kuzzle always names its errors: this one is not Kuzzle's.
            None => self.foreign(format!("HTTP {}: {message}", self.http)),
        };
        Answer::Error { error, details }
    }

    /// The error for an answer that is not Kuzzle's envelope.
    fn foreign(&self, message: String) -> Error {
        let (http, id) = match self.http {
            0..=399 => (502, "libkuzzle.bad_response"),
            429 => (429, "libkuzzle.rate_limited"),
            500.. => (self.http, "libkuzzle.bad_gateway"),
            _ => (self.http, "libkuzzle.bad_response"),
        };
        let mut error = Error::server(http, Some(id), message);
        error.in_doubt = self.http != 429 && foreign_in_doubt(self.http);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    fn reply(http: u16, body: &str) -> Reply {
        Reply::new(http, body.as_bytes().to_vec())
    }

    fn error_of(r: &Reply) -> Error {
        match r.answer() {
            Answer::Error { error, .. } => error,
            Answer::Result(_) => panic!("HTTP {} decoded as a result", r.http),
        }
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
        let error = error_of(&r);
        assert_eq!(error.http, 413);
        assert_eq!(error.id, "network.http.request_too_large");
        assert_eq!(error.status, Status::KUZZLE_ERR_SERVER);
        assert!(!error.in_doubt);
    }

    #[test]
    fn enveloped_error_and_garbage() {
        let r = reply(
            401,
            r#"{"status":401,"error":{"id":"security.token.invalid","message":"Invalid token."},"result":null}"#,
        );
        let error = error_of(&r);
        assert!(error.status == Status::KUZZLE_ERR_AUTH && error.id == "security.token.invalid");
        assert!(!error.in_doubt);
        let error = error_of(&reply(502, "<html>bad gateway</html>"));
        assert_eq!(
            (error.http, error.id.as_str()),
            (502, "libkuzzle.bad_gateway")
        );
        assert!(error.message.contains("bad gateway") && error.in_doubt);
    }

    #[test]
    fn a_proxy_5xx_is_in_doubt_and_kuzzle_s_own_is_not() {
        for http in [500, 502, 503, 504] {
            let error = error_of(&reply(
                http,
                "<html><body>Service Unavailable</body></html>",
            ));
            assert_eq!(error.http, http);
            assert_eq!(error.id, "libkuzzle.bad_gateway");
            assert_eq!(error.status, Status::KUZZLE_ERR_SERVER);
            assert!(error.in_doubt, "{http}");
            // JSON, but not Kuzzle's: no error id.
            let error = error_of(&reply(http, r#"{"message":"upstream timed out"}"#));
            assert!(
                error.id == "libkuzzle.bad_gateway" && error.in_doubt,
                "{http}"
            );
            let error = error_of(&reply(http, r#"{"error":{"message":"x"}}"#));
            assert!(
                error.id == "libkuzzle.bad_gateway" && error.in_doubt,
                "{http}"
            );
        }
        for id in [
            "api.process.overloaded",
            "api.process.shutting_down",
            "network.entrypoint.shutting_down",
        ] {
            let body = format!(
                r#"{{"status":503,"error":{{"id":"{id}","message":"busy","status":503}},"result":null}}"#
            );
            let error = error_of(&reply(503, &body));
            assert_eq!((error.http, error.id.as_str()), (503, id));
            assert!(!error.in_doubt, "{id}");
        }
        // Kuzzle's own 500 is its verdict too.
        let r = reply(
            500,
            r#"{"status":500,"error":{"id":"core.fatal.unexpected_error","message":"x"}}"#,
        );
        assert!(!error_of(&r).in_doubt);
    }

    #[test]
    fn any_429_is_not_run() {
        let error = error_of(&reply(429, "Too Many Requests"));
        assert_eq!(error.http, 429);
        assert!(!error.in_doubt);
        let r = reply(
            429,
            r#"{"status":429,"error":{"id":"api.process.too_many_requests","message":"x"}}"#,
        );
        assert!(!error_of(&r).in_doubt);
    }

    #[test]
    fn garbage_with_a_success_status_is_in_doubt() {
        let error = error_of(&reply(200, "<html>hello</html>"));
        assert_eq!(
            (error.http, error.id.as_str()),
            (502, "libkuzzle.bad_response")
        );
        assert!(error.in_doubt, "a 2xx may have run");
        // A proxy's 3xx or 4xx forwarded nothing.
        for http in [302, 400, 404] {
            let error = error_of(&reply(http, "<html>nope</html>"));
            assert_eq!(error.id, "libkuzzle.bad_response");
            assert!(!error.in_doubt, "{http}");
        }
    }
}
