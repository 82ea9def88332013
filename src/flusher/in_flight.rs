//! The queue of batches drained but not yet acknowledged by the store, shared by the
//! flusher (which fills and empties it) and the reads (which add it in). A generation
//! number moves with every change, so a read can tell that the queue changed under it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::{Batch, BatchId};

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
    /// The queued batches.
    pub batches: Vec<Arc<Batch>>,
    /// What the reader computed under the same lock (the pending counts).
    pub also: R,
    /// The queue's generation then; compare with [`InFlight::generation`] afterwards.
    pub generation: u64,
}

/// The queue, behind a std lock that is never held across an await.
#[derive(Debug, Default)]
pub struct InFlight {
    queue: RwLock<Vec<Unacked>>,
    generation: AtomicU64,
    /// Events in the queued batches, kept as they come and go: summing them at every
    /// acknowledgement cost a pass over every queued article (a million, after a big drain).
    events: AtomicU64,
}

impl InFlight {
    fn read(&self) -> RwLockReadGuard<'_, Vec<Unacked>> {
        self.queue.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<Unacked>> {
        self.queue.write().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Moves with every push and removal.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The queue and the result of `also`, computed while no drain can add to the
    /// queue: pending counts and queued batches of one moment, so a count racing a
    /// drain is seen once (pending or queued), never twice or not at all.
    pub fn view_with<R>(&self, also: impl FnOnce() -> R) -> QueueView<R> {
        let q = self.read();
        let also = also();
        QueueView {
            batches: q.iter().map(|u| u.batch.clone()).collect(),
            also,
            generation: self.generation(),
        }
    }

    /// A copy of the queue with the spill files.
    pub fn snapshot(&self) -> Vec<Unacked> {
        self.read().clone()
    }

    /// Queues one batch (a replayed spill).
    pub fn push(&self, u: Unacked) {
        let events = u.batch.events();
        let mut q = self.write();
        q.push(u);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.changed();
    }

    /// Runs `drain` (which takes the batches' deltas out of the counter map) under
    /// the write lock and queues what it returns, so no reader sees the counts in
    /// neither place or in both. Returns the batches queued.
    pub fn push_drained(&self, drain: impl FnOnce() -> Vec<Unacked>) -> Vec<Arc<Batch>> {
        let mut q = self.write();
        let drained = drain();
        let batches: Vec<Arc<Batch>> = drained.iter().map(|u| u.batch.clone()).collect();
        if !drained.is_empty() {
            let events = batches.iter().map(|b| b.events()).sum();
            self.events.fetch_add(events, Ordering::Relaxed);
            q.extend(drained);
            self.changed();
        }
        batches
    }

    /// Keeps in `batches` only those still queued (not acknowledged meanwhile).
    pub fn keep_queued(&self, batches: &mut Vec<Arc<Batch>>) {
        let q = self.read();
        let queued: HashSet<&BatchId> = q.iter().map(|u| &u.batch.id).collect();
        batches.retain(|b| queued.contains(&b.id));
    }

    /// When the oldest queued batch was drained (Unix ms), if any is queued.
    pub fn oldest_flushed_at_ms(&self) -> Option<u64> {
        self.read().iter().map(|u| u.batch.flushed_at_ms).min()
    }

    /// True when nothing waits for the store.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Removes `id`; returns its spill file if no other batch still needs it.
    pub fn remove(&self, id: &BatchId) -> Option<PathBuf> {
        let mut q = self.write();
        let pos = q.iter().position(|u| &u.batch.id == id)?;
        let removed = q.remove(pos);
        self.events.fetch_sub(removed.batch.events(), Ordering::Relaxed);
        let file = removed.spill_file;
        self.changed();
        let file = file?;
        (!q.iter().any(|u| u.spill_file.as_ref() == Some(&file))).then_some(file)
    }

    /// Events in the queued batches.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}
