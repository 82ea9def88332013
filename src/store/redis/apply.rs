//! Applying a batch: split by partition, one `apply.lua` call per piece, all pieces
//! of a batch in one pipeline. The script advances the run's exactly-once record, adds
//! the deltas to the totals and appends the piece to its minute's log, atomically;
//! `landed` is its comparison, mirrored for reads.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Pipeline, Script};

use super::buckets::log_lines;
use super::top::{bucket_time, MINUTE_TTL};
use super::RedisStore;
use crate::event::Meta;
use crate::store::keys::{self, Partition, VIEWS_FIELD};
use crate::store::{Applied, ArticleDelta, Batch, BatchId, StoreError};
use crate::top::Granularity;

/// How long a run's exactly-once record outlives its last batch: a batch (in memory
/// or in a spill file) older than this may be applied twice.
pub const APPLIED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("apply.lua")));

impl RedisStore {
    /// Applies each partition's piece of `batch` at most once.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        let pipe = self.apply_pipeline(batch);
        let applied: i64 = self.run_script_pipeline(&APPLY, &pipe).await?.into_iter().sum();
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
        let minute = Granularity::Minute.bucket(bucket_time(batch.flushed_at_ms, self.clock.now_ms()));
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (partition, deltas) in by_partition {
            let mut keys = vec![
                self.keys.applied(partition, &batch.id),
                self.keys.meta(partition),
                self.keys.bucket(partition, Granularity::Minute, minute),
            ];
            let mut args = vec![
                APPLIED_TTL.as_secs().to_string(),
                batch.id.seq.to_string(),
                batch.id.chunk.to_string(),
                MINUTE_TTL.as_secs().to_string(),
                String::new(),
            ];
            let mut entry = String::new();
            for d in deltas {
                keys.push(self.keys.counts(d.article.as_str()));
                let counters = increments(d);
                log_lines(&mut entry, d.article.as_str(), &counters);
                push_pairs(&mut args, counters);
                push_pairs(&mut args, meta_fields(d.article.as_str(), &d.meta));
            }
            args[4] = entry;
            // EVALSHA by hand: the crate's script invocation cannot join a pipeline.
            pipe.cmd("EVALSHA")
                .arg(APPLY.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args);
        }
        pipe
    }
}

/// Whether the run's record (`<seq>:<chunk>`, or none) shows that the piece of `id`
/// landed: the same test as `apply.lua`, since a run applies its batches in order.
pub fn landed(record: Option<&str>, id: &BatchId) -> bool {
    let parsed = record.and_then(|r| {
        let (seq, chunk) = r.split_once(':')?;
        Some((seq.parse::<u64>().ok()?, chunk.parse::<u32>().ok()?))
    });
    parsed.is_some_and(|last| (id.seq, id.chunk) <= last)
}

/// `n`, then the `n` pairs, as the script reads them.
fn push_pairs(args: &mut Vec<String>, pairs: Vec<(String, String)>) {
    args.push(pairs.len().to_string());
    for (field, value) in pairs {
        args.push(field);
        args.push(value);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64, chunk: u32) -> BatchId {
        BatchId {
            instance: "i".into(),
            epoch_ms: 1,
            seq,
            chunk,
        }
    }

    #[test]
    fn a_piece_landed_when_the_record_is_at_or_after_its_id() {
        assert!(landed(Some("3:0"), &id(3, 0)));
        assert!(landed(Some("3:2"), &id(3, 1)));
        assert!(landed(Some("4:0"), &id(3, 7)));
        assert!(!landed(Some("3:0"), &id(3, 1)));
        assert!(!landed(Some("2:9"), &id(3, 0)));
        assert!(!landed(None, &id(1, 0)));
    }

    #[test]
    fn a_flush_writes_only_the_counters_that_changed() {
        let d = ArticleDelta {
            article: crate::event::ArticleId::parse("a").unwrap(),
            views: 0,
            shares: vec![("x".into(), 2)],
            meta: Meta {
                section: None,
                lang: Some("en".into()),
            },
        };
        assert_eq!(increments(&d), [("share:x".to_string(), "2".to_string())]);
        assert_eq!(meta_fields("a", &d.meta), [("a:lang".to_string(), "en".to_string())]);
    }
}
