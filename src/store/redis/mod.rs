//! The Redis backend (`--redis-url`): the connection and its timeouts, admin writes.
//! `apply.rs` writes batches exactly once, `reads.rs` reads totals, `top.rs` (with
//! `load.rs`, `fold.rs`, `buckets.rs`) serves `/v1/top`; key names live in
//! `../keys.rs`; docs/redis-keys.md is the full story.

mod apply;
mod buckets;
mod fold;
mod load;
mod reads;
mod top;

pub use apply::APPLIED_TTL;
pub use top::BACKGROUND_EVERY as TOP_REFRESH_EVERY;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, Pipeline, RedisResult, Script};

use super::keys::{self, article_field, Keys, Partition, VIEWS_FIELD};
use super::{StoreError, StoredCounts};
use crate::clock::{Clock, SystemClock};
use crate::event::{ArticleId, Networks};
use crate::top::{Granularity, Tally};

static DELETE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(include_str!("delete.lua")));

/// A TCP connect to Redis takes well under a millisecond on a LAN; one second means
/// "unreachable" without stalling the flusher (the crate's default is also 1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest call is one pipelined chunk of 10,000 articles, some tens of milliseconds of
/// script time, possibly queued behind the other chunks in flight (at most 3 more); 2 s leaves room for a slow fsync (`appendfsync always`) or a busy
/// server, where the crate's 500 ms default would time out (and retry) needlessly,
/// yet lets the final flush (5 s) make two attempts before it spills.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of one store call, reconnection included: a connect plus a response.
const CALL_TIMEOUT: Duration = Duration::from_millis(3_500);
/// Default bound of a read for the API (`--redis-read-timeout`): reads of up to 100
/// articles take a millisecond, and past this the API answers from the last known
/// totals instead of keeping a page waiting for the whole response timeout.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A handle to Redis; cheap to clone. Purposefully lazy: the service starts and
/// counts in memory even when Redis is down at start.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    /// The time buckets of flushes and the top windows follow.
    clock: Arc<dyn Clock>,
    /// This instance's top windows (`None` until loaded). A tokio Mutex: a refresh
    /// holds it across its reads, so concurrent requests share one refresh.
    top: Arc<tokio::sync::Mutex<Option<top::TopState>>>,
    /// Bound of an API read and of a ping.
    read_timeout: Duration,
    /// The share networks whose counters reads look up (`--share-networks`).
    networks: Networks,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// A store on `url` with every key under `prefix`. Does not wait for Redis.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open_with_clock(url, prefix, Arc::new(SystemClock))
    }

    /// Like [`RedisStore::open`], with the clock that dates buckets and moves the windows.
    pub fn open_with_clock(url: &str, prefix: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // One attempt per call: the flusher's own back-off paces the retries.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        Ok(RedisStore {
            conn,
            keys: Keys::new(prefix),
            clock,
            top: Arc::default(),
            read_timeout: READ_TIMEOUT,
            networks: Networks::default(),
        })
    }

    /// Sets the share networks whose counters reads, admin writes and deletes look up
    /// (`--share-networks`). The counters of a network no longer listed stay in Redis,
    /// unread, and are read again if it comes back.
    pub fn with_networks(mut self, networks: Networks) -> Self {
        self.networks = networks;
        self
    }

    /// Sets the bound of an API read (`--redis-read-timeout`).
    pub fn with_read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = limit;
        self
    }

    /// Runs `op` on the connection within `limit`. An `op` that finds the
    /// connection refused or dropped runs once more: that answer only described the
    /// old connection, and the manager has just started a new one. Running twice is
    /// safe: reads and admin writes are idempotent, a flush piece that ran is a duplicate.
    async fn call<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match op(self.conn.clone()).await {
                Err(e) if e.is_connection_refusal() || e.is_connection_dropped() => op(self.conn.clone()).await,
                other => other,
            }
        };
        match tokio::time::timeout(limit, attempts).await {
            Ok(result) => result.map_err(err),
            Err(_) => Err(StoreError::Redis(format!("no answer within {limit:?}"))),
        }
    }

    /// Runs a pipeline of `script` calls (one `EVALSHA` each) and returns each call's
    /// integer answer. When Redis restarted and lost its script cache, the script is
    /// loaded and the same pipeline sent again: none of its calls ran (one that did
    /// would answer as a duplicate).
    async fn run_script_pipeline(&self, script: &Script, pipe: &Pipeline) -> Result<Vec<i64>, StoreError> {
        let results: Vec<RedisResult<i64>> = self
            .call(CALL_TIMEOUT, |mut conn| async move {
                let results: Vec<RedisResult<i64>> = pipe.query_async(&mut conn).await?;
                if !results.iter().any(|r| r.as_ref().is_err_and(is_noscript)) {
                    return Ok(results);
                }
                script.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await
            })
            .await?;
        results.into_iter().map(|r| r.map_err(err)).collect()
    }

    /// [`Self::call`] for one pipeline that writes.
    async fn query<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.call(
            CALL_TIMEOUT,
            |mut conn| async move { pipe.query_async(&mut conn).await },
        )
        .await
    }

    /// [`Self::call`] for one pipeline that reads for the API.
    async fn query_read<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.call(self.read_timeout, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// Replaces an article's totals in one transaction (both keys share a slot).
    pub async fn set(&self, article: &ArticleId, counts: &StoredCounts) -> Result<(), StoreError> {
        let a = article.as_str();
        let key = self.keys.counts(Partition::of(a));
        let mut fields: Vec<(String, u64)> = counts
            .shares
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(network, n)| (article_field(a, &keys::share_field(network)), *n))
            .collect();
        if counts.views > 0 {
            fields.push((article_field(a, VIEWS_FIELD), counts.views));
        }
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(&key, self.counter_fields(a)).ignore();
        if !fields.is_empty() {
            pipe.hset_multiple(&key, &fields).ignore();
        }
        self.query::<()>(&pipe).await?;
        let mut total = Tally::default();
        let shares: Vec<(Box<str>, u64)> = counts.shares.iter().map(|(n, c)| (n.as_str().into(), *c)).collect();
        total.add(counts.views, &shares, false);
        self.top_admin(article, Some(total)).await;
        Ok(())
    }

    /// Forgets an article's totals, metadata and bucket fields in one script.
    pub async fn delete(&self, article: &ArticleId) -> Result<(), StoreError> {
        let a = article.as_str();
        let partition = Partition::of(a);
        let now = self.clock.now_ms();
        let (minute, hour) = (Granularity::Minute, Granularity::Hour);
        let mut invocation = DELETE.prepare_invoke();
        invocation
            .key(self.keys.counts(partition))
            .key(self.keys.meta(partition))
            .arg(a)
            .arg(self.keys.partition_prefix(partition))
            .arg(minute.bucket(now).saturating_sub(minute.retention() + 1))
            .arg(minute.bucket(now + top::SKEW_MS) + 1)
            .arg(hour.bucket(now).saturating_sub(hour.retention() + 1))
            .arg(hour.bucket(now + top::SKEW_MS) + 1)
            .arg(VIEWS_FIELD)
            .arg(self.networks.names().map(keys::share_field).collect::<Vec<_>>());
        let invocation = &invocation;
        self.call(CALL_TIMEOUT, |mut conn| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await?;
        self.top_admin(article, None).await;
        Ok(())
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let ping = &redis::cmd("PING");
        self.call(self.read_timeout, |mut conn| async move {
            ping.query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }
}
