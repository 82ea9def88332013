//! Applying a batch: split by partition, one `apply.lua` call per piece, the pieces
//! sent as the flush's pacing lets them (`RedisStore::run_scripts`). The script sets
//! the batch's bit in the run's exactly-once record, adds the deltas to the totals and
//! to the hour's and the day's series, notes the sections and languages, and appends
//! the piece to its minute's log, atomically; reads test the same bit.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Cmd, Script};

use super::keys::{self, MetaKind, Partition, PARTITIONS, VIEWS_FIELD};
use super::top::{bucket_time, MINUTE_TTL};
use super::RedisStore;
use crate::store::series::{Point, Step};
use crate::store::{Applied, ArticleDelta, Batch, StoreError};
use crate::top::Granularity;

/// How long a run's exactly-once record outlives its last batch: a batch (in memory
/// or in a spill file) older than this may be applied twice.
pub const APPLIED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("apply.lua")));

impl RedisStore {
    /// Applies each partition's piece of `batch` at most once.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        let calls = self.apply_calls(batch);
        let applied: i64 = self.run_scripts(&APPLY, &calls).await?.into_iter().sum();
        Ok(match applied {
            0 => Applied::Duplicate,
            n if n == calls.len() as i64 => Applied::Applied,
            _ => Applied::Partial,
        })
    }

    /// One `EVALSHA` of `apply.lua` per partition the batch touches, with the articles
    /// it carries.
    fn apply_calls(&self, batch: &Batch) -> Vec<(Cmd, u32)> {
        let mut by_partition: Vec<Vec<&ArticleDelta>> = vec![Vec::new(); PARTITIONS as usize];
        for d in &batch.articles {
            by_partition[Partition::of(d.article.as_str()).index() as usize].push(d);
        }
        let now = self.clock.now_ms();
        let minute = Granularity::Minute.bucket(bucket_time(batch.flushed_at_ms, now));
        // The series date events by their flush, late or not: a point is never read as closed.
        let series_at = batch.flushed_at_ms;
        let mut calls = Vec::new();
        for (index, deltas) in by_partition.iter().enumerate() {
            if deltas.is_empty() {
                continue;
            }
            let partition = Partition::from_index(index as u32);
            // EVALSHA by hand: the crate's script invocation would build the call again
            // for each retry.
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(APPLY.get_hash())
                .arg(10)
                .arg(self.keys.applied(partition, &batch.id))
                .arg(self.keys.counts(partition))
                .arg(self.keys.meta(partition))
                .arg(self.keys.bucket(partition, Granularity::Minute, minute))
                .arg(self.keys.series(partition, Step::Hour, Step::Hour.bucket(series_at)))
                .arg(self.keys.series(partition, Step::Day, Step::Day.bucket(series_at)))
                .arg(self.keys.meta_values(partition, MetaKind::Section))
                .arg(self.keys.meta_values(partition, MetaKind::Lang))
                .arg(self.keys.pages(partition))
                .arg(self.keys.visitors(partition))
                .arg(APPLIED_TTL.as_secs())
                .arg(keys::applied_bit(&batch.id))
                .arg(MINUTE_TTL.as_secs())
                .arg(log_entry(deltas));
            push_piece_args(&mut cmd, deltas);
            push_series_args(&mut cmd, deltas, series_at, now);
            cmd.arg(self.keys.sketch_prefix(partition)).arg(SKETCH_TTL.as_secs());
            push_visitor_args(&mut cmd, deltas);
            calls.push((cmd, deltas.len() as u32));
        }
        calls
    }
}

/// The counters of `d` that changed, as `(share network or None for views, delta)`:
/// the only writes a flush makes.
fn increments(d: &ArticleDelta) -> impl Iterator<Item = (Option<&str>, u64)> {
    let views = (d.counts.views > 0).then_some((None, d.counts.views));
    let shares = d
        .counts
        .shares
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(network, n)| (Some(&**network), *n));
    views.into_iter().chain(shares)
}

