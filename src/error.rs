//! Status codes of the C API and the library's error type.

use std::fmt;

/// What a libkuzzle call returns. Values are part of the ABI: append only,
/// never renumber, never reuse a retired value.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum kuzzle_status {
    /// Everything asked for was done.
    KUZZLE_OK = 0,
    /// The call completed, but some documents were rejected one by one: they are
    /// listed in `errors`, every other document is in `successes`.
    KUZZLE_PARTIAL = 1,
    /// A NULL or non-UTF-8 argument, an empty index/collection name, or an
    /// unknown or ill-typed configuration or option key.
    KUZZLE_ERR_INVALID_ARGUMENT = 2,
    /// A JSON argument is not valid JSON, or not of the expected shape.
    KUZZLE_ERR_JSON = 3,
    /// Kuzzle could not be reached, or the connection broke before an answer.
    KUZZLE_ERR_CONNECTION = 4,
    /// A request got no complete answer in time.
    KUZZLE_ERR_TIMEOUT = 5,
    /// TLS failed: certificate not trusted, handshake error, bad `caFile`.
    KUZZLE_ERR_TLS = 6,
    /// Kuzzle refused the credentials or the token (HTTP 401).
    KUZZLE_ERR_AUTH = 7,
    /// The authenticated user lacks the right for the action (HTTP 403).
    KUZZLE_ERR_FORBIDDEN = 8,
    /// Any other error reported by Kuzzle (its `id` is in the error JSON).
    KUZZLE_ERR_SERVER = 9,
    /// A bug in libkuzzle (a caught panic). Please report it.
    KUZZLE_ERR_INTERNAL = 10,
}

pub use kuzzle_status as Status;

impl Status {
    /// The static, NUL-terminated text of a status, for `kuzzle_status_str`.
    pub fn describe(code: i32) -> &'static str {
        match code {
            0 => "ok\0",
            1 => "partial: some documents were rejected\0",
            2 => "invalid argument\0",
            3 => "invalid JSON\0",
            4 => "connection error\0",
            5 => "timeout\0",
            6 => "TLS error\0",
            7 => "authentication error\0",
            8 => "forbidden\0",
            9 => "server error\0",
            10 => "internal error\0",
            _ => "unknown status\0",
        }
    }

    /// The libkuzzle error id used when Kuzzle gave none.
    pub fn default_id(self) -> &'static str {
        match self {
            Status::KUZZLE_OK => "libkuzzle.ok",
            Status::KUZZLE_PARTIAL => "libkuzzle.partial",
            Status::KUZZLE_ERR_INVALID_ARGUMENT => "libkuzzle.invalid_argument",
            Status::KUZZLE_ERR_JSON => "libkuzzle.invalid_json",
            Status::KUZZLE_ERR_CONNECTION => "libkuzzle.connection",
            Status::KUZZLE_ERR_TIMEOUT => "libkuzzle.timeout",
            Status::KUZZLE_ERR_TLS => "libkuzzle.tls",
            Status::KUZZLE_ERR_AUTH => "libkuzzle.auth",
            Status::KUZZLE_ERR_FORBIDDEN => "libkuzzle.forbidden",
            Status::KUZZLE_ERR_SERVER => "libkuzzle.server",
            Status::KUZZLE_ERR_INTERNAL => "libkuzzle.internal",
        }
    }
}

/// An error of the library or of Kuzzle, as reported to C callers in
/// `{"error":{"status","id","message"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub status: Status,
    /// HTTP status of Kuzzle's answer, 0 when no answer came.
    pub http: u16,
    /// Kuzzle's error id (`security.token.invalid`) or a `libkuzzle.*` id.
    pub id: String,
    pub message: String,
    /// True when the request may have been applied although no answer came:
    /// a retry of documents without `_id` could then duplicate them.
    pub in_doubt: bool,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error {
            status,
            http: 0,
            id: status.default_id().to_string(),
            message: message.into(),
            in_doubt: false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(Status::KUZZLE_ERR_INVALID_ARGUMENT, message)
    }

    pub fn json(message: impl Into<String>) -> Self {
        Error::new(Status::KUZZLE_ERR_JSON, message)
    }

    /// An error answered by Kuzzle, classified by its HTTP status.
    pub fn server(http: u16, id: Option<&str>, message: impl Into<String>) -> Self {
        let status = match http {
            401 => Status::KUZZLE_ERR_AUTH,
            403 => Status::KUZZLE_ERR_FORBIDDEN,
            _ => Status::KUZZLE_ERR_SERVER,
        };
        Error {
            status,
            http,
            id: id.unwrap_or("libkuzzle.server").to_string(),
            message: message.into(),
            in_doubt: false,
        }
    }

    /// The `{"status","id","message"}` object, without the `error` wrapper.
    pub fn to_json_object(&self) -> String {
        let mut out = String::with_capacity(64 + self.message.len());
        out.push_str("{\"status\":");
        out.push_str(&self.http.to_string());
        out.push_str(",\"id\":");
        push_json_str(&mut out, &self.id);
        out.push_str(",\"message\":");
        push_json_str(&mut out, &self.message);
        out.push('}');
        out
    }

    /// `{"error":{...}}`: what a failed call hands back to C.
    pub fn to_json(&self) -> String {
        format!("{{\"error\":{}}}", self.to_json_object())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.id, self.http, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping is exact and cannot fail on a &str.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_text_and_unknown_is_handled() {
        for code in 0..=10 {
            let text = Status::describe(code);
            assert!(text.ends_with('\0') && text.len() > 2, "{code}");
            assert_ne!(text, "unknown status\0");
        }
        assert_eq!(Status::describe(11), "unknown status\0");
        assert_eq!(Status::describe(-1), "unknown status\0");
    }

    #[test]
    fn error_json_escapes_message() {
        let e = Error::server(401, Some("security.token.invalid"), "bad \"token\"\n");
        assert_eq!(e.status, Status::KUZZLE_ERR_AUTH);
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["error"]["status"], 401);
        assert_eq!(v["error"]["id"], "security.token.invalid");
        assert_eq!(v["error"]["message"], "bad \"token\"\n");
    }
}
