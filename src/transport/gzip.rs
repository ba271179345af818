//! gzip for requests: compressors kept from one request to the next, and
//! the level chosen by what limits the client.
//!
//! The level: among `LEVELS`, the one with which a request costs the least
//! time per byte of JSON, compressing it plus exchanging it. Where the CPU
//! limits (a nearby Kuzzle), compressing harder only adds time; where the
//! link limits (a slow uplink, its bandwidth shared by the requests in
//! flight), each byte saved shortens the exchange. So every
//! `PROBE_EVERY`th request is compressed at a neighbouring level (the one
//! above and the one below in turn; a level that lost a comparison is
//! probed half as often the next time, down to one request in
//! `MOST_PROBE_EVERY`), and once `PROBES` of them are in, the
//! client moves there when they cost at least `MARGIN` less per byte than
//! the requests at the current level sent meanwhile, and by more than the
//! noise (three standard errors of the difference). Both arms are
//! measured in the same minutes, interleaved, so a machine or a link that
//! changes speed affects them alike.

use std::cell::Cell;
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
/// One gzip request in this many goes at a neighbouring level, at first...
const PROBE_EVERY: u64 = 16;
/// ...and at least, after comparisons it lost.
const MOST_PROBE_EVERY: u64 = 256;
/// Probes, and as many requests at the current level at least, compared.
const PROBES: usize = 8;
/// How much cheaper per byte a neighbour must be to be moved to.
const MARGIN: f64 = 0.05;

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

/// The level, and what the current comparison has seen.
#[derive(Debug)]
struct Choice {
    current: usize,
    /// Gzip requests so far.
    requests: u64,
    /// The neighbour tried now: below (true) or above.
    down: bool,
    /// Cost per byte (ns) of requests at the current level and at the
    /// neighbour, since the comparison began.
    here: Vec<f64>,
    there: Vec<f64>,
    /// One request in this many probes the level above ([0]) or below
    /// ([1]): `PROBE_EVERY`, doubled after each comparison the probed
    /// level lost, up to `MOST_PROBE_EVERY`.
    spacing: [u64; 2],
}

