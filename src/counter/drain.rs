//! Draining the map for a flush: every pending delta swapped out, grouped by article,
//! with the metadata that changed; keys idle for a whole interval leave the map.

use std::sync::atomic::Ordering;

use super::{CounterKey, CounterMap, IDLE};
use crate::event::{ArticleId, Counter, Meta};
use crate::store::ArticleDelta;

impl CounterMap {
    /// Moves every pending delta out (swapping each count to zero, so an increment
    /// that races the drain lands in the next one) and removes keys idle for a whole
    /// interval. The result is sorted by article.
    pub fn drain(&self) -> Vec<ArticleDelta> {
        let mut rows: Vec<(ArticleId, Counter, u64)> = Vec::with_capacity(self.len());
        let mut idle: Vec<CounterKey> = Vec::new();
        for entry in self.counts.iter() {
            let old = entry.value().swap(IDLE, Ordering::Relaxed);
            if old == IDLE {
                idle.push(entry.key().clone());
            }
            let delta = old & !IDLE;
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
                Counter::View => d.views += delta,
                Counter::Share(i) => d.shares.push((self.networks.name(i).into(), delta)),
            }
        }
        for d in out.iter_mut().filter(|d| d.shares.len() > 1) {
            d.shares.sort_unstable();
        }
        self.attach_meta(&mut out);
        self.attach_visitors(&mut out);
        out
    }

    /// Moves each drained article's visitor marks into its delta. Marks of an article
    /// whose count is not in this drain (it raced it) stay for the next one.
    fn attach_visitors(&self, sorted: &mut [ArticleDelta]) {
        let articles: Vec<Box<str>> = self.visitors.iter().map(|e| e.key().clone()).collect();
        for article in articles {
            let Ok(i) = sorted.binary_search_by(|d| d.article.as_str().cmp(&article)) else {
                continue;
            };
            // Removed, not emptied: a mark added after this point makes a new entry.
            if let Some((_, marks)) = self.visitors.remove(&*article) {
                self.visitor_marks.fetch_sub(marks.len(), Ordering::Relaxed);
                let mut marks: Vec<_> = marks.into_iter().collect();
                marks.sort_unstable();
                sorted[i].visitors = marks;
            }
        }
    }

    /// Gives each drained article the metadata that changed since the last drain (so
    /// the store hears of a section once, not every flush) and forgets metadata of
    /// articles idle for a whole interval.
    fn attach_meta(&self, sorted: &mut [ArticleDelta]) {
        let mut idle: Vec<Box<str>> = Vec::new();
        let mut changed: Vec<(Box<str>, Meta)> = Vec::new();
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
        changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut deltas = sorted.iter_mut().peekable();
        for (article, meta) in changed {
            while deltas.next_if(|d| d.article.as_str() < &*article).is_some() {}
            match deltas.next_if(|d| d.article.as_str() == &*article) {
                Some(d) => d.meta = meta,
                // Its count is not in this drain yet (it raced it): keep it for the next.
                None => self.mark_dirty(&article),
            }
        }
        for article in idle {
            self.meta.remove_if(&*article, |_, s| {
                !s.touched.load(Ordering::Relaxed) && !s.dirty.load(Ordering::Relaxed)
            });
        }
    }

    fn mark_dirty(&self, article: &str) {
        if let Some(slot) = self.meta.get(article) {
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
            views: 0,
            shares: Vec::new(),
            meta: Meta::default(),
            visitors: Vec::new(),
        }
    }
}
