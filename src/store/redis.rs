//! The Redis backend (`--redis-url`). A batch is split by partition and each piece
//! is applied by one Lua script (`apply.lua`) that checks and advances the run's
//! exactly-once record and adds the deltas atomically; the pieces of a batch go in
//! one pipeline. Key names live in `keys.rs`; docs/redis-keys.md is the full story.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisResult, Script, ServerErrorKind};

use super::keys::{self, Keys, Partition, SHARE_FIELD_PREFIX, VIEWS_FIELD};
use super::{Applied, ArticleDelta, Batch, StoreError, StoredCounts};
use crate::event::{ArticleId, Meta};

/// A TCP connect to Redis takes well under a millisecond on a LAN; one second means
/// "unreachable" without stalling the flusher (the crate's default is also 1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest call is one pipelined chunk of 2,000 articles, a few milliseconds of
/// script time; 2 s leaves room for a slow fsync (`appendfsync always`) or a busy
/// server, where the crate's 500 ms default would time out (and retry) needlessly,
/// yet lets the final flush (5 s) make two attempts before it spills.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of one store call, reconnection included: a connect plus a response.
const CALL_TIMEOUT: Duration = Duration::from_millis(3_500);
/// How long a run's exactly-once record outlives its last batch: a batch (in memory
/// or in a spill file) older than this may be applied twice.
pub const APPLIED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("apply.lua")));

/// A handle to Redis; cheap to clone. Purposefully lazy: the service starts and
/// counts in memory even when Redis is down at start.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// A store on `url` with every key under `prefix`. Does not wait for Redis.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
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
        })
    }

    /// Runs `op` on the connection within [`CALL_TIMEOUT`]. An `op` that finds the
    /// connection refused or dropped runs once more: that answer only described the
    /// old connection, and the manager has just started a new one. Running twice is
    /// safe: reads and admin writes are idempotent, a flush piece that ran is a duplicate.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
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
        match tokio::time::timeout(CALL_TIMEOUT, attempts).await {
            Ok(result) => result.map_err(err),
            Err(_) => Err(StoreError::Redis(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    /// [`Self::call`] for one pipeline.
    async fn query<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.call(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Applies each partition's piece of `batch` at most once.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        let pipe = &self.apply_pipeline(batch);
        let results: Vec<RedisResult<i64>> = self
            .call(|mut conn| async move {
                let results: Vec<RedisResult<i64>> = pipe.query_async(&mut conn).await?;
                if !results.iter().any(|r| r.as_ref().is_err_and(is_noscript)) {
                    return Ok(results);
                }
                // Redis restarted and lost its script cache: load it and send the same
                // pieces again (none of them ran; one that did would be a duplicate).
                APPLY.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await
            })
            .await?;
        let mut applied = 0;
        for r in results {
            applied += r.map_err(err)?;
        }
        Ok(match applied {
            0 => Applied::Duplicate,
            n if n == pipe.len() as i64 => Applied::Applied,
            _ => Applied::Partial,
        })
    }

    fn apply_pipeline(&self, batch: &Batch) -> Pipeline {
        let mut by_partition: BTreeMap<Partition, Vec<&ArticleDelta>> = BTreeMap::new();
        for d in &batch.articles {
            by_partition
                .entry(Partition::of(d.article.as_str()))
                .or_default()
                .push(d);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (partition, deltas) in by_partition {
            let mut keys = vec![self.keys.applied(partition, &batch.id), self.keys.meta(partition)];
            let mut args = vec![
                APPLIED_TTL.as_secs().to_string(),
                batch.id.seq.to_string(),
                batch.id.chunk.to_string(),
            ];
            for d in deltas {
                keys.push(self.keys.counts(d.article.as_str()));
                push_pairs(&mut args, increments(d));
                push_pairs(&mut args, meta_fields(d.article.as_str(), &d.meta));
            }
            // EVALSHA by hand: the crate's script invocation cannot join a pipeline.
            pipe.cmd("EVALSHA")
                .arg(APPLY.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args);
        }
        pipe
    }

    /// Stored totals of each article, in the order asked (one pipelined round trip).
    pub async fn counts(&self, articles: &[ArticleId]) -> Result<Vec<StoredCounts>, StoreError> {
        let mut pipe = redis::pipe();
        for a in articles {
            pipe.hgetall(self.keys.counts(a.as_str()));
        }
        let hashes: Vec<HashMap<String, u64>> = self.query(&pipe).await?;
        Ok(hashes.into_iter().map(stored_counts).collect())
    }

    /// Replaces an article's totals in one transaction (both keys share a slot).
    pub async fn set(&self, article: &ArticleId, counts: &StoredCounts) -> Result<(), StoreError> {
        let key = self.keys.counts(article.as_str());
        let mut fields: Vec<(String, u64)> = counts
            .shares
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(network, n)| (keys::share_field(network), *n))
            .collect();
        if counts.views > 0 {
            fields.push((VIEWS_FIELD.to_string(), counts.views));
        }
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !fields.is_empty() {
            pipe.hset_multiple(&key, &fields).ignore();
        }
        self.query(&pipe).await
    }

    /// Forgets an article's totals and metadata in one transaction.
    pub async fn delete(&self, article: &ArticleId) -> Result<(), StoreError> {
        let a = article.as_str();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.keys.counts(a))
            .ignore()
            .hdel(
                self.keys.meta(Partition::of(a)),
                &[keys::meta_field(a, "section"), keys::meta_field(a, "lang")],
            )
            .ignore();
        self.query(&pipe).await
    }

    /// The stored section and language of an article.
    pub async fn meta(&self, article: &ArticleId) -> Result<Meta, StoreError> {
        let a = article.as_str();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.meta(Partition::of(a)))
            .arg(keys::meta_field(a, "section"))
            .arg(keys::meta_field(a, "lang"));
        let cmd = &cmd;
        let (section, lang): (Option<String>, Option<String>) = self
            .call(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(Meta {
            section: section.map(Into::into),
            lang: lang.map(Into::into),
        })
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let ping = &redis::cmd("PING");
        self.call(|mut conn| async move { ping.query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }
}

/// `n`, then the `n` pairs, as the script reads them.
fn push_pairs(args: &mut Vec<String>, pairs: Vec<(String, String)>) {
    args.push(pairs.len().to_string());
    for (field, value) in pairs {
        args.push(field);
        args.push(value);
    }
}

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// One `(field, delta)` per counter that changed: the only writes a flush makes.
fn increments(d: &ArticleDelta) -> Vec<(String, String)> {
    let views = (d.views > 0).then(|| (VIEWS_FIELD.to_string(), d.views.to_string()));
    let shares = d
        .shares
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(network, n)| (keys::share_field(network), n.to_string()));
    views.into_iter().chain(shares).collect()
}

/// The meta fields the batch sets; an attribute the events did not give is kept.
fn meta_fields(article: &str, meta: &Meta) -> Vec<(String, String)> {
    [("section", &meta.section), ("lang", &meta.lang)]
        .into_iter()
        .filter_map(|(attr, v)| v.as_ref().map(|v| (keys::meta_field(article, attr), v.to_string())))
        .collect()
}

fn stored_counts(hash: HashMap<String, u64>) -> StoredCounts {
    let mut out = StoredCounts::default();
    for (field, n) in hash {
        if field == VIEWS_FIELD {
            out.views = n;
        } else if let Some(network) = field.strip_prefix(SHARE_FIELD_PREFIX) {
            out.shares.insert(network.to_string(), n);
        }
    }
    out
}
