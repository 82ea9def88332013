//! Unique visitors: a visitor is a keyed hash (SipHash-1-3) of the day's random salt,
//! the client address and the `User-Agent`. The salt is shared by every instance
//! through the store (the first writer of a day's salt wins), rotates at 00:00 UTC and
//! is deleted after two days, after which no hash can be linked to an address again.
//! Views carry their hash (computed once per request) to the pending map; each flush
//! adds the day's hashes to a per-article, per-day HyperLogLog sketch in the store
//! (Redis `PFADD`, or `cardinality-estimator` in redb) and adds what the sketch's
//! estimate grew by to the article's `visitors` total: distinct visitors per day,
//! summed over days. No address, agent or cookie is stored.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use siphasher::sip::SipHasher13;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// A salt: 16 random bytes, the SipHash key.
pub type Salt = [u8; 16];

/// A UTC day: days since the Unix epoch.
pub type Day = u32;

/// One visitor of one day: (day, keyed hash). What a view carries to the store.
pub type Mark = (Day, u64);

/// The embedded store's per-article, per-day sketch: HyperLogLog with 2^14 registers
/// (about 0.8 % standard error, as Redis's), small exact representations first. Items
/// are inserted as their keyed hash, so the hasher parameter is never used.
pub type Sketch = cardinality_estimator::CardinalityEstimator<u64, std::collections::hash_map::DefaultHasher, 14, 6>;

/// How long a salt (and a day's sketches) is kept, in days after its own.
pub const KEEP_DAYS: u32 = 2;

/// How often the salts of today and tomorrow are fetched (and created ahead of time,
/// so midnight needs no round trip on the hot path).
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The UTC day of `unix_secs`.
pub fn day_of(unix_secs: u64) -> Day {
    (unix_secs / 86_400) as Day
}

/// Today, by the system clock.
pub fn today() -> Day {
    day_of(crate::clock::unix_secs())
}

/// A fresh random salt (std's randomly seeded hasher, twice: no extra crate, and the
/// salt only has to be unguessable for two days).
pub fn random_salt() -> Salt {
    use std::hash::BuildHasher;
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// The salts this instance knows (today's and tomorrow's), for the hot path.
#[derive(Debug, Default)]
pub struct Salts {
    // std RwLock: read on every ingest request, written once a minute, never across an await.
    known: RwLock<Vec<(Day, Salt)>>,
}

impl Salts {
    /// The visitor hash of (`addr`, `user_agent`) on `day`, or `None` while that day's
    /// salt is not known yet (the store was unreachable since start).
    pub fn mark(&self, day: Day, addr: IpAddr, user_agent: &[u8]) -> Option<Mark> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let salt = known.iter().find(|(d, _)| *d == day).map(|(_, s)| *s)?;
        drop(known);
        let mut h = SipHasher13::new_with_key(&salt);
        match addr {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.write_u8(0xff);
        h.write(user_agent);
        Some((day, h.finish()))
    }

    /// Remembers `day`'s salt; forgets salts older than yesterday.
    pub fn learn(&self, day: Day, salt: Salt) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.retain(|(d, _)| *d != day && d + 1 >= day);
        known.push((day, salt));
    }

    /// Fetches (creating if needed) the salts of `today` and the next day from the store.
    pub async fn refresh(&self, store: &Store, today: Day) -> Result<(), crate::store::StoreError> {
        for day in [today, today + 1] {
            let salt = store.salt(day, random_salt()).await?;
            self.learn(day, salt);
        }
        Ok(())
    }

    /// Refreshes every [`REFRESH_EVERY`] until `stop`.
    pub async fn run(self: std::sync::Arc<Self>, store: Store, stop: CancellationToken) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.refresh(&store, today()).await {
                tracing::warn!(error = %e, "fetching the visitor salts failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visitor_hashes_alike_all_day_and_differently_the_next() {
        let salts = Salts::default();
        let (ip, ua) = ("203.0.113.7".parse().unwrap(), b"Mozilla/5.0".as_slice());
        assert_eq!(salts.mark(10, ip, ua), None, "no salt, no mark");
        salts.learn(10, [1; 16]);
        salts.learn(11, [2; 16]);
        let a = salts.mark(10, ip, ua).unwrap();
        assert_eq!(salts.mark(10, ip, ua), Some(a));
        assert_ne!(salts.mark(11, ip, ua).unwrap().1, a.1);
        assert_ne!(salts.mark(10, "203.0.113.8".parse().unwrap(), ua).unwrap().1, a.1);
        salts.learn(13, [3; 16]);
        assert_eq!(salts.mark(10, ip, ua), None, "salts older than yesterday are forgotten");
    }

    #[test]
    fn salts_are_random() {
        assert_ne!(random_salt(), random_salt());
    }
}
