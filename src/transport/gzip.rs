//! gzip for requests: compressors kept from one request to the next.

use std::sync::Mutex;

/// gzip level 2: with zlib-rs, sensor JSON shrinks ~6.8x (level 3: ~8.9x)
/// at 1.3x level 3's speed, text 3.8x (3.9x) at 1.4x; level 1 is zlib-rs's
/// "quick" strategy, faster still but 2.7x on text, which costs more on a
/// slow uplink than it saves (BENCHMARKS.md).
const GZIP_LEVEL: u32 = 2;

/// A gzip compressor kept from one request to the next: a new deflate state
/// is ~380 KB to allocate and fault in, for each request otherwise.
pub struct Gzip(flate2::Compress);

impl Default for Gzip {
    fn default() -> Gzip {
        Gzip(flate2::Compress::new(
            flate2::Compression::new(GZIP_LEVEL),
            false,
        ))
    }
}

/// Compressors shared by a client's threads. Compressing a request takes a
/// millisecond where sending it takes many: a few serve every worker, and
/// fewer states stay in memory than one per worker (3 MB for 8).
#[derive(Default)]
pub struct GzipPool(Mutex<Vec<Gzip>>);

/// Compressors kept at most: more at once (many threads sharing a client)
/// get one each, dropped after use.
const POOL_SIZE: usize = 4;

impl GzipPool {
    /// `raw` as a gzip member, into `out` (emptied first).
    pub fn compress(&self, raw: &[u8], out: &mut Vec<u8>) {
        // A compressor is whole between calls, even after a panic.
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut gzip = lock().pop().unwrap_or_default();
        gzip.compress(raw, out);
        let mut pool = lock();
        if pool.len() < POOL_SIZE {
            pool.push(gzip);
        }
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
        let deflate = &mut self.0;
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
}
