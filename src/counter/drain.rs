//! Draining the map for a flush, in two halves so no reader waits for it: every pending
//! delta copied out, grouped by article, with the metadata that changed (no lock a
//! reader takes), then each copied delta subtracted from its slot (one atomic each)
//! while the flusher queues the batch. Keys idle for a whole interval leave the map.

use std::sync::atomic::Ordering;

use super::{with_key, CounterKey, CounterMap, Key, IDLE};
use crate::counts::Counts;
use crate::event::{ArticleId, Counter, Meta};
use crate::store::ArticleDelta;

/// Whether a drain takes the pending visitor marks along. Marks cost the Redis flush a
/// few commands per article, so the flusher sends them every `--visitor-flush-interval`,
/// not at every flush; counts go every flush either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitorMarks {
    /// Every article's marks go with the drain; an article with marks and no counts
    /// gets a delta of its marks alone.
    Take,
    /// The marks stay in the map for a later drain.
    Keep,
}

impl CounterMap {
    /// Moves every pending delta and visitor mark out and removes keys idle for a whole
    /// interval: a [`CounterMap::copy_pending`] followed at once by its
    /// [`CounterMap::settle`]. The result is sorted by article.
    pub fn drain(&self) -> Vec<ArticleDelta> {
        let drained = self.copy_pending(VisitorMarks::Take);
        self.settle(&drained);
        drained
    }

    /// The first half of a drain, which takes no lock a reader waits on: copies every
    /// pending delta (leaving it in the map, where reads still see it), attaches the
    /// metadata that changed, and removes keys idle for a whole interval. The caller
    /// must hand the copy to [`CounterMap::settle`] at the moment it makes the copied
    /// deltas visible elsewhere (the flusher's queue). Sorted by article.
    pub fn copy_pending(&self, visitors: VisitorMarks) -> Vec<ArticleDelta> {
        let mut rows: Vec<(ArticleId, Counter, u64)> = Vec::with_capacity(self.len());
        let mut idle: Vec<CounterKey> = Vec::new();
        for entry in self.counts.iter() {
            let now = entry.value().load(Ordering::Relaxed);
            if now == IDLE {
                idle.push(entry.key().clone());
            }
            let delta = now & !IDLE;
            if delta > 0 {
                let (counter, article) = entry.key().decode();
                rows.push((
                    ArticleId::parse(article).expect("keys hold validated ids"),
                    counter,
                    delta,
                ));
            }
        }
        self.remove_idle(idle);
        // Sorting small rows and grouping runs beats hashing a million articles.
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<ArticleDelta> = Vec::with_capacity(rows.len());
        for (article, counter, delta) in rows {
            if out.last().is_none_or(|d| d.article != article) {
                out.push(ArticleDelta::new(article));
            }
            let d = out.last_mut().expect("pushed above");
            match counter {
                Counter::View => d.counts.views += delta,
                Counter::Share(i) => d.counts.add_share(self.networks.name(i), delta),
            }
        }
        self.attach_meta(&mut out);
        if visitors == VisitorMarks::Take {
            self.attach_visitors(&mut out);
        }
        out
    }

    /// Moves every article's visitor marks into its delta, adding a delta of marks
    /// alone for an article with no count in this drain. Keeps `sorted` sorted.
    fn attach_visitors(&self, sorted: &mut Vec<ArticleDelta>) {
        let articles: Vec<Key> = self.visitors.iter().map(|e| e.key().clone()).collect();
        let counted = sorted.len();
        for article in articles {
            // Removed, not emptied: a mark added after this point makes a new entry.
            let Some((_, marks)) = self.visitors.remove(article.as_bytes()) else {
                continue;
            };
            self.visitor_marks.fetch_sub(marks.len(), Ordering::Relaxed);
            let mut marks: Vec<_> = marks.into_iter().collect();
            marks.sort_unstable();
            match sorted[..counted].binary_search_by(|d| d.article.as_str().cmp(article.as_str())) {
                Ok(i) => sorted[i].visitors = marks,
                Err(_) => {
                    let mut d = ArticleDelta::new(
                        ArticleId::parse(article.as_str()).expect("marks are kept for validated ids"),
                    );
                    d.visitors = marks;
                    sorted.push(d);
                }
            }
        }
        if sorted.len() > counted {
            sorted.sort_unstable_by(|a, b| a.article.cmp(&b.article));
        }
    }

    /// The second half of a drain: subtracts from each slot what
    /// [`CounterMap::copy_pending`] copied (an increment since stays, for the next
    /// drain) and marks the slot drained, so a key that then sees no event for a whole
    /// interval leaves the map. One atomic subtraction per copied counter. The flusher
    /// calls it through [`crate::flusher::InFlight::settle_into_queue`], a few articles
    /// at a time.
    pub fn settle(&self, copied: &[ArticleDelta]) {
        for d in copied {
            let article = d.article.as_str();
            if d.counts.views > 0 {
                self.take(Counter::View, article, d.counts.views);
            }
            for (network, n) in &d.counts.shares {
                if let Ok(i) = self.networks.find(network) {
                    self.take(Counter::Share(i), article, *n);
                }
            }
        }
    }

