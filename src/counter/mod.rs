//! Step 2 of the data flow: the in-memory map of pending counts. `record` is the hot
//! path: one lookup of the article's slot (a shard read lock), an atomic add, and a
//! look at the slot's metadata and visitor marks; `drain` moves the deltas into a
//! batch for the flusher without losing an increment that races it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;

use crate::counts::Counts;
use crate::event::{Counter, Event, Meta, Networks};
use crate::visitors::Mark;

mod drain;
mod key;

pub use drain::VisitorMarks;
use key::Key;

/// A seeded fast hasher: article ids come from the internet, so the seed is random per
/// process (no crafted collisions), but hashing costs a few ns instead of SipHash's ~20.
type Hasher = foldhash::fast::RandomState;

/// Set on a counter by `drain`; a counter still equal to it at the next drain was idle
/// for a whole interval and leaves the map, so the map holds only recently active keys.
const IDLE: u64 = 1 << 63;
/// A counter the map does not hold (no pending key): it takes no capacity.
const ABSENT: u64 = u64::MAX;

/// The delta a counter's value holds (0 for a counter not held).
fn delta_of(value: u64) -> u64 {
    match value {
        ABSENT => 0,
        v => v & !IDLE,
    }
}

/// An article's latest section and language, and whether the store has heard of them.
#[derive(Debug, Default)]
struct MetaSlot {
    meta: Meta,
    /// Changed since the last drain.
    dirty: AtomicBool,
    /// Seen since the last drain.
    touched: AtomicBool,
}

impl MetaSlot {
    fn touch(&self) {
        // Read first: a store on every event would bounce the cache line between cores.
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// True when `event`'s metadata would change what is held: unsigned values fill
    /// only the fields not known yet (the first writer stands), signed ones replace.
    fn changed_by(&self, event: &Event<'_>) -> bool {
        let m = &self.meta;
        [
            (event.section(), &m.section),
            (event.lang(), &m.lang),
            (event.title(), &m.title),
            (event.url(), &m.url),
        ]
        .into_iter()
        .any(|(new, old)| new.is_some_and(|v| old.is_none() || (event.is_signed() && old.as_deref() != Some(v))))
    }

    /// Merges `event`'s metadata in (under the shard's write lock).
    fn merge(&mut self, event: &Event<'_>) {
        if self.meta.merge(&event.meta(), event.is_signed()) {
            self.meta.signed |= event.is_signed();
            *self.dirty.get_mut() = true;
        }
        self.touch();
    }

    /// Neither seen nor changed since the last drain.
    fn is_idle(&self) -> bool {
        !self.touched.load(Ordering::Relaxed) && !self.dirty.load(Ordering::Relaxed)
    }
}

/// What an article's slot holds beside its views, allocated at its first share,
/// metadata or visitor: most slots of a beacon's traffic have all three.
#[derive(Debug, Default)]
struct Extra {
    /// One counter per configured network (each [`ABSENT`] until its first share);
    /// empty until the article's first share.
    shares: Box<[AtomicU64]>,
    meta: Option<MetaSlot>,
    /// Distinct visitor marks of the article's views since they were last drained.
    /// Behind a mutex so a drain takes them under the shard's read lock, where reads
    /// never wait: a beacon's check locks it uncontended, an insert (under the shard's
    /// write lock) does not lock it at all.
    visitors: Mutex<HashSet<Mark, Hasher>>,
}

/// Everything pending for one article: its counters, metadata and visitor marks, so
/// a beacon finds all three with one lookup.
#[derive(Debug)]
struct Slot {
    views: AtomicU64,
    extra: Option<Box<Extra>>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            views: AtomicU64::new(ABSENT),
            extra: None,
        }
    }
}

impl Slot {
    /// The counter of `counter`, if the slot has room for it (held or [`ABSENT`]).
    fn counter(&self, counter: Counter) -> Option<&AtomicU64> {
        match counter {
            Counter::View => Some(&self.views),
            Counter::Share(i) => self.extra.as_deref()?.shares.get(usize::from(i)),
        }
    }

    /// True when `counter` is a pending key of this slot.
    fn holds(&self, counter: Counter) -> bool {
        self.counter(counter)
            .is_some_and(|c| c.load(Ordering::Relaxed) != ABSENT)
    }

    fn meta(&self) -> Option<&MetaSlot> {
        self.extra.as_deref()?.meta.as_ref()
    }

