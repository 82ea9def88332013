//! Flush throughput and memory: N distinct pending keys (100k and 1M) flushed to a
//! private Redis by the service's own `Flusher` (one `flush_once`: drain, chunks, the
//! pipelined applies), with the time, the Redis commands (INFO commandstats) and the
//! resident memory the pending keys took. The drain alone is timed on a second map.
//!
//! Run: `cargo bench --bench flush [-- --fsync-always]` (figures in BENCHMARKS.md).

#[path = "../tests/it/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use viewcounter::counter::CounterMap;
use viewcounter::event::{Event, Networks};
use viewcounter::flusher::InFlight;
use viewcounter::flusher::{FlushSettings, Flusher};
use viewcounter::metrics::Metrics;
use viewcounter::store::Store;

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
    println!("| pending keys | fill RSS delta | bytes per key | drain alone | flush (drain + apply) | Redis script CPU | Redis commands | commands per key |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [100_000usize, 1_000_000] {
        let ids: Vec<String> = (0..n).map(|i| format!("article-{i:07}")).collect();
        let before = rss_bytes();
        let map = filled(&ids);
        let per_key = rss_bytes().saturating_sub(before) as f64 / n as f64;
        let drained_at = Instant::now();
        drop(map.drain());
        let drain = drained_at.elapsed();
        drop(map);

        let map = filled(&ids);
        let data_dir = tempfile::tempdir().expect("temp dir");
        let in_flight = Arc::new(InFlight::default());
        let mut flusher = Flusher::new(
            map.clone(),
            store.clone(),
            Metrics::new(),
            in_flight.clone(),
            FlushSettings {
                final_timeout: Duration::from_secs(30),
                ..FlushSettings::new(data_dir.path().to_path_buf(), format!("bench-{n}"))
            },
        );
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let flushed_at = Instant::now();
        rt.block_on(flusher.flush_once());
        let flush = flushed_at.elapsed();
        assert!(in_flight.is_empty(), "Redis acknowledged every batch");
        let (cmds, redis_usec) = commands(&redis);
        println!(
            "| {n} | {:.1} MiB | {per_key:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {cmds} | {:.2} |",
            (per_key * n as f64) / 1048576.0,
            drain.as_secs_f64() * 1000.0,
            flush.as_secs_f64() * 1000.0,
            redis_usec as f64 / 1000.0,
            cmds as f64 / n as f64
        );
    }
}

/// A counter map with one view pending for each of `ids`.
fn filled(ids: &[String]) -> Arc<CounterMap> {
    let map = Arc::new(CounterMap::new(ids.len() + 1, Networks::default()));
    for id in ids {
        map.record(&Event::view(id));
    }
    map
}
