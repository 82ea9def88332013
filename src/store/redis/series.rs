//! Series and filter values on Redis: an article's series is one pipeline (its
//! partition's slot) of an `HMGET` per bucket of the window; a bucket past its TTL is
//! gone and reads as zero. `/v1/meta` unites the partitions' sets of sections and
//! languages (`SMEMBERS`, 128 sets, each in its own slot).

use std::collections::BTreeSet;

use super::keys::{MetaKind, Partition, PARTITIONS};
use super::RedisStore;
use crate::event::ArticleId;
use crate::store::series::{MetaValues, Point, Series, SeriesWindow};
use crate::store::StoreError;

impl RedisStore {
    /// The series of `article` in `window` at the store's clock, zero-filled.
    pub async fn series(&self, article: &ArticleId, window: SeriesWindow) -> Result<Series, StoreError> {
        let (step, _) = window.shape();
        let buckets = window.buckets(self.clock.now_ms());
        let first = *buckets.start();
        let partition = Partition::of(article.as_str());
        let fields = [format!("{article}:v"), format!("{article}:s")];
        let mut pipe = redis::pipe();
        for bucket in buckets {
            pipe.cmd("HMGET")
                .arg(self.keys.series(partition, step, bucket))
                .arg(&fields);
        }
        let replies: Vec<Vec<Vec<Option<u64>>>> = self.each_read(&[pipe]).await?;
        let points = replies
            .into_iter()
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|v| Point {
                views: v.first().copied().flatten().unwrap_or(0),
                shares: v.get(1).copied().flatten().unwrap_or(0),
            })
            .collect();
        Ok(Series { step, first, points })
    }

    /// The sections and languages seen, each sorted.
    pub async fn meta_values(&self) -> Result<MetaValues, StoreError> {
        let mut reads = Vec::with_capacity(2 * PARTITIONS as usize);
        for kind in [MetaKind::Section, MetaKind::Lang] {
            for p in 0..PARTITIONS {
                let mut cmd = redis::cmd("SMEMBERS");
                cmd.arg(self.keys.meta_values(Partition::from_index(p), kind));
                reads.push(cmd);
            }
        }
        let sets: Vec<Vec<String>> = self.each_read(&reads).await?;
        let (sections, langs) = sets.split_at(PARTITIONS as usize);
        let union = |sets: &[Vec<String>]| -> Vec<String> {
            sets.iter()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        Ok(MetaValues {
            sections: union(sections),
            langs: union(langs),
        })
    }
}
