//! Redis key names, designed for Redis Cluster from the start: every key of an
//! article lives under the hash tag of the article's partition, so one Lua script
//! can touch an article's counts, its metadata and the partition's exactly-once
//! record in one slot. docs/redis-keys.md explains the schema.

use std::fmt;

use crate::store::series::Step;
use crate::store::BatchId;
use crate::top::Granularity;

/// Fixed number of partitions. Never change it on a live deployment: articles would
/// move to other keys and their stored totals would no longer be found.
pub const PARTITIONS: u32 = 64;

/// Field of the views counter in an article's counts hash.
pub const VIEWS_FIELD: &str = "views";
/// Prefix of a share counter's field: `share:<network>`.
pub const SHARE_FIELD_PREFIX: &str = "share:";

/// One partition: a hash tag `{pN}` shared by all its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(u32);

impl Partition {
    /// The partition of `article`: FNV-1a (64 bit) of its bytes, modulo [`PARTITIONS`].
    /// FNV-1a is tiny, stable across Rust versions and platforms, and spreads short
    /// numeric ids well; Rust's `DefaultHasher` makes no such stability promise.
    pub fn of(article: &str) -> Partition {
        let h = crate::fingerprint::fnv1a(article.as_bytes());
        Partition((h % u64::from(PARTITIONS)) as u32)
    }

    /// Partition number `index` (taken modulo [`PARTITIONS`]).
    pub fn from_index(index: u32) -> Partition {
        Partition(index % PARTITIONS)
    }

    /// The partition number, `0..PARTITIONS`.
    pub fn index(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Builds every key name from `--redis-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Key names under `prefix` (validated by the config: no braces, no spaces).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>:{pN}:counts`: one hash per partition with the totals of its articles,
    /// fields `<article>:views` and `<article>:share:<network>` (see [`article_field`]).
    /// One hash per partition, not one key per article, so that a flush piece reads and
    /// writes all its counters with one `HMGET` and one `HSET`.
    pub fn counts(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:counts", self.prefix)
    }

    /// `<prefix>:{pN}:meta`: one hash per partition, fields `<article>:section` and
    /// `<article>:lang`.
    pub fn meta(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:meta", self.prefix)
    }

    /// `<prefix>:{pN}:pages`: one hash per partition, fields `<article>:title` and
    /// `<article>:url` (apart from `meta`, which the top windows read whole at load).
    pub fn pages(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:pages", self.prefix)
    }

    /// `<prefix>:salt:<day>`: the visitor salt of a UTC day (days since the epoch), hex.
    pub fn salt(&self, day: u32) -> String {
        format!("{}:salt:{day}", self.prefix)
    }

    /// `<prefix>:{pN}:visitors`: one hash per partition, field `<article>`: the
    /// article's visitors, summed over days.
    pub fn visitors(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:visitors", self.prefix)
    }

    /// `<prefix>:{pN}:v:`: the start of the partition's HyperLogLog sketches of
    /// visitors, one per article and day: `<prefix>:{pN}:v:<day>:<article>`, kept three
    /// days (the flush script builds the names).
    pub fn sketch_prefix(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:v:", self.prefix)
    }

    /// `<prefix>:{pN}:m:<minute>`: the minute's log, a list with one entry per applied
    /// flush piece (lines `<article>:<counter> <n>`); or `<prefix>:{pN}:h:<hour>`: the
    /// hour bucket, a hash with fields `<article>:<counter>` (see [`article_field`]),
    /// filled by folding the hour's closed minute logs. Minutes and hours since the epoch.
    pub fn bucket(&self, partition: Partition, g: Granularity, bucket: u64) -> String {
        let tag = match g {
            Granularity::Minute => "m",
            Granularity::Hour => "h",
        };
        format!("{}:{{{partition}}}:{tag}:{bucket}", self.prefix)
    }

    /// `<prefix>:{pN}:sh:<hour>` or `<prefix>:{pN}:sd:<day>`: the partition's series
    /// bucket, a hash with fields `<article>:v` (views) and `<article>:s` (shares) whose
    /// TTL ends its retention (hours and days since the epoch, UTC).
    pub fn series(&self, partition: Partition, step: Step, bucket: u64) -> String {
        let tag = match step {
            Step::Hour => "sh",
            Step::Day => "sd",
        };
        format!("{}:{{{partition}}}:{tag}:{bucket}", self.prefix)
    }

    /// `<prefix>:{pN}:sections` or `<prefix>:{pN}:langs`: a set of the values seen in
    /// the partition's events, which `/v1/meta` unites over the partitions.
    pub fn meta_values(&self, partition: Partition, kind: MetaKind) -> String {
        let tag = match kind {
            MetaKind::Section => "sections",
            MetaKind::Lang => "langs",
        };
        format!("{}:{{{partition}}}:{tag}", self.prefix)
    }

    /// `<prefix>:{pN}:admin`: a stream of the partition's admin changes (article,
    /// whether it was deleted, the difference made to each counter), read by every
    /// instance's top windows.
    pub fn admin(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:admin", self.prefix)
    }

    /// `<prefix>:{pN}:folded`: the last minute whose log was folded into its hour.
    pub fn folded(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:folded", self.prefix)
    }

    /// `<prefix>:{pN}:`, the start of every key of the partition.
    pub fn partition_prefix(&self, partition: Partition) -> String {
        format!("{}:{{{partition}}}:", self.prefix)
    }

    /// `<prefix>:{pN}:applied:<instance>:<epoch_ms>:<segment>`: the exactly-once record
    /// of one process run in one partition, a bitmap with bit [`applied_bit`] set once
    /// the piece of batch `seq` landed. A segment holds [`APPLIED_SEGMENT_BITS`]
    /// sequence numbers (8 KiB), so the record of a long run expires piece by piece.
    pub fn applied(&self, partition: Partition, id: &BatchId) -> String {
        format!(
            "{}:{{{partition}}}:applied:{}:{}:{}",
            self.prefix,
            id.instance,
            id.epoch_ms,
            id.seq / APPLIED_SEGMENT_BITS
        )
    }
}

/// Which metadata values a set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// Sections.
    Section,
    /// Languages.
    Lang,
}

