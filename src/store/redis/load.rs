//! Building the top windows at start (or after a long gap): per partition one
//! transaction that reads the totals, the fold record, the minute logs and the hour
//! buckets together, so they agree.

use std::collections::HashMap;
use std::time::Instant;

use redis::Value;

use super::buckets::{add_bucket, add_log_entry, diff, merge, minute_batch, subtract, Content, Fetched};
use super::changes::last_id;
use super::keys::{Partition, PARTITIONS};
use super::top::{open_from, TopState, HOUR, MINUTE, MINUTE_TTL, SKEW_MS};
use super::RedisStore;
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::store::windows::Windows;
use crate::store::StoreError;

/// What one partition's transaction read, merged into the instance-wide picture.
#[derive(Default)]
struct Loaded {
    all: HashMap<ArticleId, Counts>,
    meta: HashMap<ArticleId, Meta>,
    buckets: Fetched,
    read: HashMap<(u32, u64), usize>,
    /// The last admin change of each partition, as of its transaction.
    admin_read: Vec<String>,
}

fn next<T: redis::FromRedisValue>(values: &mut impl Iterator<Item = Value>) -> Result<T, StoreError> {
    redis::from_redis_value(values.next().ok_or_else(|| super::corrupt("short transaction reply"))?)
        .map_err(StoreError::from)
}

impl RedisStore {
    /// Reads everything the windows need at `now` and builds them.
    pub(super) async fn load(&self, now: u64) -> Result<TopState, StoreError> {
        let log_minutes = MINUTE_TTL.as_secs() / 60;
        let minutes: Vec<u64> =
            (MINUTE.bucket(now).saturating_sub(log_minutes)..=MINUTE.bucket(now + SKEW_MS)).collect();
        let hours: Vec<u64> = (HOUR.bucket(now) + 1 - HOUR.retention()..=HOUR.bucket(now)).collect();
        let mut loaded = Loaded::default();
        for p in 0..PARTITIONS {
            self.load_partition(p, &minutes, &hours, now, &mut loaded).await?;
        }
        let Loaded {
            mut all,
            meta,
            buckets,
            read,
            admin_read,
        } = loaded;
        all.retain(|_, t| !t.is_zero());
        // Minutes past `now` (an instance whose clock is ahead) are in the totals
        // already: take them out there and add them the way refreshes will.
        let future: Vec<(u64, &Content)> = (MINUTE.bucket(now) + 1..=MINUTE.bucket(now + SKEW_MS))
            .filter_map(|m| buckets.0.get(&(MINUTE, m)).map(|c| (m, c)))
            .collect();
        future.iter().for_each(|(_, c)| subtract(&mut all, c));
        let mut windows = Windows::load(&buckets, now, all.into_iter().map(Ok), meta.into_iter().map(Ok))?;
        for (m, c) in future {
            windows.apply(&minute_batch(m, diff(c, None)));
        }
        let from = open_from(now);
        Ok(TopState {
            windows,
            read: read.into_iter().filter(|((_, m), _)| *m >= from).collect(),
            open_from: from,
            admin_read,
            refreshed_at_ms: now,
            refreshed: Instant::now(),
        })
    }

    async fn load_partition(
        &self,
        p: u32,
        minutes: &[u64],
        hours: &[u64],
        now: u64,
        into: &mut Loaded,
    ) -> Result<(), StoreError> {
        let partition = Partition::from_index(p);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.hgetall(self.keys.counts(partition));
        pipe.get(self.keys.folded(partition));
        for &m in minutes {
            pipe.lrange(self.keys.bucket(partition, MINUTE, m), 0, -1);
        }
        for &h in hours {
            pipe.hgetall(self.keys.bucket(partition, HOUR, h));
        }
        pipe.hgetall(self.keys.meta(partition));
        pipe.cmd("XREVRANGE")
            .arg(self.keys.admin(partition))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let values: Vec<Value> = self.query(&pipe).await?;
        let mut values = values.into_iter();
        add_bucket(&mut into.all, next(&mut values)?);
        let folded: Option<u64> = next(&mut values)?;
        let mut unfolded: HashMap<u64, Content> = HashMap::new();
        for &m in minutes {
            let entries: Vec<String> = next(&mut values)?;
            let mut content = Content::new();
            entries.iter().for_each(|e| add_log_entry(&mut content, e));
            if !entries.is_empty() {
                into.read.insert((p, m), entries.len());
            }
            // Minutes not folded yet are not in their hour: add them (not the future).
            if folded.is_none_or(|f| m > f) && m <= MINUTE.bucket(now) {
                merge(unfolded.entry(HOUR.bucket(m * MINUTE.millis())).or_default(), &content);
            }
            merge(into.buckets.0.entry((MINUTE, m)).or_default(), &content);
        }
        for &h in hours {
            let hash: HashMap<String, u64> = next(&mut values)?;
            let bucket = into.buckets.0.entry((HOUR, h)).or_default();
            add_bucket(bucket, hash);
            if let Some(c) = unfolded.get(&h) {
                merge(bucket, c);
            }
        }
        let meta: HashMap<String, String> = next(&mut values)?;
        add_meta(&mut into.meta, meta);
        // The totals above hold every change up to this one; later ones are read by refreshes.
        into.admin_read.push(last_id(
            values.next().ok_or_else(|| super::corrupt("short transaction reply"))?,
        )?);
        Ok(())
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
