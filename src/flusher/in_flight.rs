//! The queue of batches drained but not yet acknowledged by the store, shared by the
//! flusher (which fills and empties it) and the reads (which add it in). A batch joins
//! the queue in two steps: while its deltas are subtracted from the counter map it is
//! *settling* (visible to reads article by article, as far as the subtraction got), then
//! it is queued whole, for the store. A generation number moves whenever a batch joins
//! the queue, so a read can tell that a batch it did not see may have reached the store.
//!
//! Reads never wait for a drain: the subtraction runs in groups of [`SETTLE_GROUP`]
//! articles with no lock held, between two watermarks a read checks before and after
//! it looks at the map (a seqlock per group); only a read of an article in the group
//! being subtracted at that very moment looks again.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::{ArticleDelta, Batch, BatchId};

/// Articles a settling batch subtracts from the map between two watermark moves: what
/// a read of one of them may wait for (a few microseconds).
pub const SETTLE_GROUP: usize = 64;

/// Joins to the queue remembered for [`InFlight::joined_since`]: a read that began
/// more joins ago than this reads again whatever it asked for.
pub const JOINS_KEPT: usize = 1_024;

/// A batch drained but not yet acknowledged by the store.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// The batch, retried as it is.
    pub batch: Arc<Batch>,
    /// The spill file it came from, deleted once none of its batches is left.
    pub spill_file: Option<PathBuf>,
    /// Left by an earlier run (journal or spill file).
    pub replayed: bool,
}

/// What a reader saw of the queue at one moment.
#[derive(Debug)]
pub struct QueueView<R> {
    /// The queued batches, and of the settling one the deltas of the articles asked
    /// that had left the map (under the batch's id).
    pub batches: Vec<Arc<Batch>>,
    /// What the reader computed at the same moment (the pending counts).
    pub also: R,
    /// The queue's generation then; compare with [`InFlight::generation`] afterwards.
    pub generation: u64,
}

/// A batch whose deltas are being subtracted from the counter map, in article order:
/// those before `settled` have left it, those from `begun` on have not, those between
/// are leaving now.
#[derive(Debug)]
struct Settling {
    batch: Arc<Batch>,
    begun: AtomicUsize,
    settled: AtomicUsize,
}

#[derive(Debug, Default)]
struct Queue {
    /// Settled batches, in the order they joined.
    batches: Vec<Unacked>,
    /// The batch settling now (one drain at a time).
    settling: Option<Arc<Settling>>,
    /// The last [`JOINS_KEPT`] joins, oldest first.
    joins: VecDeque<Join>,
}

/// One batch joining the queue: the generation it moved the queue to, and the range of
/// articles it held (its first and last, in order; `None` when it held none).
#[derive(Debug)]
struct Join {
    generation: u64,
    range: Option<(Box<str>, Box<str>)>,
}

impl Join {
    /// False only when `article` cannot be in the batch.
    fn may_hold(&self, article: &str) -> bool {
        self.range
            .as_ref()
            .is_some_and(|(first, last)| (&**first..=&**last).contains(&article))
    }
}

/// The queue, behind a std lock that is never held across an await nor for longer than
/// a push, a removal or a copy of the list.
#[derive(Debug, Default)]
pub struct InFlight {
    queue: RwLock<Queue>,
    generation: AtomicU64,
    /// Events in the queued batches, kept as they come and go: summing them at every
    /// acknowledgement cost a pass over every queued article (a million, after a big drain).
    events: AtomicU64,
    /// A drain is between its copy of the map and the queueing of its last batch: what
    /// it copied is in no batch the queue shows yet.
    draining: AtomicBool,
}

/// Marks a drain from its copy of the map until its last batch is queued (dropped then).
#[derive(Debug)]
#[must_use = "the drain is marked only while the guard lives"]
pub struct Draining<'q>(&'q InFlight);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        // After the last batch joined (under the queue's lock): whoever sees the mark
        // gone sees the batches in the queue.
        self.0.draining.store(false, Ordering::SeqCst);
    }
}

impl InFlight {
    fn read(&self) -> RwLockReadGuard<'_, Queue> {
        self.queue.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Queue> {
        self.queue.write().unwrap_or_else(|e| e.into_inner())
    }

    fn joined(&self, q: &mut Queue, u: Unacked) {
        self.events.fetch_add(u.batch.events(), Ordering::Relaxed);
        let range = u.batch.articles.first().zip(u.batch.articles.last());
        let range = range.map(|(first, last)| (first.article.as_str().into(), last.article.as_str().into()));
        q.batches.push(u);
        // Under the write lock: a reader that sees the new generation sees its join.
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if q.joins.len() == JOINS_KEPT {
            q.joins.pop_front();
        }
        q.joins.push_back(Join { generation, range });
    }