/// Sequence numbers per segment of an exactly-once record.
pub const APPLIED_SEGMENT_BITS: u64 = 65_536;

/// The bit of batch `id` in its segment of the exactly-once record.
pub fn applied_bit(id: &BatchId) -> u64 {
    id.seq % APPLIED_SEGMENT_BITS
}

/// The field of an article's attribute in a partition hash: `<article>:<name>`, where
/// `name` is a counter (`views`, `share:<network>`: the counts hash and the hour
/// buckets) or a metadata attribute (`section`, `lang`: the meta hash). Article ids
/// hold no `:`, so the first `:` splits it.
pub fn article_field(article: &str, name: &str) -> String {
    format!("{article}:{name}")
}

/// The counts-hash field of a share to `network`.
pub fn share_field(network: &str) -> String {
    format!("{SHARE_FIELD_PREFIX}{network}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> BatchId {
        BatchId {
            instance: "00ff".into(),
            epoch_ms: 1_700_000_000_000,
            seq: 7,
            chunk: 1,
        }
    }

    #[test]
    fn partitions_never_change_for_known_ids() {
        // Golden values (checked against an independent FNV-1a): if this fails, stored totals would be looked up under other keys.
        assert_eq!(Partition::of("12345").index(), 56);
        assert_eq!(Partition::of("a").index(), 12);
        assert_eq!(Partition::of("breaking-news.2026-11-28").index(), 2);
    }

    #[test]
    fn every_partition_is_used_by_a_few_thousand_ids() {
        let mut seen = [0u32; PARTITIONS as usize];
        for i in 0..6_400 {
            seen[Partition::of(&i.to_string()).index() as usize] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
    }

    #[test]
    fn keys_of_one_article_share_one_hash_tag() {
        let keys = Keys::new("vc");
        let p = Partition::of("12345");
        assert_eq!(keys.counts(p), "vc:{p56}:counts");
        assert_eq!(keys.meta(p), "vc:{p56}:meta");
        assert_eq!(keys.applied(p, &id()), "vc:{p56}:applied:00ff:1700000000000:0");
    }

    #[test]
    fn the_prefix_starts_every_key() {
        let keys = Keys::new("news.staging");
        let p = Partition::of("a");
        for key in [keys.counts(p), keys.meta(p), keys.applied(p, &id())] {
            assert!(key.starts_with("news.staging:{p12}:"), "{key}");
        }
    }

    #[test]
    fn bucket_keys_carry_the_partition_tag() {
        let keys = Keys::new("vc");
        let p = Partition::of("12345");
        assert_eq!(keys.bucket(p, Granularity::Minute, 7), "vc:{p56}:m:7");
        assert_eq!(keys.bucket(p, Granularity::Hour, 9), "vc:{p56}:h:9");
        assert_eq!(keys.series(p, Step::Hour, 9), "vc:{p56}:sh:9");
        assert_eq!(keys.series(p, Step::Day, 3), "vc:{p56}:sd:3");
        assert_eq!(keys.meta_values(p, MetaKind::Lang), "vc:{p56}:langs");
        assert_eq!(article_field("12345", "share:x"), "12345:share:x");
    }

    #[test]
    fn fields_name_the_counter() {
        assert_eq!(article_field("12345", "lang"), "12345:lang");
        assert_eq!(share_field("telegram"), "share:telegram");
    }
}
