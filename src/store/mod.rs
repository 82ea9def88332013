//! Step 4 of the data flow: where flushed batches go. One `enum Store` dispatches to
//! the embedded backend (redb, the default) or Redis; both keep the same contract,
//! checked by one test suite that runs against each.

pub mod embedded;
pub mod glance;
pub mod ranking;
pub mod redis;
pub mod series;
pub mod windows;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::top::{Candidates, Metric, TopEntry, TopQuery, Window};
use series::{MetaValues, Series, SeriesWindow};
use windows::{Basis, Windows};

pub use self::redis::RedisStore;
pub use embedded::EmbeddedStore;

/// The identity of one batch: which process made it and its place in that process's
/// sequence. A store applies a given id at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchId {
    /// Random per process start.
    pub instance: String,
    /// Process start, Unix milliseconds.
    pub epoch_ms: u64,
    /// 1, 2, 3, ... within the process, one per batch: the chunks of one drain have
    /// consecutive numbers. The Redis store's exactly-once record has a bit per `seq`.
    pub seq: u64,
    /// Which chunk of its drain the batch is (0 when the drain was not split).
    #[serde(default)]
    pub chunk: u32,
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.instance, self.epoch_ms, self.seq, self.chunk)
    }
}

/// The pending deltas of one article at the moment of a drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleDelta {
    /// The article.
    pub article: ArticleId,
    /// Views and shares to add (flattened: the journal's `views` and `shares` fields).
    #[serde(flatten)]
    pub counts: Counts,
    /// Section and language, when events gave them.
    #[serde(default)]
    pub meta: Meta,
    /// The visitors of the article's views, (day, keyed hash), sorted and distinct:
    /// what the store adds to the day's sketch (see `crate::visitors`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visitors: Vec<crate::visitors::Mark>,
}

/// Deltas moved out of the counter map at one flush, applied to a store as one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Identity for exactly-once application.
    pub id: BatchId,
    /// When the deltas were drained, Unix milliseconds: the time the top windows use.
    pub flushed_at_ms: u64,
    /// Sorted by article.
    pub articles: Vec<ArticleDelta>,
}

impl Batch {
    /// The delta for `article` in this batch, if any.
    pub fn get(&self, article: &str) -> Option<&ArticleDelta> {
        self.position(article).map(|i| &self.articles[i])
    }

    /// Where `article`'s delta is in `articles`, if it has one. A drain's batches hold
    /// consecutive ranges of the sorted articles, so a read that looks in each queued
    /// batch mostly stops at the range check (two comparisons, not a binary search).
    pub fn position(&self, article: &str) -> Option<usize> {
        let (first, last) = (self.articles.first()?, self.articles.last()?);
        if article < first.article.as_str() || article > last.article.as_str() {
            return None;
        }
        self.articles.binary_search_by(|d| d.article.as_str().cmp(article)).ok()
    }

    /// True when some article's metadata in the batch is signed (it replaces what the
    /// store holds, where unsigned metadata only fills what it lacks).
    pub fn carries_signed_meta(&self) -> bool {
        self.articles.iter().any(|d| d.meta.signed)
    }

    /// Sum of all views and shares in the batch.
    pub fn events(&self) -> u64 {
        self.articles.iter().map(|d| d.counts.events()).sum()
    }
}

/// What an API read of one article takes from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArticleRead {
    /// Its stored totals.
    pub stored: Counts,
    /// The unacknowledged batches holding the article that `stored` already includes
    /// (applied, their acknowledgement not processed yet); the article's deltas in the
    /// other unacknowledged batches are still to be added ([`unapplied_in`]).
    pub landed: Vec<BatchId>,
    /// Its stored metadata.
    pub meta: Meta,
    /// Its visitors (distinct per day, summed over days).
    pub visitors: u64,
}

/// What happened to a batch the store acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The deltas were added now.
    Applied,
    /// The id had been applied before; nothing was added.
    Duplicate,
    /// Some parts of the batch (Redis partitions) had been applied before, by an
    /// attempt whose answer was lost; the other parts were added now.
    Partial,
}

