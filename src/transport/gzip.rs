//! gzip for requests: compressors kept from one request to the next, and
//! the level chosen by what limits the client.
//!
//! The level: among `LEVELS`, the one with which the client moves the most
//! JSON per second, compressing plus exchanging. Where the CPU limits (a
//! nearby Kuzzle), compressing harder only adds time; where the link limits
//! (a slow uplink, its bandwidth shared by the requests in flight), each
//! byte saved shortens every exchange. Neither a single request at another
//! level nor one request's round trip can tell: a request shares the link
//! with the others in flight, and its round trip is theirs (a probe saved
//! ~2% of its time through the benchmark's uplink, where a whole call at
//! level 6 took 12% less than at 2). So whole mWrite calls are compared:
//! the client tries a neighbouring level (the one above and the one below
//! in turn) for a phase of `PHASE` requests or more (and of `RANKED`
//! calls, unless they are large), ending with a call,
//! and compares the time per byte of JSON of its calls with that of the
//! calls of the phase at the current level before it. A call's requests all
//! go at one level: with one caller at a time, none shares the link with
//! another level's, and every call pays its own start and end. Only calls
//! whose every document was written count (retries and backoffs say
//! nothing of the level).
//!
//! The client moves when the neighbour is cheaper beyond the noise: with
//! `RANKED` calls or more in each arm, its median by `MARGIN` and by a rank
//! test; with fewer (large calls), by `FEW_MARGIN`. A neighbour that lost
//! is tried half as often the next time, down to one phase in
//! `MOST_SPACING + 1`, and its phase ends at the next call when its calls
//! cost far more (`CLEARLY_WORSE`). The level above is tried first, the
//! one below only after the one above cost far more (the CPU limits). Both arms are measured in the same
//! minutes, so a machine or a link that changes speed affects them alike.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The levels chosen among, zlib-rs: a 400-document request of ~2 KB text
/// documents shrinks 2.72x at level 1 (2.2 ns per byte here), 3.78x at 2
/// (3.4 ns), 4.58x at 6 (30.5 ns); 2,000 sensor readings 6.6x, 10.8x and
/// 13.3x (0.8, 0.9 and 2.5 ns). Levels 3 to 5 gain little over 2, and 7 to 9
/// nothing over 6 (BENCHMARKS.md).
const LEVELS: [u32; 3] = [1, 2, 6];
/// Where a client starts: level 2, the best on a nearby Kuzzle.
const START: usize = 1;
/// Requests counted in a phase at least (it ends with the call that
/// reaches it)...
const PHASE: u64 = 24;
/// ...a phase at the current level lasting `PHASE` times `SPACING` (but
/// the first one, to compare soon), and twice as long after each comparison
/// the neighbour lost, up to `MOST_SPACING` times.
const SPACING: u64 = 4;
const MOST_SPACING: u64 = 64;
/// Calls in each arm from which they are compared by rank: how much
/// cheaper per byte a neighbour's median must be to be moved to, and by
/// how many deviations of the rank test at least...
const RANKED: usize = 4;
const MARGIN: f64 = 0.05;
const ERRORS: f64 = 2.0;
/// ...and with fewer calls (large ones, of `LARGE_CALL` requests on
/// average: a phase of small ones has `RANKED` at least), how much cheaper.
const FEW_MARGIN: f64 = 0.06;
const LARGE_CALL: u64 = 16;
/// A neighbour's phase ends at the next call when its calls cost this
/// much more than the current level's.
const CLEARLY_WORSE: f64 = 1.3;
/// Comparisons left undecided (an arm with no clean call, or fewer than
/// `RANKED` small ones) go on over this many more pairs of phases at
/// most; then the neighbour is judged on what there is (it loses if it
/// has nothing), so that a level is never probed at full rate for ever.
const MOST_DEFERRED: u32 = 2;
/// Calls kept per arm: the latest.
const MOST_SAMPLES: usize = 64;

/// A gzip compressor kept from one request to the next: a new deflate state
/// is ~380 KB to allocate and fault in, for each request otherwise.
pub struct Gzip {
    deflate: flate2::Compress,
    level: u32,
}

