//! Admin writes on Redis (`PUT`/`DELETE /v1/admin/articles/{article}`) and how every
//! instance's top windows learn of them: each change is recorded, in the same script
//! as the change itself, in its partition's admin stream (`<prefix>:{pN}:admin`) as the
//! difference it made to each counter. Every instance reads the streams when it
//! refreshes its windows (and reads their last ids in the same transactions as its
//! load), so each change is applied to each instance's all-time totals exactly once,
//! and commutes with the flushes that land around it.

use std::sync::LazyLock;

use redis::Script;

use super::buckets::add_counter;
use super::top::TopState;
use super::{err, RedisStore, CALL_TIMEOUT};
use crate::event::ArticleId;
use crate::store::keys::{Partition, PARTITIONS};
use crate::store::series::Step;
use crate::store::{StoreError, StoredCounts};
use crate::top::{Granularity, Tally};

static SET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("set.lua")));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("delete.lua")));

/// Entries an admin stream keeps (approximately): far more changes than a partition
/// sees between two refreshes of any instance (every 10 s).
const STREAM_LEN: u64 = 1_000;
/// Entries one refresh reads of a stream.
const READ_BATCH: usize = 1_000;

/// "Nothing read yet": the id before every stream entry.
pub const START: &str = "0-0";

/// One change as the streams record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    article: ArticleId,
    /// Admin delete: the article also leaves the rolling windows.
    forget: bool,
    /// Added to the all-time totals.
    raise: Tally,
    /// Taken from the all-time totals.
    lower: Tally,
}

impl Change {
    /// Parses a stream entry's fields (`article`, `forget`, then `<counter> <delta>`);
    /// `None` for an entry this version does not understand.
    fn parse(fields: &[String]) -> Option<Change> {
        let mut change = Change {
            article: ArticleId::parse("x").ok()?,
            forget: false,
            raise: Tally::default(),
            lower: Tally::default(),
        };
        let mut article = None;
        for pair in fields.chunks(2) {
            let [name, value] = pair else { return None };
            match name.as_str() {
                "article" => article = Some(ArticleId::parse(value).ok()?),
                "forget" => change.forget = value == "1",
                counter => {
                    let delta: i64 = value.parse().ok()?;
                    let into = if delta >= 0 {
                        &mut change.raise
                    } else {
                        &mut change.lower
                    };
                    if !add_counter(into, counter, delta.unsigned_abs()) {
                        return None;
                    }
                }
            }
        }
        change.article = article?;
        Some(change)
    }
}

impl RedisStore {
    /// Replaces an article's totals; every instance's all-time ranking follows.
    pub async fn set(&self, article: &ArticleId, counts: &StoredCounts) -> Result<(), StoreError> {
        let a = article.as_str();
        let partition = Partition::of(a);
        let mut invocation = SET.prepare_invoke();
        invocation
            .key(self.keys.counts(partition))
            .key(self.keys.admin(partition))
            .arg(a)
            .arg(STREAM_LEN);
        let shares = self
            .networks
            .names()
            .map(|n| counts.shares.get(n).copied().unwrap_or(0));
        for (counter, n) in self.counter_names().zip(std::iter::once(counts.views).chain(shares)) {
            invocation.arg(counter).arg(n);
        }
        self.invoke(&invocation).await?;
        self.read_admin_changes(&[partition]).await
    }

    /// Forgets an article's totals, metadata and bucket fields in one script; every
    /// instance's windows follow.
    pub async fn delete(&self, article: &ArticleId) -> Result<(), StoreError> {
        let a = article.as_str();
        let partition = Partition::of(a);
        let now = self.clock.now_ms();
        let (minute, hour) = (Granularity::Minute, Granularity::Hour);
        let mut invocation = DELETE.prepare_invoke();
        invocation
            .key(self.keys.counts(partition))
            .key(self.keys.meta(partition))
            .key(self.keys.admin(partition))
            .key(self.keys.pages(partition))
            .key(self.keys.visitors(partition))
            .arg(a)
            .arg(self.keys.partition_prefix(partition))
            .arg(minute.bucket(now).saturating_sub(minute.retention() + 1))
            .arg(minute.bucket(now + super::top::SKEW_MS) + 1)
            .arg(hour.bucket(now).saturating_sub(hour.retention() + 1))
            .arg(hour.bucket(now + super::top::SKEW_MS) + 1)
            .arg(STREAM_LEN)
            .arg(self.counter_names().collect::<Vec<_>>());
        self.invoke(&invocation).await?;
        self.forget_series(article).await?;
        self.read_admin_changes(&[partition]).await
    }

