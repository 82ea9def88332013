//! `/v1/top` on Redis: every instance keeps the windows in memory (`Windows`, as the
//! embedded store does) and brings them up to date from the bucket hashes that the
//! flush script writes, reading only the few minute buckets still open, each closed
//! bucket once, and a bucket leaving a window once more to subtract it. The ranking
//! itself never waits for Redis beyond that refresh. docs/redis-keys.md has the costs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::buckets::{add_bucket, add_counter, diff, minute_batch, subtract, Content, Fetched};
use super::{err, RedisStore};
use crate::event::{ArticleId, Meta};
use crate::store::keys::{Partition, PARTITIONS};
use crate::store::windows::Windows;
use crate::store::StoreError;
use crate::top::{Granularity, Tally, TopEntry, TopQuery};

/// A minute bucket lives this long after its last write: past the 1 h window plus a margin.
pub const MINUTE_TTL: Duration = Duration::from_secs(3 * 3600);
/// An hour bucket lives this long after its last write: past the 30 d window plus a day.
pub const HOUR_TTL: Duration = Duration::from_secs(31 * 24 * 3600);
/// A batch applied when its minute ended longer ago than this is counted at its apply
/// time instead (a retry after an outage, a replayed spill file), so that a bucket
/// readers consider closed never changes.
pub const LATE_AFTER_MS: u64 = 60_000;
/// Clock difference tolerated between instances sharing one Redis.
pub const SKEW_MS: u64 = 30_000;
/// Without a refresh for this long the windows are reloaded: minute buckets written
/// before the gap may have expired (`MINUTE_TTL`), and reading every minute of a long
/// gap costs more than a reload.
const MAX_GAP_MS: u64 = 2 * 60 * 60_000;
/// How often the background task refreshes (a request refreshes too, see `top`).
pub const BACKGROUND_EVERY: Duration = Duration::from_secs(10);

const MINUTE: Granularity = Granularity::Minute;
const HOUR: Granularity = Granularity::Hour;

/// The time whose buckets a batch flushed at `flushed_at_ms` goes to, applied at `now_ms`.
pub fn bucket_time(flushed_at_ms: u64, now_ms: u64) -> u64 {
    let minute_end = (MINUTE.bucket(flushed_at_ms) + 1) * MINUTE.millis();
    if minute_end + LATE_AFTER_MS <= now_ms {
        now_ms
    } else {
        flushed_at_ms
    }
}

/// The first minute that may still be written at `now_ms` (by any instance's clock).
fn open_from(now_ms: u64) -> u64 {
    MINUTE.bucket(now_ms.saturating_sub(LATE_AFTER_MS + SKEW_MS))
}

/// The windows of one instance and the minute buckets it will read again.
#[derive(Debug)]
pub struct TopState {
    windows: Windows,
    /// The last read content of each minute from `open_from` on.
    open: HashMap<u64, Content>,
    open_from: u64,
    refreshed_at_ms: u64,
    refreshed: Instant,
}

impl RedisStore {
    /// The ranking of `q`. A request that finds the windows refreshed before it arrived
    /// refreshes them (a few open minute buckets, one round trip); concurrent requests
    /// share one refresh. Never scans: loading is the background task's job.
    pub async fn top(&self, q: &TopQuery) -> Result<Vec<TopEntry>, StoreError> {
        let asked = Instant::now();
        let mut guard = self.top.lock().await;
        let state = guard
            .as_mut()
            .ok_or_else(|| err("top-articles windows not loaded yet (Redis unreachable since start)"))?;
        if state.refreshed < asked {
            let now = self.clock.now_ms();
            if now.saturating_sub(state.refreshed_at_ms) > MAX_GAP_MS {
                return Err(err("top-articles windows are being reloaded"));
            }
            self.refresh(state, now).await?;
        }
        Ok(state.windows.top(q))
    }

    /// Loads the windows if they are not (or no longer) loaded, else refreshes them.
    pub async fn refresh_top(&self) -> Result<(), StoreError> {
        let mut guard = self.top.lock().await;
        let now = self.clock.now_ms();
        match guard.as_mut() {
            Some(state) if now.saturating_sub(state.refreshed_at_ms) <= MAX_GAP_MS => self.refresh(state, now).await,
            _ => {
                *guard = Some(self.load(now).await?);
                Ok(())
            }
        }
    }

    /// Loads the windows from scratch (startup; the only place that `SCAN`s).
    pub async fn load_top(&self) -> Result<(), StoreError> {
        let state = self.load(self.clock.now_ms()).await?;
        *self.top.lock().await = Some(state);
        Ok(())
    }