    fn has_mark(&self, mark: Mark) -> bool {
        self.extra
            .as_deref()
            .is_some_and(|e| locked(&e.visitors).contains(&mark))
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Every counter with its pending value (held or not): views first, then shares in
    /// network order.
    fn counters(&self) -> impl Iterator<Item = (Counter, &AtomicU64)> {
        let shares = self.extra.as_deref().map_or(&[][..], |e| &e.shares[..]);
        std::iter::once((Counter::View, &self.views))
            .chain(shares.iter().enumerate().map(|(i, c)| (Counter::Share(i as u8), c)))
    }

    /// Holds nothing: no counter, metadata or visitor mark.
    fn is_empty(&self) -> bool {
        self.counters().all(|(_, c)| c.load(Ordering::Relaxed) == ABSENT)
            && self
                .extra
                .as_deref()
                .is_none_or(|e| e.meta.is_none() && locked(&e.visitors).is_empty())
    }
}

/// A slot's visitor marks, locked (a panic elsewhere cannot have left them half-changed:
/// the set is only ever inserted into or taken whole).
fn locked(marks: &Mutex<HashSet<Mark, Hasher>>) -> MutexGuard<'_, HashSet<Mark, Hasher>> {
    marks.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The value a counter holds after one more event.
fn plus_one(now: u64) -> u64 {
    if now == ABSENT {
        1
    } else {
        now + 1
    }
}

/// What of an event is still to be recorded once the slot's read lock is left.
#[derive(Debug, Clone, Copy)]
struct Todo {
    count: bool,
    meta: bool,
    mark: Option<Mark>,
}

impl Todo {
    fn is_done(&self) -> bool {
        !self.count && !self.meta && self.mark.is_none()
    }
}

/// At most this many pending visitor marks are held between two drains; past it a view
/// still counts, its visitor does not (memory stays bounded under a flood).
pub const MAX_PENDING_VISITORS: usize = 1_000_000;

/// New keys were refused: the map holds `--max-pending-keys` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pending-counter capacity exhausted")]
pub struct CapacityExhausted;

/// The lock-free map of pending counts (dashmap shards + atomics), one slot per article.
#[derive(Debug)]
pub struct CounterMap {
    slots: DashMap<Key, Slot, Hasher>,
    visitor_marks: AtomicUsize,
    /// Pending keys held: one per (article, counter) with a count pending.
    keys: AtomicUsize,
    capacity: usize,
    /// Set while the journal is at its cap: keys already held count on, new ones are refused.
    refuse_new: AtomicBool,
    networks: Networks,
}

impl CounterMap {
    /// An empty map that admits at most `capacity` distinct keys.
    pub fn new(capacity: usize, networks: Networks) -> Self {
        CounterMap {
            slots: DashMap::with_hasher(Hasher::default()),
            visitor_marks: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
            capacity,
            refuse_new: AtomicBool::new(false),
            networks,
        }
    }

    /// The configured share networks.
    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    /// Visitor marks held now, waiting for a drain that takes them.
    pub fn visitor_marks(&self) -> usize {
        self.visitor_marks.load(Ordering::Relaxed)
    }

