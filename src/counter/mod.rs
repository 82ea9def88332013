//! Step 2 of the data flow: the in-memory map of pending counts. `record` is the hot
//! path (a shard read lock and an atomic add); `drain` moves the deltas into a batch
//! for the flusher without losing an increment that races it.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::event::{Counter, Event, Meta, Networks, MAX_ARTICLE_LEN};

mod drain;

/// A seeded fast hasher: article ids come from the internet, so the seed is random per
/// process (no crafted collisions), but hashing costs a few ns instead of SipHash's ~20.
type Hasher = foldhash::fast::RandomState;

/// Set on a slot by `drain`; a slot still equal to it at the next drain was idle for a
/// whole interval and is removed, so the map holds only recently active keys.
const IDLE: u64 = 1 << 63;

const VIEW_TAG: u8 = b'!';
const SHARE_TAG_BASE: u8 = b'0';

/// One pending counter: the counter's one-byte tag followed by the article id, so a
/// lookup can borrow a stack buffer as `&str` and allocate nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CounterKey(Box<str>);

impl Borrow<str> for CounterKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl CounterKey {
    fn decode(&self) -> (Counter, &str) {
        let (tag, article) = (self.0.as_bytes()[0], &self.0[1..]);
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
fn with_key<R>(counter: Counter, article: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; MAX_ARTICLE_LEN + 1];
    let len = article.len().min(MAX_ARTICLE_LEN);
    buf[0] = tag(counter);
    buf[1..=len].copy_from_slice(&article.as_bytes()[..len]);
    // Both parts are ASCII: the tag by construction, the article by validation.
    f(std::str::from_utf8(&buf[..=len]).unwrap_or_default())
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

/// New keys were refused: the map holds `--max-pending-keys` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pending-counter capacity exhausted")]
pub struct CapacityExhausted;

/// Pending counts of one article, as `GET /v1/articles` adds them to the store's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Views not yet flushed.
    pub views: u64,
    /// Shares not yet flushed, by network index.
    pub shares: Vec<(u8, u64)>,
}

/// The lock-free map of pending counts (dashmap shards + atomics).
#[derive(Debug)]
pub struct CounterMap {
    counts: DashMap<CounterKey, AtomicU64, Hasher>,
    meta: DashMap<Box<str>, MetaSlot, Hasher>,
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
        with_key(event.counter, event.article, |k| self.counts.contains_key(k))
    }

    /// Refuses (or admits again) events that need a new key, whatever the fill.
    pub fn refuse_new_keys(&self, refuse: bool) {
        self.refuse_new.store(refuse, Ordering::Relaxed);
    }

    /// The hot path: one shard read lock and an atomic add for a key already held;
    /// only a key's first sighting takes the shard's write lock.
    pub fn record(&self, event: &Event<'_>) {
        if event.section.is_some() || event.lang.is_some() {
            self.remember_meta(event);
        }
        let added = with_key(event.counter, event.article, |k| {
            if let Some(slot) = self.counts.get(k) {
                slot.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            false
        });
        if !added {
            let key = with_key(event.counter, event.article, |k| CounterKey(k.into()));
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

    fn remember_meta(&self, event: &Event<'_>) {
        let same = |m: &Meta| {
            m.section.as_deref() == event.section.or(m.section.as_deref())
                && m.lang.as_deref() == event.lang.or(m.lang.as_deref())
        };
        if let Some(slot) = self.meta.get(event.article) {
            if same(&slot.meta) {
                slot.touch();
                return;
            }
        }
        let mut slot = self.meta.entry(event.article.into()).or_default();
        if let Some(s) = event.section {
            slot.meta.section = Some(s.into());
        }
        if let Some(l) = event.lang {
            slot.meta.lang = Some(l.into());
        }
        *slot.dirty.get_mut() = true;
        slot.touch();
    }

    /// What this instance holds for `article` and has not handed to the flusher.
    pub fn pending(&self, article: &str) -> PendingCounts {
        let read = |c| {
            with_key(c, article, |k| {
                self.counts.get(k).map_or(0, |v| v.load(Ordering::Relaxed) & !IDLE)
            })
        };
        let shares = (0..self.networks.len() as u8)
            .map(|i| (i, read(Counter::Share(i))))
            .filter(|(_, n)| *n > 0)
            .collect();
        PendingCounts {
            views: read(Counter::View),
            shares,
        }
    }

    /// Drops every pending count of `article` (admin set/delete), returning nothing.
    pub fn forget(&self, article: &str) {
        let counters = std::iter::once(Counter::View).chain((0..self.networks.len() as u8).map(Counter::Share));
        for c in counters {
            if with_key(c, article, |k| self.counts.remove(k)).is_some() {
                self.keys.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.meta.remove(article);
    }
}
