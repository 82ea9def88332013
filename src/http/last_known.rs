//! The last store totals each article was read with, so reads can still answer while
//! the store is unreachable: last known totals + the unacknowledged batches they did
//! not hold yet + pending. Bounded; written only by successful reads.
//!
//! The totals are kept with the queued batches they already held (applied, their
//! acknowledgement not processed yet): adding every queued batch to them would count
//! those twice. A batch acknowledged after the last read is in neither (it left the
//! queue): a fallback answer can be that much behind, never ahead.

use dashmap::DashMap;

use crate::counts::Counts;
use crate::event::ArticleId;
use crate::store::{ArticleRead, BatchId};

/// How many articles are remembered: the hot articles of a news site fit easily, and
/// the map stays a few megabytes.
pub const CAPACITY: usize = 100_000;

/// What the last successful read of an article took from the store.
#[derive(Debug, Clone)]
struct Known {
    stored: Counts,
    landed: Vec<BatchId>,
}

/// Last successfully read store totals by article.
#[derive(Debug)]
pub struct LastKnown {
    map: DashMap<ArticleId, Known>,
    capacity: usize,
}

impl Default for LastKnown {
    fn default() -> Self {
        LastKnown::with_capacity(CAPACITY)
    }
}

impl LastKnown {
    /// An empty cache of at most `capacity` articles.
    pub fn with_capacity(capacity: usize) -> Self {
        LastKnown {
            map: DashMap::new(),
            capacity,
        }
    }

    /// Remembers what the store answered. When full, only articles already held are
    /// updated: which articles stay is decided by who was read first, which is good
    /// enough for a fallback and needs no eviction bookkeeping on the read path.
    pub fn remember(&self, ids: &[ArticleId], reads: &[ArticleRead]) {
        for (id, read) in ids.iter().zip(reads) {
            let known = Known {
                stored: read.stored.clone(),
                landed: read.landed.clone(),
            };
            if let Some(mut held) = self.map.get_mut(id) {
                *held = known;
            } else if self.map.len() < self.capacity {
                self.map.insert(id.clone(), known);
            }
        }
    }

    /// The remembered totals of every id, with the batches they held, as reads without
    /// metadata or visitors; None if any of them was never read.
    pub fn recall(&self, ids: &[ArticleId]) -> Option<Vec<ArticleRead>> {
        ids.iter()
            .map(|id| {
                self.map.get(id).map(|k| ArticleRead {
                    stored: k.stored.clone(),
                    landed: k.landed.clone(),
                    ..ArticleRead::default()
                })
            })
            .collect()
    }

    /// Drops an article (admin set or delete changed its totals).
    pub fn forget(&self, id: &ArticleId) {
        self.map.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ArticleId {
        ArticleId::parse(s).unwrap()
    }

    fn views(n: u64) -> ArticleRead {
        ArticleRead {
            stored: Counts::of_views(n),
            ..ArticleRead::default()
        }
    }

    fn recalled_views(cache: &LastKnown, ids: &[ArticleId]) -> Option<Vec<u64>> {
        cache
            .recall(ids)
            .map(|reads| reads.iter().map(|r| r.stored.views).collect())
    }

    #[test]
    fn a_read_is_recalled_with_its_latest_totals() {
        let cache = LastKnown::default();
        cache.remember(&[id("a")], &[views(1)]);
        cache.remember(&[id("a")], &[views(5)]);
        assert_eq!(recalled_views(&cache, &[id("a")]), Some(vec![5]));
    }

    #[test]
    fn one_unknown_article_means_no_answer() {
        let cache = LastKnown::default();
        cache.remember(&[id("a")], &[views(1)]);
        assert_eq!(recalled_views(&cache, &[id("a"), id("b")]), None);
    }

    #[test]
    fn a_full_cache_keeps_its_articles_and_updates_them() {
        let cache = LastKnown::with_capacity(1);
        cache.remember(&[id("a"), id("b")], &[views(1), views(2)]);
        cache.remember(&[id("a")], &[views(3)]);
        assert_eq!(recalled_views(&cache, &[id("a")]), Some(vec![3]));
        assert_eq!(recalled_views(&cache, &[id("b")]), None);
    }

    #[test]
    fn the_batches_a_read_found_applied_are_recalled_with_its_totals() {
        let cache = LastKnown::default();
        let landed = BatchId {
            instance: "i".into(),
            epoch_ms: 1,
            seq: 7,
            chunk: 0,
        };
        let read = ArticleRead {
            landed: vec![landed.clone()],
            ..views(4)
        };
        cache.remember(&[id("a")], &[read]);
        assert_eq!(cache.recall(&[id("a")]).unwrap()[0].landed, [landed]);
    }

    #[test]
    fn a_forgotten_article_is_not_recalled() {
        let cache = LastKnown::default();
        cache.remember(&[id("a")], &[views(1)]);
        cache.forget(&id("a"));
        assert_eq!(recalled_views(&cache, &[id("a")]), None);
    }
}