/// A store operation failed; the caller keeps its batch and retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed: I/O (a full disk), a corrupt file, a conflict.
    #[error("embedded store: {0}")]
    Embedded(#[from] redb::Error),
    /// The embedded database file could not be created or opened.
    #[error("embedded store: opening {path}: {source}")]
    Open {
        /// The file or folder.
        path: std::path::PathBuf,
        /// Why.
        source: redb::Error,
    },
    /// Redis refused, dropped the connection, or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis gave no answer within the limit (stalled, or the network is).
    #[error("redis: no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// What the store holds is not what this version wrote (a hand-edited key, a
    /// reply of the wrong shape).
    #[error("{store}: unexpected stored data: {what}")]
    Corrupt {
        /// `embedded store` or `redis`.
        store: &'static str,
        /// What was wrong.
        what: String,
    },
    /// The store cannot answer this yet (the Redis top windows are still loading).
    #[error("redis: {0}")]
    NotReady(&'static str),
    /// A broken invariant of this code (a bug), e.g. a bucket asked for but not fetched.
    #[error("store: {0}")]
    Internal(String),
    /// A blocking store task panicked or was cancelled (a bug).
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<::redis::ParsingError> for StoreError {
    fn from(e: ::redis::ParsingError) -> Self {
        StoreError::Corrupt {
            store: "redis",
            what: e.to_string(),
        }
    }
}

/// A store's top windows, ranked at its clock: `rank` brings them up to date (buckets
/// that left a window subtracted, new flushes read) and runs a pass over them.
pub trait Rankings {
    /// Runs `rank` on the windows, brought up to date, off the runtime's threads.
    fn rank<T: Send + 'static>(
        &self,
        rank: impl FnOnce(&Windows) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;

    /// The ranking of `q`.
    fn top(&self, q: &TopQuery) -> impl Future<Output = Result<Vec<TopEntry>, StoreError>> + Send {
        let q = q.clone();
        self.rank(move |w| w.top(&q))
    }

    /// Every filter's ranking of `metric` in `window`: earlier candidates' `basis`
    /// brought up to date when only counts rose since, else one pass
    /// ([`Windows::rank_all_filters_since`]).
    fn top_candidates(
        &self,
        window: Window,
        metric: &Metric,
        basis: Option<Arc<Basis>>,
    ) -> impl Future<Output = Result<Candidates, StoreError>> + Send {
        let metric = metric.clone();
        self.rank(move |w| w.rank_all_filters_since(window, &metric, basis.as_deref()))
    }
}

impl Rankings for Store {
    async fn rank<T: Send + 'static>(
        &self,
        rank: impl FnOnce(&Windows) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        match self {
            Store::Embedded(s) => s.rank(rank).await,
            Store::Redis(s) => s.rank(rank).await,
        }
    }
}

/// The configured backend.
#[derive(Debug, Clone)]
pub enum Store {
    /// redb in `--data-dir` (the default).
    Embedded(EmbeddedStore),
    /// Redis (`--redis-url`).
    Redis(RedisStore),
}

impl Store {
    /// Opens the embedded store in `dir`.
    pub fn open_embedded(dir: &Path) -> Result<Self, StoreError> {
        Ok(Store::Embedded(EmbeddedStore::open(dir)?))
    }

    /// Connects (lazily) to Redis at `url`, every key under `prefix`.
    pub fn open_redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Store::Redis(RedisStore::open(url, prefix)?))
    }

    /// The clock the store dates buckets and series by; the flusher stamps batches with it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        match self {
            Store::Embedded(s) => s.clock(),
            Store::Redis(s) => s.clock(),
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// How many batches the flusher may apply at once. Redis: two, so building the
    /// next overlaps Redis's work on the previous (its exactly-once record does not
    /// depend on order); more only queue on the connection, closer to the call's
    /// timeout (with four, a million keys on a busy machine timed out and waited a
    /// whole interval to retry). Embedded: one, since redb commits one write
    /// transaction at a time anyway.
    pub fn batches_at_once(&self) -> usize {
        match self {
            Store::Embedded(_) => 1,
            Store::Redis(_) => 2,
        }
    }

    /// Most articles in one batch (a drain is split in batches of at most this many).
    /// Redis runs a batch as one script per partition, and a read waits for the
    /// scripts Redis runs before it: smaller batches keep each script near a
    /// millisecond (see `redis::BATCH_ARTICLES`). Embedded: one redb commit per batch,
    /// so fewer and bigger.
    pub fn batch_articles(&self) -> usize {
        match self {
            Store::Embedded(_) => crate::flusher::CHUNK_ARTICLES,
            Store::Redis(_) => redis::BATCH_ARTICLES,
        }
    }

    /// Applies a batch atomically, at most once per batch id.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        match self {
            Store::Embedded(s) => s.apply(batch).await,
            Store::Redis(s) => s.apply(batch).await,
        }
    }

    /// Stored totals of each article, in the order asked.
    pub async fn counts(&self, articles: &[ArticleId]) -> Result<Vec<Counts>, StoreError> {
        match self {
            Store::Embedded(s) => s.counts(articles).await,
            Store::Redis(s) => s.counts(articles).await,
        }
    }

    /// Each article's stored totals and the deltas of `unacked` batches the store does
    /// not hold yet (read together, so a batch landing during the read is counted once),
    /// with its metadata and visitors, in the order asked. Redis reads them in one round trip (a transaction per article); the embedded
    /// store in one read transaction.
    pub async fn article_reads(
        &self,
        articles: &[ArticleId],
        unacked: &[Arc<Batch>],
    ) -> Result<Vec<ArticleRead>, StoreError> {
        match self {
            Store::Embedded(s) => s.article_reads(articles, unacked).await,
            Store::Redis(s) => s.article_reads(articles, unacked).await,
        }
    }

    /// The stored metadata of each article, in the order asked.
    pub async fn metas(&self, articles: &[ArticleId]) -> Result<Vec<Meta>, StoreError> {
        match self {
            Store::Embedded(s) => s.metas(articles).await,
            Store::Redis(s) => s.metas(articles).await,
        }
    }

    /// Each article's visitors: distinct visitors per day, summed over days.
    pub async fn visitors(&self, articles: &[ArticleId]) -> Result<Vec<u64>, StoreError> {
        match self {
            Store::Embedded(s) => s.visitors(articles).await,
            Store::Redis(s) => s.visitors(articles).await,
        }
    }

    /// Replaces the metadata fields `meta` has (admin `PUT`).
    pub async fn set_meta(&self, article: &ArticleId, meta: &Meta) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.set_meta(article, meta).await,
            Store::Redis(s) => s.set_meta(article, meta).await,
        }
    }

    /// Replaces an article's totals (admin migration).
    pub async fn set(&self, article: &ArticleId, counts: &Counts) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.set(article, counts).await,
            Store::Redis(s) => s.set(article, counts).await,
        }
    }

    /// Forgets an article's totals (admin delete).
    pub async fn delete(&self, article: &ArticleId) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.delete(article).await,
            Store::Redis(s) => s.delete(article).await,
        }
    }

    /// The series of `article` in `window`, at the store's clock: one point per step,
    /// oldest first, zeros included.
    pub async fn series(&self, article: &ArticleId, window: SeriesWindow) -> Result<Series, StoreError> {
        match self {
            Store::Embedded(s) => s.series(article, window).await,
            Store::Redis(s) => s.series(article, window).await,
        }
    }

    /// The sections and languages of the articles seen, each sorted (`/v1/meta`).
    pub async fn meta_values(&self) -> Result<MetaValues, StoreError> {
        match self {
            Store::Embedded(s) => s.meta_values().await,
            Store::Redis(s) => s.meta_values().await,
        }
    }

    /// The visitor salt of `day`: the one stored, or `candidate` stored now when there is
    /// none yet (the first writer wins, so every instance uses the same salt). Salts are
    /// deleted [`crate::visitors::KEEP_DAYS`] days after their own.
    pub async fn salt(
        &self,
        day: crate::visitors::Day,
        candidate: crate::visitors::Salt,
    ) -> Result<crate::visitors::Salt, StoreError> {
        match self {
            Store::Embedded(s) => s.salt(day, candidate).await,
            Store::Redis(s) => s.salt(day, candidate).await,
        }
    }

    /// True once the `/v1/top` windows are loaded (they load in the background at start).
    pub fn rankings_ready(&self) -> bool {
        match self {
            Store::Embedded(s) => s.rankings_ready(),
            Store::Redis(s) => s.rankings_ready(),
        }
    }

    /// Articles tracked in the `/v1/top` windows (at most `--max-articles`).
    pub fn tracked_articles(&self) -> usize {
        match self {
            Store::Embedded(s) => s.tracked_articles(),
            Store::Redis(s) => s.tracked_articles(),
        }
    }

    /// Caps the articles tracked for rankings (`--max-articles`).
    pub fn set_max_articles(&self, n: usize) {
        match self {
            Store::Embedded(s) => s.set_max_articles(n),
            Store::Redis(s) => s.set_max_articles(n),
        }
    }

    /// Cheap liveness check of the backend.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Redis(s) => s.ping().await,
        }
    }
}

