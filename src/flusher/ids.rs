//! Batch ids: which process made a batch (a random instance id and its start time)
//! and its place in that process's sequence.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::BatchId;

/// Makes batch ids: instance id + process start + sequence.
#[derive(Debug)]
pub struct BatchIds {
    instance: String,
    epoch_ms: u64,
    seq: u64,
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl BatchIds {
    /// A fresh sequence for this process.
    pub fn new(instance: String) -> Self {
        BatchIds {
            instance,
            epoch_ms: unix_ms(),
            seq: 0,
        }
    }

    /// The next id: every batch, each chunk of a drain too, has its own `seq`.
    pub(super) fn next(&mut self, chunk: u32) -> BatchId {
        self.seq += 1;
        BatchId {
            instance: self.instance.clone(),
            epoch_ms: self.epoch_ms,
            seq: self.seq,
            chunk,
        }
    }

    /// `<instance>-<epoch_ms>-<seq>`: names this run's spill file.
    pub(super) fn label(&self) -> String {
        format!("{}-{}-{}", self.instance, self.epoch_ms, self.seq)
    }
}
