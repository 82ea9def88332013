//! The last store totals each article was read with, so reads can still answer while
//! the store is unreachable: last known totals + unacknowledged batches + pending.
//! Bounded; written only by successful reads.

use dashmap::DashMap;

use crate::counts::Counts;
use crate::event::ArticleId;

/// How many articles are remembered: the hot articles of a news site fit easily, and
/// the map stays a few megabytes.
pub const CAPACITY: usize = 100_000;

/// Last successfully read store totals by article.
#[derive(Debug)]
pub struct LastKnown {
    map: DashMap<ArticleId, Counts>,
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
    pub fn remember(&self, ids: &[ArticleId], stored: &[Counts]) {
        for (id, counts) in ids.iter().zip(stored) {
            if let Some(mut held) = self.map.get_mut(id) {
                *held = counts.clone();
            } else if self.map.len() < self.capacity {
                self.map.insert(id.clone(), counts.clone());
            }
        }
    }

    /// The remembered totals of every id, or None if any of them was never read.
    pub fn recall(&self, ids: &[ArticleId]) -> Option<Vec<Counts>> {
        ids.iter().map(|id| self.map.get(id).map(|c| c.clone())).collect()
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

    fn views(n: u64) -> Counts {
        Counts {
            views: n,
            ..Counts::default()
        }
    }

    #[test]
    fn a_read_is_recalled_with_its_latest_totals() {
        let cache = LastKnown::default();
        cache.remember(&[id("a")], &[views(1)]);
        cache.remember(&[id("a")], &[views(5)]);
        assert_eq!(cache.recall(&[id("a")]), Some(vec![views(5)]));
    }

    #[test]
    fn one_unknown_article_means_no_answer() {
        let cache = LastKnown::default();
        cache.remember(&[id("a")], &[views(1)]);
        assert_eq!(cache.recall(&[id("a"), id("b")]), None);
    }

    #[test]
    fn a_full_cache_keeps_its_articles_and_updates_them() {
        let cache = LastKnown::with_capacity(1);
        cache.remember(&[id("a"), id("b")], &[views(1), views(2)]);
        cache.remember(&[id("a")], &[views(3)]);
        assert_eq!(cache.recall(&[id("a")]), Some(vec![views(3)]));
        assert_eq!(cache.recall(&[id("b")]), None);
    }

    #[test]
    fn a_forgotten_article_is_not_recalled() {
        let cache = LastKnown::default();
        cache.remember(&[id("a")], &[views(1)]);
        cache.forget(&id("a"));
        assert_eq!(cache.recall(&[id("a")]), None);
    }
}
