//! The embedded store's time buckets: per-minute and per-hour rows written with each
//! batch, read back when a bucket rolls out of a window, pruned past the longest window.

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{err, upsert, SHARE_PREFIX, VIEWS};
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::store::windows::BucketSource;
use crate::store::{ArticleDelta, Batch, StoreError};
use crate::top::Granularity;

type BucketTable = TableDefinition<'static, (u64, &'static str, &'static str), u64>;

/// (minute, article, counter) -> count.
pub const MINUTES: BucketTable = TableDefinition::new("bucket_minutes");
/// (hour, article, counter) -> count.
pub const HOURS: BucketTable = TableDefinition::new("bucket_hours");

fn table(g: Granularity) -> BucketTable {
    match g {
        Granularity::Minute => MINUTES,
        Granularity::Hour => HOURS,
    }
}

fn counter_name(network: Option<&str>) -> String {
    network.map_or_else(|| VIEWS.to_string(), |n| format!("{SHARE_PREFIX}{n}"))
}

/// Adds the batch's deltas to its minute and hour buckets and prunes expired buckets.
pub fn write(txn: &WriteTransaction, batch: &Batch, now_ms: u64) -> Result<(), StoreError> {
    for g in [Granularity::Minute, Granularity::Hour] {
        let mut t = txn.open_table(table(g)).map_err(err)?;
        let bucket = g.bucket(batch.flushed_at_ms);
        for d in &batch.articles {
            let counters =
                std::iter::once((None, d.counts.views)).chain(d.counts.shares.iter().map(|(n, c)| (Some(&**n), *c)));
            for (network, n) in counters.filter(|(_, n)| *n > 0) {
                // Views (the common row) need no name built.
                let share;
                let counter = match network {
                    None => VIEWS,
                    Some(_) => {
                        share = counter_name(network);
                        share.as_str()
                    }
                };
                upsert(&mut t, (bucket, d.article.as_str(), counter), |old| {
                    old.unwrap_or(0) + n
                })?;
            }
        }
        let cutoff = g.bucket(now_ms).saturating_sub(g.retention());
        t.retain_in(..(cutoff, "", ""), |_, _| false).map_err(err)?;
    }
    Ok(())
}

/// Removes every bucket row of `article` (admin delete).
pub fn forget(txn: &WriteTransaction, article: &str, now_ms: u64) -> Result<(), StoreError> {
    for g in [Granularity::Minute, Granularity::Hour] {
        let mut t: Table<(u64, &str, &str), u64> = txn.open_table(table(g)).map_err(err)?;
        let last = g.bucket(now_ms) + 1;
        for bucket in last.saturating_sub(g.retention() + 1)..=last {
            t.retain_in((bucket, article, "")..(bucket, article, "\u{7f}"), |_, _| false)
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Reads buckets back through one read transaction.
pub struct Reader(pub ReadTransaction);

impl BucketSource for Reader {
    fn bucket_rows(&self, g: Granularity, bucket: u64) -> Result<Vec<ArticleDelta>, StoreError> {
        let t = self.0.open_table(table(g)).map_err(err)?;
        let mut out: Vec<ArticleDelta> = Vec::new();
        for row in t.range((bucket, "", "")..(bucket + 1, "", "")).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let (_, article, counter) = k.value();
            if out.last().is_none_or(|d| d.article.as_str() != article) {
                out.push(ArticleDelta {
                    article: ArticleId::parse(article).map_err(super::corrupt)?,
                    counts: Counts::default(),
                    meta: Meta::default(),
                    visitors: Vec::new(),
                });
            }
            let d = out.last_mut().expect("pushed above");
            match counter.strip_prefix(SHARE_PREFIX) {
                Some(network) => d.counts.add_share(network, v.value()),
                None => d.counts.views += v.value(),
            }
        }
        Ok(out)
    }
}

/// Every article's all-time totals from the counts table (startup), one article at a
/// time: its rows are consecutive in key order, so no map of every article is built.
pub fn totals<'a>(
    counts: &'a impl ReadableTable<(&'static str, &'static str), u64>,
) -> Result<impl Iterator<Item = Result<(ArticleId, Counts), StoreError>> + 'a, StoreError> {
    let mut rows = counts.iter().map_err(err)?.peekable();
    Ok(std::iter::from_fn(move || {
        let mut current: Option<(ArticleId, Counts)> = None;
        loop {
            let same = match rows.peek() {
                None => return current.map(Ok),
                Some(Err(_)) => true,
                Some(Ok((k, _))) => current.as_ref().is_none_or(|(id, _)| id.as_str() == k.value().0),
            };
            if !same {
                return current.map(Ok);
            }
            let (k, v) = match rows.next().expect("peeked") {
                Ok(row) => row,
                Err(e) => return Some(Err(err(e))),
            };
            let (article, counter) = k.value();
            let n = v.value();
            let Ok(id) = ArticleId::parse(article) else { continue };
            let (_, total) = current.get_or_insert_with(|| (id, Counts::default()));
            match counter.strip_prefix(SHARE_PREFIX) {
                Some(network) => total.add_share(network, n),
                None => total.views = total.views.saturating_add(n),
            }
        }
    }))
}