    /// Moves whenever a batch joins the queue (an acknowledgement does not move it: a
    /// read that saw the batch asks the store whether it landed).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// True when a batch that may hold one of `articles` joined the queue after
    /// `generation` (a [`QueueView`]'s), or when that is no longer known (more than
    /// [`JOINS_KEPT`] joins since). A read is exact only if no such batch joined
    /// during it: that batch's counts were pending when the read looked, and may have
    /// reached the store before the store was read. A batch of other articles (another
    /// chunk of the same drain) cannot count anything the read asked for twice.
    pub fn joined_since(&self, generation: u64, articles: &[&str]) -> bool {
        if self.generation() == generation {
            return false;
        }
        let q = self.read();
        let since = q.joins.iter().skip_while(|j| j.generation <= generation);
        let known = q.joins.front().is_some_and(|j| j.generation <= generation + 1);
        !known || since.into_iter().any(|j| articles.iter().any(|a| j.may_hold(a)))
    }

    /// The queue and the result of `also` (the pending counts of `articles`) of one
    /// moment, so a count racing a drain is seen once (pending or queued), never twice
    /// or not at all. Waits for nothing: when one of `articles` is in the group of a
    /// settling batch being subtracted at that moment, it looks again.
    pub fn view_with<R>(&self, articles: &[&str], mut also: impl FnMut() -> R) -> QueueView<R> {
        loop {
            let q = self.read();
            let mut batches: Vec<Arc<Batch>> = q.batches.iter().map(|u| u.batch.clone()).collect();
            let generation = self.generation();
            let Some(s) = q.settling.clone() else {
                return QueueView {
                    batches,
                    also: also(),
                    generation,
                };
            };
            // The read lock stays held: no other batch starts settling, and this one
            // does not join the queue (and leave `batches` incomplete) meanwhile.
            // SeqCst here and on the map's slots (see `CounterMap::settle`): a slot read
            // after `settled` showed a group done sees its subtraction, a slot read before
            // `begun` showed a group not started does not.
            let settled = s.settled.load(Ordering::SeqCst);
            let also = also();
            let begun = s.begun.load(Ordering::SeqCst);
            let mut at: Vec<usize> = articles.iter().filter_map(|a| s.batch.position(a)).collect();
            if at.iter().any(|i| (settled..begun).contains(i)) {
                drop(q);
                std::thread::yield_now();
                continue;
            }
            at.retain(|i| *i < settled);
            at.sort_unstable();
            at.dedup();
            drop(q);
            if !at.is_empty() {
                batches.push(Arc::new(Batch {
                    id: s.batch.id.clone(),
                    flushed_at_ms: s.batch.flushed_at_ms,
                    articles: at.into_iter().map(|i| s.batch.articles[i].clone()).collect(),
                }));
            }
            return QueueView {
                batches,
                also,
                generation,
            };
        }
    }

    /// A copy of the queue with the spill files (the settling batch is not in it yet).
    pub fn snapshot(&self) -> Vec<Unacked> {
        self.read().batches.clone()
    }

