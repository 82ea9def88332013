//! `/v1/top` on Redis: every instance keeps the windows in memory (`Windows`, as the
//! embedded store does) and brings them up to date from the minute logs that flushes
//! append to: a refresh reads only the log entries it has not read yet, of the few
//! minutes still open, and reads a bucket leaving a window once more to subtract it.
//! `load.rs` builds the windows at start; `fold.rs` folds closed minutes into hours.
//! docs/redis-keys.md has the costs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::store::glance::Glance;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::buckets::{add_bucket, add_log_entry, diff, minute_batch, Content, Fetched};
use super::changes::{all_partitions, Read};
use super::keys::{article_field, Keys, Partition, PARTITIONS};
use super::RedisStore;
use crate::event::{ArticleId, Meta};
use crate::store::windows::Windows;
use crate::store::{Rankings, StoreError};
use crate::top::Granularity;

/// A minute log lives this long after its last write: past the 1 h window, and time
/// for some instance to fold it into its hour.
pub const MINUTE_TTL: Duration = Duration::from_secs(3 * 3600);
/// An hour bucket lives this long after its fold: past the 30 d window plus a day.
pub const HOUR_TTL: Duration = Duration::from_secs(31 * 24 * 3600);
/// A batch applied when its minute ended longer ago than this is counted at its apply
/// time instead (a retry after an outage, a replayed spill file), so that a minute
/// readers consider closed never changes.
pub const LATE_AFTER_MS: u64 = 60_000;
/// Clock difference tolerated between instances sharing one Redis.
pub const SKEW_MS: u64 = 30_000;
/// Without a refresh for this long the windows are reloaded: reading every minute of
/// a long gap costs more than a reload, and its logs may have expired.
const MAX_GAP_MS: u64 = 2 * 60 * 60_000;
/// How long `/v1/top` waits for windows still loading (at start) before it answers 503.
const TOP_WAITS_FOR_LOAD: Duration = Duration::from_secs(2);
/// How often the background task refreshes and folds (a request refreshes too).
pub const BACKGROUND_EVERY: Duration = Duration::from_secs(10);

pub(super) const MINUTE: Granularity = Granularity::Minute;
pub(super) const HOUR: Granularity = Granularity::Hour;

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
pub(super) fn open_from(now_ms: u64) -> u64 {
    MINUTE.bucket(now_ms.saturating_sub(LATE_AFTER_MS + SKEW_MS))
}

/// The windows of one instance and how far it has read each open minute log.
#[derive(Debug)]
pub struct TopState {
    pub(super) windows: Windows,
    /// Entries read so far of each (partition, minute) log from `open_from` on.
    pub(super) read: HashMap<(u32, u64), usize>,
    pub(super) open_from: u64,
    /// The last admin change read of each partition's stream.
    pub(super) admin_read: Vec<String>,
    pub(super) refreshed_at_ms: u64,
    pub(super) refreshed: Instant,
}

/// This instance's top windows: read under a short lock, brought up to date by one
/// refresh at a time that reads Redis without holding it (reads serve the last
/// ranking meanwhile) and then applies what it read; a load builds new windows
/// aside and swaps them in. Admin changes reach the windows the same way.
#[derive(Debug)]
pub struct RedisTop {
    // std Mutex: held for in-memory work only (apply what was read, rank), never
    // across a Redis call.
    state: Mutex<Option<TopState>>,
    // tokio Mutex: held across a refresh's reads, so refreshes (and loads) do not
    // overlap and the read positions they start from stay theirs.
    refreshing: tokio::sync::Mutex<()>,
    cap: AtomicUsize,
    /// What `/metrics` and `/readyz` read, without waiting for a refresh.
    tracked: Glance,
    ready: Glance,
}

impl Default for RedisTop {
    fn default() -> Self {
        RedisTop {
            state: Mutex::default(),
            refreshing: tokio::sync::Mutex::default(),
            cap: AtomicUsize::new(usize::MAX),
            tracked: Glance::default(),
            ready: Glance::default(),
        }
    }
}