    /// Distinct keys held now.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `--max-pending-keys` capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records every event, or none of them when they would need new keys beyond
    /// the capacity (keys already held keep counting at any fill level).
    pub fn record_all(&self, events: &[Event<'_>]) -> Result<(), CapacityExhausted> {
        self.record_all_from(events, None)
    }

    /// [`CounterMap::record_all`], remembering `visitor` (the sender's mark, if any) as
    /// a visitor of each article viewed, in the same lookup as the view's count.
    pub fn record_all_from(&self, events: &[Event<'_>], visitor: Option<Mark>) -> Result<(), CapacityExhausted> {
        let refuse_new = self.refuse_new.load(Ordering::Relaxed);
        if refuse_new || self.len() + events.len() > self.capacity {
            let missing = events.iter().filter(|e| !self.holds(e)).count();
            if missing > 0 && (refuse_new || self.len() + missing > self.capacity) {
                return Err(CapacityExhausted);
            }
        }
        for event in events {
            let mark = visitor.filter(|_| event.counter() == Counter::View);
            self.record_with(event, mark);
        }
        Ok(())
    }

    fn holds(&self, event: &Event<'_>) -> bool {
        self.slots
            .get(event.article().as_bytes())
            .is_some_and(|slot| slot.holds(event.counter()))
    }

    /// Refuses (or admits again) events that need a new key, whatever the fill.
    pub fn refuse_new_keys(&self, refuse: bool) {
        self.refuse_new.store(refuse, Ordering::Relaxed);
    }

    /// The hot path: one shard read lock and an atomic add for a key already held;
    /// only a key's first sighting (or changed metadata) takes the shard's write lock.
    pub fn record(&self, event: &Event<'_>) {
        self.record_with(event, None);
    }

    /// Records `event` and, when given, the visitor `mark` of its article.
    fn record_with(&self, event: &Event<'_>, mark: Option<Mark>) {
        let mut todo = Todo {
            count: true,
            meta: event.has_meta(),
            mark,
        };
        if let Some(slot) = self.slots.get(event.article().as_bytes()) {
            self.record_held(&slot, event, &mut todo);
            if todo.is_done() {
                return;
            }
        }
        let mut slot = self.slots.entry(Key::new(event.article().as_bytes())).or_default();
        self.record_new(&mut slot, event, todo);
    }

    /// What a shard's read lock allows: counts to a held key, metadata that changes
    /// nothing, a visitor already seen. Clears those from `todo`. Metadata that changes
    /// leaves the count to the write lock too, so a drain sees both or neither.
    fn record_held(&self, slot: &Slot, event: &Event<'_>, todo: &mut Todo) {
        if todo.meta {
            match slot.meta().filter(|m| !m.changed_by(event)) {
                Some(meta) => {
                    meta.touch();
                    todo.meta = false;
                }
                None => return,
            }
        }
        // Held under this read lock: its removal (under the write lock) waits.
        if let Some(c) = slot.counter(event.counter()).filter(|_| slot.holds(event.counter())) {
            c.fetch_add(1, Ordering::Relaxed);
            todo.count = false;
        }
        if todo.mark.is_some_and(|m| slot.has_mark(m)) {
            todo.mark = None;
        }
    }

    /// The rest of `todo`, under the shard's write lock.
    fn record_new(&self, slot: &mut Slot, event: &Event<'_>, todo: Todo) {
        if todo.count {
            let networks = self.networks.len();
            let counter = match event.counter() {
                Counter::View => slot.views.get_mut(),
                Counter::Share(i) => {
                    let extra = slot.extra_mut();
                    if extra.shares.is_empty() {
                        extra.shares = (0..networks).map(|_| AtomicU64::new(ABSENT)).collect();
                    }
                    extra.shares[usize::from(i)].get_mut()
                }
            };
            if *counter == ABSENT {
                // Counted under the shard's write lock, so the removal of this key
                // (which takes the same lock) can never subtract it first.
                self.keys.fetch_add(1, Ordering::Relaxed);
            }
            *counter = plus_one(*counter);
        }
        if todo.meta {
            slot.extra_mut().meta.get_or_insert_with(MetaSlot::default).merge(event);
        }
        if let Some(mark) = todo.mark {
            self.insert_mark(slot, mark);
        }
    }

    fn insert_mark(&self, slot: &mut Slot, mark: Mark) {
        if self.visitor_marks.load(Ordering::Relaxed) >= MAX_PENDING_VISITORS {
            return;
        }
        let marks = slot
            .extra_mut()
            .visitors
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if marks.insert(mark) {
            self.visitor_marks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The metadata this instance holds for `article` (not flushed yet, or recently
    /// flushed), which reads use until the store has it.
    pub fn pending_meta(&self, article: &str) -> Option<Meta> {
        self.slots
            .get(article.as_bytes())
            .and_then(|slot| slot.meta().map(|m| m.meta.clone()))
    }

    /// Remembers that visitor `mark` viewed `article`, without a view: the tests' way
    /// to hold marks alone (the service records a mark with its view,
    /// [`CounterMap::record_all_from`]).
    #[cfg(test)]
    pub fn record_visitor(&self, article: &str, mark: Mark) {
        if let Some(slot) = self.slots.get(article.as_bytes()) {
            if slot.has_mark(mark) {
                return;
            }
        }
        if self.visitor_marks.load(Ordering::Relaxed) >= MAX_PENDING_VISITORS {
            return;
        }
        let mut slot = self.slots.entry(Key::new(article.as_bytes())).or_default();
        self.insert_mark(&mut slot, mark);
    }

    /// What this instance holds for `article` and has not handed to the flusher.
    pub fn pending(&self, article: &str) -> Counts {
        // SeqCst: see `CounterMap::settle`.
        let value = |c: &AtomicU64| delta_of(c.load(Ordering::SeqCst));
        let Some(slot) = self.slots.get(article.as_bytes()) else {
            return Counts::default();
        };
        let shares = (0..self.networks.len() as u8).map(|i| {
            let n = slot.counter(Counter::Share(i)).map_or(0, value);
            (self.networks.name(i), n)
        });
        Counts::new(value(&slot.views), shares)
    }

    /// Drops the metadata this instance holds for `article` (an admin change replaced it).
    pub fn forget_meta(&self, article: &str) {
        if let Some(mut slot) = self.slots.get_mut(article.as_bytes()) {
            if let Some(extra) = slot.extra.as_deref_mut() {
                extra.meta = None;
            }
        }
    }

    /// Drops every pending count and the metadata of `article` (admin set/delete).
    pub fn forget(&self, article: &str) {
        let Some(mut slot) = self.slots.get_mut(article.as_bytes()) else {
            return;
        };
        let mut dropped = 0;
        if let Some(extra) = slot.extra.as_deref_mut() {
            extra.meta = None;
            for c in extra.shares.iter_mut() {
                dropped += usize::from(std::mem::replace(c.get_mut(), ABSENT) != ABSENT);
            }
        }
        dropped += usize::from(std::mem::replace(slot.views.get_mut(), ABSENT) != ABSENT);
        self.keys.fetch_sub(dropped, Ordering::Relaxed);
    }
}