impl Gzip {
    fn new(level: u32) -> Gzip {
        Gzip {
            deflate: flate2::Compress::new(flate2::Compression::new(level), false),
            level,
        }
    }
}

impl Default for Gzip {
    fn default() -> Gzip {
        Gzip::new(LEVELS[START])
    }
}

/// Compressors shared by a client's threads, and its level. Compressing a
/// request takes a millisecond where sending it takes many: a few serve
/// every worker, and fewer states stay in memory than one per worker (3 MB
/// for 8).
pub struct GzipPool {
    spare: Mutex<Vec<Gzip>>,
    choice: Mutex<Choice>,
    /// `gzipLevel` when given.
    fixed: Option<u32>,
}

impl Default for GzipPool {
    fn default() -> GzipPool {
        GzipPool::new(None)
    }
}

impl GzipPool {
    /// At `level` always, or (None) the level chosen by what limits.
    pub fn new(level: Option<u32>) -> GzipPool {
        GzipPool {
            spare: Mutex::new(Vec::new()),
            choice: Mutex::new(Choice::new()),
            fixed: level,
        }
    }
}

/// Compressors kept at most: more at once (many threads sharing a client)
/// get one each, dropped after use.
const POOL_SIZE: usize = 4;

/// The level, the phase, and what the current comparison has seen.
#[derive(Debug)]
struct Choice {
    current: usize,
    /// The neighbour tried next, or now: below (true) or above (`judge`).
    down: bool,
    /// This phase is at the neighbour.
    probing: bool,
    /// This phase's requests so far (those that teach), and how many it
    /// has at least; its calls so far.
    pos: u64,
    len: u64,
    calls: u64,
    /// What a call cost, per byte of JSON (ns), at the current level and
    /// at the neighbour, since the comparison began.
    here: Vec<f64>,
    there: Vec<f64>,
    /// The last phase at the current level ([0]) and at the neighbour
    /// ([1]) had large calls (`LARGE_CALL` requests each on average).
    large: [bool; 2],
    /// Pairs of phases this comparison was left undecided.
    deferred: u32,
    /// The comparison began with this phase: calls begun before are not
    /// counted.
    since: u64,
    phase: u64,
    /// A phase at the current level is `PHASE` times this before one at
    /// the level above ([0]) or below ([1]): `SPACING`, doubled after each
    /// comparison that level lost, up to `MOST_SPACING`.
    spacing: [u64; 2],
}

/// An mWrite call's phase, at its start.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    phase: u64,
    level: u32,
    started: Instant,
}

impl Choice {
    fn new() -> Choice {
        Choice {
            current: START,
            down: false,
            probing: false,
            pos: 0,
            len: PHASE,
            calls: 0,
            here: Vec::new(),
            there: Vec::new(),
            large: [false; 2],
            deferred: 0,
            since: 0,
            phase: 0,
            spacing: [SPACING; 2],
        }
    }

    fn neighbour(&self) -> usize {
        let last = LEVELS.len() - 1;
        match self.current {
            0 => 1,
            c if c == last => c - 1,
            c if self.down => c - 1,
            c => c + 1,
        }
    }

    /// Which of `spacing` applies to the neighbour tried next: at an end
    /// level there is only one, whatever `down` says.
    fn side(&self) -> usize {
        usize::from(self.neighbour() < self.current)
    }

    fn phase_level(&self) -> u32 {
        match self.probing {
            true => LEVELS[self.neighbour()],
            false => LEVELS[self.current],
        }
    }

    /// `call` was cut into `n` requests that count in its phase's length
    /// (not its smaller first and last ones, nor the retries and halves of
    /// a split that may follow); nothing if another thread's call began
    /// the next phase meanwhile.
    fn count_requests(&mut self, call: &Call, n: u64) {
        if call.phase == self.phase {
            self.pos += n;
        }
    }