impl RedisTop {
    fn state(&self) -> MutexGuard<'_, Option<TopState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn install(&self, mut state: TopState) {
        state.windows.set_cap(self.cap.load(Ordering::Relaxed).max(1));
        *self.state() = Some(state);
    }

    /// True once the windows are loaded (as last seen while a refresh holds them).
    pub fn is_ready(&self) -> bool {
        self.ready.read(&self.state, |s| usize::from(s.is_some())) == 1
    }

    /// Articles tracked (0 before the load; as last seen while a refresh holds them).
    pub fn tracked(&self) -> usize {
        self.tracked
            .read(&self.state, |s| s.as_ref().map_or(0, |s| s.windows.tracked()))
    }

    /// Sets `--max-articles`.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
        if let Some(s) = self.state().as_mut() {
            s.windows.set_cap(cap);
        }
    }
}

/// Where a refresh starts: a copy of the read positions, taken under the lock.
struct Positions {
    read: HashMap<(u32, u64), usize>,
    open_from: u64,
    admin_read: Vec<String>,
}

/// What a refresh read from Redis, to apply under the lock.
struct NewEntries {
    added: Vec<(u64, Content)>,
    meta: MetaRead,
    read: HashMap<(u32, u64), usize>,
    changes: Read,
}

/// The new minute log entries, parsed: the contents by minute and the read positions.
struct Parsed {
    added: Vec<(u64, Content)>,
    read: HashMap<(u32, u64), usize>,
}

/// The section and language of the articles a refresh read: the articles in the order
/// their values come, and the replies (one `HMGET` per partition, two values an article).
#[derive(Default)]
struct MetaRead {
    order: Vec<ArticleId>,
    replies: Vec<Vec<Option<String>>>,
}

impl MetaRead {
    fn into_map(self) -> HashMap<ArticleId, Meta> {
        let values: Vec<Option<String>> = self.replies.into_iter().flatten().collect();
        let meta = values.chunks(2).map(|v| Meta {
            section: v[0].as_deref().map(Into::into),
            lang: v.get(1).and_then(|l| l.as_deref()).map(Into::into),
            ..Meta::default()
        });
        self.order.into_iter().zip(meta).collect()
    }
}

impl RedisTop {
    /// Applies what a refresh read under the lock; the buckets leaving a window then,
    /// or `None` when the windows are gone. Runs off the runtime's threads: after a big
    /// flush this is a million articles' work.
    ///
    /// The batches built here are freed once the lock is released, on another thread:
    /// after a 1M-key flush they hold 155k and 508k articles, and while they were freed
    /// under the lock article reads stalled 105–130 ms (BENCHMARKS.md, "A read during a
    /// 1M-key flush: the stall at the end").
    fn apply_new(&self, fetched: NewEntries, at_open_from: u64, now: u64) -> Option<Vec<(Granularity, u64)>> {
        let meta = fetched.meta.into_map();
        let mut applied = Vec::with_capacity(fetched.added.len());
        let mut guard = self.state();
        let state = guard.as_mut()?;
        for (m, content) in &fetched.added {
            let mut deltas = diff(content, None);
            for d in &mut deltas {
                d.meta = meta.get(&d.article).cloned().unwrap_or_default();
            }
            let batch = minute_batch(*m, deltas);
            state.windows.apply(&batch);
            applied.push(batch);
        }
        state.open_from = at_open_from.max(open_from(now));
        let mut read = fetched.read;
        read.retain(|(_, m), _| *m >= state.open_from);
        state.read = read;
        apply_changes(state, fetched.changes);
        let leaving = state.windows.leaving(now).into_iter().collect();
        drop(guard);
        free_elsewhere(applied);
        Some(leaving)
    }

    /// Subtracts the buckets that left a window (read by the refresh without the lock)
    /// and marks the windows refreshed. Runs off the runtime's threads: the buckets of a
    /// minute a big flush wrote hold as many articles as the flush, and they leave the
    /// 1h window an hour later (the others later still). `rows` outlives the guard, so
    /// it is freed after the lock is released.
    fn finish_refresh(&self, rows: Option<Fetched>, now: u64) -> Result<(), StoreError> {
        let mut guard = self.state();
        let Some(state) = guard.as_mut() else { return Ok(()) };
        if let Some(rows) = &rows {
            state.windows.roll(rows, now)?;
        }
        state.refreshed_at_ms = now;
        state.refreshed = Instant::now();
        Ok(())
    }
}

