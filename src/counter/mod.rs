//! Step 2 of the data flow: the in-memory map of pending counts. `record` is the hot
//! path (a shard read lock and an atomic add); `drain` moves the deltas into a batch
//! for the flusher without losing an increment that races it.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::counts::Counts;
use crate::event::{Counter, Event, Meta, Networks, MAX_ARTICLE_LEN};
use crate::visitors::Mark;

mod drain;
mod key;

pub use drain::VisitorMarks;
use key::Key;

/// A seeded fast hasher: article ids come from the internet, so the seed is random per
/// process (no crafted collisions), but hashing costs a few ns instead of SipHash's ~20.
type Hasher = foldhash::fast::RandomState;

/// Set on a slot by `drain`; a slot still equal to it at the next drain was idle for a
/// whole interval and is removed, so the map holds only recently active keys.
const IDLE: u64 = 1 << 63;

const VIEW_TAG: u8 = b'!';
const SHARE_TAG_BASE: u8 = b'0';

/// One pending counter: the counter's one-byte tag followed by the article id, so a
/// lookup can borrow a stack buffer and allocate nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CounterKey(Key);

impl Borrow<[u8]> for CounterKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl CounterKey {
    fn decode(&self) -> (Counter, &str) {
        let key = self.0.as_str();
        let (tag, article) = (key.as_bytes()[0], &key[1..]);
        let counter = if tag == VIEW_TAG {
            Counter::View
        } else {
            Counter::Share(tag - SHARE_TAG_BASE)
        };
        (counter, article)
    }
}

fn tag(counter: Counter) -> u8 {
    match counter {
        Counter::View => VIEW_TAG,
        Counter::Share(i) => SHARE_TAG_BASE + i,
    }
}

/// Calls `f` with the encoded key of (`counter`, `article`), built on the stack.
fn with_key<R>(counter: Counter, article: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; MAX_ARTICLE_LEN + 1];
    let len = article.len().min(MAX_ARTICLE_LEN);
    buf[0] = tag(counter);
    buf[1..=len].copy_from_slice(&article.as_bytes()[..len]);
    f(&buf[..=len])
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
}

/// At most this many pending visitor marks are held between two drains; past it a view
/// still counts, its visitor does not (memory stays bounded under a flood).
pub const MAX_PENDING_VISITORS: usize = 1_000_000;

/// New keys were refused: the map holds `--max-pending-keys` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pending-counter capacity exhausted")]
pub struct CapacityExhausted;

/// The lock-free map of pending counts (dashmap shards + atomics).
#[derive(Debug)]
pub struct CounterMap {
    counts: DashMap<CounterKey, AtomicU64, Hasher>,
    meta: DashMap<Key, MetaSlot, Hasher>,
    /// Distinct visitor marks of each article's views since the last drain.
    visitors: DashMap<Key, HashSet<Mark, Hasher>, Hasher>,
    visitor_marks: AtomicUsize,
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
            counts: DashMap::with_hasher(Hasher::default()),
            meta: DashMap::with_hasher(Hasher::default()),
            visitors: DashMap::with_hasher(Hasher::default()),
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
        let refuse_new = self.refuse_new.load(Ordering::Relaxed);
        if refuse_new || self.len() + events.len() > self.capacity {
            let missing = events.iter().filter(|e| !self.holds(e)).count();
            if missing > 0 && (refuse_new || self.len() + missing > self.capacity) {
                return Err(CapacityExhausted);
            }
        }
        for event in events {
            self.record(event);
        }
        Ok(())
    }

    fn holds(&self, event: &Event<'_>) -> bool {
        with_key(event.counter(), event.article(), |k| self.counts.contains_key(k))
    }

    /// Refuses (or admits again) events that need a new key, whatever the fill.
    pub fn refuse_new_keys(&self, refuse: bool) {
        self.refuse_new.store(refuse, Ordering::Relaxed);
    }

    /// The hot path: one shard read lock and an atomic add for a key already held;
    /// only a key's first sighting takes the shard's write lock.
    pub fn record(&self, event: &Event<'_>) {
        if event.has_meta() {
            self.remember_meta(event);
        }
        let added = with_key(event.counter(), event.article(), |k| {
            if let Some(slot) = self.counts.get(k) {
                slot.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            false
        });
        if !added {
            let key = with_key(event.counter(), event.article(), |k| CounterKey(Key::new(k)));
            self.counts
                .entry(key)
                .or_insert_with(|| {
                    // Counted under the shard's write lock, so the removal of this key
                    // (which takes the same lock) can never subtract it first.
                    self.keys.fetch_add(1, Ordering::Relaxed);
                    AtomicU64::new(0)
                })
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the event's metadata for the next drain: unsigned values fill only the
    /// fields not known yet (the first writer stands), signed ones replace.
    fn remember_meta(&self, event: &Event<'_>) {
        let changes = |m: &Meta| {
            [
                (event.section(), &m.section),
                (event.lang(), &m.lang),
                (event.title(), &m.title),
                (event.url(), &m.url),
            ]
            .into_iter()
            .any(|(new, old)| new.is_some_and(|v| old.is_none() || (event.is_signed() && old.as_deref() != Some(v))))
        };
        if let Some(slot) = self.meta.get(event.article().as_bytes()) {
            if !changes(&slot.meta) {
                slot.touch();
                return;
            }
        }
        let mut slot = self.meta.entry(Key::new(event.article().as_bytes())).or_default();
        if slot.meta.merge(&event.meta(), event.is_signed()) {
            slot.meta.signed |= event.is_signed();
            *slot.dirty.get_mut() = true;
        }
        slot.touch();
    }

    /// The metadata this instance holds for `article` (not flushed yet, or recently
    /// flushed), which reads use until the store has it.
    pub fn pending_meta(&self, article: &str) -> Option<Meta> {
        self.meta.get(article.as_bytes()).map(|slot| slot.meta.clone())
    }

    /// Remembers that visitor `mark` viewed `article` (once per request with views).
    /// A read lock and a set lookup for a visitor already seen in this interval.
    pub fn record_visitor(&self, article: &str, mark: Mark) {
        if let Some(set) = self.visitors.get(article.as_bytes()) {
            if set.contains(&mark) {
                return;
            }
        }
        if self.visitor_marks.load(Ordering::Relaxed) >= MAX_PENDING_VISITORS {
            return;
        }
        if self
            .visitors
            .entry(Key::new(article.as_bytes()))
            .or_default()
            .insert(mark)
        {
            self.visitor_marks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What this instance holds for `article` and has not handed to the flusher.
    pub fn pending(&self, article: &str) -> Counts {
        let read = |c| {
            with_key(c, article, |k| {
                // SeqCst: see `CounterMap::settle`.
                self.counts.get(k).map_or(0, |v| v.load(Ordering::SeqCst) & !IDLE)
            })
        };
        let shares = (0..self.networks.len() as u8).map(|i| (self.networks.name(i), read(Counter::Share(i))));
        Counts::new(read(Counter::View), shares)
    }

    /// Drops the metadata this instance holds for `article` (an admin change replaced it).
    pub fn forget_meta(&self, article: &str) {
        self.meta.remove(article.as_bytes());
    }

    /// Drops every pending count of `article` (admin set/delete), returning nothing.
    pub fn forget(&self, article: &str) {
        let counters = std::iter::once(Counter::View).chain((0..self.networks.len() as u8).map(Counter::Share));
        for c in counters {
            if with_key(c, article, |k| self.counts.remove(k)).is_some() {
                self.keys.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.meta.remove(article.as_bytes());
    }
}
