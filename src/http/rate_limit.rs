//! The per-client rate limit of the ingest endpoints (`--rate-limit`, off by default):
//! a token bucket per client address counting **events** (a batch of 1,000 takes
//! 1,000 tokens), so one client (a bot reloading a page, a script posting batches in a
//! loop) gets 429 for the whole request instead of inflating counts, while everyone
//! else is served.
//!
//! Hand-written rather than `governor`'s keyed limiter: its map of clients can only be
//! pruned after the fact (`retain_recent`), while here the map has a hard cap, checked
//! on insert, that a flood of spoofed or rotating addresses cannot push past.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Buckets are swept for idle clients once every this many checks.
const SWEEP_EVERY: u64 = 65_536;
/// Most clients with a bucket of their own. Past it (after a sweep of idle ones), new
/// clients share one overflow bucket: under an address flood they are limited
/// together, and memory stays at ~100 bytes x this.
pub const MAX_CLIENTS: usize = 100_000;
/// The key of the shared overflow bucket.
const OVERFLOW: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by client address: `per_second` events a second, in bursts of up to
/// `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    buckets: DashMap<IpAddr, Bucket, foldhash::fast::RandomState>,
    checks: AtomicU64,
    max_clients: usize,
}

/// IPv6 clients are limited per /64: one host usually holds a whole /64.
fn key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl RateLimiter {
    /// `per_second` events a second per client (at least 1).
    pub fn new(per_second: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            buckets: DashMap::default(),
            checks: AtomicU64::new(0),
            max_clients: MAX_CLIENTS,
        }
    }

    /// The most events one request may carry and ever pass: the burst.
    pub fn burst(&self) -> usize {
        self.per_second as usize
    }

    /// Takes `events` tokens of `client`'s bucket at `now`, or none and says how long
    /// until the bucket could hold them (a request larger than the burst can never pass;
    /// it is told to wait for a full bucket).
    pub fn check(&self, client: IpAddr, events: usize, now: Instant) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        let mut client = key(client);
        if !self.buckets.contains_key(&client) && self.buckets.len() >= self.max_clients {
            self.sweep(now);
            if self.buckets.len() >= self.max_clients {
                client = OVERFLOW;
            }
        }
        let mut bucket = self.buckets.entry(client).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.at = now;
        let wanted = events as f64;
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            Ok(())
        } else {
            let missing = wanted.min(self.per_second) - bucket.tokens;
            Err(Duration::from_secs_f64(missing.max(0.0) / self.per_second))
        }
    }

    /// Forgets clients whose bucket has refilled: they are as good as new.
    fn sweep(&self, now: Instant) {
        let refill = Duration::from_secs(1);
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
        let limiter = RateLimiter::new(4);
        let t = Instant::now();
        for _ in 0..4 {
            assert!(limiter.check(ip("10.0.0.1"), 1, t).is_ok());
        }
        let wait = limiter.check(ip("10.0.0.1"), 1, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(
            limiter.check(ip("10.0.0.2"), 1, t).is_ok(),
            "another client is not limited"
        );
        assert!(limiter.check(ip("10.0.0.1"), 1, t + Duration::from_millis(250)).is_ok());
        assert!(limiter
            .check(ip("10.0.0.1"), 1, t + Duration::from_millis(260))
            .is_err());
    }

    #[test]
    fn a_batch_takes_one_token_per_event_or_none() {
        let limiter = RateLimiter::new(10);
        let t = Instant::now();
        assert!(limiter.check(ip("10.0.0.1"), 8, t).is_ok());
        assert!(limiter.check(ip("10.0.0.1"), 3, t).is_err(), "2 tokens left");
        assert!(
            limiter.check(ip("10.0.0.1"), 2, t).is_ok(),
            "the refused batch took none"
        );
        assert!(
            limiter.check(ip("10.0.0.2"), 1_000, t).is_err(),
            "larger than the burst"
        );
    }

    #[test]
    fn idle_clients_are_swept() {
        let limiter = RateLimiter::new(10);
        let t = Instant::now();
        limiter.check(ip("10.0.0.1"), 1, t).unwrap();
        limiter.sweep(t + Duration::from_secs(2));
        assert_eq!(limiter.clients(), 0);
    }

    #[test]
    fn a_flood_of_addresses_cannot_grow_the_map_past_its_cap() {
        let mut limiter = RateLimiter::new(1);
        limiter.max_clients = 100;
        let t = Instant::now();
        for i in 0..10_000u32 {
            let _ = limiter.check(IpAddr::V4(i.into()), 1, t);
        }
        assert!(limiter.clients() <= 101, "{}", limiter.clients());
    }

    #[test]
    fn an_ipv6_host_is_limited_per_64() {
        let limiter = RateLimiter::new(1);
        let t = Instant::now();
        assert!(limiter.check(ip("2001:db8::1"), 1, t).is_ok());
        assert!(limiter.check(ip("2001:db8::2"), 1, t).is_err());
    }
}