/// Drops `items` on the runtime's blocking pool when called within a runtime, else here.
fn free_elsewhere<T: Send + 'static>(items: Vec<T>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(items))),
        Err(_) => drop(items),
    }
}

impl Rankings for RedisStore {
    /// Runs `rank` on the windows (off the runtime's threads: a pass over a million
    /// articles). A request that finds the windows refreshed before it arrived
    /// refreshes them first (the new entries of a few minute logs, one round trip)
    /// unless a refresh is already under way or the refresh fails, in which case it
    /// ranks the windows as they are. Never scans: loading is the background task's job.
    async fn rank<T: Send + 'static>(
        &self,
        rank: impl FnOnce(&Windows) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let asked = Instant::now();
        self.wait_for_load(TOP_WAITS_FOR_LOAD).await;
        let stale = match self.top.state().as_ref() {
            None => return Err(StoreError::NotReady("top-articles windows not loaded yet")),
            Some(s) if self.clock.now_ms().saturating_sub(s.refreshed_at_ms) > MAX_GAP_MS => {
                return Err(StoreError::NotReady("top-articles windows are being reloaded"))
            }
            Some(s) => s.refreshed < asked,
        };
        if stale {
            if let Ok(_refreshing) = self.top.refreshing.try_lock() {
                let fresh = self.top.state().as_ref().is_some_and(|s| s.refreshed >= asked);
                if !fresh {
                    // The windows are at most MAX_GAP_MS behind (checked above) and the
                    // background task refreshes them too: a failed refresh ranks them as
                    // they are rather than failing the ranking.
                    if let Err(e) = self.refresh(self.clock.now_ms()).await {
                        tracing::warn!(error = %e, "refreshing the top-articles windows failed; ranking them as they are");
                    }
                }
            }
        }
        let top = self.top.clone();
        tokio::task::spawn_blocking(move || {
            let state = top.state();
            let state = state
                .as_ref()
                .ok_or(StoreError::NotReady("top-articles windows not loaded yet"))?;
            Ok(rank(&state.windows))
        })
        .await?
    }
}