    /// Keeps the windows loaded and fresh until `shutdown`: loads them after Redis was
    /// unreachable at start, and keeps the gap between refreshes short on a quiet server.
    pub async fn run_top_refresher(self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.refresh_top().await {
                        tracing::warn!(error = %e, "refreshing the top-articles windows failed");
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Applies an admin change to this instance's windows (`None`: forget the article).
    pub(super) async fn top_admin(&self, article: &ArticleId, total: Option<Tally>) {
        if let Some(state) = self.top.lock().await.as_mut() {
            match total {
                Some(t) => state.windows.set_total(article, t),
                None => state.windows.forget(article),
            }
        }
    }

    async fn refresh(&self, state: &mut TopState, now: u64) -> Result<(), StoreError> {
        let (lo, hi) = (state.open_from, MINUTE.bucket(now + SKEW_MS));
        let read = self.read_buckets((lo..=hi).map(|m| (MINUTE, m)).collect()).await?;
        let mut changed: Vec<(u64, Vec<crate::store::ArticleDelta>)> = Vec::new();
        for (&(_, m), content) in &read {
            let d = diff(content, state.open.get(&m));
            if !d.is_empty() {
                changed.push((m, d));
            }
        }
        let ids: Vec<&ArticleId> = changed.iter().flat_map(|(_, d)| d.iter().map(|d| &d.article)).collect();
        let meta = self.read_meta(&ids).await?;
        changed.sort_by_key(|(m, _)| *m);
        for (m, mut deltas) in changed {
            for d in &mut deltas {
                d.meta = meta.get(&d.article).cloned().unwrap_or_default();
            }
            state.windows.apply(&minute_batch(m, deltas));
        }
        let new_from = state.open_from.max(open_from(now));
        state.open = read
            .into_iter()
            .filter(|((_, m), _)| *m >= new_from)
            .map(|((_, m), c)| (m, c))
            .collect();
        state.open_from = new_from;
        let leaving = state.windows.leaving(now);
        if !leaving.is_empty() {
            let fetched = Fetched(self.read_buckets(leaving.into_iter().collect()).await?);
            state.windows.roll(&fetched, now).map_err(err)?;
        }
        state.refreshed_at_ms = now;
        state.refreshed = Instant::now();
        Ok(())
    }

    /// Every partition's hash of each bucket, merged per bucket (one pipeline).
    async fn read_buckets(
        &self,
        wanted: Vec<(Granularity, u64)>,
    ) -> Result<HashMap<(Granularity, u64), Content>, StoreError> {
        let mut pipe = redis::pipe();
        for &(g, b) in &wanted {
            for p in 0..PARTITIONS {
                pipe.hgetall(self.keys.bucket(Partition::from_index(p), g, b));
            }
        }
        let hashes: Vec<HashMap<String, u64>> = self.query_read(&pipe).await?;
        let mut out: HashMap<(Granularity, u64), Content> = wanted.iter().map(|w| (*w, Content::new())).collect();
        for (i, hash) in hashes.into_iter().enumerate() {
            let w = wanted[i / PARTITIONS as usize];
            add_bucket(out.get_mut(&w).expect("every wanted bucket"), hash);
        }
        Ok(out)
    }

    /// Section and language of each article (one `HMGET` per partition).
    async fn read_meta(&self, ids: &[&ArticleId]) -> Result<HashMap<ArticleId, Meta>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut by_partition: HashMap<Partition, Vec<&ArticleId>> = HashMap::new();
        for id in ids {
            by_partition.entry(Partition::of(id.as_str())).or_default().push(id);
        }
        let mut pipe = redis::pipe();
        let mut order = Vec::new();
        for (p, ids) in &by_partition {
            let fields: Vec<String> = ids
                .iter()
                .flat_map(|a| ["section", "lang"].map(|attr| crate::store::keys::meta_field(a.as_str(), attr)))
                .collect();
            pipe.cmd("HMGET").arg(self.keys.meta(*p)).arg(fields);
            order.extend(ids.iter().map(|id| (*id).clone()));
        }
        let replies: Vec<Vec<Option<String>>> = self.query_read(&pipe).await?;
        let values = replies.into_iter().flatten().collect::<Vec<_>>();
        Ok(order
            .into_iter()
            .zip(values.chunks(2))
            .map(|(id, v)| {
                let meta = Meta {
                    section: v[0].as_deref().map(Into::into),
                    lang: v.get(1).and_then(|l| l.as_deref()).map(Into::into),
                };
                (id, meta)
            })
            .collect())
    }

    /// Reads everything the windows need at `now`: per partition, in one transaction,
    /// the totals, every bucket of the windows and the metadata, so that the totals
    /// and the open buckets agree. The totals' keys come from one `SCAN`.
    async fn load(&self, now: u64) -> Result<TopState, StoreError> {
        let articles = self.scan_articles().await?;
        let minutes = (MINUTE.bucket(now) + 1 - MINUTE.retention())..=MINUTE.bucket(now + SKEW_MS);
        let hours = (HOUR.bucket(now) + 1 - HOUR.retention())..=HOUR.bucket(now + SKEW_MS);
        let wanted: Vec<(Granularity, u64)> = minutes.map(|m| (MINUTE, m)).chain(hours.map(|h| (HOUR, h))).collect();
        let mut fetched = Fetched(wanted.iter().map(|w| (*w, Content::new())).collect());
        let (mut all, mut meta) = (HashMap::new(), HashMap::new());
        for p in 0..PARTITIONS {
            let partition = Partition::from_index(p);
            let ids = articles.get(&partition).map_or(&[][..], |v| &v[..]);
            let mut pipe = redis::pipe();
            pipe.atomic();
            for a in ids {
                pipe.hgetall(self.keys.counts(a.as_str()));
            }
            for &(g, b) in &wanted {
                pipe.hgetall(self.keys.bucket(partition, g, b));
            }
            pipe.hgetall(self.keys.meta(partition));
            let mut values: Vec<Value> = self.query(&pipe).await?;
            let meta_hash: HashMap<String, String> =
                redis::from_redis_value(values.pop().ok_or_else(|| err("short reply"))?).map_err(err)?;
            add_meta(&mut meta, meta_hash);
            let mut values = values.into_iter();
            for id in ids {
                let hash: HashMap<String, u64> =
                    redis::from_redis_value(values.next().ok_or_else(|| err("short reply"))?).map_err(err)?;
                let t: &mut Tally = all.entry(id.clone()).or_default();
                hash.into_iter().for_each(|(f, n)| add_counter(t, &f, n));
            }
            for w in &wanted {
                let hash: HashMap<String, u64> =
                    redis::from_redis_value(values.next().ok_or_else(|| err("short reply"))?).map_err(err)?;
                add_bucket(fetched.0.get_mut(w).expect("every wanted bucket"), hash);
            }
        }
        all.retain(|_, t: &mut Tally| !t.is_zero());
        // Minutes past `now` (a clock ahead of ours) are already in the totals and in
        // their hour: take them out there and add them the way later refreshes will.
        let future: Vec<(u64, Content)> = (MINUTE.bucket(now) + 1..=MINUTE.bucket(now + SKEW_MS))
            .filter_map(|m| fetched.0.get(&(MINUTE, m)).map(|c| (m, c.clone())))
            .collect();
        for (m, c) in &future {
            subtract(&mut all, c);
            if let Some(h) = fetched.0.get_mut(&(HOUR, HOUR.bucket(m * MINUTE.millis()))) {
                subtract(h, c);
            }
        }
        let mut windows = Windows::load(&fetched, now, all, meta).map_err(err)?;
        for (m, c) in &future {
            windows.apply(&minute_batch(*m, diff(c, None)));
        }
        let from = open_from(now);
        let open = fetched
            .0
            .into_iter()
            .filter(|((g, m), _)| *g == MINUTE && *m >= from)
            .map(|((_, m), c)| (m, c))
            .collect();
        Ok(TopState {
            windows,
            open,
            open_from: from,
            refreshed_at_ms: now,
            refreshed: Instant::now(),
        })
    }

    /// Every article with a counts hash, by partition (`SCAN`, startup only).
    async fn scan_articles(&self) -> Result<HashMap<Partition, Vec<ArticleId>>, StoreError> {
        let pattern = self.keys.counts_pattern();
        let mut out: HashMap<Partition, Vec<ArticleId>> = HashMap::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let cmd = &cmd;
            let (next, keys): (u64, Vec<String>) = self
                .call(super::CALL_TIMEOUT, |mut conn| async move {
                    cmd.query_async(&mut conn).await
                })
                .await?;
            for key in keys {
                if let Some(id) = self.keys.parse_counts_key(&key).and_then(|a| ArticleId::parse(a).ok()) {
                    out.entry(Partition::of(id.as_str())).or_default().push(id);
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

fn add_meta(meta: &mut HashMap<ArticleId, Meta>, hash: HashMap<String, String>) {
    for (field, value) in hash {
        let Some((article, attr)) = field.split_once(':') else {
            continue;
        };
        let Ok(id) = ArticleId::parse(article) else { continue };
        let m = meta.entry(id).or_default();
        match attr {
            "section" => m.section = Some(value.into()),
            "lang" => m.lang = Some(value.into()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_batch_counts_at_its_apply_time() {
        let t = 100 * 60_000 + 30_000;
        assert_eq!(bucket_time(t, t + 5_000), t, "on time");
        assert_eq!(bucket_time(t, 101 * 60_000 + LATE_AFTER_MS - 1), t, "just in time");
        assert_eq!(
            bucket_time(t, 101 * 60_000 + LATE_AFTER_MS),
            101 * 60_000 + LATE_AFTER_MS
        );
    }

    #[test]
    fn readers_keep_a_minute_open_longer_than_writers_may_write_it() {
        let now = 500 * 60_000;
        let first_open = open_from(now);
        assert!((first_open + 1) * 60_000 + LATE_AFTER_MS + SKEW_MS > now);
        assert!(first_open * 60_000 + LATE_AFTER_MS + SKEW_MS <= now);
    }
}
