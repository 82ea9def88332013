//! The time buckets as flushes write them and the top windows read them back: a
//! minute log entry (lines `<article>:<counter> <n>`, one entry per applied piece) or
//! an hour hash (fields `<article>:<counter>`) becomes per-article tallies.

use std::collections::HashMap;

use super::keys::{SHARE_FIELD_PREFIX, VIEWS_FIELD};
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::store::windows::BucketSource;
use crate::store::{ArticleDelta, Batch, BatchId, StoreError};
use crate::top::Granularity;

/// One bucket's tallies by article, merged over the partitions (an article lives in one).
pub type Content = HashMap<ArticleId, Counts>;

/// Adds one counter (`views` or `share:<network>`) of `n` to `t`; false (and nothing
/// added) for any other name.
pub fn add_counter(t: &mut Counts, counter: &str, n: u64) -> bool {
    match counter.strip_prefix(SHARE_FIELD_PREFIX) {
        Some(network) => t.add_share(network, n),
        None if counter == VIEWS_FIELD => t.views = t.views.saturating_add(n),
        None => return false,
    }
    true
}

/// Adds one minute log entry read from Redis to `into`.
pub fn add_log_entry(into: &mut Content, entry: &str) {
    for line in entry.lines() {
        let Some((field, n)) = line.split_once(' ') else {
            continue;
        };
        let (Some((article, counter)), Ok(n)) = (field.split_once(':'), n.parse::<u64>()) else {
            continue;
        };
        let Ok(id) = ArticleId::parse(article) else { continue };
        add_counter(into.entry(id).or_default(), counter, n);
    }
}

/// Adds every tally of `what` to `into`.
pub fn merge(into: &mut Content, what: &Content) {
    for (id, t) in what {
        into.entry(id.clone()).or_default().add(t);
    }
}

/// Adds an hour bucket hash read from Redis to `into`.
pub fn add_bucket(into: &mut Content, hash: HashMap<String, u64>) {
    for (field, n) in hash {
        let Some((article, counter)) = field.split_once(':') else {
            continue;
        };
        let Ok(id) = ArticleId::parse(article) else { continue };
        add_counter(into.entry(id).or_default(), counter, n);
    }
}

/// Removes `what` from `from` (saturating), dropping tallies that reach zero.
pub fn subtract(from: &mut Content, what: &Content) {
    for (id, t) in what {
        if let Some(f) = from.get_mut(id) {
            f.sub(t);
            if f.is_zero() {
                from.remove(id);
            }
        }
    }
}

/// What `new` adds to `old`. Buckets only grow; a counter that shrank (an admin delete
/// removed its fields) adds nothing.
pub fn diff(new: &Content, old: Option<&Content>) -> Vec<ArticleDelta> {
    let mut out = Vec::new();
    for (id, t) in new {
        let mut added = t.clone();
        if let Some(before) = old.and_then(|o| o.get(id)) {
            added.sub(before);
        }
        if !added.is_zero() {
            out.push(ArticleDelta {
                article: id.clone(),
                counts: added,
                meta: Meta::default(),
                visitors: Vec::new(),
            });
        }
    }
    out.sort_by(|a, b| a.article.cmp(&b.article));
    out
}

/// A batch of deltas dated at the start of `minute`, as [`crate::store::windows::Windows`] takes it.
pub fn minute_batch(minute: u64, articles: Vec<ArticleDelta>) -> Batch {
    Batch {
        id: BatchId {
            instance: "redis-top".into(),
            epoch_ms: 0,
            seq: 0,
            chunk: 0,
        },
        flushed_at_ms: minute * Granularity::Minute.millis(),
        articles,
    }
}

/// Buckets fetched from Redis ahead of a load or roll. Asking for one that was not
/// fetched is an error, not an empty bucket, so a planning mistake cannot go unseen.
#[derive(Debug, Default)]
pub struct Fetched(pub HashMap<(Granularity, u64), Content>);

impl BucketSource for Fetched {
    fn bucket_rows(&self, g: Granularity, bucket: u64) -> Result<Vec<ArticleDelta>, StoreError> {
        let content = self
            .0
            .get(&(g, bucket))
            .ok_or_else(|| StoreError::Internal(format!("bucket {g:?} {bucket} was not fetched")))?;
        Ok(diff(content, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(rows: &[(&str, &str, u64)]) -> Content {
        let mut c = Content::new();
        add_bucket(
            &mut c,
            rows.iter()
                .map(|(a, counter, n)| (format!("{a}:{counter}"), *n))
                .collect(),
        );
        c
    }

    #[test]
    fn a_second_read_of_a_bucket_yields_only_what_was_added() {
        let old = content(&[("a", "views", 3), ("a", "share:x", 1)]);
        let new = content(&[
            ("a", "views", 5),
            ("a", "share:x", 1),
            ("a", "share:y", 2),
            ("b", "views", 1),
        ]);
        let d = diff(&new, Some(&old));
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].counts.views, d[0].counts.shares.clone()),
            (2, vec![("y".into(), 2)])
        );
        assert_eq!(d[1].counts.views, 1);
    }

    #[test]
    fn a_log_entry_reads_back_as_written() {
        // As src/store/redis/apply.rs writes it.
        let entry = "a-1.x:views 3\na-1.x:share:telegram 2\nb:views 1\n";
        let mut c = Content::new();
        add_log_entry(&mut c, entry);
        add_log_entry(&mut c, "b:views 4\ngarbage\n");
        let a = &c[&ArticleId::parse("a-1.x").unwrap()];
        assert_eq!((a.views, a.shares.clone()), (3, vec![("telegram".into(), 2)]));
        assert_eq!(c[&ArticleId::parse("b").unwrap()].views, 5);
    }

    #[test]
    fn fields_that_are_not_counters_are_ignored() {
        let c = content(&[("a", "views", 3), ("a", "bogus", 9), ("bad id", "views", 1)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[&ArticleId::parse("a").unwrap()].views, 3);
    }
}
