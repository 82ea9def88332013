//! Draining the map for a flush, in two halves so no reader waits for it: every pending
//! delta copied out, grouped by article, with the metadata that changed (no lock a
//! reader takes), then each copied delta subtracted from its slot (one atomic each)
//! while the flusher queues the batch. Keys idle for a whole interval leave the map.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{delta_of, locked, CounterMap, Hasher, Key, Slot, ABSENT, IDLE};
use crate::counts::Counts;
use crate::event::{ArticleId, Counter, Meta};
use crate::store::ArticleDelta;
use crate::visitors::Mark;

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

/// What a drain's pass over the map collects (named so, not `Copy`, to leave the trait its name).
struct Pass {
    /// A delta per article with a count pending or marks taken.
    out: Vec<ArticleDelta>,
    /// Slots with a counter or metadata idle for a whole interval, or nothing at all.
    idle: Vec<Key>,
    /// Visitor marks taken.
    marks: usize,
}

impl Pass {
    /// Copies one slot's pending counts (and the metadata that changed with them) and
    /// takes `marks`, the slot's visitor marks when the drain takes them.
    fn slot(&mut self, map: &CounterMap, key: &Key, slot: &Slot, marks: Option<HashSet<Mark, Hasher>>) {
        let mut counts = Counts::default();
        let mut has_idle = false;
        for (counter, c) in slot.counters() {
            let now = c.load(Ordering::Relaxed);
            has_idle |= now == IDLE;
            let delta = delta_of(now);
            if delta > 0 {
                match counter {
                    Counter::View => counts.views += delta,
                    Counter::Share(i) => counts.add_share(map.networks.name(i), delta),
                }
            }
        }
        let counted = !counts.is_zero();
        let mut meta = Meta::default();
        if let Some(m) = slot.meta() {
            let touched = m.touched.swap(false, Ordering::Relaxed);
            // The shard's lock is held: a change (under its write lock) cannot fall
            // between this copy of the metadata and the reset of `dirty`. A change goes
            // with its article's counts (recorded under the same write lock); without
            // them it waits for the next drain.
            if counted && m.dirty.swap(false, Ordering::Relaxed) {
                meta = m.meta.clone();
            } else if !touched && !m.dirty.load(Ordering::Relaxed) {
                has_idle = true;
            }
        }
        if has_idle || slot.is_empty() {
            self.idle.push(key.clone());
        }
        if !counted && marks.is_none() {
            return;
        }
        let mut d = ArticleDelta::new(ArticleId::parse(key.as_str()).expect("keys hold validated ids"));
        d.counts = counts;
        d.meta = meta;
        if let Some(marks) = marks {
            self.marks += marks.len();
            d.visitors = marks.into_iter().collect();
            d.visitors.sort_unstable();
        }
        self.out.push(d);
    }
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
    /// metadata that changed, takes the visitor marks when told to, and removes keys
    /// idle for a whole interval. The caller
    /// must hand the copy to [`CounterMap::settle`] at the moment it makes the copied
    /// deltas visible elsewhere (the flusher's queue). Sorted by article.
    pub fn copy_pending(&self, visitors: VisitorMarks) -> Vec<ArticleDelta> {
        let mut copy = Pass {
            out: Vec::with_capacity(self.slots.len()),
            idle: Vec::new(),
            marks: 0,
        };
        match visitors {
            VisitorMarks::Keep => {
                for entry in self.slots.iter() {
                    copy.slot(self, entry.key(), entry.value(), None);
                }
            }
            // The marks are taken in the same pass (a mark added after it is the next
            // drain's), under the shard's read lock like the counts: one pass over the
            // map, not a lookup and a search per marked article afterwards, which made
            // a drain of a million marked articles take seconds.
            VisitorMarks::Take => {
                for entry in self.slots.iter() {
                    let slot = entry.value();
                    let marks = slot.extra.as_deref().map(|e| std::mem::take(&mut *locked(&e.visitors)));
                    copy.slot(self, entry.key(), slot, marks.filter(|m| !m.is_empty()));
                }
            }
        }
        self.visitor_marks.fetch_sub(copy.marks, Ordering::Relaxed);
        self.remove_idle(copy.idle);
        let mut out = copy.out;
        out.sort_unstable_by(|a, b| a.article.cmp(&b.article));
        out
    }

    /// The second half of a drain: subtracts from each counter what
    /// [`CounterMap::copy_pending`] copied (an increment since stays, for the next
    /// drain) and marks the counter drained, so a key that then sees no event for a
    /// whole interval leaves the map. One lookup per article and one atomic
    /// subtraction per copied counter. The flusher calls it through
    /// [`crate::flusher::InFlight::settle_into_queue`], a few articles at a time.
    pub fn settle(&self, copied: &[ArticleDelta]) {
        for d in copied.iter().filter(|d| !d.counts.is_zero()) {
            // Absent only after an admin forget, which dropped the count anyway.
            let Some(slot) = self.slots.get(d.article.as_str().as_bytes()) else {
                continue;
            };
            if d.counts.views > 0 {
                take(&slot.views, d.counts.views);
            }
            for (network, n) in &d.counts.shares {
                if let Some(c) = self
                    .networks
                    .find(network)
                    .ok()
                    .and_then(|i| slot.counter(Counter::Share(i)))
                {
                    take(c, *n);
                }
            }
        }
    }

