//! The one seam between the engines and the network: send a request's
//! bytes to Kuzzle, get its HTTP answer or a classified failure. The HTTP
//! transport implements it (`Client`); the engine's tests implement it with
//! scripted replies, so that every path of splitting, retrying and
//! accounting runs without a server.

use crate::error::{Error, Result};
use crate::transport::Reply;

pub(crate) trait Network: Sync {
    /// Sends one Kuzzle request, `wire` as it goes on the wire (gzip'd when
    /// `gzip`; `raw_len` bytes before that: its answer is bounded in
    /// proportion), and reads the whole answer into the same buffer (its
    /// capacity reused: a request and its answer are about as large).
    ///
    /// `Ok`: an HTTP answer, whatever its status. `Err`: no complete answer,
    /// `status` saying why (`KUZZLE_ERR_CONNECTION`, `_TIMEOUT`, `_TLS`...)
    /// and `http` 0; `in_doubt` false when the request certainly did not
    /// run (refused, or not written whole), true when it may have been
    /// applied.
    ///
    /// `teach`: the round trip is a fair sample of the link, to learn the
    /// node's limit from (not a call's smaller first and last requests,
    /// `mwrite::plan`).
    fn exchange(&self, wire: Vec<u8>, gzip: bool, raw_len: usize, teach: bool) -> Result<Reply>;

    /// After `e`, a retry may go at once, without the backoff's pause: the
    /// node that failed is known dead and another one is alive.
    fn retry_now(&self, _e: &Error) -> bool {
        false
    }

    /// A request is about to be sent again (counted in the client's stats).
    fn retried(&self) {}
}