    /// Removes the article's fields from every series bucket still kept: one pipeline
    /// in its partition's slot (idempotent, so a retry after a lost answer is safe).
    async fn forget_series(&self, article: &ArticleId) -> Result<(), StoreError> {
        let partition = Partition::of(article.as_str());
        let now = self.clock.now_ms();
        let fields = [format!("{article}:v"), format!("{article}:s")];
        let mut pipe = redis::pipe();
        for step in Step::ALL {
            for bucket in step.oldest_kept(now)..=step.bucket(now + super::top::SKEW_MS) + 1 {
                pipe.hdel(self.keys.series(partition, step, bucket), &fields).ignore();
            }
        }
        self.query::<()>(&pipe).await
    }

    async fn invoke(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<(), StoreError> {
        self.call(CALL_TIMEOUT, |mut conn| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// Applies the admin changes of `partitions` this instance has not read yet to its
    /// windows (nothing when they are not loaded: a load reads the changed totals).
    async fn read_admin_changes(&self, partitions: &[Partition]) -> Result<(), StoreError> {
        let mut guard = self.top.lock().await;
        match guard.as_mut() {
            Some(state) => self.apply_admin_changes(state, partitions).await,
            None => Ok(()),
        }
    }

    /// Reads the admin streams of `partitions` past what `state` read, and applies them.
    pub(super) async fn apply_admin_changes(
        &self,
        state: &mut TopState,
        partitions: &[Partition],
    ) -> Result<(), StoreError> {
        let reads: Vec<redis::Cmd> = partitions
            .iter()
            .map(|p| {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(self.keys.admin(*p))
                    .arg(format!("({}", state.admin_read[p.index() as usize]))
                    .arg("+")
                    .arg("COUNT")
                    .arg(READ_BATCH);
                cmd
            })
            .collect();
        let replies: Vec<Vec<(String, Vec<String>)>> = self.each_read(&reads).await?;
        for (p, entries) in partitions.iter().zip(replies) {
            for (id, fields) in entries {
                match Change::parse(&fields) {
                    Some(c) => state.windows.admin_change(&c.article, &c.raise, &c.lower, c.forget),
                    None => tracing::warn!(id, "unreadable admin change; skipped"),
                }
                state.admin_read[p.index() as usize] = id;
            }
        }
        Ok(())
    }
}

/// Every partition, for a refresh.
pub fn all_partitions() -> Vec<Partition> {
    (0..PARTITIONS).map(Partition::from_index).collect()
}

/// The last id of an admin stream as `XREVRANGE <stream> + - COUNT 1` answers it.
pub fn last_id(reply: redis::Value) -> Result<String, StoreError> {
    let entries: Vec<(String, Vec<String>)> = redis::from_redis_value(reply).map_err(err)?;
    Ok(entries
        .into_iter()
        .next()
        .map_or_else(|| START.to_string(), |(id, _)| id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_change_splits_into_what_it_raised_and_lowered() {
        let c = Change::parse(&fields(&[
            "article", "a-1", "forget", "0", "views", "5", "share:x", "-2",
        ]))
        .unwrap();
        assert_eq!(c.article.as_str(), "a-1");
        assert!(!c.forget);
        assert_eq!((c.raise.views, c.raise.shares.clone()), (5, vec![]));
        assert_eq!((c.lower.views, c.lower.shares.clone()), (0, vec![("x".into(), 2)]));
    }

    #[test]
    fn entries_this_version_cannot_read_are_refused() {
        assert!(Change::parse(&fields(&["forget", "1"])).is_none(), "no article");
        assert!(Change::parse(&fields(&["article", "a", "views", "many"])).is_none());
        assert!(Change::parse(&fields(&["article", "a", "likes", "1"])).is_none());
        assert!(Change::parse(&fields(&["article", "a", "forget"])).is_none());
    }
}
