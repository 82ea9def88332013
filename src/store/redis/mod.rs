//! The Redis backend (`--redis-url`, one server or a cluster): the store handle and
//! its timeouts. `conn.rs` holds the connection, `apply.rs` writes batches exactly
//! once, `reads.rs` reads totals, `series.rs` series and filter values, `admin.rs` makes admin changes, `top.rs` (with
//! `load.rs`, `fold.rs`, `buckets.rs`) serves `/v1/top`; key names live in
//! `keys.rs`; docs/redis-keys.md is the full story.

mod admin;
mod apply;
mod buckets;
mod changes;
mod conn;
mod fold;
pub mod keys;
mod load;
mod reads;
mod series;
mod top;

pub use apply::APPLIED_TTL;
pub use top::BACKGROUND_EVERY as TOP_REFRESH_EVERY;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult, Script};

use conn::{Conn, Connector, Request};

use super::StoreError;
use crate::clock::{Clock, SystemClock};
use crate::event::Networks;
use keys::Keys;

/// A TCP connect to Redis takes well under a millisecond on a LAN; one second means
/// "unreachable" without stalling the flusher (the crate's default is also 1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest call is one pipelined chunk of 10,000 articles, some tens of milliseconds of
/// script time, possibly queued behind the other chunk in flight; 2 s leaves room for a slow fsync (`appendfsync always`) or a busy
/// server, where the crate's 500 ms default would time out (and retry) needlessly,
/// yet lets the final flush (5 s) make two attempts before it spills.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of one store call, reconnection included: a connect plus a response.
const CALL_TIMEOUT: Duration = Duration::from_millis(3_500);
/// Most articles in a batch for Redis: spread over the 64 partitions, about 64 a
/// script, which runs in about a millisecond. Redis runs every complete command it read
/// from one connection before it serves another, so an article read waits for the
/// scripts ahead of it: a 10,000-article batch made 2–3 ms scripts, and several of them
/// pipelined held a read 7–10 ms.
pub const BATCH_ARTICLES: usize = 4_096;
/// Articles in the flush scripts sent and not answered yet, over every batch being
/// applied: what an article read may find ahead of it in Redis. Pipelined without a
/// bound, Redis ran about ten scripts from the flush's connection between two reads of
/// another one; with four full pieces in flight a read still waited 7–8 ms on a loaded
/// machine. Two full pieces (about 64 articles each, [`BATCH_ARTICLES`] over the
/// partitions), so Redis runs one while the answer to the other travels back and the
/// next call is sent. A script takes a permit per article it carries (at most this
/// many), so the small pieces of a small batch go several at a time: counted per
/// script, a batch of a few articles per partition took 32 round trips.
pub const SCRIPT_ARTICLES_IN_FLIGHT: u32 = 2 * FULL_PIECE;
/// Articles in a piece of a full batch: the weight of a script whose work is not
/// counted in articles (a fold).
pub const FULL_PIECE: u32 = BATCH_ARTICLES as u32 / keys::PARTITIONS;
/// Default bound of a read for the API (`--redis-read-timeout`): reads of up to 100
/// articles take a millisecond, and past this the API answers from the last known
/// totals instead of keeping a page waiting for the whole response timeout.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A handle to Redis or a Redis Cluster; cheap to clone. Purposefully lazy: the
/// service starts and counts in memory even when Redis is down at start.
///
/// Two connections: one for the flush and the background work (batch scripts, the top
/// windows' refresh, admin writes) and one for the API's reads. Redis answers a
/// connection's requests in order, so on a shared connection a read would wait for
/// every flush script sent before it (seconds, for a million keys); on its own it waits
/// at most for the one script Redis is running.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connector,
    /// The API's reads (article counts, metadata, visitors, series).
    reads: Connector,
    keys: Keys,
    /// The time buckets of flushes and the top windows follow.
    clock: Arc<dyn Clock>,
    /// This instance's top windows.
    top: Arc<top::RedisTop>,
    /// Bound of an API read and of a ping.
    read_timeout: Duration,
    /// The share networks whose counters reads look up (`--share-networks`).
    networks: Networks,
    /// [`SCRIPT_ARTICLES_IN_FLIGHT`] permits, taken by the flush scripts sent and not
    /// answered, one per article they carry.
    scripts: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Stored data of an unexpected shape.
fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        store: "redis",
        what: what.to_string(),
    }
}

