//! Reading from Redis: totals (one `HMGET` of an article's counters in its partition's
//! counts hash, pipelined) and, for the API's reads, a snapshot that also tells which
//! unacknowledged batches already landed, so a batch landing during a read is counted once.

use std::sync::Arc;

use redis::{Cmd, Value};

use super::keys::{self, article_field, MetaKind, Partition, VIEWS_FIELD};
use super::RedisStore;
use crate::counts::Counts;
use crate::event::{ArticleId, Meta, META_FIELDS};
use crate::store::{ArticleRead, Batch, BatchId, StoreError};

/// The values of an `HMGET`.
type Fields = Vec<Option<String>>;

/// The metadata the two `HMGET`s of [`RedisStore::read_meta`] answered.
fn meta_of(meta: Fields, pages: Fields) -> Meta {
    let mut out = Meta::default();
    for (name, value) in META_FIELDS.into_iter().zip(meta.into_iter().chain(pages)) {
        if let Some(v) = value {
            out.set(name, &v);
        }
    }
    out
}

impl RedisStore {
    /// Stored totals of each article, in the order asked (all read at once).
    pub async fn counts(&self, articles: &[ArticleId]) -> Result<Vec<Counts>, StoreError> {
        let reads: Vec<Cmd> = articles.iter().map(|a| self.counters_of(a)).collect();
        let counters: Vec<Vec<Option<u64>>> = self.each_read(&reads).await?;
        Ok(counters.into_iter().map(|c| self.stored_counts(c)).collect())
    }

    /// Everything an API read of `articles` needs, in one transaction per article (its
    /// keys share a slot), all sent at once: one round trip, so a read waits for Redis
    /// once, not once per part, while a flush keeps Redis busy.
    pub async fn article_reads(
        &self,
        articles: &[ArticleId],
        unacked: &[Arc<Batch>],
    ) -> Result<Vec<ArticleRead>, StoreError> {
        let mut reads = Vec::with_capacity(articles.len());
        let mut plan: Vec<Vec<&BatchId>> = Vec::with_capacity(articles.len());
        for a in articles {
            let (name, partition) = (a.as_str(), Partition::of(a.as_str()));
            let mut pipe = redis::pipe();
            pipe.atomic().add_command(self.counters_of(a));
            self.read_meta(&mut pipe, name, partition)
                .cmd("HGET")
                .arg(self.keys.visitors(partition))
                .arg(name);
            let batches: Vec<&BatchId> = unacked
                .iter()
                .filter(|b| b.get(name).is_some())
                .map(|b| &b.id)
                .collect();
            for id in &batches {
                pipe.getbit(self.keys.applied(partition, id), keys::applied_bit(id) as usize);
            }
            reads.push(pipe);
            plan.push(batches);
        }
        let replies: Vec<Vec<Value>> = self.each_read(&reads).await?;
        plan.into_iter()
            .zip(replies)
            .map(|(batches, values)| self.article_read(batches, values))
            .collect()
    }

    /// One article's [`ArticleRead`] from its transaction's replies.
    fn article_read(&self, batches: Vec<&BatchId>, values: Vec<Value>) -> Result<ArticleRead, StoreError> {
        let mut values = values.into_iter();
        let mut next = || values.next().ok_or_else(|| super::corrupt("short transaction reply"));
        let counters: Vec<Option<u64>> = redis::from_redis_value(next()?)?;
        let meta: Fields = redis::from_redis_value(next()?)?;
        let pages: Fields = redis::from_redis_value(next()?)?;
        let visitors: Option<u64> = redis::from_redis_value(next()?)?;
        let mut read = ArticleRead {
            stored: self.stored_counts(counters),
            landed: Vec::new(),
            meta: meta_of(meta, pages),
            visitors: visitors.unwrap_or_default(),
        };
        for id in batches {
            let landed: bool = redis::from_redis_value(next()?)?;
            if landed {
                read.landed.push(id.clone());
            }
        }
        Ok(read)
    }

    /// The stored metadata of an article.
    pub async fn meta(&self, article: &ArticleId) -> Result<Meta, StoreError> {
        let mut all = self.metas(std::slice::from_ref(article)).await?;
        Ok(all.remove(0))
    }

    /// The stored metadata of each article, in the order asked (all read at once; per
    /// article one transaction of its meta and pages fields, which share a slot).
    pub async fn metas(&self, articles: &[ArticleId]) -> Result<Vec<Meta>, StoreError> {
        let reads: Vec<redis::Pipeline> = articles
            .iter()
            .map(|a| {
                let mut pipe = redis::pipe();
                self.read_meta(pipe.atomic(), a.as_str(), Partition::of(a.as_str()));
                pipe
            })
            .collect();
        let replies: Vec<(Fields, Fields)> = self.each_read(&reads).await?;
        Ok(replies.into_iter().map(|(meta, pages)| meta_of(meta, pages)).collect())
    }

