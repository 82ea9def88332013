//! Folding closed minute logs into hour buckets (`fold.lua`), so a flush pays one
//! command per piece for the time buckets instead of one per counter per bucket.
//! Any instance may fold, any number of times: each partition's record of the last
//! folded minute makes it exactly once.

use std::sync::LazyLock;

use redis::Script;

use super::keys::{Partition, PARTITIONS};
use super::top::{open_from, HOUR_TTL, MINUTE_TTL};
use super::RedisStore;
use crate::store::StoreError;

static FOLD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("fold.lua")));

impl RedisStore {
    /// Folds every partition's closed minutes into their hours (64 calls at once); returns
    /// how many (partition, minute) logs this call folded.
    pub async fn fold_closed_minutes(&self) -> Result<i64, StoreError> {
        let Some(upto) = open_from(self.clock.now_ms()).checked_sub(1) else {
            return Ok(0);
        };
        let oldest = upto.saturating_sub(MINUTE_TTL.as_secs() / 60);
        let mut calls = Vec::new();
        for p in 0..PARTITIONS {
            let partition = Partition::from_index(p);
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(FOLD.get_hash())
                .arg(1)
                .arg(self.keys.folded(partition))
                .arg(self.keys.partition_prefix(partition))
                .arg(upto)
                .arg(oldest)
                .arg(HOUR_TTL.as_secs());
            calls.push((cmd, super::FULL_PIECE));
        }
        Ok(self.run_scripts(&FOLD, &calls).await?.into_iter().sum())
    }
}
