//! Admin writes on Redis (`PUT`/`DELETE /v1/admin/articles/{article}`) and how every
//! instance's top windows learn of them: each change is recorded, in the same script
//! as the change itself, in its partition's admin stream (`<prefix>:{pN}:admin`) as the
//! difference it made to each counter. Every instance reads the streams when it
//! refreshes its windows (and reads their last ids in the same transactions as its
//! load), so each change is applied to each instance's all-time totals exactly once,
//! and commutes with the flushes that land around it.

use std::sync::LazyLock;

use redis::Script;

use super::keys::Partition;
use super::{RedisStore, CALL_TIMEOUT};
use crate::counts::Counts;
use crate::event::ArticleId;
use crate::store::series::Step;
use crate::store::StoreError;
use crate::top::Granularity;

static SET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("set.lua")));
static DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("delete.lua")));

/// Entries an admin stream keeps (approximately): far more changes than a partition
/// sees between two refreshes of any instance (every 10 s).
const STREAM_LEN: u64 = 1_000;
impl RedisStore {
    /// Replaces an article's totals; every instance's all-time ranking follows.
    pub async fn set(&self, article: &ArticleId, counts: &Counts) -> Result<(), StoreError> {
        let a = article.as_str();
        let partition = Partition::of(a);
        let mut invocation = SET.prepare_invoke();
        invocation
            .key(self.keys.counts(partition))
            .key(self.keys.admin(partition))
            .arg(a)
            .arg(STREAM_LEN);
        let shares = self.networks.names().map(|n| counts.share(n));
        for (counter, n) in self.counter_names().zip(std::iter::once(counts.views).chain(shares)) {
            invocation.arg(counter).arg(n);
        }
        self.invoke(&invocation).await?;
        self.top_after_admin_change(partition).await
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
        self.top_after_admin_change(partition).await
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

    /// Records an admin change of an article's section or language in its partition's
    /// admin stream, with the values now stored, for the other instances' windows.
    pub(super) async fn announce_meta(
        &self,
        article: &ArticleId,
        stored: &crate::event::Meta,
    ) -> Result<(), StoreError> {
        let partition = Partition::of(article.as_str());
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(self.keys.admin(partition))
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LEN)
            .arg("*")
            .arg("article")
            .arg(article.as_str())
            .arg("forget")
            .arg("0")
            .arg("section")
            .arg(stored.section.as_deref().unwrap_or(""))
            .arg("lang")
            .arg(stored.lang.as_deref().unwrap_or(""))
            .ignore();
        self.query::<()>(&pipe).await
    }

    async fn invoke(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<(), StoreError> {
        self.call(CALL_TIMEOUT, |mut conn| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
    }
}
