//! The per-client rate limit of the ingest endpoints (`--rate-limit`, off by default):
//! a token bucket per client address, so one misbehaving client (a bot reloading a
//! page, a script posting beacons in a loop) gets 429 instead of inflating counts,
//! while everyone else is served. Behind a proxy the client is the address the proxy
//! puts in `--client-ip-header`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::{HeaderMap, HeaderName};

/// Buckets are swept for idle clients once every this many checks.
const SWEEP_EVERY: u64 = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by client address: `per_second` requests a second, in bursts of up
/// to `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: DashMap<IpAddr, Bucket, foldhash::fast::RandomState>,
    checks: AtomicU64,
    client_header: Option<HeaderName>,
}

impl RateLimiter {
    /// `per_second` requests a second per client (at least 1); the client is the
    /// connection's peer, or the last address of `client_header` when it has one.
    pub fn new(per_second: u32, client_header: Option<HeaderName>) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            buckets: DashMap::default(),
            checks: AtomicU64::new(0),
            client_header,
        }
    }

    /// The client of a request: the last address in the configured header (the one
    /// the nearest proxy added: earlier ones are the client's own claims), else `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.client_header
            .as_ref()
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// Takes one token of `client`'s bucket at `now`, or says how long until one is
    /// available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        let mut bucket = self.buckets.entry(client).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        }
    }

    /// Forgets clients whose bucket has refilled: they are as good as new.
    fn sweep(&self, now: Instant) {
        let refill = Duration::from_secs_f64(1.0);
        self.buckets.retain(|_, b| now.saturating_duration_since(b.at) < refill);
    }

    /// Clients with a bucket.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_a_burst_then_its_rate() {
        let limiter = RateLimiter::new(4, None);
        let t = Instant::now();
        for _ in 0..4 {
            assert!(limiter.check(ip("10.0.0.1"), t).is_ok());
        }
        let wait = limiter.check(ip("10.0.0.1"), t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(
            limiter.check(ip("10.0.0.2"), t).is_ok(),
            "another client is not limited"
        );
        assert!(limiter.check(ip("10.0.0.1"), t + Duration::from_millis(250)).is_ok());
        assert!(limiter.check(ip("10.0.0.1"), t + Duration::from_millis(260)).is_err());
    }

    #[test]
    fn behind_a_proxy_the_client_is_the_last_forwarded_address() {
        let limiter = RateLimiter::new(1, Some(HeaderName::from_static("x-forwarded-for")));
        let mut headers = HeaderMap::new();
        let peer = ip("127.0.0.1");
        assert_eq!(limiter.client(peer, &headers), peer);
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(limiter.client(peer, &headers), ip("203.0.113.7"));
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(limiter.client(peer, &headers), peer);
        let direct = RateLimiter::new(1, None);
        headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(
            direct.client(peer, &headers),
            peer,
            "the header is trusted only when configured"
        );
    }

    #[test]
    fn idle_clients_are_swept() {
        let limiter = RateLimiter::new(10, None);
        let t = Instant::now();
        limiter.check(ip("10.0.0.1"), t).unwrap();
        limiter.sweep(t + Duration::from_secs(2));
        assert_eq!(limiter.clients(), 0);
    }
}
