//! Adaptive concurrency for one node (`"concurrency": "auto"`): how many
//! requests it may have in flight, found from the round trips of its
//! successful requests. Additive increase, multiplicative decrease, once
//! per round trip, after the design of Vector's adaptive request
//! concurrency: one more request in flight while the node had as many as
//! allowed and its round trip did not grow (or less than one request
//! waits); a tenth fewer when it pushed back (429, Kuzzle's "overloaded"
//! 503) or its round trip rose clearly above its usual spread with more
//! than a few requests waiting, more (in proportion, half at most) when the
//! round trip grew by more than a tenth: a queue at the node empties in a
//! few round trips rather than a dozen. The few allowed to wait are what a
//! slow link needs: requests sent together queue there for each other
//! although the link is not full, and counting that as a queue to cut
//! kept one request in flight through the benchmark's uplink.
//!
//! Pure arithmetic on the times it is given, so that its tests run a
//! simulated server in simulated time.

/// Weight of the newest round trip in the moving averages...
const ALPHA: f64 = 0.4;
/// ...when it rose clearly above them.
const ALPHA_RISEN: f64 = 0.05;
/// A round trip this many deviations above the mean means a queue is
/// building up at the node...
const DEVIATIONS: f64 = 2.0;
/// ...or this fraction of the mean, whichever is more: jitter below it is
/// noise, not a queue.
const MIN_RISE: f64 = 0.1;
/// A rise is a queue to act on only when more requests than this (or the
/// square root of the limit, if more) wait...
const MIN_QUEUE: f64 = 2.0;
/// ...and the limit grows while fewer than this wait (or its round trip
/// did not grow).
const ALLOWED_TO_GROW: f64 = 1.0;
/// How fast the lowest round trip forgets, per window.
const BASE_DRIFT: f64 = 0.0005;
/// The factor of a decrease: at least this...
const DECREASE: f64 = 0.9;
/// ...and when the round trip grew by more, in proportion to it (a queue
/// that doubled the round trip means about twice the requests the node
/// serves at once), but never below this.
const DEEPEST_DECREASE: f64 = 0.5;

#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    limit: usize,
    max: usize,
    /// A fixed `concurrency`: round trips are still averaged (stats), the
    /// limit never moves.
    frozen: bool,
    /// Moving averages of the round trip and of its deviation, in seconds.
    mean: Option<f64>,
    deviation: f64,
    /// The lowest round trip of recent windows, rising by `BASE_DRIFT` a
    /// window while none is as low (a node that became slower for good).
    base: Option<f64>,
    window: Window,
    /// A decrease happened at the end of the last window.
    settling: bool,
}

/// What the responses of the current round trip said.
#[derive(Debug, Clone, Default)]
struct Window {
    /// When it opened (seconds, from the caller's origin).
    start: Option<f64>,
    sum: f64,
    n: u32,
    busy: bool,
    /// Fewest other requests in flight when one was pushed back: more
    /// than the node took.
    took: Option<usize>,
    full: bool,
}

