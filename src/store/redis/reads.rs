//! Reading from Redis: totals (`HGETALL` of each article, pipelined) and, for the
//! API's reads, a snapshot that also tells which unacknowledged batches already
//! landed, so a batch landing during a read is counted once.

use std::collections::HashMap;
use std::sync::Arc;

use redis::Value;

use super::apply::landed;
use super::{err, RedisStore};
use crate::event::{ArticleId, Meta};
use crate::store::keys::{self, Partition, SHARE_FIELD_PREFIX, VIEWS_FIELD};
use crate::store::{ArticleDelta, Batch, Snapshot, StoreError, StoredCounts};

impl RedisStore {
    /// Stored totals of each article, in the order asked (one pipelined round trip).
    pub async fn counts(&self, articles: &[ArticleId]) -> Result<Vec<StoredCounts>, StoreError> {
        let mut pipe = redis::pipe();
        for a in articles {
            pipe.hgetall(self.keys.counts(a.as_str()));
        }
        let hashes: Vec<HashMap<String, u64>> = self.query_read(&pipe).await?;
        Ok(hashes.into_iter().map(stored_counts).collect())
    }

    /// Each article's totals and the deltas of `unacked` batches not in them yet, in
    /// one transaction: the totals and the run records that say which pieces landed.
    /// (With Redis Cluster this becomes one transaction per partition: its keys share
    /// a slot.)
    pub async fn snapshot(&self, articles: &[ArticleId], unacked: &[Arc<Batch>]) -> Result<Vec<Snapshot>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut plan: Vec<Vec<(&Batch, &ArticleDelta)>> = Vec::with_capacity(articles.len());
        for a in articles {
            let partition = Partition::of(a.as_str());
            pipe.hgetall(self.keys.counts(a.as_str()));
            let batches: Vec<_> = unacked
                .iter()
                .filter_map(|b| b.get(a.as_str()).map(|d| (&**b, d)))
                .collect();
            for (b, _) in &batches {
                pipe.get(self.keys.applied(partition, &b.id));
            }
            plan.push(batches);
        }
        let mut values = self.query_read::<Vec<Value>>(&pipe).await?.into_iter();
        let mut next = || values.next().ok_or_else(|| err("short transaction reply"));
        let mut out = Vec::with_capacity(plan.len());
        for batches in plan {
            let hash: HashMap<String, u64> = redis::from_redis_value(next()?).map_err(err)?;
            let mut snap = Snapshot {
                stored: stored_counts(hash),
                unapplied: StoredCounts::default(),
            };
            for (b, d) in batches {
                let record: Option<String> = redis::from_redis_value(next()?).map_err(err)?;
                if !landed(record.as_deref(), &b.id) {
                    snap.unapplied.add(d);
                }
            }
            out.push(snap);
        }
        Ok(out)
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
            .call(
                self.read_timeout,
                |mut conn| async move { cmd.query_async(&mut conn).await },
            )
            .await?;
        Ok(Meta {
            section: section.map(Into::into),
            lang: lang.map(Into::into),
        })
    }
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
