//! The host names' addresses, looked up once a minute at most.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};

/// How long a host name's addresses are kept (libcurl's DNS cache default).
const DNS_CACHE_TTL: Duration = Duration::from_secs(60);

/// ureq's resolver starts a thread for every lookup (to bound it by the
/// timeout), and Kuzzle closes every connection, so that would be a thread
/// per request: a tenth of the client's CPU in a bulk write. An IP address
/// needs no lookup, and a name is looked up once a minute at most (libcurl
/// keeps names as long), again after a request that failed; successive
/// connections take its addresses in turn, as fresh lookups of a
/// round-robin name would.
#[derive(Debug, Default)]
pub(super) struct CachingResolver {
    lookup: DefaultResolver,
    pub(super) cache: Arc<DnsCache>,
}

/// The names looked up (one per node of `hosts`): `host:port`, when, its
/// addresses, and how many times they were handed out.
#[derive(Debug, Default)]
pub struct DnsCache(Mutex<Vec<DnsEntry>>);

type DnsEntry = (String, Instant, ResolvedSocketAddrs, usize);

/// Entries kept at most: one per node (`hosts` has 64 at most).
const MAX_ENTRIES: usize = 64;

impl DnsCache {
    /// The entries; a thread that panicked holding them left them whole.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DnsEntry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every name is looked up again (failures are rare: a lookup each is
    /// cheap, and telling which node failed is not worth the bookkeeping).
    pub(super) fn forget(&self) {
        self.lock().clear();
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ResolvedSocketAddrs, ureq::Error> {
        let port = match (uri.scheme_str(), uri.port_u16()) {
            (_, Some(port)) => port,
            (Some("http"), None) => 80,
            (Some("https"), None) => 443,
            // Other schemes (a proxy's) keep ureq's own rules.
            _ => return self.lookup.resolve(uri, config, timeout),
        };
        let host = uri.host().unwrap_or_default();
        // `[::1]` keeps its brackets in a URI.
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        let key = format!("{host}:{port}");
        let mut cache = self.cache.lock();
        if let Some((_, at, addrs, used)) = cache.iter_mut().find(|e| e.0 == key) {
            if at.elapsed() < DNS_CACHE_TTL {
                let mut addrs = addrs.clone();
                let turn = *used % addrs.len().max(1);
                *used += 1;
                addrs.rotate_left(turn);
                return Ok(addrs);
            }
        }
        // Not under the lock: a slow lookup must not hold up other threads.
        drop(cache);
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        cache = self.cache.lock();
        cache.retain(|e| e.0 != key);
        if cache.len() >= MAX_ENTRIES {
            cache.remove(0);
        }
        cache.push((key, Instant::now(), addrs.clone(), 1));
        Ok(addrs)
    }
}