impl Adaptive {
    /// Starting at `start` requests in flight, never more than `max`.
    pub(crate) fn new(start: usize, max: usize, frozen: bool) -> Adaptive {
        let max = max.max(1);
        Adaptive {
            limit: start.clamp(1, max),
            max,
            frozen,
            mean: None,
            deviation: 0.0,
            base: None,
            window: Window::default(),
            settling: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The averaged round trip of successful requests, in seconds.
    pub(crate) fn rtt(&self) -> Option<f64> {
        self.mean
    }

    /// Starts again from `start` (once "auto" is settled at connect).
    pub(crate) fn restart(&mut self, start: usize) {
        self.limit = start.clamp(1, self.max);
        self.window = Window::default();
    }

    /// One request ended at `now`: `rtt` when it succeeded (its round trip,
    /// seconds), `busy` when the node pushed back; `in_flight`: the node's
    /// requests in flight when it was sent, itself included.
    pub(crate) fn done(&mut self, now: f64, rtt: Option<f64>, busy: bool, in_flight: usize) {
        let full = in_flight >= self.limit;
        let w = &mut self.window;
        if busy {
            let others = in_flight.saturating_sub(1);
            w.took = Some(w.took.map_or(others, |t| t.min(others)));
        }
        let start = *w.start.get_or_insert(now);
        if let Some(rtt) = rtt {
            w.sum += rtt;
            w.n += 1;
        }
        w.busy |= busy;
        w.full |= full;
        // A window lasts one round trip (the average one, else this one);
        // a push-back ends it after a quarter of that already: by the end
        // of a whole one, every request in flight could have been refused.
        let span = self.mean.or(rtt).unwrap_or(0.0);
        let span = match w.busy {
            true => span / 4.0,
            false => span,
        };
        if now - start >= span {
            self.close();
        }
    }

    fn close(&mut self) {
        let w = std::mem::take(&mut self.window);
        let avg = (w.n > 0).then(|| w.sum / w.n as f64);
        // Requests waiting at the node (or at a link before it), by
        // Little's law: what is in flight beyond what the usual round trip
        // serves. A few are no queue to act on: requests sent together
        // wait for each other at a slow link although it is not full.
        let queued_over = |base: Option<f64>| match (avg, base) {
            (Some(avg), Some(base)) if avg > 0.0 => self.limit as f64 * (1.0 - base / avg),
            _ => 0.0,
        };
        // Over the usual round trip, to decide a decrease: it learns slowly
        // from risen round trips, so a queue does not become the norm.
        let queued = queued_over(self.mean);
        // Over the lowest recent one, to decide an increase: the usual one
        // ends up learning a small lasting queue, the lowest does not.
        if let (Some(avg), false) = (avg, w.busy) {
            self.base = Some(self.base.map_or(avg, |b| (b * (1.0 + BASE_DRIFT)).min(avg)));
        }
        let queued_at_least = queued_over(self.base);
        let allowed = (self.limit as f64).sqrt().max(MIN_QUEUE);
        let risen = match (avg, self.mean) {
            (Some(avg), Some(mean)) => {
                avg > mean + (DEVIATIONS * self.deviation).max(MIN_RISE * mean)
            }
            _ => false,
        };
        let rising = risen && queued > allowed;
        if !self.frozen && self.settling {
            // The answers of this window were mostly sent before the last
            // decrease: they tell of the queue it is draining, and acting
            // on them again would cut twice for one excess.
            self.settling = false;
            if let Some(took) = w.took {
                self.limit = self.limit.min(took).max(1);
            }
        } else if !self.frozen {
            if w.busy || rising {
                let factor = match (avg, self.mean, rising) {
                    (Some(avg), Some(mean), true) => (mean / avg).clamp(DEEPEST_DECREASE, DECREASE),
                    _ => DECREASE,
                };
                let mut limit = (self.limit as f64 * factor) as usize;
                // Pushed back with `took` in flight: no more than that.
                if let Some(took) = w.took {
                    limit = limit.min(took);
                }
                self.limit = limit.max(1);
                self.settling = true;
            } else if w.full
                && avg.is_some()
                && (queued_at_least < ALLOWED_TO_GROW || self.mean.is_none_or(|m| avg <= Some(m)))
            {
                self.limit = (self.limit + 1).min(self.max);
            }
        }
        // The averages learn from calm windows: pushed back, the round
        // trips say more about the queue than about the node. Risen ones
        // teach them slowly, or the queue would become the norm; but a node
        // that really became slower is learnt in the end.
        if let (Some(avg), false) = (avg, w.busy) {
            let alpha = match risen {
                true => ALPHA_RISEN,
                false => ALPHA,
            };
            match self.mean {
                None => self.mean = Some(avg),
                Some(mean) => {
                    self.deviation += alpha * ((avg - mean).abs() - self.deviation);
                    self.mean = Some(mean + alpha * (avg - mean));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};

    /// A server in simulated time: `capacity` requests served at once, each
    /// in `service` seconds, up to `queue` more waiting, any beyond that
    /// refused at once (Kuzzle's "overloaded" 503). A client keeps `limit`
    /// requests in flight. Times are in microseconds (integers: the
    /// simulation is exact and the same on every machine).
    struct Sim {
        now: u64,
        service: u64,
        capacity: usize,
        queue: usize,
        serving: usize,
        waiting: VecDeque<u64>,
        /// (end, sent) of the requests being served.
        ends: BinaryHeap<Reverse<(u64, u64)>>,
        in_flight: usize,
        arc: Adaptive,
        refused: usize,
        served: usize,
    }

    impl Sim {
        fn new(capacity: usize, start: usize) -> Sim {
            Sim {
                now: 0,
                service: 10_000,
                capacity,
                queue: 2 * capacity,
                serving: 0,
                waiting: VecDeque::new(),
                ends: BinaryHeap::new(),
                in_flight: 0,
                arc: Adaptive::new(start, 64, false),
                refused: 0,
                served: 0,
            }
        }

        fn secs(us: u64) -> f64 {
            us as f64 / 1e6
        }

        /// Sends until `limit` are in flight; refusals come back at once.
        fn fill(&mut self) {
            while self.in_flight < self.arc.limit() {
                let sent_with = self.in_flight + 1;
                if self.serving < self.capacity {
                    self.serving += 1;
                    self.ends.push(Reverse((self.now + self.service, self.now)));
                } else if self.waiting.len() < self.queue {
                    self.waiting.push_back(self.now);
                } else {
                    self.refused += 1;
                    self.arc.done(Self::secs(self.now), None, true, sent_with);
                    // A refused client sends again after its next answer.
                    break;
                }
                self.in_flight += 1;
            }
        }

        /// Runs `round_trips` service times' worth of simulated time.
        fn run(&mut self, round_trips: u64) {
            let until = self.now + round_trips * self.service;
            self.fill();
            while let Some(Reverse((end, sent))) = self.ends.pop() {
                if end > until {
                    self.ends.push(Reverse((end, sent)));
                    self.now = until;
                    return;
                }
                self.now = end;
                self.served += 1;
                self.serving -= 1;
                self.in_flight -= 1;
                while self.serving < self.capacity {
                    let Some(queued) = self.waiting.pop_front() else {
                        break;
                    };
                    self.serving += 1;
                    self.ends.push(Reverse((self.now + self.service, queued)));
                }
                // As if sent with as many in flight as now, itself included.
                let sent_with = self.in_flight + 1;
                self.arc.done(
                    Self::secs(self.now),
                    Some(Self::secs(end - sent)),
                    false,
                    sent_with,
                );
                self.fill();
            }
        }
    }

    #[test]
    fn grows_to_the_capacity_and_holds_there() {
        let mut sim = Sim::new(12, 4);
        sim.run(30);
        assert!(
            (12..=14).contains(&sim.arc.limit()),
            "limit {}",
            sim.arc.limit()
        );
        assert_eq!(sim.refused, 0);
        // And it stays: no drift over many more round trips.
        let mut seen = Vec::new();
        for _ in 0..50 {
            sim.run(4);
            seen.push(sim.arc.limit());
        }
        assert!(seen.iter().all(|l| (11..=15).contains(l)), "{seen:?}");
    }

    #[test]
    fn follows_a_capacity_that_drops_and_recovers_without_a_storm_of_refusals() {
        let mut sim = Sim::new(16, 4);
        sim.run(40);
        assert!(sim.arc.limit() >= 15, "limit {}", sim.arc.limit());
        // The node loses three quarters of its capacity.
        sim.capacity = 4;
        sim.queue = 8;
        let (refused, served) = (sim.refused, sim.served);
        sim.run(8);
        assert!(
            sim.arc.limit() <= 7,
            "within 8 round trips: limit {}",
            sim.arc.limit()
        );
        // Refusals come only in the first round trip, when the capacity
        // falls under what is in flight (the simulated server finishes its
        // requests in step: they come together): a fraction of what is
        // served meanwhile, not one per request sent.
        let (storm, served) = (sim.refused - refused, sim.served - served);
        assert!(
            storm <= 12 && storm * 4 <= served,
            "{storm} refused, {served} served"
        );
        sim.run(20);
        let refused = sim.refused;
        sim.run(20);
        assert_eq!(sim.refused, refused, "settled: nothing refused any more");
        assert!(
            (4..=6).contains(&sim.arc.limit()),
            "limit {}",
            sim.arc.limit()
        );
        // Capacity comes back: the limit climbs again, by one at a time.
        sim.capacity = 16;
        sim.queue = 32;
        sim.run(40);
        assert!(sim.arc.limit() >= 15, "limit {}", sim.arc.limit());
        assert_eq!(sim.refused, refused);
    }

    /// A node behind a slow link, in simulated time (µs): each request
    /// crosses the link (one at a time, `transfer` each, first come first
    /// served), then takes `delay` more (propagation, the server) with any
    /// number at once. Throughput grows with the requests in flight until
    /// the link is busy all the time (`1 + delay / transfer` of them), then
    /// stays; more in flight only queue at the link. `jitter`: each
    /// `delay` is that much longer or shorter, in turn (a noisy machine).
    fn link(
        transfer: u64,
        delay: u64,
        jitter: u64,
        start: usize,
        round_trips: u64,
    ) -> (Adaptive, f64, Vec<usize>) {
        let mut arc = Adaptive::new(start, 16, false);
        let (mut now, mut link_free, mut in_flight, mut served) = (0u64, 0u64, 0usize, 0u64);
        // (answer time, sent time, in flight when sent)
        let mut answers: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
        let until = round_trips * (transfer + delay);
        let mut limits = Vec::new();
        let mut k = 0u64;
        loop {
            while in_flight < arc.limit() {
                in_flight += 1;
                let crossed = link_free.max(now) + transfer;
                link_free = crossed;
                k += 1;
                let d = match k % 2 {
                    0 => delay + jitter,
                    _ => delay - jitter,
                };
                answers.push(Reverse((crossed + d, now, in_flight)));
            }
            let Some(Reverse((end, sent, with))) = answers.pop() else {
                break;
            };
            now = end;
            if now > until {
                break;
            }
            in_flight -= 1;
            served += 1;
            arc.done(
                now as f64 / 1e6,
                Some((end - sent) as f64 / 1e6),
                false,
                with,
            );
            limits.push(arc.limit());
        }
        (arc, served as f64 / (until as f64 / 1e6), limits)
    }

    #[test]
    fn behind_a_slow_link_it_keeps_the_link_busy() {
        // 27 ms to cross the link, 100 ms of round trip besides: the link
        // is full from 5 in flight on (1 + 100 / 27), 37 requests/s at most.
        for (jitter, start) in [(0, 8), (0, 1), (20_000, 8), (20_000, 1)] {
            let (arc, per_s, limits) = link(27_000, 100_000, jitter, start, 200);
            let best = 1e6 / 27_000.0;
            assert!(
                per_s >= 0.85 * best,
                "jitter {jitter}, from {start}: {per_s:.1}/s of {best:.1}/s, limit {} ({:?})",
                arc.limit(),
                &limits[limits.len().saturating_sub(40)..]
            );
        }
    }

    #[test]
    fn a_fixed_limit_never_moves_and_the_ceiling_holds() {
        let mut a = Adaptive::new(8, 16, true);
        for i in 0..100 {
            a.done(i as f64 * 0.01, Some(0.01), i % 3 == 0, 8);
        }
        assert_eq!(a.limit(), 8);
        assert!(a.rtt().is_some_and(|r| (r - 0.01).abs() < 1e-9));
        let mut a = Adaptive::new(30, 16, false);
        assert_eq!(a.limit(), 16);
        for i in 0..100 {
            a.done(i as f64 * 0.01, Some(0.01), false, 16);
        }
        assert_eq!(a.limit(), 16);
        for i in 100..200 {
            a.done(i as f64 * 0.01, None, true, 16);
        }
        assert_eq!(a.limit(), 1, "pushed back again and again: one at a time");
    }
}