    fn take(&self, counter: Counter, article: &str, n: u64) {
        with_key(counter, article, |k| {
            // Absent only after an admin forget, which dropped the count anyway.
            if let Some(slot) = self.counts.get(k) {
                // SeqCst, as `CounterMap::pending` reads it: ordered with the watermarks
                // of the settling batch (flusher/in_flight.rs), so a read sees this
                // subtraction exactly when it sees the delta in the batch.
                slot.fetch_sub(n, Ordering::SeqCst);
                slot.fetch_or(IDLE, Ordering::Relaxed);
            }
        });
    }

    /// Gives each drained article the metadata that changed since the last drain (so
    /// the store hears of a section once, not every flush) and forgets metadata of
    /// articles idle for a whole interval.
    fn attach_meta(&self, sorted: &mut [ArticleDelta]) {
        let mut idle: Vec<Key> = Vec::new();
        let mut changed: Vec<(Key, Meta)> = Vec::new();
        for entry in self.meta.iter() {
            let slot = entry.value();
            let touched = slot.touched.swap(false, Ordering::Relaxed);
            // The shard's read lock is held: a change (under its write lock) cannot
            // fall between this copy of the metadata and the reset of `dirty`.
            if slot.dirty.swap(false, Ordering::Relaxed) {
                changed.push((entry.key().clone(), slot.meta.clone()));
            } else if !touched {
                idle.push(entry.key().clone());
            }
        }
        changed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut deltas = sorted.iter_mut().peekable();
        for (article, meta) in changed {
            let article = article.as_str();
            while deltas.next_if(|d| d.article.as_str() < article).is_some() {}
            match deltas.next_if(|d| d.article.as_str() == article) {
                Some(d) => d.meta = meta,
                // Its count is not in this drain yet (it raced it): keep it for the next.
                None => self.mark_dirty(article),
            }
        }
        for article in idle {
            self.meta.remove_if(article.as_bytes(), |_, s| {
                !s.touched.load(Ordering::Relaxed) && !s.dirty.load(Ordering::Relaxed)
            });
        }
    }

    fn mark_dirty(&self, article: &str) {
        if let Some(slot) = self.meta.get(article.as_bytes()) {
            slot.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Removes the keys that were idle for the whole interval before this drain,
    /// unless an event arrived since. Keys drained just now stay one more interval.
    fn remove_idle(&self, idle: Vec<CounterKey>) {
        for key in idle {
            // remove_if holds the shard's write lock: no add is in flight on a slot
            // that still equals IDLE.
            if self
                .counts
                .remove_if(&key, |_, v| v.load(Ordering::Relaxed) == IDLE)
                .is_some()
            {
                self.keys.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl ArticleDelta {
    fn new(article: ArticleId) -> Self {
        ArticleDelta {
            article,
            counts: Counts::default(),
            meta: Meta::default(),
            visitors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Networks};

    fn view(map: &CounterMap, article: &str) {
        map.record(&Event::view(article));
    }

    #[test]
    fn a_copy_leaves_the_counts_pending_until_it_is_settled() {
        let map = CounterMap::new(10, Networks::default());
        view(&map, "a");
        view(&map, "a");
        let copied = map.copy_pending(VisitorMarks::Take);
        assert_eq!(copied[0].counts.views, 2);
        assert_eq!(map.pending("a").views, 2, "a reader still sees the copied counts here");

        map.settle(&copied);
        assert_eq!(map.pending("a").views, 0);
    }

    #[test]
    fn an_event_between_the_copy_and_the_settle_stays_for_the_next_drain() {
        let map = CounterMap::new(10, Networks::default());
        view(&map, "a");
        let copied = map.copy_pending(VisitorMarks::Take);
        view(&map, "a");
        map.settle(&copied);

        assert_eq!(map.pending("a").views, 1);
        assert_eq!(map.drain()[0].counts.views, 1);
        assert!(map.drain().is_empty());
        assert!(map.drain().is_empty());
        assert_eq!(map.len(), 0, "idle for a whole interval, the key left");
    }

    fn visit(map: &CounterMap, article: &str, visitor: u64) {
        view(map, article);
        map.record_visitor(article, (20_000, visitor));
    }

    #[test]
    fn marks_kept_out_of_a_drain_go_with_a_later_one_even_without_new_counts() {
        let map = CounterMap::new(10, Networks::default());
        visit(&map, "a", 1);
        visit(&map, "b", 2);
        let first = map.copy_pending(VisitorMarks::Keep);
        map.settle(&first);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|d| d.visitors.is_empty()), "marks stay behind");

        visit(&map, "b", 3);
        let second = map.drain();
        let articles: Vec<_> = second
            .iter()
            .map(|d| (d.article.as_str(), d.counts.views, d.visitors.len()))
            .collect();
        assert_eq!(
            articles,
            [("a", 0, 1), ("b", 1, 2)],
            "a delta of marks alone for a, sorted"
        );
        assert!(
            map.drain().iter().all(|d| d.visitors.is_empty()),
            "each mark leaves once"
        );
    }
}
