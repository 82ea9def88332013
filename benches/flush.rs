//! Flush throughput and memory: N distinct pending keys (100k and 1M) drained from the
//! counter map and applied to a private Redis exactly as the flusher does it (chunks of
//! 2,000 articles, one at a time), with the time, the Redis commands (INFO
//! commandstats) and the resident memory the pending keys took.
//!
//! Run: `cargo bench --bench flush [-- --fsync-always]` (figures in BENCHMARKS.md).

#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Arc;
use std::time::Instant;

use redis_server::RedisServer;
use viewcounter::counter::CounterMap;
use viewcounter::event::{Counter, Event, Networks};
use viewcounter::flusher::CHUNK_ARTICLES;
use viewcounter::store::{Batch, BatchId, Store};

/// Resident set size of this process, bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// (calls, microseconds) summed over the commands the client sent (scripts count their
/// inner calls in `calls`; `usec` of EVALSHA already includes them, so only top-level
/// commands are summed for time).
fn commands(redis: &RedisServer) -> (u64, u64) {
    let info = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    let field = |l: &str, name: &str| -> u64 {
        l.split(name)
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rows: Vec<&str> = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_config"))
        .collect();
    let calls = rows.iter().map(|l| field(l, "calls=")).sum();
    let usec = rows
        .iter()
        .filter(|l| l.starts_with("cmdstat_evalsha") || l.starts_with("cmdstat_script"))
        .map(|l| field(l, "usec="))
        .sum();
    (calls, usec)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // AOF on, fsync once a second (production); `--fsync-always` for the durable setting.
    let always = std::env::args().any(|a| a == "--fsync-always");
    let policy = if always { "always" } else { "everysec" };
    let redis = RedisServer::start_with_fsync(policy);
    println!("redis-server with appendonly yes, appendfsync {policy}\n");
    let store = rt
        .block_on(async { Store::open_redis(&redis.url(), "vc") })
        .expect("redis store");
    println!("| pending keys | fill RSS delta | bytes per key | drain | apply to Redis | of which Redis CPU | Redis commands | commands per key |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (run, n) in [100_000usize, 1_000_000].into_iter().enumerate() {
        let ids: Vec<String> = (0..n).map(|i| format!("article-{i:07}")).collect();
        let before = rss_bytes();
        let map = Arc::new(CounterMap::new(n + 1, Networks::default()));
        for id in &ids {
            map.record(&Event {
                article: id,
                counter: Counter::View,
                section: None,
                lang: None,
            });
        }
        let per_key = rss_bytes().saturating_sub(before) as f64 / n as f64;
        let drained_at = Instant::now();
        let articles = map.drain();
        let drain = drained_at.elapsed();
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let applied_at = Instant::now();
        for (i, chunk) in articles.chunks(CHUNK_ARTICLES).enumerate() {
            let batch = Batch {
                id: BatchId {
                    instance: "bench".into(),
                    epoch_ms: run as u64 + 1,
                    seq: 1,
                    chunk: i as u32,
                },
                flushed_at_ms: 0,
                articles: chunk.to_vec(),
            };
            rt.block_on(store.apply(&batch)).expect("apply");
        }
        let apply = applied_at.elapsed();
        let (cmds, redis_usec) = commands(&redis);
        println!(
            "| {n} | {:.1} MiB | {per_key:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {cmds} | {:.2} |",
            (per_key * n as f64) / 1048576.0,
            drain.as_secs_f64() * 1000.0,
            apply.as_secs_f64() * 1000.0,
            redis_usec as f64 / 1000.0,
            cmds as f64 / n as f64
        );
    }
}