impl RedisStore {
    /// Waits (at most `limit`) for the background load of the windows.
    async fn wait_for_load(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.top.is_ready() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// True once the top windows are loaded.
    pub fn rankings_ready(&self) -> bool {
        self.top.is_ready()
    }

    /// Articles tracked in the top windows.
    pub fn tracked_articles(&self) -> usize {
        self.top.tracked()
    }

    /// Caps the articles tracked for rankings (`--max-articles`).
    pub fn set_max_articles(&self, n: usize) {
        self.top.set_cap(n);
    }

    /// The background task's step: folds closed minutes into hours, then refreshes the
    /// windows, or loads them if they are not (or no longer) loaded.
    pub async fn maintain_top(&self) -> Result<(), StoreError> {
        self.fold_closed_minutes().await?;
        let _refreshing = self.top.refreshing.lock().await;
        let now = self.clock.now_ms();
        let loaded = self
            .top
            .state()
            .as_ref()
            .is_some_and(|s| now.saturating_sub(s.refreshed_at_ms) <= MAX_GAP_MS);
        if loaded {
            self.refresh(now).await
        } else {
            let state = self.load(now).await?;
            self.top.install(state);
            Ok(())
        }
    }

    /// Loads the windows from scratch (64 transactions, one per partition) and swaps
    /// them in.
    pub async fn load_top(&self) -> Result<(), StoreError> {
        let _refreshing = self.top.refreshing.lock().await;
        let state = self.load(self.clock.now_ms()).await?;
        self.top.install(state);
        Ok(())
    }

    /// Runs [`Self::maintain_top`] every `every` until `shutdown`: loads the windows
    /// at start (the service serves meanwhile), and keeps closed minutes folded and
    /// the gap between refreshes short on a quiet server.
    pub async fn run_top_refresher(self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.maintain_top().await {
                        tracing::warn!(error = %e, "maintaining the top-articles windows failed");
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Brings the windows up to date with the admin changes of `partition` (after an
    /// admin write through this instance); nothing when they are not loaded.
    pub(super) async fn top_after_admin_change(&self, partition: Partition) -> Result<(), StoreError> {
        let _refreshing = self.top.refreshing.lock().await;
        let Some(admin_read) = self.top.state().as_ref().map(|s| s.admin_read.clone()) else {
            return Ok(());
        };
        let changes = self.read_changes(&admin_read, &[partition]).await?;
        if let Some(state) = self.top.state().as_mut() {
            apply_changes(state, changes);
        }
        Ok(())
    }

    /// Reads what is new in Redis without the lock, then applies it under the lock.
    /// Call with `refreshing` held.
    async fn refresh(&self, now: u64) -> Result<(), StoreError> {
        let Some(at) = self.top.state().as_ref().map(|s| Positions {
            read: s.read.clone(),
            open_from: s.open_from,
            admin_read: s.admin_read.clone(),
        }) else {
            return Ok(());
        };
        let fetched = self.fetch_new(&at, now).await?;
        let top = self.top.clone();
        let at_open_from = at.open_from;
        let applied = tokio::task::spawn_blocking(move || top.apply_new(fetched, at_open_from, now));
        let Some(leaving) = applied.await? else { return Ok(()) };
        // The buckets leaving a window are read without the lock too; until they are
        // subtracted, readers see the windows as they were before this refresh rolled.
        let rows = if leaving.is_empty() {
            None
        } else {
            Some(self.read_buckets(leaving).await?)
        };
        let top = self.top.clone();
        tokio::task::spawn_blocking(move || top.finish_refresh(rows, now)).await?
    }

    /// The new entries of the open minute logs, their articles' metadata and the new
    /// admin changes, read from `at` on.
    async fn fetch_new(&self, at: &Positions, now: u64) -> Result<NewEntries, StoreError> {
        let minutes: Vec<u64> = (at.open_from..=MINUTE.bucket(now + SKEW_MS)).collect();
        let mut reads = Vec::with_capacity(minutes.len() * PARTITIONS as usize);
        for &m in &minutes {
            for p in 0..PARTITIONS {
                let from = at.read.get(&(p, m)).copied().unwrap_or(0);
                let mut cmd = redis::cmd("LRANGE");
                cmd.arg(self.keys.bucket(Partition::from_index(p), MINUTE, m))
                    .arg(from)
                    .arg(-1);
                reads.push(cmd);
            }
        }
        let replies: Vec<Vec<String>> = self.each_refresh_read(&reads).await?;
        // Parsing the entries of a big flush takes CPU time: off the runtime's threads.
        let read = at.read.clone();
        let keys = self.keys.clone();
        let (parsed, meta_reads, order) = tokio::task::spawn_blocking(move || {
            let parsed = parse_entries(replies, &minutes, read);
            let ids: Vec<&ArticleId> = parsed.added.iter().flat_map(|(_, c)| c.keys()).collect();
            let (meta_reads, order) = meta_reads(&keys, &ids);
            (parsed, meta_reads, order)
        })
        .await?;
        let replies = if meta_reads.is_empty() {
            Vec::new()
        } else {
            self.each_refresh_read(&meta_reads).await?
        };
        let meta = MetaRead { order, replies };
        let changes = self.read_changes(&at.admin_read, &all_partitions()).await?;
        Ok(NewEntries {
            added: parsed.added,
            meta,
            read: parsed.read,
            changes,
        })
    }

    /// Whole buckets, merged over the partitions (read at once): minute logs, hour hashes.
    async fn read_buckets(&self, wanted: Vec<(Granularity, u64)>) -> Result<Fetched, StoreError> {
        let mut reads = Vec::with_capacity(wanted.len() * PARTITIONS as usize);
        for &(g, b) in &wanted {
            for p in 0..PARTITIONS {
                let key = self.keys.bucket(Partition::from_index(p), g, b);
                let mut cmd = match g {
                    Granularity::Minute => redis::cmd("LRANGE"),
                    Granularity::Hour => redis::cmd("HGETALL"),
                };
                cmd.arg(key);
                if g == Granularity::Minute {
                    cmd.arg(0).arg(-1);
                }
                reads.push(cmd);
            }
        }
        let replies: Vec<redis::Value> = self.each_refresh_read(&reads).await?;
        let mut out = Fetched::default();
        for (i, value) in replies.into_iter().enumerate() {
            let w = wanted[i / PARTITIONS as usize];
            let content = out.0.entry(w).or_default();
            match w.0 {
                Granularity::Minute => {
                    let entries: Vec<String> = redis::from_redis_value(value).map_err(StoreError::from)?;
                    entries.iter().for_each(|e| add_log_entry(content, e));
                }
                Granularity::Hour => add_bucket(content, redis::from_redis_value(value).map_err(StoreError::from)?),
            }
        }
        Ok(out)
    }
}

/// The new entries of the minute logs (`replies`, per minute then partition) added up
/// by minute, and the read positions moved past them.
fn parse_entries(replies: Vec<Vec<String>>, minutes: &[u64], mut read: HashMap<(u32, u64), usize>) -> Parsed {
    let mut added: Vec<(u64, Content)> = Vec::new();
    for (i, entries) in replies.into_iter().enumerate() {
        let (m, p) = (minutes[i / PARTITIONS as usize], (i % PARTITIONS as usize) as u32);
        if entries.is_empty() {
            continue;
        }
        *read.entry((p, m)).or_default() += entries.len();
        if added.last().is_none_or(|(last, _)| *last != m) {
            added.push((m, Content::new()));
        }
        let content = &mut added.last_mut().expect("pushed above").1;
        entries.iter().for_each(|e| add_log_entry(content, e));
    }
    Parsed { added, read }
}

/// The reads of the section and language of `ids` (one `HMGET` per partition), and the
/// articles in the order their values come.
fn meta_reads(keys: &Keys, ids: &[&ArticleId]) -> (Vec<redis::Cmd>, Vec<ArticleId>) {
    let mut by_partition: HashMap<Partition, Vec<&ArticleId>> = HashMap::new();
    for id in ids {
        by_partition.entry(Partition::of(id.as_str())).or_default().push(id);
    }
    let mut reads = Vec::with_capacity(by_partition.len());
    let mut order = Vec::with_capacity(ids.len());
    for (p, ids) in &by_partition {
        let fields: Vec<String> = ids
            .iter()
            .flat_map(|a| ["section", "lang"].map(|attr| article_field(a.as_str(), attr)))
            .collect();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(keys.meta(*p)).arg(fields);
        reads.push(cmd);
        order.extend(ids.iter().map(|id| (*id).clone()));
    }
    (reads, order)
}

/// Applies admin changes read from the streams and moves the read positions past them.
fn apply_changes(state: &mut TopState, read: Read) {
    for (p, entries) in read {
        for (id, change) in entries {
            match change {
                Some(c) => {
                    state.windows.admin_change(&c.article, &c.raise, &c.lower, c.forget);
                    if let Some(meta) = c.meta {
                        state.windows.set_meta(&c.article, meta);
                    }
                }
                None => tracing::warn!(id, "unreadable admin change; skipped"),
            }
            state.admin_read[p.index() as usize] = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tells on drop which thread dropped it.
    struct TellsItsDropper(std::sync::mpsc::Sender<std::thread::ThreadId>);

    impl Drop for TellsItsDropper {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    #[test]
    fn freed_elsewhere_within_a_runtime_and_here_without_one() {
        let (tx, rx) = std::sync::mpsc::channel();
        free_elsewhere(vec![TellsItsDropper(tx.clone())]);
        assert_eq!(rx.recv().unwrap(), std::thread::current().id());

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async { free_elsewhere(vec![TellsItsDropper(tx)]) });
        let dropper = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        assert_ne!(dropper, std::thread::current().id());
    }

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