/// The meta attributes the batch sets; an attribute the events did not give is kept.
fn meta_attrs(d: &ArticleDelta) -> impl Iterator<Item = (&'static str, &str)> + '_ {
    d.meta.fields()
}

/// The script's key index of a meta attribute: section and lang in the meta hash (read
/// whole when the top windows load), title and url apart in the pages hash (read per article).
fn meta_key(attr: &str) -> u8 {
    match attr {
        "section" | "lang" => 3,
        _ => 9,
    }
}

/// The piece's minute log entry: one line `<article>:<counter> <n>` per increment.
fn log_entry(deltas: &[&ArticleDelta]) -> String {
    let mut entry = String::with_capacity(deltas.len() * 32);
    for d in deltas {
        for (network, n) in increments(d) {
            push_field(&mut entry, d.article.as_str(), network);
            // Writing to a String cannot fail.
            let _ = writeln!(entry, " {n}");
        }
    }
    entry
}

/// `<article>:views`, or `<article>:share:<network>`.
fn push_field(out: &mut String, article: &str, network: Option<&str>) {
    out.push_str(article);
    out.push(':');
    match network {
        None => out.push_str(VIEWS_FIELD),
        Some(network) => {
            out.push_str(keys::SHARE_FIELD_PREFIX);
            out.push_str(network);
        }
    }
}

/// How long a day's sketch is kept after its first visitor: its day, then the two the
/// salt is kept, so a late batch still finds it.
const SKETCH_TTL: Duration = Duration::from_secs((1 + crate::visitors::KEEP_DAYS as u64) * 86_400);

/// `g`, then per (article, day) of the piece's visitor marks: article, day, `k`, the
/// `k` hashes.
fn push_visitor_args(cmd: &mut Cmd, deltas: &[&ArticleDelta]) {
    let groups = |d: &&ArticleDelta| d.visitors.chunk_by(|a, b| a.0 == b.0).count();
    cmd.arg(deltas.iter().map(groups).sum::<usize>());
    for d in deltas {
        for marks in d.visitors.chunk_by(|a, b| a.0 == b.0) {
            cmd.arg(d.article.as_str()).arg(marks[0].0).arg(marks.len());
            for (_, hash) in marks {
                cmd.arg(*hash);
            }
        }
    }
}

/// `n`, the `n` (counts field, delta) pairs, `m`, the `m` (meta field, value) pairs, as
/// the script reads them; written straight into the command, one reused field buffer.
fn push_piece_args(cmd: &mut Cmd, deltas: &[&ArticleDelta]) {
    let mut field = String::with_capacity(96);
    cmd.arg(deltas.iter().map(|d| increments(d).count()).sum::<usize>());
    for d in deltas {
        for (network, n) in increments(d) {
            field.clear();
            push_field(&mut field, d.article.as_str(), network);
            cmd.arg(field.as_str()).arg(n);
        }
    }
    cmd.arg(deltas.iter().map(|d| meta_attrs(d).count()).sum::<usize>());
    for d in deltas {
        let op = if d.meta.signed { "HSET" } else { "HSETNX" };
        for (attr, value) in meta_attrs(d) {
            field.clear();
            field.push_str(d.article.as_str());
            field.push(':');
            field.push_str(attr);
            cmd.arg(meta_key(attr)).arg(op).arg(field.as_str()).arg(value);
        }
    }
}

/// The TTLs of the piece's hour and day series buckets (0: past retention, skipped),
/// `k`, then `k` (article, views, shares) of the articles whose series change.
fn push_series_args(cmd: &mut Cmd, deltas: &[&ArticleDelta], series_at: u64, now_ms: u64) {
    for step in Step::ALL {
        cmd.arg(step.ttl_secs(step.bucket(series_at), now_ms));
    }
    let points: Vec<(&str, Point)> = deltas
        .iter()
        .map(|d| (d.article.as_str(), Point::of(d)))
        .filter(|(_, p)| !p.is_zero())
        .collect();
    cmd.arg(points.len());
    for (article, p) in points {
        cmd.arg(article).arg(p.views).arg(p.shares);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;
    use crate::event::{ArticleId, Meta};

    fn delta(article: &str, views: u64, shares: &[(&str, u64)], lang: Option<&str>) -> ArticleDelta {
        ArticleDelta {
            article: ArticleId::parse(article).unwrap(),
            counts: Counts::new(views, shares.iter().copied()),
            meta: Meta {
                section: None,
                lang: lang.map(Into::into),
                ..Meta::default()
            },
            visitors: Vec::new(),
        }
    }

    #[test]
    fn a_flush_writes_only_the_counters_that_changed() {
        let d = delta("a", 0, &[("x", 2), ("y", 0)], Some("en"));
        assert_eq!(increments(&d).collect::<Vec<_>>(), [(Some("x"), 2)]);
        assert_eq!(meta_attrs(&d).collect::<Vec<_>>(), [("lang", "en")]);
    }

    #[test]
    fn a_network_named_views_is_not_the_views_counter() {
        let d = delta("a", 1, &[("views", 2)], None);
        assert_eq!(log_entry(&[&d]), "a:views 1\na:share:views 2\n");
    }

    #[test]
    fn the_log_entry_lists_every_increment_of_the_piece() {
        let (a, b) = (delta("a-1.x", 3, &[("telegram", 2)], None), delta("b", 1, &[], None));
        assert_eq!(
            log_entry(&[&a, &b]),
            "a-1.x:views 3\na-1.x:share:telegram 2\nb:views 1\n"
        );
    }
}