impl Choice {
    fn new() -> Choice {
        Choice {
            current: START,
            requests: 0,
            down: false,
            here: Vec::new(),
            there: Vec::new(),
            spacing: [PROBE_EVERY; 2],
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

    /// Which of `spacing` applies to the neighbour tried now: at an end
    /// level there is only one, whatever `down` says.
    fn side(&self) -> usize {
        usize::from(self.neighbour() < self.current)
    }

    /// The level of the next request.
    fn pick(&mut self) -> u32 {
        self.requests += 1;
        match self.requests % self.spacing[self.side()] {
            0 => LEVELS[self.neighbour()],
            _ => LEVELS[self.current],
        }
    }

    /// A request compressed at `level` cost `ns_per_byte`.
    fn learn(&mut self, level: u32, ns_per_byte: f64) {
        if level == LEVELS[self.current] {
            self.here.push(ns_per_byte);
        } else if level == LEVELS[self.neighbour()] {
            self.there.push(ns_per_byte);
        }
        // A probe's level that is no longer the neighbour: not counted.
        if self.there.len() < PROBES || self.here.len() < PROBES {
            return;
        }
        // Moved only for a gain clear of the noise: both by `MARGIN` and by
        // three standard errors of the difference (round trips on a
        // busy machine or a shared link vary far more than 5%).
        let (here, here_se) = mean_se(&self.here);
        let (there, there_se) = mean_se(&self.there);
        let gain = here - there;
        if gain > here * MARGIN && gain > 3.0 * (here_se.powi(2) + there_se.powi(2)).sqrt() {
            self.current = self.neighbour();
            self.spacing = [PROBE_EVERY; 2];
        } else {
            // A level that loses keeps losing where nothing changes: probed
            // less and less often, its cost (level 6's compression on a
            // nearby Kuzzle) fades; a change of link is still found.
            let side = self.side();
            let s = &mut self.spacing[side];
            *s = (*s * 2).min(MOST_PROBE_EVERY);
        }
        self.here.clear();
        self.there.clear();
        self.down = !self.down;
    }
}

/// The mean of `v` and its standard error.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

thread_local! {
    /// This thread's last compression: its level, bytes in, time taken.
    static LAST: Cell<Option<(u32, usize, Duration)>> = const { Cell::new(None) };
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

    /// `raw` as a gzip member, into `out` (emptied first), at the level
    /// chosen for this mWrite request, whose exchange `exchanged` reports.
    pub fn compress(&self, raw: &[u8], out: &mut Vec<u8>) {
        let level = match self.fixed {
            Some(level) => level,
            None => self.lock_choice().pick(),
        };
        let took = self.compress_at(level, raw, out);
        LAST.set(Some((level, raw.len(), took)));
    }

    /// `raw` at the current level, outside the choice: a query's request,
    /// or a sample that is never sent (neither is an mWrite exchange to
    /// learn from, and a sample must not be spent as a probe).
    pub fn compress_aside(&self, raw: &[u8], out: &mut Vec<u8>) {
        self.compress_at(self.level(), raw, out);
    }

    /// `raw` at `level` into `out`: the time it took.
    fn compress_at(&self, level: u32, raw: &[u8], out: &mut Vec<u8>) -> Duration {
        // A compressor is whole between calls, even after a panic.
        let lock = || self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let mut gzip = {
            let mut spare = lock();
            match spare.iter().position(|g| g.level == level) {
                Some(i) => spare.swap_remove(i),
                None => Gzip::new(level),
            }
        };
        let started = Instant::now();
        gzip.compress(raw, out);
        let took = started.elapsed();
        let mut spare = lock();
        if spare.len() >= POOL_SIZE {
            spare.remove(0);
        }
        spare.push(gzip);
        took
    }

    /// The request this thread compressed last (`raw_len` bytes before
    /// gzip) was exchanged, successfully, in `took`.
    pub fn exchanged(&self, raw_len: usize, took: Duration) {
        let Some((level, len, compressing)) = LAST.take() else {
            return;
        };
        if self.fixed.is_some() {
            return;
        }
        if len != raw_len || raw_len == 0 {
            return;
        }
        let ns = (compressing + took).as_nanos() as f64 / raw_len as f64;
        self.lock_choice().learn(level, ns);
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
        pool.compress(b"x", &mut packed);
        assert_eq!(packed[..10], GZIP_HEADER);
    }

    /// Requests costing what `cost(level)` says, per byte: the level the
    /// choice ends at after `n` of them.
    fn settle(mut cost: impl FnMut(u32) -> f64, n: usize) -> (u32, Vec<u32>) {
        let mut c = Choice::new();
        let mut seen = Vec::new();
        for _ in 0..n {
            let level = c.pick();
            c.learn(level, cost(level));
            seen.push(LEVELS[c.current]);
        }
        (LEVELS[c.current], seen)
    }

    #[test]
    fn the_level_follows_what_limits() {
        // The text documents of the comment above, 2 ns per byte of
        // exchange not counting the bytes (a nearby Kuzzle), plus
        // `per_wire_byte` ns for each byte on the wire.
        let text = |per_wire_byte: f64| {
            move |level: u32| {
                let (ratio, compress) = match level {
                    1 => (2.72, 2.2),
                    2 => (3.78, 3.4),
                    _ => (4.58, 30.5),
                };
                compress + 100.0 + per_wire_byte / ratio
            }
        };
        // Loopback: the bytes cost next to nothing; level 2 stays, and
        // level 1 saves too little to move to.
        let (level, seen) = settle(text(5.0), 2000);
        assert_eq!(level, 2);
        assert!(seen.iter().all(|&l| l == 2), "{seen:?}");
        // ...and its probes fade: over 20,000 requests, about one in 200
        // at another level, not one in 16.
        let mut c = Choice::new();
        let cost = text(5.0);
        let probes = (0..20_000)
            .filter(|_| {
                let level = c.pick();
                c.learn(level, cost(level));
                level != 2
            })
            .count();
        assert!(probes < 20_000 / 150, "{probes} probes");
        // A 10 Mbit/s link shared by 8 requests: 6.4 µs per wire byte.
        let (level, _) = settle(text(6400.0), 2000);
        assert_eq!(level, 6);
        // A slow CPU beside a fast link: compression is the cost; level 1.
        let slow_cpu = |level: u32| match level {
            1 => 22.0 + 20.0,
            2 => 34.0 + 20.0,
            _ => 305.0 + 20.0,
        };
        assert_eq!(settle(slow_cpu, 2000).0, 1);
        // Moving takes one comparison: PROBES probes, PROBE_EVERY apart.
        let (_, seen) = settle(text(6400.0), 2000);
        let moved = seen.iter().position(|&l| l == 6).unwrap();
        assert!(moved < (PROBE_EVERY as usize) * PROBES * 2 + 1, "{moved}");
    }

    #[test]
    fn at_an_end_level_each_lost_comparison_halves_the_probes() {
        // Level 6 (the last) wins by far: its only neighbour, 2, loses
        // every comparison, and each loss doubles its spacing (not every
        // other one, as when the side followed `down` alone).
        let mut c = Choice::new();
        c.current = LEVELS.len() - 1;
        let cost = |level: u32| if level == 6 { 100.0 } else { 200.0 };
        let mut spacings = Vec::new();
        for _ in 0..200_000 {
            let level = c.pick();
            let before = c.spacing[1];
            c.learn(level, cost(level));
            if c.spacing[1] != before {
                spacings.push(c.spacing[1]);
            }
        }
        assert_eq!(LEVELS[c.current], 6);
        assert_eq!(spacings, [32, 64, 128, 256], "{c:?}");
        assert_eq!(c.spacing[0], PROBE_EVERY, "the side above is never tried");
    }

    /// ±30% of noise on `cost` (a busy machine, a shared link).
    fn noisy(cost: impl Fn(u32) -> f64) -> impl FnMut(u32) -> f64 {
        let mut x: u32 = 12345;
        move |level| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            cost(level) * (0.7 + 0.6 * (x % 1000) as f64 / 1000.0)
        }
    }

    #[test]
    fn noise_alone_seldom_moves_it_and_a_real_gain_shows_through_it() {
        // Every level costs the same: moves are rare (and harmless).
        let mut cost = noisy(|_| 100.0);
        let mut c = Choice::new();
        let mut moves = 0;
        for _ in 0..20_000 {
            let level = c.pick();
            let before = c.current;
            c.learn(level, cost(level));
            moves += usize::from(c.current != before);
        }
        assert!(moves <= 2, "{moves} moves over 20,000 requests");
        // Level 6 is 15% cheaper, behind the same noise: found.
        let link = |level: u32| match level {
            1 => 2_400.0,
            2 => 1_800.0,
            _ => 1_530.0,
        };
        let (level, seen) = settle(noisy(link), 5_000);
        assert_eq!(level, 6, "{:?}", &seen[seen.len() - 10..]);
    }

    #[test]
    fn an_exchange_teaches_the_level_of_this_threads_compression() {
        let pool = GzipPool::default();
        let mut out = Vec::new();
        pool.compress(&[b'a'; 1000], &mut out);
        // Another size (another request's): not learnt.
        pool.exchanged(999, Duration::from_millis(1));
        assert!(pool.lock_choice().here.is_empty());
        pool.compress(&[b'a'; 1000], &mut out);
        pool.exchanged(1000, Duration::from_millis(1));
        assert_eq!(pool.lock_choice().here.len(), 1);
        // Taken once.
        pool.exchanged(1000, Duration::from_millis(1));
        assert_eq!(pool.lock_choice().here.len(), 1);
    }
}