    /// An mWrite call begins: the phase may change, then the call is in
    /// it.
    fn begin_call(&mut self, now: Instant) -> Call {
        // Long enough, and of `RANKED` calls unless they are large ones.
        let long = self.pos >= self.len
            && (self.calls >= RANKED as u64 || self.pos >= LARGE_CALL * self.calls);
        if long || (self.probing && self.clearly_worse()) {
            self.next_phase();
        }
        self.calls += 1;
        Call {
            phase: self.phase,
            level: self.phase_level(),
            started: now,
        }
    }

    /// Ends this phase: after the neighbour's, compares.
    fn next_phase(&mut self) {
        self.large[usize::from(self.probing)] = self.pos >= LARGE_CALL * self.calls.max(1);
        self.probing = !self.probing;
        self.len = match self.probing {
            true => PHASE,
            false => {
                self.judge();
                PHASE * self.spacing[self.side()]
            }
        };
        self.phase += 1;
        self.pos = 0;
        self.calls = 0;
    }

    /// `call` moved `bytes` of JSON, every document written, in `took`.
    fn learn(&mut self, call: Call, bytes: usize, took: Duration) {
        if call.phase < self.since || bytes == 0 {
            return;
        }
        let ns_per_byte = took.as_nanos() as f64 / bytes as f64;
        let arm = match call.level {
            l if l == LEVELS[self.current] => &mut self.here,
            l if l == LEVELS[self.neighbour()] => &mut self.there,
            _ => return,
        };
        if arm.len() >= MOST_SAMPLES {
            arm.remove(0);
        }
        arm.push(ns_per_byte);
    }

    /// Far worse at once (level 6 beside a nearby Kuzzle): the rest of the
    /// phase would only cost.
    fn clearly_worse(&self) -> bool {
        !self.here.is_empty()
            && !self.there.is_empty()
            && median(&self.there) > median(&self.here) * CLEARLY_WORSE
    }

    /// After a phase at the neighbour: moves there for a gain clear of the
    /// noise. With `RANKED` calls or more in each arm, their medians
    /// `MARGIN` apart and a rank test `ERRORS` deviations sure (calls vary
    /// on a busy machine or a shared link, and medians and ranks are not
    /// swayed by one slow call as a mean is); with fewer (large calls, a
    /// few seconds each), `FEW_MARGIN` apart. No call yet in an arm, or
    /// fewer than `RANKED` small ones (the others retried or split) and
    /// the neighbour not far worse: the comparison goes on with the next
    /// phases, `MOST_DEFERRED` pairs at most.
    fn judge(&mut self) {
        let empty = self.here.is_empty() || self.there.is_empty();
        let (here, there) = match empty {
            true => (0.0, 0.0),
            false => (median(&self.here), median(&self.there)),
        };
        let few = self.here.len().min(self.there.len()) < RANKED;
        let unsure =
            empty || (few && !self.large.iter().all(|l| *l) && there <= here * CLEARLY_WORSE);
        if unsure && self.deferred < MOST_DEFERRED {
            self.deferred += 1;
            return;
        }
        let side = self.side();
        let below = side == 1;
        let wins = match (empty, few) {
            (true, _) => false,
            (false, false) => {
                here - there > here * MARGIN && cheaper_z(&self.there, &self.here) > ERRORS
            }
            (false, true) => here - there > here * FEW_MARGIN,
        };
        if wins {
            self.current = self.neighbour();
            self.spacing = [SPACING; 2];
        }
        // Below next only after the level above cost far more: then the
        // CPU limits, and a cheaper level may help; otherwise the bytes
        // limit, or nothing does, and a cheaper level would send more for
        // nothing (level 1 through the benchmark's uplink: a call 36%
        // slower than at 2).
        self.down = !wins && !below && there > here * CLEARLY_WORSE;
        if !wins {
            // A level that loses keeps losing where nothing changes: tried
            // less and less often, its cost (level 6's compression on a
            // nearby Kuzzle) fades; a change of link is still found.
            let s = &mut self.spacing[side];
            *s = (*s * 2).min(MOST_SPACING);
        }
        self.here.clear();
        self.there.clear();
        self.deferred = 0;
        self.since = self.phase + 1;
    }
}