    /// Marks a drain until the guard is dropped; take it before copying the map, drop
    /// it once every batch of the drain is queued. One drain at a time.
    pub fn begin_drain(&self) -> Draining<'_> {
        self.draining.store(true, Ordering::SeqCst);
        Draining(self)
    }

    /// True while a batch settling or queued holds `article`, or while a drain that
    /// may have copied it is not yet queued. An admin change calls this after taking
    /// the article out of the map: a drain that copied it before is either still
    /// marked or queued by then (the map's shard lock orders the copy and the removal).
    pub fn may_hold(&self, article: &str) -> bool {
        if self.draining.load(Ordering::SeqCst) {
            return true;
        }
        let q = self.read();
        q.settling.as_ref().is_some_and(|s| s.batch.get(article).is_some())
            || q.batches.iter().any(|u| u.batch.get(article).is_some())
    }

    /// Queues one batch (a replayed spill or journal record, not in the map).
    pub fn push(&self, u: Unacked) {
        let mut q = self.write();
        self.joined(&mut q, u);
    }

    /// Queues a drained batch while `settle` subtracts its deltas from the counter map,
    /// [`SETTLE_GROUP`] articles at a time, with no lock held: a read sees each count
    /// once, pending before its group is subtracted, in the batch after. Returns the
    /// batch, queued.
    pub fn settle_into_queue(&self, u: Unacked, settle: impl Fn(&[ArticleDelta])) -> Arc<Batch> {
        let batch = u.batch.clone();
        let s = Arc::new(Settling {
            batch: batch.clone(),
            begun: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
        });
        self.write().settling = Some(s.clone());
        let len = batch.articles.len();
        for start in (0..len).step_by(SETTLE_GROUP) {
            let end = (start + SETTLE_GROUP).min(len);
            s.begun.store(end, Ordering::SeqCst);
            settle(&batch.articles[start..end]);
            s.settled.store(end, Ordering::SeqCst);
        }
        let mut q = self.write();
        q.settling = None;
        self.joined(&mut q, u);
        batch
    }

    /// Keeps in `batches` only those still queued (not acknowledged meanwhile).
    pub fn keep_queued(&self, batches: &mut Vec<Arc<Batch>>) {
        let q = self.read();
        let queued: HashSet<&BatchId> = q.batches.iter().map(|u| &u.batch.id).collect();
        batches.retain(|b| queued.contains(&b.id));
    }

    /// When the oldest queued batch was drained (Unix ms), if any is queued.
    pub fn oldest_flushed_at_ms(&self) -> Option<u64> {
        self.read().batches.iter().map(|u| u.batch.flushed_at_ms).min()
    }

    /// True when nothing waits for the store.
    pub fn is_empty(&self) -> bool {
        self.read().batches.is_empty()
    }

    /// Removes `id`; returns its spill file if no other batch still needs it.
    pub fn remove(&self, id: &BatchId) -> Option<PathBuf> {
        let mut q = self.write();
        let pos = q.batches.iter().position(|u| &u.batch.id == id)?;
        let removed = q.batches.remove(pos);
        self.events.fetch_sub(removed.batch.events(), Ordering::Relaxed);
        let file = removed.spill_file?;
        (!q.batches.iter().any(|u| u.spill_file.as_ref() == Some(&file))).then_some(file)
    }

    /// Events in the queued batches.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;
    use crate::event::{ArticleId, Meta};

    /// A batch of one view of each of `articles` (in order), queued whole.
    fn queue(in_flight: &InFlight, seq: u64, articles: &[&str]) {
        let articles = articles
            .iter()
            .map(|a| ArticleDelta {
                article: ArticleId::parse(a).unwrap(),
                counts: Counts::of_views(1),
                meta: Meta::default(),
                visitors: Vec::new(),
            })
            .collect();
        let id = BatchId {
            instance: "t".into(),
            epoch_ms: 1,
            seq,
            chunk: 0,
        };
        in_flight.push(Unacked {
            batch: Arc::new(Batch {
                id,
                flushed_at_ms: 1,
                articles,
            }),
            spill_file: None,
            replayed: false,
        });
    }

    fn generation_of_a_view(in_flight: &InFlight) -> u64 {
        in_flight.view_with(&["m"], || ()).generation
    }

    #[test]
    fn a_drain_may_hold_any_article_until_its_batches_are_queued() {
        let in_flight = InFlight::default();
        assert!(!in_flight.may_hold("m"));
        let draining = in_flight.begin_drain();
        assert!(in_flight.may_hold("m"), "copied perhaps, in no batch yet");
        queue(&in_flight, 1, &["m"]);
        drop(draining);
        assert!(in_flight.may_hold("m"), "queued");
        assert!(!in_flight.may_hold("n"), "in no batch, and the drain is over");
        let id = in_flight.snapshot()[0].batch.id.clone();
        in_flight.remove(&id);
        assert!(!in_flight.may_hold("m"), "acknowledged");
    }

    #[test]
    fn nothing_joined_since_a_view_of_an_unchanged_queue() {
        let in_flight = InFlight::default();
        queue(&in_flight, 1, &["a", "m"]);
        let seen = generation_of_a_view(&in_flight);
        assert!(!in_flight.joined_since(seen, &["m"]));
    }

    #[test]
    fn only_a_batch_whose_range_holds_an_article_asked_for_counts() {
        let in_flight = InFlight::default();
        let seen = generation_of_a_view(&in_flight);
        // Other chunks of the same drain: ranges before and after "m".
        queue(&in_flight, 1, &["a", "c"]);
        queue(&in_flight, 2, &["p", "z"]);
        assert!(!in_flight.joined_since(seen, &["m"]));
        assert!(in_flight.joined_since(seen, &["m", "b"]), "'b' is in the first range");
        // Within the range, even without a delta of its own: the range is what is kept.
        queue(&in_flight, 3, &["k", "n"]);
        assert!(in_flight.joined_since(seen, &["m"]));
    }

    #[test]
    fn an_acknowledged_batch_still_counts_as_joined() {
        let in_flight = InFlight::default();
        let seen = generation_of_a_view(&in_flight);
        queue(&in_flight, 1, &["m"]);
        let id = in_flight.snapshot()[0].batch.id.clone();
        in_flight.remove(&id);
        assert!(
            in_flight.joined_since(seen, &["m"]),
            "it may have landed during the read"
        );
    }

    #[test]
    fn a_view_older_than_the_joins_kept_always_reads_again() {
        let in_flight = InFlight::default();
        let seen = generation_of_a_view(&in_flight);
        for seq in 0..=JOINS_KEPT as u64 {
            queue(&in_flight, seq, &["a"]);
        }
        assert!(in_flight.joined_since(seen, &["z"]), "the first joins are forgotten");
        let recent = generation_of_a_view(&in_flight) - JOINS_KEPT as u64;
        assert!(!in_flight.joined_since(recent, &["z"]), "every join since is kept");
    }
}