/// The deltas of `article` in the `unacked` batches that are not `landed`, added up:
/// what a read adds to stored totals that include exactly the `landed` batches.
pub fn unapplied_in(article: &ArticleId, unacked: &[Arc<Batch>], landed: &[BatchId]) -> Counts {
    let mut unapplied = Counts::default();
    for b in unacked.iter().filter(|b| !landed.contains(&b.id)) {
        if let Some(d) = b.get(article.as_str()) {
            unapplied.add(&d.counts);
        }
    }
    unapplied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(articles: &[&str]) -> Batch {
        Batch {
            id: BatchId {
                instance: "i".into(),
                epoch_ms: 1,
                seq: 1,
                chunk: 0,
            },
            flushed_at_ms: 1,
            articles: articles
                .iter()
                .map(|a| ArticleDelta {
                    article: ArticleId::parse(a).unwrap(),
                    counts: crate::counts::Counts::of_views(1),
                    meta: Meta::default(),
                    visitors: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_finds_its_articles_and_nothing_outside_or_between_them() {
        let b = batch(&["b", "d", "f"]);
        assert_eq!(["b", "d", "f"].map(|a| b.position(a)), [Some(0), Some(1), Some(2)]);
        assert_eq!(["a", "c", "e", "g"].map(|a| b.position(a)), [None; 4]);
        assert_eq!(batch(&[]).position("a"), None);
    }
}
