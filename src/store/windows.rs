//! In-memory tallies of every `/v1/top` window, kept up to date as batches are applied
//! and as buckets roll out (their rows are read back from the bucket source and
//! subtracted), so a ranking is one pass over one map: no scan of the store.

use std::collections::{HashMap, HashSet};

use crate::event::{ArticleId, Meta};
use crate::store::{ArticleDelta, Batch, StoreError};
use crate::top::{rank, Granularity, Tally, TopEntry, TopQuery, Window};

/// Where the rows of a past bucket can be read back (the store's bucket tables).
pub trait BucketSource {
    /// Every article's deltas in bucket `bucket` of granularity `g`.
    fn bucket_rows(&self, g: Granularity, bucket: u64) -> Result<Vec<ArticleDelta>, StoreError>;
}

#[derive(Debug, Default)]
struct Rolling {
    /// The oldest bucket the window holds.
    first: u64,
    /// The newest bucket added (batches may arrive after the window last rolled).
    newest: u64,
    tallies: HashMap<ArticleId, Tally>,
}

/// Tallies of every window plus the all-time totals and each article's metadata, for
/// at most `cap` articles (`--max-articles`): past it the least recently seen leave
/// (their counts stay in the store; one that comes back is ranked by what it gets
/// from then on).
#[derive(Debug)]
pub struct Windows {
    rolling: HashMap<Window, Rolling>,
    all: HashMap<ArticleId, Tally>,
    meta: HashMap<ArticleId, Meta>,
    /// Every tracked article and when a batch last held it (Unix seconds; 0: loaded).
    seen: HashMap<ArticleId, u32>,
    cap: usize,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            rolling: HashMap::new(),
            all: HashMap::new(),
            meta: HashMap::new(),
            seen: HashMap::new(),
            cap: usize::MAX,
        }
    }
}

fn add_delta(tallies: &mut HashMap<ArticleId, Tally>, d: &ArticleDelta, subtract: bool) {
    if subtract {
        if let Some(t) = tallies.get_mut(&d.article) {
            t.add(d.views, &d.shares, true);
            if t.is_zero() {
                tallies.remove(&d.article);
            }
        }
    } else {
        tallies
            .entry(d.article.clone())
            .or_default()
            .add(d.views, &d.shares, false);
    }
}

fn first_bucket(window: Window, now_ms: u64) -> Option<(Granularity, u64)> {
    let (g, n) = window.buckets()?;
    Some((g, (g.bucket(now_ms) + 1).saturating_sub(n)))
}

impl Windows {
    /// Builds every window at `now_ms` from the source's buckets, with the given
    /// all-time totals and metadata.
    pub fn load(
        source: &impl BucketSource,
        now_ms: u64,
        all: HashMap<ArticleId, Tally>,
        meta: HashMap<ArticleId, Meta>,
    ) -> Result<Windows, StoreError> {
        let mut w = Windows {
            all,
            meta,
            ..Windows::default()
        };
        for g in [Granularity::Minute, Granularity::Hour] {
            let windows: Vec<(Window, u64)> = Window::ALL
                .into_iter()
                .filter_map(|win| {
                    first_bucket(win, now_ms)
                        .filter(|(wg, _)| *wg == g)
                        .map(|(_, f)| (win, f))
                })
                .collect();
            let oldest = windows.iter().map(|(_, f)| *f).min().unwrap_or(0);
            for (win, first) in &windows {
                let r = Rolling {
                    first: *first,
                    newest: g.bucket(now_ms),
                    tallies: HashMap::new(),
                };
                w.rolling.insert(*win, r);
            }
            for bucket in oldest..=g.bucket(now_ms) {
                let rows = source.bucket_rows(g, bucket)?;
                for (win, first) in &windows {
                    if bucket >= *first {
                        let r = w.rolling.get_mut(win).expect("inserted above");
                        rows.iter().for_each(|d| add_delta(&mut r.tallies, d, false));
                    }
                }
            }
        }
        w.track_loaded();
        Ok(w)
    }

    /// Tracks every article the load found, as seen longest ago.
    fn track_loaded(&mut self) {
        let ids = self
            .all
            .keys()
            .chain(self.rolling.values().flat_map(|r| r.tallies.keys()));
        for id in ids {
            if !self.seen.contains_key(id) {
                self.seen.insert(id.clone(), 0);
            }
        }
    }

