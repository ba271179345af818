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
    /// A producer's queue (or spool) has no room: `whenFull` said reject,
    /// or `blockTimeoutMs` passed.
    KUZZLE_ERR_QUEUE_FULL = 11,
    /// A producer's spool cannot be used: locked by another producer, an
    /// I/O error, or a format this version does not read.
    KUZZLE_ERR_SPOOL = 12,
}

pub use kuzzle_status as Status;

/// One line of the status table.
pub(crate) struct StatusRow {
    pub status: Status,
    /// For `kuzzle_status_str`: static and NUL-terminated.
    pub text: &'static str,
    /// The error id when Kuzzle gave none.
    pub id: &'static str,
}

/// Every status, indexed by its value: the one place that gives each its
/// text and error id (the order is checked below, and a test checks that
/// none is missing).
pub(crate) const STATUSES: [StatusRow; 13] = {
    const fn row(status: Status, text: &'static str, id: &'static str) -> StatusRow {
        StatusRow { status, text, id }
    }
    use Status::*;
    [
        row(KUZZLE_OK, "ok\0", "libkuzzle.ok"),
        row(
            KUZZLE_PARTIAL,
            "partial: some documents were rejected\0",
            "libkuzzle.partial",
        ),
        row(
            KUZZLE_ERR_INVALID_ARGUMENT,
            "invalid argument\0",
            "libkuzzle.invalid_argument",
        ),
        row(KUZZLE_ERR_JSON, "invalid JSON\0", "libkuzzle.invalid_json"),
        row(
            KUZZLE_ERR_CONNECTION,
            "connection error\0",
            "libkuzzle.connection",
        ),
        row(KUZZLE_ERR_TIMEOUT, "timeout\0", "libkuzzle.timeout"),
        row(KUZZLE_ERR_TLS, "TLS error\0", "libkuzzle.tls"),
        row(KUZZLE_ERR_AUTH, "authentication error\0", "libkuzzle.auth"),
        row(KUZZLE_ERR_FORBIDDEN, "forbidden\0", "libkuzzle.forbidden"),
        row(KUZZLE_ERR_SERVER, "server error\0", "libkuzzle.server"),
        row(
            KUZZLE_ERR_INTERNAL,
            "internal error\0",
            "libkuzzle.internal",
        ),
        row(
            KUZZLE_ERR_QUEUE_FULL,
            "queue full\0",
            "libkuzzle.queue_full",
        ),
        row(KUZZLE_ERR_SPOOL, "spool error\0", "libkuzzle.spool"),
    ]
};

// Indexed by value: a row out of place does not compile.
const _: () = {
    let mut code = 0;
    while code < STATUSES.len() {
        assert!(
            STATUSES[code].status as usize == code,
            "STATUSES out of order"
        );
        code += 1;
    }
};

impl Status {
    /// The static, NUL-terminated text of any status value, for
    /// `kuzzle_status_str`; "unknown status" for a value not in the table.
    pub fn describe(code: i32) -> &'static str {
        usize::try_from(code)
            .ok()
            .and_then(|i| STATUSES.get(i))
            .map_or("unknown status\0", |row| row.text)
    }

    /// The libkuzzle error id used when Kuzzle gave none.
    pub fn default_id(self) -> &'static str {
        // Every variant is in the table (tested), so the fallback is only a
        // safety net.
        STATUSES
            .get(self as usize)
            .map_or("libkuzzle.unknown", |row| row.id)
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

    /// The `{"status","id","message","inDoubt"}` object, without the
    /// `error` wrapper.
    pub fn to_json_object(&self) -> String {
        let mut out = String::with_capacity(80 + self.message.len());
        out.push_str("{\"status\":");
        out.push_str(&self.http.to_string());
        out.push_str(",\"id\":");
        push_json_str(&mut out, &self.id);
        out.push_str(",\"message\":");
        push_json_str(&mut out, &self.message);
        out.push_str(match self.in_doubt {
            true => ",\"inDoubt\":true}",
            false => ",\"inDoubt\":false}",
        });
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
    fn the_status_table_holds_every_status_in_order() {
        for (code, row) in STATUSES.iter().enumerate() {
            assert_eq!(row.status as usize, code, "{:?} out of place", row.status);
            assert!(row.id.starts_with("libkuzzle."), "{:?}", row.status);
            assert_eq!(Status::describe(code as i32), row.text);
            assert_eq!(row.status.default_id(), row.id);
        }
        // No `_` arm: a new status does not compile here until it is named,
        // and values are only appended, so the new one is the last.
        use Status::*;
        let last = |s: Status| match s {
            KUZZLE_ERR_SPOOL => true,
            KUZZLE_ERR_INTERNAL
            | KUZZLE_ERR_QUEUE_FULL
            | KUZZLE_OK
            | KUZZLE_PARTIAL
            | KUZZLE_ERR_INVALID_ARGUMENT
            | KUZZLE_ERR_JSON
            | KUZZLE_ERR_CONNECTION
            | KUZZLE_ERR_TIMEOUT
            | KUZZLE_ERR_TLS
            | KUZZLE_ERR_AUTH
            | KUZZLE_ERR_FORBIDDEN
            | KUZZLE_ERR_SERVER => false,
        };
        assert!(
            last(STATUSES[STATUSES.len() - 1].status),
            "the status table ends before the last status"
        );
    }

    #[test]
    fn every_status_has_a_text_and_unknown_is_handled() {
        let n = STATUSES.len() as i32;
        for code in 0..n {
            let text = Status::describe(code);
            assert!(text.ends_with('\0') && text.len() > 2, "{code}");
            assert_ne!(text, "unknown status\0");
        }
        for code in [n, n + 1, -1, i32::MIN, i32::MAX] {
            assert_eq!(Status::describe(code), "unknown status\0", "{code}");
        }
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