/// The median of `v` (not empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n % 2 {
        1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// How many deviations `a`'s values rank below `b`'s (Mann-Whitney U,
/// normal approximation): 0 when they mix evenly, 2 or more when `a` is
/// lower beyond what chance mixes.
fn cheaper_z(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let mut u = 0.0;
    for x in a {
        for y in b {
            u += match x.total_cmp(y) {
                std::cmp::Ordering::Less => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Greater => 0.0,
            };
        }
    }
    let sd = (n * m * (n + m + 1.0) / 12.0).sqrt();
    match sd > 0.0 {
        true => (u - n * m / 2.0) / sd,
        false => 0.0,
    }
}

impl GzipPool {
    /// The level most requests are compressed at now.
    pub fn level(&self) -> u32 {
        self.fixed
            .unwrap_or_else(|| LEVELS[self.lock_choice().current])
    }

    fn lock_choice(&self) -> std::sync::MutexGuard<'_, Choice> {
        // Plain numbers, whole after any panic.
        self.choice.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An mWrite call begins, its requests gzip'd: their level is the one
    /// of the phase it begins in (`end_call` tells what it cost).
    pub fn begin_call(&self) -> Call {
        let now = Instant::now();
        match self.fixed {
            Some(level) => Call {
                phase: 0,
                level,
                started: now,
            },
            None => self.lock_choice().begin_call(now),
        }
    }

    /// `call` ended, having sent `bytes` of JSON; `clean`: every document
    /// was written, at the first try (else its time says little of the
    /// level).
    pub fn end_call(&self, call: Call, bytes: usize, clean: bool) {
        if self.fixed.is_none() && clean {
            self.lock_choice()
                .learn(call, bytes, call.started.elapsed());
        }
    }

    /// `call` was cut into `n` requests that are a fair sample of the link
    /// (`crate::mwrite::plan`): they count in its phase's length.
    pub fn planned(&self, call: &Call, n: usize) {
        if self.fixed.is_none() {
            self.lock_choice().count_requests(call, n as u64);
        }
    }

    /// `raw` as a gzip member, into `out` (emptied first), at `call`'s
    /// level: a request of the call, or the sample its plan estimates the
    /// ratio on.
    pub fn compress(&self, call: &Call, raw: &[u8], out: &mut Vec<u8>) {
        self.compress_at(call.level, raw, out);
    }

    /// `raw` at the current level, outside the choice: a query's request.
    pub fn compress_aside(&self, raw: &[u8], out: &mut Vec<u8>) {
        self.compress_at(self.level(), raw, out);
    }

    /// `raw` at `level` into `out`.
    fn compress_at(&self, level: u32, raw: &[u8], out: &mut Vec<u8>) {
        // A compressor is whole between calls, even after a panic.
        let lock = || self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let mut gzip = {
            let mut spare = lock();
            match spare.iter().position(|g| g.level == level) {
                Some(i) => spare.swap_remove(i),
                None => Gzip::new(level),
            }
        };
        gzip.compress(raw, out);
        let mut spare = lock();
        if spare.len() >= POOL_SIZE {
            spare.remove(0);
        }
        spare.push(gzip);
    }
}

/// gzip's header (RFC 1952) without name, time or flags; OS "unknown".
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