    /// Caps the articles tracked (`--max-articles`), evicting at once if over it.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        self.enforce_cap();
    }

    /// How many articles are tracked.
    pub fn tracked(&self) -> usize {
        self.seen.len()
    }

    /// Past the cap, evicts the least recently seen down to 1/64 below it, so the
    /// O(tracked) selection runs once per cap/64 new articles, not for each.
    fn enforce_cap(&mut self) {
        if self.seen.len() <= self.cap {
            return;
        }
        let target = self.cap - self.cap / 64;
        let evict = self.seen.len() - target;
        let mut times: Vec<u32> = self.seen.values().copied().collect();
        let (_, threshold, _) = times.select_nth_unstable(evict - 1);
        let threshold = *threshold;
        drop(times);
        let below = self.seen.values().filter(|t| **t < threshold).count();
        let mut ties = evict - below;
        let mut gone = Vec::with_capacity(evict);
        self.seen.retain(|id, t| {
            let leave = *t < threshold
                || (*t == threshold && ties > 0 && {
                    ties -= 1;
                    true
                });
            if leave {
                gone.push(id.clone());
            }
            !leave
        });
        for id in &gone {
            self.all.remove(id);
            self.meta.remove(id);
            for r in self.rolling.values_mut() {
                r.tallies.remove(id);
            }
        }
        self.seen.shrink_to_fit();
    }

    fn touch(&mut self, article: &ArticleId, at_s: u32) {
        match self.seen.get_mut(article) {
            Some(t) => *t = (*t).max(at_s),
            None => {
                self.seen.insert(article.clone(), at_s);
            }
        }
    }

    /// Subtracts the buckets that left each window by `now_ms`.
    pub fn roll(&mut self, source: &impl BucketSource, now_ms: u64) -> Result<(), StoreError> {
        for (win, r) in self.rolling.iter_mut() {
            let Some((g, new_first)) = first_bucket(*win, now_ms) else {
                continue;
            };
            if r.newest < new_first {
                // Everything held has left the window.
                r.tallies.clear();
                r.first = r.first.max(new_first);
            }
            // Buckets past the retention have no rows left to subtract.
            r.first = r.first.max(g.bucket(now_ms).saturating_sub(g.retention()));
            while r.first < new_first {
                for d in source.bucket_rows(g, r.first)? {
                    add_delta(&mut r.tallies, &d, true);
                }
                r.first += 1;
            }
        }
        Ok(())
    }

    /// The buckets the next `roll(.., now_ms)` reads back, so a source that must fetch
    /// them first (the Redis store) can do so in one round trip.
    pub fn leaving(&self, now_ms: u64) -> HashSet<(Granularity, u64)> {
        let mut out = HashSet::new();
        for (win, r) in &self.rolling {
            let Some((g, new_first)) = first_bucket(*win, now_ms) else {
                continue;
            };
            if r.newest < new_first {
                continue;
            }
            let first = r.first.max(g.bucket(now_ms).saturating_sub(g.retention()));
            out.extend((first..new_first).map(|b| (g, b)));
        }
        out
    }

    /// Adds an applied batch to every window that still holds its bucket.
    pub fn apply(&mut self, batch: &Batch) {
        let at_s = u32::try_from(batch.flushed_at_ms / 1000).unwrap_or(u32::MAX);
        // A delta of visitor marks alone changes no ranking.
        let ranked = |d: &&ArticleDelta| !d.is_visitors_only();
        for d in batch.articles.iter().filter(ranked) {
            self.touch(&d.article, at_s);
        }
        for (win, r) in self.rolling.iter_mut() {
            let (g, _) = win.buckets().expect("rolling windows have buckets");
            let bucket = g.bucket(batch.flushed_at_ms);
            if bucket >= r.first {
                r.newest = r.newest.max(bucket);
                batch
                    .articles
                    .iter()
                    .filter(ranked)
                    .for_each(|d| add_delta(&mut r.tallies, d, false));
            }
        }
        for d in batch.articles.iter().filter(ranked) {
            add_delta(&mut self.all, d, false);
            if !d.meta.is_empty() {
                let m = self.meta.entry(d.article.clone()).or_default();
                if d.meta.section.is_some() {
                    m.section = d.meta.section.clone();
                }
                if d.meta.lang.is_some() {
                    m.lang = d.meta.lang.clone();
                }
            }
        }
        self.enforce_cap();
    }

    /// Replaces an article's section and language (admin set); title and url are not
    /// held here (they are read per article from the store).
    pub fn set_meta(&mut self, article: &ArticleId, meta: Meta) {
        let m = self.meta.entry(article.clone()).or_default();
        m.section = meta.section;
        m.lang = meta.lang;
    }

    /// Replaces an article's all-time totals (admin set).
    pub fn set_total(&mut self, article: &ArticleId, total: Tally) {
        self.touch(article, 0);
        if total.is_zero() {
            self.all.remove(article);
        } else {
            self.all.insert(article.clone(), total);
        }
    }

    /// Applies an admin change made through any instance: `raise` is added to the
    /// article's all-time total and `lower` taken from it; `forget` (an admin delete,
    /// whose buckets were rewritten without the article) also drops it from the
    /// rolling windows and forgets its metadata.
    pub fn admin_change(&mut self, article: &ArticleId, raise: &Tally, lower: &Tally, forget: bool) {
        self.touch(article, 0);
        let total = self.all.entry(article.clone()).or_default();
        total.add(raise.views, &raise.shares, false);
        total.add(lower.views, &lower.shares, true);
        if total.is_zero() {
            self.all.remove(article);
        }
        if forget {
            self.forget_outside_all(article);
        }
    }

    /// Forgets an article everywhere (admin delete).
    pub fn forget(&mut self, article: &ArticleId) {
        self.all.remove(article);
        self.forget_outside_all(article);
    }

    /// Drops an article's metadata and its tallies in the rolling windows.
    fn forget_outside_all(&mut self, article: &ArticleId) {
        self.meta.remove(article);
        self.seen.remove(article);
        for r in self.rolling.values_mut() {
            r.tallies.remove(article);
        }
    }

    /// The ranking of `q` (call `roll` first).
    pub fn top(&self, q: &TopQuery) -> Vec<TopEntry> {
        let tallies = match q.window {
            Window::All => &self.all,
            w => &self.rolling.get(&w).expect("every rolling window is loaded").tallies,
        };
        rank(tallies, &self.meta, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BatchId;

    fn delta(article: &str, views: u64) -> ArticleDelta {
        ArticleDelta {
            article: ArticleId::parse(article).unwrap(),
            views,
            shares: Vec::new(),
            meta: Meta::default(),
            visitors: vec![(20_000, 7)],
        }
    }

    #[test]
    fn a_delta_of_visitor_marks_alone_is_not_tracked() {
        let mut w = Windows::default();
        w.apply(&Batch {
            id: BatchId {
                instance: "t".into(),
                epoch_ms: 1,
                seq: 1,
                chunk: 0,
            },
            flushed_at_ms: 1_000,
            articles: vec![delta("marks-only", 0), delta("viewed", 1)],
        });
        assert_eq!(w.tracked(), 1);
    }
}
