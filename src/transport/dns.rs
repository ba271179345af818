//! The host name's addresses, looked up once a minute at most.

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

/// The last name looked up: `host:port`, when, its addresses, and how many
/// times they were handed out.
#[derive(Debug, Default)]
pub struct DnsCache(Mutex<Option<DnsEntry>>);

type DnsEntry = (String, Instant, ResolvedSocketAddrs, usize);

impl DnsCache {
    /// The entry; a thread that panicked holding it left it whole.
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DnsEntry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn forget(&self) {
        *self.lock() = None;
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
        if let Some((k, at, addrs, used)) = cache.as_mut() {
            if *k == key && at.elapsed() < DNS_CACHE_TTL {
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
        *cache = Some((key, Instant::now(), addrs.clone(), 1));
        Ok(addrs)
    }
}