impl Gzip {
    /// `raw` as a gzip member, into `out` (emptied first).
    pub fn compress(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(raw.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        let deflate = &mut self.deflate;
        deflate.reset();
        loop {
            let done = deflate.total_in() as usize;
            match deflate.compress_vec(&raw[done..], out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => break,
                // Out of room: more, and go on.
                Ok(_) => out.reserve(out.capacity() / 2 + 1024),
                // Deflating into memory only fails on a misuse of the stream.
                Err(e) => unreachable!("deflate: {e}"),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(raw);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE: the length modulo 2^32.
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_roundtrip() {
        use std::io::Read;
        let mut packer = Gzip::default();
        let mut packed = Vec::new();
        // Reused, and with outputs larger than first reserved (noise).
        for raw in [
            br#"{"documents":[{"body":{"t":21.5}}]}"#.repeat(100),
            Vec::new(),
            (0..300_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
            br#"{"a":1}"#.to_vec(),
        ] {
            packer.compress(&raw, &mut packed);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, raw);
            if raw.starts_with(b"{\"documents") {
                assert!(packed.len() < raw.len() / 10);
            }
        }
        let pool = GzipPool::default();
        pool.compress(&pool.begin_call(), b"x", &mut packed);
        assert_eq!(packed[..10], GZIP_HEADER);
    }

    /// A simulated run of `n` calls, one at a time, each costing
    /// `cost(level)` per byte: the level each call went at.
    fn run(c: &mut Choice, n: usize, mut cost: impl FnMut(u32) -> f64) -> Vec<u32> {
        let t0 = Instant::now();
        (0..n)
            .map(|_| {
                let call = c.begin_call(t0);
                c.count_requests(&call, CALL);
                let took = Duration::from_nanos((cost(call.level) * 1e6) as u64);
                c.learn(call, 1_000_000, took);
                call.level
            })
            .collect()
    }

    /// Requests per simulated call.
    const CALL: u64 = 8;

    fn settle(cost: impl FnMut(u32) -> f64, n: usize) -> (u32, Vec<u32>) {
        let mut c = Choice::new();
        let seen = run(&mut c, n, cost);
        (LEVELS[c.current], seen)
    }

    /// The text documents of the comment above, 2 ns per byte of exchange
    /// not counting the bytes (a nearby Kuzzle), plus `per_wire_byte` ns
    /// for each byte on the wire.
    fn text(per_wire_byte: f64) -> impl Fn(u32) -> f64 {
        move |level: u32| {
            let (ratio, compress) = match level {
                1 => (2.72, 2.2),
                2 => (3.78, 3.4),
                _ => (4.58, 30.5),
            };
            compress + 100.0 + per_wire_byte / ratio
        }
    }

    #[test]
    fn the_level_follows_what_limits() {
        // Loopback: the bytes cost next to nothing; level 2 stays, and
        // level 1 saves too little to move to; the other levels are tried
        // less and less: over 2,500 calls, fewer than one in 25, and fewer
        // than one in 50 over the last 1,250 (one phase in
        // `MOST_SPACING + 1` in the end).
        let (level, seen) = settle(text(5.0), 2_500);
        assert_eq!(level, 2);
        let tried = seen.iter().filter(|&&l| l != 2).count();
        assert!(tried < 2_500 / 25, "{tried} calls at other levels");
        let late = seen[1_250..].iter().filter(|&&l| l != 2).count();
        assert!(late < 1_250 / 50, "{late} calls at other levels, late");
        // Level 6 costs more but not far more: the CPU does not limit, and
        // level 1 is never tried.
        assert!(!seen.contains(&1));
        // A 10 Mbit/s link shared by 8 requests: 6.4 µs per wire byte.
        // Moving takes one comparison: the calls of a phase at level 2,
        // then of one at 6; from then on level 6 carries most calls.
        let (level, seen) = settle(text(6400.0), 250);
        assert_eq!(level, 6);
        let phase = RANKED.max(PHASE.div_ceil(CALL) as usize);
        assert!(seen[..phase].iter().all(|&l| l == 2), "{seen:?}");
        assert!(seen[phase..2 * phase].iter().all(|&l| l == 6), "{seen:?}");
        let at_6 = seen[phase..].iter().filter(|&&l| l == 6).count();
        assert!(at_6 * 3 >= (seen.len() - phase) * 2, "{at_6}");
        // A slow CPU beside a fast link: compression is the cost; level 1.
        let slow_cpu = |level: u32| match level {
            1 => 22.0 + 20.0,
            2 => 34.0 + 20.0,
            _ => 305.0 + 20.0,
        };
        assert_eq!(settle(slow_cpu, 250).0, 1);
        // Level 6 lost far there: the level above is tried half as often,
        // and the one below next.
        let mut c = Choice::new();
        run(&mut c, 2 * RANKED, slow_cpu);
        assert_eq!((c.spacing, c.down), ([2 * SPACING, SPACING], true));
    }

    #[test]
    fn a_phase_changes_only_between_calls_and_its_calls_go_at_one_level() {
        // Calls of 5 requests that teach (the plan counts no others): the
        // first phase (24 at least) ends with the call that reaches 25.
        let mut c = Choice::new();
        let t0 = Instant::now();
        let mut levels = Vec::new();
        for _ in 0..12 {
            let call = c.begin_call(t0);
            c.count_requests(&call, 5);
            levels.push(call.level);
        }
        assert_eq!(levels[..5], [2; 5], "{levels:?}");
        assert_eq!(levels[5..10], [6; 5], "{levels:?}");
        assert_eq!(levels[10], 2, "{levels:?}");
    }

    #[test]
    fn few_clean_small_calls_are_not_judged_as_large_ones() {
        // Calls of 8 requests, two in three retried (they teach nothing): a
        // phase of 4 calls has 1 or 2 clean ones. Level 6, 7% cheaper, is
        // moved to once each arm has `RANKED` clean calls, not on one pair
        // by the wider margin meant for large calls.
        let mut c = Choice::new();
        let t0 = Instant::now();
        let mut clean_at_6 = 0;
        for i in 0..1_000 {
            let call = c.begin_call(t0);
            if LEVELS[c.current] == 6 {
                break;
            }
            c.count_requests(&call, CALL);
            if i % 3 == 0 {
                let cost = if call.level == 6 { 930 } else { 1_000 };
                c.learn(call, 1_000_000, Duration::from_micros(cost));
                clean_at_6 += usize::from(call.level == 6);
            }
        }
        assert_eq!(LEVELS[c.current], 6, "found");
        assert!(clean_at_6 >= RANKED, "moved on {clean_at_6} clean calls");
    }

    #[test]
    fn a_neighbour_that_never_gives_a_clean_call_is_tried_less_and_less() {
        // Every call at level 6 retried (it teaches nothing): the comparison
        // cannot be decided, yet after `MOST_DEFERRED` more tries level 6
        // loses, and its phases grow rare as for any loss.
        let mut c = Choice::new();
        let t0 = Instant::now();
        let mut at_6 = 0;
        for _ in 0..4_000 {
            let call = c.begin_call(t0);
            c.count_requests(&call, CALL);
            match call.level {
                6 => at_6 += 1,
                _ => c.learn(call, 1_000_000, Duration::from_micros(1_000)),
            }
        }
        assert_eq!(LEVELS[c.current], 2);
        assert_eq!(c.spacing[0], MOST_SPACING, "backed off");
        assert!(at_6 < 4_000 / 10, "{at_6} calls at level 6");
        assert!(c.here.len() <= MOST_SAMPLES && c.there.is_empty());
    }

    #[test]
    fn large_calls_compare_one_by_one_with_a_wider_margin() {
        // One call per phase (calls of 25 full requests: 16 or more make a
        // call large): level 6 is 12% cheaper and found...
        let mut c = Choice::new();
        let t0 = Instant::now();
        let at = |c: &mut Choice, cost: f64| {
            let call = c.begin_call(t0);
            c.count_requests(&call, 25);
            c.learn(
                call,
                1_000_000,
                Duration::from_millis((cost * 1000.0) as u64),
            );
            call.level
        };
        assert_eq!(at(&mut c, 4.8), 2);
        assert_eq!(at(&mut c, 4.2), 6);
        assert_eq!(at(&mut c, 4.2), 6);
        assert_eq!(LEVELS[c.current], 6);
        // ...but not a level 5% cheaper, within the noise of one call.
        let mut c = Choice::new();
        at(&mut c, 4.8);
        at(&mut c, 4.56);
        assert_eq!(at(&mut c, 4.8), 2);
        assert_eq!(LEVELS[c.current], 2);
    }

    #[test]
    fn a_phase_far_worse_at_once_ends_at_the_next_call() {
        // Level 6 on a slow CPU: its phase ends after its first call, not
        // after `PHASE` requests.
        let slow_cpu = |level: u32| if level == 6 { 325.0 } else { 54.0 };
        let (_, seen) = settle(slow_cpu, 2 * (PHASE / CALL) as usize);
        assert_eq!(seen.iter().filter(|&&l| l == 6).count(), 1, "{seen:?}");
    }

    #[test]
    fn at_an_end_level_each_lost_comparison_halves_the_tries() {
        // Level 6 (the last) wins by far: its only neighbour, 2, loses
        // every comparison, and each loss doubles its spacing.
        let mut c = Choice::new();
        c.current = LEVELS.len() - 1;
        let mut spacings = Vec::new();
        for _ in 0..20_000 {
            let before = c.spacing[1];
            run(&mut c, 1, |level| if level == 6 { 100.0 } else { 200.0 });
            if c.spacing[1] != before {
                spacings.push(c.spacing[1]);
            }
        }
        assert_eq!(LEVELS[c.current], 6);
        assert_eq!(spacings, [8, 16, 32, 64], "{:?}", c.spacing);
        assert_eq!(c.spacing[0], SPACING, "the side above is never tried");
    }

    /// ±`x` of noise on `cost` (a busy machine, a shared link).
    fn noisy(x: f64, cost: impl Fn(u32) -> f64) -> impl FnMut(u32) -> f64 {
        let mut r: u32 = 12345;
        move |level| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            cost(level) * (1.0 - x + 2.0 * x * (r % 1000) as f64 / 1000.0)
        }
    }

    #[test]
    fn noise_alone_seldom_moves_it_and_a_real_gain_shows_through_it() {
        // Every level costs the same, calls ±30%: moves are rare (and
        // harmless).
        let mut c = Choice::new();
        let mut moves = 0;
        let mut cost = noisy(0.3, |_| 100.0);
        for _ in 0..2_500 {
            let before = c.current;
            run(&mut c, 1, &mut cost);
            moves += usize::from(c.current != before);
        }
        assert!(moves <= 2, "{moves} moves over 2,500 calls");
        // Level 6 is 15% cheaper, behind the same noise: found.
        let link = |level: u32| match level {
            1 => 2_400.0,
            2 => 1_800.0,
            _ => 1_530.0,
        };
        let (level, seen) = settle(noisy(0.3, link), 600);
        assert_eq!(level, 6, "{:?}", &seen[seen.len() - 10..]);
    }

    #[test]
    fn the_rank_test_and_the_median() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let low: Vec<f64> = (0..10).map(f64::from).collect();
        let high: Vec<f64> = (10..20).map(f64::from).collect();
        assert!(cheaper_z(&low, &high) > 3.0);
        assert!(cheaper_z(&high, &low) < -3.0);
        let even: Vec<f64> = (0..20).filter(|i| i % 2 == 0).map(f64::from).collect();
        let odd: Vec<f64> = (0..20).filter(|i| i % 2 == 1).map(f64::from).collect();
        assert!(cheaper_z(&even, &odd).abs() < 0.5);
        // A few outliers do not hide a real shift, as they would a mean's.
        let mut shifted: Vec<f64> = high.iter().map(|x| x - 3.0).collect();
        shifted.extend([1000.0, 2000.0]);
        assert!(cheaper_z(&shifted, &high) > 0.0);
    }

    #[test]
    fn a_call_that_failed_or_moved_nothing_teaches_nothing() {
        let pool = GzipPool::default();
        let call = pool.begin_call();
        pool.end_call(call, 1000, false);
        pool.end_call(call, 0, true);
        assert!(pool.lock_choice().here.is_empty());
        pool.end_call(call, 1000, true);
        assert_eq!(pool.lock_choice().here.len(), 1);
        // Pinned: nothing is learnt, every call at that level.
        let pool = GzipPool::new(Some(9));
        let call = pool.begin_call();
        assert_eq!(call.level, 9);
        pool.end_call(call, 1000, true);
        assert!(pool.lock_choice().here.is_empty());
    }
}
