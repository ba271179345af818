//! The nodes a client writes to (`hosts`, or `host` and `port`): which are
//! alive, how many requests each has in flight and may have, and which one
//! takes the next request.
//!
//! - A request goes to the alive node with the fewest requests in flight
//!   for its limit (ties in turn).
//! - A node that refused a connection, reset one or timed out is dead: no
//!   request goes to it until a wait of 1 s, doubling with each failure in
//!   a row up to 30 s (jittered), has passed and a probe (`/_healthcheck`,
//!   sent by the thread that found the wait over) found it answering.
//! - With every node dead, requests go to each node in turn, whatever its
//!   wait: a wait says how often a node failed, not which comes back first
//!   (in a rolling restart, the node restarted first is up again while its
//!   wait, grown by the probes that failed while it started, is the
//!   longest). The caller's backoff paces them; one node alone behaves as
//!   without a pool.
//! - `"concurrency": "auto"`: each node has an adaptive limit
//!   (`adaptive`), and a request waits for a node under its limit. A fixed
//!   `concurrency` is the number of requests in flight per call, whatever
//!   the nodes.

mod adaptive;

use adaptive::Adaptive;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first wait before a dead node is tried again...
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// ...doubling with each failure in a row, up to this.
const LONGEST_WAIT: Duration = Duration::from_secs(30);
/// A thread waiting for a node under its limit looks again this often, in
/// case a dead node's wait ended meanwhile.
const RECHECK: Duration = Duration::from_millis(100);

/// One node: where it is.
pub(crate) struct Node {
    /// `host:port` as configured.
    pub address: String,
    /// `http(s)://host:port`.
    pub base_url: String,
    /// `base_url` + `/_query`.
    pub query_url: String,
}

struct State {
    alive: bool,
    /// Failures in a row since its last success.
    strikes: u32,
    /// Dead: not tried before this.
    retry_at: Instant,
    /// A thread is probing it.
    probing: bool,
    in_flight: usize,
    limit: Adaptive,
    requests: u64,
    failures: u64,
}

struct Shared {
    nodes: Vec<State>,
    /// Whose turn it is among equally loaded nodes.
    turn: usize,
    seed: u64,
}

pub(crate) struct Pool {
    pub nodes: Vec<Node>,
    shared: Mutex<Shared>,
    /// A request ended: a node may be under its limit again.
    freed: Condvar,
    /// `"concurrency": "auto"`: limits adapt, and are waited for.
    adaptive: bool,
    /// The origin of the times given to the adaptive limits.
    epoch: Instant,
}

/// How a request to a node ended, for the node's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A 2xx answer to an mWrite: its round trip counts.
    Success,
    /// A 2xx answer to anything else (a login, a count): the node is well,
    /// but such a round trip says nothing of the node's mWrite load.
    Served,
    /// Another answer of the node's own (4xx, Kuzzle's 5xx).
    Answered,
    /// The node pushed back: 429, Kuzzle's "overloaded" 503.
    Busy,
    /// Refused, reset, timed out, shutting down, or a proxy's 502-504:
    /// dead until its wait is over.
    Unreachable,
}

/// One node's figures, for `kuzzle_client_stats`.
pub(crate) struct NodeStats {
    pub alive: bool,
    pub requests: u64,
    pub failures: u64,
    pub in_flight: usize,
    pub limit: usize,
    pub rtt_ms: Option<f64>,
}