impl RedisStore {
    /// A store on `url` with every key under `prefix`. Does not wait for Redis.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open_with_clock(url, prefix, Arc::new(SystemClock))
    }

    /// Like [`RedisStore::open`], with the clock that dates buckets and moves the windows.
    pub fn open_with_clock(url: &str, prefix: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Ok(Self::on(
            Connector::single(url).map_err(StoreError::from)?,
            Connector::single(url).map_err(StoreError::from)?,
            prefix,
            clock,
        ))
    }

    /// A store on the Redis Cluster that `seeds` (any of its nodes) belong to. Does not
    /// wait for it.
    pub fn open_cluster(seeds: &[&str], prefix: &str) -> Result<Self, StoreError> {
        Self::open_cluster_with_clock(seeds, prefix, Arc::new(SystemClock))
    }

    /// Like [`RedisStore::open_cluster`], with the clock that dates buckets and moves the windows.
    pub fn open_cluster_with_clock(seeds: &[&str], prefix: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Ok(Self::on(
            Connector::cluster(seeds).map_err(StoreError::from)?,
            Connector::cluster(seeds).map_err(StoreError::from)?,
            prefix,
            clock,
        ))
    }

    fn on(conn: Connector, reads: Connector, prefix: &str, clock: Arc<dyn Clock>) -> Self {
        RedisStore {
            conn,
            reads,
            keys: Keys::new(prefix),
            clock,
            top: Arc::default(),
            read_timeout: READ_TIMEOUT,
            networks: Networks::default(),
            scripts: Arc::new(tokio::sync::Semaphore::new(SCRIPT_ARTICLES_IN_FLIGHT as usize)),
        }
    }

    /// The clock that dates buckets and moves the windows.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
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

    /// Runs `op` on a connection within `limit`. An `op` that finds the connection
    /// refused or dropped runs once more: that answer only described the old
    /// connection, and a new one is on its way. Running twice is safe: reads and admin
    /// writes are idempotent, a flush piece that ran is a duplicate.
    async fn call<T, F, Fut>(&self, limit: Duration, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        call_on(&self.conn, limit, op).await
    }

    /// Sends `requests` (each within one slot) at once on `via`, within `limit`; their
    /// replies in order, or the first error.
    async fn each<T, R>(&self, via: &Connector, limit: Duration, requests: &[R]) -> Result<Vec<T>, StoreError>
    where
        T: FromRedisValue + Send,
        R: Request,
    {
        call_on(via, limit, |conn| async move {
            conn::send_all(&conn, requests).await.into_iter().collect()
        })
        .await
    }

    /// [`Self::each`] for the API's reads, on their own connection.
    async fn each_read<T: FromRedisValue + Send, R: Request>(&self, requests: &[R]) -> Result<Vec<T>, StoreError> {
        self.each(&self.reads, self.read_timeout, requests).await
    }

    /// [`Self::each`] for the reads of the top windows' refresh, on the flush's
    /// connection: a big minute log read does not delay an article read.
    async fn each_refresh_read<T: FromRedisValue + Send, R: Request>(
        &self,
        requests: &[R],
    ) -> Result<Vec<T>, StoreError> {
        self.each(&self.conn, self.read_timeout, requests).await
    }

    /// Runs `script` calls (one `EVALSHA` each, within one slot, with the articles it
    /// carries), at most [`SCRIPT_ARTICLES_IN_FLIGHT`] articles of this store's sent and
    /// not answered at a time, each within [`CALL_TIMEOUT`] from when it is sent
    /// (waiting for its turn is not what the bound is for); each call's integer answer,
    /// or the first error, as soon as it comes: the calls not sent yet are not sent
    /// (the caller applies the batch again, and a piece that ran answers as a
    /// duplicate). Paced, the pieces for a Redis Cluster node that died would otherwise
    /// each wait out their bound in turn, and the batch fail only after all of them.
    async fn run_scripts(&self, script: &Script, calls: &[(Cmd, u32)]) -> Result<Vec<i64>, StoreError> {
        try_join_all(calls.iter().map(|(call, articles)| async move {
            // First come, first served: the calls go in order (the semaphore is fair, a
            // big piece waiting holds back the small ones behind it). The store never
            // closes the semaphore (a closed one would only stop the pacing).
            let permits = (*articles).clamp(1, SCRIPT_ARTICLES_IN_FLIGHT);
            let _sent = self.scripts.acquire_many(permits).await.ok();
            self.call(CALL_TIMEOUT, |conn| conn::run_script(conn, script, call))
                .await
        }))
        .await
    }

    /// [`Self::call`] for one pipeline (within one slot) that writes.
    async fn query<T: FromRedisValue + Send>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.call(CALL_TIMEOUT, |conn| pipe.send(conn)).await
    }

    /// `PING` on both connections: connected at start (a cluster's connection costs
    /// a topology read), neither waits for the first read or flush.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let (flush, reads) = tokio::join!(self.ping_on(&self.conn), self.ping_on(&self.reads));
        flush.and(reads)
    }

    async fn ping_on(&self, via: &Connector) -> Result<(), StoreError> {
        let ping = &redis::cmd("PING");
        call_on(via, self.read_timeout, |mut conn| async move {
            ping.query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }
}

/// Runs `op` on a connection of `via` within `limit` (see [`RedisStore::call`]).
async fn call_on<T, F, Fut>(via: &Connector, limit: Duration, op: F) -> Result<T, StoreError>
where
    F: Fn(Conn) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let attempts = async {
        match op(via.get().await?).await {
            Err(e) if e.is_connection_refusal() || e.is_connection_dropped() => op(via.get().await?).await,
            other => other,
        }
    };
    match tokio::time::timeout(limit, attempts).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            via.forget_after(Some(&e)).await;
            Err(e.into())
        }
        Err(_) => {
            via.forget_after(None).await;
            Err(StoreError::Timeout(limit))
        }
    }
}
