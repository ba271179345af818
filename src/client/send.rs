//! One request, through the nodes: to the node the pool picks, again at
//! once on another node when the first certainly did not run it (refused,
//! shutting down), logging in again when the session's token was refused;
//! every outcome recorded for the node (`crate::nodes`). Also the engines'
//! network seam.

use super::Client;
use crate::error::{Error, Result, Status};
use crate::net::Network;
use crate::nodes::{Ended, Node};
use crate::retry::{self, Class};
use crate::transport::{Answer, Bound, Reply};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Who a request is sent as.
#[derive(Clone, Copy)]
pub(super) enum Auth<'a> {
    /// The session's token (renewed when due, or when Kuzzle refuses it).
    Session,
    /// This token, or none (login, token checks, logout).
    Given(Option<&'a str>),
}

/// A probe of a dead node waits no longer than this: a node that needs
/// more to answer a health check is not one to send documents to.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Kuzzle's answers by which a node says it is going away, having run
/// nothing: another node may take the request at once.
const LEAVING_IDS: [&str; 2] = [
    "api.process.shutting_down",
    "network.entrypoint.shutting_down",
];

impl Client {
    /// Sends `wire` (gzip'd when `gzip`) to a node and reads the answer into
    /// its buffer. `Ok`: an HTTP answer, whatever its status; `Err`: none
    /// came (`in_doubt` telling whether the request may have run).
    pub(super) fn request(
        &self,
        wire: Vec<u8>,
        gzip: bool,
        bound: Bound,
        auth: Auth,
    ) -> Result<Reply> {
        if let Auth::Session = auth {
            self.ready()?;
        }
        let mut wire = Some(wire);
        let mut renewed = false;
        let mut resends = 0;
        loop {
            let body = wire.as_deref().unwrap_or_default();
            // Before the node is held: a login is a request of its own.
            let token = match auth {
                Auth::Session => self.token()?,
                Auth::Given(token) => token.map(str::to_string),
            };
            let lease = self.pool.acquire(|node| self.probe(node));
            let sent = self.transport.post_bounded(
                &lease.node().query_url,
                body,
                gzip,
                token.as_deref(),
                bound,
            );
            let pending = match sent {
                Ok(pending) => pending,
                Err(e) => {
                    let ended = unreachable(&e);
                    lease.end(ended);
                    if ended == Ended::Unreachable && !e.in_doubt && self.elsewhere(&mut resends) {
                        continue;
                    }
                    return Err(e);
                }
            };
            let http = pending.http();
            if !matches!(http, 401 | 429 | 502..=504) {
                let reply = pending.read(wire.take().unwrap_or_default());
                // Only mWrite round trips teach the node's limit: a query's
                // (a login, a count) are of another size altogether.
                let echo = matches!(bound, Bound::Echo { teach: true, .. });
                lease.end(match &reply {
                    Ok(r) if r.http < 300 && echo => Ended::Success,
                    Ok(r) if r.http < 300 => Ended::Served,
                    Ok(_) => Ended::Answered,
                    Err(e) => unreachable(e),
                });
                return reply;
            }
            // Read apart, so that `wire` may go again.
            let reply = match pending.read(Vec::new()) {
                Ok(reply) => reply,
                Err(mut e) => {
                    lease.end(unreachable(&e));
                    if matches!(http, 401 | 429) {
                        // Refused before it ran, whatever the rest says.
                        e.in_doubt = false;
                    }
                    return Err(e);
                }
            };
            let error = match reply.answer() {
                Answer::Error { error, .. } => Some(error),
                Answer::Result(_) => None,
            };
            let id = error.as_ref().map_or("", |e| e.id.as_str());
            match http {
                401 => {
                    lease.end(Ended::Answered);
                    let refused = matches!(id, "security.token.expired" | "security.token.invalid");
                    if let (Auth::Session, true, false, Some(_)) = (auth, refused, renewed, &token)
                    {
                        if self.renew_after_rejection(token.as_deref()) {
                            renewed = true;
                            continue;
                        }
                    }
                }
                503 if LEAVING_IDS.contains(&id) => {
                    lease.end(Ended::Unreachable);
                    if self.elsewhere(&mut resends) {
                        continue;
                    }
                }
                429 | 503
                    if error
                        .as_ref()
                        .is_some_and(|e| retry::class(e) == Class::NotRun) =>
                {
                    lease.end(Ended::Busy);
                }
                // A proxy's 502-504: the node behind it is gone.
                _ => lease.end(Ended::Unreachable),
            }
            return Ok(reply);
        }
    }

    /// `GET /_healthcheck` on a node, another one if it is out of reach.
    pub(super) fn health_check(&self) -> Result<Reply> {
        let mut resends = 0;
        loop {
            let lease = self.pool.acquire(|node| self.probe(node));
            let reply = self
                .transport
                .get(&lease.node().base_url, "/_healthcheck", None);
            match &reply {
                Ok(r) if r.http < 300 => lease.end(Ended::Served),
                Ok(_) => lease.end(Ended::Answered),
                Err(e) => {
                    let ended = unreachable(e);
                    lease.end(ended);
                    if ended == Ended::Unreachable && self.elsewhere(&mut resends) {
                        continue;
                    }
                }
            }
            return reply;
        }
    }

    /// After a node was found dead: whether to send the request again at
    /// once, to another node (one is alive, and fewer resends than nodes
    /// were made), counting it.
    fn elsewhere(&self, resends: &mut usize) -> bool {
        if *resends >= self.pool.nodes.len() || !self.pool.any_alive() {
            return false;
        }
        *resends += 1;
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether a dead node answers a health check again.
    fn probe(&self, node: &Node) -> bool {
        let timeout = PROBE_TIMEOUT.min(self.config.timeout);
        self.transport
            .get(&node.base_url, "/_healthcheck", Some(timeout))
            .is_ok_and(|reply| reply.http < 500)
    }
}

/// What a failure with no complete answer says of the node.
fn unreachable(e: &Error) -> Ended {
    match e.status {
        Status::KUZZLE_ERR_CONNECTION | Status::KUZZLE_ERR_TIMEOUT => Ended::Unreachable,
        // TLS (the configuration's to mend), an unusable answer (the
        // server's fault, not its absence).
        _ => Ended::Answered,
    }
}

impl Network for Client {
    fn exchange(&self, wire: Vec<u8>, gzip: bool, raw_len: usize, teach: bool) -> Result<Reply> {
        let bound = Bound::Echo { raw_len, teach };
        self.request(wire, gzip, bound, Auth::Session)
    }

    /// A node failed the request, and another is alive: no reason to wait.
    fn retry_now(&self, e: &Error) -> bool {
        // A kept-alive connection closed under the request: at once, on a
        // new connection to the same node or another.
        if e.id == crate::transport::STALE_ID {
            return true;
        }
        let node_failed = match e.http {
            0 => matches!(
                e.status,
                Status::KUZZLE_ERR_CONNECTION | Status::KUZZLE_ERR_TIMEOUT
            ),
            502..=504 => e.in_doubt || LEAVING_IDS.contains(&e.id.as_str()),
            _ => false,
        };
        node_failed && self.pool.nodes.len() > 1 && self.pool.any_alive()
    }

    fn retried(&self) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
    }
}