    /// Removes what was idle for the whole interval before this drain (counters,
    /// metadata, then the slot once it holds nothing), unless an event arrived since.
    /// Keys drained just now stay one more interval.
    fn remove_idle(&self, idle: Vec<Key>) {
        for key in idle {
            let Some(mut slot) = self.slots.get_mut(key.as_bytes()) else {
                continue;
            };
            // The shard's write lock is held: no add is in flight on a counter that
            // still equals IDLE.
            let mut removed = 0;
            removed += usize::from(forget_idle(slot.views.get_mut()));
            if let Some(extra) = slot.extra.as_deref_mut() {
                for c in extra.shares.iter_mut() {
                    removed += usize::from(forget_idle(c.get_mut()));
                }
                if extra.meta.as_ref().is_some_and(|m| m.is_idle()) {
                    extra.meta = None;
                }
            }
            self.keys.fetch_sub(removed, Ordering::Relaxed);
            let empty = slot.is_empty();
            drop(slot);
            if empty {
                self.slots.remove_if(key.as_bytes(), |_, s: &Slot| s.is_empty());
            }
        }
    }
}

/// Subtracts `n` copied from a counter and marks it drained.
fn take(counter: &AtomicU64, n: u64) {
    // Held under the caller's read lock: a forget (write lock) cannot make it ABSENT now.
    if counter.load(Ordering::Relaxed) == ABSENT {
        return;
    }
    // SeqCst, as `CounterMap::pending` reads it: ordered with the watermarks of the
    // settling batch (flusher/in_flight.rs), so a read sees this subtraction exactly
    // when it sees the delta in the batch.
    counter.fetch_sub(n, Ordering::SeqCst);
    counter.fetch_or(IDLE, Ordering::Relaxed);
}

/// Makes a counter idle since the last drain not held; true when it was.
fn forget_idle(counter: &mut u64) -> bool {
    if *counter == IDLE {
        *counter = ABSENT;
        return true;
    }
    false
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

#[cfg(test)]
mod slot_tests {
    use super::*;
    use crate::event::{Event, Networks};

    /// A share of `article` to the first configured network.
    fn share(article: &'static str) -> Event<'static> {
        Event::new(article, Counter::Share(0)).unwrap()
    }

    #[test]
    fn a_beacon_records_its_count_metadata_and_visitor_in_one_slot() {
        let map = CounterMap::new(10, Networks::default());
        let beacon = Event::view("a").with_section("news").with_lang("en");
        map.record_all_from(std::slice::from_ref(&beacon), Some((20_000, 7)))
            .unwrap();
        map.record_all_from(&[beacon], Some((20_000, 7))).unwrap();
        assert_eq!(map.len(), 1, "one key: the article's views");
        let d = map.drain();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].counts.views, 2);
        assert_eq!(d[0].meta.section.as_deref(), Some("news"));
        assert_eq!(d[0].visitors, [(20_000, 7)], "one mark however many views");
    }

    #[test]
    fn an_articles_views_and_each_share_network_are_keys_of_their_own() {
        let map = CounterMap::new(2, Networks::default());
        map.record_all(&[Event::view("a"), share("a")]).unwrap();
        assert_eq!(map.len(), 2);
        assert!(map.record_all(&[Event::view("b")]).is_err(), "full");
        map.record_all(&[Event::view("a"), share("a")])
            .expect("keys already held count on at any fill level");
        let pending = map.pending("a");
        assert_eq!((pending.views, pending.shares_total()), (2, 2));

        let d = map.drain();
        assert_eq!((d[0].counts.views, d[0].counts.shares_total()), (2, 2));
        assert!(map.drain().is_empty());
        assert!(map.drain().is_empty());
        assert_eq!(map.len(), 0, "idle for a whole interval, both keys left");
        assert!(map.slots.is_empty(), "and the slot that held nothing else");
    }

    #[test]
    fn a_slot_with_marks_alone_stays_until_they_are_taken() {
        let map = CounterMap::new(10, Networks::default());
        map.record_visitor("a", (20_000, 1));
        assert_eq!(map.len(), 0, "a mark is not a pending key");
        assert!(map.copy_pending(VisitorMarks::Keep).is_empty());
        assert_eq!(map.slots.len(), 1, "kept for a later drain");
        let d = map.drain();
        assert_eq!((d[0].counts.views, d[0].visitors.len()), (0, 1));
        map.drain();
        assert!(map.slots.is_empty());
    }

    #[test]
    fn forget_drops_the_counts_and_metadata_and_frees_the_keys() {
        let map = CounterMap::new(10, Networks::default());
        map.record_all(&[Event::view("a").with_section("news"), share("a")])
            .unwrap();
        map.forget("a");
        assert_eq!(map.len(), 0);
        assert_eq!(map.pending("a").events(), 0);
        assert!(map.pending_meta("a").is_none());
        assert!(map.drain().is_empty());
        map.record(&Event::view("a"));
        assert_eq!((map.len(), map.drain()[0].counts.views), (1, 1));
    }

    #[test]
    fn metadata_goes_with_the_drain_that_holds_its_count_and_leaves_when_idle() {
        let map = CounterMap::new(10, Networks::default());
        map.record(&Event::view("a"));
        map.record(&Event::view("a").with_section("news"));
        let d = map.drain();
        assert_eq!((d[0].counts.views, d[0].meta.section.as_deref()), (2, Some("news")));
        assert_eq!(map.pending_meta("a").unwrap().section.as_deref(), Some("news"));
        map.drain();
        map.drain();
        assert!(map.pending_meta("a").is_none(), "idle for a whole interval");
    }
}
