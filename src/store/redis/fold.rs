//! Folding closed minute logs into hour buckets (`fold.lua`), so a flush pays one
//! command per piece for the time buckets instead of one per counter per bucket.
//! Any instance may fold, any number of times: each partition's record of the last
//! folded minute makes it exactly once.

use std::sync::LazyLock;

use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};

use super::top::{open_from, HOUR_TTL, MINUTE_TTL};
use super::{err, RedisStore, CALL_TIMEOUT};
use crate::store::keys::{Partition, PARTITIONS};
use crate::store::StoreError;

static FOLD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("fold.lua")));

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl RedisStore {
    /// Folds every partition's closed minutes into their hours (one pipeline); returns
    /// how many (partition, minute) logs this call folded.
    pub async fn fold_closed_minutes(&self) -> Result<i64, StoreError> {
        let Some(upto) = open_from(self.clock.now_ms()).checked_sub(1) else {
            return Ok(0);
        };
        let oldest = upto.saturating_sub(MINUTE_TTL.as_secs() / 60);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for p in 0..PARTITIONS {
            let partition = Partition::from_index(p);
            pipe.cmd("EVALSHA")
                .arg(FOLD.get_hash())
                .arg(1)
                .arg(self.keys.folded(partition))
                .arg(self.keys.partition_prefix(partition))
                .arg(upto)
                .arg(oldest)
                .arg(HOUR_TTL.as_secs());
        }
        let pipe = &pipe;
        let results: Vec<RedisResult<i64>> = self
            .call(CALL_TIMEOUT, |mut conn| async move {
                let results: Vec<RedisResult<i64>> = pipe.query_async(&mut conn).await?;
                if !results.iter().any(|r| r.as_ref().is_err_and(is_noscript)) {
                    return Ok(results);
                }
                FOLD.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await
            })
            .await?;
        let mut folded = 0;
        for r in results {
            folded += r.map_err(err)?;
        }
        Ok(folded)
    }
}
