//! Batch ids: which process made a batch (a random instance id and its start time)
//! and its place in that process's sequence.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::unix_ms;
use crate::store::BatchId;

/// Makes batch ids: instance id + process start + sequence.
#[derive(Debug)]
pub struct BatchIds {
    instance: String,
    epoch_ms: u64,
    seq: AtomicU64,
}

impl BatchIds {
    /// A fresh sequence for this process.
    pub fn new(instance: String) -> Self {
        BatchIds {
            instance,
            epoch_ms: unix_ms(),
            seq: AtomicU64::new(0),
        }
    }

    /// The next id: every batch, each chunk of a drain too, has its own `seq`.
    pub(super) fn next(&self, chunk: u32) -> BatchId {
        BatchId {
            instance: self.instance.clone(),
            epoch_ms: self.epoch_ms,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            chunk,
        }
    }
}