    /// Adds to `pipe` the two `HMGET`s of `article`'s metadata: section and language
    /// from the meta hash, title and url from the pages hash (as [`meta_of`] reads them).
    fn read_meta<'p>(&self, pipe: &'p mut redis::Pipeline, article: &str, p: Partition) -> &'p mut redis::Pipeline {
        pipe.cmd("HMGET")
            .arg(self.keys.meta(p))
            .arg(article_field(article, "section"))
            .arg(article_field(article, "lang"))
            .cmd("HMGET")
            .arg(self.keys.pages(p))
            .arg(article_field(article, "title"))
            .arg(article_field(article, "url"))
    }

    /// The visitor salt of `day`, `candidate` if none was stored (`SET NX`: the first
    /// instance's wins), expiring two days after the day ends.
    pub async fn salt(
        &self,
        day: crate::visitors::Day,
        candidate: crate::visitors::Salt,
    ) -> Result<crate::visitors::Salt, StoreError> {
        let key = self.keys.salt(day);
        let expire_at = (u64::from(day) + 1 + u64::from(crate::visitors::KEEP_DAYS)) * 86_400;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(hex::encode(candidate))
            .arg("NX")
            .arg("EXAT")
            .arg(expire_at)
            .ignore()
            .get(&key);
        let (stored,): (String,) = self.query(&pipe).await?;
        let bytes = hex::decode(stored).map_err(super::corrupt)?;
        bytes
            .try_into()
            .map_err(|_| super::corrupt("a stored salt is not 16 bytes"))
    }

    /// Each article's visitors (summed over days), in the order asked (read at once).
    pub async fn visitors(&self, articles: &[ArticleId]) -> Result<Vec<u64>, StoreError> {
        let reads: Vec<Cmd> = articles
            .iter()
            .map(|a| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(self.keys.visitors(Partition::of(a.as_str()))).arg(a.as_str());
                cmd
            })
            .collect();
        let values: Vec<Option<u64>> = self.each_read(&reads).await?;
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Replaces the metadata fields `meta` has (admin `PUT`).
    pub async fn set_meta(&self, article: &ArticleId, meta: &Meta) -> Result<(), StoreError> {
        let (a, p) = (article.as_str(), Partition::of(article.as_str()));
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (name, value) in meta.fields() {
            let key = match name {
                "section" | "lang" => self.keys.meta(p),
                _ => self.keys.pages(p),
            };
            pipe.hset(key, article_field(a, name), value).ignore();
            let kind = match name {
                "section" => Some(MetaKind::Section),
                "lang" => Some(MetaKind::Lang),
                _ => None,
            };
            if let Some(kind) = kind {
                // What /v1/meta offers follows what is stored.
                pipe.sadd(self.keys.meta_values(p, kind), value).ignore();
            }
        }
        self.query::<()>(&pipe).await?;
        if meta.section.is_none() && meta.lang.is_none() {
            return Ok(()); // The windows hold no title or url.
        }
        // Through the admin stream, as a set or a delete: this instance's windows follow
        // at once, every other instance's at its next refresh, even if the article is
        // never flushed again.
        let stored = self.meta(article).await?;
        self.announce_meta(article, &stored).await?;
        self.top_after_admin_change(p).await
    }
}

impl RedisStore {
    /// Every counter an article can have: `views`, then `share:<network>` for each
    /// configured network, in [`crate::event::Networks`] order.
    pub(super) fn counter_names(&self) -> impl Iterator<Item = String> + '_ {
        let shares = self.networks.names().map(keys::share_field);
        std::iter::once(VIEWS_FIELD.to_string()).chain(shares)
    }

    /// The counts-hash fields of every counter `article` can have ([`Self::counter_names`]).
    fn counter_fields(&self, article: &str) -> Vec<String> {
        self.counter_names()
            .map(|counter| article_field(article, &counter))
            .collect()
    }

    /// `HMGET` of every counter of `article`.
    fn counters_of(&self, article: &ArticleId) -> Cmd {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.counts(Partition::of(article.as_str())))
            .arg(self.counter_fields(article.as_str()));
        cmd
    }

    /// The totals an `HMGET` of [`Self::counter_fields`] answered.
    fn stored_counts(&self, counters: Vec<Option<u64>>) -> Counts {
        let mut values = counters.into_iter();
        let views = values.next().flatten().unwrap_or(0);
        Counts::new(views, self.networks.names().zip(values.map(Option::unwrap_or_default)))
    }
}