impl Pool {
    /// `urls`: each node's (address, base URL). `start`: requests in flight
    /// per node at first; `max`: the most "auto" may reach.
    pub(crate) fn new(
        urls: Vec<(String, String)>,
        adaptive: bool,
        start: usize,
        max: usize,
    ) -> Pool {
        let now = Instant::now();
        let nodes = urls
            .into_iter()
            .map(|(address, base_url)| Node {
                query_url: format!("{base_url}/_query"),
                address,
                base_url,
            })
            .collect::<Vec<_>>();
        let states = nodes
            .iter()
            .map(|_| State {
                alive: true,
                strikes: 0,
                retry_at: now,
                probing: false,
                in_flight: 0,
                limit: Adaptive::new(start, max, !adaptive),
                requests: 0,
                failures: 0,
            })
            .collect();
        Pool {
            nodes,
            shared: Mutex::new(Shared {
                nodes: states,
                turn: 0,
                seed: RandomState::new().hash_one(now) | 1,
            }),
            freed: Condvar::new(),
            adaptive,
            epoch: now,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every update is a few fields at once, none left half-done by a
        // panic elsewhere.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Once "auto" is settled at connect: every node starts from `start`.
    pub(crate) fn restart(&self, start: usize) {
        for node in &mut self.lock().nodes {
            node.limit.restart(start);
        }
    }

    /// A node for one request, `probe` telling whether a dead node whose
    /// wait is over answers again. Waits, with `"concurrency": "auto"`,
    /// while every alive node has as many requests in flight as its limit
    /// (each of those ends within `timeoutMs`).
    pub(crate) fn acquire(&self, probe: impl Fn(&Node) -> bool) -> Lease<'_> {
        let mut shared = self.lock();
        loop {
            let now = Instant::now();
            let any_alive = shared.nodes.iter().any(|n| n.alive);
            let due = shared
                .nodes
                .iter()
                .position(|n| !n.alive && !n.probing && n.retry_at <= now);
            if let (true, Some(i)) = (any_alive, due) {
                shared.nodes[i].probing = true;
                drop(shared);
                let up = probe(&self.nodes[i]);
                shared = self.lock();
                let node = &mut shared.nodes[i];
                node.probing = false;
                if up {
                    node.alive = true;
                } else {
                    node.failures += 1;
                    let wait = self.wait_after(&mut shared, i);
                    shared.nodes[i].retry_at = Instant::now() + wait;
                }
                continue;
            }
            let pick = match any_alive {
                true => self.least_loaded(&mut shared),
                // Nothing alive: each in turn.
                false => {
                    let i = shared.turn % shared.nodes.len();
                    shared.turn = (i + 1) % shared.nodes.len();
                    Some(i)
                }
            };
            if let Some(i) = pick {
                let node = &mut shared.nodes[i];
                node.in_flight += 1;
                node.requests += 1;
                return Lease {
                    pool: self,
                    index: i,
                    sent: now,
                    in_flight: node.in_flight,
                };
            }
            shared = self
                .freed
                .wait_timeout(shared, RECHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The alive node with the fewest requests in flight for its limit,
    /// under it (when limits are waited for); ties taken in turn.
    fn least_loaded(&self, shared: &mut Shared) -> Option<usize> {
        let n = shared.nodes.len();
        let start = shared.turn;
        let mut best: Option<(usize, f64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let node = &shared.nodes[i];
            let limit = node.limit.limit();
            if !node.alive || (self.adaptive && node.in_flight >= limit) {
                continue;
            }
            let load = node.in_flight as f64 / limit as f64;
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((i, load));
            }
        }
        let (i, _) = best?;
        shared.turn = (i + 1) % n;
        Some(i)
    }

    /// The jittered wait before dead node `i` is tried again, counting one
    /// more failure in a row.
    fn wait_after(&self, shared: &mut Shared, i: usize) -> Duration {
        let node = &mut shared.nodes[i];
        node.strikes = node.strikes.saturating_add(1);
        let wait = FIRST_WAIT
            .saturating_mul(1 << (node.strikes - 1).min(5))
            .min(LONGEST_WAIT);
        let seed = &mut shared.seed;
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        // In [3/4, 1] of it: clients that lost the same node come back
        // spread out.
        wait.mul_f64(0.75 + (*seed % 1000) as f64 / 4000.0)
    }

    /// Some node is alive.
    pub(crate) fn any_alive(&self) -> bool {
        self.lock().nodes.iter().any(|n| n.alive)
    }

    /// Workers an mWrite call may use with "auto": every alive node's
    /// limit, plus one each to see whether more would help (capped at
    /// `most`).
    pub(crate) fn workers(&self, most: usize) -> usize {
        let shared = self.lock();
        let alive = shared.nodes.iter().filter(|n| n.alive);
        let sum: usize = alive.map(|n| n.limit.limit() + 1).sum();
        match sum {
            0 => shared.nodes[0].limit.limit(),
            sum => sum,
        }
        .clamp(1, most)
    }

    pub(crate) fn stats(&self) -> Vec<NodeStats> {
        self.lock()
            .nodes
            .iter()
            .map(|n| NodeStats {
                alive: n.alive,
                requests: n.requests,
                failures: n.failures,
                in_flight: n.in_flight,
                limit: n.limit.limit(),
                rtt_ms: n.limit.rtt().map(|s| s * 1000.0),
            })
            .collect()
    }
}

/// A request's hold on its node, from before it is sent until its answer
/// was read; released when dropped.
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    index: usize,
    sent: Instant,
    /// The node's requests in flight when it was sent, itself included.
    in_flight: usize,
}

impl Lease<'_> {
    pub(crate) fn node(&self) -> &Node {
        &self.pool.nodes[self.index]
    }

    /// Records how the request ended (then releases the node).
    pub(crate) fn end(self, ended: Ended) {
        let pool = self.pool;
        let mut shared = pool.lock();
        let now = Instant::now();
        let at = now.duration_since(pool.epoch).as_secs_f64();
        if ended == Ended::Unreachable {
            shared.nodes[self.index].failures += 1;
            // Another request may have found it dead already: the first
            // one's wait stands.
            if shared.nodes[self.index].alive {
                let wait = pool.wait_after(&mut shared, self.index);
                let node = &mut shared.nodes[self.index];
                node.alive = false;
                node.retry_at = now + wait;
            }
            return;
        }
        let node = &mut shared.nodes[self.index];
        match ended {
            Ended::Success | Ended::Served => {
                node.alive = true;
                node.strikes = 0;
                if ended == Ended::Success {
                    let rtt = now.duration_since(self.sent).as_secs_f64();
                    node.limit.done(at, Some(rtt), false, self.in_flight);
                }
            }
            Ended::Busy => {
                node.failures += 1;
                node.limit.done(at, None, true, self.in_flight);
            }
            Ended::Answered | Ended::Unreachable => {}
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut shared = self.pool.lock();
        let node = &mut shared.nodes[self.index];
        node.in_flight = node.in_flight.saturating_sub(1);
        drop(shared);
        self.pool.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, adaptive: bool, start: usize) -> Pool {
        let urls = (0..n)
            .map(|i| (format!("n{i}:1"), format!("http://n{i}:1")))
            .collect();
        Pool::new(urls, adaptive, start, 16)
    }

    #[test]
    fn requests_spread_over_alive_nodes() {
        let p = pool(3, false, 4);
        let leases: Vec<Lease> = (0..6).map(|_| p.acquire(|_| true)).collect();
        let mut per_node = [0; 3];
        for l in &leases {
            per_node[l.index] += 1;
        }
        assert_eq!(per_node, [2, 2, 2]);
        drop(leases);
        let stats = p.stats();
        assert!(stats.iter().all(|s| s.requests == 2 && s.in_flight == 0));
    }

    #[test]
    fn a_dead_node_is_avoided_until_its_wait_is_over_and_a_probe_answers() {
        let p = pool(2, false, 4);
        let first = p.acquire(|_| true);
        let dead = first.index;
        first.end(Ended::Unreachable);
        for _ in 0..10 {
            let l = p.acquire(|_| panic!("no probe before the wait is over"));
            assert_ne!(l.index, dead);
            l.end(Ended::Success);
        }
        // The wait is over (made so): a probe comes first; it fails, so
        // the node stays dead and waits longer.
        p.lock().nodes[dead].retry_at = Instant::now();
        let probed = std::cell::Cell::new(0);
        let l = p.acquire(|_| {
            probed.set(probed.get() + 1);
            false
        });
        assert_eq!((probed.get(), l.index != dead), (1, true));
        drop(l);
        {
            let shared = p.lock();
            let node = &shared.nodes[dead];
            assert!(!node.alive && node.strikes == 2);
            let wait = node.retry_at - Instant::now();
            assert!(wait > Duration::from_millis(1400), "{wait:?}");
        }
        // Then a probe that answers: the node takes requests again.
        p.lock().nodes[dead].retry_at = Instant::now();
        let leases: Vec<Lease> = (0..2).map(|_| p.acquire(|_| true)).collect();
        assert!(leases.iter().any(|l| l.index == dead));
        assert!(p.stats()[dead].alive);
    }

    #[test]
    fn with_every_node_dead_requests_go_to_each_in_turn_whatever_its_wait() {
        let p = pool(2, false, 4);
        for _ in 0..2 {
            p.acquire(|_| true).end(Ended::Unreachable);
        }
        assert!(!p.any_alive());
        // Node 0 failed often (its wait is long), node 1 once: a rolling
        // restart's node restarted first, up again, and the one just
        // stopped. Retries must reach node 0, not keep hitting node 1.
        p.lock().nodes[0].retry_at = Instant::now() + Duration::from_secs(100);
        let mut order = Vec::new();
        for _ in 0..4 {
            let l = p.acquire(|_| panic!("nothing to probe against"));
            order.push(l.index);
            if l.index == 1 {
                l.end(Ended::Unreachable);
            }
        }
        assert_eq!(order, [0, 1, 0, 1]);
        // Node 0 answers: alive again, its failures in a row forgotten,
        // and requests stay with it.
        let l = p.acquire(|_| panic!("nothing to probe against"));
        assert_eq!(l.index, 0);
        l.end(Ended::Success);
        let shared = p.lock();
        assert!(shared.nodes[0].alive && shared.nodes[0].strikes == 0);
        drop(shared);
        for _ in 0..3 {
            assert_eq!(p.acquire(|_| false).index, 0);
        }
    }

    #[test]
    fn auto_waits_for_a_node_under_its_limit() {
        let p = pool(2, true, 2);
        let leases: Vec<Lease> = (0..4).map(|_| p.acquire(|_| true)).collect();
        assert_eq!(p.workers(64), 6);
        // A fifth request can only get the node of the one that ends,
        // whether it started waiting before or after.
        let mut leases = leases.into_iter();
        let freed = leases.next().unwrap();
        let index = freed.index;
        std::thread::scope(|s| {
            let waiter = s.spawn(|| p.acquire(|_| true).index);
            drop(freed);
            assert_eq!(waiter.join().unwrap(), index);
        });
        assert_eq!(p.stats()[index].requests, 3);
    }
}
